//! `<state dir>/status.json`: what the daemon is doing, for `opsagent status` on the instance —
//! its version, the hub connection, the current round and state. Written when the connection comes
//! or goes, at round boundaries and when a state starts: by a temp file renamed over it, without
//! fsync (it is rewritten at every start, so a power cut costs nothing; fsyncs would cost every state).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub hub_url: String,
    pub connected: bool,
    /// When `connected` last changed (RFC 3339).
    pub connection_since: String,
    pub recipe_version: Option<u64>,
    pub round: Option<u64>,
    /// `running` or `idle`.
    pub round_state: String,
    /// The running state's id and its position (1-based) in the recipe.
    pub state_id: Option<String>,
    pub state_index: Option<usize>,
    pub states: Option<usize>,
    /// The last finished round's result.
    pub last_result: Option<String>,
    pub updated_at: String,
}

pub struct StatusFile {
    path: PathBuf,
    status: Mutex<Status>,
}

impl StatusFile {
    pub fn new(state_dir: &Path, hub_url: &str) -> StatusFile {
        let status = Status {
            version: crate::version::version().to_string(),
            pid: std::process::id(),
            hub_url: hub_url.to_string(),
            connection_since: now(),
            round_state: "idle".into(),
            ..Status::default()
        };
        let file = StatusFile { path: state_dir.join("status.json"), status: Mutex::new(status) };
        file.update(|_| {});
        file
    }

    /// Changes the status and writes the file.
    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        // A panic while holding the lock leaves a status that is still well-formed.
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut status);
        status.updated_at = now();
        let text = serde_json::to_string_pretty(&*status).unwrap_or_default();
        drop(status);
        let temp = self.path.with_extension("json.tmp");
        let written = std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, &self.path));
        if let Err(e) = written {
            tracing::debug!(error = %e, path = %self.path.display(), "cannot write the status file");
        }
    }
}

pub fn read(state_dir: &Path) -> Option<Status> {
    serde_json::from_str(&std::fs::read_to_string(state_dir.join("status.json")).ok()?).ok()
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `opsagent status`: what the running agent says about itself, whether it runs, and any upgrade
/// in progress, as text lines or one JSON document. `false` when no agent runs.
pub fn show(config: &super::config::Config, json: bool) -> bool {
    let pid = super::watchdog::running_agent(&config.state_dir);
    let status = read(&config.state_dir).filter(|s| Some(s.pid as i32) == pid);
    let upgrade = super::upgrade::load(&config.state_dir);
    let layout = super::upgrade::Layout::new(&config.install_root);
    if json {
        let document = serde_json::json!({
            "running": pid.is_some(),
            "pid": pid,
            "installed_version": layout.current_version(),
            "status": status,
            "upgrade": upgrade,
        });
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        return pid.is_some();
    }
    let installed = layout.current_version().unwrap_or_else(|| "-".into());
    match (&pid, &status) {
        (Some(pid), Some(s)) => println!("agent     {} (pid {pid}), installed {installed}", s.version),
        (Some(pid), None) => println!("agent     running (pid {pid}), installed {installed}"),
        (None, _) => println!("agent     not running (installed {installed}); `opsagent watchdog` starts it"),
    }
    if let Some(s) = &status {
        let state = if s.connected { "connected" } else { "not connected" };
        println!("hub       {} {state} since {}", s.hub_url, s.connection_since);
        let recipe = s.recipe_version.map(|v| format!("recipe version {v}")).unwrap_or_else(|| "no recipe".into());
        let round = match (s.round, s.round_state.as_str()) {
            (Some(n), "running") => {
                let at = match (&s.state_id, s.state_index, s.states) {
                    (Some(id), Some(i), Some(total)) => format!(", state `{id}` ({i}/{total})"),
                    _ => String::new(),
                };
                format!("round {n} running{at}")
            }
            (Some(n), _) => format!("round {n} ended: {}", s.last_result.as_deref().unwrap_or("-")),
            (None, _) => "no round yet".into(),
        };
        println!("round     {round} ({recipe})");
    }
    match &upgrade {
        Some(u) if !matches!(u.phase.as_str(), super::upgrade::CONFIRMED) => {
            let reason = u.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            let deadline = match u.deadline {
                Some(d) if u.phase == super::upgrade::INSTALLED => {
                    format!(" (must reach the hub within {} s)", d.saturating_sub(super::upgrade::now_secs()))
                }
                _ => String::new(),
            };
            println!("upgrade   {} → {}: {}{deadline}{reason}", u.from, u.to, u.phase);
        }
        Some(u) => println!("upgrade   none pending (last: {} → {} confirmed)", u.from, u.to),
        None => println!("upgrade   none pending"),
    }
    pid.is_some()
}

//! `opsagent-hub quickstart`: a hub on loopback (embedded SQLite in a local folder), a demo app of
//! two components (`db` and `web`) with an instance each, two local `opsagent run` agents against
//! it, `examples/quickstart.yaml` pushed (touching only a scratch folder), and the rounds of both
//! shown live, state by state: web-1's `meta.wait` holds until db-1's third state succeeded, and
//! its config is rendered from links to db-1 and to the `web` group. Ctrl-C stops everything.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::client::{Client, Exit, Failure};
use crate::{serve, Secret, ServeConfig, ServeError};

const RECIPE: &str = include_str!("../../../examples/quickstart.yaml");
const APP: &str = "demo";
/// The instances: (id, component, the PrivateIpAddress its `[facts]` reports).
const INSTANCES: [(&str, &str, &str); 2] = [("db-1", "db", "127.0.0.2"), ("web-1", "web", "127.0.0.3")];

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where the hub's database, the agents' state and the scratch folder go.
    #[arg(long, default_value = "opsagent-quickstart")]
    pub dir: PathBuf,
    /// Where the hub listens (a free port is taken if this one is busy).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// The `opsagent` binary (default: beside this one, else on PATH).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
}

pub async fn run(args: &QuickstartArgs) -> Result<(), Failure> {
    let dir = std::path::absolute(&args.dir).map_err(|e| env_failure(format!("{}: {e}", args.dir.display())))?;
    std::fs::create_dir_all(&dir).map_err(|e| env_failure(format!("creating {}: {e}", dir.display())))?;
    let paint = Paint::new();

    // 1. The hub.
    let mut config = ServeConfig::new(args.listen, dir.join("hub"));
    config.shutdown_grace = Duration::from_secs(3);
    let hub = match serve(config.clone()).await {
        Ok(hub) => hub,
        Err(ServeError::Environment(_)) if args.listen.port() != 0 => {
            config.listen = SocketAddr::new(args.listen.ip(), 0);
            serve(config).await.map_err(serve_failure)?
        }
        Err(e) => return Err(serve_failure(e)),
    };
    let client = Client::new(&hub.url(), Secret::new(hub.api_token().to_string()), None)
        .map_err(|e| env_failure(format!("{e:#}")))?;

    // 2. The app, its instances and the agents' configurations (kept across quickstarts).
    let _ = client.post("/apps", &json!({ "id": APP })).await; // exists already on a second run
    let mut configs = Vec::new();
    for (instance, component, ip) in INSTANCES {
        let agent_dir = dir.join(format!("agent-{instance}"));
        let agent_config = agent_dir.join("opsagent.conf");
        std::fs::create_dir_all(&agent_dir)
            .map_err(|e| env_failure(format!("creating {}: {e}", agent_dir.display())))?;
        if !agent_config.exists() {
            let body = json!({ "id": instance, "component": component });
            let answer = client.post(&format!("/apps/{APP}/instances"), &body).await?;
            let snippet = answer["config"].as_str().unwrap_or_default();
            let text = format!(
                "{snippet}\nstate_dir = \"{}\"\nround_interval_secs = 20\nsplay_secs = 0\n\n[facts]\nPrivateIpAddress = \"{ip}\"\n",
                agent_dir.join("state").display()
            );
            write_private(&agent_config, &text)?;
        }
        // The hub may have moved to another port since the config was written.
        rewrite_hub_url(&agent_config, &hub.agent_url())?;
        configs.push((instance, agent_dir, agent_config));
    }

    // 3. The recipe, under the scratch folder.
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| env_failure(format!("creating {}: {e}", scratch.display())))?;
    let recipe_file = dir.join("quickstart.yaml");
    write_private(&recipe_file, &RECIPE.replace("SCRATCH", &scratch.display().to_string()))?;
    let wire = crate::cli::wire_form(&recipe_file)?;
    let pushed = client.post(&format!("/apps/{APP}/recipes"), &wire).await?;
    let version = pushed["recipe_version"].as_u64().unwrap_or(0);

    // 4. The agents.
    let agent_bin = args.agent_bin.clone().unwrap_or_else(default_agent_bin);
    let mut agents = Vec::new();
    for (instance, agent_dir, agent_config) in &configs {
        let log_path = agent_dir.join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| env_failure(format!("opening {}: {e}", log_path.display())))?;
        let log_err = log.try_clone().map_err(|e| env_failure(format!("opening {}: {e}", log_path.display())))?;
        let agent = tokio::process::Command::new(&agent_bin)
            .arg("run")
            .arg("--config")
            .arg(agent_config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                env_failure(format!("cannot start the agent `{}`: {e}", agent_bin.display()))
                    .hint("build it with `cargo build --release` (it sits beside opsagent-hub), or pass `--agent-bin`")
            })?;
        agents.push((*instance, log_path, agent));
    }

    let cli = format!("opsagent-hub --hub {} --data-dir {}", hub.url(), dir.join("hub").display());
    println!("{}", paint.bold("opsagent quickstart"));
    println!("  hub        {} (agents: {})", hub.url(), hub.agent_url());
    println!("  API        {}/api/v1  (token in {})", hub.url(), dir.join("hub/api-token").display());
    println!("  dashboard  {}/apps/{APP}  (sign in with the token)", hub.url());
    println!("  agents     db-1 (component db), web-1 (component web); logs in {}/agent-*/agent.log", dir.display());
    println!("  scratch    {}", scratch.display());
    println!("  recipe     version {version}, {}", recipe_file.display());
    println!("  try        {cli} status {APP}");
    println!("             {cli} recipe show {APP} --instance web-1");
    println!("             {cli} reload {APP} web-1");
    println!("  Ctrl-C stops the agents and the hub\n");

    // 5. The rounds, live.
    let mut after_seq = [0u64; INSTANCES.len()];
    let mut said: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    'live: loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                for (i, (instance, log_path, agent)) in agents.iter_mut().enumerate() {
                    if let Ok(Some(status)) = agent.try_wait() {
                        println!("{}", paint.red(&format!("the agent of {instance} stopped ({status}); see {}", log_path.display())));
                        break 'live;
                    }
                    let path = format!("/apps/{APP}/logs?instance={instance}&after_seq={}&limit=500", after_seq[i]);
                    let Ok(answer) = client.get(&path).await else { continue };
                    for log in answer["logs"].as_array().into_iter().flatten() {
                        after_seq[i] = after_seq[i].max(log["seq"].as_u64().unwrap_or(0));
                        print_log(&paint, instance, log);
                    }
                }
                // What a round waits for (a wait on another instance, a link not resolved yet), once.
                if let Ok(status) = client.get(&format!("/apps/{APP}/status")).await {
                    for i in status["instances"].as_array().into_iter().flatten() {
                        for w in i["waiting"].as_array().into_iter().flatten() {
                            let line = format!("{:>12}  {:<6} {} {}", "waiting", i["instance_id"].as_str().unwrap_or(""),
                                w["state_id"].as_str().unwrap_or(""), w["message"].as_str().unwrap_or(""));
                            if said.insert(line.clone()) {
                                println!("{}", paint.dim(&line));
                            }
                        }
                    }
                }
            }
        }
    }

    println!("\nstopping the agents and the hub");
    for (_, _, agent) in &mut agents {
        if let Some(pid) = agent.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
    }
    for (_, _, agent) in &mut agents {
        let _ = tokio::time::timeout(Duration::from_secs(10), agent.wait()).await;
    }
    hub.shutdown().await;
    Ok(())
}

fn print_log(paint: &Paint, instance: &str, log: &Value) {
    let status = log["status"].as_str().unwrap_or("?");
    let word = format!("{status:>12}");
    let word = match status {
        "ok" => paint.green(&word),
        "changed" => paint.yellow(&word),
        "failed" | "interrupted" => paint.red(&word),
        _ => paint.dim(&word),
    };
    let round = log["round"].as_u64().unwrap_or(0);
    let attempt = log["attempt"].as_u64().unwrap_or(0);
    let mut line = format!(
        "{word}  {instance:<6} round {round:<3} {:<14} {}  {}ms",
        log["module"].as_str().unwrap_or(""),
        log["id"].as_str().unwrap_or(""),
        log["duration_ms"].as_u64().unwrap_or(0)
    );
    if attempt > 1 {
        line.push_str(&format!(" (attempt {attempt})"));
    }
    println!("{line}");
    for change in log["changes"].as_array().into_iter().flatten() {
        println!(
            "{:>14}- {} {} {}",
            "",
            change["action"].as_str().unwrap_or(""),
            change["target"].as_str().unwrap_or(""),
            paint.dim(change["detail"].as_str().unwrap_or(""))
        );
    }
    if matches!(status, "failed" | "interrupted" | "waiting") {
        if let Some(comment) = log["state_comment"].as_str() {
            println!("{:>14}{}", "", paint.red(comment));
        }
    }
    if let Some(out) = log["stdout"].as_str().filter(|s| !s.is_empty()) {
        for l in out.lines().take(5) {
            println!("{:>14}| {}", "", paint.dim(l));
        }
    }
}

fn default_agent_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("opsagent")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("opsagent"))
}

fn rewrite_hub_url(config: &Path, url: &str) -> Result<(), Failure> {
    let text =
        std::fs::read_to_string(config).map_err(|e| env_failure(format!("reading {}: {e}", config.display())))?;
    let text: Vec<String> = text
        .lines()
        .map(|l| if l.trim_start().starts_with("hub_url") { format!("hub_url = \"{url}\"") } else { l.to_string() })
        .collect();
    write_private(config, &(text.join("\n") + "\n"))
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    opsagent_states::fsutil::write_atomic(path, text.as_bytes(), 0o600, Default::default())
        .map_err(|e| env_failure(format!("writing {}: {e}", path.display())))
}

fn env_failure(message: String) -> Failure {
    Failure::new(Exit::Environment, message)
}

fn serve_failure(e: ServeError) -> Failure {
    match e {
        ServeError::Invalid { message, hint } => Failure::new(Exit::Invalid, message).hint(hint),
        ServeError::Environment(e) => env_failure(format!("{e:#}")),
    }
}

/// Colour on a terminal only.
struct Paint {
    on: bool,
}

impl Paint {
    fn new() -> Paint {
        Paint { on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }
    fn wrap(&self, text: &str, code: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.wrap(t, "1")
    }
    fn dim(&self, t: &str) -> String {
        self.wrap(t, "2")
    }
    fn green(&self, t: &str) -> String {
        self.wrap(t, "32")
    }
    fn yellow(&self, t: &str) -> String {
        self.wrap(t, "33")
    }
    fn red(&self, t: &str) -> String {
        self.wrap(t, "31;1")
    }
}

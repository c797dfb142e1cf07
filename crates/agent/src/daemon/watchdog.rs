//! `opsagent watchdog`, run by cron every minute, and the pidfile it relies on.
//!
//! When the agent runs and no upgrade is pending it reads two small files and checks one process,
//! and exits: nothing else. Otherwise it restarts a dead agent from `current` and finishes an
//! interrupted upgrade: an install that did not confirm (the new version died, or is past its
//! deadline) is rolled back — `current` swapped back, `rolling_back` recorded with the reason, the
//! agent started, and the previous version reports `rolled_back` to the hub as it starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use opsagent_states::ctx::Owner;
use opsagent_states::fsutil::write_atomic;

use super::config::Config;
use super::upgrade::{self, Layout};

/// How long after its deadline a new version that neither confirmed nor rolled back is killed.
const DEADLINE_GRACE_SECS: u64 = 10;

pub fn pidfile(state_dir: &Path) -> PathBuf {
    state_dir.join("opsagent.pid")
}

/// Makes sure one agent runs per state directory: an exclusive `flock` on `<state dir>/opsagent.lock`,
/// held as long as the returned value lives (released by a re-exec, taken again by the new image).
pub fn lock_state_dir(state_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let path = state_dir.join("opsagent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let pid = running_agent(state_dir).map(|p| format!(" (pid {p})")).unwrap_or_default();
            anyhow::bail!("another agent{pid} runs with the state directory {}", state_dir.display())
        }
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Records this process as the running agent.
pub fn write_pidfile(state_dir: &Path) -> anyhow::Result<()> {
    let path = pidfile(state_dir);
    write_atomic(&path, format!("{}\n", std::process::id()).as_bytes(), 0o644, Owner::default())
        .with_context(|| format!("writing {}", path.display()))
}

/// The pid of a running agent recorded in the pidfile: alive, and its executable is an `opsagent`
/// (a recycled pid, or a zombie, does not count).
pub fn running_agent(state_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pidfile(state_dir)).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0)?;
    kill(Pid::from_raw(pid), None).ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    name.starts_with("opsagent").then_some(pid)
}

/// What one watchdog pass did.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Started,
    RolledBack,
}

/// One pass; `config_path` is given to a restarted agent.
pub fn run(config: &Config, config_path: &Path) -> anyhow::Result<Action> {
    let alive = running_agent(&config.state_dir);
    let pending = upgrade::load(&config.state_dir).filter(|s| {
        matches!(s.phase.as_str(), upgrade::INSTALLED | upgrade::ROLLING_BACK)
            || (alive.is_none()
                && matches!(s.phase.as_str(), upgrade::DOWNLOADING | upgrade::DOWNLOADED | upgrade::VERIFIED))
    });
    let Some(mut state) = pending else {
        if alive.is_some() {
            return Ok(Action::Nothing);
        }
        start(config, config_path)?;
        return Ok(Action::Started);
    };
    let layout = Layout::new(&config.install_root);
    match state.phase.as_str() {
        upgrade::INSTALLED => {
            let overdue = state.deadline.is_some_and(|d| upgrade::now_secs() > d + DEADLINE_GRACE_SECS);
            if let Some(pid) = alive {
                if !overdue {
                    return Ok(Action::Nothing);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let gone = (0..100).any(|_| {
                    std::thread::sleep(Duration::from_millis(50));
                    running_agent(&config.state_dir).is_none()
                });
                if !gone {
                    anyhow::bail!("the agent (pid {pid}) did not die");
                }
                state.reason = Some(format!("version {} did not reach the hub before its deadline", state.to));
            } else {
                state.reason =
                    Some(format!("version {} stopped before it reached the hub (it may not start at all)", state.to));
            }
            state.phase = upgrade::ROLLING_BACK.into();
            upgrade::save(&config.state_dir, &state)?;
            layout.point_current_at(&state.from)?;
            start(config, config_path)?;
            Ok(Action::RolledBack)
        }
        upgrade::ROLLING_BACK => {
            if alive.is_some() && layout.current_version().as_deref() == Some(state.from.as_str()) {
                return Ok(Action::Nothing);
            }
            if let Some(pid) = alive {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            layout.point_current_at(&state.from)?;
            start(config, config_path)?;
            Ok(Action::RolledBack)
        }
        _ => {
            // Stopped while downloading or verifying: `current` never moved; the agent cleans up
            // and reports at its start.
            start(config, config_path)?;
            Ok(Action::Started)
        }
    }
}

/// Starts the agent from `current`: through systemd where it manages it, else detached, logging
/// to `<state dir>/opsagent.log`.
fn start(config: &Config, config_path: &Path) -> anyhow::Result<()> {
    let systemd = config.install_root == Path::new("/")
        && Path::new("/run/systemd/system").is_dir()
        && Path::new("/etc/systemd/system/opsagent.service").exists();
    if systemd {
        let status = Command::new("systemctl").args(["restart", "opsagent"]).status().context("running systemctl")?;
        anyhow::ensure!(status.success(), "`systemctl restart opsagent` failed: {status}");
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let binary = Layout::new(&config.install_root).current_binary();
    std::fs::create_dir_all(&config.state_dir).with_context(|| format!("creating {}", config.state_dir.display()))?;
    let log_path = config.state_dir.join("opsagent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let err = log.try_clone().with_context(|| format!("opening {}", log_path.display()))?;
    let child = Command::new(&binary)
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    tracing::info!(pid = child.id(), binary = %binary.display(), "watchdog started the agent");
    Ok(())
}

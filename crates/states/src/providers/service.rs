//! Init systems: systemd (when it is PID 1) and SysV init scripts (`/etc/init.d`), behind one
//! small interface that `linux.service` and `linux.supervisord` use. Chosen from the machine's
//! facts once per call: `/run/systemd/system` exists only when systemd runs the machine.

use std::path::Path;

use crate::process::{run_spec, Spec, Termination};
use crate::{Ctx, StateError};

/// How services are run on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitSystem {
    Systemd,
    SysV,
}

impl InitSystem {
    /// The init system of this machine.
    pub fn detect() -> InitSystem {
        if Path::new("/run/systemd/system").is_dir() {
            InitSystem::Systemd
        } else {
            InitSystem::SysV
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InitSystem::Systemd => "systemd",
            InitSystem::SysV => "sysv",
        }
    }
}

/// A service operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Restart,
    Reload,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Restart => "restart",
            Op::Reload => "reload",
        }
    }
}

/// Whether `name` is known to the init system (a unit or an init script).
pub async fn exists(ctx: &Ctx, init: InitSystem, name: &str) -> Result<bool, StateError> {
    match init {
        InitSystem::SysV => Ok(Path::new("/etc/init.d").join(name).is_file()),
        InitSystem::Systemd => {
            let out = probe(ctx, "systemctl", &["show", "--property=LoadState", "--value", name]).await?;
            Ok(out.0 && out.1.trim() != "not-found")
        }
    }
}

/// Whether the service runs now (`systemctl is-active`, or the init script's LSB `status`).
pub async fn is_running(ctx: &Ctx, init: InitSystem, name: &str) -> Result<bool, StateError> {
    match init {
        InitSystem::Systemd => Ok(probe(ctx, "systemctl", &["is-active", "--quiet", name]).await?.0),
        InitSystem::SysV => Ok(probe(ctx, &init_script(name), &["status"]).await?.0),
    }
}

/// Whether the service starts at boot.
pub async fn is_enabled(ctx: &Ctx, init: InitSystem, name: &str) -> Result<bool, StateError> {
    match init {
        InitSystem::Systemd => Ok(probe(ctx, "systemctl", &["is-enabled", "--quiet", name]).await?.0),
        InitSystem::SysV => Ok(sysv_start_links(name)),
    }
}

/// Runs `op` on the service.
pub async fn run(ctx: &Ctx, init: InitSystem, name: &str, op: Op) -> Result<(), StateError> {
    let spec = match init {
        InitSystem::Systemd => spec("systemctl", &[op.as_str(), name]),
        InitSystem::SysV => spec(&init_script(name), &[op.as_str()]),
    };
    run_spec(ctx, &spec, hint(init)).await.map(|_| ())
}

/// Makes the service start at boot (`systemctl enable`, or `update-rc.d NAME defaults`).
pub async fn enable(ctx: &Ctx, init: InitSystem, name: &str) -> Result<(), StateError> {
    let spec = match init {
        InitSystem::Systemd => spec("systemctl", &["enable", name]),
        InitSystem::SysV => spec("update-rc.d", &[name, "defaults"]),
    };
    run_spec(ctx, &spec, hint(init)).await.map(|_| ())
}

fn init_script(name: &str) -> String {
    format!("/etc/init.d/{name}")
}

/// Whether some runlevel starts the SysV service (`/etc/rc[2-5].d/S??NAME`).
fn sysv_start_links(name: &str) -> bool {
    (2..=5).any(|level| {
        std::fs::read_dir(format!("/etc/rc{level}.d")).into_iter().flatten().flatten().any(|entry| {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            file.starts_with('S') && file.get(3..) == Some(name)
        })
    })
}

fn spec(program: &str, args: &[&str]) -> Spec {
    Spec {
        program: program.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        // Init scripts expect a sane PATH even when the agent was started with a bare one.
        env: vec![("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())],
        ..Spec::default()
    }
}

fn hint(init: InitSystem) -> &'static str {
    match init {
        InitSystem::Systemd => "systemd runs this machine but `systemctl` is missing",
        InitSystem::SysV => {
            "install the init script of the service, or the `init-system-helpers` package for `update-rc.d`"
        }
    }
}

/// Runs a query whose exit status is the answer: `(succeeded, stdout)`. Only a failure to run it
/// at all is an error.
async fn probe(ctx: &Ctx, program: &str, args: &[&str]) -> Result<(bool, String), StateError> {
    match run_spec(ctx, &spec(program, args), "").await {
        Ok(out) => Ok((true, String::from_utf8_lossy(&out.stdout.bytes).into_owned())),
        Err(StateError::Command { termination: Termination::Exited(_), stdout, .. }) => {
            Ok((false, String::from_utf8_lossy(&stdout.bytes).into_owned()))
        }
        Err(e) => Err(e),
    }
}

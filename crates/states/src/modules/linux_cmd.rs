//! `linux.cmd` — runs a shell command, unless its path guards say it is not needed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `cmd` | string | required | run as `SHELL -c CMD` |
//! | `shell` | path | `/bin/sh` | |
//! | `cwd` | absolute path | `<state dir>/tmp` | the original's default was `/opt/visualops/tmp/` |
//! | `user` | user name or uid | the agent's user | `HOME`, `USER`, `LOGNAME` are set for it |
//! | `group` | group name or gid | the user's primary group | |
//! | `timeout` | seconds | `600` | the whole process group is killed when it expires |
//! | `env` | dict | — | added to the environment (values hidden in reports) |
//! | `if-path-present` | list of paths | — | run only if every one exists |
//! | `if-path-absent` | list of paths | — | run only if none exists |
//!
//! "Already fine" means a guard says not to run (without guards the command runs every round and
//! reports `changed`). Guards are checked by the agent itself (no shell is started). `--test`
//! shows whether it would run. A non-zero exit fails the state; stdout and stderr are kept
//! separately (the last 16 KiB of each). The command runs in its own process group: on timeout or
//! interruption the group gets SIGTERM, then SIGKILL, grandchildren included.
//!
//! ```yaml
//! - id: migrate
//!   module: linux.cmd
//!   parameter: { cmd: "./manage.py migrate && touch .migrated", cwd: /srv/app, user: app,
//!                if-path-absent: [/srv/app/.migrated], timeout: 300 }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use opsagent_recipe::{Diagnostic, ParamReader, State};

use super::linux_file::check_absolute;
use crate::process::{self, Limits, Spec, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// Default timeout of a command (the original's).
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(600);

/// A validated `linux.cmd`.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub cmd: String,
    pub shell: String,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub if_present: Vec<PathBuf>,
    pub if_absent: Vec<PathBuf>,
}

impl Cmd {
    pub fn from_params(state: &State) -> Result<(Cmd, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let cmd = p.required_string("cmd", "give the command line, e.g. `cmd: systemctl reload nginx`");
        let shell = p.string("shell").unwrap_or_else(|| "/bin/sh".into());
        let cwd_pos = p.node("cwd").and_then(|n| n.pos);
        let cwd = p.string("cwd").and_then(|c| check_absolute(&mut p, "cwd", cwd_pos, &c));
        let user = p.string("user");
        let group = p.string("group");
        let timeout = p.u64("timeout").map(Duration::from_secs).unwrap_or(DEFAULT_CMD_TIMEOUT);
        let env = p.dict("env").unwrap_or_default().into_iter().map(|e| (e.key, e.value.unwrap_or_default())).collect();
        let if_present = guard_paths(&mut p, "if-path-present");
        let if_absent = guard_paths(&mut p, "if-path-absent");
        let warnings = p.finish(
            &["cmd", "shell", "cwd", "user", "group", "timeout", "env", "if-path-present", "if-path-absent"],
            &[],
        )?;
        let cmd = cmd.expect("finish fails when `cmd` is missing");
        Ok((Cmd { cmd, shell, cwd, user, group, timeout, env, if_present, if_absent }, warnings))
    }

    /// Whether the guards let the command run.
    pub fn guards_pass(&self) -> bool {
        self.if_present.iter().all(|p| p.exists()) && !self.if_absent.iter().any(|p| p.exists())
    }

    pub fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        if self.guards_pass() {
            let shown = if ctx.sensitive { "(command hidden: sensitive state)".to_string() } else { self.cmd.clone() };
            plan.changes.push(Change::new(Action::Run, shown, ""));
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut spec =
            Spec { program: self.shell.clone(), args: vec!["-c".into(), self.cmd.clone()], ..Spec::default() };
        if let Some(user) = &self.user {
            let info = ctx.round.user(user)?;
            spec.uid = Some(info.uid);
            spec.gid = Some(info.gid);
            spec.env.push(("HOME".into(), info.home.display().to_string()));
            spec.env.push(("USER".into(), info.name.clone()));
            spec.env.push(("LOGNAME".into(), info.name));
        }
        if let Some(group) = &self.group {
            spec.gid = Some(ctx.round.group(group)?);
        }
        spec.env.extend(self.env.iter().cloned());
        let cwd = match &self.cwd {
            Some(cwd) => cwd.clone(),
            None => default_cwd(&ctx.round.work_dir)?,
        };
        if !cwd.is_dir() {
            return Err(StateError::Conflict {
                path: cwd,
                problem: "(the working directory) does not exist; create it in an earlier state or fix `cwd`".into(),
            });
        }
        spec.cwd = Some(cwd);
        let limits = Limits {
            timeout: ctx.timeout,
            kill_grace: ctx.round.kill_grace,
            max_output_bytes: ctx.round.max_output_bytes,
        };
        let output = process::run(&spec, limits, &ctx.cancel)
            .await
            .map_err(|source| StateError::Spawn { program: self.shell.clone(), source })?;
        match output.termination {
            Termination::Exited(0) => {
                Ok(Outcome { stdout: Some(output.stdout), stderr: Some(output.stderr), ..plan.into() })
            }
            Termination::Cancelled => Err(StateError::Cancelled),
            termination => Err(StateError::Command { termination, stdout: output.stdout, stderr: output.stderr }),
        }
    }
}

fn guard_paths(p: &mut ParamReader<'_>, name: &str) -> Vec<PathBuf> {
    let pos = p.node(name).and_then(|n| n.pos);
    let list = p.string_list(name).unwrap_or_default();
    list.iter().enumerate().filter_map(|(i, path)| check_absolute(p, &format!("{name}[{i}]"), pos, path)).collect()
}

/// The default working directory, created (mode 0700) when first needed.
fn default_cwd(work_dir: &Path) -> Result<PathBuf, StateError> {
    use std::os::unix::fs::DirBuilderExt;
    if !work_dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(work_dir)
            .map_err(StateError::io("creating the default working directory", work_dir))?;
    }
    Ok(work_dir.to_path_buf())
}

//! `linux.cmd` — runs a shell command, unless its path guards say it is not needed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `cmd` | string, or list of lines | required | run as `SHELL -c CMD`; a list (the original's IDE could send one) is joined into one script, one item a line, run with `set -e` when the shell is a POSIX one (`sh`, `bash`, `dash`, `ash`, `ksh`, `zsh`, `mksh`), so a failing line fails the state and the lines after it do not run |
//! | `shell` | path | `/bin/sh` | |
//! | `cwd` | absolute path | `<state dir>/tmp` | the original's default was `/opt/visualops/tmp/` |
//! | `user` | user name or uid | the agent's user | `HOME`, `USER`, `LOGNAME` are set for it |
//! | `group` | group name or gid | the user's primary group | |
//! | `timeout` | seconds | `600` | the whole process group is killed when it expires |
//! | `env` | dict | — | added to the environment (values hidden in reports); the original's `"A=1 B=2"` string (or one `KEY=VALUE` a line, or a list of them) is accepted too, with a warning |
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

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State, Value};

use super::linux_file::check_absolute;
use crate::process::{self, Limits, Spec, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// Default timeout of a command (the original's).
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(600);

/// A validated `linux.cmd`.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The command, or the lines of a `cmd` list joined with newlines.
    pub cmd: String,
    /// `cmd` was a list and the shell is POSIX: the script runs with `set -e`.
    pub exit_on_error: bool,
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
        let shell = p.string("shell").unwrap_or_else(|| "/bin/sh".into());
        let (cmd, exit_on_error) = command(&mut p, &shell);
        let cwd_pos = p.node("cwd").and_then(|n| n.pos);
        let cwd = p.string("cwd").and_then(|c| check_absolute(&mut p, "cwd", cwd_pos, &c));
        let user = p.string("user");
        let group = p.string("group");
        let timeout = p.u64("timeout").map(Duration::from_secs).unwrap_or(DEFAULT_CMD_TIMEOUT);
        let env = p.env("env").unwrap_or_default().into_iter().map(|e| (e.key, e.value.unwrap_or_default())).collect();
        let if_present = guard_paths(&mut p, "if-path-present");
        let if_absent = guard_paths(&mut p, "if-path-absent");
        let warnings = p.finish(
            &["cmd", "shell", "cwd", "user", "group", "timeout", "env", "if-path-present", "if-path-absent"],
            &[],
        )?;
        let cmd = cmd.expect("finish fails when `cmd` is missing");
        Ok((Cmd { cmd, exit_on_error, shell, cwd, user, group, timeout, env, if_present, if_absent }, warnings))
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
        let script = if self.exit_on_error { format!("set -e\n{}", self.cmd) } else { self.cmd.clone() };
        let mut spec = Spec { program: self.shell.clone(), args: vec!["-c".into(), script], ..Spec::default() };
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

/// The shells that know `set -e`.
const POSIX_SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "ksh", "zsh", "mksh"];

/// Reads `cmd`: a string, or a list of lines joined into one script (`set -e` for a POSIX shell).
fn command(p: &mut ParamReader<'_>, shell: &str) -> (Option<String>, bool) {
    let hint = "give the command line, e.g. `cmd: systemctl reload nginx`";
    let Some(node) = p.node("cmd").filter(|n| matches!(n.value, Value::Seq(_))) else {
        return (p.required_string("cmd", hint), false);
    };
    let lines = p.string_list("cmd").unwrap_or_default();
    if lines.iter().all(|l| l.trim().is_empty()) {
        p.report(Kind::BadValue, "cmd", node.pos, "`cmd` is an empty list", Some(hint.into()));
        return (None, false);
    }
    let program = shell.rsplit('/').next().unwrap_or(shell);
    let posix = POSIX_SHELLS.contains(&program);
    let how = if posix {
        format!("run by `{shell}` with `set -e`: a failing line fails the state and stops the script")
    } else {
        format!("run by `{shell}`, which is not a POSIX shell: no `set -e`, the script's exit status decides")
    };
    p.warn_shape(
        "cmd",
        node.pos,
        format!("`cmd` is a list of {} lines: they are joined into one script, {how}", lines.len()),
        "write `cmd` as one string; a YAML block (`cmd: |`) keeps one command a line",
    );
    (Some(lines.join("\n")), posix)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(yaml_params: &str) -> Result<(Cmd, Vec<Diagnostic>), Vec<Diagnostic>> {
        let recipe =
            opsagent_recipe::parse_str(&format!("- {{id: c, module: linux.cmd, parameter: {yaml_params}}}\n")).unwrap();
        Cmd::from_params(&recipe.states[0])
    }

    #[test]
    fn a_cmd_list_is_one_script_with_set_e() {
        let (c, warnings) = cmd("{cmd: [echo a, 'false', echo b]}").unwrap();
        assert_eq!((c.cmd.as_str(), c.exit_on_error), ("echo a\nfalse\necho b", true));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].kind, Kind::OriginalShape);
        assert!(warnings[0].message.contains("with `set -e`"), "{}", warnings[0]);
        let (c, warnings) = cmd("{cmd: [print(1)], shell: /usr/bin/python3}").unwrap();
        assert!(!c.exit_on_error);
        assert!(warnings[0].message.contains("not a POSIX shell"), "{}", warnings[0]);
        let (c, warnings) = cmd("{cmd: echo a}").unwrap();
        assert_eq!((c.cmd.as_str(), c.exit_on_error, warnings.len()), ("echo a", false, 0));
        let errors = cmd("{cmd: []}").unwrap_err();
        assert_eq!(errors[0].message, "`cmd` is an empty list");
    }

    #[test]
    fn env_as_a_string() {
        let (c, warnings) = cmd("{cmd: env, env: 'A=1 B=2'}").unwrap();
        assert_eq!(c.env, [("A".to_string(), "1".to_string()), ("B".to_string(), "2".to_string())]);
        assert_eq!(warnings[0].kind, Kind::OriginalShape);
    }
}

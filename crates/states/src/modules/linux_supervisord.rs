//! `linux.supervisord` — programs running under supervisord, restarted when a watched file changes.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | list of program names | required | as named in supervisord's configuration (`[program:NAME]`); `group:*` works too |
//! | `config` | absolute path | required | supervisord's configuration file; `supervisorctl -c CONFIG` talks to the supervisord it names |
//! | `watch` | list of absolute paths | — | when one of these files changes, the programs are restarted |
//!
//! "Already fine" means supervisord knows every program, each is `RUNNING`, and no watched file
//! changed since the last successful run. A supervisord that is not running is started
//! with `supervisord -c CONFIG`. Unknown programs, or changed watched files (typically the program
//! sections), make it apply the configuration (`supervisorctl update`); stopped programs are
//! started; with changed watched files, running programs are restarted (fingerprints under `<state dir>/watch/<state id>.json`, saved only after success; the
//! first sighting counts as a change, as in the original). Afterwards every program must be
//! `RUNNING`, else the state fails with supervisord's own status line. `--test` lists each action.
//!
//! ```yaml
//! - id: workers
//!   module: linux.supervisord
//!   parameter: { name: [worker], config: /etc/supervisor/supervisord.conf, watch: [/srv/app/worker.ini] }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::{absolute_path, check_absolute};
use crate::process::{run_spec, Spec, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const HINT: &str = "install the `supervisor` package (an earlier `linux.apt.package` state can)";

/// A validated `linux.supervisord`.
#[derive(Debug, Clone)]
pub struct Supervisord {
    pub state_id: String,
    pub programs: Vec<String>,
    pub config: PathBuf,
    pub watch: Vec<PathBuf>,
}

impl Supervisord {
    pub fn from_params(state: &State) -> Result<(Supervisord, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("name").and_then(|n| n.pos);
        let programs = p.string_list("name").unwrap_or_default();
        if !p.has("name") {
            p.report(
                Kind::MissingParameter,
                "name",
                None,
                "required parameter `name` is missing",
                Some("list the programs, e.g. `name: [worker]`".into()),
            );
        } else if programs.is_empty() {
            p.report(Kind::BadValue, "name", pos, "`name` lists no program", Some("list at least one program".into()));
        }
        for (i, program) in programs.iter().enumerate() {
            if program.is_empty() || !program.chars().all(|c| c.is_ascii_alphanumeric() || "._-:*".contains(c)) {
                p.report(
                    Kind::BadValue,
                    &format!("name[{i}]"),
                    pos,
                    format!("`{program}` is not a program name"),
                    None,
                );
            }
        }
        let config = absolute_path(&mut p, "config");
        let watch_pos = p.node("watch").and_then(|n| n.pos);
        let watch_list = p.string_list("watch").unwrap_or_default();
        let watch = watch_list
            .iter()
            .enumerate()
            .filter_map(|(i, w)| check_absolute(&mut p, &format!("watch[{i}]"), watch_pos, w))
            .collect();
        let warnings = p.finish(&["name", "config", "watch"], &[])?;
        let config = config.expect("finish fails when `config` is missing or invalid");
        Ok((Supervisord { state_id: state.id.clone(), programs, config, watch }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        if !self.config.is_file() {
            return Err(StateError::Conflict {
                path: self.config.clone(),
                problem: "does not exist; write supervisord's configuration in an earlier state".into(),
            });
        }
        let Some(status) = self.status(ctx).await? else {
            plan.changes.push(Change::new(Action::Start, "supervisord", format!("-c {}", self.config.display())));
            for program in &self.programs {
                plan.changes.push(Change::new(Action::Start, program, "with supervisord"));
            }
            return Ok(plan);
        };
        let changed = crate::watch::changed_files(ctx, &self.state_id, &self.watch)?;
        let unknown = self.programs.iter().any(|p| matching(&status, p).next().is_none());
        if unknown || !changed.is_empty() {
            plan.changes.push(Change::new(
                Action::Update,
                "supervisord",
                "reread and apply program configuration (supervisorctl update)",
            ));
        }
        for program in &self.programs {
            let running = matching(&status, program).all(|state| state == "RUNNING")
                && matching(&status, program).next().is_some();
            if !running {
                plan.changes.push(Change::new(Action::Start, program, "not running"));
            } else if !changed.is_empty() {
                plan.changes.push(Change::new(Action::Restart, program, format!("changed: {}", changed.join(", "))));
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        for change in &plan.changes {
            match (change.action, change.target.as_str()) {
                (Action::Start, "supervisord") => {
                    let config = self.config.display().to_string();
                    run_spec(ctx, &spec("supervisord", &["-c", &config]), HINT).await?;
                    // supervisord daemonizes; wait for its socket to answer.
                    for _ in 0..50 {
                        if self.status(ctx).await?.is_some() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                (Action::Update, _) => {
                    self.ctl(ctx, &["update"]).await?;
                }
                (Action::Start, program) => {
                    self.ctl_allow_already(ctx, &["start", program]).await?;
                }
                (Action::Restart, program) => {
                    self.ctl(ctx, &["restart", program]).await?;
                }
                _ => {}
            }
        }
        let status = self.status(ctx).await?.unwrap_or_default();
        for program in &self.programs {
            let states: Vec<&str> = matching(&status, program).collect();
            if states.is_empty() || states.iter().any(|s| *s != "RUNNING") {
                return Err(StateError::Conflict {
                    path: PathBuf::from(program),
                    problem: format!(
                        "is not running under supervisord (status: {}); see its log",
                        if states.is_empty() { "unknown program".to_string() } else { states.join(", ") }
                    ),
                });
            }
        }
        crate::watch::save(ctx, &self.state_id, &self.watch)?;
        Ok(plan.into())
    }

    /// Program → state (`RUNNING`, `STOPPED`, …), or `None` when supervisord does not answer.
    async fn status(&self, ctx: &Ctx) -> Result<Option<BTreeMap<String, String>>, StateError> {
        let config = self.config.display().to_string();
        let out = match run_spec(ctx, &spec("supervisorctl", &["-c", &config, "status"]), HINT).await {
            Ok(out) => out.stdout,
            // supervisorctl exits non-zero when a program is not running; its output still lists them.
            Err(StateError::Command { termination: Termination::Exited(code), stdout, .. }) if code != 2 => stdout,
            Err(StateError::Command { termination: Termination::Exited(_), .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&out.bytes);
        if text.contains("no such file") || text.contains("refused connection") || text.contains("SHUTDOWN_STATE") {
            return Ok(None);
        }
        Ok(Some(
            text.lines()
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    Some((words.next()?.to_string(), words.next()?.to_string()))
                })
                .collect(),
        ))
    }

    async fn ctl(&self, ctx: &Ctx, args: &[&str]) -> Result<String, StateError> {
        let config = self.config.display().to_string();
        let mut all = vec!["-c", config.as_str()];
        all.extend(args);
        let out = run_spec(ctx, &spec("supervisorctl", &all), HINT).await?;
        Ok(String::from_utf8_lossy(&out.stdout.bytes).into_owned())
    }

    /// `start` of a program that another action already started is fine.
    async fn ctl_allow_already(&self, ctx: &Ctx, args: &[&str]) -> Result<(), StateError> {
        match self.ctl(ctx, args).await {
            Ok(_) => Ok(()),
            Err(StateError::Command { stdout, .. })
                if String::from_utf8_lossy(&stdout.bytes).contains("already started") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The states of the programs `pattern` names (`name`, or `group:*`).
fn matching<'a>(status: &'a BTreeMap<String, String>, pattern: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    status
        .iter()
        .filter(move |(name, _)| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name.as_str() == pattern,
        })
        .map(|(_, state)| state.as_str())
}

fn spec(program: &str, args: &[&str]) -> Spec {
    Spec { program: program.into(), args: args.iter().map(|a| a.to_string()).collect(), ..Spec::default() }
}

//! `linux.service` — services running (and, if asked, started at boot), restarted when a watched file changes.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: service → action on change | required | the original's `[{"key": svc, "value": action}]` list or a plain mapping; the action is `restart` (the default when empty), `reload`, or a shell command run instead (as the original's fork did) |
//! | `watch` | list of absolute paths | — | when one of these files changes, the running services get their action |
//! | `enable` | bool | unmanaged | ours: also make the services start at boot |
//!
//! The init system is the machine's: systemd when it runs the machine (`systemctl`), else SysV
//! init scripts (`/etc/init.d/NAME start|status|restart|reload`, `update-rc.d` to enable).
//! "Already fine" means every service is running (its `status` succeeds), enabled if asked, and no
//! watched file changed since the last successful run. Watched files are fingerprinted (SHA-256)
//! into `<state dir>/watch/<state id>.json`, saved only after the state succeeds, so a failed
//! restart is tried again next round; as in the original, the first time a state sees its watched
//! files counts as a change. A service that is not running is started (which reads the new files),
//! not restarted. After acting, every service must be running, else the state fails. `--test` lists
//! each start, restart, reload, command and enable, with the files that changed.
//!
//! ```yaml
//! - id: nginx-running
//!   module: linux.service
//!   parameter: { name: { nginx: reload }, watch: [/etc/nginx/nginx.conf], enable: true }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use crate::process::{run_spec, Spec};
use crate::providers::service::{self, InitSystem, Op};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// What a service gets when a watched file changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnChange {
    Restart,
    Reload,
    /// A shell command, run with `/bin/sh -c`.
    Command(String),
}

/// A validated `linux.service`.
#[derive(Debug, Clone)]
pub struct Service {
    pub state_id: String,
    /// In recipe order.
    pub services: Vec<(String, OnChange)>,
    pub watch: Vec<PathBuf>,
    pub enable: Option<bool>,
}

impl Service {
    pub fn from_params(state: &State) -> Result<(Service, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("name").and_then(|n| n.pos);
        let mut services = Vec::new();
        match p.dict("name") {
            None if !p.has("name") => p.report(
                Kind::MissingParameter,
                "name",
                None,
                "required parameter `name` is missing",
                Some("name the services, e.g. `name: { nginx: reload }`".into()),
            ),
            None => {}
            Some(entries) if entries.is_empty() => p.report(
                Kind::BadValue,
                "name",
                pos,
                "`name` lists no service",
                Some("name at least one service".into()),
            ),
            Some(entries) => {
                for entry in entries {
                    if !valid_service_name(&entry.key) {
                        p.report(
                            Kind::BadValue,
                            &format!("name.{}", entry.key),
                            pos,
                            format!("`{}` is not a service name", entry.key),
                            Some("a service name has letters, digits and `.-_@:` only".into()),
                        );
                        continue;
                    }
                    let on_change = match entry.value.as_deref().map(str::trim) {
                        None | Some("") | Some("restart") => OnChange::Restart,
                        Some("reload") => OnChange::Reload,
                        Some(command) => OnChange::Command(command.to_string()),
                    };
                    services.push((entry.key, on_change));
                }
            }
        }
        let watch_pos = p.node("watch").and_then(|n| n.pos);
        let watch_list = p.string_list("watch").unwrap_or_default();
        let watch = watch_list
            .iter()
            .enumerate()
            .filter_map(|(i, path)| check_absolute(&mut p, &format!("watch[{i}]"), watch_pos, path))
            .collect();
        let enable = p.bool("enable");
        let warnings = p.finish(&["name", "watch", "enable"], &[])?;
        Ok((Service { state_id: state.id.clone(), services, watch, enable }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let init = InitSystem::detect();
        let mut plan = Plan::default();
        let changed = crate::watch::changed_files(ctx, &self.state_id, &self.watch)?;
        for (name, on_change) in &self.services {
            if !service::exists(ctx, init, name).await? {
                return Err(StateError::Conflict {
                    path: PathBuf::from(name),
                    problem: format!(
                        "is not a service known to {} on this machine; install it first (an earlier state of the recipe can)",
                        init.as_str()
                    ),
                });
            }
            if !service::is_running(ctx, init, name).await? {
                plan.changes.push(Change::new(Action::Start, name, format!("not running ({})", init.as_str())));
            } else if !changed.is_empty() {
                let why = format!("changed: {}", changed.join(", "));
                plan.changes.push(match on_change {
                    OnChange::Restart => Change::new(Action::Restart, name, why),
                    OnChange::Reload => Change::new(Action::Reload, name, why),
                    OnChange::Command(cmd) => Change::new(Action::Run, cmd, format!("for {name}; {why}")),
                });
            }
            if self.enable == Some(true) && !service::is_enabled(ctx, init, name).await? {
                plan.changes.push(Change::new(Action::Enable, name, "start at boot"));
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let init = InitSystem::detect();
        for change in &plan.changes {
            match change.action {
                Action::Start => service::run(ctx, init, &change.target, Op::Start).await?,
                Action::Restart => service::run(ctx, init, &change.target, Op::Restart).await?,
                Action::Reload => service::run(ctx, init, &change.target, Op::Reload).await?,
                Action::Enable => service::enable(ctx, init, &change.target).await?,
                Action::Run => {
                    let spec = Spec {
                        program: "/bin/sh".into(),
                        args: vec!["-c".into(), change.target.clone()],
                        ..Spec::default()
                    };
                    run_spec(ctx, &spec, "").await?;
                }
                Action::Create | Action::Update | Action::Remove | Action::Chmod | Action::Chown => {}
            }
        }
        for (name, _) in &self.services {
            if !service::is_running(ctx, init, name).await? {
                return Err(StateError::Conflict {
                    path: PathBuf::from(name),
                    problem: "is still not running; see its log or its init script's output".into(),
                });
            }
        }
        crate::watch::save(ctx, &self.state_id, &self.watch)?;
        Ok(plan.into())
    }
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_@:".contains(c))
}

//! `linux.docker.built` — a Docker image built from a directory with a `Dockerfile`, rebuilt when the `Dockerfile` changes.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `tag` | string | required | the image name, e.g. `namespace/app` (tag `latest`) or `namespace/app:1.2` |
//! | `path` | absolute path | required | the build context: a directory holding the `Dockerfile` |
//! | `containers` | list of container names | — | removed after a (re)build, so that their `linux.docker.running` states recreate them from the new image |
//! | `force` | bool | `false` | rebuild on every round (and so remove `containers` every round), as in the original |
//! | `watch` | bool | — | accepted for compatibility and ignored: `PATH/Dockerfile` is always watched |
//!
//! "Already fine" means the image exists and `PATH/Dockerfile` has not changed since the last
//! successful run (a SHA-256 fingerprint under `<state dir>/watch/<state id>.json`, saved only
//! after success; as in the original, a Dockerfile never seen before counts as changed, so an
//! image built by other means is rebuilt once). Only the `Dockerfile` is watched, not the other
//! files of the context. `--test` shows `create IMAGE (build from PATH)` or `update IMAGE
//! (rebuild: Dockerfile changed)` / `(rebuild: force)`, and one `remove` per listed container
//! that exists. The build runs `docker build -t IMAGE PATH`; its output is the state's output.
//!
//! ```yaml
//! - id: app-image
//!   module: linux.docker.built
//!   parameter: { tag: example/app, path: /srv/app, containers: [app] }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, ParamReader, State};

use super::linux_file::absolute_path;
use crate::providers::docker::{self, ImageRef};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.docker.built`.
#[derive(Debug, Clone)]
pub struct Built {
    pub state_id: String,
    pub image: ImageRef,
    pub path: PathBuf,
    pub containers: Vec<String>,
    pub force: bool,
}

impl Built {
    pub fn from_params(state: &State) -> Result<(Built, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        // The image's own tag can only be written inside `tag` (`name:1.2`).
        let image = docker::read_image_ref(&mut p, "tag", "_no_such_parameter", "namespace/app");
        let path = absolute_path(&mut p, "path");
        let containers = docker::read_containers(&mut p, "containers");
        let force = p.bool("force").unwrap_or(false);
        let warnings = p.finish(&["tag", "path", "containers", "force", "watch"], &["watch"])?;
        Ok((
            Built {
                state_id: state.id.clone(),
                image: image.expect("finish fails when `tag` is missing or invalid"),
                path: path.expect("finish fails when `path` is missing or invalid"),
                containers,
                force,
            },
            warnings,
        ))
    }

    fn dockerfile(&self) -> PathBuf {
        self.path.join("Dockerfile")
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let dockerfile = self.dockerfile();
        if !dockerfile.is_file() {
            return Err(StateError::Conflict {
                path: dockerfile,
                problem: "does not exist; `path` must be a directory holding a `Dockerfile`".into(),
            });
        }
        let full = self.image.full();
        let changed = crate::watch::changed_files(ctx, &self.state_id, std::slice::from_ref(&dockerfile))?;
        let change = match docker::image(ctx, &full).await? {
            None => Change::new(Action::Create, &full, format!("build from {}", self.path.display())),
            Some(_) if self.force => Change::new(Action::Update, &full, "rebuild: force"),
            Some(_) if !changed.is_empty() => Change::new(Action::Update, &full, "rebuild: Dockerfile changed"),
            Some(_) => return Ok(Plan::default()),
        };
        let mut plan = Plan { changes: vec![change], diff: None };
        for name in &self.containers {
            if docker::container(ctx, name).await?.is_some() {
                plan.changes.push(Change::new(
                    Action::Remove,
                    format!("container {name}"),
                    "its image was rebuilt; its linux.docker.running state recreates it",
                ));
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome = Outcome { changes: plan.changes.clone(), ..Outcome::default() };
        let full = self.image.full();
        let context = self.path.display().to_string();
        for change in &plan.changes {
            match change.action {
                Action::Create | Action::Update => {
                    let out = docker::docker(ctx, &["build", "-t", &full, &context]).await?;
                    outcome.stdout = Some(out.stdout);
                }
                Action::Remove => {
                    docker::remove_container(ctx, change.target.trim_start_matches("container ")).await?;
                }
                _ => {}
            }
        }
        crate::watch::save(ctx, &self.state_id, &[self.dockerfile()])?;
        Ok(outcome)
    }
}

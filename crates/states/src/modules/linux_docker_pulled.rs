//! `linux.docker.pulled` — a Docker image present locally as the registry serves it now.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `repo` | string | required | the image, e.g. `namespace/app` or `registry.example.com:5000/app`; a `:tag` may be written here instead of in `tag` |
//! | `tag` | string | `latest` | |
//! | `username`, `password` | strings | — | registry credentials; given to docker for this state only (a private `DOCKER_CONFIG`), never written to `~/.docker/config.json` |
//! | `email` | string | — | accepted for compatibility and ignored (docker no longer takes it) |
//! | `containers` | list of container names | — | removed when a new image is pulled, so that their `linux.docker.running` states recreate them from it |
//!
//! "Already fine" means the local image `repo:tag` has the id (the digest of its configuration)
//! that the registry serves for this machine's platform now. `check` asks the registry for the
//! manifest (`docker manifest inspect`, read-only, over plain HTTP only for registries the daemon
//! treats as insecure) and compares; it pulls nothing. `--test` shows `create repo:tag (pull
//! sha256:…)` or `update repo:tag (pull sha256:old -> sha256:new)`, and one `remove` per listed
//! container that exists. The original pulled on every round and always reported success
//! without changes; here a pull happens only when the registry has something new, and it is
//! reported. Every `docker` call goes through the `docker` client on `PATH`, to the daemon that
//! `DOCKER_HOST` names (the local socket by default); a daemon that does not answer fails the
//! state with one line naming its address.
//!
//! ```yaml
//! - id: app-image
//!   module: linux.docker.pulled
//!   parameter: { repo: registry.example.com:5000/app, tag: "1.4", containers: [app] }
//! ```

use opsagent_recipe::{Diagnostic, ParamReader, State};

use crate::providers::docker::{self, Credentials, ImageRef};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.docker.pulled`.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: ImageRef,
    pub credentials: Option<Credentials>,
    pub containers: Vec<String>,
}

impl Pulled {
    pub fn from_params(state: &State) -> Result<(Pulled, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pulled = Pulled::read(&mut p, "repo");
        let warnings = p.finish(&["repo", "tag", "username", "password", "email", "containers"], &["email"])?;
        Ok((pulled.expect("finish fails when `repo` is missing or invalid"), warnings))
    }

    /// Reads the parameters shared with `linux.docker.deploy` (the image from `repo_param`).
    pub(crate) fn read(p: &mut ParamReader<'_>, repo_param: &str) -> Option<Pulled> {
        let image = docker::read_image_ref(p, repo_param, "tag", "namespace/app");
        let credentials = docker::read_credentials(p);
        let containers = docker::read_containers(p, "containers");
        Some(Pulled { image: image?, credentials, containers })
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        Ok(Plan { changes: self.plan(ctx).await?.0, diff: None })
    }

    /// The changes, and the image id the registry serves when a pull is needed.
    pub(crate) async fn plan(&self, ctx: &Ctx) -> Result<(Vec<Change>, Option<String>), StateError> {
        let full = self.image.full();
        let local = docker::image(ctx, &full).await?;
        let Some(remote) = docker::registry_image_id(ctx, &self.image, self.credentials.as_ref()).await? else {
            return Err(docker::failed(
                "pull",
                format!(
                    "registry `{}` has no image `{full}`{}",
                    self.image.registry(),
                    // docker's client says "no such manifest" for refused credentials too.
                    if self.credentials.is_some() { " (or it refused the credentials)" } else { "" }
                ),
                Default::default(),
            ));
        };
        let mut changes = match &local {
            None => vec![Change::new(Action::Create, &full, format!("pull {}", docker::short(&remote)))],
            Some(image) if image.id != remote => vec![Change::new(
                Action::Update,
                &full,
                format!("pull {} -> {}", docker::short(&image.id), docker::short(&remote)),
            )],
            Some(_) => return Ok((Vec::new(), None)),
        };
        for name in &self.containers {
            if docker::container(ctx, name).await?.is_some() {
                changes.push(Change::new(
                    Action::Remove,
                    format!("container {name}"),
                    "its image was replaced; its linux.docker.running state recreates it",
                ));
            }
        }
        Ok((changes, Some(remote)))
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome = Outcome { changes: plan.changes.clone(), ..Outcome::default() };
        for change in &plan.changes {
            match change.action {
                Action::Create | Action::Update => {
                    let out = docker::pull(ctx, &self.image, self.credentials.as_ref()).await?;
                    outcome.stdout = Some(out.stdout);
                }
                Action::Remove => {
                    let name = change.target.trim_start_matches("container ");
                    docker::remove_container(ctx, name).await?;
                }
                _ => {}
            }
        }
        Ok(outcome)
    }
}

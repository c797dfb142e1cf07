//! `linux.docker.pushed` — a local Docker image (or a container committed to one) present in a registry.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `repository` | string | required | where to push, e.g. `registry.example.com:5000/app`; a `:tag` may be written here instead of in `tag` |
//! | `tag` | string | `latest` | |
//! | `container` | string | — | commit this container to `repository:tag` first (`docker commit`) |
//! | `message`, `author` | strings | — | the commit's message and author (with `container`) |
//! | `username`, `password` | strings | — | registry credentials; given to docker for this state only, never written to `~/.docker/config.json` |
//! | `email` | string | — | accepted for compatibility and ignored |
//! | `dep_containers` | list of container names | — | removed after a push, so that their `linux.docker.running` states recreate them |
//!
//! Without `container`, "already fine" means the registry serves, for `repository:tag`, the
//! image that is `repository:tag` locally (same image id); `check` asks the registry
//! (`docker manifest inspect`, read-only) and `--test` shows `create REPO:TAG (push sha256:…)` or
//! `update REPO:TAG (push sha256:old -> sha256:new)`. A missing local image fails the state.
//! With `container`, the container's content cannot be compared without committing it, so, as
//! in the original, every round commits and pushes (`update REPO:TAG (commit container NAME and
//! push)`); the push itself uploads only the layers the registry lacks.
//!
//! ```yaml
//! - id: publish
//!   module: linux.docker.pushed
//!   parameter: { repository: registry.example.com:5000/app, tag: "1.4" }
//! ```

use opsagent_recipe::{Diagnostic, ParamReader, State};

use crate::providers::docker::{self, Credentials, ImageRef};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.docker.pushed`.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub image: ImageRef,
    pub container: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub credentials: Option<Credentials>,
    pub dep_containers: Vec<String>,
}

impl Pushed {
    pub fn from_params(state: &State) -> Result<(Pushed, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let image = docker::read_image_ref(&mut p, "repository", "tag", "namespace/app");
        let container_pos = p.node("container").and_then(|n| n.pos);
        let container = p.string("container").map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
        if let Some(c) = &container {
            docker::check_container_name(&mut p, "container", container_pos, c);
        }
        let message = p.string("message").filter(|m| !m.is_empty());
        let author = p.string("author").filter(|a| !a.is_empty());
        let credentials = docker::read_credentials(&mut p);
        let dep_containers = docker::read_containers(&mut p, "dep_containers");
        let warnings = p.finish(
            &["repository", "tag", "container", "message", "author", "username", "password", "email", "dep_containers"],
            &["email"],
        )?;
        Ok((
            Pushed {
                image: image.expect("finish fails when `repository` is missing or invalid"),
                container,
                message,
                author,
                credentials,
                dep_containers,
            },
            warnings,
        ))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let full = self.image.full();
        let change = match &self.container {
            Some(container) => {
                if docker::container(ctx, container).await?.is_none() {
                    return Err(docker::failed(
                        "commit",
                        format!("there is no container `{container}` to commit"),
                        Default::default(),
                    ));
                }
                Change::new(Action::Update, &full, format!("commit container {container} and push"))
            }
            None => {
                let Some(local) = docker::image(ctx, &full).await? else {
                    return Err(docker::failed(
                        "push",
                        format!("there is no local image `{full}` to push; build or pull it in an earlier state"),
                        Default::default(),
                    ));
                };
                match docker::registry_image_id(ctx, &self.image, self.credentials.as_ref()).await? {
                    None => Change::new(Action::Create, &full, format!("push {}", docker::short(&local.id))),
                    Some(remote) if remote != local.id => Change::new(
                        Action::Update,
                        &full,
                        format!("push {} -> {}", docker::short(&remote), docker::short(&local.id)),
                    ),
                    Some(_) => return Ok(Plan::default()),
                }
            }
        };
        let mut plan = Plan { changes: vec![change], diff: None };
        for name in &self.dep_containers {
            if docker::container(ctx, name).await?.is_some() {
                plan.changes.push(Change::new(
                    Action::Remove,
                    format!("container {name}"),
                    "a new image was pushed; its linux.docker.running state recreates it",
                ));
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome = Outcome { changes: plan.changes.clone(), ..Outcome::default() };
        let full = self.image.full();
        let registry = self.image.registry();
        for change in &plan.changes {
            match change.action {
                Action::Create | Action::Update => {
                    if let Some(container) = &self.container {
                        let mut args = vec!["commit"];
                        if let Some(m) = &self.message {
                            args.extend(["--message", m]);
                        }
                        if let Some(a) = &self.author {
                            args.extend(["--author", a]);
                        }
                        args.extend([container.as_str(), full.as_str()]);
                        docker::docker(ctx, &args).await?;
                    }
                    let auth = self.credentials.as_ref().map(|c| (registry.as_str(), c));
                    let out = docker::docker_with(ctx, &["push", &full], auth, &[]).await?;
                    outcome.stdout = Some(out.stdout);
                }
                Action::Remove => {
                    docker::remove_container(ctx, change.target.trim_start_matches("container ")).await?;
                }
                _ => {}
            }
        }
        Ok(outcome)
    }
}

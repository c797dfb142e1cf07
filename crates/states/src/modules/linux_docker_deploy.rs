//! `linux.docker.deploy` — pull an image and run containers from it, with configuration files written by the agent and mounted into them.
//!
//! The parameters of `linux.docker.running` (`container`, `image`, `tag`, `command`,
//! `environment`, `volumes`, `devices`, `mem_limit`, `cpu_shares`, `port_bindings`, `count`,
//! `force`, `username`, `password`, `email`), plus:
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `files` | dict: container path → content | — | each file is written to `<state dir>/docker-config/<container>/<path with / replaced by ->` (mode 0644) and mounted read-only at its container path |
//!
//! One state does what the original split into file, pull and run steps, in that order:
//! the image is pulled when the registry serves a new one (as `linux.docker.pulled`), the files
//! are written when their content differs (with a diff, hidden for `sensitive` states), and the
//! containers are checked as `linux.docker.running` does, against the image id the pull brings
//! (so `--test` already shows the recreation a new image causes). A container whose files changed,
//! and that is not recreated anyway, is restarted, so that it sees the new files (the original
//! ran the whole state a second time for that). "Already fine" means all three parts are.
//!
//! ```yaml
//! - id: proxy
//!   module: linux.docker.deploy
//!   parameter:
//!     container: proxy
//!     image: registry.example.com:5000/nginx
//!     port_bindings: { 80/tcp: 8080 }
//!     files: { /etc/nginx/nginx.conf: "events {}\nhttp { server { listen 80; } }\n" }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_docker_pulled::Pulled;
use super::linux_docker_running::{read_dict, Running, PARAMS};
use super::linux_file::check_absolute;
use crate::ctx::Owner;
use crate::providers::docker;
use crate::{diff, fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.docker.deploy`.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub pulled: Pulled,
    pub running: Running,
    /// Container path → content, in recipe order.
    pub files: Vec<(PathBuf, String)>,
}

impl Deploy {
    pub fn from_params(state: &State) -> Result<(Deploy, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let running = Running::read(&mut p, state);
        let files_pos = p.node("files").and_then(|n| n.pos);
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        for (target, content) in read_dict(&mut p, "files") {
            let Some(path) = check_absolute(&mut p, &format!("files.{target}"), files_pos, &target) else {
                continue;
            };
            if files.iter().any(|(other, _)| host_name(other) == host_name(&path)) {
                p.report(
                    Kind::BadValue,
                    &format!("files.{target}"),
                    files_pos,
                    format!("`{target}` would be stored in the same host file as another entry"),
                    Some("give each file its own container path".into()),
                );
                continue;
            }
            files.push((path, content));
        }
        let mut known = PARAMS.to_vec();
        known.push("files");
        let warnings = p.finish(&known, &["email"])?;
        let running = running.expect("finish fails when `container` or `image` is missing or invalid");
        let pulled =
            Pulled { image: running.image.clone(), credentials: running.credentials.clone(), containers: Vec::new() };
        Ok((Deploy { pulled, running, files }, warnings))
    }

    /// Where file `target` is kept on the host.
    fn host_path(&self, ctx: &Ctx, target: &std::path::Path) -> PathBuf {
        docker::files_dir(&ctx.round.state_dir, &self.running.container).join(host_name(target))
    }

    /// The running part, with the files mounted.
    fn running_with_files(&self, ctx: &Ctx) -> Running {
        let mut running = self.running.clone();
        for (target, _) in &self.files {
            running.binds.push(format!("{}:{}:ro", self.host_path(ctx, target).display(), target.display()));
        }
        running
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let (mut changes, new_image_id) = self.pulled.plan(ctx).await?;
        let mut diffs = String::new();
        for (target, content) in &self.files {
            let host = self.host_path(ctx, target);
            let shown = host.display().to_string();
            let current = match std::fs::read(&host) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(StateError::io("reading", &host)(e)),
            };
            let detail = format!("{} bytes, mounted at {}", content.len(), target.display());
            match &current {
                None => changes.push(Change::new(Action::Create, &shown, detail)),
                Some(bytes) if bytes != content.as_bytes() => changes.push(Change::new(Action::Update, &shown, detail)),
                Some(_) => continue,
            }
            if !ctx.sensitive {
                diffs.push_str(&diff::unified(&shown, current.as_deref().unwrap_or(b""), content.as_bytes()));
            }
        }
        let files_changed = changes.iter().any(|c| !c.target.starts_with("container ") && c.target.starts_with('/'));
        let running = self.running_with_files(ctx);
        changes.extend(running.plan(ctx, new_image_id.as_deref(), files_changed).await?);
        Ok(Plan { changes, diff: (!diffs.is_empty()).then_some(diffs) })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome = Outcome { changes: plan.changes.clone(), diff: plan.diff.clone(), ..Outcome::default() };
        let running = self.running_with_files(ctx);
        let image = self.pulled.image.full();
        let mut output = String::new();
        for change in &plan.changes {
            if change.target == image {
                let out = docker::pull(ctx, &self.pulled.image, self.pulled.credentials.as_ref()).await?;
                output.push_str(&String::from_utf8_lossy(&out.stdout.bytes));
            } else if change.target.starts_with('/') {
                self.write_file(ctx, &change.target)?;
            } else {
                output.push_str(&running.apply_change(ctx, change).await?);
            }
        }
        if !output.is_empty() {
            outcome.stdout = Some(crate::Tail::from_bytes(output.into_bytes(), ctx.round.max_output_bytes));
        }
        Ok(outcome)
    }

    fn write_file(&self, ctx: &Ctx, host: &str) -> Result<(), StateError> {
        let Some((_, content)) = self.files.iter().find(|(t, _)| self.host_path(ctx, t).display().to_string() == host)
        else {
            return Ok(());
        };
        let path = PathBuf::from(host);
        let dir = fsutil::parent_of(&path);
        std::fs::create_dir_all(dir).map_err(StateError::io("creating", dir))?;
        fsutil::write_atomic(&path, content.as_bytes(), 0o644, Owner::default())
            .map_err(StateError::io("writing", &path))
    }
}

/// The host file name of container path `target`: its `/` replaced by `-`, as in the original.
fn host_name(target: &std::path::Path) -> String {
    target.display().to_string().trim_start_matches('/').replace('/', "-")
}

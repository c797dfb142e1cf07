//! `common.hg` — a Mercurial checkout at a branch, tag or changeset, kept up to date.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `repo` | URL or path | required | anything `hg clone` takes |
//! | `path` | absolute path | required | the working copy; created by the first clone |
//! | `revision` | branch, tag, bookmark or changeset | `default` | the original's IDE default |
//! | `force` | bool | `false` | discard local changes to reach the revision; without it, local changes fail the state |
//! | `user` | user name | the agent's user | hg runs as this user (`HOME` set), so the working copy belongs to it |
//!
//! "Already fine" means `path` is a working copy of `repo` whose parent is the changeset the
//! revision names in `repo` now (asked with `hg identify`, which changes nothing locally) and has no
//! local changes. `--test` shows the clone, or the move from one changeset to the other. hg runs
//! with `HGPLAIN=1`, so the user's configuration cannot change its output.
//!
//! ```yaml
//! - id: tools-source
//!   module: common.hg
//!   parameter: { repo: "https://hg.example.com/tools", path: /opt/tools, revision: stable }
//! ```

use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, ParamReader, State};

use super::common_git::plan_update;
use super::linux_file::absolute_path;
use crate::process::{run_spec, Spec};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const HG_HINT: &str = "install the `mercurial` package (an earlier `linux.apt.package` state can)";

/// A validated `common.hg`.
#[derive(Debug, Clone)]
pub struct Hg {
    pub repo: String,
    pub path: PathBuf,
    pub revision: String,
    pub force: bool,
    pub user: Option<String>,
}

impl Hg {
    pub fn from_params(state: &State) -> Result<(Hg, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let repo = p.required_string("repo", "name the repository, e.g. `repo: https://hg.example.com/tools`");
        let path = absolute_path(&mut p, "path");
        let revision = p.string("revision").filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "default".into());
        let force = p.bool("force").unwrap_or(false);
        let user = p.string("user");
        let warnings = p.finish(&["repo", "path", "revision", "force", "user"], &[])?;
        let (Some(repo), Some(path)) = (repo, path) else {
            unreachable!("finish fails when `repo` or `path` is missing or invalid");
        };
        Ok((Hg { repo, path, revision, force, user }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let shown = self.path.display().to_string();
        let mut plan = Plan::default();
        let target = self.remote_changeset(ctx).await?;
        if !self.path.join(".hg").exists() {
            if self.path.exists() && std::fs::read_dir(&self.path).map(|mut d| d.next().is_some()).unwrap_or(true) {
                return Err(StateError::Conflict {
                    path: self.path.clone(),
                    problem: "exists and is not a Mercurial working copy; remove it or choose another path".into(),
                });
            }
            plan.changes.push(Change::new(
                Action::Create,
                &shown,
                format!("clone {} at {}", self.repo, short(&target)),
            ));
            return Ok(plan);
        }
        let origin = self.hg_in(ctx, &["paths", "default"]).await.unwrap_or_default();
        if origin.trim() != self.repo && Path::new(origin.trim()) != Path::new(&self.repo) {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                problem: format!(
                    "is a clone of `{}`, not of `{}`; remove it or choose another path",
                    origin.trim(),
                    self.repo
                ),
            });
        }
        let parent = self.hg_in(ctx, &["log", "-r", ".", "-T", "{node}"]).await?.trim().to_string();
        let dirty = !self.hg_in(ctx, &["status", "-mard"]).await?.trim().is_empty();
        plan_update(&mut plan, &self.path, dirty, self.force, &parent, &target, short)?;
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if !self.path.join(".hg").exists() {
            let parent = crate::fsutil::parent_of(&self.path);
            std::fs::create_dir_all(parent).map_err(StateError::io("creating directory", parent))?;
            let path = self.path.display().to_string();
            self.hg(ctx, None, &["clone", "--noupdate", "--quiet", &self.repo, &path]).await?;
        } else {
            self.hg_in(ctx, &["pull", "--quiet"]).await?;
        }
        let target = self.remote_changeset(ctx).await?;
        let mut args = vec!["update", "--quiet", "-r", target.as_str()];
        if self.force {
            args.push("--clean");
        }
        self.hg_in(ctx, &args).await?;
        Ok(plan.into())
    }

    /// The full changeset id the revision names in the repository now.
    async fn remote_changeset(&self, ctx: &Ctx) -> Result<String, StateError> {
        match self.hg(ctx, None, &["identify", "--debug", "-i", "-r", &self.revision, &self.repo]).await {
            Ok(id) => Ok(id.trim().trim_end_matches('+').to_string()),
            Err(StateError::Command { .. }) => Err(StateError::Conflict {
                path: PathBuf::from(&self.repo),
                problem: format!("has no branch, tag, bookmark or changeset `{}` (or cannot be read)", self.revision),
            }),
            Err(e) => Err(e),
        }
    }

    async fn hg_in(&self, ctx: &Ctx, args: &[&str]) -> Result<String, StateError> {
        self.hg(ctx, Some(&self.path), args).await
    }

    async fn hg(&self, ctx: &Ctx, dir: Option<&Path>, args: &[&str]) -> Result<String, StateError> {
        let mut spec =
            Spec { program: "hg".into(), args: args.iter().map(|a| a.to_string()).collect(), ..Spec::default() };
        spec.cwd = dir.map(Path::to_path_buf);
        spec.env.push(("HGPLAIN".into(), "1".into()));
        if let Some(user) = &self.user {
            let info = ctx.round.user(user)?;
            spec.uid = Some(info.uid);
            spec.gid = Some(info.gid);
            spec.env.push(("HOME".into(), info.home.display().to_string()));
        }
        let output = run_spec(ctx, &spec, HG_HINT).await?;
        Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned())
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

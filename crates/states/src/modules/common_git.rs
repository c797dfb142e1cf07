//! `common.git` — a git checkout at a branch, tag or commit, kept up to date.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `repo` | URL or path | required | anything `git clone` takes (`https://…`, `git@host:…`, `file:///…`, `/srv/repo.git`) |
//! | `path` | absolute path | required | the working tree; created by the first clone |
//! | `revision` | branch, tag or commit | the remote's default branch | the original's IDE filled in `master`; a branch follows the remote branch, a tag or commit is checked out detached |
//! | `ssh-key-file` | absolute path | — | the private key for ssh URLs (`ssh -i KEY -o IdentitiesOnly=yes`) |
//! | `force` | bool | `false` | discard local changes to reach the revision; without it, local changes fail the state |
//! | `user` | user name | the agent's user | git runs as this user (`HOME` set), so the checkout belongs to it |
//!
//! "Already fine" means `path` is a checkout of `repo` whose `HEAD` is the commit the revision names
//! on the remote now (asked with `git ls-remote`, which changes nothing locally) and has no local
//! changes. `--test` shows the clone, or the move from one commit to the other. A checkout of
//! another repository at `path` is an error (remove it or point `path` elsewhere).
//!
//! ```yaml
//! - id: app-source
//!   module: common.git
//!   parameter: { repo: "https://git.example.com/app.git", path: /srv/app, revision: v1.4.2, user: app }
//! ```

use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::{absolute_path, check_absolute};
use crate::process::{run_spec, Spec};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const GIT_HINT: &str = "install the `git` package (an earlier `linux.apt.package` state can)";

/// A validated `common.git`.
#[derive(Debug, Clone)]
pub struct Git {
    pub repo: String,
    pub path: PathBuf,
    pub revision: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub force: bool,
    pub user: Option<String>,
}

impl Git {
    pub fn from_params(state: &State) -> Result<(Git, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let repo = p.required_string("repo", "name the repository, e.g. `repo: https://git.example.com/app.git`");
        let path = absolute_path(&mut p, "path");
        let revision_pos = p.node("revision").and_then(|n| n.pos);
        let revision = p.string("revision").filter(|r| !r.trim().is_empty());
        if let Some(r) = &revision {
            if r.starts_with('-') || r.contains("..") || r.chars().any(|c| c.is_whitespace() || "~^:?*[\\".contains(c))
            {
                p.report(
                    Kind::BadValue,
                    "revision",
                    revision_pos,
                    format!("`{r}` is not a branch, tag or commit name"),
                    Some("write a branch (`main`), a tag (`v1.2`) or a commit id".into()),
                );
            }
        }
        let key_pos = p.node("ssh-key-file").and_then(|n| n.pos);
        let ssh_key = p.string("ssh-key-file").and_then(|k| check_absolute(&mut p, "ssh-key-file", key_pos, &k));
        let force = p.bool("force").unwrap_or(false);
        let user = p.string("user");
        let warnings = p.finish(&["repo", "path", "revision", "ssh-key-file", "force", "user"], &[])?;
        let (Some(repo), Some(path)) = (repo, path) else {
            unreachable!("finish fails when `repo` or `path` is missing or invalid");
        };
        Ok((Git { repo, path, revision, ssh_key, force, user }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let shown = self.path.display().to_string();
        let mut plan = Plan::default();
        let target = self.remote_commit(ctx).await?;
        if !self.path.join(".git").exists() {
            if self.path.exists() && std::fs::read_dir(&self.path).map(|mut d| d.next().is_some()).unwrap_or(true) {
                return Err(StateError::Conflict {
                    path: self.path.clone(),
                    problem: "exists and is not a git checkout; remove it or choose another path".into(),
                });
            }
            plan.changes.push(Change::new(
                Action::Create,
                &shown,
                format!("clone {} at {}", self.repo, short(&target)),
            ));
            return Ok(plan);
        }
        let origin = self.git_in(ctx, &["config", "--get", "remote.origin.url"]).await.unwrap_or_default();
        if origin.trim() != self.repo {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                problem: format!(
                    "is a checkout of `{}`, not of `{}`; remove it or choose another path",
                    origin.trim(),
                    self.repo
                ),
            });
        }
        let head = self.git_in(ctx, &["rev-parse", "HEAD"]).await?.trim().to_string();
        let dirty = !self.git_in(ctx, &["status", "--porcelain", "--untracked-files=no"]).await?.trim().is_empty();
        plan_update(&mut plan, &self.path, dirty, self.force, &head, &target, short)?;
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if !self.path.join(".git").exists() {
            let parent = crate::fsutil::parent_of(&self.path);
            std::fs::create_dir_all(parent).map_err(StateError::io("creating directory", parent))?;
            let path = self.path.display().to_string();
            self.git(ctx, None, &["clone", "--no-checkout", "--quiet", &self.repo, &path]).await?;
        } else {
            self.git_in(ctx, &["fetch", "--quiet", "--tags", "--prune", "origin"]).await?;
        }
        let target = self.remote_commit(ctx).await?;
        // The commit may not be in the clone yet (a commit id that no ref names): fetch it.
        if self.git_in(ctx, &["cat-file", "-e", &format!("{target}^{{commit}}")]).await.is_err() {
            self.git_in(ctx, &["fetch", "--quiet", "origin", &target]).await?;
        }
        let force = if self.force { vec!["--force"] } else { Vec::new() };
        match self.branch(ctx).await? {
            Some(branch) => {
                let mut args = vec!["checkout", "--quiet"];
                args.extend(&force);
                args.extend(["-B", branch.as_str(), target.as_str()]);
                self.git_in(ctx, &args).await?;
                if self.force {
                    self.git_in(ctx, &["reset", "--quiet", "--hard", &target]).await?;
                }
            }
            None => {
                let mut args = vec!["checkout", "--quiet", "--detach"];
                args.extend(&force);
                args.push(target.as_str());
                self.git_in(ctx, &args).await?;
            }
        }
        Ok(plan.into())
    }

    /// The commit the revision names on the remote now (a commit id is taken as it is).
    async fn remote_commit(&self, ctx: &Ctx) -> Result<String, StateError> {
        if let Some(r) = &self.revision {
            if r.len() >= 7
                && r.len() <= 40
                && r.chars().all(|c| c.is_ascii_hexdigit())
                && !self.names_a_ref(ctx, r).await?
            {
                return self.expand_commit(ctx, r).await;
            }
        }
        let wanted = self.revision.clone().unwrap_or_else(|| "HEAD".into());
        let refs = self.git(ctx, None, &["ls-remote", &self.repo, &wanted]).await?;
        // A tag shows twice (`refs/tags/v1` and the commit it points to, `refs/tags/v1^{}`): prefer the commit.
        let mut found: Option<(String, String)> = None;
        for line in refs.lines() {
            let Some((sha, name)) = line.split_once('\t') else { continue };
            let exact = name == wanted
                || name == format!("refs/heads/{wanted}")
                || name == format!("refs/tags/{wanted}")
                || name == format!("refs/tags/{wanted}^{{}}");
            if exact && (found.is_none() || name.ends_with("^{}")) {
                found = Some((sha.to_string(), name.to_string()));
            }
        }
        match found {
            Some((sha, _)) => Ok(sha),
            None => Err(StateError::Conflict {
                path: PathBuf::from(&self.repo),
                problem: format!("has no branch or tag `{wanted}`"),
            }),
        }
    }

    async fn names_a_ref(&self, ctx: &Ctx, name: &str) -> Result<bool, StateError> {
        Ok(!self.git(ctx, None, &["ls-remote", &self.repo, name]).await?.trim().is_empty())
    }

    /// A full commit id from a (possibly short) one, using the checkout when there is one.
    async fn expand_commit(&self, ctx: &Ctx, id: &str) -> Result<String, StateError> {
        if id.len() == 40 || !self.path.join(".git").exists() {
            return Ok(id.to_lowercase());
        }
        match self.git_in(ctx, &["rev-parse", "--verify", "--quiet", &format!("{id}^{{commit}}")]).await {
            Ok(full) => Ok(full.trim().to_string()),
            Err(_) => Ok(id.to_lowercase()),
        }
    }

    /// The branch to keep checked out, when the revision (or the remote's default) is a branch.
    async fn branch(&self, ctx: &Ctx) -> Result<Option<String>, StateError> {
        let refs = match &self.revision {
            Some(r) => self.git(ctx, None, &["ls-remote", "--heads", &self.repo, r]).await?,
            None => self.git(ctx, None, &["ls-remote", "--symref", &self.repo, "HEAD"]).await?,
        };
        Ok(refs.lines().find_map(|line| {
            let name = line
                .strip_prefix("ref: ")
                .map(|l| l.split('\t').next().unwrap_or(l))
                .or_else(|| line.split('\t').nth(1))?;
            name.strip_prefix("refs/heads/").map(String::from)
        }))
    }

    async fn git_in(&self, ctx: &Ctx, args: &[&str]) -> Result<String, StateError> {
        self.git(ctx, Some(&self.path), args).await
    }

    async fn git(&self, ctx: &Ctx, dir: Option<&Path>, args: &[&str]) -> Result<String, StateError> {
        let mut spec =
            Spec { program: "git".into(), args: args.iter().map(|a| a.to_string()).collect(), ..Spec::default() };
        spec.cwd = dir.map(Path::to_path_buf);
        // Never prompt for credentials: a missing key must fail, not hang until the timeout.
        spec.env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
        if let Some(key) = &self.ssh_key {
            let command = format!(
                "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                key.display()
            );
            spec.env.push(("GIT_SSH_COMMAND".into(), command));
        }
        if let Some(user) = &self.user {
            let info = ctx.round.user(user)?;
            spec.uid = Some(info.uid);
            spec.gid = Some(info.gid);
            spec.env.push(("HOME".into(), info.home.display().to_string()));
        }
        let output = run_spec(ctx, &spec, GIT_HINT).await?;
        Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned())
    }
}

/// The end of a checkout's plan (git, hg), once its current and target revisions are known: local
/// changes refused, or discarded with `force`; then the move, if any, with revisions `short`ened.
pub(crate) fn plan_update(
    plan: &mut Plan,
    path: &Path,
    dirty: bool,
    force: bool,
    current: &str,
    target: &str,
    short: fn(&str) -> &str,
) -> Result<(), StateError> {
    let shown = path.display().to_string();
    if dirty {
        if !force {
            return Err(StateError::Conflict {
                path: path.to_path_buf(),
                problem: "has local changes; commit or discard them, or set `force: true` to discard them".into(),
            });
        }
        plan.changes.push(Change::new(Action::Update, &shown, "discard local changes (force)"));
    }
    if current != target {
        plan.changes.push(Change::new(Action::Update, &shown, format!("{} -> {}", short(current), short(target))));
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

//! `common.svn` — a Subversion working copy at a revision, kept up to date.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `repo` | URL | required | anything `svn checkout` takes (`https://…`, `svn://…`, `file:///…`) |
//! | `path` | absolute path | required | the working copy; created by the first checkout |
//! | `revision` | number or `HEAD` | `HEAD` | the original's IDE default |
//! | `username` | string | — | |
//! | `password` | string | — | given to svn on its standard input, never on its command line; never shown in reports |
//! | `force` | bool | `false` | revert local changes to reach the revision; without it, local changes fail the state |
//! | `user` | user name | the agent's user | svn runs as this user (`HOME` set), so the working copy belongs to it |
//!
//! "Already fine" means `path` is a working copy of `repo` at the revision `revision` names in the
//! repository now (asked with `svn info`, which changes nothing locally) with no local changes.
//! `--test` shows the checkout, or the move from one revision to the other. svn runs with
//! `--non-interactive --no-auth-cache`: credentials are never stored on the machine.
//!
//! ```yaml
//! - id: legacy-source
//!   module: common.svn
//!   parameter: { repo: "https://svn.example.com/app/trunk", path: /srv/legacy, username: deploy, password: "…" }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::absolute_path;
use crate::process::{run_spec, Spec};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const SVN_HINT: &str = "install the `subversion` package (an earlier `linux.apt.package` state can)";

/// A validated `common.svn`.
#[derive(Clone)]
pub struct Svn {
    pub repo: String,
    pub path: PathBuf,
    pub revision: String,
    pub username: Option<String>,
    password: Option<String>,
    pub force: bool,
    pub user: Option<String>,
}

impl std::fmt::Debug for Svn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Svn")
            .field("repo", &self.repo)
            .field("path", &self.path)
            .field("revision", &self.revision)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("force", &self.force)
            .field("user", &self.user)
            .finish()
    }
}

impl Svn {
    pub fn from_params(state: &State) -> Result<(Svn, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let repo = p.required_string("repo", "name the repository URL, e.g. `repo: https://svn.example.com/app/trunk`");
        let path = absolute_path(&mut p, "path");
        let revision_pos = p.node("revision").and_then(|n| n.pos);
        let revision = p.string("revision").filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "HEAD".into());
        if revision != "HEAD" && revision.parse::<u64>().is_err() {
            p.report(
                Kind::BadValue,
                "revision",
                revision_pos,
                format!("`{revision}` is not a revision"),
                Some("write a revision number, e.g. `revision: 1234`, or `HEAD`".into()),
            );
        }
        let username = p.string("username").filter(|u| !u.is_empty());
        let password = p.string("password").filter(|u| !u.is_empty());
        let force = p.bool("force").unwrap_or(false);
        let user = p.string("user");
        let warnings = p.finish(&["repo", "path", "revision", "username", "password", "force", "user"], &[])?;
        let (Some(repo), Some(path)) = (repo, path) else {
            unreachable!("finish fails when `repo` or `path` is missing or invalid");
        };
        Ok((
            Svn { repo: repo.trim_end_matches('/').to_string(), path, revision, username, password, force, user },
            warnings,
        ))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let shown = self.path.display().to_string();
        let mut plan = Plan::default();
        let target = self.remote_revision(ctx).await?;
        if !self.path.join(".svn").exists() {
            if self.path.exists() && std::fs::read_dir(&self.path).map(|mut d| d.next().is_some()).unwrap_or(true) {
                return Err(StateError::Conflict {
                    path: self.path.clone(),
                    problem: "exists and is not a Subversion working copy; remove it or choose another path".into(),
                });
            }
            plan.changes.push(Change::new(Action::Create, &shown, format!("checkout {} at r{target}", self.repo)));
            return Ok(plan);
        }
        let path = self.path.display().to_string();
        let url = self.svn(ctx, &["info", "--show-item", "url", &path], false).await?;
        if url.trim().trim_end_matches('/') != self.repo {
            return Err(StateError::Conflict {
                path: self.path.clone(),
                problem: format!(
                    "is a working copy of `{}`, not of `{}`; remove it or choose another path",
                    url.trim(),
                    self.repo
                ),
            });
        }
        let current = self.svn(ctx, &["info", "--show-item", "revision", &path], false).await?.trim().to_string();
        let dirty = !self.svn(ctx, &["status", "-q", &path], false).await?.trim().is_empty();
        if dirty {
            if !self.force {
                return Err(StateError::Conflict {
                    path: self.path.clone(),
                    problem: "has local changes; commit or revert them, or set `force: true` to revert them".into(),
                });
            }
            plan.changes.push(Change::new(Action::Update, &shown, "revert local changes (force)"));
        }
        if current != target {
            plan.changes.push(Change::new(Action::Update, &shown, format!("r{current} -> r{target}")));
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let path = self.path.display().to_string();
        let target = self.remote_revision(ctx).await?;
        if !self.path.join(".svn").exists() {
            let parent = crate::fsutil::parent_of(&self.path);
            std::fs::create_dir_all(parent).map_err(StateError::io("creating directory", parent))?;
            self.svn(ctx, &["checkout", "--quiet", "-r", &target, &self.repo, &path], true).await?;
        } else {
            if self.force {
                self.svn(ctx, &["revert", "--quiet", "-R", &path], false).await?;
            }
            self.svn(ctx, &["update", "--quiet", "-r", &target, &path], true).await?;
        }
        Ok(plan.into())
    }

    /// The revision number `revision` names in the repository now.
    async fn remote_revision(&self, ctx: &Ctx) -> Result<String, StateError> {
        let args = ["info", "--show-item", "revision", "-r", self.revision.as_str(), self.repo.as_str()];
        match self.svn(ctx, &args, true).await {
            Ok(rev) => Ok(rev.trim().to_string()),
            Err(StateError::Command { stderr, .. }) => Err(StateError::Conflict {
                path: PathBuf::from(&self.repo),
                problem: format!("cannot be read at revision {}: {}", self.revision, stderr.text().trim()),
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs svn; `remote` adds the credentials (the password through standard input).
    async fn svn(&self, ctx: &Ctx, args: &[&str], remote: bool) -> Result<String, StateError> {
        let mut all: Vec<String> = vec!["--non-interactive".into(), "--no-auth-cache".into()];
        let mut stdin = None;
        if remote {
            if let Some(username) = &self.username {
                all.extend(["--username".into(), username.clone()]);
            }
            if let Some(password) = &self.password {
                all.push("--password-from-stdin".into());
                stdin = Some(format!("{password}\n").into_bytes());
            }
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let mut spec = Spec { program: "svn".into(), args: all, stdin, ..Spec::default() };
        spec.cwd = Some(PathBuf::from("/"));
        spec.env.push(("LC_ALL".into(), "C".into()));
        if let Some(user) = &self.user {
            let info = ctx.round.user(user)?;
            spec.uid = Some(info.uid);
            spec.gid = Some(info.gid);
            spec.env.push(("HOME".into(), info.home.display().to_string()));
        }
        let output = run_spec(ctx, &spec, SVN_HINT).await?;
        Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned())
    }
}

//! `linux.symlink` — a symbolic link, or none.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `target` | absolute path | required | where the link is (the original's naming, kept) |
//! | `source` | path | required | what the link points to |
//! | `user` | user name or uid | unmanaged | owner of the link itself |
//! | `group` | group name or gid | unmanaged | |
//! | `absent` | bool | `false` | remove the link (never a real file or directory) |
//!
//! "Already fine" means a link at `target` pointing to `source` with the wanted owner. A link
//! pointing elsewhere is replaced atomically; a real file or directory at `target` is an error.
//!
//! ```yaml
//! - id: current-release
//!   module: linux.symlink
//!   parameter: { target: /srv/app/current, source: /srv/app/releases/42 }
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, ParamReader, State};

use super::linux_file::absolute_path;
use crate::ctx::RoundCtx;
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.symlink`.
#[derive(Debug, Clone)]
pub struct Symlink {
    pub link: PathBuf,
    pub points_to: PathBuf,
    pub user: Option<String>,
    pub group: Option<String>,
    pub absent: bool,
}

impl Symlink {
    pub fn from_params(state: &State) -> Result<(Symlink, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let link = absolute_path(&mut p, "target");
        let points_to =
            p.required_string("source", "name what the link points to, e.g. `source: /srv/app/releases/42`");
        let user = p.string("user");
        let group = p.string("group");
        let absent = p.bool("absent").unwrap_or(false);
        let warnings = p.finish(&["target", "source", "user", "group", "absent"], &[])?;
        let (Some(link), Some(points_to)) = (link, points_to) else {
            unreachable!("finish fails when `target` or `source` is missing or invalid");
        };
        Ok((Symlink { link, points_to: PathBuf::from(points_to), user, group, absent }, warnings))
    }

    pub fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let shown = self.link.display().to_string();
        let mut plan = Plan::default();
        let meta = match fs::symlink_metadata(&self.link) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StateError::io("reading", &self.link)(e)),
        };
        if let Some(meta) = &meta {
            if !meta.file_type().is_symlink() {
                return Err(StateError::Conflict {
                    path: self.link.clone(),
                    problem: "exists and is not a symlink; remove it or choose another path".into(),
                });
            }
        }
        if self.absent {
            if meta.is_some() {
                plan.changes.push(Change::new(Action::Remove, &shown, "symlink"));
            }
            return Ok(plan);
        }
        let owner = ctx.round.owner(self.user.as_deref(), self.group.as_deref())?;
        let Some(meta) = meta else {
            plan.changes.push(Change::new(Action::Create, &shown, format!("symlink -> {}", self.points_to.display())));
            return Ok(plan);
        };
        let current = fs::read_link(&self.link).map_err(StateError::io("reading link", &self.link))?;
        if current != self.points_to {
            plan.changes.push(Change::new(
                Action::Update,
                &shown,
                format!("-> {} (was -> {})", self.points_to.display(), current.display()),
            ));
        } else {
            let (uid_differs, gid_differs) = fsutil::owner_differs(&meta, owner);
            if uid_differs || gid_differs {
                plan.changes.push(Change::new(
                    Action::Chown,
                    &shown,
                    format!("{}:{}", RoundCtx::user_name(meta.uid()), RoundCtx::group_name(meta.gid())),
                ));
            }
        }
        Ok(plan)
    }

    pub fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if self.absent {
            match fs::remove_file(&self.link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::io("removing", &self.link)(e)),
            }
            return Ok(plan.into());
        }
        let owner = ctx.round.owner(self.user.as_deref(), self.group.as_deref())?;
        if plan.changes.iter().any(|c| matches!(c.action, Action::Create | Action::Update)) {
            let dir = fsutil::parent_of(&self.link);
            if !dir.exists() {
                super::linux_file::create_parents(dir)?;
            }
            // Make the new link under a temporary name, then rename it over the old one.
            let temp = dir.join(format!(
                ".{}.opsagent-{}.link",
                self.link.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                std::process::id()
            ));
            let _ = fs::remove_file(&temp);
            std::os::unix::fs::symlink(&self.points_to, &temp).map_err(StateError::io("creating symlink", &temp))?;
            if owner.uid.is_some() || owner.gid.is_some() {
                fsutil::set_owner(&temp, owner).map_err(StateError::io("changing the owner of", &temp))?;
            }
            if let Err(e) = fs::rename(&temp, &self.link) {
                let _ = fs::remove_file(&temp);
                return Err(StateError::io("renaming a symlink onto", &self.link)(e));
            }
            fsutil::sync_dir(dir).map_err(StateError::io("syncing", dir))?;
        } else if plan.changes.iter().any(|c| c.action == Action::Chown) {
            fsutil::set_owner(&self.link, owner).map_err(StateError::io("changing the owner of", &self.link))?;
        }
        Ok(plan.into())
    }
}

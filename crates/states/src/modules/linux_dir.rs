//! `linux.dir` — directories with the given owner and mode, or no directories at all.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `path` | list of absolute paths | required | a single string is a list of one; missing parents are created |
//! | `user` | user name or uid | unmanaged | |
//! | `group` | group name or gid | unmanaged | |
//! | `mode` | octal string | `0755` for new directories | |
//! | `recursive` | bool | `true` | also give `user` and `group` to everything below, and `mode` to the directories below (files keep their mode) |
//! | `absent` | bool | `false` | remove the directories and everything in them |
//!
//! "Already fine" means every directory exists with the wanted owner and mode (and, with
//! `recursive`, so does everything below). `--test` lists each creation, chmod and chown. `absent`
//! refuses to remove `/` and the top-level system directories.
//!
//! ```yaml
//! - id: app-dirs
//!   module: linux.dir
//!   parameter: { path: [/srv/app, /srv/app/logs], user: app, group: app, mode: "0750" }
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::{apply_attribute_changes, check_absolute, push_attribute_changes};
use crate::ctx::Owner;
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// Mode of a new directory when the recipe names none.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// Paths `absent` never removes.
const PROTECTED: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin", "/srv",
    "/sys", "/tmp", "/usr", "/var",
];

/// A validated `linux.dir`.
#[derive(Debug, Clone)]
pub struct Dir {
    pub paths: Vec<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    pub recursive: bool,
    pub absent: bool,
}

impl Dir {
    pub fn from_params(state: &State) -> Result<(Dir, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("path").and_then(|n| n.pos);
        let mut paths = Vec::new();
        match p.string_list("path") {
            None if !p.has("path") => p.report(
                Kind::MissingParameter,
                "path",
                None,
                "required parameter `path` is missing",
                Some("list the directories, e.g. `path: [/srv/app]`".into()),
            ),
            None => {}
            Some(list) if list.is_empty() => p.report(
                Kind::BadValue,
                "path",
                pos,
                "`path` is an empty list",
                Some("list at least one directory".into()),
            ),
            Some(list) => {
                for (i, path) in list.iter().enumerate() {
                    paths.extend(check_absolute(&mut p, &format!("path[{i}]"), pos, path));
                }
            }
        }
        let user = p.string("user");
        let group = p.string("group");
        let mode = p.mode("mode");
        let recursive = p.bool("recursive").unwrap_or(true);
        let absent = p.bool("absent").unwrap_or(false);
        if absent {
            for path in &paths {
                if PROTECTED.contains(&path.to_str().unwrap_or("/")) {
                    p.report(
                        Kind::BadValue,
                        "path",
                        pos,
                        format!("refusing to remove `{}`", path.display()),
                        Some("`absent` removes a whole tree; name the directory below it that should go".into()),
                    );
                }
            }
        }
        let warnings = p.finish(&["path", "user", "group", "mode", "recursive", "absent"], &[])?;
        Ok((Dir { paths, user, group, mode, recursive, absent }, warnings))
    }

    pub fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        let owner = if self.absent {
            Owner::default()
        } else {
            ctx.round.owner(self.user.as_deref(), self.group.as_deref())?
        };
        for path in &self.paths {
            let shown = path.display().to_string();
            let meta = match fs::symlink_metadata(path) {
                Ok(meta) => Some(meta),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(StateError::io("reading", path)(e)),
            };
            match (meta, self.absent) {
                (None, true) => {}
                (Some(_), true) => plan.changes.push(Change::new(Action::Remove, &shown, "with everything in it")),
                (None, false) => plan.changes.push(Change::new(
                    Action::Create,
                    &shown,
                    format!("directory, mode {:04o}", self.mode.unwrap_or(DEFAULT_DIR_MODE)),
                )),
                (Some(meta), false) => {
                    // A symlink to a directory counts as the directory.
                    let meta = if meta.file_type().is_symlink() {
                        fs::metadata(path).map_err(StateError::io("reading", path))?
                    } else {
                        meta
                    };
                    if !meta.is_dir() {
                        return Err(StateError::Conflict {
                            path: path.clone(),
                            problem: "exists and is not a directory; remove it or choose another path".into(),
                        });
                    }
                    push_attribute_changes(&mut plan, &shown, &meta, self.mode, owner);
                    if self.recursive && (owner.uid.is_some() || owner.gid.is_some() || self.mode.is_some()) {
                        self.check_below(path, owner, &mut plan)?;
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Adds the changes needed below `dir` (recursive mode).
    fn check_below(&self, dir: &Path, owner: Owner, plan: &mut Plan) -> Result<(), StateError> {
        let entries = fs::read_dir(dir).map_err(StateError::io("listing", dir))?;
        for entry in entries {
            let entry = entry.map_err(StateError::io("listing", dir))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(StateError::io("reading", &path))?;
            let is_dir = meta.is_dir();
            let mode = if is_dir { self.mode } else { None };
            push_attribute_changes(plan, &path.display().to_string(), &meta, mode, owner);
            if is_dir {
                self.check_below(&path, owner, plan)?;
            }
        }
        Ok(())
    }

    pub fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let owner = if self.absent {
            Owner::default()
        } else {
            ctx.round.owner(self.user.as_deref(), self.group.as_deref())?
        };
        for change in &plan.changes {
            let path = Path::new(&change.target);
            match change.action {
                Action::Remove => {
                    fs::remove_dir_all(path)
                        .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
                        .map_err(StateError::io("removing", path))?;
                }
                Action::Create => {
                    let mode = self.mode.unwrap_or(DEFAULT_DIR_MODE);
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(mode)
                        .create(path)
                        .map_err(StateError::io("creating directory", path))?;
                    if owner.uid.is_some() || owner.gid.is_some() {
                        fsutil::set_owner(path, owner).map_err(StateError::io("changing the owner of", path))?;
                    }
                    // The umask may have narrowed the mode.
                    fsutil::set_mode(path, mode).map_err(StateError::io("changing the mode of", path))?;
                }
                Action::Chmod | Action::Chown => {
                    let is_dir = fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false);
                    let mode = if is_dir { self.mode } else { None };
                    let single = Plan { changes: vec![change.clone()], diff: None };
                    apply_attribute_changes(path, &change.target, &single, mode, owner)?;
                }
                Action::Update | Action::Run | Action::Start | Action::Restart | Action::Reload | Action::Enable => {}
            }
        }
        Ok(plan.into())
    }
}

//! `linux.file` — a file with the given content, owner and mode, or no file at all.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `path` | absolute path | required | a symlink at `path` is followed |
//! | `content` | text | — | the whole content; without it an existing file's content is left alone and a new file is empty |
//! | `user` | user name or uid | unmanaged | new files belong to the agent's user |
//! | `group` | group name or gid | unmanaged | |
//! | `mode` | octal string | `0644` for new files | `"0644"`, `"644"` and `644` all mean rw-r--r-- |
//! | `absent` | bool | `false` | remove the file instead |
//! | `remote_uri` | `https://`, `http://` or `file://` URL, or a path | — | the content comes from there instead of `content`: downloaded (TLS verified) into the agent's cache, revalidated with the server once per round (`If-None-Match`/`If-Modified-Since`), up to 256 MiB |
//! | `checksum` | `ALGO:HEX` | — | ours: the `remote_uri` file must have this `sha256:…` (or `sha512`, `sha1`, `md5`); a download that does not match fails the state and nothing is written; with it, a file that already matches asks no server |
//!
//! Missing parent directories are created (mode 0755). "Already fine" means the content, owner
//! and mode match (the file is not touched: inode and mtime stay). `--test` shows a unified diff of
//! the content (hidden for `sensitive` states). Writes are atomic: readers see the old file or the
//! new one, never a mix, and owner and mode are right from the first moment.
//!
//! ```yaml
//! - id: motd
//!   module: linux.file
//!   parameter: { path: /etc/motd, content: "hello\n", mode: "0644", user: root, group: root }
//! ```

use std::borrow::Cow;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use crate::checksum::{self, digest_file, Checksum};
use crate::ctx::{Owner, RoundCtx};
use crate::fetch::Source;
use crate::fsutil;
use crate::{diff, Action, Change, Ctx, Outcome, Plan, StateError};

/// Mode of a new file when the recipe names none.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// The largest `remote_uri` file.
const MAX_REMOTE_FILE: u64 = 256 << 20;

/// A validated `linux.file`.
#[derive(Debug, Clone)]
pub struct File {
    pub path: PathBuf,
    pub content: Option<String>,
    /// Where the content comes from instead (`remote_uri`).
    pub remote: Option<Source>,
    pub checksum: Option<Checksum>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    pub absent: bool,
}

impl File {
    pub fn from_params(state: &State) -> Result<(File, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let path = absolute_path(&mut p, "path");
        let content = p.string("content");
        let user = p.string("user");
        let group = p.string("group");
        let mode = p.mode("mode");
        let absent = p.bool("absent").unwrap_or(false);
        let remote_pos = p.node("remote_uri").and_then(|n| n.pos);
        let remote = p
            .string("remote_uri")
            .filter(|u| !u.trim().is_empty())
            .and_then(|u| Source::read(&mut p, "remote_uri", remote_pos, u.trim(), "/srv/app.conf"));
        let checksum = checksum::param(&mut p, "checksum");
        // The IDE sends an empty `content` beside a `remote_uri`: only a real one conflicts.
        let content = if remote.is_some() { content.filter(|c| !c.is_empty()) } else { content };
        if remote.is_some() && content.is_some() {
            let pos = p.node("content").and_then(|n| n.pos);
            p.report(
                Kind::BadValue,
                "content",
                pos,
                "`content` and `remote_uri` both give the file's content",
                Some("keep one of them".into()),
            );
        }
        if checksum.is_some() && remote.is_none() {
            let pos = p.node("checksum").and_then(|n| n.pos);
            p.report(
                Kind::BadValue,
                "checksum",
                pos,
                "`checksum` verifies a `remote_uri` download, and there is no `remote_uri`",
                Some("add `remote_uri`, or remove `checksum`".into()),
            );
        }
        let warnings =
            p.finish(&["path", "content", "user", "group", "mode", "absent", "remote_uri", "checksum"], &[])?;
        let path = path.expect("finish fails when the path is missing or invalid");
        Ok((File { path, content, remote, checksum, user, group, mode, absent }, warnings))
    }

    /// The content wanted: `content`, the `remote_uri` file (downloaded once per round), or none.
    async fn desired(&self, ctx: &Ctx) -> Result<Option<Cow<'_, [u8]>>, StateError> {
        let Some(source) = &self.remote else {
            return Ok(self.content.as_deref().map(|c| Cow::Borrowed(c.as_bytes())));
        };
        let local = source.local(ctx, self.checksum.as_ref(), MAX_REMOTE_FILE).await?;
        if let (Source::Local(_), Some(expected)) = (source, &self.checksum) {
            let actual = digest_file(&local, expected.algo)?;
            if actual != expected.hex {
                return Err(StateError::Conflict {
                    path: local,
                    problem: format!(
                        "has {}:{actual}, not the {expected} that `checksum` names; nothing was written",
                        expected.algo.name()
                    ),
                });
            }
        }
        let size = fs::metadata(&local).map_err(StateError::io("reading", &local))?.len();
        if size > MAX_REMOTE_FILE {
            return Err(StateError::Conflict {
                path: local,
                problem: format!("is {size} bytes, more than `linux.file` handles ({MAX_REMOTE_FILE})"),
            });
        }
        Ok(Some(Cow::Owned(fs::read(&local).map_err(StateError::io("reading", &local))?)))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let shown = self.path.display().to_string();
        let mut plan = Plan::default();
        let path = resolve_link(&self.path)?;
        let meta = match fs::metadata(&path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StateError::io("reading", &path)(e)),
        };
        if self.absent {
            if meta.is_some() {
                plan.changes.push(Change::new(Action::Remove, &shown, ""));
            }
            return Ok(plan);
        }
        let owner = ctx.round.owner(self.user.as_deref(), self.group.as_deref())?;
        let desired = self.desired(ctx).await?;
        let Some(meta) = meta else {
            if !fsutil::parent_of(&path).exists() {
                plan.changes.push(Change::new(
                    Action::Create,
                    fsutil::parent_of(&path).display().to_string(),
                    "missing parent directories, mode 0755",
                ));
            }
            let content = desired.as_deref().unwrap_or(b"");
            let from = self.remote.as_ref().map(|s| format!(" from {s}")).unwrap_or_default();
            plan.changes.push(Change::new(
                Action::Create,
                &shown,
                format!("{} bytes{from}, mode {:04o}", content.len(), self.mode.unwrap_or(DEFAULT_FILE_MODE)),
            ));
            if !ctx.sensitive {
                plan.diff = Some(diff::unified(&shown, b"", content));
            }
            return Ok(plan);
        };
        if !meta.is_file() {
            return Err(StateError::Conflict {
                path,
                problem: "exists and is not a regular file; remove it or choose another path".into(),
            });
        }
        if let Some(content) = desired.as_deref() {
            let same = meta.len() == content.len() as u64
                && fs::read(&path).map_err(StateError::io("reading", &path))? == content;
            if !same {
                let current = fs::read(&path).map_err(StateError::io("reading", &path))?;
                let from = self.remote.as_ref().map(|s| format!(" from {s}")).unwrap_or_default();
                plan.changes.push(Change::new(
                    Action::Update,
                    &shown,
                    format!("content{from}, {} -> {} bytes", current.len(), content.len()),
                ));
                if !ctx.sensitive {
                    plan.diff = Some(diff::unified(&shown, &current, content));
                }
            }
        }
        push_attribute_changes(&mut plan, &shown, &meta, self.mode, owner);
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let path = resolve_link(&self.path)?;
        if self.absent {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::io("removing", &path)(e)),
            }
            fsutil::sync_dir(fsutil::parent_of(&path)).map_err(StateError::io("syncing", fsutil::parent_of(&path)))?;
            return Ok(plan.into());
        }
        let owner = ctx.round.owner(self.user.as_deref(), self.group.as_deref())?;
        let writes_content = plan.changes.iter().any(|c| {
            matches!(c.action, Action::Create | Action::Update) && c.target == self.path.display().to_string()
        });
        if writes_content {
            let parent = fsutil::parent_of(&path);
            if !parent.exists() {
                create_parents(parent)?;
            }
            let (mode, owner) = match fs::metadata(&path) {
                // Keep what the recipe does not manage.
                Ok(meta) => (
                    self.mode.unwrap_or(fsutil::mode_of(&meta)),
                    Owner { uid: owner.uid.or(Some(meta.uid())), gid: owner.gid.or(Some(meta.gid())) },
                ),
                Err(_) => (self.mode.unwrap_or(DEFAULT_FILE_MODE), owner),
            };
            let desired = self.desired(ctx).await?;
            let existing = if desired.is_none() { fs::read(&path).ok() } else { None };
            let content = desired.as_deref().or(existing.as_deref()).unwrap_or(b"");
            fsutil::write_atomic(&path, content, mode, owner).map_err(StateError::io("writing", &path))?;
        } else {
            apply_attribute_changes(&path, &self.path.display().to_string(), &plan, self.mode, owner)?;
        }
        Ok(plan.into())
    }
}

/// Reads a required absolute path parameter.
pub(crate) fn absolute_path(p: &mut ParamReader<'_>, name: &str) -> Option<PathBuf> {
    let pos = p.node(name).and_then(|n| n.pos);
    let path = p.required_string(name, &format!("give the absolute path, e.g. `{name}: /etc/app.conf`"))?;
    check_absolute(p, name, pos, &path)
}

/// Reports a path that is not absolute (or not clean); returns it when fine.
pub(crate) fn check_absolute(
    p: &mut ParamReader<'_>,
    name: &str,
    pos: Option<opsagent_recipe::Pos>,
    path: &str,
) -> Option<PathBuf> {
    if !path.starts_with('/') {
        p.report(
            Kind::BadValue,
            name,
            pos,
            format!("`{path}` is not an absolute path"),
            Some("paths start with `/`, e.g. `/etc/app.conf`".into()),
        );
        return None;
    }
    if path.split('/').any(|c| c == "..") {
        p.report(
            Kind::BadValue,
            name,
            pos,
            format!("`{path}` contains `..`"),
            Some("write the path without `..` components".into()),
        );
        return None;
    }
    let trimmed = path.trim_end_matches('/');
    Some(PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed }))
}

/// Follows a symlink at `path` to the file it names (relative targets resolve against its directory).
fn resolve_link(path: &Path) -> Result<PathBuf, StateError> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current).map_err(StateError::io("reading link", &current))?;
                current = fsutil::parent_of(&current).join(target);
            }
            _ => return Ok(current),
        }
    }
    Err(StateError::Conflict { path: path.to_path_buf(), problem: "is a symlink loop".into() })
}

/// Creates missing parent directories with mode 0755.
pub(crate) fn create_parents(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(StateError::io("creating directory", dir))
}

/// Adds chmod/chown changes where `meta` differs from the wanted mode and owner.
pub(crate) fn push_attribute_changes(
    plan: &mut Plan,
    shown: &str,
    meta: &fs::Metadata,
    mode: Option<u32>,
    owner: Owner,
) {
    if let Some(mode) = mode {
        let current = fsutil::mode_of(meta);
        if current != mode {
            plan.changes.push(Change::new(Action::Chmod, shown, format!("{current:04o} -> {mode:04o}")));
        }
    }
    let (uid_differs, gid_differs) = fsutil::owner_differs(meta, owner);
    if uid_differs || gid_differs {
        let from = format!("{}:{}", RoundCtx::user_name(meta.uid()), RoundCtx::group_name(meta.gid()));
        let to = format!(
            "{}:{}",
            owner.uid.map(RoundCtx::user_name).unwrap_or_else(|| RoundCtx::user_name(meta.uid())),
            owner.gid.map(RoundCtx::group_name).unwrap_or_else(|| RoundCtx::group_name(meta.gid()))
        );
        plan.changes.push(Change::new(Action::Chown, shown, format!("{from} -> {to}")));
    }
}

/// Applies the chmod/chown changes of `plan` to `path` (owner first: chown clears set-id bits).
/// `shown` is the path as the plan names it (`path` may be a symlink's target).
pub(crate) fn apply_attribute_changes(
    path: &Path,
    shown: &str,
    plan: &Plan,
    mode: Option<u32>,
    owner: Owner,
) -> Result<(), StateError> {
    let wants = |action: Action| plan.changes.iter().any(|c| c.action == action && c.target == shown);
    if wants(Action::Chown) {
        fsutil::set_owner(path, owner).map_err(StateError::io("changing the owner of", path))?;
    }
    if let Some(mode) = mode.filter(|_| wants(Action::Chmod) || wants(Action::Chown)) {
        fsutil::set_mode(path, mode).map_err(StateError::io("changing the mode of", path))?;
    }
    Ok(())
}

/// The plan for a configuration file the agent owns whole (a repository file): `content` at `mode`
/// (root's), or no file when `content` is `None`. Shows a diff unless the state is sensitive.
pub(crate) fn plan_config_file(ctx: &Ctx, path: &Path, content: Option<&str>, mode: u32) -> Result<Plan, StateError> {
    let shown = path.display().to_string();
    let mut plan = Plan::default();
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(StateError::io("reading", path)(e)),
    };
    let Some(content) = content else {
        if meta.is_some() {
            plan.changes.push(Change::new(Action::Remove, &shown, ""));
        }
        return Ok(plan);
    };
    let Some(meta) = meta else {
        plan.changes.push(Change::new(Action::Create, &shown, format!("{} bytes, mode {mode:04o}", content.len())));
        if !ctx.sensitive {
            plan.diff = Some(diff::unified(&shown, b"", content.as_bytes()));
        }
        return Ok(plan);
    };
    if !meta.is_file() {
        return Err(StateError::Conflict {
            path: path.to_path_buf(),
            problem: "exists and is not a regular file; remove it or choose another name".into(),
        });
    }
    let current = fs::read(path).map_err(StateError::io("reading", path))?;
    if current != content.as_bytes() {
        plan.changes.push(Change::new(
            Action::Update,
            &shown,
            format!("content, {} -> {} bytes", current.len(), content.len()),
        ));
        if !ctx.sensitive {
            plan.diff = Some(diff::unified(&shown, &current, content.as_bytes()));
        }
    } else if fsutil::mode_of(&meta) != mode {
        let current = fsutil::mode_of(&meta);
        plan.changes.push(Change::new(Action::Chmod, &shown, format!("{current:04o} -> {mode:04o}")));
    }
    Ok(plan)
}

//! `linux.apt.repo` — an apt sources file, `/etc/apt/sources.list.d/<name>.list`, with the given content.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | string | required | the file is `/etc/apt/sources.list.d/<name>.list`; letters, digits, `_`, `-` and `.` only (apt ignores other file names) |
//! | `content` | text | required (unless `absent`) | one-line-style sources: `deb`/`deb-src` lines, comments and blank lines |
//! | `absent` | bool | `false` | ours: remove the file instead |
//!
//! "Already fine" means the file has exactly this content and mode 0644. `--test` shows a unified
//! diff of the file. The file is written atomically (apt never reads half a file); a line that is
//! not a `deb`/`deb-src` line is refused when the recipe is validated, because a broken sources
//! file stops every apt command on the machine. When the file changes (or goes), the next
//! `linux.apt.package` state of the round refreshes the package lists again.
//!
//! ```yaml
//! - id: local-repo
//!   module: linux.apt.repo
//!   parameter:
//!     name: rabbitmq
//!     content: |
//!       deb [signed-by=/usr/share/keyrings/rabbitmq.gpg] https://deb.example.com/debian bookworm main
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::plan_config_file;
use crate::ctx::Owner;
use crate::providers::apt;
use crate::{fsutil, Ctx, Outcome, Plan, StateError};

/// Where apt reads extra sources files.
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// Mode of a sources file.
pub const SOURCES_MODE: u32 = 0o644;

/// A validated `linux.apt.repo`.
#[derive(Debug, Clone)]
pub struct AptRepo {
    pub path: PathBuf,
    /// `None` when `absent`.
    pub content: Option<String>,
}

impl AptRepo {
    pub fn from_params(state: &State) -> Result<(AptRepo, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let name_pos = p.node("name").and_then(|n| n.pos);
        let name = p.required_string("name", "give the repository's name, e.g. `name: rabbitmq`");
        if let Some(name) = &name {
            let valid = !name.is_empty()
                && name != "."
                && name != ".."
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                p.report(
                    Kind::BadValue,
                    "name",
                    name_pos,
                    format!("`{name}` cannot name a file in {SOURCES_DIR}"),
                    Some(
                        "use letters, digits, `_`, `-` and `.` only, without `/` (apt ignores other file names)".into(),
                    ),
                );
            }
        }
        let absent = p.bool("absent").unwrap_or(false);
        let content_pos = p.node("content").and_then(|n| n.pos);
        let content = if absent {
            p.string("content");
            None
        } else {
            p.required_string(
                "content",
                "give the sources lines, e.g. `content: deb https://deb.example.com/debian bookworm main`",
            )
        };
        if let Some(content) = &content {
            for (number, line) in content.lines().enumerate() {
                let line = line.trim();
                let ok = line.is_empty()
                    || line.starts_with('#')
                    || matches!(line.split_whitespace().next(), Some("deb" | "deb-src"));
                if !ok {
                    p.report(
                        Kind::BadValue,
                        "content",
                        content_pos,
                        format!("line {} (`{line}`) is not a `deb` or `deb-src` line", number + 1),
                        Some("write sources as `deb [options] URI SUITE [COMPONENT…]`, e.g. `deb https://deb.example.com/debian bookworm main`".into()),
                    );
                }
            }
        }
        let warnings = p.finish(&["name", "content", "absent"], &[])?;
        let name = name.expect("finish fails when `name` is missing");
        let path = Path::new(SOURCES_DIR).join(format!("{name}.list"));
        Ok((AptRepo { path, content }, warnings))
    }

    pub fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        plan_config_file(ctx, &self.path, self.content.as_deref(), SOURCES_MODE)
    }

    pub fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        match &self.content {
            None => match fs::remove_file(&self.path) {
                Ok(()) => {
                    let dir = fsutil::parent_of(&self.path);
                    fsutil::sync_dir(dir).map_err(StateError::io("syncing", dir))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::io("removing", &self.path)(e)),
            },
            Some(content) => {
                let dir = fsutil::parent_of(&self.path);
                if !dir.is_dir() {
                    super::linux_file::create_parents(dir)?;
                }
                fsutil::write_atomic(&self.path, content.as_bytes(), SOURCES_MODE, Owner::default())
                    .map_err(StateError::io("writing", &self.path))?;
            }
        }
        // The package lists no longer match the sources: the next package state refreshes them.
        ctx.round.forget(apt::UPDATE_KEY);
        Ok(plan.into())
    }
}

//! `common.archive` — an archive extracted into a directory, again whenever the archive changes.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `source` | absolute path, `file://` or `http(s)://` URL | required | the archive; the format comes from its name: `.tar`, `.tar.gz`/`.tgz`/`.gz`, `.tar.bz2`/`.tbz`/`.tbz2`/`.bz2`/`.bz`, `.tar.xz`/`.txz`/`.xz`, `.zip`; a URL is downloaded into the agent's cache (TLS verified) and revalidated once per round |
//! | `path` | absolute path | required | extract into this directory; created (mode 0755) with its parents |
//! | `checksum` | `ALGO:HEX` or URL | — | `md5:…`, `sha1:…`, `sha256:…` or `sha512:…` (the original's `md5=…` too); the archive is verified **before** anything is extracted, and a mismatch fails the state. An `http(s)://` URL names a checksum file (`SHA256SUMS`, `app.tar.gz.sha256`, as the original allowed): it is fetched (through the download cache) when the state is checked and applied, and the line for the archive's file name — or its single hash — is used. Salt's name `source_hash` is accepted too |
//! | `if-path-absent` | list of absolute paths | — | extract only while none of these exists |
//!
//! "Already fine" means, with `if-path-absent`: one of those paths exists. Otherwise: `path` exists
//! and the archive's checksum — the `checksum` given, else the SHA-256 of the file — and `path` are
//! the ones recorded in `<state dir>/archive/<state id>.json` after the last successful extraction,
//! so a changed archive (or a new `checksum`) is extracted again. With a `checksum` and an `http(s)`
//! source, a converged state asks no server at all; without one, the cached download is revalidated
//! with the server (a `304` costs no transfer), and a download that does not match `checksum` is
//! thrown away before anything is extracted. Extraction uses `tar` or `unzip`
//! (a missing one fails the state, naming it). Members with absolute paths or `..` components are
//! refused before anything is extracted.
//!
//! What is atomic: the archive is extracted into a fresh temporary directory next to its destination
//! (inside `path` when it exists, else beside it in its parent) and moved into place only after
//! `tar`/`unzip` succeeded, so a failed extraction (a corrupt archive, a full disk, a timeout) leaves
//! `path` as it was and the temporary directory removed. A new `path` appears in one rename. Into an
//! existing `path`, each extracted file or symlink replaces the one of the same name in one rename
//! (readers see the old file or the new one, never a partial one), directories are merged (existing
//! ones keep their mode and owner), and files the archive does not hold are kept; where the archive
//! has a file and `path` a directory, or the reverse (a symlink counts as a file), the state fails
//! before anything is moved. As `tar` does for root, owners and modes recorded in the archive are kept.
//! `--test` shows the extraction with the number of entries, and fails as `apply` would on a checksum
//! mismatch, an unreadable archive or a refused member.
//!
//! ```yaml
//! - id: app-release
//!   module: common.archive
//!   parameter:
//!     source: /var/cache/app/app-1.4.2.tar.gz
//!     path: /opt/app
//!     checksum: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::{absolute_path, check_absolute, create_parents};
use crate::checksum::{self, digest_file, Algo, Checksum};
use crate::ctx::Owner;
use crate::fetch::Source;
use crate::process::run_tool;
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// The largest archive downloaded.
const MAX_ARCHIVE: u64 = 16 << 30;
/// The largest checksum file downloaded.
const MAX_SUMS_FILE: u64 = 1 << 20;
const TAR_HINT: &str = "install the `tar` package";
const UNZIP_HINT: &str = "install the `unzip` package (an earlier `linux.apt.package` state can)";

/// How the archive is read, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A tar archive, with `tar`'s decompression flag (`-z`, `-j`, `-J`) if compressed.
    Tar(Option<&'static str>),
    Zip,
}

/// A validated `common.archive`.
#[derive(Debug, Clone)]
pub struct Archive {
    pub state_id: String,
    pub source: Source,
    pub format: Format,
    pub path: PathBuf,
    pub checksum: Option<Checksum>,
    /// The URL of a checksum file that gives `checksum` at run time.
    pub checksum_url: Option<String>,
    pub if_path_absent: Vec<PathBuf>,
}

impl Archive {
    pub fn from_params(state: &State) -> Result<(Archive, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let source_pos = p.node("source").and_then(|n| n.pos);
        let source = p
            .required_string("source", "give the archive's path, e.g. `source: /var/cache/app.tar.gz`")
            .and_then(|s| Source::read(&mut p, "source", source_pos, &s, "/srv/app.tar.gz"));
        let format = source.as_ref().and_then(|s| {
            let format = format_of(&s.file_name());
            if format.is_none() {
                p.report(
                    Kind::BadValue,
                    "source",
                    source_pos,
                    format!("cannot tell the archive format of `{s}` from its name"),
                    Some(
                        "name it `.tar`, `.tar.gz`/`.tgz`, `.tar.bz2`/`.tbz`/`.bz2`, `.tar.xz`/`.txz` or `.zip`".into(),
                    ),
                );
            }
            format
        });
        let path = absolute_path(&mut p, "path");
        let (checksum, checksum_url) = checksum_param(&mut p);
        let absent_pos = p.node("if-path-absent").and_then(|n| n.pos);
        let absent = p.string_list("if-path-absent").unwrap_or_default();
        let if_path_absent = absent
            .iter()
            .enumerate()
            .filter_map(|(i, path)| check_absolute(&mut p, &format!("if-path-absent[{i}]"), absent_pos, path))
            .collect();
        let warnings = p.finish(&["source", "path", "checksum", "if-path-absent"], &[])?;
        let (Some(source), Some(format), Some(path)) = (source, format, path) else {
            unreachable!("finish fails when `source` or `path` is missing or invalid");
        };
        let archive =
            Archive { state_id: state.id.clone(), source, format, path, checksum, checksum_url, if_path_absent };
        Ok((archive, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        if self.if_path_absent.iter().any(|p| p.exists()) {
            return Ok(plan);
        }
        let expected = self.expected(ctx).await?;
        if self.if_path_absent.is_empty() && self.path.exists() {
            let sum = match &expected {
                Some(c) => c.to_string(),
                None => {
                    let local = self.source.local(ctx, None, MAX_ARCHIVE).await?;
                    Checksum { algo: Algo::Sha256, hex: digest_file(&local, Algo::Sha256)? }.to_string()
                }
            };
            if self.recorded(ctx) == Some(self.record(&sum)) {
                return Ok(plan);
            }
        }
        let local = self.source.local(ctx, expected.as_ref(), MAX_ARCHIVE).await?;
        let sum = self.verify(&local, expected.as_ref())?;
        let members = self.members(ctx, &local).await?;
        let action = if self.path.exists() { Action::Update } else { Action::Create };
        let short = sum.get(..sum.find(':').map_or(0, |i| i + 13)).unwrap_or(&sum);
        plan.changes.push(Change::new(
            action,
            self.path.display().to_string(),
            format!("extract {} ({} entries, {short}…)", self.source, members.len()),
        ));
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if plan.is_empty() {
            return Ok(plan.into());
        }
        // Verified again right before extracting: the file may have changed since `check`.
        let expected = self.expected(ctx).await?;
        let local = self.source.local(ctx, expected.as_ref(), MAX_ARCHIVE).await?;
        let sum = self.verify(&local, expected.as_ref())?;
        self.members(ctx, &local).await?;
        let exists = match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_dir() => true,
            Ok(_) => {
                return Err(StateError::Conflict {
                    path: self.path.clone(),
                    problem: "exists and is not a directory; remove it or choose another `path`".into(),
                })
            }
            Err(_) => false,
        };
        let parent = fsutil::parent_of(&self.path).to_path_buf();
        create_parents(&parent)?;
        let staging = Staging::create(if exists { &self.path } else { &parent }, &self.path)?;
        let dir = staging.0.display().to_string();
        let source = local.display().to_string();
        let output = match self.format {
            Format::Tar(flag) => {
                let mut args = vec!["-x"];
                args.extend(flag);
                args.extend(["-f", source.as_str(), "-C", dir.as_str()]);
                run_tool(ctx, "tar", &args, TAR_HINT).await?
            }
            Format::Zip => run_tool(ctx, "unzip", &["-q", "-o", &source, "-d", &dir], UNZIP_HINT).await?,
        };
        if ctx.cancel.is_cancelled() {
            return Err(StateError::Cancelled);
        }
        if exists {
            let mut conflicts = Vec::new();
            find_conflicts(&staging.0, &self.path, &mut conflicts).map_err(StateError::io("reading", &staging.0))?;
            if let Some(first) = conflicts.first() {
                return Err(StateError::Conflict {
                    path: first.clone(),
                    problem: "is a directory where the archive has a file, or the reverse; nothing was moved into \
                              place: remove it, or extract elsewhere"
                        .into(),
                });
            }
            merge(&staging.0, &self.path).map_err(StateError::io("moving extracted files into", &self.path))?;
        } else {
            fs::rename(&staging.0, &self.path).map_err(StateError::io("moving extracted files to", &self.path))?;
            fsutil::sync_dir(&parent).map_err(StateError::io("syncing", &parent))?;
        }
        drop(staging);
        self.save_record(ctx, &sum)?;
        Ok(Outcome { stdout: Some(output.stdout), stderr: Some(output.stderr), ..plan.into() })
    }

    /// The checksum the archive must have: the one given, or the one the checksum file gives now.
    async fn expected(&self, ctx: &Ctx) -> Result<Option<Checksum>, StateError> {
        let Some(url) = &self.checksum_url else {
            return Ok(self.checksum.clone());
        };
        let sums = crate::fetch::fetch(ctx, url, None, MAX_SUMS_FILE).await?;
        let text = fs::read(&sums.path).map_err(StateError::io("reading", &sums.path))?;
        let file_name = self.source.file_name();
        checksum::from_sums_file(&String::from_utf8_lossy(&text), &file_name)
            .map(Some)
            .map_err(|problem| StateError::Download { url: crate::http::redact(url), problem })
    }

    /// Checks the archive against `expected`; returns the checksum to record.
    fn verify(&self, local: &Path, expected: Option<&Checksum>) -> Result<String, StateError> {
        match expected {
            Some(expected) => {
                let actual = digest_file(local, expected.algo)?;
                if actual != expected.hex {
                    return Err(StateError::Conflict {
                        path: local.to_path_buf(),
                        problem: format!(
                            "has {}:{actual}, not the {expected} that `checksum` names; nothing was extracted",
                            expected.algo.name()
                        ),
                    });
                }
                Ok(expected.to_string())
            }
            None => Ok(Checksum { algo: Algo::Sha256, hex: digest_file(local, Algo::Sha256)? }.to_string()),
        }
    }

    /// The archive's member names, refused when one would land outside `path`.
    async fn members(&self, ctx: &Ctx, local: &Path) -> Result<Vec<String>, StateError> {
        let source = local.display().to_string();
        let output = match self.format {
            Format::Tar(flag) => {
                let mut args = vec!["-t"];
                args.extend(flag);
                args.extend(["-f", source.as_str()]);
                run_tool(ctx, "tar", &args, TAR_HINT).await?
            }
            Format::Zip => run_tool(ctx, "unzip", &["-Z1", &source], UNZIP_HINT).await?,
        };
        let names: Vec<String> = String::from_utf8_lossy(&output.stdout.bytes).lines().map(String::from).collect();
        if let Some(bad) = names.iter().find(|n| unsafe_member(n)) {
            return Err(StateError::Conflict {
                path: local.to_path_buf(),
                problem: format!(
                    "holds the member `{bad}`, which would be written outside `path` (an absolute path or `..`); \
                     nothing was extracted"
                ),
            });
        }
        Ok(names)
    }

    fn record_file(&self, ctx: &Ctx) -> PathBuf {
        ctx.round.state_dir.join("archive").join(format!("{}.json", self.state_id.replace('/', "-")))
    }

    fn record(&self, checksum: &str) -> serde_json::Value {
        serde_json::json!({ "path": self.path.display().to_string(), "checksum": checksum })
    }

    fn recorded(&self, ctx: &Ctx) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.record_file(ctx)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save_record(&self, ctx: &Ctx, checksum: &str) -> Result<(), StateError> {
        let file = self.record_file(ctx);
        let dir = fsutil::parent_of(&file);
        fs::create_dir_all(dir).map_err(StateError::io("creating", dir))?;
        let text = self.record(checksum).to_string();
        fsutil::write_atomic(&file, text.as_bytes(), 0o600, Owner::default()).map_err(StateError::io("writing", &file))
    }
}

/// The temporary directory an archive is extracted into; removed on drop unless moved away.
struct Staging(PathBuf);

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Staging {
    fn create(inside: &Path, target: &Path) -> Result<Staging, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        loop {
            let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = inside.join(format!(".{name}.opsagent-extract-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => return Ok(Staging(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StateError::io("creating directory", dir)(e)),
            }
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Paths under `dst` where `src` has a directory and `dst` something else, or the reverse.
fn find_conflicts(src: &Path, dst: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let target = dst.join(entry.file_name());
        let src_is_dir = entry.file_type()?.is_dir();
        match fs::symlink_metadata(&target) {
            Ok(meta) if src_is_dir && meta.is_dir() => find_conflicts(&entry.path(), &target, out)?,
            Ok(meta) if src_is_dir || meta.is_dir() => out.push(target),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves everything under `src` into `dst`: files by rename over their namesakes, directories merged.
fn merge(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let target = dst.join(entry.file_name());
        let into_dir = entry.file_type()?.is_dir() && fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
        if into_dir {
            merge(&entry.path(), &target)?;
        } else {
            fs::rename(entry.path(), &target)?;
        }
    }
    fsutil::sync_dir(dst)
}

/// A member name that would escape the extraction directory.
fn unsafe_member(name: &str) -> bool {
    name.starts_with('/') || name.split('/').any(|c| c == "..")
}

fn format_of(name: &str) -> Option<Format> {
    let name = name.to_ascii_lowercase();
    let ends = |exts: &[&str]| exts.iter().any(|e| name.ends_with(e));
    if ends(&[".tar.gz", ".tgz", ".gz"]) {
        Some(Format::Tar(Some("-z")))
    } else if ends(&[".tar.bz2", ".tbz", ".tbz2", ".bz2", ".tar.bz", ".bz"]) {
        Some(Format::Tar(Some("-j")))
    } else if ends(&[".tar.xz", ".txz", ".xz"]) {
        Some(Format::Tar(Some("-J")))
    } else if ends(&[".tar"]) {
        Some(Format::Tar(None))
    } else if ends(&[".zip"]) {
        Some(Format::Zip)
    } else {
        None
    }
}

/// Reads `checksum`: `ALGO:HEX`, or the `http(s)://` URL of a checksum file.
fn checksum_param(p: &mut ParamReader<'_>) -> (Option<Checksum>, Option<String>) {
    let pos = p.node("checksum").and_then(|n| n.pos);
    let text = p.node("checksum").and_then(|n| n.scalar_text()).map(|t| t.trim().to_string()).unwrap_or_default();
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return (checksum::param(p, "checksum"), None);
    }
    p.string("checksum");
    match crate::http::parse_url(&text) {
        Ok(_) => (None, Some(text)),
        Err(e) => {
            p.report(
                Kind::BadValue,
                "checksum",
                pos,
                e.0,
                Some("give the checksum file's URL, e.g. `https://host/SHA256SUMS`, or `sha256:HEX`".into()),
            );
            (None, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_name() {
        let f = |n: &str| format_of(n.rsplit('/').next().unwrap_or(n));
        assert_eq!(f("/a/app.tar.gz"), Some(Format::Tar(Some("-z"))));
        assert_eq!(f("/a/APP.TGZ"), Some(Format::Tar(Some("-z"))));
        assert_eq!(f("/a/app.tbz"), Some(Format::Tar(Some("-j"))));
        assert_eq!(f("/a/app.bz2"), Some(Format::Tar(Some("-j"))));
        assert_eq!(f("/a/app.txz"), Some(Format::Tar(Some("-J"))));
        assert_eq!(f("/a/app.tar"), Some(Format::Tar(None)));
        assert_eq!(f("/a/app.zip"), Some(Format::Zip));
        assert_eq!(f("/a/app.rar"), None);
        assert_eq!(f("/a/app"), None);
    }

    #[test]
    fn members_outside_are_refused() {
        assert!(unsafe_member("/etc/passwd"));
        assert!(unsafe_member("../x"));
        assert!(unsafe_member("a/../../x"));
        assert!(!unsafe_member("./a/b..c"));
        assert!(!unsafe_member("a/"));
    }
}

//! `common.archive` — an archive extracted into a directory, again whenever the archive changes.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `source` | absolute path or `file://` URL | required | the archive on this machine; the format comes from its name: `.tar`, `.tar.gz`/`.tgz`/`.gz`, `.tar.bz2`/`.tbz`/`.tbz2`/`.bz2`/`.bz`, `.tar.xz`/`.txz`/`.xz`, `.zip`; `http(s)://` is not yet supported |
//! | `path` | absolute path | required | extract into this directory; created (mode 0755) with its parents |
//! | `checksum` | `ALGO:HEX` | — | `md5:…`, `sha1:…`, `sha256:…` or `sha512:…` (the original's `md5=…` too); the archive is verified **before** anything is extracted, and a mismatch fails the state |
//! | `if-path-absent` | list of absolute paths | — | extract only while none of these exists |
//!
//! "Already fine" means, with `if-path-absent`: one of those paths exists. Otherwise: `path` exists
//! and the archive's checksum — the `checksum` given, else the SHA-256 of the file — and `path` are
//! the ones recorded in `<state dir>/archive/<state id>.json` after the last successful extraction,
//! so a changed archive (or a new `checksum`) is extracted again. Extraction uses `tar` or `unzip`
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
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, Pos, State};
use sha2::Digest;

use super::linux_file::{absolute_path, check_absolute, create_parents};
use crate::ctx::Owner;
use crate::process::run_tool;
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

const TAR_HINT: &str = "install the `tar` package";
const UNZIP_HINT: &str = "install the `unzip` package (an earlier `linux.apt.package` state can)";

/// How the archive is read, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A tar archive, with `tar`'s decompression flag (`-z`, `-j`, `-J`) if compressed.
    Tar(Option<&'static str>),
    Zip,
}

/// A checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algo::Md5 => 32,
            Algo::Sha1 => 40,
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

/// An expected checksum: `algo:hex` (hex in lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algo: Algo,
    pub hex: String,
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

/// A validated `common.archive`.
#[derive(Debug, Clone)]
pub struct Archive {
    pub state_id: String,
    pub source: PathBuf,
    pub format: Format,
    pub path: PathBuf,
    pub checksum: Option<Checksum>,
    pub if_path_absent: Vec<PathBuf>,
}

impl Archive {
    pub fn from_params(state: &State) -> Result<(Archive, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let source_pos = p.node("source").and_then(|n| n.pos);
        let source = p
            .required_string("source", "give the archive's path, e.g. `source: /var/cache/app.tar.gz`")
            .and_then(|s| read_source(&mut p, source_pos, &s));
        let format = source.as_deref().and_then(|s| {
            let format = format_of(s);
            if format.is_none() {
                p.report(
                    Kind::BadValue,
                    "source",
                    source_pos,
                    format!("cannot tell the archive format of `{}` from its name", s.display()),
                    Some(
                        "name it `.tar`, `.tar.gz`/`.tgz`, `.tar.bz2`/`.tbz`/`.bz2`, `.tar.xz`/`.txz` or `.zip`".into(),
                    ),
                );
            }
            format
        });
        let path = absolute_path(&mut p, "path");
        let sum_pos = p.node("checksum").and_then(|n| n.pos);
        let checksum = p.string("checksum").filter(|c| !c.trim().is_empty()).and_then(|c| {
            let parsed = parse_checksum(&c);
            if let Err((kind, message, hint)) = &parsed {
                p.report(*kind, "checksum", sum_pos, message.clone(), Some(hint.clone()));
            }
            parsed.ok()
        });
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
        Ok((Archive { state_id: state.id.clone(), source, format, path, checksum, if_path_absent }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        if self.if_path_absent.iter().any(|p| p.exists()) {
            return Ok(plan);
        }
        if self.if_path_absent.is_empty() && self.path.exists() {
            let sum = match &self.checksum {
                Some(c) => c.to_string(),
                None => Checksum { algo: Algo::Sha256, hex: digest_file(&self.source, Algo::Sha256)? }.to_string(),
            };
            if self.recorded(ctx) == Some(self.record(&sum)) {
                return Ok(plan);
            }
        }
        let sum = self.verify()?;
        let members = self.members(ctx).await?;
        let action = if self.path.exists() { Action::Update } else { Action::Create };
        let short = sum.get(..sum.find(':').map_or(0, |i| i + 13)).unwrap_or(&sum);
        plan.changes.push(Change::new(
            action,
            self.path.display().to_string(),
            format!("extract {} ({} entries, {short}…)", self.source.display(), members.len()),
        ));
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if plan.is_empty() {
            return Ok(plan.into());
        }
        // Verified again right before extracting: the file may have changed since `check`.
        let sum = self.verify()?;
        self.members(ctx).await?;
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
        let source = self.source.display().to_string();
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

    /// Checks the archive against `checksum`; returns the checksum to record.
    fn verify(&self) -> Result<String, StateError> {
        match &self.checksum {
            Some(expected) => {
                let actual = digest_file(&self.source, expected.algo)?;
                if actual != expected.hex {
                    return Err(StateError::Conflict {
                        path: self.source.clone(),
                        problem: format!(
                            "has {}:{actual}, not the {expected} that `checksum` names; nothing was extracted",
                            expected.algo.name()
                        ),
                    });
                }
                Ok(expected.to_string())
            }
            None => Ok(Checksum { algo: Algo::Sha256, hex: digest_file(&self.source, Algo::Sha256)? }.to_string()),
        }
    }

    /// The archive's member names, refused when one would land outside `path`.
    async fn members(&self, ctx: &Ctx) -> Result<Vec<String>, StateError> {
        let source = self.source.display().to_string();
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
                path: self.source.clone(),
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

/// `source` as a path: a local absolute path or a `file://` URL.
fn read_source(p: &mut ParamReader<'_>, pos: Option<Pos>, source: &str) -> Option<PathBuf> {
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        p.report(
            Kind::NotYetSupported,
            "source",
            pos,
            "downloading archives over http(s) is not yet supported",
            Some("download it with an earlier `linux.cmd` state (e.g. `curl -fsSLo /var/cache/app.tgz URL`) and give that path".into()),
        );
        return None;
    }
    let path = match source.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') => rest,
        Some(_) => {
            p.report(
                Kind::BadValue,
                "source",
                pos,
                format!("`{source}` is not a local `file://` URL"),
                Some("write `file:///absolute/path` (three slashes) or the path itself".into()),
            );
            return None;
        }
        None if source.contains("://") => {
            p.report(
                Kind::BadValue,
                "source",
                pos,
                format!("`{source}` is not a local path"),
                Some("give the archive's absolute path or a `file://` URL".into()),
            );
            return None;
        }
        None => source,
    };
    check_absolute(p, "source", pos, path)
}

fn format_of(source: &Path) -> Option<Format> {
    let name = source.file_name()?.to_string_lossy().to_ascii_lowercase();
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

type ChecksumError = (Kind, String, String);

fn parse_checksum(text: &str) -> Result<Checksum, ChecksumError> {
    let text = text.trim();
    let hint = "write `md5:HEX`, `sha1:HEX`, `sha256:HEX` or `sha512:HEX`".to_string();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err((Kind::NotYetSupported, "a checksum file URL is not yet supported".into(), hint));
    }
    let Some((algo, hex)) = text.split_once(':').or_else(|| text.split_once('=')) else {
        return Err((Kind::BadValue, format!("`{text}` does not name its algorithm"), hint));
    };
    let algo = match algo.trim().to_ascii_lowercase().as_str() {
        "md5" => Algo::Md5,
        "sha1" => Algo::Sha1,
        "sha256" => Algo::Sha256,
        "sha512" => Algo::Sha512,
        other => return Err((Kind::BadValue, format!("`{other}` is not a checksum algorithm opsagent knows"), hint)),
    };
    let hex = hex.trim().to_ascii_lowercase();
    if hex.len() != algo.hex_len() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err((
            Kind::BadValue,
            format!("`{hex}` is not a {} checksum ({} hex digits)", algo.name(), algo.hex_len()),
            hint,
        ));
    }
    Ok(Checksum { algo, hex })
}

/// The hex digest of a file, read in chunks.
fn digest_file(path: &Path, algo: Algo) -> Result<String, StateError> {
    fn run<D: Digest>(mut file: fs::File) -> io::Result<String> {
        let mut hasher = D::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hex::encode(hasher.finalize()));
            }
            hasher.update(&buf[..n]);
        }
    }
    let file = fs::File::open(path).map_err(StateError::io("reading the archive", path))?;
    match algo {
        Algo::Md5 => run::<md5::Md5>(file),
        Algo::Sha1 => run::<sha1::Sha1>(file),
        Algo::Sha256 => run::<sha2::Sha256>(file),
        Algo::Sha512 => run::<sha2::Sha512>(file),
    }
    .map_err(StateError::io("reading the archive", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_name() {
        let f = |n: &str| format_of(Path::new(n));
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
    fn checksums_parse() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(parse_checksum(&format!("md5:{md5}")).unwrap().to_string(), format!("md5:{md5}"));
        assert_eq!(parse_checksum(&format!("MD5={}", md5.to_uppercase())).unwrap().to_string(), format!("md5:{md5}"));
        assert!(parse_checksum("sha256:abc").unwrap_err().1.contains("is not a sha256 checksum"));
        assert!(parse_checksum("crc:00").unwrap_err().1.contains("`crc` is not a checksum algorithm"));
        assert_eq!(parse_checksum("https://x/sum").unwrap_err().0, Kind::NotYetSupported);
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

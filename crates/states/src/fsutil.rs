//! The one way opsagent writes a file — managed files and its own state alike — and small
//! helpers for modes and owners.
//!
//! [`write_atomic`] never leaves a partial file, even when the process is killed mid-write: the
//! content goes into an unnamed `O_TMPFILE` in the target directory (it vanishes if we die), gets
//! its mode and owner, is fsynced, linked under a temporary name and renamed over the target in
//! one step; then the directory is fsynced. Where the filesystem lacks `O_TMPFILE`, a named
//! temporary file (created exclusively, unique name) takes its place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

use crate::ctx::Owner;

/// Writes `content` to `path` atomically with `mode` and `owner` set before it becomes visible.
/// The parent directory must exist.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32, owner: Owner) -> io::Result<()> {
    let dir = parent_of(path);
    let (mut file, named) = match open_unnamed(dir) {
        Ok(file) => (file, None),
        Err(_) => {
            let (file, name) = create_named_temp(dir, path)?;
            (file, Some(name))
        }
    };
    let result = (|| {
        file.write_all(content)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::fchown(&file, owner.uid, owner.gid)?;
            // chown clears set-id bits: set the mode again.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        let temp_name = match &named {
            Some(name) => name.clone(),
            None => link_unnamed(&file, dir, path)?,
        };
        if let Err(e) = fs::rename(&temp_name, path) {
            let _ = fs::remove_file(&temp_name);
            return Err(e);
        }
        Ok(())
    })();
    if result.is_err() {
        if let Some(name) = &named {
            let _ = fs::remove_file(name);
        }
    }
    result?;
    sync_dir(dir)
}

/// fsyncs a directory, so that a rename or creation in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Permission bits (with set-id and sticky bits) of a file's metadata.
pub fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// Sets the mode of `path` (not following a final symlink is not possible for chmod on Linux; callers
/// never chmod links).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Changes the owner of `path` itself (a symlink is not followed).
pub fn set_owner(path: &Path, owner: Owner) -> io::Result<()> {
    std::os::unix::fs::lchown(path, owner.uid, owner.gid)
}

/// Which parts of `owner` differ from what `meta` has.
pub fn owner_differs(meta: &fs::Metadata, owner: Owner) -> (bool, bool) {
    (owner.uid.is_some_and(|u| u != meta.uid()), owner.gid.is_some_and(|g| g != meta.gid()))
}

fn open_unnamed(dir: &Path) -> io::Result<File> {
    let fd =
        nix::fcntl::open(dir, OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))?;
    Ok(File::from(fd))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name(dir: &Path, target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.opsagent-{}-{n}.tmp", std::process::id()))
}

fn link_unnamed(file: &File, dir: &Path, target: &Path) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    loop {
        let name = temp_name(dir, target);
        match nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            proc_path.as_str(),
            nix::fcntl::AT_FDCWD,
            &name,
            AtFlags::AT_SYMLINK_FOLLOW,
        ) {
            Ok(()) => return Ok(name),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn create_named_temp(dir: &Path, target: &Path) -> io::Result<(File, PathBuf)> {
    loop {
        let name = temp_name(dir, target);
        match OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc_o_cloexec()).open(&name) {
            Ok(file) => return Ok((file, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn libc_o_cloexec() -> i32 {
    OFlag::O_CLOEXEC.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o640, Owner::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&fs::metadata(&path).unwrap()), 0o640);
        write_atomic(&path, b"two", 0o600, Owner::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&fs::metadata(&path).unwrap()), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }
}

//! `linux.mount` — a filesystem mounted (or not) at a path, and if asked its line in `/etc/fstab`.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `path` | absolute path | required | the mount point; created (mode 0755) when missing |
//! | `device` | text | required | a device (`/dev/xvdf`), `UUID=…`, `LABEL=…`, an image file (with `opts: loop`), or the source of a `tmpfs`, `nfs` or bind mount |
//! | `filesystem` | filesystem type | required | `ext4`, `xfs`, `tmpfs`, `nfs`, … (`none` with `opts: bind` for a bind mount) |
//! | `opts` | comma list | `defaults` | mount options, used for `mount -o` and the fstab line |
//! | `dump` | number | `0` | fstab's fifth field |
//! | `pass` | number | `0` | fstab's sixth field (fsck order) |
//! | `fstab` | bool | `false` | also keep the line in `/etc/fstab` (as the original, not by default) |
//! | `mounted` | bool | `true` | ours: `false` unmounts `path` (and with `fstab`, removes its fstab line) |
//!
//! The current state is read from the kernel (`/proc/self/mountinfo`) and `/etc/fstab`, never from
//! `mount`'s output. "Already fine" means, with `mounted: true`: the topmost mount at `path` comes
//! from `device` (the same source, the same block device — `UUID=`/`LABEL=` resolved with `blkid`
//! — or, for a loop mount, the same backing file; for a bind mount, `path` shows the very directory
//! `device` names) with type `filesystem` (not compared for `auto`, `none` and bind mounts), and
//! the requested options are in effect. Compared options are those the kernel reports: the flags
//! `ro`/`rw`, `nosuid`/`suid`, `nodev`/`dev`, `noexec`/`exec`, `sync`/`async`, `dirsync`,
//! `noatime`/`atime`, `relatime`/`norelatime`, `strictatime`, `nodiratime`/`diratime`,
//! `lazytime`/`nolazytime`, and `key=value` options whose key the kernel lists for that mount
//! (numbers with `k`/`m`/`g` suffixes compare by value, so `size=8m` matches `size=8192k`). Other
//! options (`defaults`, `nofail`, `_netdev`, `acl`, …) are passed to `mount` but not compared.
//! Options that differ are applied with `mount -o remount,OPTS`; another filesystem mounted at
//! `path` is unmounted first, then `device` is mounted. With `mounted: false`, "already fine" means
//! nothing is mounted at `path` (every stacked mount there is unmounted). With `fstab: true`, the
//! fstab has exactly one line for `path` with these six fields (a line with the same fields and other
//! spacing is left alone); `/etc/fstab` is rewritten atomically and every other line stays
//! byte-identical. `--test` lists the mount point to create, the mount, remount or unmount, and a
//! diff of `/etc/fstab`.
//!
//! ```yaml
//! - id: data-volume
//!   module: linux.mount
//!   parameter: { path: /data, device: LABEL=data, filesystem: ext4, opts: "noatime,nodev", fstab: true }
//! ```

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::{absolute_path, create_parents};
use crate::ctx::Owner;
use crate::process::{run_tool, Termination};
use crate::{diff, fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// The fstab opsagent keeps lines in.
pub const FSTAB: &str = "/etc/fstab";

const MOUNT_HINT: &str = "install the `mount` package (util-linux)";
const MOUNT_POINT: &str = "mount point, mode 0755";

/// A validated `linux.mount`.
#[derive(Debug, Clone)]
pub struct Mount {
    pub path: PathBuf,
    pub device: String,
    pub filesystem: String,
    pub opts: Vec<String>,
    pub dump: u64,
    pub pass: u64,
    pub fstab: bool,
    pub mounted: bool,
}

impl Mount {
    pub fn from_params(state: &State) -> Result<(Mount, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let path = absolute_path(&mut p, "path");
        let device_pos = p.node("device").and_then(|n| n.pos);
        let device =
            p.required_string("device", "name what to mount, e.g. `device: /dev/xvdf` or `device: LABEL=data`");
        if let Some(d) = &device {
            if d.trim().is_empty() || d.chars().any(char::is_control) {
                p.report(
                    Kind::BadValue,
                    "device",
                    device_pos,
                    format!("`{d}` is not a device"),
                    Some("write a device path, `UUID=…`, `LABEL=…` or a source such as `tmpfs`".into()),
                );
            }
        }
        let fs_pos = p.node("filesystem").and_then(|n| n.pos);
        let filesystem = p.required_string("filesystem", "name the filesystem type, e.g. `filesystem: ext4`");
        if let Some(t) = &filesystem {
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                p.report(
                    Kind::BadValue,
                    "filesystem",
                    fs_pos,
                    format!("`{t}` is not a filesystem type"),
                    Some("write a type such as `ext4`, `xfs` or `tmpfs`".into()),
                );
            }
        }
        let opts = read_opts(&mut p);
        let dump = read_number(&mut p, "dump");
        let pass = read_number(&mut p, "pass");
        let fstab = p.bool("fstab").unwrap_or(false);
        let mounted = p.bool("mounted").unwrap_or(true);
        let warnings = p.finish(&["path", "device", "filesystem", "opts", "dump", "pass", "fstab", "mounted"], &[])?;
        let (Some(path), Some(device), Some(filesystem)) = (path, device, filesystem) else {
            unreachable!("finish fails when `path`, `device` or `filesystem` is missing or invalid");
        };
        let mount = Mount {
            path,
            device,
            filesystem,
            opts: opts.unwrap_or_default(),
            dump: dump.unwrap_or(0),
            pass: pass.unwrap_or(0),
            fstab,
            mounted,
        };
        Ok((mount, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let shown = self.path.display().to_string();
        let mut plan = Plan::default();
        let entries = read_mountinfo()?;
        let target = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let here: Vec<&MountEntry> = entries.iter().filter(|e| e.mount_point == target).collect();
        if self.mounted {
            match std::fs::metadata(&self.path) {
                Err(_) => plan.changes.push(Change::new(Action::Create, &shown, MOUNT_POINT)),
                Ok(meta) if !meta.is_dir() && !self.is_bind() => {
                    return Err(StateError::Conflict {
                        path: self.path.clone(),
                        problem: "exists and is not a directory, so it cannot be a mount point".into(),
                    })
                }
                Ok(_) => {}
            }
            match here.last() {
                None => plan.changes.push(Change::new(Action::Create, &shown, self.mount_detail())),
                Some(top) if self.is_mounted_from(ctx, top).await? => {
                    let missing = options_not_in_effect(&self.opts, top);
                    if !missing.is_empty() {
                        plan.changes.push(Change::new(
                            Action::Update,
                            &shown,
                            format!("remount: {} not in effect", missing.join(",")),
                        ));
                    }
                }
                Some(top) => {
                    plan.changes.push(Change::new(Action::Remove, &shown, top.describe()));
                    plan.changes.push(Change::new(Action::Create, &shown, self.mount_detail()));
                }
            }
        } else {
            for entry in here.iter().rev() {
                plan.changes.push(Change::new(Action::Remove, &shown, entry.describe()));
            }
        }
        if self.fstab {
            let current = read_fstab()?;
            let wanted = self.edit_fstab(&current);
            if wanted != current {
                plan.changes.push(Change::new(Action::Update, FSTAB, self.fstab_detail()));
                plan.diff = Some(diff::unified(FSTAB, current.as_bytes(), wanted.as_bytes()));
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let shown = self.path.display().to_string();
        let path = shown.as_str();
        for change in &plan.changes {
            if change.target == FSTAB {
                let current = read_fstab()?;
                let wanted = self.edit_fstab(&current);
                let file = Path::new(FSTAB);
                let (mode, owner) = match std::fs::metadata(file) {
                    Ok(meta) => (fsutil::mode_of(&meta), Owner { uid: Some(meta.uid()), gid: Some(meta.gid()) }),
                    Err(_) => (0o644, Owner::default()),
                };
                fsutil::write_atomic(file, wanted.as_bytes(), mode, owner).map_err(StateError::io("writing", file))?;
                continue;
            }
            match change.action {
                Action::Create if change.detail == MOUNT_POINT => create_parents(&self.path)?,
                Action::Create => {
                    let opts = self.opts_text();
                    let args = ["-t", self.filesystem.as_str(), "-o", opts.as_str(), self.device.as_str(), path];
                    run_tool(ctx, "mount", &args, MOUNT_HINT).await?;
                }
                Action::Update => {
                    let opts = format!("remount,{}", self.opts_text());
                    run_tool(ctx, "mount", &["-o", &opts, self.device.as_str(), path], MOUNT_HINT).await?;
                }
                Action::Remove => {
                    run_tool(ctx, "umount", &[path], MOUNT_HINT).await?;
                }
                _ => {}
            }
        }
        Ok(plan.into())
    }

    fn is_bind(&self) -> bool {
        self.opts.iter().any(|o| o == "bind" || o == "rbind")
    }

    fn opts_text(&self) -> String {
        if self.opts.is_empty() {
            "defaults".into()
        } else {
            self.opts.join(",")
        }
    }

    fn mount_detail(&self) -> String {
        format!("mount {} ({}, {})", self.device, self.filesystem, self.opts_text())
    }

    fn fstab_detail(&self) -> String {
        if self.mounted {
            format!("line for {}: {}", self.path.display(), self.fstab_line())
        } else {
            format!("remove the line for {}", self.path.display())
        }
    }

    fn fstab_fields(&self) -> [String; 6] {
        [
            escape(&self.device),
            escape(&self.path.display().to_string()),
            self.filesystem.clone(),
            self.opts_text(),
            self.dump.to_string(),
            self.pass.to_string(),
        ]
    }

    fn fstab_line(&self) -> String {
        self.fstab_fields().join(" ")
    }

    /// `current` with exactly the wanted line for `path` (or none); every other line unchanged.
    fn edit_fstab(&self, current: &str) -> String {
        let wanted = self.fstab_fields();
        let path = self.path.display().to_string();
        let mut out = String::with_capacity(current.len() + 80);
        let mut placed = false;
        for line in current.split_inclusive('\n') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_ours = !line.trim_start().starts_with('#')
                && fields.len() >= 2
                && unescape(fields[1]).trim_end_matches('/') == path.trim_end_matches('/');
            if !is_ours {
                out.push_str(line);
                continue;
            }
            if !self.mounted || placed {
                continue;
            }
            placed = true;
            let mut have: Vec<&str> = fields.clone();
            while have.len() < 6 {
                have.push("0");
            }
            let same_path =
                |i: usize, a: &str| i == 1 && unescape(a).trim_end_matches('/') == path.trim_end_matches('/');
            if have.len() == 6 && have.iter().zip(&wanted).enumerate().all(|(i, (a, b))| a == b || same_path(i, a)) {
                out.push_str(line);
            } else {
                out.push_str(&self.fstab_line());
                out.push('\n');
            }
        }
        if self.mounted && !placed {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&self.fstab_line());
            out.push('\n');
        }
        out
    }

    /// Whether `entry` (mounted at `path`) is `device`'s filesystem.
    async fn is_mounted_from(&self, ctx: &Ctx, entry: &MountEntry) -> Result<bool, StateError> {
        if self.is_bind() {
            let (Ok(source), Ok(here)) = (std::fs::metadata(&self.device), std::fs::metadata(&self.path)) else {
                return Ok(false);
            };
            return Ok(source.dev() == here.dev() && source.ino() == here.ino());
        }
        if !matches!(self.filesystem.as_str(), "auto" | "none") && entry.fstype != self.filesystem {
            return Ok(false);
        }
        if entry.source == self.device {
            return Ok(true);
        }
        let Some(device) = self.resolve_device(ctx).await? else {
            return Ok(false);
        };
        let device = std::fs::canonicalize(&device).unwrap_or(device);
        if Path::new(&entry.source) == device || std::fs::canonicalize(&entry.source).ok().as_ref() == Some(&device) {
            return Ok(true);
        }
        if let Ok(meta) = std::fs::metadata(&device) {
            if meta.file_type().is_block_device() && (dev_major(meta.rdev()), dev_minor(meta.rdev())) == entry.dev {
                return Ok(true);
            }
            if meta.is_file() {
                // A loop mount of an image file: the kernel shows the loop device.
                return Ok(loop_backing_file(&entry.source).is_some_and(|f| f == device));
            }
        }
        Ok(false)
    }

    /// The device path `device` names (`UUID=`/`LABEL=` resolved), if it names one.
    async fn resolve_device(&self, ctx: &Ctx) -> Result<Option<PathBuf>, StateError> {
        let (flag, dir, value) = if let Some(uuid) = self.device.strip_prefix("UUID=") {
            ("-U", "/dev/disk/by-uuid", uuid)
        } else if let Some(label) = self.device.strip_prefix("LABEL=") {
            ("-L", "/dev/disk/by-label", label)
        } else if self.device.starts_with('/') {
            return Ok(Some(PathBuf::from(&self.device)));
        } else {
            return Ok(None);
        };
        let link = Path::new(dir).join(value);
        if link.exists() {
            return Ok(Some(link));
        }
        match run_tool(ctx, "blkid", &[flag, value], "install the `util-linux` package (it provides `blkid`)").await {
            Ok(out) => {
                let found = String::from_utf8_lossy(&out.stdout.bytes).trim().to_string();
                Ok((!found.is_empty()).then(|| PathBuf::from(found)))
            }
            Err(StateError::Command { termination: Termination::Exited(2), .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    dev: (u64, u64),
    mount_point: PathBuf,
    mount_opts: Vec<String>,
    fstype: String,
    source: String,
    super_opts: Vec<String>,
}

impl MountEntry {
    fn describe(&self) -> String {
        format!("unmount {} ({})", self.source, self.fstype)
    }

    fn has(&self, option: &str) -> bool {
        self.mount_opts.iter().chain(&self.super_opts).any(|o| o == option)
    }

    fn value_of(&self, key: &str) -> Option<&str> {
        self.mount_opts.iter().chain(&self.super_opts).find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
    }
}

fn read_mountinfo() -> Result<Vec<MountEntry>, StateError> {
    let file = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(file).map_err(StateError::io("reading", file))?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            let (major, minor) = fields[2].split_once(':')?;
            Some(MountEntry {
                dev: (major.parse().ok()?, minor.parse().ok()?),
                mount_point: PathBuf::from(unescape(fields[4])),
                mount_opts: fields[5].split(',').map(String::from).collect(),
                fstype: fields[sep + 1].to_string(),
                source: unescape(fields[sep + 2]),
                super_opts: fields.get(sep + 3).map(|o| o.split(',').map(String::from).collect()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Flags the kernel shows by name when set: (set, its opposite).
const FLAGS: &[(&str, &str)] = &[
    ("nosuid", "suid"),
    ("nodev", "dev"),
    ("noexec", "exec"),
    ("sync", "async"),
    ("dirsync", ""),
    ("noatime", "atime"),
    ("relatime", "norelatime"),
    ("nodiratime", "diratime"),
    ("lazytime", "nolazytime"),
];

/// The requested options the kernel's view of `entry` contradicts (see the module doc).
fn options_not_in_effect(opts: &[String], entry: &MountEntry) -> Vec<String> {
    let mut missing = Vec::new();
    for opt in opts {
        let fine = match opt.as_str() {
            "ro" | "rw" => entry.mount_opts.iter().any(|o| o == opt),
            "strictatime" => !entry.has("noatime") && !entry.has("relatime"),
            o => {
                if let Some((set, _)) = FLAGS.iter().find(|(set, _)| *set == o) {
                    entry.has(set)
                } else if let Some((set, _)) = FLAGS.iter().find(|(_, unset)| !unset.is_empty() && *unset == o) {
                    !entry.has(set)
                } else if let Some((key, value)) = o.split_once('=') {
                    entry.value_of(key).is_none_or(|have| same_value(value, have))
                } else {
                    true
                }
            }
        };
        if !fine {
            missing.push(opt.clone());
        }
    }
    missing
}

/// Option values compared by meaning where the kernel rewrites them (`8m` = `8192k`, `0750` = `750`).
fn same_value(wanted: &str, have: &str) -> bool {
    fn bytes(v: &str) -> Option<u128> {
        let v = v.to_ascii_lowercase();
        let (digits, unit) = match v.char_indices().last()? {
            (i, c @ ('k' | 'm' | 'g' | 't')) => (&v[..i], c),
            _ => (v.as_str(), ' '),
        };
        let n: u128 = digits.parse().ok()?;
        let shift = match unit {
            'k' => 10,
            'm' => 20,
            'g' => 30,
            't' => 40,
            _ => 0,
        };
        Some(n << shift)
    }
    wanted == have || matches!((bytes(wanted), bytes(have)), (Some(a), Some(b)) if a == b)
}

fn read_opts(p: &mut ParamReader<'_>) -> Option<Vec<String>> {
    let pos = p.node("opts").and_then(|n| n.pos);
    let is_list = p.node("opts").is_some_and(|n| n.scalar_text().is_none());
    let items: Vec<String> = if is_list {
        p.string_list("opts")?
    } else {
        p.string("opts")?.split(',').map(|s| s.trim().to_string()).collect()
    };
    let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
    if let Some(bad) = items.iter().find(|o| o.chars().any(|c| c.is_whitespace() || c == ',')) {
        p.report(
            Kind::BadValue,
            "opts",
            pos,
            format!("`{bad}` is not a mount option"),
            Some("write the options as one comma list without spaces, e.g. `opts: noatime,nodev`".into()),
        );
        return None;
    }
    if items.iter().any(|o| o == "remount") {
        p.report(
            Kind::BadValue,
            "opts",
            pos,
            "`remount` is not an option to keep",
            Some("leave it out: opsagent remounts by itself when options differ".into()),
        );
        return None;
    }
    Some(items.into_iter().filter(|o| o != "defaults").collect())
}

/// `dump` and `pass`: whole numbers, also as strings; an empty string is 0 as in the original.
fn read_number(p: &mut ParamReader<'_>, name: &str) -> Option<u64> {
    if p.node(name).is_some_and(|n| n.scalar_text().is_some_and(|t| t.trim().is_empty())) {
        return Some(0);
    }
    p.u64(name)
}

/// Undoes the octal escapes of mountinfo and fstab (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = bytes[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes what fstab cannot hold in a field.
fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

fn read_fstab() -> Result<String, StateError> {
    match std::fs::read(FSTAB) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| StateError::Conflict {
            path: PathBuf::from(FSTAB),
            problem: "is not valid UTF-8; opsagent will not rewrite it".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(StateError::io("reading", FSTAB)(e)),
    }
}

/// The file behind a loop device (`/dev/loop3`), from sysfs.
fn loop_backing_file(source: &str) -> Option<PathBuf> {
    let name = source.strip_prefix("/dev/")?;
    if !name.starts_with("loop") {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

fn dev_major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0fff)
}

fn dev_minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x00ff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n\
        42 27 7:0 / /mnt/my\\040data rw,nosuid,relatime - ext4 /dev/loop0 rw\n\
        50 22 0:45 / /tmp/t rw,relatime - tmpfs opsagent-test rw,size=4096k,mode=750\n";

    fn mount(path: &str, opts: &[&str], mounted: bool) -> Mount {
        Mount {
            path: PathBuf::from(path),
            device: "/dev/xvdf".into(),
            filesystem: "ext4".into(),
            opts: opts.iter().map(|o| o.to_string()).collect(),
            dump: 0,
            pass: 2,
            fstab: true,
            mounted,
        }
    }

    #[test]
    fn reads_mountinfo() {
        let entries = parse_mountinfo(INFO);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].mount_point, PathBuf::from("/mnt/my data"));
        assert_eq!(entries[1].dev, (7, 0));
        assert_eq!(entries[2].fstype, "tmpfs");
        assert_eq!(entries[2].value_of("size"), Some("4096k"));
    }

    #[test]
    fn compares_the_options_the_kernel_shows() {
        let entries = parse_mountinfo(INFO);
        let opts = |list: &[&str]| list.iter().map(|o| o.to_string()).collect::<Vec<_>>();
        assert!(options_not_in_effect(&opts(&["size=4m", "mode=0750", "rw", "nofail", "acl"]), &entries[2]).is_empty());
        assert_eq!(
            options_not_in_effect(&opts(&["size=8m", "ro", "nosuid"]), &entries[2]),
            ["size=8m", "ro", "nosuid"]
        );
        assert_eq!(options_not_in_effect(&opts(&["suid", "noatime", "relatime"]), &entries[1]), ["suid", "noatime"]);
    }

    #[test]
    fn edits_only_the_line_for_the_path() {
        let m = mount("/data", &["noatime"], true);
        let other = "# comment\nUUID=abc /  ext4\terrors=remount-ro 0 1\n";
        assert_eq!(m.edit_fstab(other), format!("{other}/dev/xvdf /data ext4 noatime 0 2\n"));
        let spaced = "UUID=abc / ext4 defaults 0 1\n/dev/xvdf\t/data/  ext4 noatime 0  2\nproc /proc proc defaults\n";
        assert_eq!(m.edit_fstab(spaced), spaced, "the same fields with other spacing are left alone");
        let old = "/dev/xvdf /data ext4 defaults 0 0\n/dev/xvdg /data ext4 defaults\nlast /x y z";
        assert_eq!(m.edit_fstab(old), "/dev/xvdf /data ext4 noatime 0 2\nlast /x y z");
        assert_eq!(mount("/data", &[], false).edit_fstab(old), "last /x y z");
        assert_eq!(mount("/my data", &[], true).fstab_line(), "/dev/xvdf /my\\040data ext4 defaults 0 2");
    }
}

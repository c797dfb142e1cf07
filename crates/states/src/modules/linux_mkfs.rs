//! `linux.mkfs` — a filesystem on a device, created once and never overwritten.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `device` | absolute path | required | a block device (`/dev/xvdf`) or an image file |
//! | `fstype` | filesystem type | required | `ext2`, `ext3`, `ext4`, `xfs`, `btrfs`, `vfat`, …: runs `mkfs.FSTYPE` (as `mkfs -t FSTYPE` would) |
//! | `label` | text | — | the new filesystem's label (`-L`, `-n` for `vfat`); set only when the filesystem is created |
//!
//! "Already fine" means the device already holds a filesystem of type `fstype` (as `blkid -p`, which
//! reads the device itself, reports it). opsagent **never reformats**: a device that holds another
//! filesystem, a partition table or any other signature `blkid` knows (swap, RAID, LVM, LUKS) fails
//! the state with an error saying so, and nothing is written; wipe it by hand (`wipefs`) if its data
//! may go. The label of an existing filesystem is not compared. A device that does not exist is an
//! error. `--test` shows the `mkfs` that would run, and fails as `apply` would when the device holds
//! something else or when `mkfs.FSTYPE` is not installed (the error names the tool and its package).
//!
//! ```yaml
//! - id: data-fs
//!   module: linux.mkfs
//!   parameter: { device: /dev/xvdf, fstype: ext4, label: data }
//! ```

use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::absolute_path;
use crate::process::{run_tool, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.mkfs`.
#[derive(Debug, Clone)]
pub struct Mkfs {
    pub device: PathBuf,
    pub fstype: String,
    pub label: Option<String>,
}

impl Mkfs {
    pub fn from_params(state: &State) -> Result<(Mkfs, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let device = absolute_path(&mut p, "device");
        let fstype_pos = p.node("fstype").and_then(|n| n.pos);
        let fstype = p.required_string("fstype", "name the filesystem type, e.g. `fstype: ext4`");
        if let Some(t) = &fstype {
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                p.report(
                    Kind::BadValue,
                    "fstype",
                    fstype_pos,
                    format!("`{t}` is not a filesystem type"),
                    Some("write a type such as `ext4`, `xfs` or `btrfs`".into()),
                );
            }
        }
        let label_pos = p.node("label").and_then(|n| n.pos);
        let label = p.string("label").filter(|l| !l.is_empty());
        if let Some(l) = &label {
            if l.starts_with('-') || l.chars().any(char::is_control) {
                p.report(
                    Kind::BadValue,
                    "label",
                    label_pos,
                    format!("`{l}` is not a usable label"),
                    Some("a label is a short name such as `data`; it may not start with `-`".into()),
                );
            }
        }
        let warnings = p.finish(&["device", "fstype", "label"], &[])?;
        let (Some(device), Some(fstype)) = (device, fstype) else {
            unreachable!("finish fails when `device` or `fstype` is missing or invalid");
        };
        Ok((Mkfs { device, fstype, label }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        if !self.device.exists() {
            return Err(StateError::Conflict {
                path: self.device.clone(),
                problem: "does not exist; attach the volume (or create the image file) first".into(),
            });
        }
        match probe(ctx, &self.device).await? {
            Some(Signature::Filesystem(found)) if found == self.fstype => return Ok(plan),
            Some(Signature::Filesystem(found)) => {
                return Err(StateError::Conflict {
                    path: self.device.clone(),
                    problem: format!(
                        "already holds a `{found}` filesystem, not `{}`; opsagent never reformats a device, \
                         so that no data is destroyed: wipe it by hand (`wipefs -a`) if its data may go, \
                         or change `fstype`",
                        self.fstype
                    ),
                })
            }
            Some(Signature::PartitionTable(kind)) => {
                return Err(StateError::Conflict {
                    path: self.device.clone(),
                    problem: format!(
                        "holds a `{kind}` partition table; opsagent never formats a device that holds data: \
                         name a partition instead, or wipe it by hand (`wipefs -a`)"
                    ),
                })
            }
            None => {}
        }
        let tool = self.tool();
        if !in_path(&tool) {
            return Err(StateError::MissingTool { tool: tool.clone(), hint: install_hint(&self.fstype) });
        }
        let detail = match &self.label {
            Some(label) => format!("mkfs -t {} -L {label}", self.fstype),
            None => format!("mkfs -t {}", self.fstype),
        };
        plan.changes.push(Change::new(Action::Create, self.device.display().to_string(), detail));
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if plan.is_empty() {
            return Ok(plan.into());
        }
        // Look again right before writing: never format over a filesystem, whatever the plan said.
        if let Some(found) = probe(ctx, &self.device).await? {
            return Err(StateError::Conflict {
                path: self.device.clone(),
                problem: format!(
                    "now holds {}; opsagent never reformats a device, so nothing was written",
                    found.describe()
                ),
            });
        }
        let device = self.device.display().to_string();
        let mut args: Vec<&str> = Vec::new();
        if let Some(label) = &self.label {
            args.push(if matches!(self.fstype.as_str(), "vfat" | "fat" | "msdos") { "-n" } else { "-L" });
            args.push(label);
        }
        args.push(&device);
        let output = run_tool(ctx, &self.tool(), &args, &install_hint(&self.fstype)).await?;
        Ok(Outcome { stdout: Some(output.stdout), stderr: Some(output.stderr), ..plan.into() })
    }

    fn tool(&self) -> String {
        format!("mkfs.{}", self.fstype)
    }
}

/// What `blkid -p` found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signature {
    /// A filesystem or another content signature (`swap`, `LVM2_member`, `crypto_LUKS`, …).
    Filesystem(String),
    PartitionTable(String),
}

impl Signature {
    pub(crate) fn describe(&self) -> String {
        match self {
            Signature::Filesystem(t) => format!("a `{t}` signature"),
            Signature::PartitionTable(t) => format!("a `{t}` partition table"),
        }
    }
}

/// Reads the device's own signatures with `blkid -p` (low-level probing, no cache).
pub(crate) async fn probe(ctx: &Ctx, device: &Path) -> Result<Option<Signature>, StateError> {
    let device = device.display().to_string();
    let hint = "install the `util-linux` package (it provides `blkid`)";
    let output = match run_tool(ctx, "blkid", &["-p", "-o", "export", &device], hint).await {
        Ok(output) => output,
        // Exit status 2: no signature found.
        Err(StateError::Command { termination: Termination::Exited(2), .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse_blkid(&String::from_utf8_lossy(&output.stdout.bytes)))
}

fn parse_blkid(export: &str) -> Option<Signature> {
    let value = |key: &str| {
        export.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::to_string)
    };
    value("TYPE").map(Signature::Filesystem).or_else(|| value("PTTYPE").map(Signature::PartitionTable))
}

fn in_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

fn install_hint(fstype: &str) -> String {
    let package = match fstype {
        "ext2" | "ext3" | "ext4" => "e2fsprogs",
        "xfs" => "xfsprogs",
        "btrfs" => "btrfs-progs",
        "vfat" | "fat" | "msdos" => "dosfstools",
        "ntfs" => "ntfs-3g",
        "reiserfs" => "reiserfsprogs",
        "f2fs" => "f2fs-tools",
        _ => return format!("install the package that provides `mkfs.{fstype}` (an earlier state of the recipe can)"),
    };
    format!("install the `{package}` package (an earlier `linux.apt.package` state can)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blkid_export() {
        let ext4 = "DEVNAME=/dev/loop0\nUUID=1750\nVERSION=1.0\nTYPE=ext4\nUSAGE=filesystem\n";
        assert_eq!(parse_blkid(ext4), Some(Signature::Filesystem("ext4".into())));
        assert_eq!(
            parse_blkid("DEVNAME=/dev/sda\nPTUUID=x\nPTTYPE=gpt\n"),
            Some(Signature::PartitionTable("gpt".into()))
        );
        assert_eq!(parse_blkid(""), None);
    }

    #[test]
    fn names_the_package_of_the_tool() {
        assert!(install_hint("xfs").contains("`xfsprogs`"));
        assert!(install_hint("zzz").contains("`mkfs.zzz`"));
    }
}

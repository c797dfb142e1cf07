//! `linux.lvm.pv` — LVM physical volumes on block devices, created with `pvcreate` and never over data.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `path` | list of absolute paths | required | the devices or partitions (`/dev/xvdf`); `"/dev/a, /dev/b"` is split on commas |
//! | `force` | bool | `false` | allow `pvcreate` to wipe a device that holds a filesystem or another signature (`--force --yes`) |
//! | `uuid` | text | — | `--uuid`; needs `restore-file` or `no-restore-file` |
//! | `zero` | bool | lvm's | `--zero y\|n`: wipe the first sectors |
//! | `data-alignment` | size | — | `--dataalignment` |
//! | `data-alignment-offset` | size | — | `--dataalignmentoffset` |
//! | `metadata-size` | size | — | `--metadatasize` |
//! | `metadata-type` | `lvm2` | `lvm2` | `--metadatatype`; `lvm1` is refused (lvm2 2.03 dropped it) |
//! | `metadata-copies` | `0`, `1`, `2` | lvm's | `--pvmetadatacopies` |
//! | `metadata-ignore` | bool | lvm's | `--metadataignore y\|n` |
//! | `restore-file` | absolute path | — | `--restorefile` (with `uuid`) |
//! | `no-restore-file` | bool | `true` | with `uuid` and no `restore-file`: `--norestorefile` |
//! | `label-sector` | `0`–`3` | lvm's | `--labelsector` (the IDE's default `LVM2` means lvm's own) |
//! | `pv-size` | size | — | `--setphysicalvolumesize` |
//! | `absent` | bool | `false` | ours: `pvremove` each device that is a physical volume of no volume group |
//!
//! Sizes are lvm sizes: a number with an optional unit `b`, `s` (sectors), `k`, `m`, `g`, `t`, `p`,
//! `e` (powers of 1024 in either case). "Already fine" means every device is a physical volume (as
//! `pvs` reports it, symlinks such as `/dev/disk/by-id/…` resolved); the options are used only when a
//! volume is created and are not compared with an existing one. A device that is not yet a physical
//! volume must exist and be a block device, and opsagent reads its signatures first (`blkid -p`): one
//! that holds a filesystem, a partition table, a RAID member or any other signature fails the state
//! and nothing is written, unless `force: true` (then `pvcreate --force --yes` wipes the signature).
//! With `absent: true`, "already fine" means none of the devices is a physical volume; a device still
//! in a volume group is never taken out of it implicitly (the state fails and says so). `--test` lists
//! each `pvcreate`/`pvremove` command that `apply` would run. A missing lvm2 fails the state naming
//! the tool (`pvs`) and its package: unlike the original, opsagent does not install `lvm2` by
//! itself (a `linux.apt.package` state before this one can).
//!
//! ```yaml
//! - id: data-pv
//!   module: linux.lvm.pv
//!   parameter: { path: [/dev/xvdf, /dev/xvdg] }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use super::linux_mkfs::probe;
use crate::providers::lvm::{self, command_line, Collected};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const PARAMS: &[&str] = &[
    "path",
    "force",
    "uuid",
    "zero",
    "data-alignment",
    "data-alignment-offset",
    "metadata-size",
    "metadata-type",
    "metadata-copies",
    "metadata-ignore",
    "restore-file",
    "no-restore-file",
    "label-sector",
    "pv-size",
    "absent",
];

/// A validated `linux.lvm.pv`.
#[derive(Debug, Clone)]
pub struct Pv {
    pub devices: Vec<PathBuf>,
    pub force: bool,
    pub absent: bool,
    /// The `pvcreate` options, before the device.
    pub options: Vec<String>,
}

impl Pv {
    pub fn from_params(state: &State) -> Result<(Pv, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let devices = device_list(&mut p, "path", true);
        let force = p.bool("force").unwrap_or(false);
        let absent = p.bool("absent").unwrap_or(false);
        let mut options = Vec::new();
        let uuid = text(&mut p, "uuid", "a PV uuid such as `gaEMA3-QpyS-SX3U-NJi2-qg7k-KNyN-KnCNnI`");
        let restore_pos = p.node("restore-file").and_then(|n| n.pos);
        let restore_file = p
            .string("restore-file")
            .filter(|f| !f.is_empty())
            .and_then(|f| check_absolute(&mut p, "restore-file", restore_pos, &f));
        let no_restore_file = p.bool("no-restore-file").unwrap_or(true);
        if let Some(uuid) = &uuid {
            options.extend(["--uuid".into(), uuid.clone()]);
            match &restore_file {
                Some(file) => options.extend(["--restorefile".into(), file.display().to_string()]),
                None if no_restore_file => options.push("--norestorefile".into()),
                None => {
                    let pos = p.node("uuid").and_then(|n| n.pos);
                    p.report(
                        Kind::BadValue,
                        "uuid",
                        pos,
                        "`uuid` needs a `restore-file`, or `no-restore-file: true`",
                        Some("name the vgcfgbackup file in `restore-file`, or set `no-restore-file: true`".into()),
                    );
                }
            }
        }
        if let Some(zero) = p.bool("zero") {
            options.extend(["--zero".into(), yes_no(zero)]);
        }
        for (name, flag) in [
            ("data-alignment", "--dataalignment"),
            ("data-alignment-offset", "--dataalignmentoffset"),
            ("metadata-size", "--metadatasize"),
            ("pv-size", "--setphysicalvolumesize"),
        ] {
            if let Some(size) = size(&mut p, name, 'k') {
                options.extend([flag.into(), size]);
            }
        }
        if let Some(kind) = metadata_type(&mut p) {
            options.extend(["--metadatatype".into(), kind]);
        }
        if let Some(copies) = choice(&mut p, "metadata-copies", &["0", "1", "2"]) {
            options.extend(["--pvmetadatacopies".into(), copies]);
        }
        if let Some(ignore) = p.bool("metadata-ignore") {
            options.extend(["--metadataignore".into(), yes_no(ignore)]);
        }
        let sector_pos = p.node("label-sector").and_then(|n| n.pos);
        match p.string("label-sector").as_deref().map(str::trim) {
            None | Some("") | Some("LVM2") => {}
            Some(s @ ("0" | "1" | "2" | "3")) => options.extend(["--labelsector".into(), s.to_string()]),
            Some(other) => p.report(
                Kind::BadValue,
                "label-sector",
                sector_pos,
                format!("`{other}` is not a label sector"),
                Some("write 0, 1, 2 or 3 (lvm's default is 1)".into()),
            ),
        }
        let warnings = p.finish(PARAMS, &[])?;
        let devices = devices.expect("finish fails when `path` is missing or invalid");
        Ok((Pv { devices, force, absent, options }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        let pvs = lvm::physical_volumes(ctx).await?;
        for device in &self.devices {
            let found = pvs.iter().find(|pv| pv.device == lvm::canonical(device));
            let shown = device.display().to_string();
            match (self.absent, found) {
                (true, None) | (false, Some(_)) => {}
                (true, Some(pv)) => {
                    if let Some(vg) = &pv.vg {
                        return Err(in_a_group(device, vg));
                    }
                    plan.changes.push(Change::new(
                        Action::Remove,
                        &shown,
                        command_line("pvremove", std::slice::from_ref(&shown)),
                    ));
                }
                (false, None) => {
                    lvm::require_block_device(device)?;
                    let mut detail = command_line("pvcreate", &self.create_args(device));
                    if let Some(signature) = probe(ctx, device).await? {
                        if !self.force {
                            return Err(StateError::Conflict {
                                path: device.clone(),
                                problem: format!(
                                    "holds {}; pvcreate would destroy it, so opsagent does not: set `force: true` \
                                     if its data may go, or wipe it by hand (`wipefs -a`)",
                                    signature.describe()
                                ),
                            });
                        }
                        detail.push_str(&format!(", wiping {}", signature.describe()));
                    }
                    plan.changes.push(Change::new(Action::Create, &shown, detail));
                }
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut out = Collected::default();
        for change in &plan.changes {
            let device = PathBuf::from(&change.target);
            let output = match change.action {
                Action::Remove => lvm::tool(ctx, "pvremove", std::slice::from_ref(&change.target)).await?,
                _ => lvm::tool(ctx, "pvcreate", &self.create_args(&device)).await?,
            };
            out.keep(output);
        }
        Ok(out.into_outcome(ctx, plan.into()))
    }

    fn create_args(&self, device: &std::path::Path) -> Vec<String> {
        let mut args = Vec::new();
        // Without `--yes`, pvcreate asks before wiping a signature, and with no terminal it refuses.
        if self.force {
            args.extend(["--force".into(), "--yes".into()]);
        }
        args.extend(self.options.iter().cloned());
        args.push(device.display().to_string());
        args
    }
}

/// The error for a physical volume that is still in a volume group.
pub(super) fn in_a_group(device: &std::path::Path, vg: &str) -> StateError {
    StateError::Conflict {
        path: device.to_path_buf(),
        problem: format!(
            "is a physical volume of volume group `{vg}`; opsagent never takes a device out of a volume group \
             implicitly: move its data and run `vgreduce {vg} {}` by hand first",
            device.display()
        ),
    }
}

pub(super) fn yes_no(value: bool) -> String {
    if value { "y" } else { "n" }.to_string()
}

/// A list of absolute device paths; each item may hold several, separated by commas.
pub(super) fn device_list(p: &mut ParamReader<'_>, name: &str, required: bool) -> Option<Vec<PathBuf>> {
    if required && !p.has(name) {
        // Reports the missing parameter.
        p.required_string(name, &format!("name the devices, e.g. `{name}: [/dev/xvdf, /dev/xvdg]`"));
        return None;
    }
    let pos = p.node(name).and_then(|n| n.pos);
    let items = p.string_list(name)?;
    let mut devices = Vec::new();
    let mut ok = true;
    for item in items.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|i| !i.is_empty()) {
        match check_absolute(p, name, pos, item) {
            Some(path) if !devices.contains(&path) => devices.push(path),
            Some(_) => {}
            None => ok = false,
        }
    }
    if required && ok && devices.is_empty() {
        p.report(Kind::BadValue, name, pos, "names no device", Some(format!("e.g. `{name}: [/dev/xvdf]`")));
        return None;
    }
    ok.then_some(devices)
}

/// An lvm size (`10g`, `512m`), checked.
pub(super) fn size(p: &mut ParamReader<'_>, name: &str, default_unit: char) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let value = p.string(name)?.trim().to_string();
    if value.is_empty() {
        return None;
    }
    if lvm::parse_size(&value, default_unit).is_none() {
        p.report(
            Kind::BadValue,
            name,
            pos,
            format!("`{value}` is not a size"),
            Some("write a number with an optional unit, e.g. `512m`, `10g` or `1.5t`".into()),
        );
        return None;
    }
    Some(value)
}

/// One of `options`, checked.
pub(super) fn choice(p: &mut ParamReader<'_>, name: &str, options: &[&str]) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let value = p.string(name)?.trim().to_string();
    if value.is_empty() {
        return None;
    }
    if !options.contains(&value.as_str()) {
        let list = options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ");
        p.report(
            Kind::BadValue,
            name,
            pos,
            format!("`{value}` is not one of {list}"),
            Some(format!("write one of {list}")),
        );
        return None;
    }
    Some(value)
}

/// A free-form word (a name, a tag, a uuid): no spaces, no leading `-`.
pub(super) fn text(p: &mut ParamReader<'_>, name: &str, example: &str) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let value = p.string(name)?.trim().to_string();
    if value.is_empty() {
        return None;
    }
    if value.starts_with('-') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.report(
            Kind::BadValue,
            name,
            pos,
            format!("`{value}` is not usable here"),
            Some(format!("write {example}; no spaces, and no leading `-`")),
        );
        return None;
    }
    Some(value)
}

/// `metadata-type`: only lvm2 exists in lvm2 2.03.
pub(super) fn metadata_type(p: &mut ParamReader<'_>) -> Option<String> {
    let pos = p.node("metadata-type").and_then(|n| n.pos);
    match p.string("metadata-type")?.trim() {
        "" => None,
        "lvm2" | "2" => Some("lvm2".into()),
        other => {
            p.report(
                Kind::BadValue,
                "metadata-type",
                pos,
                format!("`{other}` is not a metadata type this lvm supports"),
                Some("write `lvm2` (lvm2 2.03 no longer writes the old `lvm1` format)".into()),
            );
            None
        }
    }
}

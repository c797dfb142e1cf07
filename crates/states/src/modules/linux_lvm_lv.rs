//! `linux.lvm.lv` — an LVM logical volume: created with `lvcreate`, grown with `lvextend`, never shrunk.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | text | required | the volume's name |
//! | `vg-name` | text | required | its volume group (which must exist: see `linux.lvm.vg`) |
//! | `le-size` | size | — | `--size`; a bare number is in MiB (`512`, `10g`, `1.5t`) |
//! | `le-number` | extents | — | `--extents`: a number, or a percentage `N%VG`, `N%FREE`, `N%PVS`, `N%ORIGIN` |
//! | `virtual-size` | size | — | `--virtualsize` (thin or sparse volumes) |
//! | `path` | list of absolute paths | — | physical volumes to allocate from |
//! | `snapshot` | text | — | make a snapshot of this volume of the group (`--snapshot VG/ORIGIN`) |
//! | `thinpool` | text | — | `--thinpool` |
//! | `type` | `raid1`, `raid4`, `raid5`, `raid6` | — | `--type` |
//! | `available` | `y`, `ay`, `n`, `ey`, `en`, `ly`, `ln` | lvm's | `--activate` |
//! | `stripe-number`, `stripe-size` | number, size (KiB) | — | `--stripes`, `--stripesize` |
//! | `mirror-number`, `region-size` | number, size | — | `--mirrors`, `--regionsize` |
//! | `chunk-size` | size (KiB) | — | `--chunksize` |
//! | `pool-metadata-size` | size | — | `--poolmetadatasize` (the original's key `pool metadata size` too) |
//! | `contiguous`, `persistent`, `monitor`, `zero`, `autobackup` | bool | lvm's | `--contiguous`, `--persistent`, `--monitor`, `--zero`, `--autobackup` `y\|n` |
//! | `minor-number` | number | — | `--minor` |
//! | `no-udev-sync`, `ignore-monitoring` | bool | `false` | `--noudevsync`, `--ignoremonitoring` when true |
//! | `permission` | `r`, `rw` | lvm's | `--permission` |
//! | `readahead` | `auto`, `none` or sectors | lvm's | `--readahead` |
//! | `discards` | `ignore`, `nopassdown`, `passdown` | lvm's | `--discards` (thin pools) |
//! | `tag` | text | — | `--addtag` |
//! | `allocation-policy` | `anywhere`, `contiguous`, `cling`, `inherit`, `normal` | — | `--alloc` |
//! | `absent` | bool | `false` | ours: `lvremove` the volume (its data is lost: only when asked) |
//!
//! One of `le-size`, `le-number` or `virtual-size` is required to create a volume. "Already fine"
//! means the volume `vg-name/name` exists (as `lvs` reports it) and is at least as large as asked: the
//! size from `le-size` (rounded up to whole extents, and to a multiple of `stripe-number` extents, as
//! lvm does) or the plain number of extents in `le-number`. A smaller volume is grown with `lvextend`
//! (the filesystem on it is not resized); a larger one fails the state, because opsagent never
//! shrinks a logical volume (that destroys the data at its end). A percentage in `le-number`, and every
//! other option, are used only when the volume is created and are not compared. A volume group that
//! does not exist when the volume is to be created fails the state (`--test` plans the
//! volume and says that the group must come from an earlier state). With `absent: true`, "already fine" means no such volume; an
//! existing one is removed with `lvremove` (lvm refuses one that is open, e.g. mounted). Creating or
//! extending a volume needs device-mapper in the kernel: without it the state fails with one line
//! saying so, before lvm runs (unless lvm.conf says `global { activation = 0 }`, where lvm writes
//! the metadata only, and the plan says so). `--test` lists the exact `lvcreate`,
//! `lvextend` (with the sizes before and after) or `lvremove` command. A missing lvm2 fails the state
//! naming the tool and its package.
//!
//! ```yaml
//! - id: data-lv
//!   module: linux.lvm.lv
//!   parameter: { name: data, vg-name: data, le-size: 10g }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_lvm_pv::{choice, device_list, size, text, yes_no};
use super::linux_lvm_vg::{plan_of, run_all, vg_name, Command, ALLOCATION};
use crate::providers::lvm::{self, human, Activation, NO_DEVICE_MAPPER};
use crate::{Action, Ctx, Outcome, Plan, StateError};

const PARAMS: &[&str] = &[
    "name",
    "vg-name",
    "le-size",
    "le-number",
    "virtual-size",
    "path",
    "snapshot",
    "thinpool",
    "type",
    "available",
    "stripe-number",
    "stripe-size",
    "mirror-number",
    "region-size",
    "chunk-size",
    "pool-metadata-size",
    "pool metadata size",
    "contiguous",
    "persistent",
    "monitor",
    "zero",
    "autobackup",
    "minor-number",
    "no-udev-sync",
    "ignore-monitoring",
    "permission",
    "readahead",
    "discards",
    "tag",
    "allocation-policy",
    "absent",
];

/// How big the volume is asked to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extent {
    /// `le-size`: the text as given, and its bytes.
    Size(String, u64),
    /// `le-number`: a plain number of extents.
    Count(u64),
    /// `le-number` as a percentage, or only `virtual-size`: used at creation only.
    AtCreation,
}

/// A validated `linux.lvm.lv`.
#[derive(Debug, Clone)]
pub struct Lv {
    pub name: String,
    pub vg: String,
    pub extent: Extent,
    pub stripes: u64,
    pub absent: bool,
    pub devices: Vec<PathBuf>,
    /// The size options of `lvcreate` (`--size`, `--extents`, `--virtualsize`).
    pub size_options: Vec<String>,
    /// The other `lvcreate` options.
    pub options: Vec<String>,
    pub snapshot: Option<String>,
    pub autobackup: Option<bool>,
}

impl Lv {
    pub fn from_params(state: &State) -> Result<(Lv, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let name = vg_name(&mut p, "name");
        let vg = vg_name(&mut p, "vg-name");
        let absent = p.bool("absent").unwrap_or(false);
        let devices = device_list(&mut p, "path", false).unwrap_or_default();
        let le_size = size(&mut p, "le-size", 'm');
        let le_number = extents(&mut p);
        let virtual_size = size(&mut p, "virtual-size", 'm');
        let mut size_options = Vec::new();
        let extent = match (&le_size, &le_number) {
            (Some(_), Some(_)) => {
                let pos = p.node("le-number").and_then(|n| n.pos);
                p.report(
                    Kind::BadValue,
                    "le-number",
                    pos,
                    "`le-size` and `le-number` are both given",
                    Some("give the size one way: `le-size` (e.g. `10g`) or `le-number` (e.g. `100%FREE`)".into()),
                );
                Extent::AtCreation
            }
            (Some(text), None) => {
                size_options.extend(["--size".into(), text.clone()]);
                Extent::Size(text.clone(), lvm::parse_size(text, 'm').unwrap_or(0))
            }
            (None, Some(number)) => {
                size_options.extend(["--extents".into(), number.clone()]);
                number.parse().map(Extent::Count).unwrap_or(Extent::AtCreation)
            }
            (None, None) => Extent::AtCreation,
        };
        if let Some(v) = &virtual_size {
            size_options.extend(["--virtualsize".into(), v.clone()]);
        }
        if !absent && le_size.is_none() && le_number.is_none() && virtual_size.is_none() && !p.has("le-number") {
            p.report(
                Kind::MissingParameter,
                "le-size",
                None,
                "the volume's size is missing",
                Some("give `le-size` (e.g. `10g`) or `le-number` (e.g. `100%FREE`)".into()),
            );
        }
        let mut options = Vec::new();
        let snapshot = text(&mut p, "snapshot", "the name of the volume to snapshot");
        if let Some(pool) = text(&mut p, "thinpool", "the name of a thin pool") {
            options.extend(["--thinpool".into(), pool]);
        }
        for (param, flag, choices) in [
            ("type", "--type", &["raid1", "raid4", "raid5", "raid6"][..]),
            ("available", "--activate", &["y", "ay", "n", "ey", "en", "ly", "ln"][..]),
            ("permission", "--permission", &["r", "rw"][..]),
            ("discards", "--discards", &["ignore", "nopassdown", "passdown"][..]),
            ("allocation-policy", "--alloc", ALLOCATION),
        ] {
            if let Some(value) = choice(&mut p, param, choices) {
                options.extend([flag.into(), value]);
            }
        }
        let mut stripes = 1;
        for (param, flag) in
            [("stripe-number", "--stripes"), ("mirror-number", "--mirrors"), ("minor-number", "--minor")]
        {
            if p.has(param) {
                if let Some(n) = p.u64(param) {
                    if param == "stripe-number" {
                        stripes = n.max(1);
                    }
                    options.extend([flag.into(), n.to_string()]);
                }
            }
        }
        for (param, flag, unit) in [
            ("stripe-size", "--stripesize", 'k'),
            ("region-size", "--regionsize", 'm'),
            ("chunk-size", "--chunksize", 'k'),
            ("pool-metadata-size", "--poolmetadatasize", 'm'),
            ("pool metadata size", "--poolmetadatasize", 'm'),
        ] {
            if let Some(value) = size(&mut p, param, unit) {
                options.extend([flag.into(), value]);
            }
        }
        for (param, flag) in [
            ("contiguous", "--contiguous"),
            ("persistent", "--persistent"),
            ("monitor", "--monitor"),
            ("zero", "--zero"),
        ] {
            if let Some(value) = p.bool(param) {
                options.extend([flag.into(), yes_no(value)]);
            }
        }
        for (param, flag) in [("no-udev-sync", "--noudevsync"), ("ignore-monitoring", "--ignoremonitoring")] {
            if p.bool(param) == Some(true) {
                options.push(flag.into());
            }
        }
        let readahead_pos = p.node("readahead").and_then(|n| n.pos);
        if let Some(readahead) = p.string("readahead").map(|r| r.trim().to_string()).filter(|r| !r.is_empty()) {
            if readahead == "auto" || readahead == "none" || readahead.parse::<u64>().is_ok() {
                options.extend(["--readahead".into(), readahead]);
            } else {
                p.report(
                    Kind::BadValue,
                    "readahead",
                    readahead_pos,
                    format!("`{readahead}` is not a read-ahead setting"),
                    Some("write `auto`, `none` or a number of sectors".into()),
                );
            }
        }
        if let Some(tag) = text(&mut p, "tag", "a tag such as `database`") {
            options.extend(["--addtag".into(), tag]);
        }
        let autobackup = p.bool("autobackup");
        let warnings = p.finish(PARAMS, &[])?;
        let (Some(name), Some(vg)) = (name, vg) else {
            unreachable!("finish fails when `name` or `vg-name` is missing or invalid");
        };
        let lv = Lv { name, vg, extent, stripes, absent, devices, size_options, options, snapshot, autobackup };
        Ok((lv, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        Ok(plan_of(self.commands(ctx, true).await?))
    }

    /// Looks again (the machine may have changed since `check`) and runs what is needed.
    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if plan.is_empty() {
            return Ok(plan.into());
        }
        run_all(ctx, self.commands(ctx, false).await?).await
    }

    /// What must run. When `planning`, a missing volume group is planned as an earlier state's
    /// work (with `--test`, the `linux.lvm.vg` state before this one has not created it yet).
    async fn commands(&self, ctx: &Ctx, planning: bool) -> Result<Vec<Command>, StateError> {
        let target = format!("{}/{}", self.vg, self.name);
        let groups = lvm::volume_groups(ctx).await?;
        let volumes = lvm::logical_volumes(ctx).await?;
        let volume = volumes.iter().find(|v| v.vg == self.vg && v.name == self.name);
        if self.absent {
            return Ok(match volume {
                None => Vec::new(),
                Some(_) => {
                    let mut args = self.autobackup_args();
                    args.extend(["--yes".into(), target.clone()]);
                    vec![Command::new(Action::Remove, &target, "lvremove", args)]
                }
            });
        }
        let Some(group) = groups.iter().find(|g| g.name == self.vg) else {
            if planning {
                let note = self.require_activation(ctx, "created").await?;
                let mut command = Command::new(Action::Create, &target, "lvcreate", self.create_args());
                command.change.detail.push_str(note);
                command.change.detail.push_str(&format!(
                    "; volume group `{}` does not exist yet: an earlier state must create it",
                    self.vg
                ));
                return Ok(vec![command]);
            }
            return Err(self.refused(format!(
                "cannot be created: volume group `{}` does not exist; create it first (a `linux.lvm.vg` state \
                 before this one)",
                self.vg
            )));
        };
        let Some(volume) = volume else {
            let note = self.require_activation(ctx, "created").await?;
            let mut command = Command::new(Action::Create, &target, "lvcreate", self.create_args());
            command.change.detail.push_str(note);
            return Ok(vec![command]);
        };
        let extent_size = group.extent_size.max(1);
        let wanted = match &self.extent {
            Extent::Size(_, bytes) => bytes.div_ceil(extent_size).div_ceil(self.stripes) * self.stripes,
            Extent::Count(n) => *n,
            Extent::AtCreation => return Ok(Vec::new()),
        };
        let current = volume.size / extent_size;
        if wanted < current {
            return Err(self.refused(format!(
                "is {} ({current} extents), larger than the {} ({wanted} extents) asked for; opsagent never shrinks \
                 a logical volume, because that destroys the data at its end: ask for at least its size, or shrink \
                 its filesystem and then the volume (`lvreduce`) by hand",
                human(volume.size),
                human(wanted * extent_size)
            )));
        }
        if wanted == current {
            return Ok(Vec::new());
        }
        let note = self.require_activation(ctx, "extended").await?;
        let mut args = self.autobackup_args();
        match &self.extent {
            Extent::Size(text, _) => args.extend(["--size".into(), text.clone()]),
            _ => args.extend(["--extents".into(), wanted.to_string()]),
        }
        args.push(target.clone());
        args.extend(self.devices.iter().map(|d| d.display().to_string()));
        let mut command = Command::new(Action::Update, &target, "lvextend", args);
        command.change.detail =
            format!("{} -> {}: {}{note}", human(volume.size), human(wanted * extent_size), command.change.detail);
        Ok(vec![command])
    }

    fn create_args(&self) -> Vec<String> {
        // `--yes`: a new volume may start where an old one left a signature; lvcreate would ask
        // before wiping it, and with no terminal it would refuse. The space belongs to no volume.
        let mut args = vec!["--yes".to_string(), "--name".into(), self.name.clone()];
        args.extend(self.size_options.iter().cloned());
        args.extend(self.options.iter().cloned());
        args.extend(self.autobackup_args());
        match &self.snapshot {
            Some(origin) => args.extend(["--snapshot".into(), format!("{}/{origin}", self.vg)]),
            None => args.push(self.vg.clone()),
        }
        args.extend(self.devices.iter().map(|d| d.display().to_string()));
        args
    }

    fn autobackup_args(&self) -> Vec<String> {
        self.autobackup.map(|b| vec!["--autobackup".into(), yes_no(b)]).unwrap_or_default()
    }

    /// Fails when this machine cannot create or extend a volume; else a note for the plan's detail.
    async fn require_activation(&self, ctx: &Ctx, verb: &str) -> Result<&'static str, StateError> {
        match lvm::activation(ctx).await? {
            Some(Activation::Kernel) => Ok(""),
            Some(Activation::MetadataOnly) => Ok("; metadata only: lvm.conf sets `activation = 0`"),
            None => Err(self.refused(format!("cannot be {verb}: {NO_DEVICE_MAPPER}"))),
        }
    }

    fn refused(&self, problem: String) -> StateError {
        StateError::Conflict { path: PathBuf::from(format!("/dev/{}/{}", self.vg, self.name)), problem }
    }
}

/// `le-number`: a number of extents or a percentage of `VG`, `FREE`, `PVS` or `ORIGIN`.
fn extents(p: &mut ParamReader<'_>) -> Option<String> {
    let pos = p.node("le-number").and_then(|n| n.pos);
    let value = p.string("le-number")?.trim().to_string();
    if value.is_empty() {
        return None;
    }
    let (number, unit) = match value.split_once('%') {
        Some((n, unit)) => (n, Some(unit)),
        None => (value.as_str(), None),
    };
    let number_ok = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit());
    let unit_ok = matches!(unit, None | Some("VG" | "FREE" | "PVS" | "ORIGIN"));
    if !number_ok || !unit_ok {
        p.report(
            Kind::BadValue,
            "le-number",
            pos,
            format!("`{value}` is not a number of extents"),
            Some(
                "write a number of extents (`256`) or a percentage: `100%FREE`, `50%VG`, `100%PVS`, `20%ORIGIN`".into(),
            ),
        );
        return None;
    }
    Some(value)
}

//! `linux.lvm.vg` — an LVM volume group over the given devices: created with `vgcreate`, grown with
//! `vgextend`, never shrunk.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | text | required | the volume group's name |
//! | `path` | list of absolute paths | required | its devices (physical volumes, or devices that become ones) |
//! | `pe-size` | size | lvm's (`4m`) | `--physicalextentsize`, at creation |
//! | `max-lv-number` | number | — | `--maxlogicalvolumes`, at creation |
//! | `max-pv-number` | number | — | `--maxphysicalvolumes`, at creation |
//! | `metadata-type` | `lvm2` | `lvm2` | `--metadatatype`; `lvm1` is refused (lvm2 2.03 dropped it) |
//! | `metadata-copies` | `unmanaged`, `all` or a number | — | `--vgmetadatacopies`, at creation |
//! | `autobackup` | bool | lvm's | `--autobackup y\|n` |
//! | `tag` | text | — | `--addtag`, at creation |
//! | `allocation-policy` | `anywhere`, `contiguous`, `cling`, `inherit`, `normal` | — | `--alloc`, at creation |
//! | `clustered` | bool | — | accepted and ignored with a warning: lvm2 2.03 has no clustered locking (see `lvmlockd`) |
//! | `absent` | bool | `false` | ours: `vgremove` the group, only when it holds no logical volume |
//!
//! "Already fine" means a volume group `name` exists and every device in `path` is one of its
//! physical volumes (symlinks resolved). A missing group is created with `vgcreate` over all the
//! devices; devices not yet in it are added with `vgextend`. A device in the group but not in `path`
//! is left in it (opsagent never takes a device out of a volume group), and the creation options are
//! not compared with an existing group. A device that is not yet a physical volume must be a block
//! device that holds no signature (`blkid -p`: no filesystem, partition table or RAID member): lvm
//! would initialise it, so one that holds data fails the state and nothing is written (make it a
//! physical volume first with `linux.lvm.pv` and `force: true` if its data may go). A device that is
//! a physical volume of another group fails the state. With `absent: true`, "already fine" means no
//! group `name`; a group that still holds logical volumes is never removed (the state fails and says
//! so), and its physical volumes stay physical volumes. `--test` lists the exact `vgcreate`,
//! `vgextend` or `vgremove` command. A missing lvm2 fails the state naming the tool and its package.
//!
//! ```yaml
//! - id: data-vg
//!   module: linux.lvm.vg
//!   parameter: { name: data, path: [/dev/xvdf, /dev/xvdg], pe-size: 8m }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_lvm_pv::{choice, device_list, in_a_group, metadata_type, size, text, yes_no};
use super::linux_mkfs::probe;
use crate::providers::lvm::{self, command_line, Collected};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const PARAMS: &[&str] = &[
    "name",
    "path",
    "pe-size",
    "max-lv-number",
    "max-pv-number",
    "metadata-type",
    "metadata-copies",
    "autobackup",
    "tag",
    "allocation-policy",
    "clustered",
    "absent",
];

pub(super) const ALLOCATION: &[&str] = &["anywhere", "contiguous", "cling", "inherit", "normal"];

/// A validated `linux.lvm.vg`.
#[derive(Debug, Clone)]
pub struct Vg {
    pub name: String,
    pub devices: Vec<PathBuf>,
    pub absent: bool,
    /// The `vgcreate` options, before the name.
    pub options: Vec<String>,
    /// `--autobackup y|n` for `vgextend` too.
    pub autobackup: Option<bool>,
}

impl Vg {
    pub fn from_params(state: &State) -> Result<(Vg, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let name = vg_name(&mut p, "name");
        let absent = p.bool("absent").unwrap_or(false);
        // The devices are only needed to create or extend.
        let devices = device_list(&mut p, "path", !absent);
        let mut options = Vec::new();
        if let Some(size) = size(&mut p, "pe-size", 'm') {
            options.extend(["--physicalextentsize".into(), size]);
        }
        for (param, flag) in [("max-lv-number", "--maxlogicalvolumes"), ("max-pv-number", "--maxphysicalvolumes")] {
            if p.has(param) {
                if let Some(n) = p.u64(param) {
                    options.extend([flag.into(), n.to_string()]);
                }
            }
        }
        if let Some(kind) = metadata_type(&mut p) {
            options.extend(["--metadatatype".into(), kind]);
        }
        let copies_pos = p.node("metadata-copies").and_then(|n| n.pos);
        if let Some(copies) = p.string("metadata-copies").map(|c| c.trim().to_string()).filter(|c| !c.is_empty()) {
            if copies == "unmanaged" || copies == "all" || copies.parse::<u32>().is_ok() {
                options.extend(["--vgmetadatacopies".into(), copies]);
            } else {
                p.report(
                    Kind::BadValue,
                    "metadata-copies",
                    copies_pos,
                    format!("`{copies}` is not a number of metadata copies"),
                    Some("write `unmanaged`, `all` or a number".into()),
                );
            }
        }
        let autobackup = p.bool("autobackup");
        if let Some(tag) = text(&mut p, "tag", "a tag such as `database`") {
            options.extend(["--addtag".into(), tag]);
        }
        if let Some(policy) = choice(&mut p, "allocation-policy", ALLOCATION) {
            options.extend(["--alloc".into(), policy]);
        }
        let warnings = p.finish(PARAMS, &["clustered"])?;
        let name = name.expect("finish fails when `name` is missing or invalid");
        Ok((Vg { name, devices: devices.unwrap_or_default(), absent, options, autobackup }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        Ok(plan_of(self.commands(ctx).await?))
    }

    /// Looks again (the machine may have changed since `check`) and runs what is needed.
    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if plan.is_empty() {
            return Ok(plan.into());
        }
        run_all(ctx, self.commands(ctx).await?).await
    }

    async fn commands(&self, ctx: &Ctx) -> Result<Vec<Command>, StateError> {
        let groups = lvm::volume_groups(ctx).await?;
        let group = groups.iter().find(|g| g.name == self.name);
        if self.absent {
            return match group {
                None => Ok(Vec::new()),
                Some(g) if g.lv_count > 0 => Err(StateError::Conflict {
                    path: PathBuf::from(&self.name),
                    problem: format!(
                        "(volume group) still holds {} logical volume(s); opsagent removes only an empty \
                         volume group: remove them first (`linux.lvm.lv` with `absent: true`)",
                        g.lv_count
                    ),
                }),
                Some(_) => Ok(vec![Command::new(Action::Remove, &self.name, "vgremove", self.remove_args())]),
            };
        }
        let pvs = lvm::physical_volumes(ctx).await?;
        let mut missing = Vec::new();
        for device in &self.devices {
            match pvs.iter().find(|pv| pv.device == lvm::canonical(device)) {
                Some(pv) if pv.vg.as_deref() == Some(self.name.as_str()) => {}
                Some(pv) => match &pv.vg {
                    Some(other) => return Err(in_a_group(device, other)),
                    None => missing.push(device.clone()),
                },
                None => {
                    lvm::require_block_device(device)?;
                    if let Some(signature) = probe(ctx, device).await? {
                        return Err(StateError::Conflict {
                            path: device.clone(),
                            problem: format!(
                                "holds {}; adding it to volume group `{}` would destroy it, so opsagent does not: \
                                 make it a physical volume first (`linux.lvm.pv` with `force: true`) if its data \
                                 may go",
                                signature.describe(),
                                self.name
                            ),
                        });
                    }
                    missing.push(device.clone());
                }
            }
        }
        Ok(match group {
            None => vec![Command::new(Action::Create, &self.name, "vgcreate", self.create_args(&self.devices))],
            Some(_) if !missing.is_empty() => {
                vec![Command::new(Action::Update, &self.name, "vgextend", self.extend_args(&missing))]
            }
            Some(_) => Vec::new(),
        })
    }

    fn create_args(&self, devices: &[PathBuf]) -> Vec<String> {
        let mut args = self.options.clone();
        args.extend(self.autobackup_args());
        args.push(self.name.clone());
        args.extend(devices.iter().map(|d| d.display().to_string()));
        args
    }

    fn extend_args(&self, devices: &[PathBuf]) -> Vec<String> {
        let mut args = self.autobackup_args();
        args.push(self.name.clone());
        args.extend(devices.iter().map(|d| d.display().to_string()));
        args
    }

    fn remove_args(&self) -> Vec<String> {
        let mut args = self.autobackup_args();
        args.push(self.name.clone());
        args
    }

    fn autobackup_args(&self) -> Vec<String> {
        self.autobackup.map(|b| vec!["--autobackup".into(), yes_no(b)]).unwrap_or_default()
    }
}

/// The plan of the commands `check` found: one change each.
pub(super) fn plan_of(commands: Vec<Command>) -> Plan {
    Plan { changes: commands.into_iter().map(|c| c.change).collect(), diff: None }
}

/// Runs the commands in order (the first failure stops), keeping their output.
pub(super) async fn run_all(ctx: &Ctx, commands: Vec<Command>) -> Result<Outcome, StateError> {
    let mut out = Collected::default();
    let mut done = Vec::new();
    for command in commands {
        out.keep(lvm::tool(ctx, command.program, &command.args).await?);
        done.push(command.change);
    }
    Ok(out.into_outcome(ctx, Outcome { changes: done, ..Outcome::default() }))
}

/// One lvm command and the change it makes (its detail is the command line).
pub(super) struct Command {
    pub change: Change,
    pub program: &'static str,
    pub args: Vec<String>,
}

impl Command {
    pub fn new(action: Action, target: &str, program: &'static str, args: Vec<String>) -> Command {
        Command { change: Change::new(action, target, command_line(program, &args)), program, args }
    }
}

/// A volume group name as lvm accepts it: letters, digits and `+_.-`, not starting with `-`.
pub(super) fn vg_name(p: &mut ParamReader<'_>, name: &str) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let value = p.required_string(name, &format!("name it, e.g. `{name}: data`"))?;
    let ok = !value.is_empty()
        && value.len() <= 127
        && !value.starts_with('-')
        && value != "."
        && value != ".."
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    if !ok {
        p.report(
            Kind::BadValue,
            name,
            pos,
            format!("`{value}` is not a valid lvm name"),
            Some("use letters, digits and `+_.-` (not starting with `-`), e.g. `data`".into()),
        );
        return None;
    }
    Some(value)
}

//! `linux.raid` — a Linux software RAID (md) array, created with `mdadm --create` and never over data.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `device-name` | absolute path | required | the array's device, e.g. `/dev/md0` or `/dev/md/data` |
//! | `level` | RAID level | required | `linear`, `raid0`/`0`/`stripe`, `raid1`/`1`/`mirror`, `raid4`/`4`, `raid5`/`5`, `raid6`/`6`, `raid10`/`10`, `multipath`/`mp`, `faulty`, `container` |
//! | `devices` | list of absolute paths | required | the member devices |
//! | `arguments` | dict | — | more `mdadm --create` options: `chunk: 256` becomes `--chunk=256`, a key without value `--KEY` |
//! | `absent` | bool | `false` | ours: stop the array and erase the md superblocks of its members |
//!
//! "Already fine" means `device-name` is an active md array (`mdadm --detail --export`) of `level`;
//! its members and the `arguments` are not compared (adding or replacing disks is left to the
//! operator: `mdadm --add`, `--grow`). An active array of another level fails the state: opsagent
//! never reshapes an array. A missing array is created with `mdadm --create DEVICE --run --level=L
//! --raid-devices=N [arguments] DEVICES`; unlike the original, without `--force`. Before that, every
//! member must be a block device that holds no signature (`blkid -p`): one that holds a filesystem, a
//! partition table, an LVM physical volume or an md superblock (an array that could be assembled
//! instead) fails the state and nothing is written. With `absent: true`, "already fine" means no
//! active array `device-name`; an active one is stopped (`mdadm --stop`) and the superblocks of its
//! members are erased (`mdadm --zero-superblock`), so that it is not assembled again at boot: the
//! data of the array is then gone. `mdadm.conf` is not edited. On a kernel without the md driver
//! (`/proc/mdstat` missing) the state fails with one line saying so, before mdadm runs (there is no
//! array there, so `absent: true` is already fine). `--test` lists the exact mdadm commands.
//!
//! ```yaml
//! - id: data-raid
//!   module: linux.raid
//!   parameter: { device-name: /dev/md0, level: raid1, devices: [/dev/xvdf, /dev/xvdg], arguments: { chunk: 256 } }
//! ```

use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::absolute_path;
use super::linux_lvm_pv::device_list;
use super::linux_lvm_vg::{plan_of, run_all, Command};
use super::linux_mkfs::probe;
use crate::process::Termination;
use crate::providers::lvm;
use crate::{Action, Ctx, Outcome, Plan, StateError};

/// The kernel's list of md arrays: missing when the md driver is not there.
const MDSTAT: &str = "/proc/mdstat";

/// A validated `linux.raid`.
#[derive(Debug, Clone)]
pub struct Raid {
    pub device: PathBuf,
    /// mdadm's name for the level (`raid1`).
    pub level: String,
    pub members: Vec<PathBuf>,
    /// `--key=value` options from `arguments`.
    pub arguments: Vec<String>,
    pub absent: bool,
}

impl Raid {
    pub fn from_params(state: &State) -> Result<(Raid, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let device = absolute_path(&mut p, "device-name");
        let absent = p.bool("absent").unwrap_or(false);
        let level_pos = p.node("level").and_then(|n| n.pos);
        let level = if absent && !p.has("level") {
            Some(String::new())
        } else {
            p.required_string("level", "name the RAID level, e.g. `level: raid1`")
        };
        let level = level.and_then(|l| match normalize_level(&l) {
            Some(level) => Some(level.to_string()),
            None if absent && l.is_empty() => Some(String::new()),
            None => {
                p.report(
                    Kind::BadValue,
                    "level",
                    level_pos,
                    format!("`{l}` is not a RAID level"),
                    Some("write `raid0`, `raid1`, `raid4`, `raid5`, `raid6`, `raid10`, `linear`, `multipath`, `faulty` or `container`".into()),
                );
                None
            }
        });
        let members = device_list(&mut p, "devices", !absent);
        let args_pos = p.node("arguments").and_then(|n| n.pos);
        let mut arguments = Vec::new();
        for entry in p.dict("arguments").unwrap_or_default() {
            let key = entry.key.trim().trim_start_matches("--").to_string();
            let key_ok = !key.is_empty()
                && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            let value_ok = entry.value.as_deref().is_none_or(|v| !v.chars().any(|c| c.is_control()));
            if !key_ok || !value_ok {
                p.report(
                    Kind::BadValue,
                    &format!("arguments.{}", entry.key),
                    args_pos,
                    format!("`{}` is not an mdadm option", entry.key),
                    Some("write mdadm's long option without `--`, e.g. `chunk: 256` for `--chunk=256`".into()),
                );
                continue;
            }
            if matches!(key.as_str(), "level" | "raid-devices" | "run" | "force") {
                p.report(
                    Kind::BadValue,
                    &format!("arguments.{key}"),
                    args_pos,
                    format!("`{key}` cannot be given in `arguments`"),
                    Some(match key.as_str() {
                        "level" => "use the `level` parameter".into(),
                        "raid-devices" => "it is the number of `devices`".into(),
                        _ => "opsagent runs `mdadm --create --run`, and never `--force`".to_string(),
                    }),
                );
                continue;
            }
            arguments.push(match entry.value {
                Some(value) if !value.is_empty() => format!("--{key}={value}"),
                _ => format!("--{key}"),
            });
        }
        let warnings = p.finish(&["device-name", "level", "devices", "arguments", "absent"], &[])?;
        let (Some(device), Some(level)) = (device, level) else {
            unreachable!("finish fails when `device-name` or `level` is missing or invalid");
        };
        Ok((Raid { device, level, members: members.unwrap_or_default(), arguments, absent }, warnings))
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
        let shown = self.device.display().to_string();
        if !Path::new(MDSTAT).exists() {
            if self.absent {
                return Ok(Vec::new());
            }
            return Err(StateError::Conflict {
                path: self.device.clone(),
                problem: "cannot be created: this kernel has no md driver (`/proc/mdstat` is missing), so mdadm \
                          cannot build an array here: use a kernel with software RAID (`modprobe md_mod`)"
                    .into(),
            });
        }
        let detail = self.detail(ctx).await?;
        if self.absent {
            let Some(detail) = detail else { return Ok(Vec::new()) };
            let mut commands =
                vec![Command::new(Action::Remove, &shown, "mdadm", vec!["--stop".into(), shown.clone()])];
            let members = detail.members();
            if !members.is_empty() {
                let mut args = vec!["--zero-superblock".to_string()];
                args.extend(members);
                commands.push(Command::new(Action::Remove, &shown, "mdadm", args));
            }
            return Ok(commands);
        }
        if let Some(detail) = detail {
            let found = detail.value("MD_LEVEL").unwrap_or_default();
            if normalize_level(&found) == Some(self.level.as_str()) {
                return Ok(Vec::new());
            }
            return Err(StateError::Conflict {
                path: self.device.clone(),
                problem: format!(
                    "is an active `{found}` array, not `{}`; opsagent never reshapes an array: change `level`, \
                     or convert it by hand (`mdadm --grow`)",
                    self.level
                ),
            });
        }
        for member in &self.members {
            lvm::require_block_device(member)?;
            if let Some(signature) = probe(ctx, member).await? {
                return Err(StateError::Conflict {
                    path: member.clone(),
                    problem: format!(
                        "holds {}; creating the array `{shown}` over it would destroy it, so opsagent does not: \
                         assemble an existing array with `mdadm --assemble`, or wipe the device by hand \
                         (`wipefs -a`) if its data may go",
                        signature.describe()
                    ),
                });
            }
        }
        let mut args = vec![
            "--create".to_string(),
            shown.clone(),
            "--run".into(),
            format!("--level={}", self.level),
            format!("--raid-devices={}", self.members.len()),
        ];
        args.extend(self.arguments.iter().cloned());
        args.extend(self.members.iter().map(|m| m.display().to_string()));
        Ok(vec![Command::new(Action::Create, &shown, "mdadm", args)])
    }

    /// The array's `mdadm --detail --export`, or `None` when `device-name` is no active array.
    async fn detail(&self, ctx: &Ctx) -> Result<Option<Detail>, StateError> {
        if !self.device.exists() {
            return Ok(None);
        }
        let args = vec!["--detail".to_string(), "--export".into(), self.device.display().to_string()];
        match lvm::tool(ctx, "mdadm", &args).await {
            Ok(output) => Ok(Some(Detail(String::from_utf8_lossy(&output.stdout.bytes).into_owned()))),
            // Status 1: not an md device, or an inactive one.
            Err(StateError::Command { termination: Termination::Exited(1), .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `mdadm --detail --export` output: `KEY=value` lines.
struct Detail(String);

impl Detail {
    fn value(&self, key: &str) -> Option<String> {
        self.0.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().to_string())
    }

    /// The member devices (`MD_DEVICE_<name>_DEV=/dev/...`).
    fn members(&self) -> Vec<String> {
        self.0
            .lines()
            .filter_map(|l| {
                let (key, value) = l.split_once('=')?;
                (key.starts_with("MD_DEVICE_") && key.ends_with("_DEV")).then(|| value.trim().to_string())
            })
            .collect()
    }
}

/// mdadm's name for a level and its synonyms.
fn normalize_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_lowercase().as_str() {
        "linear" => "linear",
        "raid0" | "0" | "stripe" => "raid0",
        "raid1" | "1" | "mirror" => "raid1",
        "raid4" | "4" => "raid4",
        "raid5" | "5" => "raid5",
        "raid6" | "6" => "raid6",
        "raid10" | "10" => "raid10",
        "multipath" | "mp" => "multipath",
        "faulty" => "faulty",
        "container" => "container",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mdadm_detail_export() {
        let detail = Detail(
            "MD_LEVEL=raid1\nMD_DEVICES=2\nMD_METADATA=1.2\nMD_UUID=3a1b:0c2d:4e5f:6a7b\nMD_DEVNAME=data\n\
             MD_DEVICE_dev_loop2_ROLE=0\nMD_DEVICE_dev_loop2_DEV=/dev/loop2\n\
             MD_DEVICE_dev_loop3_ROLE=1\nMD_DEVICE_dev_loop3_DEV=/dev/loop3\n"
                .into(),
        );
        assert_eq!(detail.value("MD_LEVEL").as_deref(), Some("raid1"));
        assert_eq!(detail.members(), ["/dev/loop2", "/dev/loop3"]);
    }

    #[test]
    fn levels_and_their_synonyms() {
        assert_eq!(normalize_level("mirror"), Some("raid1"));
        assert_eq!(normalize_level("RAID5"), Some("raid5"));
        assert_eq!(normalize_level("stripe"), Some("raid0"));
        assert_eq!(normalize_level("raid7"), None);
    }
}

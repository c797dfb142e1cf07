//! LVM2 (and the block-device facts `linux.raid` shares with it): reading physical volumes, volume
//! groups and logical volumes from `pvs`/`vgs`/`lvs --reportformat json` (sizes in bytes), running the
//! lvm2 and mdadm tools, LVM size arithmetic, and whether this kernel can activate a logical volume.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::process::{self, Limits, Output, Spec, Tail, Termination};
use crate::{Ctx, Outcome, StateError};

pub const LVM_HINT: &str = "install the `lvm2` package (an earlier `linux.apt.package` state can)";
pub const MDADM_HINT: &str = "install the `mdadm` package (an earlier `linux.apt.package` state can)";

/// Room for a whole report of a machine with many volumes (the state's own output limit is smaller).
const QUERY_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// A physical volume as `pvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalVolume {
    /// The device as lvm names it (`/dev/loop0`).
    pub name: String,
    /// That device with its symlinks resolved, to compare with the recipe's paths.
    pub device: PathBuf,
    /// The volume group it belongs to, if any.
    pub vg: Option<String>,
}

/// A volume group as `vgs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    pub extent_size: u64,
    pub lv_count: u64,
}

/// A logical volume as `lvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    pub name: String,
    pub vg: String,
    pub size: u64,
}

/// Runs an lvm2 or mdadm tool with room for its whole output. A missing tool is
/// [`StateError::MissingTool`] naming it; a failure is [`StateError::Command`] with its output tail.
pub async fn tool(ctx: &Ctx, program: &str, args: &[String]) -> Result<Output, StateError> {
    let hint = if program == "mdadm" { MDADM_HINT } else { LVM_HINT };
    let spec = Spec {
        program: program.to_string(),
        args: args.to_vec(),
        // lvm warns about every inherited descriptor it did not open; the warning is noise here.
        env: vec![("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into()), ("LC_ALL".into(), "C".into())],
        ..Spec::default()
    };
    let limits = Limits {
        timeout: ctx.timeout,
        kill_grace: ctx.round.kill_grace,
        max_output_bytes: QUERY_OUTPUT_BYTES.max(ctx.round.max_output_bytes),
    };
    let output = match process::run(&spec, limits, &ctx.cancel).await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::MissingTool { tool: program.into(), hint: hint.into() })
        }
        Err(source) => return Err(StateError::Spawn { program: program.into(), source }),
    };
    let max = ctx.round.max_output_bytes;
    match output.termination {
        Termination::Exited(0) => Ok(output),
        Termination::Cancelled => Err(StateError::Cancelled),
        termination => Err(StateError::Command {
            termination,
            stdout: output.stdout.capped(max),
            stderr: output.stderr.capped(max),
        }),
    }
}

/// Every physical volume lvm sees.
pub async fn physical_volumes(ctx: &Ctx) -> Result<Vec<PhysicalVolume>, StateError> {
    let rows = report(ctx, "pvs", "pv", "pv_name,vg_name").await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let name = field(row, "pv_name")?;
            // A missing device of a volume group is listed as `[unknown]`.
            if !name.starts_with('/') {
                return None;
            }
            let vg = field(row, "vg_name").filter(|v| !v.is_empty());
            Some(PhysicalVolume { device: canonical(Path::new(&name)), name, vg })
        })
        .collect())
}

/// Every volume group lvm sees.
pub async fn volume_groups(ctx: &Ctx) -> Result<Vec<VolumeGroup>, StateError> {
    let rows = report(ctx, "vgs", "vg", "vg_name,vg_extent_size,lv_count").await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(VolumeGroup {
                name: field(row, "vg_name")?,
                extent_size: number(row, "vg_extent_size")?,
                lv_count: number(row, "lv_count").unwrap_or(0),
            })
        })
        .collect())
}

/// Every logical volume lvm sees (hidden ones, such as mirror images, left out).
pub async fn logical_volumes(ctx: &Ctx) -> Result<Vec<LogicalVolume>, StateError> {
    let rows = report(ctx, "lvs", "lv", "lv_name,vg_name,lv_size").await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(LogicalVolume {
                name: field(row, "lv_name")?,
                vg: field(row, "vg_name")?,
                size: number(row, "lv_size")?,
            })
        })
        .collect())
}

/// Runs `TOOL --reportformat json` and returns the rows of its `key` report.
async fn report(ctx: &Ctx, program: &str, key: &str, fields: &str) -> Result<Vec<Value>, StateError> {
    let args: Vec<String> =
        ["--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields].iter().map(|s| s.to_string()).collect();
    let output = tool(ctx, program, &args).await?;
    parse_report(&String::from_utf8_lossy(&output.stdout.bytes), key).ok_or_else(|| StateError::Conflict {
        path: PathBuf::from(program),
        problem: "printed a report opsagent cannot read (expected `--reportformat json` output)".into(),
    })
}

fn parse_report(text: &str, key: &str) -> Option<Vec<Value>> {
    let doc: Value = serde_json::from_str(text).ok()?;
    let mut rows = Vec::new();
    for part in doc.get("report")?.as_array()? {
        if let Some(list) = part.get(key).and_then(Value::as_array) {
            rows.extend(list.iter().cloned());
        }
    }
    Some(rows)
}

fn field(row: &Value, name: &str) -> Option<String> {
    row.get(name).and_then(Value::as_str).map(str::to_string)
}

fn number(row: &Value, name: &str) -> Option<u64> {
    field(row, name)?.trim().parse().ok()
}

/// `path` with its symlinks resolved (itself when that fails).
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// An LVM size (`10g`, `512M`, `1.5t`, `100`) in bytes. Both cases mean powers of 1024, as in
/// lvm's `-L`; `s` is 512-byte sectors, `b` bytes; a bare number is in `default_unit`.
pub fn parse_size(text: &str, default_unit: char) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.chars().last()? {
        c if c.is_ascii_alphabetic() => (&text[..text.len() - 1], c.to_ascii_lowercase()),
        _ => (text, default_unit),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') || digits.starts_with('.') {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    let factor: f64 = match unit {
        'b' => 1.0,
        's' => 512.0,
        'k' => 1024.0,
        'm' => 1024.0 * 1024.0,
        'g' => 1024.0_f64.powi(3),
        't' => 1024.0_f64.powi(4),
        'p' => 1024.0_f64.powi(5),
        'e' => 1024.0_f64.powi(6),
        _ => return None,
    };
    let bytes = (value * factor).ceil();
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Bytes as lvm prints them with `--units h`: `16.00 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

/// How this machine lets lvm bring a logical volume up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The kernel has device-mapper: volumes are created and activated.
    Kernel,
    /// lvm.conf says `global { activation = 0 }`: lvm writes metadata only (device-mapper or not).
    MetadataOnly,
}

/// How this machine would create a logical volume; `None` when the kernel has no device-mapper
/// and lvm would try to use it (every lvcreate/lvextend would fail). Asked only before a change.
pub async fn activation(ctx: &Ctx) -> Result<Option<Activation>, StateError> {
    let args: Vec<String> = ["--type", "full", "global/activation"].iter().map(|s| s.to_string()).collect();
    let output = tool(ctx, "lvmconfig", &args).await?;
    if String::from_utf8_lossy(&output.stdout.bytes).trim() == "activation=0" {
        return Ok(Some(Activation::MetadataOnly));
    }
    Ok(device_mapper_in_kernel().then_some(Activation::Kernel))
}

/// The one-line reason a logical volume cannot be made on this machine.
pub const NO_DEVICE_MAPPER: &str = "this kernel has no device-mapper (/proc/misc lists no `device-mapper`), \
     so lvm can neither create nor activate a logical volume here: use a kernel with device-mapper \
     (`modprobe dm_mod`)";

/// Whether the kernel has the device-mapper driver. `/dev/mapper/control` proves nothing: lvm creates
/// that node itself, driver or not.
fn device_mapper_in_kernel() -> bool {
    std::fs::read_to_string("/proc/misc")
        .map(|misc| misc.lines().any(|l| l.split_whitespace().nth(1) == Some("device-mapper")))
        .unwrap_or(false)
}

/// Refuses a device that does not exist or is not a block device (lvm and mdadm need one).
pub fn require_block_device(device: &Path) -> Result<(), StateError> {
    match std::fs::metadata(device) {
        Err(_) => Err(StateError::Conflict {
            path: device.to_path_buf(),
            problem: "does not exist; attach the volume (or a loop device) first".into(),
        }),
        Ok(meta) if !meta.file_type().is_block_device() => Err(StateError::Conflict {
            path: device.to_path_buf(),
            problem: "is not a block device; attach an image file with `losetup` and name the loop device".into(),
        }),
        Ok(_) => Ok(()),
    }
}

/// Joins a command line for a plan's detail.
pub fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

/// Collects the output of the commands an `apply` ran into its outcome.
#[derive(Default)]
pub struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Collected {
    pub fn keep(&mut self, output: Output) {
        self.stdout.extend(output.stdout.bytes);
        self.stderr.extend(output.stderr.bytes);
    }

    pub fn into_outcome(self, ctx: &Ctx, outcome: Outcome) -> Outcome {
        let max = ctx.round.max_output_bytes;
        Outcome {
            stdout: Some(Tail::from_bytes(self.stdout, max)),
            stderr: Some(Tail::from_bytes(self.stderr, max)),
            ..outcome
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reports() {
        let text = r#"  {
      "report": [
          {
              "pv": [
                  {"pv_name":"/dev/loop0", "vg_name":"", "pv_size":"67108864"},
                  {"pv_name":"[unknown]", "vg_name":"vg", "pv_size":"0"}
              ]
          }
      ]
  }"#;
        let rows = parse_report(text, "pv").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(field(&rows[0], "pv_name").as_deref(), Some("/dev/loop0"));
        assert_eq!(number(&rows[0], "pv_size"), Some(67108864));
        assert_eq!(parse_report("not json", "pv"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16m", 'm'), Some(16 << 20));
        assert_eq!(parse_size("16M", 'm'), Some(16 << 20));
        assert_eq!(parse_size("16", 'm'), Some(16 << 20));
        assert_eq!(parse_size("1.5g", 'm'), Some(3 << 29));
        assert_eq!(parse_size("8s", 'm'), Some(4096));
        assert_eq!(parse_size("4k", 'k'), Some(4096));
        for bad in ["", "m", "1x", "-1m", "1 m", ".5g", "1e3"] {
            assert_eq!(parse_size(bad, 'm'), None, "{bad}");
        }
        assert_eq!(human(16 << 20), "16.00 MiB");
        assert_eq!(human(512), "512 B");
    }
}

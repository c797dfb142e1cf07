//! `common.timezone` — the machine's time zone, and whether the hardware clock keeps UTC.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | zone name | required | e.g. `Europe/Paris`, `Etc/UTC`; must exist under `/usr/share/zoneinfo` |
//! | `use-utc` | bool | `true` | the hardware clock keeps UTC (`false`: local time); recorded in `/etc/adjtime` |
//!
//! `/etc/localtime` becomes a symlink to `/usr/share/zoneinfo/<name>` (replaced atomically: a
//! new link under a temporary name renamed over the old one), and on Debian-like systems
//! `/etc/timezone` holds the name. `use-utc` is written to the third line of `/etc/adjtime`
//! (`UTC` or `LOCAL`) when that file exists; a machine without it (a container, or no hardware
//! clock configured) has nothing to record, and the change reports a comment saying so. The
//! zone's existence is checked when the state runs: an unknown zone fails with its path.
//! "Already fine" means the link, `/etc/timezone` and `/etc/adjtime` all say so already.
//! `--test` lists the files it would change. Running processes keep their zone until restarted.
//!
//! ```yaml
//! - id: tz
//!   module: common.timezone
//!   parameter: { name: Europe/Paris, use-utc: true }
//! ```

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use crate::ctx::Owner;
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

const ZONEINFO: &str = "/usr/share/zoneinfo";
const LOCALTIME: &str = "/etc/localtime";
const TIMEZONE: &str = "/etc/timezone";
const ADJTIME: &str = "/etc/adjtime";

/// A validated `common.timezone`.
#[derive(Debug, Clone)]
pub struct Timezone {
    pub name: String,
    pub use_utc: bool,
}

impl Timezone {
    pub fn from_params(state: &State) -> Result<(Timezone, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("name").and_then(|n| n.pos);
        let name = p.required_string("name", "give a zone name, e.g. `name: Europe/Paris`");
        if let Some(problem) = name.as_deref().and_then(zone_name_problem) {
            p.report(
                Kind::BadValue,
                "name",
                pos,
                format!("`{}` is not a time zone name: {problem}", name.as_deref().unwrap_or_default()),
                Some("zone names look like `Europe/Paris` or `Etc/UTC`; see `ls /usr/share/zoneinfo`".into()),
            );
        }
        let use_utc = p.bool("use-utc").unwrap_or(true);
        let warnings = p.finish(&["name", "use-utc"], &[])?;
        let name = name.expect("finish fails when `name` is missing or invalid");
        Ok((Timezone { name, use_utc }, warnings))
    }

    pub fn check(&self, _ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        let zone = self.zone_file()?;
        let localtime = Path::new(LOCALTIME);
        match fs::symlink_metadata(localtime) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                plan.changes.push(Change::new(Action::Create, LOCALTIME, format!("symlink to {}", zone.display())));
            }
            Err(e) => return Err(StateError::io("reading", localtime)(e)),
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(localtime).map_err(StateError::io("reading link", localtime))?;
                if normalize(&Path::new("/etc").join(&target)) != zone {
                    plan.changes.push(Change::new(
                        Action::Update,
                        LOCALTIME,
                        format!("{} -> {}", target.display(), zone.display()),
                    ));
                }
            }
            Ok(_) => {
                plan.changes.push(Change::new(
                    Action::Update,
                    LOCALTIME,
                    format!("a copied zone file -> symlink to {}", zone.display()),
                ));
            }
        }
        if manages_etc_timezone() {
            match fs::read_to_string(TIMEZONE) {
                Ok(text) if text == format!("{}\n", self.name) => {}
                Ok(text) => plan.changes.push(Change::new(
                    Action::Update,
                    TIMEZONE,
                    format!("`{}` -> `{}`", text.trim(), self.name),
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    plan.changes.push(Change::new(Action::Create, TIMEZONE, format!("`{}`", self.name)))
                }
                Err(e) => return Err(StateError::io("reading", TIMEZONE)(e)),
            }
        }
        if let Some(text) = read_adjtime()? {
            let current = adjtime_mode(&text);
            let wanted = if self.use_utc { "UTC" } else { "LOCAL" };
            if current != wanted {
                plan.changes.push(Change::new(
                    Action::Update,
                    ADJTIME,
                    format!("hardware clock {current} -> {wanted}"),
                ));
            }
        }
        Ok(plan)
    }

    pub fn apply(&self, _ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let zone = self.zone_file()?;
        let wants = |target: &str| plan.changes.iter().any(|c| c.target == target);
        if wants(LOCALTIME) {
            replace_symlink(Path::new(LOCALTIME), &zone)?;
        }
        if wants(TIMEZONE) {
            fsutil::write_atomic(Path::new(TIMEZONE), format!("{}\n", self.name).as_bytes(), 0o644, Owner::default())
                .map_err(StateError::io("writing", TIMEZONE))?;
        }
        let adjtime = read_adjtime()?;
        if wants(ADJTIME) {
            let text = adjtime.as_deref().unwrap_or_default();
            let mode = fs::metadata(ADJTIME).map(|m| fsutil::mode_of(&m)).unwrap_or(0o644);
            let wanted = set_adjtime_mode(text, self.use_utc);
            fsutil::write_atomic(Path::new(ADJTIME), wanted.as_bytes(), mode, Owner::default())
                .map_err(StateError::io("writing", ADJTIME))?;
        }
        let mut outcome: Outcome = plan.into();
        if adjtime.is_none() {
            outcome.comment = Some(format!(
                "warning: `use-utc` not recorded: this machine has no {ADJTIME} (no hardware clock configured)"
            ));
        }
        Ok(outcome)
    }

    /// The zone's file, which must exist.
    fn zone_file(&self) -> Result<PathBuf, StateError> {
        let zone = Path::new(ZONEINFO).join(&self.name);
        match fs::metadata(&zone) {
            Ok(meta) if meta.is_file() => Ok(zone),
            Ok(_) => Err(StateError::Conflict {
                path: zone,
                problem: format!("is not a zone file: `{}` is not a time zone (see `ls {ZONEINFO}`)", self.name),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StateError::Conflict {
                path: zone,
                problem: format!(
                    "does not exist: `{}` is not a known time zone (check the spelling, or install `tzdata`)",
                    self.name
                ),
            }),
            Err(e) => Err(StateError::io("reading", zone)(e)),
        }
    }
}

/// Debian and its derivatives keep the zone's name in /etc/timezone as well.
fn manages_etc_timezone() -> bool {
    Path::new(TIMEZONE).exists() || Path::new("/etc/debian_version").exists()
}

fn read_adjtime() -> Result<Option<String>, StateError> {
    match fs::read_to_string(ADJTIME) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io("reading", ADJTIME)(e)),
    }
}

/// The third line of /etc/adjtime: `UTC` (also when missing, as hwclock assumes) or `LOCAL`.
fn adjtime_mode(text: &str) -> &str {
    match text.lines().nth(2).map(str::trim) {
        Some("LOCAL") => "LOCAL",
        _ => "UTC",
    }
}

/// /etc/adjtime with its third line set; missing first lines get hwclock's defaults.
fn set_adjtime_mode(text: &str, utc: bool) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let defaults = ["0.0 0 0.0", "0"];
    while lines.len() < 2 {
        lines.push(defaults[lines.len()].to_string());
    }
    let mode = if utc { "UTC" } else { "LOCAL" }.to_string();
    if lines.len() < 3 {
        lines.push(mode);
    } else {
        lines[2] = mode;
    }
    lines.join("\n") + "\n"
}

/// Makes `link` point to `target`: a new link under a temporary name, renamed over the old.
fn replace_symlink(link: &Path, target: &Path) -> Result<(), StateError> {
    let dir = fsutil::parent_of(link);
    let temp = dir.join(format!(
        ".{}.opsagent-{}.link",
        link.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp).map_err(StateError::io("creating symlink", &temp))?;
    if let Err(e) = fs::rename(&temp, link) {
        let _ = fs::remove_file(&temp);
        return Err(StateError::io("renaming a symlink onto", link)(e));
    }
    fsutil::sync_dir(dir).map_err(StateError::io("syncing", dir))
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn zone_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.starts_with('/') {
        return Some("it is a path; give the name under /usr/share/zoneinfo, e.g. `Europe/Paris`");
    }
    if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Some("it has an empty, `.` or `..` component");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')) {
        return Some("it contains a character other than letters, digits, `/`, `_`, `-` and `+`");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names() {
        assert_eq!(zone_name_problem("Europe/Paris"), None);
        assert_eq!(zone_name_problem("Etc/GMT+5"), None);
        assert_eq!(zone_name_problem("America/Port-au-Prince"), None);
        assert!(zone_name_problem("/usr/share/zoneinfo/UTC").is_some());
        assert!(zone_name_problem("../etc/passwd").is_some());
        assert!(zone_name_problem("Europe//Paris").is_some());
        assert!(zone_name_problem("Europe/Paris ").is_some());
    }

    #[test]
    fn adjtime() {
        let text = "0.0 0 0.0\n0\nLOCAL\n";
        assert_eq!(adjtime_mode(text), "LOCAL");
        assert_eq!(set_adjtime_mode(text, true), "0.0 0 0.0\n0\nUTC\n");
        assert_eq!(adjtime_mode("0.0 0 0.0\n0\n"), "UTC");
        assert_eq!(set_adjtime_mode("", false), "0.0 0 0.0\n0\nLOCAL\n");
    }

    #[test]
    fn relative_links_resolve() {
        assert_eq!(
            normalize(&Path::new("/etc").join("../usr/share/zoneinfo/Etc/UTC")),
            Path::new("/usr/share/zoneinfo/Etc/UTC")
        );
        // An absolute target replaces the base, as `join` does.
        let absolute = PathBuf::from("/usr/share/zoneinfo/UTC");
        assert_eq!(normalize(&Path::new("/etc").join(&absolute)), absolute);
    }
}

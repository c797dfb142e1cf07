//! `linux.group` — a local group, with the given gid.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `groupname` | group name | required | letters, digits, `_`, `-`, `.`; at most 32 characters |
//! | `gid` | number | chosen by `groupadd` | `"1500"` and `1500` both work; an existing group's gid is changed with `groupmod` |
//! | `system-group` | bool | `false` | create it as a system group (`groupadd --system`); an existing group is not converted |
//!
//! "Already fine" means the group exists in `/etc/group` with the wanted gid (when one is given).
//! `--test` shows `create <group>` or `update <group> (gid A -> B)`. Changes go through
//! `groupadd`/`groupmod`; a machine without them fails with a message naming the tool. Groups
//! are never removed by this module.
//!
//! ```yaml
//! - id: app-group
//!   module: linux.group
//!   parameter: { groupname: app, gid: "1500" }
//! ```

use std::fs;
use std::path::Path;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use crate::process::run_tool;
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// Where to get `groupadd`, `useradd` and friends.
pub(crate) const ACCOUNT_TOOLS_HINT: &str = "install the `passwd` package (shadow utilities)";

/// The group database.
pub(crate) const GROUP_FILE: &str = "/etc/group";

/// A validated `linux.group`.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub gid: Option<u32>,
    pub system: bool,
}

impl Group {
    pub fn from_params(state: &State) -> Result<(Group, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let name = account_name(&mut p, "groupname", "give the group name, e.g. `groupname: app`");
        let gid = account_id(&mut p, "gid");
        let system = p.bool("system-group").unwrap_or(false);
        let warnings = p.finish(&["groupname", "gid", "system-group"], &[])?;
        let name = name.expect("finish fails when `groupname` is missing or invalid");
        Ok((Group { name, gid, system }, warnings))
    }

    pub fn check(&self, _ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        let groups = read_groups(Path::new(GROUP_FILE))?;
        match groups.iter().find(|g| g.name == self.name) {
            None => {
                let mut detail = match self.gid {
                    Some(gid) => format!("gid {gid}"),
                    None => "gid chosen by groupadd".to_string(),
                };
                if self.system {
                    detail.push_str(", system group");
                }
                plan.changes.push(Change::new(Action::Create, &self.name, detail));
            }
            Some(current) => {
                if let Some(gid) = self.gid.filter(|&gid| gid != current.gid) {
                    plan.changes.push(Change::new(Action::Update, &self.name, format!("gid {} -> {gid}", current.gid)));
                }
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let gid = self.gid.map(|g| g.to_string());
        for change in &plan.changes {
            let mut args: Vec<&str> = Vec::new();
            let program = match change.action {
                Action::Create => {
                    if let Some(gid) = &gid {
                        args.extend(["--gid", gid]);
                    }
                    if self.system {
                        args.push("--system");
                    }
                    "groupadd"
                }
                _ => {
                    args.extend(["--gid", gid.as_deref().expect("an update is planned only for a given gid")]);
                    "groupmod"
                }
            };
            args.push(&self.name);
            let result = run_tool(ctx, program, &args, ACCOUNT_TOOLS_HINT).await;
            ctx.round.forget_accounts();
            result?;
        }
        Ok(plan.into())
    }
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Reads and parses a group file (`name:x:gid:member,member`); unreadable is an error.
pub(crate) fn read_groups(path: &Path) -> Result<Vec<GroupEntry>, StateError> {
    let text = fs::read_to_string(path).map_err(StateError::io("reading", path))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let (name, gid, members) = (fields.first()?, fields.get(2)?, fields.get(3).copied().unwrap_or(""));
            Some(GroupEntry {
                name: name.to_string(),
                gid: gid.parse().ok()?,
                members: members.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect(),
            })
        })
        .collect())
}

/// Reads a required user or group name and checks it is one `useradd`/`groupadd` accept.
pub(crate) fn account_name(p: &mut ParamReader<'_>, param: &str, hint: &str) -> Option<String> {
    let pos = p.node(param).and_then(|n| n.pos);
    let name = p.required_string(param, hint)?;
    match name_problem(&name) {
        None => Some(name),
        Some(problem) => {
            p.report(
                Kind::BadValue,
                param,
                pos,
                format!("`{name}` is not a valid account name: {problem}"),
                Some("use letters, digits, `_`, `-` and `.`, starting with a letter or `_`, e.g. `app-data`".into()),
            );
            None
        }
    }
}

/// Why `name` is not a valid user or group name, if it is not.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 32 {
        return Some("it is longer than 32 characters");
    }
    if body.chars().all(|c| c.is_ascii_digit()) {
        return Some("it is all digits (it would read as an id)");
    }
    let first = body.chars().next().expect("checked non-empty above");
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Some("it must start with a letter or `_`");
    }
    if !body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Some("it contains a character other than letters, digits, `_`, `-` and `.`");
    }
    None
}

/// Reads an optional numeric uid/gid (`"1500"` or `1500`); -1 (`4294967295`) is refused.
pub(crate) fn account_id(p: &mut ParamReader<'_>, param: &str) -> Option<u32> {
    let pos = p.node(param).and_then(|n| n.pos);
    let id = p.u64(param)?;
    match u32::try_from(id) {
        Ok(id) if id != u32::MAX => Some(id),
        _ => {
            p.report(
                Kind::BadValue,
                param,
                pos,
                format!("{id} is out of range"),
                Some("ids go from 0 to 4294967294".into()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_problem("app"), None);
        assert_eq!(name_problem("opsagent-test-g1"), None);
        assert_eq!(name_problem("_svc.x"), None);
        assert_eq!(name_problem("machine$"), None);
        assert!(name_problem("").is_some());
        assert!(name_problem("1500").is_some());
        assert!(name_problem("-x").is_some());
        assert!(name_problem("a b").is_some());
        assert!(name_problem("a:b").is_some());
        assert!(name_problem(&"a".repeat(33)).is_some());
    }

    #[test]
    fn parses_group_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group");
        fs::write(&path, "root:x:0:\nadm:x:4:syslog,alice\nbroken\n").unwrap();
        let groups = read_groups(&path).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[1],
            GroupEntry { name: "adm".into(), gid: 4, members: vec!["syslog".into(), "alice".into()] }
        );
        assert!(read_groups(&dir.path().join("missing")).is_err());
    }
}

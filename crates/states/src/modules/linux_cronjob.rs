//! `linux.cronjob` — cron jobs in a user's crontab, kept in a block that names the state.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `cmd` | list of commands | required | one crontab line per command, all on the same schedule; to cron, `%` means a line break (write `\%`) |
//! | `user` | user name | `root` | whose crontab; the user must exist |
//! | `minute` | cron field | `*` | 0-59 |
//! | `hour` | cron field | `*` | 0-23 |
//! | `day-of-month` | cron field | `*` | 1-31 |
//! | `month` | cron field | `*` | 1-12 or `jan`-`dec` |
//! | `day-of-week` | cron field | `*` | 0-7 (0 and 7 are Sunday) or `sun`-`sat` |
//! | `absent` | bool | `false` | remove the block instead (the original could not) |
//!
//! A cron field is a comma-separated list of `*`, a value or a range `a-b`, each optionally with a
//! step `/n` (`*/15`, `0-30/10`, `1,15`); every value is checked against its range when the recipe
//! loads. The jobs are written between `# BEGIN opsagent: <state id>` and `# END opsagent: <state
//! id>` lines; the rest of the crontab (lines written by hand or by other states) is never touched.
//! "Already fine" means that block is exactly as wanted (or, with `absent`, that there is none).
//! `--test` shows the diff of the crontab. The crontab is read with `crontab -l -u USER` and
//! installed with `crontab -u USER FILE` (Debian package `cron`).
//!
//! ```yaml
//! - id: backup-cron
//!   module: linux.cronjob
//!   parameter: { user: root, minute: "30", hour: "2", cmd: ["/usr/local/bin/backup --quiet"] }
//! ```

use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_group::name_problem;
use crate::ctx::Owner;
use crate::process::run_tool;
use crate::{diff, fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

const CRON_HINT: &str = "install the `cron` package";

/// A validated `linux.cronjob`.
#[derive(Debug, Clone)]
pub struct Cronjob {
    /// The state id, written into the block's marker lines.
    pub id: String,
    pub user: String,
    /// The schedule: minute, hour, day of month, month, day of week.
    pub schedule: [String; 5],
    pub commands: Vec<String>,
    pub absent: bool,
}

/// The schedule fields: parameter name, lowest and highest value, names for values.
const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day-of-month", 1, 31, &[]),
    ("month", 1, 12, &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    ("day-of-week", 0, 7, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

impl Cronjob {
    pub fn from_params(state: &State) -> Result<(Cronjob, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let cmd_pos = p.node("cmd").and_then(|n| n.pos);
        let commands = if p.has("cmd") {
            p.string_list("cmd")
        } else {
            p.required_string("cmd", "give the commands as a list, e.g. `cmd: [\"/usr/local/bin/backup\"]`")
                .map(|c| vec![c])
        };
        if let Some(commands) = &commands {
            if commands.is_empty() {
                p.report(Kind::BadValue, "cmd", cmd_pos, "the list of commands is empty", None);
            }
            for (i, c) in commands.iter().enumerate() {
                if c.trim().is_empty() {
                    p.report(Kind::BadValue, &format!("cmd[{i}]"), cmd_pos, "the command is empty", None);
                } else if c.contains(['\n', '\r']) {
                    p.report(
                        Kind::BadValue,
                        &format!("cmd[{i}]"),
                        cmd_pos,
                        "the command contains a line break",
                        Some("give each command as its own list entry".into()),
                    );
                }
            }
        }
        let user_pos = p.node("user").and_then(|n| n.pos);
        let user = p.string("user").unwrap_or_else(|| "root".to_string());
        if let Some(problem) = name_problem(&user) {
            p.report(Kind::BadValue, "user", user_pos, format!("`{user}` is not a valid user name: {problem}"), None);
        }
        let mut schedule: [String; 5] = Default::default();
        for (slot, (name, low, high, names)) in schedule.iter_mut().zip(FIELDS) {
            let pos = p.node(name).and_then(|n| n.pos);
            let value = p.string(name).map(|v| v.trim().to_string()).unwrap_or_else(|| "*".to_string());
            if let Err(problem) = check_field(&value, low, high, names) {
                p.report(
                    Kind::BadValue,
                    name,
                    pos,
                    format!("`{value}` is not a valid {name} field: {problem}"),
                    Some(format!(
                        "use `*`, a value from {low} to {high}, a range `a-b`, a step `*/n`, or a comma-separated list"
                    )),
                );
            }
            *slot = value;
        }
        let absent = p.bool("absent").unwrap_or(false);
        let warnings =
            p.finish(&["cmd", "user", "minute", "hour", "day-of-month", "month", "day-of-week", "absent"], &[])?;
        let commands = commands.expect("finish fails when `cmd` is missing or invalid");
        Ok((Cronjob { id: state.id.clone(), user, schedule, commands, absent }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        let current = self.read_crontab(ctx).await?;
        let wanted = self.rewrite(&current)?;
        if wanted == current {
            return Ok(plan);
        }
        let target = format!("crontab of {}", self.user);
        let had_block = find_block(&current, &self.id)?.is_some();
        let (action, detail) = match (self.absent, had_block) {
            (true, _) => (Action::Remove, format!("the block of state `{}`", self.id)),
            (false, false) => (Action::Create, jobs(self.commands.len())),
            (false, true) => (Action::Update, jobs(self.commands.len())),
        };
        plan.changes.push(Change::new(action, target, detail));
        if !ctx.sensitive {
            plan.diff =
                Some(diff::unified(&format!("crontab of {}", self.user), current.as_bytes(), wanted.as_bytes()));
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let current = self.read_crontab(ctx).await?;
        let wanted = self.rewrite(&current)?;
        let dir = &ctx.round.work_dir;
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(StateError::io("creating the work directory", dir))?;
        }
        let file: PathBuf = dir.join(format!("crontab.{}.{}", self.user, std::process::id()));
        fsutil::write_atomic(&file, wanted.as_bytes(), 0o600, Owner::default())
            .map_err(StateError::io("writing", &file))?;
        let file_arg = file.display().to_string();
        let result = run_tool(ctx, "crontab", &["-u", &self.user, &file_arg], CRON_HINT).await;
        let _ = std::fs::remove_file(&file);
        result?;
        Ok(plan.into())
    }

    /// The user's crontab (`""` when there is none).
    async fn read_crontab(&self, ctx: &Ctx) -> Result<String, StateError> {
        ctx.round.user(&self.user)?;
        match run_tool(ctx, "crontab", &["-l", "-u", &self.user], CRON_HINT).await {
            Ok(output) => Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned()),
            Err(StateError::Command { stderr, .. })
                if String::from_utf8_lossy(&stderr.bytes).contains("no crontab") =>
            {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    }

    /// `current` with this state's block as wanted: replaced in place, appended, or removed.
    fn rewrite(&self, current: &str) -> Result<String, StateError> {
        let lines: Vec<&str> = current.lines().collect();
        let block = find_block(current, &self.id)?;
        let mut out: Vec<String> = Vec::with_capacity(lines.len() + self.commands.len() + 2);
        let wanted_block = if self.absent { Vec::new() } else { self.block() };
        match block {
            Some((begin, end)) => {
                out.extend(lines[..begin].iter().map(|l| l.to_string()));
                out.extend(wanted_block);
                out.extend(lines[end + 1..].iter().map(|l| l.to_string()));
            }
            None => {
                out.extend(lines.iter().map(|l| l.to_string()));
                out.extend(wanted_block);
            }
        }
        let mut text = out.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        // An unchanged crontab stays byte-identical (e.g. without a final line break).
        if block.is_none() && self.absent {
            return Ok(current.to_string());
        }
        Ok(text)
    }

    fn block(&self) -> Vec<String> {
        let schedule = self.schedule.join(" ");
        let mut out = vec![begin_marker(&self.id)];
        out.extend(self.commands.iter().map(|c| format!("{schedule} {c}")));
        out.push(end_marker(&self.id));
        out
    }
}

fn jobs(n: usize) -> String {
    if n == 1 {
        "1 job".to_string()
    } else {
        format!("{n} jobs")
    }
}

fn begin_marker(id: &str) -> String {
    format!("# BEGIN opsagent: {}", id.replace(['\n', '\r'], " "))
}

fn end_marker(id: &str) -> String {
    format!("# END opsagent: {}", id.replace(['\n', '\r'], " "))
}

/// The line numbers of this state's BEGIN and END markers, if the block is there.
fn find_block(crontab: &str, id: &str) -> Result<Option<(usize, usize)>, StateError> {
    let (begin, end) = (begin_marker(id), end_marker(id));
    let lines: Vec<&str> = crontab.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == begin) else {
        return Ok(None);
    };
    match lines[start..].iter().position(|l| l.trim_end() == end) {
        Some(offset) => Ok(Some((start, start + offset))),
        None => Err(StateError::Conflict {
            path: PathBuf::from("crontab"),
            problem: format!("has `{begin}` without its `{end}` line; fix the crontab by hand (`crontab -e -u USER`)"),
        }),
    }
}

/// Checks one cron field: a comma-separated list of `*`, `v` or `a-b`, each with an optional `/step`.
fn check_field(field: &str, low: u32, high: u32, names: &[&str]) -> Result<(), String> {
    if field.is_empty() {
        return Err("it is empty".into());
    }
    let value = |text: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(i as u32 + if low == 1 { 1 } else { 0 });
        }
        let n: u32 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
        if n < low || n > high {
            return Err(format!("{n} is out of range {low}-{high}"));
        }
        Ok(n)
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            let n: u32 = step.parse().map_err(|_| format!("step `{step}` is not a number"))?;
            if n == 0 || n > high {
                return Err(format!("step {n} is out of range 1-{high}"));
            }
        }
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {a}-{b} goes backwards"));
                }
            }
            // Vixie cron reads `5/10` as `5-max/10`: accepted, as cron does.
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let minute = |f| check_field(f, 0, 59, &[]);
        assert!(minute("*").is_ok());
        assert!(minute("*/15").is_ok());
        assert!(minute("0,30").is_ok());
        assert!(minute("0-30/10").is_ok());
        assert_eq!(minute("61").unwrap_err(), "61 is out of range 0-59");
        assert_eq!(minute("*/0").unwrap_err(), "step 0 is out of range 1-59");
        assert!(minute("*/x").is_err());
        assert!(minute("30-10").is_err());
        assert!(minute("").is_err());
        assert!(minute("1,,2").is_err());
        let month = |f| check_field(f, 1, 12, FIELDS[3].3);
        assert!(month("jan-mar").is_ok());
        assert!(month("DEC").is_ok());
        assert!(month("13").is_err());
        let dow = |f| check_field(f, 0, 7, FIELDS[4].3);
        assert!(dow("sun,sat").is_ok());
        assert!(dow("7").is_ok());
        assert!(dow("8").is_err());
    }

    fn job(absent: bool) -> Cronjob {
        Cronjob {
            id: "c1".into(),
            user: "root".into(),
            schedule: ["*/5".into(), "*".into(), "*".into(), "*".into(), "*".into()],
            commands: vec!["echo a".into(), "echo b".into()],
            absent,
        }
    }

    #[test]
    fn rewrites_only_its_block() {
        let foreign = "MAILTO=x\n0 1 * * * foreign\n";
        let added = job(false).rewrite(foreign).unwrap();
        assert_eq!(
            added,
            format!("{foreign}# BEGIN opsagent: c1\n*/5 * * * * echo a\n*/5 * * * * echo b\n# END opsagent: c1\n")
        );
        assert_eq!(job(false).rewrite(&added).unwrap(), added);
        let mut changed = job(false);
        changed.commands.pop();
        let replaced = changed.rewrite(&(added.clone() + "9 9 * * * after\n")).unwrap();
        assert_eq!(
            replaced,
            format!("{foreign}# BEGIN opsagent: c1\n*/5 * * * * echo a\n# END opsagent: c1\n9 9 * * * after\n")
        );
        assert_eq!(job(true).rewrite(&added).unwrap(), foreign);
        assert_eq!(job(true).rewrite("no newline").unwrap(), "no newline");
        assert!(job(false).rewrite("# BEGIN opsagent: c1\n* * * * * x\n").is_err());
    }
}

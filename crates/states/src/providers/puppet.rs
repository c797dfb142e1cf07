//! Puppet, behind `linux.puppet.apply`, `linux.puppet.agent` and `linux.puppet.run`: the command
//! lines (plain functions, unit-tested word for word), the meaning of `--detailed-exitcodes`
//! (0 nothing changed, 2 changes made, 4 failures, 6 changes and failures), and the resource events
//! read from puppet's output, which are how `--noop` predicts (its exit status is 0 either way).

use crate::process::{run_spec_any_exit, Spec, Tail, Termination};
use crate::providers::wrapped::{check_version, find_program, join_tails, option_args, OptionStyle, ToolOption};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

pub const INSTALL_HINT: &str =
    "install it first (Debian: the `puppet` package; an earlier `linux.apt.package` state can), or the vendor's `puppet-agent` package (found in /opt/puppetlabs/bin)";

/// The `arguments` keys these modules set themselves, with the hint given when a recipe sets one.
pub const RESERVED_OPTIONS: &[(&str, &str)] = &[
    ("detailed-exitcodes", "opsagent always passes `--detailed-exitcodes`: it reads the result from it"),
    ("noop", "run `opsagent apply --test` for a dry run (it runs puppet with `--noop`)"),
    ("test", "`--test` changes how puppet reports; opsagent sets the options it needs"),
    ("daemonize", "opsagent runs puppet once, in the foreground"),
    ("onetime", "opsagent runs puppet once, in the foreground"),
];

/// The directory where Puppet's own packages put `puppet` (not on `PATH` for services).
const VENDOR_DIRS: &[&str] = &["/opt/puppetlabs/bin"];

/// The `puppet` program: on `PATH`, else Puppet's vendor directory.
pub fn program() -> String {
    find_program("puppet", VENDOR_DIRS)
}

/// What puppet is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    /// `puppet apply MANIFEST`.
    Apply { manifest: String },
    /// One `puppet agent` run, against `server` or the one in puppet's configuration.
    Agent { server: Option<String> },
}

impl Subcommand {
    /// A short description for reports, without the `arguments` (which may hold secrets).
    pub fn describe(&self) -> String {
        match self {
            Subcommand::Apply { manifest } => format!("puppet apply {manifest}"),
            Subcommand::Agent { server: Some(server) } => format!("puppet agent --server={server}"),
            Subcommand::Agent { server: None } => "puppet agent".to_string(),
        }
    }
}

/// The arguments of `puppet` (after the program name) for `sub`, the recipe's `options`, and a
/// dry run when `noop`.
pub fn command_line(sub: &Subcommand, options: &[ToolOption], noop: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    match sub {
        Subcommand::Apply { .. } => args.push("apply".into()),
        Subcommand::Agent { .. } => {
            args.push("agent".into());
            // The original's one-run options (Salt's puppet module), without `--ignorecache`,
            // which Puppet no longer has.
            for word in ["--onetime", "--no-daemonize", "--verbose", "--no-usecacheonfailure", "--no-splay"] {
                args.push(word.into());
            }
        }
    }
    args.push("--detailed-exitcodes".into());
    args.push("--color=false".into());
    if let Subcommand::Agent { server: Some(server) } = sub {
        args.push(format!("--server={server}"));
    }
    if noop {
        args.push("--noop".into());
    }
    args.extend(option_args(options, OptionStyle::Equals));
    if let Subcommand::Apply { manifest } = sub {
        // After `--`, a manifest path can never be read as an option.
        args.push("--".into());
        args.push(manifest.clone());
    }
    args
}

/// What an exit status says under `--detailed-exitcodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Changed,
    Failed(String),
}

pub fn verdict(code: i32) -> Verdict {
    match code {
        0 => Verdict::Unchanged,
        2 => Verdict::Changed,
        4 => Verdict::Failed("failed to apply some resources (exit status 4)".into()),
        6 => Verdict::Failed("changed some resources and failed to apply others (exit status 6)".into()),
        1 => Verdict::Failed("could not run (exit status 1); see its output".into()),
        code => Verdict::Failed(format!("exited with status {code}")),
    }
}

/// One resource event of puppet's output: `/Stage[main]/Main/File[/x]/ensure` and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub resource: String,
    pub message: String,
}

/// The resource events in puppet's output (`Notice: /Stage[main]/…/File[/x]/ensure: message`).
/// With `noop`, only the predicted ones (ending in `(noop)`, which is removed).
pub fn events(output: &str, noop: bool) -> Vec<Event> {
    let mut out = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.trim_end().strip_prefix("Notice: /") else {
            continue;
        };
        // The resource path ends at the first `: ` outside brackets (titles may hold `: `).
        let mut depth = 0i32;
        let mut split = None;
        for (i, c) in rest.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ':' if depth == 0 && rest[i + 1..].starts_with(' ') => {
                    split = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(split) = split else { continue };
        let resource = format!("/{}", &rest[..split]);
        let message = rest[split + 2..].trim();
        let message = match (noop, message.strip_suffix("(noop)")) {
            (true, Some(m)) => m.trim_end(),
            (true, None) => continue,
            (false, _) => message,
        };
        out.push(Event { resource, message: message.to_string() });
    }
    out
}

/// One run of puppet.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub verdict: Verdict,
    pub events: Vec<Event>,
    pub stdout: Tail,
    pub stderr: Tail,
}

/// Runs `puppet` for `sub` (a dry run when `noop`) and reads its result. A missing puppet is a
/// `MissingTool` error; puppet's own failures are a [`Verdict::Failed`] for the caller to report.
pub async fn run(ctx: &Ctx, sub: &Subcommand, options: &[ToolOption], noop: bool) -> Result<Run, StateError> {
    let program = program();
    let spec = Spec {
        program,
        args: command_line(sub, options, noop),
        // Puppet refuses to run as root without a HOME; the agent's service may have none.
        env: vec![("HOME".into(), std::env::var("HOME").unwrap_or_else(|_| "/root".into()))],
        ..Spec::default()
    };
    let output = run_spec_any_exit(ctx, &spec, INSTALL_HINT).await?;
    let code = match output.termination {
        Termination::Exited(code) => code,
        // Timeouts and signals are errors of `run_spec_any_exit`; this is never reached.
        _ => -1,
    };
    let text = String::from_utf8_lossy(&output.stdout.bytes);
    Ok(Run { code, verdict: verdict(code), events: events(&text, noop), stdout: output.stdout, stderr: output.stderr })
}

/// What one `linux.puppet.*` state runs: one or more puppet runs with the same options.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub runs: Vec<Subcommand>,
    pub options: Vec<ToolOption>,
    /// The version the recipe asks for (checked, not installed).
    pub version: Option<String>,
}

/// At most this many predicted or made resource changes are listed per run.
const MAX_LISTED: usize = 50;

impl Invocation {
    /// Runs puppet's dry run (`--noop`) for each run: those that would change something are planned.
    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        if let Some(want) = &self.version {
            check_version(ctx, &program(), want, INSTALL_HINT).await?;
        }
        let mut plan = Plan::default();
        for sub in &self.runs {
            let dry = run(ctx, sub, &self.options, true).await?;
            let detail = match (&dry.verdict, dry.code) {
                (Verdict::Unchanged, _) if dry.events.is_empty() => continue,
                (Verdict::Unchanged | Verdict::Changed, _) if !dry.events.is_empty() => {
                    format!("its dry run (--noop) predicts {}", count(dry.events.len(), "change"))
                }
                (Verdict::Unchanged | Verdict::Changed, _) => "its dry run (--noop) predicts changes".to_string(),
                (Verdict::Failed(problem), 4 | 6) => {
                    format!("its dry run (--noop) {problem}; the real run will tell")
                }
                (Verdict::Failed(problem), _) => {
                    return Err(StateError::ToolFailed {
                        command: format!("{} --noop", sub.describe()),
                        problem: problem.clone(),
                        stdout: dry.stdout,
                        stderr: dry.stderr,
                    })
                }
            };
            push_run(&mut plan.changes, ctx, sub, detail, &dry.events);
        }
        Ok(plan)
    }

    /// Runs puppet for each run the plan names.
    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome = Outcome::default();
        let (mut stdout, mut stderr, mut comments) = (Vec::new(), Vec::new(), Vec::new());
        let max = ctx.round.max_output_bytes;
        for sub in &self.runs {
            let described = sub.describe();
            if !plan.changes.iter().any(|c| c.action == Action::Run && c.target == described) {
                continue;
            }
            let real = run(ctx, sub, &self.options, false).await?;
            stdout.push(real.stdout);
            stderr.push(real.stderr);
            match real.verdict {
                Verdict::Failed(problem) => {
                    return Err(StateError::ToolFailed {
                        command: described,
                        problem,
                        stdout: join_tails(&stdout, max),
                        stderr: join_tails(&stderr, max),
                    })
                }
                Verdict::Changed => {
                    let detail = count(real.events.len(), "change");
                    push_run(&mut outcome.changes, ctx, sub, detail, &real.events);
                }
                Verdict::Unchanged => {
                    comments.push(format!("`{described}` changed nothing (its dry run had predicted changes)"));
                    push_run(&mut outcome.changes, ctx, sub, "nothing changed".into(), &[]);
                }
            }
        }
        outcome.stdout = Some(join_tails(&stdout, max));
        outcome.stderr = Some(join_tails(&stderr, max));
        outcome.comment = (!comments.is_empty()).then(|| comments.join("; "));
        Ok(outcome)
    }
}

/// A run's change, then one change per resource event (hidden for a sensitive state).
fn push_run(changes: &mut Vec<Change>, ctx: &Ctx, sub: &Subcommand, detail: String, events: &[Event]) {
    changes.push(Change::new(Action::Run, sub.describe(), detail));
    if ctx.sensitive {
        return;
    }
    for event in events.iter().take(MAX_LISTED) {
        changes.push(Change::new(Action::Update, &event.resource, &event.message));
    }
    if events.len() > MAX_LISTED {
        changes.push(Change::new(Action::Update, format!("{} more resources", events.len() - MAX_LISTED), ""));
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(key: &str, value: Option<&str>) -> ToolOption {
        ToolOption { key: key.into(), value: value.map(str::to_string) }
    }

    #[test]
    fn apply_command_line() {
        let sub = Subcommand::Apply { manifest: "/etc/puppet/site.pp".into() };
        let options = [opt("modulepath", Some("/a/b/modules")), opt("tags", Some("basefiles::edit,apache::server"))];
        assert_eq!(
            command_line(&sub, &options, false),
            [
                "apply",
                "--detailed-exitcodes",
                "--color=false",
                "--modulepath=/a/b/modules",
                "--tags=basefiles::edit,apache::server",
                "--",
                "/etc/puppet/site.pp"
            ]
        );
        assert_eq!(
            command_line(&sub, &[], true),
            ["apply", "--detailed-exitcodes", "--color=false", "--noop", "--", "/etc/puppet/site.pp"]
        );
    }

    #[test]
    fn agent_command_line() {
        let sub = Subcommand::Agent { server: Some("puppet.example.com".into()) };
        assert_eq!(
            command_line(&sub, &[opt("environment", Some("staging"))], true),
            [
                "agent",
                "--onetime",
                "--no-daemonize",
                "--verbose",
                "--no-usecacheonfailure",
                "--no-splay",
                "--detailed-exitcodes",
                "--color=false",
                "--server=puppet.example.com",
                "--noop",
                "--environment=staging"
            ]
        );
        assert_eq!(
            command_line(&Subcommand::Agent { server: None }, &[], false),
            [
                "agent",
                "--onetime",
                "--no-daemonize",
                "--verbose",
                "--no-usecacheonfailure",
                "--no-splay",
                "--detailed-exitcodes",
                "--color=false"
            ]
        );
    }

    #[test]
    fn detailed_exit_codes() {
        assert_eq!(verdict(0), Verdict::Unchanged);
        assert_eq!(verdict(2), Verdict::Changed);
        assert!(matches!(verdict(4), Verdict::Failed(_)));
        assert!(matches!(verdict(6), Verdict::Failed(_)));
        assert!(matches!(verdict(1), Verdict::Failed(_)));
    }

    #[test]
    fn events_of_a_noop_and_a_real_run() {
        let noop = "Notice: Compiled catalog for vm in environment production in 0.20 seconds\n\
            Notice: /Stage[main]/Main/File[/tmp/x]/ensure: current_value 'absent', should be 'file' (noop)\n\
            Notice: /Stage[main]/Main/Exec[echo a: b]/returns: current_value 'notrun', should be ['0'] (noop)\n\
            Notice: Class[Main]: Would have triggered 'refresh' from 1 event\n\
            Notice: Applied catalog in 0.11 seconds\n";
        assert_eq!(
            events(noop, true),
            [
                Event {
                    resource: "/Stage[main]/Main/File[/tmp/x]/ensure".into(),
                    message: "current_value 'absent', should be 'file'".into()
                },
                Event {
                    resource: "/Stage[main]/Main/Exec[echo a: b]/returns".into(),
                    message: "current_value 'notrun', should be ['0']".into()
                },
            ]
        );
        let real = "Notice: /Stage[main]/Main/File[/tmp/x]/ensure: defined content as '{sha256}58'\n";
        assert_eq!(
            events(real, false),
            [Event {
                resource: "/Stage[main]/Main/File[/tmp/x]/ensure".into(),
                message: "defined content as '{sha256}58'".into()
            }]
        );
        assert!(events(real, true).is_empty());
    }
}

//! Chef, behind `linux.chef.client` and `linux.chef.solo`: the command lines (plain functions,
//! unit-tested word for word), and the result read from Chef's `doc` formatter: its closing
//! `N/M resources updated` (or, under `--why-run`, `N/M resources would have been updated`) says
//! whether anything changed, and its `* resource action` lines followed by `- what it did` say what.
//! Chef's exit status says only success (0; 35 and 37 are successes asking for a reboot) or failure.

use crate::process::{run_spec_any_exit, Spec, Tail, Termination};
use crate::providers::wrapped::{check_version, find_program, join_tails, option_args, OptionStyle, ToolOption};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

pub const INSTALL_HINT: &str =
    "install Chef first (its omnibus package puts it in /opt/chef/bin, which opsagent also looks in); opsagent does not install it";

/// The `arguments` keys both modules set themselves, with the hint given when a recipe sets one.
pub const RESERVED_OPTIONS: &[(&str, &str)] = &[
    ("why-run", "run `opsagent apply --test` for a dry run (it runs chef with `--why-run`)"),
    ("format", "opsagent reads chef's `doc` formatter output: it sets `--format doc` itself"),
    ("force-formatter", "opsagent reads chef's `doc` formatter output: it sets `--force-formatter` itself"),
    ("force-logger", "opsagent reads chef's `doc` formatter output: it sets `--force-formatter` itself"),
    ("color", "opsagent sets `--no-color` itself"),
    ("daemonize", "opsagent runs chef once, in the foreground"),
    ("interval", "opsagent runs chef once, in the foreground"),
    ("once", "opsagent runs chef once, in the foreground"),
];

/// Where Chef's own packages put its tools.
const VENDOR_DIRS: &[&str] = &["/opt/chef/bin"];

/// What chef is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// `chef-client` against a Chef server.
    Client { server: String, client_key: Option<String>, config: Option<String> },
    /// `chef-solo` with local cookbooks.
    Solo { config: Option<String>, override_runlist: Option<String>, recipe_url: Option<String> },
}

impl Run {
    pub fn tool(&self) -> &'static str {
        match self {
            Run::Client { .. } => "chef-client",
            Run::Solo { .. } => "chef-solo",
        }
    }

    /// A short description for reports, without the `arguments` (which may hold secrets).
    pub fn describe(&self) -> String {
        match self {
            Run::Client { server, .. } => format!("chef-client --server {server}"),
            Run::Solo { config: Some(config), .. } => format!("chef-solo --config {config}"),
            Run::Solo { config: None, .. } => "chef-solo".to_string(),
        }
    }
}

/// The arguments of `chef-client`/`chef-solo` (after the program name) for `run`, the recipe's
/// `options`, and a dry run when `why_run`.
pub fn command_line(run: &Run, options: &[ToolOption], why_run: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if matches!(run, Run::Client { .. }) {
        args.push("--once".into());
    }
    for word in ["--no-color", "--force-formatter", "--format", "doc"] {
        args.push(word.into());
    }
    if why_run {
        args.push("--why-run".into());
    }
    let mut pair = |flag: &str, value: &Option<String>| {
        if let Some(value) = value {
            args.push(flag.to_string());
            args.push(value.clone());
        }
    };
    match run {
        Run::Client { server, client_key, config } => {
            pair("--server", &Some(server.clone()));
            pair("--client_key", client_key);
            pair("--config", config);
        }
        Run::Solo { config, override_runlist, recipe_url } => {
            pair("--config", config);
            pair("--override-runlist", override_runlist);
            pair("--recipe-url", recipe_url);
        }
    }
    args.extend(option_args(options, OptionStyle::Separate));
    args
}

/// Chef's closing count: `(updated, total)` from `N/M resources updated` or, under `--why-run`,
/// `N/M resources would have been updated` (the last such line).
pub fn updated_count(output: &str) -> Option<(u64, u64)> {
    let mut found = None;
    for line in output.lines() {
        let Some(at) = line.find(" resources updated").or_else(|| line.find(" resources would have been updated"))
        else {
            continue;
        };
        let word = line[..at].rsplit(' ').next().unwrap_or("");
        if let Some((n, m)) = word.split_once('/') {
            if let (Ok(n), Ok(m)) = (n.parse(), m.parse()) {
                found = Some((n, m));
            }
        }
    }
    found
}

/// One resource chef updated (or would update): `file[/tmp/x] action create` and the first thing
/// it did (`create new file /tmp/x`, or `Would create new file /tmp/x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub resource: String,
    pub message: String,
}

/// The updated resources in the `doc` formatter's output: a `  * resource action` line followed
/// by `    - what` lines (a resource that was up to date has none).
pub fn events(output: &str) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        let trimmed = line.trim_start();
        if let Some(resource) = trimmed.strip_prefix("* ") {
            current = Some(resource.trim_end().to_string());
        } else if let (Some(what), Some(resource)) = (trimmed.strip_prefix("- "), &current) {
            if out.last().map(|e| &e.resource) != Some(resource) {
                out.push(Event { resource: resource.clone(), message: what.trim_end().to_string() });
            }
        } else if !trimmed.is_empty() && !line.starts_with(' ') {
            current = None;
        }
    }
    out
}

/// What chef's exit status says: `Ok(note)` for a success (with a note for the reboot statuses),
/// `Err(problem)` for a failure.
pub fn exit_meaning(code: i32) -> Result<Option<&'static str>, String> {
    match code {
        0 => Ok(None),
        35 => Ok(Some("chef scheduled a reboot (exit status 35)")),
        37 => Ok(Some("chef says a reboot is needed (exit status 37)")),
        1 => Err("failed (exit status 1); see its output".into()),
        code => Err(format!("exited with status {code}; see its output")),
    }
}

/// One run of chef, read.
#[derive(Debug, Clone)]
pub struct Ran {
    pub meaning: Result<Option<&'static str>, String>,
    pub updated: Option<(u64, u64)>,
    pub events: Vec<Event>,
    pub stdout: Tail,
    pub stderr: Tail,
}

/// Runs chef (a dry run when `why_run`). A missing chef is a `MissingTool` error naming it.
pub async fn run(ctx: &Ctx, what: &Run, options: &[ToolOption], why_run: bool) -> Result<Ran, StateError> {
    let spec = Spec {
        program: find_program(what.tool(), VENDOR_DIRS),
        args: command_line(what, options, why_run),
        ..Spec::default()
    };
    let output = run_spec_any_exit(ctx, &spec, INSTALL_HINT).await?;
    let code = match output.termination {
        Termination::Exited(code) => code,
        _ => -1,
    };
    let text = String::from_utf8_lossy(&output.stdout.bytes).into_owned();
    Ok(Ran {
        meaning: exit_meaning(code),
        updated: updated_count(&text),
        events: events(&text),
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

/// What one `linux.chef.*` state runs.
#[derive(Debug, Clone)]
pub struct Chef {
    pub run: Run,
    pub options: Vec<ToolOption>,
    /// The version the recipe asks for (checked, not installed).
    pub version: Option<String>,
}

/// At most this many resources are listed.
const MAX_LISTED: usize = 50;

impl Chef {
    /// Chef's dry run (`--why-run`): planned when it would update resources.
    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        if let Some(want) = &self.version {
            check_version(ctx, &find_program(self.run.tool(), VENDOR_DIRS), want, INSTALL_HINT).await?;
        }
        let dry = run(ctx, &self.run, &self.options, true).await?;
        if let Err(problem) = dry.meaning {
            return Err(StateError::ToolFailed {
                command: format!("{} --why-run", self.run.describe()),
                problem,
                stdout: dry.stdout,
                stderr: dry.stderr,
            });
        }
        let detail = match dry.updated {
            Some((0, _)) => return Ok(Plan::default()),
            Some((n, m)) => format!("its dry run (--why-run) would update {n} of {m} resources"),
            None => "its dry run (--why-run) printed no resource count".to_string(),
        };
        let mut plan = Plan::default();
        self.push_run(&mut plan.changes, ctx, detail, &dry.events);
        Ok(plan)
    }

    /// The real run.
    pub async fn apply(&self, ctx: &Ctx, _plan: Plan) -> Result<Outcome, StateError> {
        let real = run(ctx, &self.run, &self.options, false).await?;
        let max = ctx.round.max_output_bytes;
        let note = match real.meaning {
            Ok(note) => note,
            Err(problem) => {
                return Err(StateError::ToolFailed {
                    command: self.run.describe(),
                    problem,
                    stdout: join_tails(&[real.stdout], max),
                    stderr: join_tails(&[real.stderr], max),
                })
            }
        };
        let mut outcome = Outcome::default();
        let mut comments: Vec<String> = note.map(str::to_string).into_iter().collect();
        let detail = match real.updated {
            Some((0, _)) => {
                comments.push(format!("`{}` changed nothing (its dry run had predicted changes)", self.run.tool()));
                "nothing changed".to_string()
            }
            Some((n, m)) => format!("updated {n} of {m} resources"),
            None => "no resource count in its output".to_string(),
        };
        self.push_run(&mut outcome.changes, ctx, detail, &real.events);
        outcome.stdout = Some(real.stdout);
        outcome.stderr = Some(real.stderr);
        outcome.comment = (!comments.is_empty()).then(|| comments.join("; "));
        Ok(outcome)
    }

    fn push_run(&self, changes: &mut Vec<Change>, ctx: &Ctx, detail: String, events: &[Event]) {
        changes.push(Change::new(Action::Run, self.run.describe(), detail));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(key: &str, value: Option<&str>) -> ToolOption {
        ToolOption { key: key.into(), value: value.map(str::to_string) }
    }

    #[test]
    fn client_command_line() {
        let run = Run::Client {
            server: "https://chef.example.com/organizations/shop".into(),
            client_key: Some("/etc/chef/client.pem".into()),
            config: Some("/etc/chef/client.rb".into()),
        };
        let options = [opt("log_level", Some("warn")), opt("chef-license", Some("accept")), opt("fips", Some("false"))];
        assert_eq!(
            command_line(&run, &options, false),
            [
                "--once",
                "--no-color",
                "--force-formatter",
                "--format",
                "doc",
                "--server",
                "https://chef.example.com/organizations/shop",
                "--client_key",
                "/etc/chef/client.pem",
                "--config",
                "/etc/chef/client.rb",
                "--log_level",
                "warn",
                "--chef-license",
                "accept",
                "--no-fips"
            ]
        );
        let bare = Run::Client { server: "https://chef".into(), client_key: None, config: None };
        assert_eq!(
            command_line(&bare, &[], true),
            ["--once", "--no-color", "--force-formatter", "--format", "doc", "--why-run", "--server", "https://chef"]
        );
    }

    #[test]
    fn solo_command_line() {
        let run = Run::Solo {
            config: Some("/etc/chef/solo.rb".into()),
            override_runlist: Some("recipe[web::default],recipe[db]".into()),
            recipe_url: Some("http://example.com/cookbooks.tgz".into()),
        };
        assert_eq!(
            command_line(&run, &[opt("group", Some("root"))], true),
            [
                "--no-color",
                "--force-formatter",
                "--format",
                "doc",
                "--why-run",
                "--config",
                "/etc/chef/solo.rb",
                "--override-runlist",
                "recipe[web::default],recipe[db]",
                "--recipe-url",
                "http://example.com/cookbooks.tgz",
                "--group",
                "root"
            ]
        );
        let bare = Run::Solo { config: None, override_runlist: None, recipe_url: None };
        assert_eq!(command_line(&bare, &[], false), ["--no-color", "--force-formatter", "--format", "doc"]);
    }

    /// The doc formatter's output, as Chef Infra Client 18 prints it.
    const REAL: &str = "Starting Chef Infra Client, version 18.2.7
resolving cookbooks for run list: [\"web\"]
Synchronizing cookbooks:
  - web (0.1.0)
Converging 3 resources
Recipe: web::default
  * file[/etc/motd] action create
    - update content in file /etc/motd from 0a1b2c to 3d4e5f
    --- /etc/motd\t2026-11-25 18:00:00
    +++ /etc/.chef-motd\t2026-11-25 18:00:01
  * package[nginx] action install (up to date)
  * service[nginx] action restart
    - restart service service[nginx]

Running handlers:
Running handlers complete
Infra Phase complete, 2/3 resources updated in 02 seconds
";

    #[test]
    fn counts_and_events_of_a_real_run() {
        assert_eq!(updated_count(REAL), Some((2, 3)));
        assert_eq!(
            events(REAL),
            [
                Event {
                    resource: "file[/etc/motd] action create".into(),
                    message: "update content in file /etc/motd from 0a1b2c to 3d4e5f".into()
                },
                Event {
                    resource: "service[nginx] action restart".into(),
                    message: "restart service service[nginx]".into()
                },
            ]
        );
    }

    #[test]
    fn counts_of_why_run_and_older_chefs() {
        let why = "  * file[/etc/motd] action create\n    - Would update content in file /etc/motd\n\
                   Chef Infra Client finished, 1/3 resources would have been updated\n";
        assert_eq!(updated_count(why), Some((1, 3)));
        assert_eq!(events(why)[0].message, "Would update content in file /etc/motd");
        assert_eq!(updated_count("Chef Client finished, 0/12 resources updated in 4.2 seconds\n"), Some((0, 12)));
        assert_eq!(updated_count("Chef Client failed. 0 resources updated\n"), None);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_meaning(0), Ok(None));
        assert!(exit_meaning(35).unwrap().is_some());
        assert!(exit_meaning(37).unwrap().is_some());
        assert!(exit_meaning(1).is_err());
        assert!(exit_meaning(213).is_err());
    }
}

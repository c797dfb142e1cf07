//! `common.pip.package` — Python packages installed (any version, a given one, the newest) or removed, with pip.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: package → wanted | required | the original's `[{"key": pkg, "value": v}]` list or a plain mapping; see below |
//! | `virtualenv` | absolute path | — | ours: install into this virtualenv (its `bin/pip`); without it, the system's Python (`python3 -m pip`) |
//! | `index-url` | URL | pip's configuration | ours: the package index (`pip --index-url`) |
//! | `find-links` | list of paths or URLs | — | ours: directories (or pages) of wheels and source archives to install from too (`pip --find-links`) |
//! | `no-index` | bool | `false` | ours: never ask an index, only `find-links` (`pip --no-index`): offline installs |
//! | `break-system-packages` | bool | `false` | ours: install into a system Python that the distribution manages (PEP 668), see below |
//! | `install_options` | — | — | the original's; accepted and ignored, with a warning |
//!
//! What each package may be given:
//!
//! | value | means |
//! |---|---|
//! | empty or absent | installed, any version (the index's newest when it must be installed) |
//! | a version, e.g. `2.31.0` | installed at exactly that version (`pkg==2.31.0`; upgraded or downgraded to it) |
//! | `latest` | installed at the newest version the index (or `find-links`) offers, upgraded when a newer one appears |
//! | `removed` | not installed (`pip uninstall`) |
//!
//! Names are compared as PEP 503 says (case, `-`, `_` and `.` do not matter: `Foo_Bar` is `foo-bar`),
//! versions as PEP 440 says for equality (`1.0` is `1.0.0`). "Already fine" means `pip list` reports
//! every package as wanted and the index offers nothing newer for the `latest` ones. `check` reads
//! the installed packages with `pip list --format=json` and asks pip what it would install with
//! `pip install --dry-run --report` (so the dependencies pip would add or change show too); `--test`
//! lists each change: `create pkg (install 1.0)`, `update pkg (upgrade 1.0 -> 1.1)`, `update pkg
//! (downgrade 1.1 -> 1.0)`, `remove pkg (uninstall 1.0)`. `apply` installs everything the state needs
//! in one `pip install` call (then one `pip uninstall -y`), and reads `pip list` again to verify: a
//! package that did not reach its wanted state fails the state.
//!
//! Without `virtualenv`, pip runs as `python3 -m pip` for the system's Python. Debian 12 and Ubuntu
//! 23.04 mark that Python "externally managed" (PEP 668: a file `EXTERNALLY-MANAGED` next to its
//! standard library), because pip would overwrite files of Debian packages: there the state fails
//! and says so, unless `break-system-packages: true` (pip's `--break-system-packages`). Prefer a
//! virtualenv (`common.virtualenv`) or the distribution's package (`python3-requests` with
//! `linux.apt.package`). The original installed `python-pip` first and hid a failure of that step
//! when the main step succeeded; here a missing pip fails the state, naming it. (Under `--test`, a
//! virtualenv that an earlier state of the same recipe would create is not there yet: the plan fails.)
//!
//! ```yaml
//! - id: app-packages
//!   module: common.pip.package
//!   parameter:
//!     virtualenv: /opt/app/venv
//!     name: { requests: "2.31.0", gunicorn: latest, flask: "", nose: removed }
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, Pos, State};

use super::linux_file::check_absolute;
use super::packages::{read_names, Names};
use crate::process::{self, Limits, Output, Spec, Tail, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const PIP_HINT: &str = "install the Debian package `python3-pip` (an earlier `linux.apt.package` state can), or give \
                        `virtualenv:` a virtualenv made by a `common.virtualenv` state";
const VENV_PIP_HINT: &str = "this virtualenv has no pip: create it again without `--without-pip` (a \
                             `common.virtualenv` state installs pip into it)";
const PYTHON_HINT: &str = "install the Debian package `python3` (an earlier `linux.apt.package` state can)";

/// Output kept from a query: `pip list` and the install report are parsed whole.
const QUERY_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// A validated `common.pip.package`.
#[derive(Debug, Clone)]
pub struct PipPackage {
    /// In recipe order, with the names as the recipe gives them.
    pub packages: Vec<(String, Wanted)>,
    pub virtualenv: Option<PathBuf>,
    pub index_url: Option<String>,
    pub find_links: Vec<String>,
    pub no_index: bool,
    pub break_system_packages: bool,
}

/// What one package should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Installed,
    Version(String),
    Latest,
    Removed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Install,
    Upgrade,
    Downgrade,
    Remove,
}

/// One change to make, as `check` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    verb: Verb,
    /// The name as pip reports it.
    package: String,
    from: Option<String>,
    to: Option<String>,
}

impl Op {
    fn change(&self) -> Change {
        let (from, to) = (self.from.as_deref().unwrap_or(""), self.to.as_deref().unwrap_or(""));
        let (action, detail) = match self.verb {
            Verb::Install => (Action::Create, format!("install {to}")),
            Verb::Upgrade => (Action::Update, format!("upgrade {from} -> {to}")),
            Verb::Downgrade => (Action::Update, format!("downgrade {from} -> {to}")),
            Verb::Remove => (Action::Remove, format!("uninstall {from}")),
        };
        Change::new(action, &self.package, detail)
    }
}

/// What `plan` found: the changes, and the requirements `pip install` gets for them.
struct Planned {
    ops: Vec<Op>,
    specs: Vec<String>,
    upgrade: bool,
}

impl PipPackage {
    pub fn from_params(state: &State) -> Result<(PipPackage, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let packages = read_names(
            &mut p,
            &Names {
                noun: "package",
                example: "give the packages, e.g. `name: { requests: \"2.31.0\", flask: latest }`",
                problem: &|name| {
                    (!is_package_name(name)).then(|| {
                        (
                            format!("`{name}` is not a Python package name"),
                            "names are letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, e.g. `requests`; give the version as the value, not `pkg==1.0`".into(),
                        )
                    })
                },
                canonical: &normalize,
                version_in_key: false,
            },
            parse_wanted,
        );
        let venv_pos = p.node("virtualenv").and_then(|n| n.pos);
        let virtualenv = p
            .string("virtualenv")
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| check_absolute(&mut p, "virtualenv", venv_pos, v.trim_end_matches('/')));
        let index_pos = p.node("index-url").and_then(|n| n.pos);
        let index_url = p.string("index-url").filter(|u| !u.trim().is_empty());
        if let Some(url) = &index_url {
            if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file://")) {
                p.report(
                    Kind::BadValue,
                    "index-url",
                    index_pos,
                    format!("`{url}` is not an index URL"),
                    Some("give the index's URL, e.g. `https://pypi.org/simple`".into()),
                );
            }
        }
        let find_links: Vec<String> =
            p.string_list("find-links").unwrap_or_default().into_iter().filter(|l| !l.trim().is_empty()).collect();
        let links_pos = p.node("find-links").and_then(|n| n.pos);
        for (i, link) in find_links.iter().enumerate() {
            if !(link.starts_with('/') || link.contains("://")) {
                p.report(
                    Kind::BadValue,
                    &format!("find-links[{i}]"),
                    links_pos,
                    format!("`{link}` is neither an absolute path nor a URL"),
                    Some("give a directory of wheels, e.g. `/srv/wheels`, or a URL".into()),
                );
            }
        }
        let no_index = p.bool("no-index").unwrap_or(false);
        if no_index && find_links.is_empty() {
            let pos = p.node("no-index").and_then(|n| n.pos);
            p.report(
                Kind::BadValue,
                "no-index",
                pos,
                "`no-index: true` without `find-links` leaves pip nowhere to install from",
                Some("give the directory of wheels in `find-links`".into()),
            );
        }
        let break_system_packages = p.bool("break-system-packages").unwrap_or(false);
        let warnings = p.finish(
            &["name", "virtualenv", "index-url", "find-links", "no-index", "break-system-packages"],
            &["install_options"],
        )?;
        Ok((PipPackage { packages, virtualenv, index_url, find_links, no_index, break_system_packages }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let planned = self.plan(ctx).await?;
        Ok(Plan { changes: planned.ops.iter().map(Op::change).collect(), diff: None })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let planned = self.plan(ctx).await?;
        // Keep to the packages the plan named (what `--test` showed is what runs).
        let ops: Vec<Op> = planned
            .ops
            .into_iter()
            .filter(|op| plan.changes.iter().any(|c| normalize(&c.target) == normalize(&op.package)))
            .collect();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut keep = |output: Output| {
            stdout.extend_from_slice(&output.stdout.bytes);
            stderr.extend_from_slice(&output.stderr.bytes);
        };
        if ops.iter().any(|op| op.verb != Verb::Remove) {
            let mut args = vec!["install".to_string(), "--quiet".into()];
            if planned.upgrade {
                args.push("--upgrade".into());
            }
            args.extend(self.index_args());
            args.extend(self.system_args());
            args.extend(planned.specs.iter().cloned());
            keep(self.pip(ctx, &args).await?);
        }
        let removals: Vec<String> =
            ops.iter().filter(|op| op.verb == Verb::Remove).map(|op| op.package.clone()).collect();
        if !removals.is_empty() {
            let mut args = vec!["uninstall".to_string(), "--yes".into(), "--quiet".into()];
            args.extend(self.system_args());
            args.extend(removals);
            keep(self.pip(ctx, &args).await?);
        }
        self.verify(ctx, &ops).await?;
        let max = ctx.round.max_output_bytes;
        Ok(Outcome {
            changes: ops.iter().map(Op::change).collect(),
            stdout: Some(Tail::from_bytes(stdout, max)),
            stderr: Some(Tail::from_bytes(stderr, max)),
            ..Outcome::default()
        })
    }

    /// What must change: named packages in recipe order, then the dependencies pip adds, then removals.
    async fn plan(&self, ctx: &Ctx) -> Result<Planned, StateError> {
        if self.virtualenv.is_none() && !self.break_system_packages {
            self.refuse_externally_managed(ctx).await?;
        }
        let installed = self.installed(ctx).await?;
        let mut specs = Vec::new();
        let mut upgrade = false;
        let mut removals = Vec::new();
        for (name, wanted) in &self.packages {
            let now = installed.get(&normalize(name));
            match wanted {
                Wanted::Installed if now.is_some() => {}
                Wanted::Installed => specs.push(name.clone()),
                Wanted::Version(v) if now.is_some_and(|(_, have)| compare_versions(have, v).is_eq()) => {}
                Wanted::Version(v) => specs.push(format!("{name}=={v}")),
                Wanted::Latest => {
                    upgrade = true;
                    specs.push(name.clone());
                }
                Wanted::Removed => {
                    if let Some((shown, version)) = now {
                        removals.push(Op {
                            verb: Verb::Remove,
                            package: shown.clone(),
                            from: Some(version.clone()),
                            to: None,
                        });
                    }
                }
            }
        }
        let mut ops = Vec::new();
        if !specs.is_empty() {
            for (name, version) in self.dry_run(ctx, &specs, upgrade).await? {
                let from = installed.get(&normalize(&name)).map(|(_, v)| v.clone());
                let verb = match &from {
                    None => Verb::Install,
                    Some(have) => match compare_versions(have, &version) {
                        Ordering::Less => Verb::Upgrade,
                        Ordering::Greater => Verb::Downgrade,
                        // pip reinstalls nothing at the same version (it may rebuild a local archive).
                        Ordering::Equal => continue,
                    },
                };
                if let Some((wanted_removed, _)) =
                    self.packages.iter().find(|(n, w)| *w == Wanted::Removed && normalize(n) == normalize(&name))
                {
                    return Err(StateError::Package {
                        package: wanted_removed.clone(),
                        problem: "is wanted `removed`, but another package of this state requires it".into(),
                    });
                }
                ops.push(Op { verb, package: name, from, to: Some(version) });
            }
        }
        let order = |op: &Op| {
            self.packages.iter().position(|(n, _)| normalize(n) == normalize(&op.package)).unwrap_or(usize::MAX)
        };
        ops.sort_by_key(order);
        // Only the requirements whose package changes go to `pip install`.
        let specs = specs
            .into_iter()
            .filter(|spec| {
                let name = spec.split("==").next().unwrap_or(spec);
                ops.iter().any(|op| normalize(&op.package) == normalize(name))
            })
            .collect();
        ops.extend(removals);
        Ok(Planned { ops, specs, upgrade })
    }

    /// Reads `pip list` again: every package of `ops` must have reached its wanted state.
    async fn verify(&self, ctx: &Ctx, ops: &[Op]) -> Result<(), StateError> {
        let installed = self.installed(ctx).await?;
        for op in ops {
            let now = installed.get(&normalize(&op.package)).map(|(_, v)| v.as_str());
            let problem = match (op.verb, now, &op.to) {
                (Verb::Remove, Some(v), _) => Some(format!("is still installed ({v}) after `pip uninstall`")),
                (Verb::Remove, None, _) => None,
                (_, None, Some(to)) => Some(format!("is not installed after `pip install` (wanted {to})")),
                (_, Some(v), Some(to)) if !compare_versions(v, to).is_eq() => {
                    Some(format!("is at {v} after `pip install`, not at {to}"))
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(StateError::Package { package: op.package.clone(), problem });
            }
        }
        Ok(())
    }

    /// Installed packages: normalised name → (name as pip shows it, version).
    async fn installed(&self, ctx: &Ctx) -> Result<HashMap<String, (String, String)>, StateError> {
        let args = ["list".to_string(), "--format=json".into()];
        let output = self.pip(ctx, &args).await?;
        let parsed: serde_json::Value =
            serde_json::from_slice(&output.stdout.bytes).map_err(|e| StateError::Conflict {
                path: self.pip_program(),
                problem: format!("printed no JSON for `pip list --format=json` ({e}); pip 9 or newer is needed"),
            })?;
        let mut out = HashMap::new();
        for item in parsed.as_array().into_iter().flatten() {
            if let (Some(name), Some(version)) = (item["name"].as_str(), item["version"].as_str()) {
                out.insert(normalize(name), (name.to_string(), version.to_string()));
            }
        }
        Ok(out)
    }

    /// What `pip install SPECS` would install: (name, version) of each distribution, from pip's report.
    async fn dry_run(&self, ctx: &Ctx, specs: &[String], upgrade: bool) -> Result<Vec<(String, String)>, StateError> {
        let mut args = vec!["install".to_string(), "--dry-run".into(), "--quiet".into(), "--report".into(), "-".into()];
        if upgrade {
            args.push("--upgrade".into());
        }
        args.extend(self.index_args());
        args.extend(self.system_args());
        args.extend(specs.iter().cloned());
        let output = self.pip(ctx, &args).await?;
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout.bytes).map_err(|e| StateError::Package {
                package: specs.join(", "),
                problem: format!(
                    "cannot be planned: `pip install --dry-run --report -` printed no report ({e}); pip 22.2 or newer \
                     is needed (upgrade pip in the virtualenv)"
                ),
            })?;
        let mut out = Vec::new();
        for item in report["install"].as_array().into_iter().flatten() {
            let meta = &item["metadata"];
            if let (Some(name), Some(version)) = (meta["name"].as_str(), meta["version"].as_str()) {
                out.push((name.to_string(), version.to_string()));
            }
        }
        Ok(out)
    }

    /// Fails when the system Python is marked externally managed (PEP 668).
    async fn refuse_externally_managed(&self, ctx: &Ctx) -> Result<(), StateError> {
        let script = "import os, sys, sysconfig\nmarker = os.path.join(sysconfig.get_path('stdlib'), \
                      'EXTERNALLY-MANAGED')\nif sys.prefix == sys.base_prefix and os.path.isfile(marker):\n    \
                      print(marker)\n";
        let spec = Spec { program: "python3".into(), args: vec!["-c".into(), script.into()], ..Spec::default() };
        let output = process::run_spec(ctx, &spec, PYTHON_HINT).await?;
        let marker = String::from_utf8_lossy(&output.stdout.bytes).trim().to_string();
        if marker.is_empty() {
            return Ok(());
        }
        Err(StateError::Conflict {
            path: PathBuf::from(marker),
            problem: "marks the system Python as managed by the distribution (PEP 668), so pip must not install into \
                      it; give `virtualenv: /opt/app/venv` (made by a `common.virtualenv` state), install the \
                      distribution's package (e.g. `python3-requests`) with `linux.apt.package`, or set \
                      `break-system-packages: true`"
                .into(),
        })
    }

    fn index_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(url) = &self.index_url {
            args.push("--index-url".to_string());
            args.push(url.clone());
        }
        if self.no_index {
            args.push("--no-index".into());
        }
        for link in &self.find_links {
            args.push("--find-links".into());
            args.push(link.clone());
        }
        args
    }

    fn system_args(&self) -> Vec<String> {
        if self.virtualenv.is_none() && self.break_system_packages {
            vec!["--break-system-packages".into()]
        } else {
            Vec::new()
        }
    }

    /// The pip this state runs, for messages.
    fn pip_program(&self) -> PathBuf {
        match &self.virtualenv {
            Some(venv) => venv.join("bin/pip"),
            None => PathBuf::from("python3 -m pip"),
        }
    }

    /// Runs pip (the virtualenv's, else `python3 -m pip`) with ARGS; pip's known failures become clear errors.
    async fn pip(&self, ctx: &Ctx, args: &[String]) -> Result<Output, StateError> {
        let (program, mut full, hint) = match &self.virtualenv {
            Some(venv) => {
                if !venv.join("bin/python").exists() {
                    return Err(StateError::Conflict {
                        path: venv.clone(),
                        problem: "is not a virtualenv (it has no `bin/python`); create it first, e.g. with a \
                                  `common.virtualenv` state before this one"
                            .into(),
                    });
                }
                (venv.join("bin/pip").display().to_string(), Vec::new(), VENV_PIP_HINT)
            }
            None => ("python3".to_string(), vec!["-m".to_string(), "pip".into()], PYTHON_HINT),
        };
        full.extend(["--disable-pip-version-check".to_string(), "--no-input".into(), "--no-color".into()]);
        full.extend(args.iter().cloned());
        let spec = Spec {
            program: program.clone(),
            args: full,
            env: vec![("PYTHONIOENCODING".into(), "utf-8".into()), ("LC_ALL".into(), "C.UTF-8".into())],
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
                return Err(StateError::MissingTool { tool: program, hint: hint.into() })
            }
            Err(source) => return Err(StateError::Spawn { program, source }),
        };
        match output.termination {
            Termination::Exited(0) => Ok(output),
            Termination::Cancelled => Err(StateError::Cancelled),
            termination => {
                let text = output.stderr.text();
                if self.virtualenv.is_none() && text.contains("No module named pip") {
                    return Err(StateError::MissingTool {
                        tool: "pip (`python3 -m pip`)".into(),
                        hint: PIP_HINT.into(),
                    });
                }
                if let Some(error) = known_failure(&text) {
                    return Err(error);
                }
                let max = ctx.round.max_output_bytes;
                Err(StateError::Command {
                    termination,
                    stdout: output.stdout.capped(max),
                    stderr: output.stderr.capped(max),
                })
            }
        }
    }
}

/// pip's messages for a package or version no index offers, as a [`StateError::Package`].
fn known_failure(stderr: &str) -> Option<StateError> {
    let line = stderr.lines().find_map(|l| l.trim().strip_prefix("ERROR: No matching distribution found for "))?;
    let requirement = line.trim();
    let package = requirement.split("==").next().unwrap_or(requirement).trim().to_string();
    let versions = stderr
        .lines()
        .find_map(|l| l.split_once("(from versions: ").map(|(_, rest)| rest.trim_end_matches(')').to_string()));
    let problem = match (requirement.split_once("=="), versions.as_deref()) {
        (_, Some("none")) | (_, None) => "is not offered by the package index (or `find-links`)".to_string(),
        (Some((_, version)), Some(versions)) => {
            format!("has no version {version} in the package index (available: {versions})")
        }
        (None, Some(versions)) => format!("cannot be installed (available: {versions})"),
    };
    Some(StateError::Package { package, problem })
}

/// Reads one package's wanted state.
fn parse_wanted(p: &mut ParamReader<'_>, path: &str, pos: Option<Pos>, value: &str) -> Option<Wanted> {
    let value = value.trim();
    match value {
        "" => return Some(Wanted::Installed),
        "latest" => return Some(Wanted::Latest),
        "removed" => return Some(Wanted::Removed),
        _ => {}
    }
    let version = value.strip_prefix("==").unwrap_or(value);
    if is_version(version) {
        return Some(Wanted::Version(version.to_string()));
    }
    p.report(
        Kind::BadValue,
        path,
        pos,
        format!("`{value}` is not a version, `latest` or `removed`"),
        Some("leave it empty for any version, or give e.g. `2.31.0`, `latest`, `removed`".into()),
    );
    None
}

/// PEP 508 names: letters, digits, `-`, `_`, `.`; starting and ending with a letter or digit.
fn is_package_name(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// PEP 440 versions, loosely: a digit (or `v`) first, then letters, digits and `.!+-_`.
fn is_version(value: &str) -> bool {
    let rest = value.strip_prefix('v').unwrap_or(value);
    rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".!+-_".contains(c))
}

/// PEP 503 normalisation: lowercase, and each run of `-`, `_`, `.` becomes one `-`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if "-_.".contains(c) {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// Orders versions by their segments: numbers numerically (missing ones are 0, so `1.0` equals
/// `1.0.0`), other segments as text; enough for the direction of a change and PEP 440 equality
/// of release versions.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<String> {
        v.trim_start_matches('v')
            .to_ascii_lowercase()
            .split(|c: char| ".-_+!".contains(c))
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).map(String::as_str).unwrap_or("0");
        let y = b.get(i).map(String::as_str).unwrap_or("0");
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_normalisation() {
        for ok in ["requests", "Flask", "zope.interface", "opsagent_test-foo", "a"] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "foo bar", "foo==1.0", "foo[extra]"] {
            assert!(!is_package_name(bad), "{bad}");
        }
        assert_eq!(normalize("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize("opsagent_test-foo"), "opsagent-test-foo");
        for ok in ["1.0", "2.31.0", "1.0rc1", "1!2.0", "1.0.post1", "1.0+local"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in [">=1.0", "1.0 beta", "lastest"] {
            assert!(!is_version(bad), "{bad}");
        }
        assert!(compare_versions("1.0", "1.0.0").is_eq());
        assert!(compare_versions("1.0", "1.1").is_lt());
        assert!(compare_versions("1.10", "1.9").is_gt());
    }

    #[test]
    fn changes_read_like_pip() {
        let op = |verb, from: Option<&str>, to: Option<&str>| Op {
            verb,
            package: "foo".into(),
            from: from.map(String::from),
            to: to.map(String::from),
        };
        assert_eq!(op(Verb::Install, None, Some("1.0")).change().to_string(), "create foo (install 1.0)");
        assert_eq!(op(Verb::Upgrade, Some("1.0"), Some("1.1")).change().to_string(), "update foo (upgrade 1.0 -> 1.1)");
        assert_eq!(op(Verb::Remove, Some("1.0"), None).change().to_string(), "remove foo (uninstall 1.0)");
    }

    #[test]
    fn pip_failures_are_named() {
        let stderr = "ERROR: Could not find a version that satisfies the requirement opsagent-test-nope (from versions: none)\nERROR: No matching distribution found for opsagent-test-nope\n";
        let error = known_failure(stderr).unwrap().to_string();
        assert_eq!(error, "package `opsagent-test-nope` is not offered by the package index (or `find-links`)");
        let stderr = "ERROR: Could not find a version that satisfies the requirement foo==9 (from versions: 1.0, 1.1)\nERROR: No matching distribution found for foo==9\n";
        let error = known_failure(stderr).unwrap().to_string();
        assert_eq!(error, "package `foo` has no version 9 in the package index (available: 1.0, 1.1)");
    }
}

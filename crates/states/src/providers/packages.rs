//! The engine of the package modules (apt, yum, pip, npm, gem): one plan → operations → apply →
//! verify sequence, with a [`PackageManager`] per tool for what only the tool knows.
//!
//! How a state runs, whatever the tool:
//! 1. [`plan`] reads what is installed ([`PackageManager::installed`]), reads each package file
//!    the recipe names ([`PackageManager::file_identity`]), asks the tool what it would install
//!    for the rest ([`PackageManager::resolve`]), and returns one [`Op`] per package to change:
//!    installs first (recipe order), then removals. No operation means "already fine"; `--test`
//!    stops here ([`check`]), so planning never changes the machine (a manager may refresh its
//!    package lists, which changes no package).
//! 2. [`apply`] plans again, keeps to the packages the check showed, runs every install in one
//!    batch ([`PackageManager::install`]) then every removal ([`PackageManager::remove`]), and
//!    asks the tool again: a package that did not reach its wanted state fails the state.
//!
//! Every manager reports the same way ([`Op::change`]): `create pkg (install 1.0)`, `update pkg
//! (upgrade 1.0 -> 1.1)`, `update pkg (downgrade 1.1 -> 1.0)`, `update pkg (install 1.1 beside
//! 1.0)` (gems), `remove pkg (remove 1.0)` (the tool's own word: `uninstall` for pip, npm, gem),
//! `remove pkg (purge config files)`, with ` from FILE` for a package file.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use crate::fetch::Source;
use crate::process::{Output, Tail};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// What one package should be, as the recipe gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Installed, any version.
    Installed,
    /// Installed at this version (as written; the manager decides what matches it).
    Version(String),
    /// Installed at the newest version the tool offers.
    Latest,
    /// Not installed.
    Removed,
    /// Not installed, and no configuration files left (apt).
    Purged,
    /// Installed from this package file (a path or a URL).
    File(Source),
}

/// What the tool knows of one package now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The name as the tool shows it (pip shows a project's own spelling).
    pub name: String,
    /// The versions installed: at most one, except for tools that keep several side by side.
    pub versions: Vec<String>,
    /// Left by an interrupted installation, at this version: not installed, but to be removed
    /// (dpkg's `half-installed`, `unpacked`, `half-configured`).
    pub broken: Option<String>,
    /// Left by a removal: configuration files that only a purge removes (dpkg's `config-files`).
    pub config_files: bool,
}

impl Installed {
    /// Nothing installed, nothing left behind.
    pub fn absent(name: &str) -> Installed {
        Installed { name: name.to_string(), ..Installed::default() }
    }

    /// Installed at `versions`.
    pub fn at(name: &str, versions: Vec<String>) -> Installed {
        Installed { name: name.to_string(), versions, ..Installed::default() }
    }

    /// The installed version, or (after an interrupted installation) the one dpkg still has.
    fn removable(&self) -> Option<String> {
        match (&self.versions[..], &self.broken) {
            ([], None) => None,
            ([], Some(broken)) => Some(broken.clone()),
            (versions, _) => Some(versions.join(", ")),
        }
    }
}

/// A package whose fate depends on what the tool offers ([`PackageManager::resolve`]).
#[derive(Debug)]
pub struct Request<'a> {
    pub name: &'a str,
    /// [`Wanted::Installed`] (and not installed), [`Wanted::Version`] (not installed at it) or
    /// [`Wanted::Latest`].
    pub wanted: &'a Wanted,
    pub now: &'a Installed,
}

/// What the tool would install for a request (or, for pip, as a dependency of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub package: String,
    pub version: String,
}

/// How versions of one package live together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// One at a time: installing another version upgrades or downgrades (apt, dnf, pip, npm).
    OneAtATime,
    /// Side by side: installing another version keeps the others (gem).
    SideBySide,
}

/// What `latest` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    /// The newest version offered: a newer one installed is kept (apt, dnf, pip, gem).
    Newest,
    /// A tag the repository moves (npm's `latest` dist-tag), followed down as well as up.
    Tag,
}

/// What one package manager does for the engine. Queries must not change the machine.
pub trait PackageManager: Sync {
    /// The packages of the state, in recipe order.
    fn packages(&self) -> &[(String, Wanted)];

    /// The program named in reports: `apt-get`, `dnf`, `pip`, `npm`, `gem`.
    fn program(&self) -> String;

    /// The tool's word for a removal, in reports: `remove` or `uninstall`.
    fn remove_word(&self) -> &'static str {
        "remove"
    }

    /// What messages call a package: `package`, `gem`.
    fn noun(&self) -> &'static str {
        "package"
    }

    /// Two names are one package when these agree (pip folds case and `-_.`).
    fn canonical(&self, name: &str) -> String {
        name.to_string()
    }

    /// Whether a package file holding `found` may be the entry `entry` (apt: `name:arch` holds `name`).
    fn file_holds(&self, entry: &str, found: &str) -> bool {
        entry == found
    }

    /// The tool's version order.
    fn compare(&self, a: &str, b: &str) -> Ordering;

    /// Whether the installed version `have` is the version a recipe asks for.
    fn matches(&self, have: &str, wanted: &str) -> bool {
        self.compare(have, wanted).is_eq()
    }

    fn versions(&self) -> Versions {
        Versions::OneAtATime
    }

    fn latest(&self) -> Latest {
        Latest::Newest
    }

    /// The largest package file downloaded.
    fn max_file_bytes(&self) -> u64 {
        1 << 30
    }

    /// What is installed of `names`, by [`canonical`](PackageManager::canonical) name; a name
    /// missing from the result is absent.
    fn installed(
        &self,
        ctx: &Ctx,
        names: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, Installed>, StateError>> + Send;

    /// The package name and version in a package file.
    fn file_identity(
        &self,
        ctx: &Ctx,
        file: &Path,
    ) -> impl Future<Output = Result<(String, String), StateError>> + Send;

    /// What the tool would install for `requests` (each request at most once, a dependency the
    /// tool adds too). A package or version it does not offer is an error naming it. Called
    /// whenever something is to be installed, even from files alone (`requests` is then empty),
    /// so that a manager may refresh its package lists first.
    fn resolve(
        &self,
        ctx: &Ctx,
        requests: &[Request<'_>],
    ) -> impl Future<Output = Result<Vec<Resolved>, StateError>> + Send;

    /// Installs, upgrades and downgrades `ops`, in as few commands as the tool allows.
    fn install(&self, ctx: &Ctx, ops: &[&Op]) -> impl Future<Output = Result<Vec<Output>, StateError>> + Send;

    /// Removes (and purges) `ops`, in as few commands as the tool allows.
    fn remove(&self, ctx: &Ctx, ops: &[&Op]) -> impl Future<Output = Result<Vec<Output>, StateError>> + Send;
}

/// What is done to one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Install,
    Upgrade,
    Downgrade,
    /// Another version installed next to the ones there (gem).
    InstallBeside,
    Remove,
    Purge,
}

/// One change to make, as the plan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub verb: Verb,
    /// The name as the tool shows it.
    pub package: String,
    /// The installed version(s) (upgrade, downgrade, beside, remove, purge).
    pub from: Option<String>,
    /// The version to install.
    pub to: Option<String>,
    /// The package file to install it from, and how the report shows it (the path or the URL).
    pub file: Option<(PathBuf, String)>,
}

impl Op {
    pub fn new(verb: Verb, package: &str, from: Option<&str>, to: Option<&str>) -> Op {
        Op {
            verb,
            package: package.to_string(),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            file: None,
        }
    }

    /// The report line: the generic action on the package, with the tool's verb and the
    /// versions in the detail, e.g. `update bar (upgrade 1.0 -> 1.1)`.
    pub fn change(&self, remove_word: &str) -> Change {
        let (from, to) = (self.from.as_deref().unwrap_or(""), self.to.as_deref().unwrap_or(""));
        let (action, mut detail) = match self.verb {
            Verb::Install => (Action::Create, format!("install {to}")),
            Verb::Upgrade => (Action::Update, format!("upgrade {from} -> {to}")),
            Verb::Downgrade => (Action::Update, format!("downgrade {from} -> {to}")),
            Verb::InstallBeside => (Action::Update, format!("install {to} beside {from}")),
            Verb::Remove => (Action::Remove, format!("{remove_word} {from}")),
            Verb::Purge if self.from.is_none() => (Action::Remove, "purge config files".to_string()),
            Verb::Purge => (Action::Remove, format!("purge {from}")),
        };
        if let Some((_, shown)) = &self.file {
            detail.push_str(&format!(" from {shown}"));
        }
        Change::new(action, &self.package, detail.trim_end())
    }

    pub fn installs(&self) -> bool {
        !matches!(self.verb, Verb::Remove | Verb::Purge)
    }

    /// What the tool installs: the file, or the package at its planned version, written as the
    /// tool writes it (`joiner`: `=` for apt, `-` for dnf, `==` for pip, `@` for npm, `:` for gem).
    pub fn install_arg(&self, joiner: &str) -> String {
        match (&self.file, &self.to) {
            (Some((file, _)), _) => file.display().to_string(),
            (None, Some(version)) => format!("{}{joiner}{version}", self.package),
            (None, None) => self.package.clone(),
        }
    }
}

/// `check` of every package module: the plan, as changes.
pub async fn check(manager: &impl PackageManager, ctx: &Ctx) -> Result<Plan, StateError> {
    let ops = plan(manager, ctx).await?;
    Ok(Plan { changes: ops.iter().map(|op| op.change(manager.remove_word())).collect(), diff: None })
}

/// `apply` of every package module: what `plan` (the check) showed, then a verification.
pub async fn apply(manager: &impl PackageManager, ctx: &Ctx, plan_shown: Plan) -> Result<Outcome, StateError> {
    // Planning again only re-reads (lists refreshed by `check` are not refreshed twice in a
    // round), and keeps to the packages the check named: what `--test` showed is what runs.
    let shown: Vec<String> = plan_shown.changes.iter().map(|c| manager.canonical(&c.target)).collect();
    let ops: Vec<Op> =
        plan(manager, ctx).await?.into_iter().filter(|op| shown.contains(&manager.canonical(&op.package))).collect();
    let mut outputs = Vec::new();
    let installs: Vec<&Op> = ops.iter().filter(|op| op.installs()).collect();
    if !installs.is_empty() {
        outputs.extend(manager.install(ctx, &installs).await?);
    }
    let removals: Vec<&Op> = ops.iter().filter(|op| !op.installs()).collect();
    if !removals.is_empty() {
        outputs.extend(manager.remove(ctx, &removals).await?);
    }
    verify(manager, ctx, &ops).await?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for output in outputs {
        stdout.extend_from_slice(&output.stdout.bytes);
        stderr.extend_from_slice(&output.stderr.bytes);
    }
    let max = ctx.round.max_output_bytes;
    Ok(Outcome {
        changes: ops.iter().map(|op| op.change(manager.remove_word())).collect(),
        stdout: Some(Tail::from_bytes(stdout, max)),
        stderr: Some(Tail::from_bytes(stderr, max)),
        ..Outcome::default()
    })
}

/// What must change, package by package: installs in recipe order (a dependency the tool adds
/// after them), then removals in recipe order.
pub async fn plan(manager: &impl PackageManager, ctx: &Ctx) -> Result<Vec<Op>, StateError> {
    let packages = manager.packages();
    // The package in each file, checked against the name the recipe gives it.
    let mut files: HashMap<&str, ((PathBuf, String), String)> = HashMap::new();
    for (name, wanted) in packages {
        if let Wanted::File(source) = wanted {
            let file = source.local(ctx, None, manager.max_file_bytes()).await?;
            let (found, version) = manager.file_identity(ctx, &file).await?;
            if !manager.file_holds(name, &found) {
                let from = match source {
                    Source::Remote(_) => format!("(from {source}) "),
                    Source::Local(_) => String::new(),
                };
                let noun = manager.noun();
                return Err(StateError::Conflict {
                    path: file,
                    problem: format!("{from}holds {noun} `{found}`, not `{name}`; name the entry `{found}`"),
                });
            }
            files.insert(name, ((file, source.to_string()), version));
        }
    }
    let names: Vec<&str> = packages.iter().map(|(n, _)| n.as_str()).collect();
    let installed = manager.installed(ctx, &names).await?;
    let absent: Vec<Installed> = names.iter().map(|n| Installed::absent(n)).collect();
    let now_of = |i: usize| installed.get(&manager.canonical(names[i])).unwrap_or(&absent[i]);

    let mut installs = Vec::new();
    let mut removals = Vec::new();
    let mut requests = Vec::new();
    for (i, (name, wanted)) in packages.iter().enumerate() {
        let now = now_of(i);
        match wanted {
            Wanted::Installed if !now.versions.is_empty() => {}
            Wanted::Version(v) if now.versions.iter().any(|have| manager.matches(have, v)) => {}
            Wanted::Installed | Wanted::Version(_) | Wanted::Latest => requests.push(Request { name, wanted, now }),
            Wanted::Removed => {
                if let Some(from) = now.removable() {
                    removals.push(Op::new(Verb::Remove, &now.name, Some(&from), None));
                }
            }
            Wanted::Purged => match now.removable() {
                Some(from) => removals.push(Op::new(Verb::Purge, &now.name, Some(&from), None)),
                None if now.config_files => removals.push(Op::new(Verb::Purge, &now.name, None, None)),
                None => {}
            },
            Wanted::File(_) => {
                let (file, version) = &files[name.as_str()];
                if let Some(mut op) = to_version(manager, wanted, now, version) {
                    op.file = Some(file.clone());
                    installs.push(op);
                }
            }
        }
    }
    if !requests.is_empty() || !installs.is_empty() {
        for resolved in manager.resolve(ctx, &requests).await? {
            let canonical = manager.canonical(&resolved.package);
            let entry = packages.iter().position(|(n, _)| manager.canonical(n) == canonical);
            let wanted = entry.map(|i| &packages[i].1).unwrap_or(&Wanted::Installed);
            let now = match entry {
                Some(i) => now_of(i).clone(),
                None => installed.get(&canonical).cloned().unwrap_or_else(|| Installed::absent(&resolved.package)),
            };
            let now = Installed { name: resolved.package.clone(), ..now };
            let Some(op) = to_version(manager, wanted, &now, &resolved.version) else { continue };
            if let (Some(i), Wanted::Removed | Wanted::Purged) = (entry, wanted) {
                return Err(StateError::Package {
                    package: packages[i].0.clone(),
                    problem: "is wanted `removed`, but another package of this state requires it".into(),
                });
            }
            installs.push(op);
        }
    }
    let order = |op: &Op| {
        let canonical = manager.canonical(&op.package);
        packages.iter().position(|(n, _)| manager.canonical(n) == canonical).unwrap_or(usize::MAX)
    };
    installs.sort_by_key(order);
    installs.extend(removals);
    Ok(installs)
}

/// The install that brings `now` to `version`, if one is needed.
fn to_version(manager: &impl PackageManager, wanted: &Wanted, now: &Installed, version: &str) -> Option<Op> {
    let to = Some(version);
    if manager.versions() == Versions::SideBySide {
        if now.versions.iter().any(|have| manager.compare(have, version).is_eq()) {
            return None;
        }
        let verb = if now.versions.is_empty() { Verb::Install } else { Verb::InstallBeside };
        return Some(Op::new(verb, &now.name, now.removable().as_deref(), to));
    }
    let Some(have) = now.versions.first() else {
        return Some(Op::new(Verb::Install, &now.name, None, to));
    };
    let verb = match manager.compare(have, version) {
        Ordering::Less => Verb::Upgrade,
        Ordering::Greater if *wanted == Wanted::Latest && manager.latest() == Latest::Newest => return None,
        Ordering::Greater => Verb::Downgrade,
        // Tools reinstall nothing at the same version.
        Ordering::Equal => return None,
    };
    Some(Op::new(verb, &now.name, Some(have), to))
}

/// Asks the tool again whether every package of `ops` reached its wanted state.
async fn verify(manager: &impl PackageManager, ctx: &Ctx, ops: &[Op]) -> Result<(), StateError> {
    let names: Vec<&str> = ops.iter().map(|op| op.package.as_str()).collect();
    let installed = manager.installed(ctx, &names).await?;
    let program = manager.program();
    for op in ops {
        let now = installed.get(&manager.canonical(&op.package)).cloned().unwrap_or_default();
        let problem = match (op.verb, &op.to) {
            (Verb::Remove | Verb::Purge, _) if now.removable().is_some() => Some(format!(
                "is still installed ({}) after `{program} {}`",
                now.removable().unwrap_or_default(),
                if op.verb == Verb::Purge { "purge" } else { manager.remove_word() }
            )),
            (Verb::Purge, _) if now.config_files => {
                Some(format!("still has configuration files after `{program} purge`"))
            }
            (Verb::Remove | Verb::Purge, _) | (_, None) => None,
            (_, Some(to)) if now.versions.iter().any(|have| manager.compare(have, to).is_eq()) => None,
            (_, Some(to)) => Some(format!(
                "is not installed at {to} after `{program} install` (installed: {})",
                now.removable().unwrap_or_else(|| "none".into())
            )),
        };
        if let Some(problem) = problem {
            return Err(StateError::Package { package: op.package.clone(), problem });
        }
    }
    Ok(())
}

/// Orders two versions by their segments: numbers numerically, other segments as text, a
/// missing segment as `0` (so `1.0` equals `1.0.0`); enough for pip's and gem's release versions.
pub fn compare_segments(a: &[&str], b: &[&str]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or("0"), b.get(i).copied().unwrap_or("0"));
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
    fn every_manager_reports_alike() {
        let change = |op: Op| op.change("remove").to_string();
        assert_eq!(change(Op::new(Verb::Install, "foo", None, Some("1.2-1"))), "create foo (install 1.2-1)");
        assert_eq!(change(Op::new(Verb::Upgrade, "bar", Some("1.0"), Some("1.1"))), "update bar (upgrade 1.0 -> 1.1)");
        let down = Op::new(Verb::Downgrade, "bar", Some("1.1"), Some("1.0"));
        assert_eq!(change(down), "update bar (downgrade 1.1 -> 1.0)");
        let beside = Op::new(Verb::InstallBeside, "g", Some("1.0.0"), Some("1.1.0"));
        assert_eq!(change(beside), "update g (install 1.1.0 beside 1.0.0)");
        assert_eq!(change(Op::new(Verb::Remove, "baz", Some("2"), None)), "remove baz (remove 2)");
        let uninstall = Op::new(Verb::Remove, "baz", Some("1.1.0, 1.0.0"), None).change("uninstall");
        assert_eq!(uninstall.to_string(), "remove baz (uninstall 1.1.0, 1.0.0)");
        assert_eq!(change(Op::new(Verb::Purge, "qux", None, None)), "remove qux (purge config files)");
        let mut file = Op::new(Verb::Install, "a", None, Some("1"));
        file.file = Some(("/srv/a.deb".into(), "/srv/a.deb".into()));
        assert_eq!(change(file.clone()), "create a (install 1 from /srv/a.deb)");
        assert_eq!(file.install_arg("="), "/srv/a.deb");
        assert_eq!(Op::new(Verb::Install, "foo", None, Some("1.0")).install_arg("@"), "foo@1.0");
    }
}

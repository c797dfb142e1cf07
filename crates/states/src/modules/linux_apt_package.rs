//! `linux.apt.package` — Debian packages installed (any version, a given one, the newest), removed or purged.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: package → wanted | required | the original's `[{"key": pkg, "value": v}]` list or a plain mapping; see below |
//! | `repo` | string | — | the target release apt prefers (`apt-get -t REPO`), e.g. `bookworm-backports` |
//! | `deb-conf-file` | absolute path | — | a debconf selections file, loaded with `debconf-set-selections` before installing |
//! | `verify-gpg` | bool | `true` | apt always verifies signatures as the machine's apt is configured; `false` is accepted but ignored, with a warning (mark an unsigned repository `[trusted=yes]` in its `linux.apt.repo` instead) |
//!
//! What each package may be given:
//!
//! | value | means |
//! |---|---|
//! | empty or absent | installed, any version (the repositories' candidate when it must be installed) |
//! | a version, e.g. `1.2-1` | installed at exactly that version (upgraded or downgraded to it) |
//! | `latest` | installed at the candidate version (upgraded when the repositories offer a newer one) |
//! | `removed` | not installed (`apt-get remove`; configuration files stay) |
//! | `purged` | not installed and no configuration files left (`apt-get purge`) |
//! | `/path/pkg.deb`, `file:///path/pkg.deb` or `https://host/pkg.deb` | installed from that file, at the file's version; a URL is downloaded into the agent's cache (TLS verified) and revalidated once per round |
//!
//! "Already fine" means dpkg reports every package as wanted: installed (at the version, or at
//! least the candidate for `latest`), or absent. `check` reads the installed packages with
//! `dpkg-query` and the candidates with `apt-cache policy`, and `--test` lists each change with
//! apt's verb and the versions: `create pkg (install 1.2-1)`, `update pkg (upgrade 1.0 -> 1.1)`,
//! `update pkg (downgrade 1.1 -> 1.0)`, `remove pkg (remove 1.0)`, `remove pkg (purge config
//! files)`. Before it reads candidates, `check` refreshes the package lists (`apt-get update`)
//! **once per round**, and only when a package must be installed or changed, or
//! is `latest` (a `linux.apt.repo` state that changed a repository makes the next package state
//! refresh again). The refresh changes apt's lists only, also under `--test`, so that the plan shows
//! the versions `apply` then installs. (Under `--test`, a repository that an earlier state of the
//! same recipe would add is not there yet: its packages show as not available.)
//!
//! All installs and upgrades of a state are one `apt-get install` transaction (then one `apt-get
//! remove`, one `apt-get purge`), run with `DEBIAN_FRONTEND=noninteractive`, `-y` and
//! `--force-confdef --force-confold` (changed configuration files are kept). Recommended packages
//! follow the machine's apt configuration (`APT::Install-Recommends`), as with the original. A lock
//! held by another apt or dpkg is waited for (up to half the state's timeout, at most 2 minutes),
//! then reported naming the lock. After apt finishes, dpkg is asked again: a package that did not
//! reach its wanted state fails the state. The original installed only the URI entries when one
//! value was a `.deb`; here every entry is handled.
//!
//! ```yaml
//! - id: web-packages
//!   module: linux.apt.package
//!   parameter:
//!     name: { nginx: "", curl: latest, "libssl3": "3.0.11-1~deb12u2", telnet: purged }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use super::packages::{as_written, read_names, Names};
use crate::fetch::Source;
use crate::process::Tail;
use crate::providers::apt::{self, DpkgState, Installed};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.apt.package`.
#[derive(Debug, Clone)]
pub struct AptPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    pub repo: Option<String>,
    pub debconf_file: Option<PathBuf>,
}

/// What one package should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Installed,
    Version(String),
    Latest,
    Removed,
    Purged,
    /// Installed from this `.deb` file (a path or an http(s) URL).
    Deb(Source),
}

/// What apt does to one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Install,
    Upgrade,
    Downgrade,
    Remove,
    Purge,
}

/// The largest `.deb` downloaded.
const MAX_DEB: u64 = 4 << 30;

/// One change to make, as `check` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    verb: Verb,
    package: String,
    /// The installed version (upgrade, downgrade, remove, purge).
    from: Option<String>,
    /// The version to install.
    to: Option<String>,
    /// The `.deb` file to install it from, and how the report shows it (the path or the URL).
    file: Option<(PathBuf, String)>,
}

impl Op {
    /// The report line: the generic action (create, update, remove) on the package, with apt's
    /// verb and the versions in the detail, e.g. `update bar (upgrade 1.0 -> 1.1)`.
    fn change(&self) -> Change {
        let none = String::new();
        let (from, to) = (self.from.as_ref().unwrap_or(&none), self.to.as_ref().unwrap_or(&none));
        let (action, mut detail) = match self.verb {
            Verb::Install => (Action::Create, format!("install {to}")),
            Verb::Upgrade => (Action::Update, format!("upgrade {from} -> {to}")),
            Verb::Downgrade => (Action::Update, format!("downgrade {from} -> {to}")),
            Verb::Remove => (Action::Remove, format!("remove {from}")),
            Verb::Purge if self.from.is_none() => (Action::Remove, "purge config files".to_string()),
            Verb::Purge => (Action::Remove, format!("purge {from}")),
        };
        if let Some((_, shown)) = &self.file {
            detail.push_str(&format!(" from {shown}"));
        }
        Change::new(action, &self.package, detail.trim_end())
    }

    fn installs(&self) -> bool {
        matches!(self.verb, Verb::Install | Verb::Upgrade | Verb::Downgrade)
    }
}

impl AptPackage {
    pub fn from_params(state: &State) -> Result<(AptPackage, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let packages = read_names(
            &mut p,
            &Names {
                noun: "package",
                example: "give the packages, e.g. `name: { nginx: \"\", curl: latest }`",
                problem: &|name| {
                    (!is_package_name(name)).then(|| {
                        (
                            format!("`{name}` is not a Debian package name"),
                            "package names are lowercase letters, digits, `+`, `-` and `.`, e.g. `libssl3` (an architecture may follow: `libc6:i386`)".into(),
                        )
                    })
                },
                canonical: &as_written,
                version_in_key: false,
            },
            parse_wanted,
        );
        let repo_pos = p.node("repo").and_then(|n| n.pos);
        let repo = p.string("repo").filter(|r| !r.trim().is_empty());
        if let Some(repo) = &repo {
            if repo.chars().any(|c| c.is_whitespace() || c == '=') {
                p.report(
                    Kind::BadValue,
                    "repo",
                    repo_pos,
                    format!("`{repo}` is not a release name"),
                    Some("give the target release apt knows, e.g. `bookworm-backports`".into()),
                );
            }
        }
        let debconf_pos = p.node("deb-conf-file").and_then(|n| n.pos);
        let debconf_file = p
            .string("deb-conf-file")
            .filter(|f| !f.trim().is_empty())
            .and_then(|f| check_absolute(&mut p, "deb-conf-file", debconf_pos, &f));
        let verify_pos = p.node("verify-gpg").and_then(|n| n.pos);
        let verify_gpg = p.bool("verify-gpg").unwrap_or(true);
        let mut warnings = p.finish(&["name", "repo", "deb-conf-file", "verify-gpg"], &[])?;
        if !verify_gpg {
            warnings.push(
                Diagnostic::warning(
                    Kind::IgnoredKey,
                    "`verify-gpg: false` is ignored: package signatures are always verified as apt is configured",
                )
                .state(state.state_ref())
                .param("verify-gpg")
                .at(verify_pos)
                .with_hint(
                    "to use an unsigned repository, mark it trusted in its `linux.apt.repo` content: `deb [trusted=yes] …`",
                ),
            );
        }
        Ok((AptPackage { packages, repo, debconf_file }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let ops = self.plan(ctx).await?;
        Ok(Plan { changes: ops.iter().map(Op::change).collect(), diff: None })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        // The lists were refreshed by `check` in this round: planning again only re-reads them,
        // and keeps to the packages the plan named.
        let ops: Vec<Op> = self
            .plan(ctx)
            .await?
            .into_iter()
            .filter(|op| plan.changes.iter().any(|c| c.target == op.package))
            .collect();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut keep = |output: crate::process::Output| {
            stdout.extend_from_slice(&output.stdout.bytes);
            stderr.extend_from_slice(&output.stderr.bytes);
        };
        let installs: Vec<&Op> = ops.iter().filter(|op| op.installs()).collect();
        if !installs.is_empty() {
            if let Some(file) = &self.debconf_file {
                keep(apt::debconf_set_selections(ctx, file).await?);
            }
            let mut args = vec!["install".to_string()];
            if installs.iter().any(|op| op.verb == Verb::Downgrade) {
                args.push("--allow-downgrades".into());
            }
            if let Some(repo) = &self.repo {
                args.push("-t".into());
                args.push(repo.clone());
            }
            for op in &installs {
                match (&op.file, &op.to) {
                    (Some((file, _)), _) => args.push(file.display().to_string()),
                    (None, Some(version)) => args.push(format!("{}={version}", op.package)),
                    (None, None) => args.push(op.package.clone()),
                }
            }
            keep(apt::apt_get(ctx, &args).await?);
        }
        for (verb, word) in [(Verb::Remove, "remove"), (Verb::Purge, "purge")] {
            let names: Vec<String> = ops.iter().filter(|op| op.verb == verb).map(|op| op.package.clone()).collect();
            if !names.is_empty() {
                let mut args = vec![word.to_string()];
                args.extend(names);
                keep(apt::apt_get(ctx, &args).await?);
            }
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

    /// What must change, package by package, in recipe order.
    async fn plan(&self, ctx: &Ctx) -> Result<Vec<Op>, StateError> {
        // The package held by each `.deb`, checked against the name the recipe gives it.
        let mut debs: HashMap<&str, ((PathBuf, String), String)> = HashMap::new();
        for (name, wanted) in &self.packages {
            if let Wanted::Deb(source) = wanted {
                let file = source.local(ctx, None, MAX_DEB).await?;
                let (package, version) = apt::deb_identity(ctx, &file).await?;
                if package != base_name(name) {
                    return Err(StateError::Conflict {
                        path: file.clone(),
                        problem: format!(
                            "({source}) holds package `{package}`, not `{name}`; name the entry `{package}`"
                        ),
                    });
                }
                debs.insert(name, ((file, source.to_string()), version));
            }
        }
        let names: Vec<&str> = self.packages.iter().map(|(n, _)| n.as_str()).collect();
        let installed = apt::installed(ctx, &names).await?;
        let state_of = |name: &str| apt::lookup(&installed, name).cloned().unwrap_or(Installed::ABSENT);

        let mut ops = Vec::new();
        // Packages whose fate depends on what the repositories offer.
        let mut from_repo: Vec<&str> = Vec::new();
        for (name, wanted) in &self.packages {
            let now = state_of(name);
            match wanted {
                Wanted::Installed if now.is_installed() => {}
                Wanted::Version(v) if now.is_installed() && now.version == *v => {}
                Wanted::Installed | Wanted::Version(_) | Wanted::Latest => from_repo.push(name),
                Wanted::Removed => {
                    if matches!(now.state, DpkgState::Installed | DpkgState::Broken) {
                        ops.push(op(Verb::Remove, name, Some(now.version), None, None));
                    }
                }
                Wanted::Purged => match now.state {
                    DpkgState::NotInstalled => {}
                    DpkgState::ConfigFiles => ops.push(op(Verb::Purge, name, None, None, None)),
                    _ => ops.push(op(Verb::Purge, name, Some(now.version), None, None)),
                },
                Wanted::Deb(_) => {
                    let (file, version) = &debs[name.as_str()];
                    if !(now.is_installed() && now.version == *version) {
                        let verb = change_verb(&now, version);
                        let from = now.is_installed().then(|| now.version.clone());
                        ops.push(op(verb, name, from, Some(version.clone()), Some(file.clone())));
                    }
                }
            }
        }
        let must_install = !from_repo.is_empty() || ops.iter().any(Op::installs);
        if must_install && ctx.round.first_in_round(apt::UPDATE_KEY) {
            if let Err(e) = apt::update(ctx).await {
                // Let the next state (or the retry) try the refresh again.
                ctx.round.forget(apt::UPDATE_KEY);
                return Err(e);
            }
        }
        let policies = apt::policy(ctx, &from_repo, self.repo.as_deref()).await?;
        let mut repo_ops = Vec::new();
        for (name, wanted) in self.packages.iter().filter(|(n, _)| from_repo.contains(&n.as_str())) {
            let now = state_of(name);
            let policy = apt::lookup(&policies, name).cloned().unwrap_or_default();
            let from = now.is_installed().then(|| now.version.clone());
            match wanted {
                Wanted::Version(v) => {
                    if !policy.available.contains(v) {
                        return Err(unavailable(name, &policy, Some(v)));
                    }
                    repo_ops.push(op(change_verb(&now, v), name, from, Some(v.clone()), None));
                }
                Wanted::Latest if now.is_installed() => match &policy.candidate {
                    Some(c) if apt::compare_versions(&now.version, c).is_lt() => {
                        repo_ops.push(op(Verb::Upgrade, name, from, Some(c.clone()), None));
                    }
                    _ => {}
                },
                _ => match &policy.candidate {
                    Some(c) => repo_ops.push(op(Verb::Install, name, None, Some(c.clone()), None)),
                    None => return Err(unavailable(name, &policy, None)),
                },
            }
        }
        // Recipe order: installs first (as they run), then removals.
        let (mut installs, removals): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(Op::installs);
        installs.extend(repo_ops);
        let order = |op: &Op| self.packages.iter().position(|(n, _)| *n == op.package).unwrap_or(usize::MAX);
        installs.sort_by_key(order);
        installs.extend(removals);
        Ok(installs)
    }

    /// Asks dpkg whether every package reached the state `ops` wanted.
    async fn verify(&self, ctx: &Ctx, ops: &[Op]) -> Result<(), StateError> {
        let names: Vec<&str> = ops.iter().map(|op| op.package.as_str()).collect();
        let installed = apt::installed(ctx, &names).await?;
        for op in ops {
            let now = apt::lookup(&installed, &op.package).cloned().unwrap_or(Installed::ABSENT);
            let problem = match op.verb {
                Verb::Remove if matches!(now.state, DpkgState::Installed | DpkgState::Broken) => {
                    Some(format!("is still installed ({}) after `apt-get remove`", now.version))
                }
                Verb::Purge if now.state != DpkgState::NotInstalled => {
                    Some("is still known to dpkg after `apt-get purge`".to_string())
                }
                _ if op.installs() => match &op.to {
                    Some(to) if !(now.is_installed() && now.version == *to) => Some(format!(
                        "is not installed at {to} after `apt-get install` (dpkg reports {})",
                        if now.is_installed() { now.version.clone() } else { "it not installed".into() }
                    )),
                    _ => None,
                },
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(StateError::Package { package: op.package.clone(), problem });
            }
        }
        Ok(())
    }
}

fn op(verb: Verb, package: &str, from: Option<String>, to: Option<String>, file: Option<(PathBuf, String)>) -> Op {
    Op { verb, package: package.to_string(), from, to, file }
}

/// Install, upgrade or downgrade, from what is installed to `to`.
fn change_verb(now: &Installed, to: &str) -> Verb {
    if !now.is_installed() {
        return Verb::Install;
    }
    if apt::compare_versions(&now.version, to).is_gt() {
        Verb::Downgrade
    } else {
        Verb::Upgrade
    }
}

/// The error for a package (or version) no repository offers.
fn unavailable(name: &str, policy: &apt::Policy, version: Option<&str>) -> StateError {
    let problem = match version {
        Some(v) if policy.available.is_empty() => {
            format!("is not available from any configured repository (wanted version {v})")
        }
        Some(v) => {
            format!("has no version {v} in the configured repositories (available: {})", policy.available.join(", "))
        }
        None => "is not available from any configured repository (after refreshing the package lists)".to_string(),
    };
    StateError::Package { package: name.to_string(), problem }
}

/// Reads one package's wanted state.
fn parse_wanted(p: &mut ParamReader<'_>, path: &str, pos: Option<opsagent_recipe::Pos>, value: &str) -> Option<Wanted> {
    let value = value.trim();
    match value {
        "" => return Some(Wanted::Installed),
        "latest" => return Some(Wanted::Latest),
        "removed" => return Some(Wanted::Removed),
        "purged" => return Some(Wanted::Purged),
        _ => {}
    }
    let lower = value.to_ascii_lowercase();
    if lower.ends_with(".rpm") {
        p.report(
            Kind::BadValue,
            path,
            pos,
            format!("`{value}` is an rpm package"),
            Some("`linux.apt.package` installs `.deb` packages; rpm packages belong to `linux.yum.package`".into()),
        );
        return None;
    }
    if value.contains("://") || value.starts_with('/') || lower.ends_with(".deb") {
        return check_deb(p, path, pos, value);
    }
    if is_version(value) {
        return Some(Wanted::Version(value.to_string()));
    }
    p.report(
        Kind::BadValue,
        path,
        pos,
        format!("`{value}` is not a Debian version, `latest`, `removed`, `purged` or a `.deb` path"),
        Some(
            "leave it empty for any version, or give e.g. `1.2-1`, `latest`, `removed`, `purged`, `/srv/pkg.deb`"
                .into(),
        ),
    );
    None
}

fn check_deb(p: &mut ParamReader<'_>, path: &str, pos: Option<opsagent_recipe::Pos>, file: &str) -> Option<Wanted> {
    let source = Source::read(p, path, pos, file, "/srv/pkg_1.0_all.deb")?;
    if !source.file_name().ends_with(".deb") {
        p.report(
            Kind::BadValue,
            path,
            pos,
            format!("`{source}` is not a `.deb` file"),
            Some("give the path of a Debian package file, ending in `.deb`".into()),
        );
        return None;
    }
    Some(Wanted::Deb(source))
}

/// Debian package names: `[a-z0-9][a-z0-9+.-]+`, with an optional `:arch`.
fn is_package_name(name: &str) -> bool {
    let (base, arch) = match name.split_once(':') {
        Some((base, arch)) => (base, Some(arch)),
        None => (name, None),
    };
    let base_ok = base.len() >= 2
        && base.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && base.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    let arch_ok = arch
        .is_none_or(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    base_ok && arch_ok
}

/// Debian versions: `[epoch:]upstream[-revision]`, starting with a digit.
fn is_version(value: &str) -> bool {
    let rest = match value.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => value,
    };
    rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c))
}

fn base_name(name: &str) -> &str {
    name.split_once(':').map(|(base, _)| base).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for ok in ["nginx", "libssl3", "g++", "libc6:i386", "python3.11"] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in ["Nginx", "a", "-x", "foo bar", "foo/bar", "x:"] {
            assert!(!is_package_name(bad), "{bad}");
        }
        for ok in ["1.0", "1:2.3-4", "3.0.11-1~deb12u2", "2"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["v1", "1.0 beta", "lastest", "1.0/2"] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn changes_read_like_apt() {
        let upgrade = op(Verb::Upgrade, "bar", Some("1.0".into()), Some("1.1".into()), None);
        assert_eq!(upgrade.change().to_string(), "update bar (upgrade 1.0 -> 1.1)");
        let install = op(Verb::Install, "foo", None, Some("1.2-1".into()), None);
        assert_eq!(install.change().to_string(), "create foo (install 1.2-1)");
        assert_eq!(op(Verb::Purge, "qux", None, None, None).change().to_string(), "remove qux (purge config files)");
        assert_eq!(op(Verb::Remove, "baz", Some("2".into()), None, None).change().to_string(), "remove baz (remove 2)");
        let deb = op(Verb::Install, "a", None, Some("1".into()), Some(("/srv/a.deb".into(), "/srv/a.deb".into())));
        assert_eq!(deb.change().to_string(), "create a (install 1 from /srv/a.deb)");
    }
}

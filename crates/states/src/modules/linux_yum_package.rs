//! `linux.yum.package` — RPM packages installed (any version, a given one, the newest) or removed, with dnf (or yum).
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: package → wanted | required | the original's `[{"key": pkg, "value": v}]` list or a plain mapping; see below |
//! | `repo` | string | — | use only this repository (its id, e.g. `epel`): `--disablerepo=* --enablerepo=REPO`, also for a repository that is disabled by default |
//! | `verify-gpg` | bool | `true` | `false` installs without checking package signatures (`--nogpgcheck`) |
//!
//! What each package may be given:
//!
//! | value | means |
//! |---|---|
//! | empty or absent | installed, any version (the newest the repositories offer when it must be installed) |
//! | a version: `1.2`, `1.2-3.el9`, `1:1.2-3.el9` | installed at that version (upgraded or downgraded to it); a release or epoch left out matches any |
//! | `latest` | installed at the newest version the repositories offer (upgraded when they offer a newer one) |
//! | `removed` | not installed |
//! | `purged` | the same as `removed` (rpm keeps no configuration files apart; changed ones are saved as `.rpmsave`, as always) |
//! | `/path/pkg.rpm`, `file:///path/pkg.rpm` or `https://host/pkg.rpm` | installed from that file, at the file's version; a URL is downloaded into the agent's download cache (revalidated once per round) |
//!
//! dnf is used where it is installed, else yum; neither is an error naming both. "Already fine"
//! means rpm reports every package as wanted: installed (at the version, or at least the newest
//! offered for `latest`), or absent. `check` reads the installed versions with `rpm -q` and what
//! the repositories offer with `dnf repoquery` (with yum: `repoquery`, from yum-utils), and
//! `--test` lists each change with the versions: `create pkg (install 1.2-1)`, `update pkg
//! (upgrade 1.0-1 -> 1.1-1)`, `update pkg (downgrade 1.1-1 -> 1.0-1)`, `remove pkg (remove
//! 1.0-1)`. Before it reads the repositories, `check` refreshes their metadata (`dnf makecache
//! --refresh`) **once per round** (per `repo`), and only when a package must be installed or
//! changed, or is `latest`; a `linux.yum.repo` state that changed a repository makes the next
//! package state refresh again. The refresh changes dnf's cache only, also under `--test`.
//!
//! All installs, upgrades and downgrades of a state are one `dnf install` transaction, at the exact
//! versions `check` showed (yum: `yum install`, then `yum downgrade`), then one `dnf remove` for
//! the removals, which removes no other "unneeded" package (`clean_requirements_on_remove=0`).
//! Packages that need a removed one are removed with it, as dnf does. After the transaction,
//! rpm is asked again: a package that did not reach its wanted state fails the state. The
//! original installed only the URI entries when one value was an `.rpm`; here every entry is
//! handled. Package names are rpm names without an architecture (`foo`, not `foo.x86_64`).
//!
//! ```yaml
//! - id: web-packages
//!   module: linux.yum.package
//!   parameter:
//!     name: { nginx: "", curl: latest, "openssl-libs": "1:3.0.7-27.el9", telnet: removed }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::packages::{as_written, read_names, Names};
use crate::fetch::Source;
use crate::process::Tail;
use crate::providers::yum::{self, Evr, Tool};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// The largest package file downloaded.
const MAX_RPM: u64 = 4 << 30;

/// A validated `linux.yum.package`.
#[derive(Debug, Clone)]
pub struct YumPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    pub repo: Option<String>,
    pub verify_gpg: bool,
}

/// What one package should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Installed,
    /// As written: `1.2`, `1.2-3`, `1:1.2-3`.
    Version(String),
    Latest,
    /// `removed` or `purged`.
    Removed,
    /// Installed from this `.rpm` file (a local path or a URL).
    Rpm(Source),
}

/// What the transaction does to one package.
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
    package: String,
    /// The installed version (upgrade, downgrade, remove).
    from: Option<Evr>,
    /// The version to install.
    to: Option<Evr>,
    /// The `.rpm` file to install it from, and how the report shows it (the path or the URL).
    file: Option<(PathBuf, String)>,
}

impl Op {
    /// The report line, e.g. `update bar (upgrade 1.0-1 -> 1.1-1)`.
    fn change(&self) -> Change {
        let show = |evr: &Option<Evr>| evr.as_ref().map(Evr::to_string).unwrap_or_default();
        let (from, to) = (show(&self.from), show(&self.to));
        let (action, mut detail) = match self.verb {
            Verb::Install => (Action::Create, format!("install {to}")),
            Verb::Upgrade => (Action::Update, format!("upgrade {from} -> {to}")),
            Verb::Downgrade => (Action::Update, format!("downgrade {from} -> {to}")),
            Verb::Remove => (Action::Remove, format!("remove {from}")),
        };
        if let Some((_, shown)) = &self.file {
            detail.push_str(&format!(" from {shown}"));
        }
        Change::new(action, &self.package, detail.trim_end())
    }

    fn installs(&self) -> bool {
        self.verb != Verb::Remove
    }

    /// What dnf is given to install it: the file, or `name-version-release` (exact).
    fn install_arg(&self) -> String {
        match (&self.file, &self.to) {
            (Some((file, _)), _) => file.display().to_string(),
            (None, Some(to)) => format!("{}-{to}", self.package),
            (None, None) => self.package.clone(),
        }
    }
}

impl YumPackage {
    pub fn from_params(state: &State) -> Result<(YumPackage, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let packages = read_names(
            &mut p,
            &Names {
                noun: "package",
                example: "give the packages, e.g. `name: { nginx: \"\", curl: latest }`",
                problem: &package_name_problem,
                canonical: &as_written,
                version_in_key: false,
            },
            parse_wanted,
        );
        let repo_pos = p.node("repo").and_then(|n| n.pos);
        let repo = p.string("repo").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        if let Some(repo) = &repo {
            if !is_repo_id(repo) {
                p.report(
                    Kind::BadValue,
                    "repo",
                    repo_pos,
                    format!("`{repo}` is not a repository id"),
                    Some("give the id of one repository (the `[id]` of its `.repo` file), e.g. `epel`".into()),
                );
            }
        }
        let verify_gpg = p.bool("verify-gpg").unwrap_or(true);
        let warnings = p.finish(&["name", "repo", "verify-gpg"], &[])?;
        Ok((YumPackage { packages, repo, verify_gpg }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let tool = Tool::find()?;
        let ops = self.plan(ctx, tool).await?;
        Ok(Plan { changes: ops.iter().map(Op::change).collect(), diff: None })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let tool = Tool::find()?;
        // The metadata was refreshed by `check` in this round: planning again only re-reads it,
        // and keeps to the packages the plan named.
        let ops: Vec<Op> = self
            .plan(ctx, tool)
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
        let mut options = yum::repo_options(self.repo.as_deref());
        if !self.verify_gpg {
            options.push("--nogpgcheck".into());
        }
        // dnf installs, upgrades and downgrades in one `install`; yum needs `downgrade` for those.
        let separate_downgrades = tool == Tool::Yum;
        let installs: Vec<String> = ops
            .iter()
            .filter(|op| op.installs() && !(separate_downgrades && op.verb == Verb::Downgrade))
            .map(Op::install_arg)
            .collect();
        let downgrades: Vec<String> =
            ops.iter().filter(|op| separate_downgrades && op.verb == Verb::Downgrade).map(Op::install_arg).collect();
        for (verb, args) in [("install", installs), ("downgrade", downgrades)] {
            if !args.is_empty() {
                let mut full = vec![verb.to_string()];
                full.extend(options.iter().cloned());
                full.extend(args);
                keep(yum::run(ctx, tool, &full).await?);
            }
        }
        let removals: Vec<String> =
            ops.iter().filter(|op| op.verb == Verb::Remove).map(|op| op.package.clone()).collect();
        if !removals.is_empty() {
            // A removal needs no repository: none is read (no metadata download, no network).
            let mut full =
                vec!["remove".to_string(), "--setopt=clean_requirements_on_remove=0".into(), "--disablerepo=*".into()];
            full.extend(removals);
            keep(yum::run(ctx, tool, &full).await?);
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

    /// What must change, package by package, in recipe order (installs first, as they run).
    async fn plan(&self, ctx: &Ctx, tool: Tool) -> Result<Vec<Op>, StateError> {
        // The package held by each `.rpm`, checked against the name the recipe gives it.
        let mut files: HashMap<&str, ((PathBuf, String), Evr)> = HashMap::new();
        for (name, wanted) in &self.packages {
            if let Wanted::Rpm(source) = wanted {
                let file = source.local(ctx, None, MAX_RPM).await?;
                let (package, evr) = yum::rpm_identity(ctx, &file).await?;
                if package != *name {
                    let from = match source {
                        Source::Remote(_) => format!("(from {source}) "),
                        Source::Local(_) => String::new(),
                    };
                    return Err(StateError::Conflict {
                        path: file,
                        problem: format!("{from}holds package `{package}`, not `{name}`; name the entry `{package}`"),
                    });
                }
                files.insert(name, ((file, source.to_string()), evr));
            }
        }
        let names: Vec<&str> = self.packages.iter().map(|(n, _)| n.as_str()).collect();
        let installed = yum::installed(ctx, &names).await?;

        let mut ops = Vec::new();
        // Packages whose fate depends on what the repositories offer.
        let mut from_repo: Vec<&str> = Vec::new();
        for (name, wanted) in &self.packages {
            let now = installed.get(name);
            match wanted {
                Wanted::Installed if now.is_some() => {}
                Wanted::Version(v) if now.is_some_and(|evr| evr.matches(v)) => {}
                Wanted::Installed | Wanted::Version(_) | Wanted::Latest => from_repo.push(name),
                Wanted::Removed => {
                    if let Some(evr) = now {
                        ops.push(op(Verb::Remove, name, Some(evr.clone()), None, None));
                    }
                }
                Wanted::Rpm(_) => {
                    let (file, evr) = &files[name.as_str()];
                    if now != Some(evr) {
                        ops.push(op(change_verb(now, evr), name, now.cloned(), Some(evr.clone()), Some(file.clone())));
                    }
                }
            }
        }
        if !from_repo.is_empty() {
            let key = match &self.repo {
                Some(repo) => format!("{}:{repo}", yum::REFRESH_KEY),
                None => yum::REFRESH_KEY.to_string(),
            };
            if ctx.round.first_in_round(&key) {
                if let Err(e) = yum::refresh(ctx, tool, self.repo.as_deref()).await {
                    // Let the next state (or the retry) try the refresh again.
                    ctx.round.forget(&key);
                    return Err(e);
                }
            }
        }
        let offered = yum::available(ctx, tool, &from_repo, self.repo.as_deref()).await?;
        for (name, wanted) in self.packages.iter().filter(|(n, _)| from_repo.contains(&n.as_str())) {
            let now = installed.get(name);
            let versions = offered.get(name).map(Vec::as_slice).unwrap_or_default();
            // Sorted oldest first: the last is the newest.
            let newest = versions.last();
            match wanted {
                Wanted::Version(v) => match versions.iter().rev().find(|evr| evr.matches(v)) {
                    Some(to) => ops.push(op(change_verb(now, to), name, now.cloned(), Some(to.clone()), None)),
                    None => return Err(unavailable(name, versions, Some(v), self.repo.as_deref())),
                },
                Wanted::Latest if now.is_some() => {
                    if let (Some(now), Some(newest)) = (now, newest) {
                        if yum::compare_evr(now, newest).is_lt() {
                            ops.push(op(Verb::Upgrade, name, Some(now.clone()), Some(newest.clone()), None));
                        }
                    }
                }
                _ => match newest {
                    Some(to) => ops.push(op(Verb::Install, name, None, Some(to.clone()), None)),
                    None => return Err(unavailable(name, versions, None, self.repo.as_deref())),
                },
            }
        }
        let order = |op: &Op| self.packages.iter().position(|(n, _)| *n == op.package).unwrap_or(usize::MAX);
        let (mut installs, mut removals): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(Op::installs);
        installs.sort_by_key(order);
        removals.sort_by_key(order);
        installs.extend(removals);
        Ok(installs)
    }

    /// Asks rpm whether every package reached the state `ops` wanted.
    async fn verify(&self, ctx: &Ctx, ops: &[Op]) -> Result<(), StateError> {
        let names: Vec<&str> = ops.iter().map(|op| op.package.as_str()).collect();
        let installed = yum::installed(ctx, &names).await?;
        for op in ops {
            let now = installed.get(&op.package);
            let problem = match (op.verb, now, &op.to) {
                (Verb::Remove, Some(evr), _) => Some(format!("is still installed ({evr}) after `remove`")),
                (Verb::Remove, None, _) => None,
                (_, now, Some(to)) if now != Some(to) => Some(format!(
                    "is not installed at {to} after the transaction (rpm reports {})",
                    now.map(|evr| evr.to_string()).unwrap_or_else(|| "it not installed".into())
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(StateError::Package { package: op.package.clone(), problem });
            }
        }
        Ok(())
    }
}

fn op(verb: Verb, package: &str, from: Option<Evr>, to: Option<Evr>, file: Option<(PathBuf, String)>) -> Op {
    Op { verb, package: package.to_string(), from, to, file }
}

/// Install, upgrade or downgrade, from what is installed to `to`.
fn change_verb(now: Option<&Evr>, to: &Evr) -> Verb {
    match now {
        None => Verb::Install,
        Some(now) if yum::compare_evr(now, to).is_gt() => Verb::Downgrade,
        Some(_) => Verb::Upgrade,
    }
}

/// The error for a package (or version) no repository offers.
fn unavailable(name: &str, versions: &[Evr], version: Option<&str>, repo: Option<&str>) -> StateError {
    let from = match repo {
        Some(repo) => format!("the repository `{repo}`"),
        None => "any enabled repository".to_string(),
    };
    let problem = match version {
        Some(v) if versions.is_empty() => format!("is not available from {from} (wanted version {v})"),
        Some(v) => format!(
            "has no version {v} in {from} (available: {})",
            versions.iter().map(Evr::to_string).collect::<Vec<_>>().join(", ")
        ),
        None => format!("is not available from {from} (after refreshing the metadata)"),
    };
    StateError::Package { package: name.to_string(), problem }
}

/// Reads one package's wanted state.
fn parse_wanted(p: &mut ParamReader<'_>, path: &str, pos: Option<opsagent_recipe::Pos>, value: &str) -> Option<Wanted> {
    let value = value.trim();
    match value {
        "" => return Some(Wanted::Installed),
        "latest" => return Some(Wanted::Latest),
        "removed" | "purged" => return Some(Wanted::Removed),
        _ => {}
    }
    let lower = value.to_ascii_lowercase();
    if lower.ends_with(".deb") {
        p.report(
            Kind::BadValue,
            path,
            pos,
            format!("`{value}` is a Debian package"),
            Some("`linux.yum.package` installs `.rpm` packages; Debian packages belong to `linux.apt.package`".into()),
        );
        return None;
    }
    if value.starts_with('/') || value.contains("://") || lower.ends_with(".rpm") {
        return check_rpm(p, path, pos, value);
    }
    if is_version(value) {
        return Some(Wanted::Version(value.to_string()));
    }
    p.report(
        Kind::BadValue,
        path,
        pos,
        format!("`{value}` is not an rpm version, `latest`, `removed`, `purged` or an `.rpm` path"),
        Some(
            "leave it empty for any version, or give e.g. `1.2`, `1.2-3.el9`, `latest`, `removed`, `/srv/pkg.rpm`"
                .into(),
        ),
    );
    None
}

fn check_rpm(p: &mut ParamReader<'_>, path: &str, pos: Option<opsagent_recipe::Pos>, file: &str) -> Option<Wanted> {
    let source = Source::read(p, path, pos, file, "/srv/pkg-1.0-1.noarch.rpm")?;
    if !source.file_name().ends_with(".rpm") {
        p.report(
            Kind::BadValue,
            path,
            pos,
            format!("`{source}` is not an `.rpm` file"),
            Some("give the path or URL of an rpm package file, ending in `.rpm`".into()),
        );
        return None;
    }
    Some(Wanted::Rpm(source))
}

/// Why `name` is not an rpm package name for this module (message, hint), if it is not.
fn package_name_problem(name: &str) -> Option<(String, String)> {
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+.-".contains(c));
    if !valid {
        return Some((
            format!("`{name}` is not an rpm package name"),
            "package names are letters, digits, `_`, `+`, `-` and `.`, e.g. `openssl-libs`".into(),
        ));
    }
    const ARCHES: &[&str] = &["x86_64", "i386", "i686", "noarch", "aarch64", "ppc64le", "s390x", "armv7hl", "src"];
    if let Some((base, arch)) = name.rsplit_once('.') {
        if ARCHES.contains(&arch) {
            return Some((
                format!("`{name}` names an architecture"),
                format!("give the package name alone, `{base}`: dnf picks the architecture"),
            ));
        }
    }
    None
}

/// rpm versions as a recipe gives them: `[epoch:]version[-release]`, starting with a digit.
fn is_version(value: &str) -> bool {
    let rest = match value.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => value,
    };
    rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.matches('-').count() <= 1
        && !rest.ends_with('-')
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || "._+~^-".contains(c))
}

/// A repository id: letters, digits and `_-.:`.
fn is_repo_id(repo: &str) -> bool {
    repo.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for ok in ["nginx", "openssl-libs", "gcc-c++", "python3.11", "NetworkManager", "perl-Net_SSLeay"] {
            assert!(package_name_problem(ok).is_none(), "{ok}");
        }
        for bad in ["", "-x", "foo bar", "foo/bar", "perl(Foo)", "bash.x86_64", "glibc.i686"] {
            assert!(package_name_problem(bad).is_some(), "{bad}");
        }
        for ok in ["1.0", "1:2.3-4.el9", "3.0.7-27.el9", "2", "1.0~rc1", "1.0^git1"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["v1", "1.0 beta", "lastest", "1.0/2", "1-2-3", "1.0-"] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn changes_read_like_dnf() {
        let evr = |v: &str, r: &str| Some(Evr { epoch: 0, version: v.into(), release: r.into() });
        let upgrade = op(Verb::Upgrade, "bar", evr("1.0", "1"), evr("1.1", "1"), None);
        assert_eq!(upgrade.change().to_string(), "update bar (upgrade 1.0-1 -> 1.1-1)");
        assert_eq!(upgrade.install_arg(), "bar-1.1-1");
        let install = op(Verb::Install, "foo", None, evr("1.2", "1"), None);
        assert_eq!(install.change().to_string(), "create foo (install 1.2-1)");
        assert_eq!(op(Verb::Remove, "baz", evr("2", "3"), None, None).change().to_string(), "remove baz (remove 2-3)");
        let file = op(Verb::Install, "a", None, evr("1", "1"), Some(("/srv/a.rpm".into(), "/srv/a.rpm".into())));
        assert_eq!(file.change().to_string(), "create a (install 1-1 from /srv/a.rpm)");
        assert_eq!(file.install_arg(), "/srv/a.rpm");
    }
}

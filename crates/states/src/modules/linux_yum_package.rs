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

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::packages::{as_written, parse_wanted, read_names, FileKind, Names, Purged, Values, Wanted};
use crate::process::Output;
use crate::providers::packages::{self, Installed, Op, PackageManager, Request, Resolved, Verb};
use crate::providers::yum::{self, Evr, Tool};
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `linux.yum.package`.
#[derive(Debug, Clone)]
pub struct YumPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    pub repo: Option<String>,
    pub verify_gpg: bool,
}

/// What a package may be given.
const VALUES: Values<'static> = Values {
    purged: Purged::AsRemoved,
    refuse: &|value| {
        value.to_ascii_lowercase().ends_with(".deb").then(|| {
            (
                Kind::BadValue,
                format!("`{value}` is a Debian package"),
                "`linux.yum.package` installs `.rpm` packages; Debian packages belong to `linux.apt.package`".into(),
            )
        })
    },
    file: Some(FileKind {
        endings: &[".rpm"],
        example: "/srv/pkg-1.0-1.noarch.rpm",
        what: "an `.rpm` file",
        hint: "give the path or URL of an rpm package file, ending in `.rpm`",
    }),
    version: &|value| is_version(value).then(|| value.to_string()),
    not_a: "an rpm version, `latest`, `removed`, `purged` or an `.rpm` path",
    hint: "leave it empty for any version, or give e.g. `1.2`, `1.2-3.el9`, `latest`, `removed`, `/srv/pkg.rpm`",
};

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
            |p, path, pos, value| parse_wanted(p, &VALUES, path, pos, value),
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
        packages::check(&Yum { module: self, tool: Tool::find()? }, ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        packages::apply(&Yum { module: self, tool: Tool::find()? }, ctx, plan).await
    }
}

/// A state's packages with the package manager this machine has.
struct Yum<'a> {
    module: &'a YumPackage,
    tool: Tool,
}

impl PackageManager for Yum<'_> {
    fn packages(&self) -> &[(String, Wanted)] {
        &self.module.packages
    }

    fn program(&self) -> String {
        self.tool.program().into()
    }

    fn compare(&self, a: &str, b: &str) -> Ordering {
        yum::compare_evr(&Evr::parse(a), &Evr::parse(b))
    }

    fn matches(&self, have: &str, wanted: &str) -> bool {
        Evr::parse(have).matches(wanted)
    }

    fn max_file_bytes(&self) -> u64 {
        4 << 30
    }

    async fn installed(&self, ctx: &Ctx, names: &[&str]) -> Result<HashMap<String, Installed>, StateError> {
        let rpm = yum::installed(ctx, names).await?;
        Ok(rpm
            .into_iter()
            .map(|(name, evr)| {
                let now = Installed::at(&name, vec![evr.to_string()]);
                (name, now)
            })
            .collect())
    }

    async fn file_identity(&self, ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
        let (name, evr) = yum::rpm_identity(ctx, file).await?;
        Ok((name, evr.to_string()))
    }

    async fn resolve(&self, ctx: &Ctx, requests: &[Request<'_>]) -> Result<Vec<Resolved>, StateError> {
        // Package files alone need no repository metadata (their dependencies are resolved by
        // the transaction, from the metadata dnf has).
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let repo = self.module.repo.as_deref();
        let key = match repo {
            Some(repo) => format!("{}:{repo}", yum::REFRESH_KEY),
            None => yum::REFRESH_KEY.to_string(),
        };
        if ctx.round.first_in_round(&key) {
            if let Err(e) = yum::refresh(ctx, self.tool, repo).await {
                // Let the next state (or the retry) try the refresh again.
                ctx.round.forget(&key);
                return Err(e);
            }
        }
        let names: Vec<&str> = requests.iter().map(|r| r.name).collect();
        let offered = yum::available(ctx, self.tool, &names, repo).await?;
        let mut out = Vec::new();
        for request in requests {
            let versions = offered.get(request.name).map(Vec::as_slice).unwrap_or_default();
            // Sorted oldest first: the last is the newest.
            let to = match request.wanted {
                Wanted::Version(v) => versions.iter().rev().find(|evr| evr.matches(v)),
                _ => versions.last(),
            };
            let version = match (to, request.wanted) {
                (Some(to), _) => to.to_string(),
                (None, Wanted::Latest) if !request.now.versions.is_empty() => continue,
                (None, Wanted::Version(v)) => return Err(unavailable(request.name, versions, Some(v), repo)),
                (None, _) => return Err(unavailable(request.name, versions, None, repo)),
            };
            out.push(Resolved { package: request.name.to_string(), version });
        }
        Ok(out)
    }

    async fn install(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut options = yum::repo_options(self.module.repo.as_deref());
        if !self.module.verify_gpg {
            options.push("--nogpgcheck".into());
        }
        // dnf installs, upgrades and downgrades in one `install`; yum needs `downgrade` for those.
        let separate = |op: &&&Op| self.tool == Tool::Yum && op.verb == Verb::Downgrade;
        let installs: Vec<String> = ops.iter().filter(|op| !separate(op)).map(|op| op.install_arg("-")).collect();
        let downgrades: Vec<String> = ops.iter().filter(separate).map(|op| op.install_arg("-")).collect();
        let mut outputs = Vec::new();
        for (verb, args) in [("install", installs), ("downgrade", downgrades)] {
            if !args.is_empty() {
                let mut full = vec![verb.to_string()];
                full.extend(options.iter().cloned());
                full.extend(args);
                outputs.push(yum::run(ctx, self.tool, &full).await?);
            }
        }
        Ok(outputs)
    }

    async fn remove(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        // A removal needs no repository: none is read (no metadata download, no network).
        let mut args =
            vec!["remove".to_string(), "--setopt=clean_requirements_on_remove=0".into(), "--disablerepo=*".into()];
        args.extend(ops.iter().map(|op| op.package.clone()));
        Ok(vec![yum::run(ctx, self.tool, &args).await?])
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
}

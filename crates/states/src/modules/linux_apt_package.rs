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

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use super::packages::{as_written, parse_wanted, read_names, FileKind, Names, Purged, Values, Wanted};
use crate::process::Output;
use crate::providers::apt::{self, DpkgState};
use crate::providers::packages::{self, Installed, Op, PackageManager, Request, Resolved, Verb};
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `linux.apt.package`.
#[derive(Debug, Clone)]
pub struct AptPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    pub repo: Option<String>,
    pub debconf_file: Option<PathBuf>,
}

/// What a package may be given.
const VALUES: Values<'static> = Values {
    purged: Purged::OwnState,
    refuse: &|value| {
        value.to_ascii_lowercase().ends_with(".rpm").then(|| {
            (
                Kind::BadValue,
                format!("`{value}` is an rpm package"),
                "`linux.apt.package` installs `.deb` packages; rpm packages belong to `linux.yum.package`".into(),
            )
        })
    },
    file: Some(FileKind {
        endings: &[".deb"],
        example: "/srv/pkg_1.0_all.deb",
        what: "a `.deb` file",
        hint: "give the path of a Debian package file, ending in `.deb`",
    }),
    version: &|value| is_version(value).then(|| value.to_string()),
    not_a: "a Debian version, `latest`, `removed`, `purged` or a `.deb` path",
    hint: "leave it empty for any version, or give e.g. `1.2-1`, `latest`, `removed`, `purged`, `/srv/pkg.deb`",
};

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
            |p, path, pos, value| parse_wanted(p, &VALUES, path, pos, value),
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
        packages::check(self, ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        packages::apply(self, ctx, plan).await
    }
}

impl PackageManager for AptPackage {
    fn packages(&self) -> &[(String, Wanted)] {
        &self.packages
    }

    fn program(&self) -> String {
        "apt-get".into()
    }

    fn file_holds(&self, entry: &str, found: &str) -> bool {
        base_name(entry) == found
    }

    fn compare(&self, a: &str, b: &str) -> Ordering {
        apt::compare_versions(a, b)
    }

    fn matches(&self, have: &str, wanted: &str) -> bool {
        have == wanted
    }

    fn max_file_bytes(&self) -> u64 {
        4 << 30
    }

    async fn installed(&self, ctx: &Ctx, names: &[&str]) -> Result<HashMap<String, Installed>, StateError> {
        let dpkg = apt::installed(ctx, names).await?;
        let mut out = HashMap::new();
        for name in names {
            let mut now = Installed::absent(name);
            if let Some(known) = apt::lookup(&dpkg, name) {
                match known.state {
                    DpkgState::Installed => now.versions.push(known.version.clone()),
                    DpkgState::Broken => now.broken = Some(known.version.clone()),
                    DpkgState::ConfigFiles => now.config_files = true,
                    DpkgState::NotInstalled => {}
                }
            }
            out.insert(name.to_string(), now);
        }
        Ok(out)
    }

    async fn file_identity(&self, ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
        apt::deb_identity(ctx, file).await
    }

    async fn resolve(&self, ctx: &Ctx, requests: &[Request<'_>]) -> Result<Vec<Resolved>, StateError> {
        // Something is to be installed: the lists are refreshed first, once per round (also for
        // a `.deb`, whose dependencies come from the repositories).
        if ctx.round.first_in_round(apt::UPDATE_KEY) {
            if let Err(e) = apt::update(ctx).await {
                // Let the next state (or the retry) try the refresh again.
                ctx.round.forget(apt::UPDATE_KEY);
                return Err(e);
            }
        }
        let names: Vec<&str> = requests.iter().map(|r| r.name).collect();
        let policies = apt::policy(ctx, &names, self.repo.as_deref()).await?;
        let mut out = Vec::new();
        for request in requests {
            let policy = apt::lookup(&policies, request.name).cloned().unwrap_or_default();
            let version = match (request.wanted, &policy.candidate) {
                (Wanted::Version(v), _) if policy.available.contains(v) => v.clone(),
                (Wanted::Version(v), _) => return Err(unavailable(request.name, &policy, Some(v))),
                (_, Some(candidate)) => candidate.clone(),
                (Wanted::Latest, None) if !request.now.versions.is_empty() => continue,
                (_, None) => return Err(unavailable(request.name, &policy, None)),
            };
            out.push(Resolved { package: request.name.to_string(), version });
        }
        Ok(out)
    }

    async fn install(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut outputs = Vec::new();
        if let Some(file) = &self.debconf_file {
            outputs.push(apt::debconf_set_selections(ctx, file).await?);
        }
        let mut args = vec!["install".to_string()];
        if ops.iter().any(|op| op.verb == Verb::Downgrade) {
            args.push("--allow-downgrades".into());
        }
        if let Some(repo) = &self.repo {
            args.push("-t".into());
            args.push(repo.clone());
        }
        args.extend(ops.iter().map(|op| op.install_arg("=")));
        outputs.push(apt::apt_get(ctx, &args).await?);
        Ok(outputs)
    }

    async fn remove(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut outputs = Vec::new();
        for (verb, word) in [(Verb::Remove, "remove"), (Verb::Purge, "purge")] {
            let names: Vec<String> = ops.iter().filter(|op| op.verb == verb).map(|op| op.package.clone()).collect();
            if !names.is_empty() {
                let mut args = vec![word.to_string()];
                args.extend(names);
                outputs.push(apt::apt_get(ctx, &args).await?);
            }
        }
        Ok(outputs)
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
}

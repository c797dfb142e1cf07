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
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use super::packages::{parse_wanted, read_names, refuse_none, Names, Purged, Values, Wanted};
use crate::process::Output;
use crate::providers::packages::{self, Installed, Op, PackageManager, Request, Resolved};
use crate::providers::pip::{self, normalize};
use crate::{Ctx, Outcome, Plan, StateError};

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

/// What a package may be given (a version may be written `==1.0`).
const VALUES: Values<'static> = Values {
    purged: Purged::Refused,
    refuse: &refuse_none,
    file: None,
    version: &|value| {
        let version = value.strip_prefix("==").unwrap_or(value);
        is_version(version).then(|| version.to_string())
    },
    not_a: "a version, `latest` or `removed`",
    hint: "leave it empty for any version, or give e.g. `2.31.0`, `latest`, `removed`",
};

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
            |p, path, pos, value| parse_wanted(p, &VALUES, path, pos, value),
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
        self.refuse_externally_managed(ctx).await?;
        packages::check(self, ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.refuse_externally_managed(ctx).await?;
        packages::apply(self, ctx, plan).await
    }

    /// The system Python may be the distribution's: then only `break-system-packages` lets pip in.
    async fn refuse_externally_managed(&self, ctx: &Ctx) -> Result<(), StateError> {
        if self.virtualenv.is_none() && !self.break_system_packages {
            pip::refuse_externally_managed(ctx).await?;
        }
        Ok(())
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
}

impl PackageManager for PipPackage {
    fn packages(&self) -> &[(String, Wanted)] {
        &self.packages
    }

    fn program(&self) -> String {
        "pip".into()
    }

    fn remove_word(&self) -> &'static str {
        "uninstall"
    }

    fn canonical(&self, name: &str) -> String {
        normalize(name)
    }

    fn compare(&self, a: &str, b: &str) -> Ordering {
        pip::compare_versions(a, b)
    }

    async fn installed(&self, ctx: &Ctx, _names: &[&str]) -> Result<HashMap<String, Installed>, StateError> {
        let listed = pip::installed(ctx, self.virtualenv.as_deref()).await?;
        Ok(listed.into_iter().map(|(key, (name, version))| (key, Installed::at(&name, vec![version]))).collect())
    }

    async fn file_identity(&self, _ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
        // `parse_wanted` takes no package files for pip.
        Err(StateError::Conflict { path: file.to_path_buf(), problem: "is not installed by pip".into() })
    }

    /// pip's own plan (`--dry-run --report`): the named packages and the dependencies it would add or change.
    async fn resolve(&self, ctx: &Ctx, requests: &[Request<'_>]) -> Result<Vec<Resolved>, StateError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let specs: Vec<String> = requests
            .iter()
            .map(|r| match r.wanted {
                Wanted::Version(v) => format!("{}=={v}", r.name),
                _ => r.name.to_string(),
            })
            .collect();
        let mut args = Vec::new();
        if requests.iter().any(|r| *r.wanted == Wanted::Latest) {
            args.push("--upgrade".to_string());
        }
        args.extend(self.index_args());
        args.extend(self.system_args());
        let planned = pip::dry_run(ctx, self.virtualenv.as_deref(), &args, &specs).await?;
        Ok(planned.into_iter().map(|(package, version)| Resolved { package, version }).collect())
    }

    /// One `pip install` of every package at the version the plan showed (dependencies too).
    async fn install(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut args = vec!["install".to_string(), "--quiet".into()];
        args.extend(self.index_args());
        args.extend(self.system_args());
        args.extend(ops.iter().map(|op| op.install_arg("==")));
        Ok(vec![pip::run(ctx, self.virtualenv.as_deref(), &args).await?])
    }

    async fn remove(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut args = vec!["uninstall".to_string(), "--yes".into(), "--quiet".into()];
        args.extend(self.system_args());
        args.extend(ops.iter().map(|op| op.package.clone()));
        Ok(vec![pip::run(ctx, self.virtualenv.as_deref(), &args).await?])
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for ok in ["requests", "Flask", "zope.interface", "opsagent_test-foo", "a"] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "foo bar", "foo==1.0", "foo[extra]"] {
            assert!(!is_package_name(bad), "{bad}");
        }
        for ok in ["1.0", "2.31.0", "1.0rc1", "1!2.0", "1.0.post1", "1.0+local"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in [">=1.0", "1.0 beta", "lastest"] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}

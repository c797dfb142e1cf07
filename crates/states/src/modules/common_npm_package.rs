//! `common.npm.package` — Node.js packages installed (any version, a given one, the newest, a local tarball) or removed, with npm.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: package → wanted | required | the original's `[{"key": pkg, "value": v}]` list or a plain mapping; see below |
//! | `path` | absolute path | — (global) | install into `PATH/node_modules` (recorded in `PATH/package.json`, as `npm install` does); without it, globally (`npm install --global`, npm's prefix, usually `/usr/local/lib/node_modules`) |
//!
//! What each package may be given:
//!
//! | value | means |
//! |---|---|
//! | empty or absent | installed, any version (the registry's `latest` when it must be installed) |
//! | a version, e.g. `4.18.2` | installed at exactly that version (upgraded or downgraded to it) |
//! | `latest` | installed at the registry's `latest` version, upgraded when it moves |
//! | `removed` | not installed (`npm uninstall`) |
//! | `/path/pkg-1.0.0.tgz`, `file://` or `https://host/pkg-1.0.0.tgz` | installed from that tarball (as `npm pack` makes it), at the version in its `package.json`; the tarball's package name must be the entry's name; a URL is downloaded into the agent's cache (TLS verified) and revalidated once per round |
//!
//! "Already fine" means `npm ls --json --depth=0` lists every package at its wanted version (or
//! not at all for `removed`). `check` asks the registry which version a package would get (`npm
//! view NAME@VERSION version`, so an unknown package or version fails before anything changes) and
//! reads a tarball's `package.json`; `--test` lists each change: `create pkg (install 1.0.0)`,
//! `update pkg (upgrade 1.0.0 -> 1.1.0)`, `update pkg (downgrade 1.1.0 -> 1.0.0)`, `remove pkg
//! (uninstall 1.0.0)`, with ` from FILE` for a tarball. `apply` installs everything the state needs
//! in one `npm install` call at the versions the plan named (then one `npm uninstall`), with
//! `--no-audit --no-fund`, and reads `npm ls` again to verify. npm's registry and proxy come from
//! its configuration (`npm config`, `.npmrc`, `npm_config_*` variables).
//!
//! npm must be installed (the Debian package `npm`, or Node.js from NodeSource, which brings it);
//! a missing npm fails the state, naming it. The original installed npm with `curl --insecure
//! https://www.npmjs.org/install.sh | bash`; nothing here downloads npm.
//!
//! ```yaml
//! - id: app-modules
//!   module: common.npm.package
//!   parameter:
//!     path: /srv/app
//!     name: { express: "4.18.2", lodash: latest, left-pad: removed, internal-lib: /srv/pkgs/internal-lib-2.0.0.tgz }
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use super::packages::{as_written, parse_wanted, read_names, FileKind, Names, Purged, Values, Wanted};
use crate::process::Output;
use crate::providers::npm;
use crate::providers::packages::{self, Installed, Latest, Op, PackageManager, Request, Resolved};
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `common.npm.package`.
#[derive(Debug, Clone)]
pub struct NpmPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    /// Where `node_modules` is; `None` is global.
    pub path: Option<PathBuf>,
}

/// What a package may be given (a version may be written `v1.0.0`).
const VALUES: Values<'static> = Values {
    purged: Purged::Refused,
    refuse: &|value| {
        let lower = value.to_ascii_lowercase();
        ["git+", "git://", "github:"].iter().any(|s| lower.starts_with(s)).then(|| {
            (
                Kind::NotYetSupported,
                format!("installing a package from git (`{value}`) is not yet supported"),
                "publish it to a registry, or give a tarball made by `npm pack` (a path or an https URL)".into(),
            )
        })
    },
    file: Some(FileKind {
        endings: &[".tgz", ".tar.gz"],
        example: "/srv/pkg-1.0.0.tgz",
        what: "a package tarball",
        hint: "give a tarball made by `npm pack`, ending in `.tgz`",
    }),
    version: &|value| is_version(value).then(|| value.trim_start_matches('v').to_string()),
    not_a: "a version, `latest`, `removed` or a `.tgz` path",
    hint: "leave it empty for any version, or give e.g. `4.18.2`, `latest`, `removed`, `/srv/pkg-1.0.0.tgz`",
};

impl NpmPackage {
    pub fn from_params(state: &State) -> Result<(NpmPackage, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let packages = read_names(
            &mut p,
            &Names {
                noun: "package",
                example: "give the packages, e.g. `name: { express: \"4.18.2\", lodash: latest }`",
                problem: &|name| {
                    (!is_package_name(name)).then(|| {
                        (
                            format!("`{name}` is not an npm package name"),
                            "names are lowercase letters, digits, `-`, `.`, `_` (at most 214), optionally scoped: `@scope/name`; give the version as the value, not `name@1.0`".into(),
                        )
                    })
                },
                canonical: &as_written,
                version_in_key: false,
            },
            |p, path, pos, value| parse_wanted(p, &VALUES, path, pos, value),
        );
        let path_pos = p.node("path").and_then(|n| n.pos);
        let path = p
            .string("path")
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| check_absolute(&mut p, "path", path_pos, v.trim_end_matches('/')));
        let warnings = p.finish(&["name", "path"], &[])?;
        Ok((NpmPackage { packages, path }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        packages::check(self, ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        packages::apply(self, ctx, plan).await
    }
}

impl PackageManager for NpmPackage {
    fn packages(&self) -> &[(String, Wanted)] {
        &self.packages
    }

    fn program(&self) -> String {
        "npm".into()
    }

    fn remove_word(&self) -> &'static str {
        "uninstall"
    }

    fn compare(&self, a: &str, b: &str) -> Ordering {
        npm::compare_versions(a, b)
    }

    fn matches(&self, have: &str, wanted: &str) -> bool {
        have == wanted
    }

    fn latest(&self) -> Latest {
        Latest::Tag
    }

    async fn installed(&self, ctx: &Ctx, _names: &[&str]) -> Result<HashMap<String, Installed>, StateError> {
        let listed = npm::installed(ctx, self.path.as_deref()).await?;
        Ok(listed
            .into_iter()
            .map(|(name, version)| {
                let now = Installed::at(&name, vec![version]);
                (name, now)
            })
            .collect())
    }

    async fn file_identity(&self, ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
        npm::tarball_identity(ctx, file).await
    }

    /// The registry's version for each: the one asked for, else its `latest` dist-tag.
    async fn resolve(&self, ctx: &Ctx, requests: &[Request<'_>]) -> Result<Vec<Resolved>, StateError> {
        let mut out = Vec::new();
        for request in requests {
            let spec = match request.wanted {
                Wanted::Version(v) => v.as_str(),
                _ => "latest",
            };
            let version = npm::registry_version(ctx, self.path.as_deref(), request.name, spec).await?;
            out.push(Resolved { package: request.name.to_string(), version });
        }
        Ok(out)
    }

    async fn install(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        if let Some(path) = &self.path {
            std::fs::create_dir_all(path).map_err(StateError::io("creating directory", path))?;
        }
        let mut args = vec!["install".to_string(), "--no-audit".into(), "--no-fund".into()];
        args.extend(ops.iter().map(|op| op.install_arg("@")));
        Ok(vec![npm::run(ctx, self.path.as_deref(), args, |code| code == 0).await?])
    }

    async fn remove(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut args = vec!["uninstall".to_string(), "--no-audit".into(), "--no-fund".into()];
        args.extend(ops.iter().map(|op| op.package.clone()));
        Ok(vec![npm::run(ctx, self.path.as_deref(), args, |code| code == 0).await?])
    }
}

/// npm names: lowercase, URL-safe, at most 214 characters, optionally `@scope/name`.
fn is_package_name(name: &str) -> bool {
    let base = match name.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, base)) if is_name_part(scope) => base,
            _ => return false,
        },
        None => name,
    };
    name.len() <= 214 && is_name_part(base) && !base.starts_with(['.', '_'])
}

fn is_name_part(part: &str) -> bool {
    !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~".contains(c))
}

/// Exact semver versions: `1.2.3`, `1.2.3-rc.1`, `1.2.3+build` (a leading `v` is dropped).
fn is_version(value: &str) -> bool {
    let rest = value.strip_prefix('v').unwrap_or(value);
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for ok in ["express", "@types/node", "left-pad", "lodash.merge", "a"] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in ["Express", "@types", "foo bar", "_x", ".x", "foo@1.0.0", "@/x"] {
            assert!(!is_package_name(bad), "{bad}");
        }
        for ok in ["1.0.0", "4.18.2", "1.0.0-rc.1", "v2.0.0", "1.0.0+build.5"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["1.0", "^1.0.0", "1.x", "lastest"] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}

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

use opsagent_recipe::{Diagnostic, Kind, ParamReader, Pos, State};

use super::linux_file::check_absolute;
use super::packages::{as_written, read_names, Names};
use crate::fetch::Source;
use crate::process::{self, Limits, Output, Spec, Tail, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const NPM_HINT: &str = "install the Debian package `npm` (an earlier `linux.apt.package` state can), or Node.js \
                        with its npm";

/// Output kept from a query: `npm ls --json` is parsed whole.
const QUERY_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// A validated `common.npm.package`.
#[derive(Debug, Clone)]
pub struct NpmPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    /// Where `node_modules` is; `None` is global.
    pub path: Option<PathBuf>,
}

/// What one package should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Installed,
    Version(String),
    Latest,
    Removed,
    /// Installed from this local tarball.
    Tarball(Source),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Install,
    Upgrade,
    Downgrade,
    Remove,
}

/// The largest package tarball downloaded.
const MAX_TARBALL: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    verb: Verb,
    package: String,
    from: Option<String>,
    to: Option<String>,
    /// The file to install it from, and how the report shows it (the path or the URL).
    file: Option<(PathBuf, String)>,
}

impl Op {
    fn change(&self) -> Change {
        let (from, to) = (self.from.as_deref().unwrap_or(""), self.to.as_deref().unwrap_or(""));
        let (action, mut detail) = match self.verb {
            Verb::Install => (Action::Create, format!("install {to}")),
            Verb::Upgrade => (Action::Update, format!("upgrade {from} -> {to}")),
            Verb::Downgrade => (Action::Update, format!("downgrade {from} -> {to}")),
            Verb::Remove => (Action::Remove, format!("uninstall {from}")),
        };
        if let Some((_, shown)) = &self.file {
            detail.push_str(&format!(" from {shown}"));
        }
        Change::new(action, &self.package, detail)
    }

    /// What `npm install` gets for this package.
    fn spec(&self) -> String {
        match (&self.file, &self.to) {
            (Some((file, _)), _) => file.display().to_string(),
            (None, Some(version)) => format!("{}@{version}", self.package),
            (None, None) => self.package.clone(),
        }
    }
}

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
            parse_wanted,
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
        let ops = self.plan(ctx).await?;
        Ok(Plan { changes: ops.iter().map(Op::change).collect(), diff: None })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let ops: Vec<Op> = self
            .plan(ctx)
            .await?
            .into_iter()
            .filter(|op| plan.changes.iter().any(|c| c.target == op.package))
            .collect();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut keep = |output: Output| {
            stdout.extend_from_slice(&output.stdout.bytes);
            stderr.extend_from_slice(&output.stderr.bytes);
        };
        if let Some(path) = &self.path {
            std::fs::create_dir_all(path).map_err(StateError::io("creating directory", path))?;
        }
        let installs: Vec<String> = ops.iter().filter(|op| op.verb != Verb::Remove).map(Op::spec).collect();
        if !installs.is_empty() {
            let mut args = vec!["install".to_string(), "--no-audit".into(), "--no-fund".into()];
            args.extend(installs);
            keep(self.npm(ctx, args, &[0]).await?);
        }
        let removals: Vec<String> =
            ops.iter().filter(|op| op.verb == Verb::Remove).map(|op| op.package.clone()).collect();
        if !removals.is_empty() {
            let mut args = vec!["uninstall".to_string(), "--no-audit".into(), "--no-fund".into()];
            args.extend(removals);
            keep(self.npm(ctx, args, &[0]).await?);
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

    /// What must change, in recipe order (installs first, as they run, then removals).
    async fn plan(&self, ctx: &Ctx) -> Result<Vec<Op>, StateError> {
        let installed = self.installed(ctx).await?;
        let mut installs = Vec::new();
        let mut removals = Vec::new();
        for (name, wanted) in &self.packages {
            let now = installed.get(name).cloned();
            let to = match wanted {
                Wanted::Installed if now.is_some() => continue,
                Wanted::Version(v) if now.as_deref() == Some(v.as_str()) => continue,
                Wanted::Removed => {
                    if now.is_some() {
                        removals.push(Op {
                            verb: Verb::Remove,
                            package: name.clone(),
                            from: now,
                            to: None,
                            file: None,
                        });
                    }
                    continue;
                }
                Wanted::Installed | Wanted::Latest => (self.registry_version(ctx, name, "latest").await?, None),
                Wanted::Version(v) => (self.registry_version(ctx, name, v).await?, None),
                Wanted::Tarball(source) => {
                    let file = source.local(ctx, None, MAX_TARBALL).await?;
                    (tarball_version(ctx, name, &file).await?, Some((file, source.to_string())))
                }
            };
            let (version, file) = to;
            let verb = match &now {
                None => Verb::Install,
                Some(have) => match compare_versions(have, &version) {
                    Ordering::Less => Verb::Upgrade,
                    Ordering::Greater => Verb::Downgrade,
                    Ordering::Equal => continue,
                },
            };
            installs.push(Op { verb, package: name.clone(), from: now, to: Some(version), file });
        }
        installs.extend(removals);
        Ok(installs)
    }

    /// Reads `npm ls` again: each package of `ops` must have reached its version (or be gone).
    async fn verify(&self, ctx: &Ctx, ops: &[Op]) -> Result<(), StateError> {
        let installed = self.installed(ctx).await?;
        for op in ops {
            let now = installed.get(&op.package);
            let problem = match (op.verb, now, &op.to) {
                (Verb::Remove, Some(v), _) => Some(format!("is still installed ({v}) after `npm uninstall`")),
                (Verb::Remove, None, _) => None,
                (_, None, Some(to)) => Some(format!("is not installed after `npm install` (wanted {to})")),
                (_, Some(v), Some(to)) if v != to => Some(format!("is at {v} after `npm install`, not at {to}")),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(StateError::Package { package: op.package.clone(), problem });
            }
        }
        Ok(())
    }

    /// Installed top-level packages: name → version.
    async fn installed(&self, ctx: &Ctx) -> Result<HashMap<String, String>, StateError> {
        if self.path.as_ref().is_some_and(|p| !p.exists()) {
            return Ok(HashMap::new());
        }
        let args = vec!["ls".to_string(), "--json".into(), "--depth=0".into()];
        // `npm ls` exits 1 when the tree has problems (a missing or extraneous package); it still lists it.
        let output = match self.npm(ctx, args, &[0, 1]).await {
            Ok(output) => output,
            // A global prefix without a `lib/node_modules` yet: nothing is installed there.
            Err(StateError::Command { stdout, .. })
                if self.path.is_none() && String::from_utf8_lossy(&stdout.bytes).contains("\"code\": \"ENOENT\"") =>
            {
                return Ok(HashMap::new());
            }
            Err(e) => return Err(e),
        };
        let parsed: serde_json::Value =
            serde_json::from_slice(&output.stdout.bytes).map_err(|e| StateError::Command {
                termination: output.termination,
                stdout: output.stdout.clone().capped(ctx.round.max_output_bytes),
                stderr: Tail::from_bytes(
                    format!("`npm ls --json` printed no JSON: {e}").into_bytes(),
                    ctx.round.max_output_bytes,
                ),
            })?;
        let mut out = HashMap::new();
        if let Some(deps) = parsed["dependencies"].as_object() {
            for (name, info) in deps {
                // A package in package.json but not in node_modules has no version: not installed.
                if let Some(version) = info["version"].as_str() {
                    if info["missing"].as_bool() != Some(true) {
                        out.insert(name.clone(), version.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The version the registry gives for `name@spec` (`spec`: a version or a dist-tag).
    async fn registry_version(&self, ctx: &Ctx, name: &str, spec: &str) -> Result<String, StateError> {
        let args = vec!["view".to_string(), format!("{name}@{spec}"), "version".into(), "--json".into()];
        let output = match self.npm(ctx, args, &[0]).await {
            Ok(output) => output,
            Err(StateError::Command { termination, stdout, stderr }) => {
                let parsed: Option<serde_json::Value> = serde_json::from_slice(&stdout.bytes).ok();
                let error = parsed.as_ref().map(|v| &v["error"]);
                let code = error.and_then(|e| e["code"].as_str()).unwrap_or("");
                let summary = error.and_then(|e| e["summary"].as_str()).unwrap_or("").to_string();
                return Err(match code {
                    // npm 7 and newer: a known package without that version.
                    "E404" if summary.contains("No match found for version") => StateError::Package {
                        package: name.to_string(),
                        problem: format!("has no version {spec} in the npm registry"),
                    },
                    "E404" => StateError::Package {
                        package: name.to_string(),
                        problem: "is not in the npm registry (404 Not Found)".into(),
                    },
                    "" => StateError::Command { termination, stdout, stderr },
                    _ => StateError::Package {
                        package: name.to_string(),
                        problem: format!("cannot be looked up in the npm registry: {code}: {summary}"),
                    },
                });
            }
            Err(e) => return Err(e),
        };
        // One version prints as a JSON string; a range matching several, as a list (the last is the newest).
        let text = String::from_utf8_lossy(&output.stdout.bytes).trim().to_string();
        let version = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::String(v)) => Some(v),
            Ok(serde_json::Value::Array(list)) => list.last().and_then(|v| v.as_str()).map(str::to_string),
            _ => None,
        };
        match version {
            Some(v) => Ok(v),
            None if spec == "latest" => Err(StateError::Package {
                package: name.to_string(),
                problem: "has no `latest` version in the npm registry".into(),
            }),
            None => Err(StateError::Package {
                package: name.to_string(),
                problem: format!("has no version {spec} in the npm registry"),
            }),
        }
    }

    /// Runs npm for this state (`--global`, or `--prefix PATH` in PATH); exit codes in `ok` succeed.
    async fn npm(&self, ctx: &Ctx, mut args: Vec<String>, ok: &[i32]) -> Result<Output, StateError> {
        match &self.path {
            Some(path) => {
                args.push("--prefix".into());
                args.push(path.display().to_string());
            }
            None => args.push("--global".into()),
        }
        args.extend(["--no-update-notifier".to_string(), "--no-progress".into(), "--color=false".into()]);
        let spec =
            Spec { program: "npm".into(), args, cwd: self.path.clone().filter(|p| p.is_dir()), ..Spec::default() };
        run_query(ctx, &spec, ok, NPM_HINT).await
    }
}

/// Runs a tool with room for its whole output (parsed as JSON), exit codes in `ok` succeed.
async fn run_query(ctx: &Ctx, spec: &Spec, ok: &[i32], hint: &str) -> Result<Output, StateError> {
    let limits = Limits {
        timeout: ctx.timeout,
        kill_grace: ctx.round.kill_grace,
        max_output_bytes: QUERY_OUTPUT_BYTES.max(ctx.round.max_output_bytes),
    };
    let output = match process::run(spec, limits, &ctx.cancel).await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::MissingTool { tool: spec.program.clone(), hint: hint.into() })
        }
        Err(source) => return Err(StateError::Spawn { program: spec.program.clone(), source }),
    };
    match output.termination {
        Termination::Exited(code) if ok.contains(&code) => Ok(output),
        Termination::Cancelled => Err(StateError::Cancelled),
        termination => Err(StateError::Command {
            termination,
            stdout: output.stdout.capped(QUERY_OUTPUT_BYTES),
            stderr: output.stderr.capped(ctx.round.max_output_bytes),
        }),
    }
}

/// The version in a tarball's `package/package.json`, checked against the entry's name.
async fn tarball_version(ctx: &Ctx, name: &str, file: &Path) -> Result<String, StateError> {
    if let Err(e) = std::fs::metadata(file) {
        return Err(StateError::io("reading the package tarball", file)(e));
    }
    let spec = Spec {
        program: "tar".into(),
        args: vec!["-xzOf".into(), file.display().to_string(), "package/package.json".into()],
        ..Spec::default()
    };
    let not_a_package = || StateError::Conflict {
        path: file.to_path_buf(),
        problem: "is not an npm package tarball (no `package/package.json` with a name and version; make it with \
                  `npm pack`)"
            .into(),
    };
    let output = match run_query(ctx, &spec, &[0], "install the Debian package `tar`").await {
        Ok(output) => output,
        Err(StateError::Command { .. }) => return Err(not_a_package()),
        Err(e) => return Err(e),
    };
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout.bytes).map_err(|_| not_a_package())?;
    match (manifest["name"].as_str(), manifest["version"].as_str()) {
        (Some(n), Some(v)) if n == name => Ok(v.to_string()),
        (Some(n), Some(_)) => Err(StateError::Conflict {
            path: file.to_path_buf(),
            problem: format!("holds package `{n}`, not `{name}`; name the entry `{n}`"),
        }),
        _ => Err(not_a_package()),
    }
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
    let lower = value.to_ascii_lowercase();
    if ["git+", "git://", "github:"].iter().any(|s| lower.starts_with(s)) {
        p.report(
            Kind::NotYetSupported,
            path,
            pos,
            format!("installing a package from git (`{value}`) is not yet supported"),
            Some("publish it to a registry, or give a tarball made by `npm pack` (a path or an https URL)".into()),
        );
        return None;
    }
    if value.contains("://") || value.starts_with('/') || lower.ends_with(".tgz") || lower.ends_with(".tar.gz") {
        let source = Source::read(p, path, pos, value, "/srv/pkg-1.0.0.tgz")?;
        let name = source.file_name();
        if !(name.ends_with(".tgz") || name.ends_with(".tar.gz")) {
            p.report(
                Kind::BadValue,
                path,
                pos,
                format!("`{source}` is not a package tarball"),
                Some("give a tarball made by `npm pack`, ending in `.tgz`".into()),
            );
            return None;
        }
        return Some(Wanted::Tarball(source));
    }
    if is_version(value) {
        return Some(Wanted::Version(value.trim_start_matches('v').to_string()));
    }
    p.report(
        Kind::BadValue,
        path,
        pos,
        format!("`{value}` is not a version, `latest`, `removed` or a `.tgz` path"),
        Some("leave it empty for any version, or give e.g. `4.18.2`, `latest`, `removed`, `/srv/pkg-1.0.0.tgz`".into()),
    );
    None
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

/// Semver order, loosely: numbers numerically, a pre-release before its release.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (Vec<u64>, Option<String>) {
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre.to_string())),
            None => (v, None),
        };
        (core.split('.').map(|p| p.parse().unwrap_or(0)).collect(), pre)
    };
    let ((a_core, a_pre), (b_core, b_pre)) = (split(a), split(b));
    a_core.cmp(&b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(&y),
    })
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
        assert!(compare_versions("1.0.0", "1.1.0").is_lt());
        assert!(compare_versions("1.10.0", "1.9.0").is_gt());
        assert!(compare_versions("1.0.0-rc.1", "1.0.0").is_lt());
    }

    #[test]
    fn changes_read_like_npm() {
        let op = |verb, from: Option<&str>, to: Option<&str>, file: Option<&str>| Op {
            verb,
            package: "foo".into(),
            from: from.map(String::from),
            to: to.map(String::from),
            file: file.map(|f| (PathBuf::from(f), f.to_string())),
        };
        assert_eq!(op(Verb::Install, None, Some("1.0.0"), None).change().to_string(), "create foo (install 1.0.0)");
        let up = op(Verb::Upgrade, Some("1.0.0"), Some("1.1.0"), Some("/p/foo-1.1.0.tgz"));
        assert_eq!(up.change().to_string(), "update foo (upgrade 1.0.0 -> 1.1.0 from /p/foo-1.1.0.tgz)");
        assert_eq!(up.spec(), "/p/foo-1.1.0.tgz");
        assert_eq!(op(Verb::Install, None, Some("1.0.0"), None).spec(), "foo@1.0.0");
        assert_eq!(op(Verb::Remove, Some("1.0.0"), None, None).change().to_string(), "remove foo (uninstall 1.0.0)");
    }
}

//! npm as `common.npm.package` sees it: the installed top-level packages (`npm ls --json`), the
//! version the registry gives (`npm view NAME@SPEC version`), a tarball's name and version, semver
//! order, and npm run for one place (`--prefix PATH`, or `--global`) with no progress or notifier.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use crate::process::{self, Output, Spec, Tail};
use crate::{Ctx, StateError};

const NPM_HINT: &str = "install the Debian package `npm` (an earlier `linux.apt.package` state can), or Node.js \
                        with its npm";

/// Installed top-level packages: name → version.
pub async fn installed(ctx: &Ctx, path: Option<&Path>) -> Result<HashMap<String, String>, StateError> {
    if path.is_some_and(|p| !p.exists()) {
        return Ok(HashMap::new());
    }
    let args = vec!["ls".to_string(), "--json".into(), "--depth=0".into()];
    // `npm ls` exits 1 when the tree has problems (a missing or extraneous package); it still lists it.
    let output = match run(ctx, path, args, |code| code == 0 || code == 1).await {
        Ok(output) => output,
        // A global prefix without a `lib/node_modules` yet: nothing is installed there.
        Err(StateError::Command { stdout, .. })
            if path.is_none() && String::from_utf8_lossy(&stdout.bytes).contains("\"code\": \"ENOENT\"") =>
        {
            return Ok(HashMap::new());
        }
        Err(e) => return Err(e),
    };
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout.bytes).map_err(|e| StateError::Command {
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
pub async fn registry_version(ctx: &Ctx, path: Option<&Path>, name: &str, spec: &str) -> Result<String, StateError> {
    let args = vec!["view".to_string(), format!("{name}@{spec}"), "version".into(), "--json".into()];
    let output = match run(ctx, path, args, |code| code == 0).await {
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

/// Runs npm for this state (`--global`, or `--prefix PATH` in PATH); exit codes `accept` takes succeed.
pub async fn run(
    ctx: &Ctx,
    path: Option<&Path>,
    mut args: Vec<String>,
    accept: impl Fn(i32) -> bool,
) -> Result<Output, StateError> {
    match path {
        Some(path) => {
            args.push("--prefix".into());
            args.push(path.display().to_string());
        }
        None => args.push("--global".into()),
    }
    args.extend(["--no-update-notifier".to_string(), "--no-progress".into(), "--color=false".into()]);
    let spec = Spec {
        program: "npm".into(),
        args,
        cwd: path.filter(|p| p.is_dir()).map(Path::to_path_buf),
        ..Spec::default()
    };
    process::run_query(ctx, &spec, NPM_HINT, accept).await
}

/// The name and version in a tarball's `package/package.json`.
pub async fn tarball_identity(ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
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
    let output = match process::run_query(ctx, &spec, "install the Debian package `tar`", |code| code == 0).await {
        Ok(output) => output,
        Err(StateError::Command { .. }) => return Err(not_a_package()),
        Err(e) => return Err(e),
    };
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout.bytes).map_err(|_| not_a_package())?;
    match (manifest["name"].as_str(), manifest["version"].as_str()) {
        (Some(name), Some(version)) => Ok((name.to_string(), version.to_string())),
        _ => Err(not_a_package()),
    }
}

/// Semver order, loosely: numbers numerically, a pre-release before its release.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
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
    fn semver_order() {
        assert!(compare_versions("1.0.0", "1.1.0").is_lt());
        assert!(compare_versions("1.10.0", "1.9.0").is_gt());
        assert!(compare_versions("1.0.0-rc.1", "1.0.0").is_lt());
    }
}

//! pip as `common.pip.package` sees it: what is installed (`pip list --format=json`), what an
//! install would do (`pip install --dry-run --report -`), PEP 503 names and PEP 440 version order,
//! and pip run the way an agent must run it (no questions, no version check, known failures named).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::process::{self, Output, Spec};
use crate::providers::packages::compare_segments;
use crate::{Ctx, StateError};

const PIP_HINT: &str = "install the Debian package `python3-pip` (an earlier `linux.apt.package` state can), or give \
                        `virtualenv:` a virtualenv made by a `common.virtualenv` state";
const VENV_PIP_HINT: &str = "this virtualenv has no pip: create it again without `--without-pip` (a \
                             `common.virtualenv` state installs pip into it)";
const PYTHON_HINT: &str = "install the Debian package `python3` (an earlier `linux.apt.package` state can)";

/// Installed packages: normalised name → (name as pip shows it, version).
pub async fn installed(ctx: &Ctx, virtualenv: Option<&Path>) -> Result<HashMap<String, (String, String)>, StateError> {
    let args = ["list".to_string(), "--format=json".into()];
    let output = run(ctx, virtualenv, &args).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout.bytes).map_err(|e| StateError::Conflict {
        path: program(virtualenv),
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

/// What `pip install ARGS` would install: (name, version) of each distribution, from pip's report.
pub async fn dry_run(
    ctx: &Ctx,
    virtualenv: Option<&Path>,
    args: &[String],
    specs: &[String],
) -> Result<Vec<(String, String)>, StateError> {
    let mut full = vec!["install".to_string(), "--dry-run".into(), "--quiet".into(), "--report".into(), "-".into()];
    full.extend(args.iter().cloned());
    full.extend(specs.iter().cloned());
    let output = run(ctx, virtualenv, &full).await?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout.bytes).map_err(|e| StateError::Package {
        package: specs.join(", "),
        problem: format!(
            "cannot be planned: `pip install --dry-run --report -` printed no report ({e}); pip 22.2 or newer is \
             needed (upgrade pip in the virtualenv)"
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
pub async fn refuse_externally_managed(ctx: &Ctx) -> Result<(), StateError> {
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
/// Runs pip (the virtualenv's, else `python3 -m pip`) with ARGS; pip's known failures become clear errors.
pub async fn run(ctx: &Ctx, virtualenv: Option<&Path>, args: &[String]) -> Result<Output, StateError> {
    let (program, mut full, hint) = match virtualenv {
        Some(venv) => {
            if !venv.join("bin/python").exists() {
                return Err(StateError::Conflict {
                    path: venv.to_path_buf(),
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
        program,
        args: full,
        env: vec![("PYTHONIOENCODING".into(), "utf-8".into()), ("LC_ALL".into(), "C.UTF-8".into())],
        ..Spec::default()
    };
    match process::run_query(ctx, &spec, hint, |code| code == 0).await {
        Err(StateError::Command { termination, stdout, stderr }) => {
            let text = stderr.text();
            if virtualenv.is_none() && text.contains("No module named pip") {
                return Err(StateError::MissingTool { tool: "pip (`python3 -m pip`)".into(), hint: PIP_HINT.into() });
            }
            Err(known_failure(&text).unwrap_or(StateError::Command { termination, stdout, stderr }))
        }
        other => other,
    }
}

/// The pip a state runs, for messages.
fn program(virtualenv: Option<&Path>) -> PathBuf {
    match virtualenv {
        Some(venv) => venv.join("bin/pip"),
        None => PathBuf::from("python3 -m pip"),
    }
}

/// pip's messages for a package or version no index offers, as a [`StateError::Package`].
pub fn known_failure(stderr: &str) -> Option<StateError> {
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

/// PEP 503 normalisation: lowercase, and each run of `-`, `_`, `.` becomes one `-`.
pub fn normalize(name: &str) -> String {
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

/// Orders versions by their segments (`.-_+!`, case and a leading `v` ignored); enough for the
/// direction of a change and PEP 440 equality of release versions.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('v').to_ascii_lowercase(), b.trim_start_matches('v').to_ascii_lowercase());
    let parts = |v: &str| -> Vec<String> { v.split(|c: char| ".-_+!".contains(c)).map(str::to_string).collect() };
    let (a, b) = (parts(&a), parts(&b));
    let (a, b): (Vec<&str>, Vec<&str>) =
        (a.iter().map(String::as_str).collect(), b.iter().map(String::as_str).collect());
    compare_segments(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_versions() {
        assert_eq!(normalize("Foo__Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize("opsagent_test-foo"), "opsagent-test-foo");
        assert!(compare_versions("1.0", "1.0.0").is_eq());
        assert!(compare_versions("1.0", "1.1").is_lt());
        assert!(compare_versions("1.10", "1.9").is_gt());
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

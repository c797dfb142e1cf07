//! RubyGems as `common.gem.package` sees it: the installed gems (`gem list --local`), the
//! versions a source offers (`gem list --remote --exact --all`), a `.gem` file's name and version
//! (`gem spec`), gem version order, and `gem` run with room for its whole output.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use crate::process::{self, Output, Spec};
use crate::providers::packages::compare_segments;
use crate::{Ctx, StateError};

const GEM_HINT: &str = "install the Debian package `ruby` (an earlier `linux.apt.package` state can)";

/// Installed gems: name → versions (default gems included).
pub async fn installed(ctx: &Ctx) -> Result<HashMap<String, Vec<String>>, StateError> {
    let output = run(ctx, vec!["list".into(), "--local".into()]).await?;
    Ok(parse_gem_list(&String::from_utf8_lossy(&output.stdout.bytes)))
}

/// The version the gem sources give: `version` if it has it, else its newest; an error naming the gem otherwise.
pub async fn offered(
    ctx: &Ctx,
    name: &str,
    version: Option<&str>,
    source_args: &[String],
) -> Result<String, StateError> {
    let mut args = vec!["list".to_string(), "--remote".into(), "--exact".into(), "--all".into(), name.to_string()];
    args.extend(source_args.iter().cloned());
    let output = run(ctx, args).await?;
    let remote = parse_gem_list(&String::from_utf8_lossy(&output.stdout.bytes));
    let mut versions = remote.get(name).cloned().unwrap_or_default();
    if versions.is_empty() {
        return Err(StateError::Package {
            package: name.to_string(),
            problem: "is not offered by the gem sources".into(),
        });
    }
    versions.sort_by(|a, b| compare_versions(a, b));
    match version {
        Some(v) if versions.iter().any(|have| have == v) => Ok(v.to_string()),
        Some(v) => Err(StateError::Package {
            package: name.to_string(),
            problem: format!("has no version {v} in the gem sources (available: {})", versions.join(", ")),
        }),
        // `versions` is not empty here (checked above).
        None => Ok(versions.last().cloned().unwrap_or_default()),
    }
}

/// Runs `gem ARGS` with room for its whole output.
pub async fn run(ctx: &Ctx, args: Vec<String>) -> Result<Output, StateError> {
    let spec = Spec { program: "gem".into(), args, env: vec![("LC_ALL".into(), "C.UTF-8".into())], ..Spec::default() };
    process::run_query(ctx, &spec, GEM_HINT, |code| code == 0).await
}

/// The name and version in a `.gem` file (`gem spec FILE`).
pub async fn file_identity(ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
    if let Err(e) = std::fs::metadata(file) {
        return Err(StateError::io("reading the gem file", file)(e));
    }
    let not_a_gem = || StateError::Conflict {
        path: file.to_path_buf(),
        problem: "is not a gem (no name and version in its specification; make it with `gem build`)".into(),
    };
    let field = |args: Vec<String>| async move {
        match run(ctx, args).await {
            // `gem spec FILE FIELD` prints YAML: `--- value` or a `version:` line.
            Ok(output) => Ok(String::from_utf8_lossy(&output.stdout.bytes).into_owned()),
            Err(StateError::Command { .. }) => Err(not_a_gem()),
            Err(e) => Err(e),
        }
    };
    let shown = file.display().to_string();
    let found_name = field(vec!["spec".into(), shown.clone(), "name".into()]).await?;
    let found_name = found_name.trim().trim_start_matches("---").trim().to_string();
    let version = field(vec!["spec".into(), shown, "version".into()]).await?;
    let version = version.lines().find_map(|l| l.trim().strip_prefix("version:")).map(|v| v.trim().to_string());
    match version {
        Some(v) if !found_name.is_empty() && !v.is_empty() => Ok((found_name, v.trim_matches(['"', '\'']).to_string())),
        _ => Err(not_a_gem()),
    }
}

/// `gem list` lines: `name (1.1.0, 1.0.0)`, `json (default: 2.6.1)`, `nokogiri (1.15.0 x86_64-linux)`.
fn parse_gem_list(text: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.trim().split_once(" (") else { continue };
        let Some(list) = rest.strip_suffix(')') else { continue };
        let versions = list
            .split(", ")
            .filter_map(|v| v.trim().trim_start_matches("default:").split_whitespace().next())
            .map(str::to_string)
            .collect();
        out.insert(name.to_string(), versions);
    }
    out
}

/// Gem version order: segments numerically where both are numbers (`1.10` after `1.9`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    compare_segments(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gem_list() {
        let list = parse_gem_list(
            "\n*** LOCAL GEMS ***\n\nfoo (1.1.0, 1.0.0)\njson (default: 2.6.1)\nnokogiri (1.15.0 x86_64-linux)\n",
        );
        assert_eq!(list["foo"], ["1.1.0", "1.0.0"]);
        assert_eq!(list["json"], ["2.6.1"]);
        assert_eq!(list["nokogiri"], ["1.15.0"]);
        assert!(compare_versions("1.10.0", "1.9.0").is_gt());
    }
}

//! `common.gem.package` — Ruby gems installed (any version, a given one, the newest, a local `.gem`) or removed, with `gem`.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: gem → wanted | required | the original's `[{"key": gem, "value": v}]` list or a plain mapping; see below |
//! | `source` | URL | RubyGems' configured sources | ours: the only gem source to use (`gem --clear-sources --source URL`), e.g. an internal mirror or a `file:///` directory made by `gem generate_index` |
//!
//! What each gem may be given:
//!
//! | value | means |
//! |---|---|
//! | empty or absent | installed, any version (the source's newest when it must be installed) |
//! | a version, e.g. `13.0.6` | that version installed (gems live side by side: other installed versions stay) |
//! | `latest` | the source's newest version installed |
//! | `removed` | no version installed (`gem uninstall --all --executables`) |
//! | `/path/name-1.0.0.gem`, `file://` or `https://host/name-1.0.0.gem` | installed from that file (as `gem build` makes it), at its version; the file's gem name must be the entry's name; a URL is downloaded into the agent's cache (TLS verified) and revalidated once per round |
//!
//! "Already fine" means `gem list --local` shows every gem as wanted. `check` asks the source which
//! versions it has (`gem list --remote --exact --all`, so an unknown gem or version fails before
//! anything changes) and reads a `.gem` file's name and version (`gem spec`); `--test` lists each
//! change: `create gem (install 1.0.0)`, `update gem (install 1.1.0 beside 1.0.0)`, `remove gem
//! (uninstall 1.0.0)`, with ` from FILE` for a file. `apply` installs everything in one `gem install
//! --no-document` call (`name:version` each), then one `gem uninstall`, and reads `gem list`
//! again to verify. Gems go where `gem` puts them for the agent's user (`GEM_HOME` is honoured).
//!
//! `gem` must be installed (the Debian package `ruby`); a missing one fails the state, naming it.
//! The original installed `rubygems` first and split `name==version` entries into separate steps.
//!
//! ```yaml
//! - id: tools
//!   module: common.gem.package
//!   parameter:
//!     name: { bundler: "", rake: "13.0.6", rubocop: latest, sass: removed }
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, Pos, State};

use super::packages::{as_written, read_names, Names};
use crate::fetch::Source;
use crate::process::{self, Limits, Output, Spec, Tail, Termination};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

const GEM_HINT: &str = "install the Debian package `ruby` (an earlier `linux.apt.package` state can)";

/// Output kept from a query: `gem list` is parsed whole.
const QUERY_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// A validated `common.gem.package`.
#[derive(Debug, Clone)]
pub struct GemPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    pub source: Option<String>,
}

/// What one gem should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Installed,
    Version(String),
    Latest,
    Removed,
    /// Installed from this `.gem` file (a path or an http(s) URL).
    File(Source),
}

/// The largest `.gem` file downloaded.
const MAX_GEM: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    remove: bool,
    package: String,
    /// The versions installed now.
    from: Vec<String>,
    to: Option<String>,
    /// The file to install it from, and how the report shows it (the path or the URL).
    file: Option<(PathBuf, String)>,
}

impl Op {
    fn change(&self) -> Change {
        let to = self.to.as_deref().unwrap_or("");
        let (action, mut detail) = match (self.remove, self.from.is_empty()) {
            (true, _) => (Action::Remove, format!("uninstall {}", self.from.join(", "))),
            (false, true) => (Action::Create, format!("install {to}")),
            (false, false) => (Action::Update, format!("install {to} beside {}", self.from.join(", "))),
        };
        if let Some((_, shown)) = &self.file {
            detail.push_str(&format!(" from {shown}"));
        }
        Change::new(action, &self.package, detail)
    }

    /// What `gem install` gets for this gem.
    fn spec(&self) -> String {
        match (&self.file, &self.to) {
            (Some((file, _)), _) => file.display().to_string(),
            (None, Some(version)) => format!("{}:{version}", self.package),
            (None, None) => self.package.clone(),
        }
    }
}

impl GemPackage {
    pub fn from_params(state: &State) -> Result<(GemPackage, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        // The original's `name==version` keys are read as `name: version`.
        let packages = read_names(
            &mut p,
            &Names {
                noun: "gem",
                example: "give the gems, e.g. `name: { rake: \"13.0.6\", bundler: latest }`",
                problem: &|name| {
                    (!is_gem_name(name)).then(|| {
                        (
                            format!("`{name}` is not a gem name"),
                            "gem names are letters, digits, `-`, `_` and `.`, e.g. `rake`".into(),
                        )
                    })
                },
                canonical: &as_written,
                version_in_key: true,
            },
            parse_wanted,
        );
        let source_pos = p.node("source").and_then(|n| n.pos);
        let source = p.string("source").filter(|s| !s.trim().is_empty());
        if let Some(url) = &source {
            if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file://")) {
                p.report(
                    Kind::BadValue,
                    "source",
                    source_pos,
                    format!("`{url}` is not a gem source URL"),
                    Some("give the source's URL, e.g. `https://rubygems.org/` or `file:///srv/gems/`".into()),
                );
            }
        }
        let warnings = p.finish(&["name", "source"], &[])?;
        Ok((GemPackage { packages, source }, warnings))
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
        let installs: Vec<String> = ops.iter().filter(|op| !op.remove).map(Op::spec).collect();
        if !installs.is_empty() {
            let mut args = vec!["install".to_string(), "--no-document".into()];
            args.extend(self.source_args());
            args.extend(installs);
            keep(gem(ctx, args).await?);
        }
        let removals: Vec<String> = ops.iter().filter(|op| op.remove).map(|op| op.package.clone()).collect();
        if !removals.is_empty() {
            let mut args =
                vec!["uninstall".to_string(), "--all".into(), "--executables".into(), "--ignore-dependencies".into()];
            args.extend(removals);
            keep(gem(ctx, args).await?);
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
            let now = installed.get(name).cloned().unwrap_or_default();
            let has = |v: &str| now.iter().any(|have| have == v);
            let (version, file) = match wanted {
                Wanted::Installed if !now.is_empty() => continue,
                Wanted::Version(v) if has(v) => continue,
                Wanted::Removed => {
                    if !now.is_empty() {
                        removals.push(Op { remove: true, package: name.clone(), from: now, to: None, file: None });
                    }
                    continue;
                }
                Wanted::Installed | Wanted::Latest => (self.offered(ctx, name, None).await?, None),
                Wanted::Version(v) => (self.offered(ctx, name, Some(v)).await?, None),
                Wanted::File(source) => {
                    let file = source.local(ctx, None, MAX_GEM).await?;
                    (gem_file_version(ctx, name, &file).await?, Some((file, source.to_string())))
                }
            };
            if has(&version) {
                continue;
            }
            installs.push(Op { remove: false, package: name.clone(), from: now, to: Some(version), file });
        }
        installs.extend(removals);
        Ok(installs)
    }

    /// Reads `gem list` again: each gem of `ops` must have its version (or none at all).
    async fn verify(&self, ctx: &Ctx, ops: &[Op]) -> Result<(), StateError> {
        let installed = self.installed(ctx).await?;
        for op in ops {
            let now = installed.get(&op.package).cloned().unwrap_or_default();
            let problem = match &op.to {
                None if !now.is_empty() => {
                    Some(format!("is still installed ({}) after `gem uninstall`", now.join(", ")))
                }
                Some(to) if !now.contains(to) => Some(format!(
                    "is not installed at {to} after `gem install` (installed: {})",
                    if now.is_empty() { "none".to_string() } else { now.join(", ") }
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(StateError::Package { package: op.package.clone(), problem });
            }
        }
        Ok(())
    }

    /// Installed gems: name → versions (default gems included).
    async fn installed(&self, ctx: &Ctx) -> Result<HashMap<String, Vec<String>>, StateError> {
        let output = gem(ctx, vec!["list".into(), "--local".into()]).await?;
        Ok(parse_gem_list(&String::from_utf8_lossy(&output.stdout.bytes)))
    }

    /// The version the source gives: `version` if it has it, else its newest; an error naming the gem otherwise.
    async fn offered(&self, ctx: &Ctx, name: &str, version: Option<&str>) -> Result<String, StateError> {
        let mut args = vec!["list".to_string(), "--remote".into(), "--exact".into(), "--all".into(), name.to_string()];
        args.extend(self.source_args());
        let output = gem(ctx, args).await?;
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

    fn source_args(&self) -> Vec<String> {
        match &self.source {
            Some(url) => vec!["--clear-sources".into(), "--source".into(), url.clone()],
            None => Vec::new(),
        }
    }
}

/// Runs `gem ARGS` with room for its whole output.
async fn gem(ctx: &Ctx, args: Vec<String>) -> Result<Output, StateError> {
    let spec = Spec { program: "gem".into(), args, env: vec![("LC_ALL".into(), "C.UTF-8".into())], ..Spec::default() };
    let limits = Limits {
        timeout: ctx.timeout,
        kill_grace: ctx.round.kill_grace,
        max_output_bytes: QUERY_OUTPUT_BYTES.max(ctx.round.max_output_bytes),
    };
    let output = match process::run(&spec, limits, &ctx.cancel).await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::MissingTool { tool: "gem".into(), hint: GEM_HINT.into() })
        }
        Err(source) => return Err(StateError::Spawn { program: "gem".into(), source }),
    };
    match output.termination {
        Termination::Exited(0) => Ok(output),
        Termination::Cancelled => Err(StateError::Cancelled),
        termination => {
            let max = ctx.round.max_output_bytes;
            Err(StateError::Command {
                termination,
                stdout: output.stdout.capped(max),
                stderr: output.stderr.capped(max),
            })
        }
    }
}

/// The version in a `.gem` file (`gem spec FILE`), checked against the entry's name.
async fn gem_file_version(ctx: &Ctx, name: &str, file: &Path) -> Result<String, StateError> {
    if let Err(e) = std::fs::metadata(file) {
        return Err(StateError::io("reading the gem file", file)(e));
    }
    let not_a_gem = || StateError::Conflict {
        path: file.to_path_buf(),
        problem: "is not a gem (no name and version in its specification; make it with `gem build`)".into(),
    };
    let field = |args: Vec<String>| async move {
        match gem(ctx, args).await {
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
        Some(v) if found_name == name && !v.is_empty() => Ok(v.trim_matches(['"', '\'']).to_string()),
        Some(_) if !found_name.is_empty() => Err(StateError::Conflict {
            path: file.to_path_buf(),
            problem: format!("holds gem `{found_name}`, not `{name}`; name the entry `{found_name}`"),
        }),
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

/// Reads one gem's wanted state.
fn parse_wanted(p: &mut ParamReader<'_>, path: &str, pos: Option<Pos>, value: &str) -> Option<Wanted> {
    let value = value.trim();
    match value {
        "" => return Some(Wanted::Installed),
        "latest" => return Some(Wanted::Latest),
        "removed" => return Some(Wanted::Removed),
        _ => {}
    }
    if value.contains("://") || value.starts_with('/') || value.ends_with(".gem") {
        let source = Source::read(p, path, pos, value, "/srv/x-1.0.0.gem")?;
        if !source.file_name().ends_with(".gem") {
            p.report(
                Kind::BadValue,
                path,
                pos,
                format!("`{source}` is not a `.gem` file"),
                Some("give a gem file made by `gem build`, ending in `.gem`".into()),
            );
            return None;
        }
        return Some(Wanted::File(source));
    }
    if value.starts_with(|c: char| c.is_ascii_digit()) && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return Some(Wanted::Version(value.to_string()));
    }
    p.report(
        Kind::BadValue,
        path,
        pos,
        format!("`{value}` is not a version, `latest`, `removed` or a `.gem` path"),
        Some("leave it empty for any version, or give e.g. `13.0.6`, `latest`, `removed`, `/srv/x-1.0.0.gem`".into()),
    );
    None
}

fn is_gem_name(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Gem version order: segments numerically where both are numbers (`1.10` after `1.9`).
fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or("0"), b.get(i).copied().unwrap_or("0"));
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
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

    #[test]
    fn changes_read_like_gem() {
        let op = |remove, from: &[&str], to: Option<&str>| Op {
            remove,
            package: "foo".into(),
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.map(String::from),
            file: None,
        };
        assert_eq!(op(false, &[], Some("1.0.0")).change().to_string(), "create foo (install 1.0.0)");
        assert_eq!(
            op(false, &["1.0.0"], Some("1.1.0")).change().to_string(),
            "update foo (install 1.1.0 beside 1.0.0)"
        );
        assert_eq!(op(true, &["1.1.0", "1.0.0"], None).change().to_string(), "remove foo (uninstall 1.1.0, 1.0.0)");
        assert_eq!(op(false, &[], Some("1.0.0")).spec(), "foo:1.0.0");
    }
}

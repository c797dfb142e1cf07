//! apt and dpkg as the package modules see them: what dpkg has installed (`dpkg-query`), what the
//! repositories offer (`apt-cache policy`), Debian version order, and `apt-get` run the way an
//! agent must run it (no questions, old config files kept, a held lock named as such).
//!
//! Every query runs with `LC_ALL=C`, so that the output parsed here is never translated.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::process::{self, Output, Spec, Tail, Termination};
use crate::{Ctx, StateError};

/// The hint given when a tool of apt or dpkg is missing.
pub const INSTALL_HINT: &str = "the apt modules run only on Debian and Ubuntu, where `apt-get` and `dpkg` are part of \
                                the base system";

/// The lock apt takes before it lets dpkg change anything.
pub const FRONTEND_LOCK: &str = "/var/lib/dpkg/lock-frontend";

/// The once-per-round key of the package database refresh (`apt-get update`).
pub const UPDATE_KEY: &str = "apt-update";

/// What dpkg knows of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub state: DpkgState,
    /// Empty when dpkg has no version (never installed).
    pub version: String,
}

/// The third word of dpkg's `Status`, sorted into what the modules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpkgState {
    /// `installed` (and `triggers-pending`/`triggers-awaited`: installed, with triggers to run).
    Installed,
    /// `config-files`: removed, its configuration files left.
    ConfigFiles,
    /// `not-installed`, or unknown to dpkg.
    NotInstalled,
    /// `half-installed`, `unpacked`, `half-configured`: an interrupted installation.
    Broken,
}

impl Installed {
    pub const ABSENT: Installed = Installed { state: DpkgState::NotInstalled, version: String::new() };

    pub fn is_installed(&self) -> bool {
        self.state == DpkgState::Installed
    }
}

/// What the repositories offer for a package (from `apt-cache policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The version `apt-get install NAME` would install.
    pub candidate: Option<String>,
    /// Every version some repository offers (not the ones only dpkg's status knows).
    pub available: Vec<String>,
}

/// dpkg's view of `names` (all of them: a name dpkg does not know is [`Installed::ABSENT`]).
pub async fn installed(ctx: &Ctx, names: &[&str]) -> Result<HashMap<String, Installed>, StateError> {
    let mut out: HashMap<String, Installed> = names.iter().map(|n| (n.to_string(), Installed::ABSENT)).collect();
    if names.is_empty() {
        return Ok(out);
    }
    let mut args = vec!["-W".to_string(), "-f=${binary:Package}\t${Package}\t${Status}\t${Version}\n".to_string()];
    args.extend(names.iter().map(|n| n.to_string()));
    // dpkg-query exits 1 when some name matches nothing: those stay absent.
    let output = query(ctx, "dpkg-query", args, &[0, 1]).await?;
    if output.termination == Termination::Exited(1) {
        let stderr = output.stderr.text();
        if let Some(line) = stderr.lines().find(|l| !l.trim().is_empty() && !l.contains("no packages found matching")) {
            return Err(StateError::Package {
                package: names.join(" "),
                problem: format!("cannot be queried: {line}"),
            });
        }
    }
    for (binary, package, installed) in parse_dpkg_query(&String::from_utf8_lossy(&output.stdout.bytes)) {
        for key in [binary, package] {
            if let Some(slot) = out.get_mut(&key) {
                // With several architectures of one name, an installed one wins.
                if slot.state != DpkgState::Installed {
                    *slot = installed.clone();
                }
            }
        }
    }
    Ok(out)
}

/// What the repositories offer for `names`; `release` is the target release (`-t`), if any.
/// A name no repository knows is missing from the result.
pub async fn policy(ctx: &Ctx, names: &[&str], release: Option<&str>) -> Result<HashMap<String, Policy>, StateError> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let mut args = Vec::new();
    if let Some(release) = release {
        args.push("-o".to_string());
        args.push(format!("APT::Default-Release={release}"));
    }
    args.push("policy".to_string());
    args.extend(names.iter().map(|n| n.to_string()));
    let output = match query(ctx, "apt-cache", args, &[0]).await {
        Ok(output) => output,
        Err(StateError::Command { termination, stdout, stderr }) => {
            // apt says why on an `E:` line (an unknown target release, a broken sources file).
            let text = stderr.text();
            return Err(match text.lines().find_map(|l| l.strip_prefix("E: ")) {
                Some(reason) => StateError::Package {
                    package: names.join(", "),
                    problem: format!("cannot be looked up in the repositories: {}", reason.trim()),
                },
                None => StateError::Command { termination, stdout, stderr },
            });
        }
        Err(e) => return Err(e),
    };
    Ok(parse_policy(&String::from_utf8_lossy(&output.stdout.bytes)))
}

/// The `Package` and `Version` fields of a `.deb` file.
pub async fn deb_identity(ctx: &Ctx, path: &Path) -> Result<(String, String), StateError> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(StateError::io("reading the package file", path)(e));
    }
    let args = vec!["-f".to_string(), path.display().to_string(), "Package".into(), "Version".into()];
    let output = query(ctx, "dpkg-deb", args, &[0]).await?;
    let text = String::from_utf8_lossy(&output.stdout.bytes).into_owned();
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':'))).map(|v| v.trim().to_string())
    };
    match (field("Package"), field("Version")) {
        (Some(package), Some(version)) if !package.is_empty() && !version.is_empty() => Ok((package, version)),
        _ => Err(StateError::Conflict {
            path: path.to_path_buf(),
            problem: "is not a Debian package (no `Package` and `Version` in its control file)".into(),
        }),
    }
}

/// Refreshes the package lists (`apt-get update`).
pub async fn update(ctx: &Ctx) -> Result<Output, StateError> {
    apt_get(ctx, &["update".to_string()]).await
}

/// Fetches the lists of one sources file alone (every other list is kept). A source that cannot
/// be fetched or verified is an error naming the file, with apt's reason: `apt-get update` itself
/// only warns about those.
pub async fn update_source(ctx: &Ctx, list: &Path) -> Result<Output, StateError> {
    let args = [
        "update".to_string(),
        "-o".into(),
        format!("Dir::Etc::sourcelist={}", list.display()),
        "-o".into(),
        "Dir::Etc::sourceparts=-".into(),
        "-o".into(),
        "APT::Get::List-Cleanup=0".into(),
    ];
    let (stderr, result) = match apt_get(ctx, &args).await {
        Ok(output) => (output.stderr.text(), Ok(output)),
        Err(StateError::Command { termination, stdout, stderr }) => {
            (stderr.text(), Err(StateError::Command { termination, stdout, stderr }))
        }
        Err(e) => return Err(e),
    };
    let reason = stderr.lines().map(str::trim).find(|l| {
        l.starts_with("E:")
            || l.starts_with("W: Failed to fetch")
            || l.starts_with("W: GPG error")
            || l.starts_with("W: The repository")
    });
    match (reason, result) {
        (None, Ok(output)) => Ok(output),
        (reason, result) => Err(StateError::Conflict {
            path: list.to_path_buf(),
            problem: format!(
                "was put back as it was: its source could not be fetched and verified ({}); check the name, the \
                 series and the network, and give the signing key (`key-file`)",
                reason.map(str::to_string).unwrap_or_else(|| result.err().map(|e| e.to_string()).unwrap_or_default())
            ),
        }),
    }
}

/// Runs `apt-get ARGS` non-interactively: `-y`, keep changed config files, wait a while for a
/// lock held by another apt or dpkg. A held lock and an unknown package become clear errors.
pub async fn apt_get(ctx: &Ctx, args: &[String]) -> Result<Output, StateError> {
    // Wait for the lock at most half of the state's time, so that our own message (not our
    // timeout) reports a lock that stays held.
    let lock_wait = (ctx.timeout.as_secs() / 2).clamp(1, 120);
    let mut full = vec![
        "-y".to_string(),
        "-q".to_string(),
        "-o".into(),
        "Dpkg::Options::=--force-confdef".into(),
        "-o".into(),
        "Dpkg::Options::=--force-confold".into(),
        "-o".into(),
        format!("DPkg::Lock::Timeout={lock_wait}"),
        // No pseudo-terminal for dpkg: its progress lines would fill the reported output.
        "-o".into(),
        "Dpkg::Use-Pty=0".into(),
    ];
    full.extend(args.iter().cloned());
    let spec = Spec { program: "apt-get".into(), args: full, env: apt_env(), ..Spec::default() };
    match process::run_spec(ctx, &spec, INSTALL_HINT).await {
        Err(StateError::Command { termination, stdout, stderr }) => Err(explain_failure(termination, stdout, stderr)),
        other => other,
    }
}

/// Applies a debconf selections file (`debconf-set-selections FILE`).
pub async fn debconf_set_selections(ctx: &Ctx, file: &Path) -> Result<Output, StateError> {
    if let Err(e) = std::fs::metadata(file) {
        return Err(StateError::io("reading the debconf selections file", file)(e));
    }
    let spec = Spec {
        program: "debconf-set-selections".into(),
        args: vec![file.display().to_string()],
        env: apt_env(),
        ..Spec::default()
    };
    process::run_spec(ctx, &spec, "`debconf-set-selections` comes with the `debconf` package").await
}

/// Compares two Debian versions the way dpkg does (epoch, upstream version, revision; `~` sorts
/// before everything, even the end of the string).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (epoch_a, rest_a) = split_epoch(a);
    let (epoch_b, rest_b) = split_epoch(b);
    if epoch_a != epoch_b {
        return epoch_a.cmp(&epoch_b);
    }
    let (upstream_a, revision_a) = rest_a.rsplit_once('-').unwrap_or((rest_a, ""));
    let (upstream_b, revision_b) = rest_b.rsplit_once('-').unwrap_or((rest_b, ""));
    compare_part(upstream_a, upstream_b).then_with(|| compare_part(revision_a, revision_b))
}

/// Parses `dpkg-query -f '${binary:Package}\t${Package}\t${Status}\t${Version}\n'` output.
pub fn parse_dpkg_query(text: &str) -> Vec<(String, String, Installed)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [binary, package, status, version] = fields[..] else {
            continue;
        };
        let state = match status.split_whitespace().nth(2) {
            Some("installed" | "triggers-pending" | "triggers-awaited") => DpkgState::Installed,
            Some("config-files") => DpkgState::ConfigFiles,
            Some("half-installed" | "unpacked" | "half-configured") => DpkgState::Broken,
            _ => DpkgState::NotInstalled,
        };
        let version = if state == DpkgState::NotInstalled { String::new() } else { version.to_string() };
        out.push((binary.to_string(), package.to_string(), Installed { state, version }));
    }
    out
}

/// Parses `apt-cache policy NAME…` output (in the C locale).
pub fn parse_policy(text: &str) -> HashMap<String, Policy> {
    let mut out: HashMap<String, Policy> = HashMap::new();
    let mut current: Option<String> = None;
    let mut in_table = false;
    // The version being read in the table, and whether some repository (not only dpkg's
    // status file) offers it.
    let mut pending: Option<(String, bool)> = None;
    let flush = |out: &mut HashMap<String, Policy>, current: &Option<String>, pending: &mut Option<(String, bool)>| {
        if let (Some(name), Some((version, true))) = (current, pending.take()) {
            out.entry(name.clone()).or_default().available.push(version);
        }
    };
    for line in text.lines() {
        if !line.starts_with(' ') {
            flush(&mut out, &current, &mut pending);
            current = line.strip_suffix(':').map(str::to_string);
            in_table = false;
            if let Some(name) = &current {
                out.entry(name.clone()).or_default();
            }
            continue;
        }
        let Some(name) = &current else { continue };
        let trimmed = line.trim();
        if let Some(candidate) = trimmed.strip_prefix("Candidate:") {
            let candidate = candidate.trim();
            out.entry(name.clone()).or_default().candidate =
                (candidate != "(none)" && !candidate.is_empty()).then(|| candidate.to_string());
        } else if trimmed == "Version table:" {
            in_table = true;
        } else if in_table {
            // Versions are indented by 5 (` *** ` marks the installed one), their sources by 8.
            let indent = line.len() - line.trim_start().len();
            let tokens: Vec<&str> = trimmed.trim_start_matches("***").split_whitespace().collect();
            if line.starts_with(" *** ") || indent <= 5 {
                // "1.1 500": a version and its priority.
                flush(&mut out, &current, &mut pending);
                pending = tokens.first().map(|v| (v.to_string(), false));
            } else if let [_priority, source, ..] = tokens[..] {
                // "500 file:/repo ./ Packages" or "100 /var/lib/dpkg/status": where it comes from.
                if let Some((_, offered)) = &mut pending {
                    *offered |= source != "/var/lib/dpkg/status";
                }
            }
        }
    }
    flush(&mut out, &current, &mut pending);
    out
}

/// Finds `name` in a per-package map; `name:arch` falls back to `name`.
pub fn lookup<'a, T>(map: &'a HashMap<String, T>, name: &str) -> Option<&'a T> {
    map.get(name).or_else(|| name.split_once(':').and_then(|(base, _)| map.get(base)))
}

/// The environment of every apt and dpkg command.
fn apt_env() -> Vec<(String, String)> {
    vec![
        ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
        ("APT_LISTCHANGES_FRONTEND".into(), "none".into()),
        ("LC_ALL".into(), "C".into()),
    ]
}

/// Runs a read-only query; exit codes in `ok` are success.
async fn query(ctx: &Ctx, program: &str, args: Vec<String>, ok: &[i32]) -> Result<Output, StateError> {
    let spec = Spec { program: program.into(), args, env: apt_env(), ..Spec::default() };
    process::run_query(ctx, &spec, INSTALL_HINT, |code| ok.contains(&code)).await
}

/// Turns a failed apt-get into a clear error where apt said why.
fn explain_failure(termination: Termination, stdout: Tail, stderr: Tail) -> StateError {
    let text = stderr.text();
    let locked = text.lines().find(|l| {
        l.contains("Could not get lock")
            || l.contains("Unable to acquire the dpkg frontend lock")
            || l.contains("Unable to lock")
    });
    if let Some(line) = locked {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(|w| w.trim_end_matches([',', '.']).to_string())
            .unwrap_or_else(|| FRONTEND_LOCK.to_string());
        return StateError::Conflict {
            path: PathBuf::from(path),
            problem: "is locked: another apt or dpkg is running (an unattended upgrade?); the state is retried, or \
                      run it again once that one has finished"
                .into(),
        };
    }
    if let Some(package) = text.lines().find_map(|l| l.strip_prefix("E: Unable to locate package ")) {
        return StateError::Package {
            package: package.trim().to_string(),
            problem: "is not available from any configured repository".into(),
        };
    }
    StateError::Command { termination, stdout, stderr }
}

fn split_epoch(version: &str) -> (u64, &str) {
    match version.split_once(':') {
        Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => (epoch.parse().unwrap_or(0), rest),
        _ => (0, version),
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        let non_digit_a = a.iter().take_while(|c| !c.is_ascii_digit()).count();
        let non_digit_b = b.iter().take_while(|c| !c.is_ascii_digit()).count();
        let (text_a, rest_a) = a.split_at(non_digit_a);
        let (text_b, rest_b) = b.split_at(non_digit_b);
        for i in 0..text_a.len().max(text_b.len()) {
            let order = char_order(text_a.get(i).copied()).cmp(&char_order(text_b.get(i).copied()));
            if order != Ordering::Equal {
                return order;
            }
        }
        let digits_a = rest_a.iter().take_while(|c| c.is_ascii_digit()).count();
        let digits_b = rest_b.iter().take_while(|c| c.is_ascii_digit()).count();
        let (num_a, next_a) = rest_a.split_at(digits_a);
        let (num_b, next_b) = rest_b.split_at(digits_b);
        let order = compare_digits(num_a, num_b);
        if order != Ordering::Equal {
            return order;
        }
        a = next_a;
        b = next_b;
    }
    Ordering::Equal
}

/// The sort weight of one character of a non-digit run: `~` first, then the end, then letters,
/// then everything else.
fn char_order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|c| *c == b'0').collect() };
    let (a, b) = (strip(a), strip(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_dpkg_sorts_them() {
        let ordered =
            ["0.9", "1.0~rc1", "1.0", "1.0-1", "1.0-1+b1", "1.0-2", "1.0a", "1.0+dfsg", "1.1", "1.10", "2", "1:0.1"];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare_versions("1.01", "1.1"), Ordering::Equal);
        assert_eq!(compare_versions("0:1.0", "1.0"), Ordering::Equal);
    }

    #[test]
    fn dpkg_query_states() {
        let text = "a\ta\tinstall ok installed\t1.0\nb\tb\tdeinstall ok config-files\t2.0\n\
                    c:i386\tc\tinstall ok half-configured\t3\nd\td\tunknown ok not-installed\t\n";
        let parsed = parse_dpkg_query(text);
        assert_eq!(parsed[0].2, Installed { state: DpkgState::Installed, version: "1.0".into() });
        assert_eq!(parsed[1].2.state, DpkgState::ConfigFiles);
        assert_eq!(parsed[2].0, "c:i386");
        assert_eq!(parsed[2].2.state, DpkgState::Broken);
        assert_eq!(parsed[3].2, Installed::ABSENT);
    }

    #[test]
    fn policy_candidates_and_available_versions() {
        let text = "\
pkg-a:
  Installed: 1.0
  Candidate: 1.1
  Version table:
     1.1 500
        500 file:/tmp/repo ./ Packages
 *** 1.0 100
        100 /var/lib/dpkg/status
pkg-b:
  Installed: (none)
  Candidate: (none)
  Version table:
local:
  Installed: 2
  Candidate: 2
  Version table:
 *** 2 100
        100 /var/lib/dpkg/status
";
        let p = parse_policy(text);
        assert_eq!(p["pkg-a"], Policy { candidate: Some("1.1".into()), available: vec!["1.1".into()] });
        assert_eq!(p["pkg-b"], Policy::default());
        // Only dpkg's status knows it: installed, but no repository offers it.
        assert_eq!(p["local"], Policy { candidate: Some("2".into()), available: vec![] });
        assert!(!p.contains_key("unknown"));
    }
}

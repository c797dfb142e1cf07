//! dnf, yum and rpm as the yum modules see them: which package manager this machine has (`dnf`,
//! else `yum`), what rpm has installed (`rpm -q`), what the repositories offer (`dnf repoquery`,
//! or yum-utils' `repoquery`), rpm version order (`rpmvercmp`), and transactions run the way an
//! agent must run them (`-y`, no questions).
//!
//! Every command runs with `LC_ALL=C`, so that the output parsed here is never translated.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::process::{self, Output, Spec, Tail};
use crate::{Ctx, StateError};

/// The hint given when neither dnf nor yum is there.
pub const INSTALL_HINT: &str = "nor is `yum`: the yum modules run on RPM-based systems (Fedora, RHEL, CentOS, Rocky, \
                                Alma, Amazon Linux), where one of them is part of the base system";

/// The hint given when `rpm` is missing.
pub const RPM_HINT: &str = "the yum modules run on RPM-based systems, where `rpm` is part of the base system";

/// The prefix of the once-per-round keys of the package metadata refresh: `yum-refresh` (the
/// enabled repositories) and `yum-refresh:<repo>` (one repository, the `repo` parameter).
pub const REFRESH_KEY: &str = "yum-refresh";

/// The first field of every line our `--qf` formats print, to tell them from anything else.
const MARK: &str = "opsagent-q";

/// The package manager in charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Dnf,
    Yum,
}

impl Tool {
    /// `dnf` when it is on `PATH`, else `yum`; neither is [`StateError::MissingTool`] naming both.
    pub fn find() -> Result<Tool, StateError> {
        if on_path("dnf") {
            return Ok(Tool::Dnf);
        }
        if on_path("yum") {
            return Ok(Tool::Yum);
        }
        Err(StateError::MissingTool { tool: "dnf".into(), hint: INSTALL_HINT.into() })
    }

    pub fn program(self) -> &'static str {
        match self {
            Tool::Dnf => "dnf",
            Tool::Yum => "yum",
        }
    }
}

/// An rpm epoch, version and release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr {
    pub epoch: u64,
    pub version: String,
    pub release: String,
}

impl fmt::Display for Evr {
    /// `[epoch:]version-release`, the epoch shown only when it is not 0 (as dnf shows it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        write!(f, "{}-{}", self.version, self.release)
    }
}

impl Evr {
    /// Reads `[epoch:]version-release`, as [`Display`](fmt::Display) writes it.
    pub fn parse(text: &str) -> Evr {
        let (epoch, rest) = match text.split_once(':') {
            Some((epoch, rest)) if epoch.parse::<u64>().is_ok() => (epoch.parse().unwrap_or(0), rest),
            _ => (0, text),
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        Evr { epoch, version: version.to_string(), release: release.to_string() }
    }

    /// Whether this EVR is the version a recipe asks for: `1.0` (any epoch and release),
    /// `1.0-2` (any epoch), `1:1.0-2`, or `1:1.0` (any release).
    pub fn matches(&self, wanted: &str) -> bool {
        let (epoch, rest) = match wanted.split_once(':') {
            Some((epoch, rest)) => match epoch.parse::<u64>() {
                Ok(epoch) => (Some(epoch), rest),
                Err(_) => return false,
            },
            None => (None, wanted),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((version, release)) => (version, Some(release)),
            None => (rest, None),
        };
        epoch.is_none_or(|e| e == self.epoch)
            && rpmvercmp(version, &self.version).is_eq()
            && release.is_none_or(|r| rpmvercmp(r, &self.release).is_eq())
    }
}

/// Orders two EVRs as rpm does: epoch, then version, then release.
pub fn compare_evr(a: &Evr, b: &Evr) -> Ordering {
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| rpmvercmp(&a.version, &b.version))
        .then_with(|| rpmvercmp(&a.release, &b.release))
}

/// The installed version of each of `names` (the highest, when several architectures are
/// installed); a name rpm does not know is missing from the result.
pub async fn installed(ctx: &Ctx, names: &[&str]) -> Result<HashMap<String, Evr>, StateError> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let mut args =
        vec!["-q".to_string(), format!("--qf={MARK}\t%{{NAME}}\t%{{EPOCHNUM}}\t%{{VERSION}}\t%{{RELEASE}}\n")];
    args.extend(names.iter().map(|n| n.to_string()));
    // rpm exits with the number of names it did not find (printing "package X is not installed").
    let output = query(ctx, "rpm", args, RPM_HINT, |_| true).await?;
    let stderr = output.stderr.text();
    if !output.termination.success() {
        if let Some(line) = stderr.lines().find(|l| !l.trim().is_empty()) {
            return Err(StateError::Package {
                package: names.join(", "),
                problem: format!("cannot be looked up in the rpm database: {}", line.trim()),
            });
        }
    }
    let mut out: HashMap<String, Evr> = HashMap::new();
    for (name, evr, _) in parse_query(&String::from_utf8_lossy(&output.stdout.bytes), false) {
        match out.get(&name) {
            Some(known) if compare_evr(known, &evr).is_ge() => {}
            _ => {
                out.insert(name, evr);
            }
        }
    }
    Ok(out)
}

/// Every version the repositories offer for each of `names` (only the repository `repo` when
/// given); a name no repository offers is missing from the result.
pub async fn available(
    ctx: &Ctx,
    tool: Tool,
    names: &[&str],
    repo: Option<&str>,
) -> Result<HashMap<String, Vec<Evr>>, StateError> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let format = format!("{MARK}\t%{{name}}\t%{{epoch}}\t%{{version}}\t%{{release}}\t%{{repoid}}\n");
    let (program, hint, mut args) = match tool {
        Tool::Dnf => ("dnf", INSTALL_HINT, vec!["-q".to_string(), "repoquery".into(), format!("--qf={format}")]),
        // yum has no query command of its own: yum-utils' `repoquery` is its companion.
        Tool::Yum => (
            "repoquery",
            "it comes with the `yum-utils` package (`yum install yum-utils`)",
            vec!["-q".to_string(), "--show-duplicates".into(), format!("--qf={format}")],
        ),
    };
    args.extend(repo_options(repo));
    args.extend(names.iter().map(|n| n.to_string()));
    let output = match query(ctx, program, args, hint, |code| code == 0).await {
        Ok(output) => output,
        Err(StateError::Command { termination, stdout, stderr }) => {
            return Err(match error_line(&stderr) {
                Some(reason) => StateError::Package {
                    package: names.join(", "),
                    problem: format!("cannot be looked up in the repositories: {reason}"),
                },
                None => StateError::Command { termination, stdout, stderr },
            })
        }
        Err(e) => return Err(e),
    };
    let mut out: HashMap<String, Vec<Evr>> = HashMap::new();
    for (name, evr, _) in parse_query(&String::from_utf8_lossy(&output.stdout.bytes), true) {
        let versions = out.entry(name).or_default();
        if !versions.contains(&evr) {
            versions.push(evr);
        }
    }
    for versions in out.values_mut() {
        versions.sort_by(compare_evr);
    }
    Ok(out)
}

/// Refreshes the package metadata (of the repository `repo` alone when given): `dnf makecache
/// --refresh`, or `yum clean expire-cache` then `yum makecache`.
pub async fn refresh(ctx: &Ctx, tool: Tool, repo: Option<&str>) -> Result<Output, StateError> {
    let repo_args = repo_options(repo);
    match tool {
        Tool::Dnf => {
            let mut args = vec!["makecache".to_string(), "--refresh".into()];
            args.extend(repo_args);
            run(ctx, tool, &args).await
        }
        Tool::Yum => {
            let mut args = vec!["clean".to_string(), "expire-cache".into()];
            args.extend(repo_args.iter().cloned());
            run(ctx, tool, &args).await?;
            let mut args = vec!["makecache".to_string()];
            args.extend(repo_args);
            run(ctx, tool, &args).await
        }
    }
}

/// Runs `dnf|yum -y ARGS`; a failure where the tool says why (`Error: …`) becomes a clear error.
pub async fn run(ctx: &Ctx, tool: Tool, args: &[String]) -> Result<Output, StateError> {
    let mut full = vec!["-y".to_string()];
    full.extend(args.iter().cloned());
    let spec = Spec { program: tool.program().into(), args: full, env: env(), ..Spec::default() };
    match process::run_spec(ctx, &spec, INSTALL_HINT).await {
        Err(StateError::Command { termination, stdout, stderr }) => match error_line(&stderr) {
            Some(reason) => Err(StateError::Package {
                package: package_args(args).join(", "),
                problem: format!("could not be changed: `{}` failed: {reason}", tool.program()),
            }),
            None => Err(StateError::Command { termination, stdout, stderr }),
        },
        other => other,
    }
}

/// `--disablerepo=* --enablerepo=REPO` (what the original's `fromrepo` did), or nothing.
pub fn repo_options(repo: Option<&str>) -> Vec<String> {
    match repo {
        Some(repo) => vec!["--disablerepo=*".to_string(), format!("--enablerepo={repo}")],
        None => Vec::new(),
    }
}

/// The name and EVR of the package in an `.rpm` file.
pub async fn rpm_identity(ctx: &Ctx, path: &Path) -> Result<(String, Evr), StateError> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(StateError::io("reading the package file", path)(e));
    }
    let args = vec![
        "-qp".to_string(),
        format!("--qf={MARK}\t%{{NAME}}\t%{{EPOCHNUM}}\t%{{VERSION}}\t%{{RELEASE}}\n"),
        path.display().to_string(),
    ];
    let output = match query(ctx, "rpm", args, RPM_HINT, |code| code == 0).await {
        Ok(output) => output,
        Err(StateError::Command { stderr, .. }) => {
            let reason = stderr.text().lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            return Err(StateError::Conflict {
                path: path.to_path_buf(),
                problem: format!("is not an rpm package ({reason})"),
            });
        }
        Err(e) => return Err(e),
    };
    match parse_query(&String::from_utf8_lossy(&output.stdout.bytes), false).into_iter().next() {
        Some((name, evr, _)) => Ok((name, evr)),
        None => Err(StateError::Conflict { path: path.to_path_buf(), problem: "is not an rpm package".into() }),
    }
}

/// Runs `rpm ARGS` (a change: an import, an upgrade from a file).
pub async fn rpm(ctx: &Ctx, args: &[String]) -> Result<Output, StateError> {
    let spec = Spec { program: "rpm".into(), args: args.to_vec(), env: env(), ..Spec::default() };
    process::run_spec(ctx, &spec, RPM_HINT).await
}

/// Whether rpm knows a package by this name (or `name-version`): `rpm -q SPEC`.
pub async fn rpm_has(ctx: &Ctx, spec: &str) -> Result<bool, StateError> {
    let output = query(ctx, "rpm", vec!["-q".into(), spec.to_string()], RPM_HINT, |_| true).await?;
    if output.termination.success() {
        return Ok(true);
    }
    match output.stderr.text().lines().find(|l| !l.trim().is_empty()) {
        Some(line) => Err(StateError::Package {
            package: spec.to_string(),
            problem: format!("cannot be looked up in the rpm database: {}", line.trim()),
        }),
        None => Ok(false),
    }
}

/// rpm's `rpmvercmp`: alternating alphabetic and numeric segments, separators ignored, `~`
/// sorting before everything (even the end) and `^` after the end but before anything else.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while a.first().is_some_and(separator) {
            a = &a[1..];
        }
        while b.first().is_some_and(separator) {
            b = &b[1..];
        }
        // Tilde: before everything.
        match (a.first() == Some(&b'~'), b.first() == Some(&b'~')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Caret: after the end, before anything else.
        match (a.first() == Some(&b'^'), b.first() == Some(&b'^')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return if b.is_empty() { Ordering::Greater } else { Ordering::Less },
            (false, true) => return if a.is_empty() { Ordering::Less } else { Ordering::Greater },
            (false, false) => {}
        }
        if a.is_empty() || b.is_empty() {
            break;
        }
        let numeric = a[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter().take_while(|c| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() }).count()
        };
        let (len_a, len_b) = (run(a), run(b));
        // A numeric segment is newer than an alphabetic one.
        if len_b == 0 {
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (seg_a, seg_b) = (&a[..len_a], &b[..len_b]);
        let order = if numeric {
            let strip = |s: &[u8]| s.iter().position(|c| *c != b'0').map(|i| s[i..].to_vec()).unwrap_or_default();
            let (x, y) = (strip(seg_a), strip(seg_b));
            x.len().cmp(&y.len()).then_with(|| x.cmp(&y))
        } else {
            seg_a.cmp(seg_b)
        };
        if order != Ordering::Equal {
            return order;
        }
        a = &a[len_a..];
        b = &b[len_b..];
    }
    // The one with segments left is newer.
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Parses lines printed with our `--qf` format: `MARK name epoch version release [repo]`. With
/// `repos`, lines of the installed set (`@System`, `installed`) are dropped.
fn parse_query(text: &str, repos: bool) -> Vec<(String, Evr, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let (name, epoch, version, release, repo) = match fields[..] {
            [MARK, name, epoch, version, release] => (name, epoch, version, release, ""),
            [MARK, name, epoch, version, release, repo] => (name, epoch, version, release, repo),
            _ => continue,
        };
        if repos && (repo == "@System" || repo == "installed" || repo.is_empty()) {
            continue;
        }
        // rpm prints `(none)` for a missing epoch with `%{EPOCH}`; dnf prints 0.
        let epoch = epoch.parse::<u64>().unwrap_or(0);
        let evr = Evr { epoch, version: version.to_string(), release: release.to_string() };
        out.push((name.to_string(), evr, repo.to_string()));
    }
    out
}

/// The reason a dnf or yum command gave, from its `Error: …` line (and the line naming the
/// package that failed a signature check).
fn error_line(stderr: &Tail) -> Option<String> {
    let text = stderr.text();
    // Without any key in rpm's database, dnf explains at length and prints no `Error:` line.
    if text.contains("You have enabled checking of packages via GPG keys") {
        return Some(
            "GPG check FAILED: rpm has no GPG public key at all; import the repository's key (`linux.rpm.key`), \
             name it in the repository's `gpgkey`, or install unsigned packages with `verify-gpg: false`"
                .into(),
        );
    }
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let at = lines.iter().position(|l| l.starts_with("Error:"))?;
    let mut reason = lines[at].trim_start_matches("Error:").trim().to_string();
    // dnf puts the detail of some errors on the next lines ("Error: \n Problem: …").
    if reason.is_empty() {
        reason = lines[at + 1..].iter().find(|l| !l.is_empty())?.to_string();
    }
    // "Package x.rpm is not signed", "Public key for x.rpm is not installed".
    if reason.starts_with("GPG check FAILED") {
        if let Some(detail) = lines[..at].iter().rev().find(|l| l.contains(".rpm ")) {
            reason = format!("{reason}: {detail}");
        }
    }
    Some(reason)
}

/// The package arguments of a dnf or yum command line (the ones that are not options or verbs).
fn package_args(args: &[String]) -> Vec<String> {
    const VERBS: &[&str] = &["install", "remove", "downgrade", "makecache", "clean", "expire-cache", "upgrade"];
    args.iter().filter(|a| !a.starts_with('-') && !VERBS.contains(&a.as_str())).cloned().collect()
}

/// The environment of every command.
fn env() -> Vec<(String, String)> {
    vec![("LC_ALL".into(), "C".into())]
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let file: PathBuf = dir.join(program);
        std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs a read-only query; `accept` says which exit codes are success.
async fn query(
    ctx: &Ctx,
    program: &str,
    args: Vec<String>,
    hint: &str,
    accept: impl Fn(i32) -> bool,
) -> Result<Output, StateError> {
    let spec = Spec { program: program.into(), args, env: env(), ..Spec::default() };
    process::run_query(ctx, &spec, hint, accept).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evr(epoch: u64, version: &str, release: &str) -> Evr {
        Evr { epoch, version: version.into(), release: release.into() }
    }

    #[test]
    fn versions_sort_as_rpm_sorts_them() {
        // From rpm's own test suite (tests/rpmvercmp.at).
        let cases: &[(&str, &str, Ordering)] = &[
            ("1.0", "1.0", Ordering::Equal),
            ("1.0", "2.0", Ordering::Less),
            ("2.0.1", "2.0", Ordering::Greater),
            ("5.5p1", "5.5p10", Ordering::Less),
            ("10xyz", "10.1xyz", Ordering::Less),
            ("xyz10", "xyz10.1", Ordering::Less),
            ("1.0aa", "1.0a", Ordering::Greater),
            ("10", "9", Ordering::Greater),
            ("1.05", "1.5", Ordering::Equal),
            ("20101121", "20101122", Ordering::Less),
            ("a", "1", Ordering::Less),
            ("a+", "a_", Ordering::Equal),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0~rc1", "1.0~rc2", Ordering::Less),
            ("1.0~rc1~git123", "1.0~rc1", Ordering::Less),
            ("1.0^", "1.0", Ordering::Greater),
            ("1.0^git1", "1.01", Ordering::Less),
            ("1.0^git1~pre", "1.0^git1", Ordering::Less),
            ("1.0~rc1^git1", "1.0~rc1", Ordering::Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), *want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
        assert!(compare_evr(&evr(1, "0.1", "1"), &evr(0, "9", "1")).is_gt());
        assert!(compare_evr(&evr(0, "1.0", "2"), &evr(0, "1.0", "10")).is_lt());
    }

    #[test]
    fn wanted_versions_match_at_the_precision_given() {
        let e = evr(0, "1.0", "1.el9");
        for yes in ["1.0", "1.0-1.el9", "0:1.0-1.el9", "0:1.0", "1.00"] {
            assert!(e.matches(yes), "{yes}");
        }
        for no in ["1.1", "1.0-2", "1:1.0", "1.0-1", "x:1.0"] {
            assert!(!e.matches(no), "{no}");
        }
        assert_eq!(evr(2, "1.0", "1").to_string(), "2:1.0-1");
        assert_eq!(e.to_string(), "1.0-1.el9");
        assert_eq!(Evr::parse("2:1.0-1"), evr(2, "1.0", "1"));
        assert_eq!(Evr::parse(&e.to_string()), e);
    }

    #[test]
    fn query_lines_are_parsed_and_the_installed_set_dropped() {
        let text = "opsagent-q\ta\t0\t1.0\t1\trepo1\nopsagent-q\ta\t0\t1.0\t1\t@System\n\
                    Last metadata expiration check\nopsagent-q\tb\t(none)\t2\t3\n";
        let repos = parse_query(text, true);
        assert_eq!(repos, [("a".to_string(), evr(0, "1.0", "1"), "repo1".to_string())]);
        let rpm = parse_query(text, false);
        assert_eq!(rpm.len(), 3);
        assert_eq!(rpm[2].1, evr(0, "2", "3"));
    }

    #[test]
    fn the_reason_of_a_failed_command() {
        let tail = |s: &str| Tail::from_bytes(s.as_bytes().to_vec(), 1000);
        assert_eq!(
            error_line(&tail("Unable to detect\nError: Unknown repo: 'x'\n")).as_deref(),
            Some("Unknown repo: 'x'")
        );
        assert_eq!(
            error_line(&tail("Error: \n Problem: conflicting requests\n")).as_deref(),
            Some("Problem: conflicting requests")
        );
        assert_eq!(error_line(&tail("nothing\n")), None);
        assert_eq!(
            error_line(&tail("Package a-1.rpm is not signed\nError: GPG check FAILED\n")).as_deref(),
            Some("GPG check FAILED: Package a-1.rpm is not signed")
        );
    }
}

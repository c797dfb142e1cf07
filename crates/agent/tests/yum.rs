//! `linux.yum.repo`, `linux.yum.package` and `linux.rpm.key` end to end, as root, with the real
//! dnf and rpm that Debian packages: tiny noarch `.rpm` packages built here with `rpmbuild`, a
//! local `file://` repository made with `createrepo_c` and declared by a `linux.yum.repo` state,
//! installed through the real `opsagent apply`.
//!
//! On Debian, rpm keeps its database in `~/.rpmdb` (apart from dpkg's), and dnf reads repository
//! files from `/etc/yum.repos.d`, `/etc/yum/repos.d` and `/etc/distro.repos.d`, none of which
//! Debian ships. Every package state here names the test's repository (`repo`), which the module
//! turns into `--disablerepo=* --enablerepo=<id>`, so no other repository is read and no network
//! is used. dnf is reached through a wrapper first on `PATH` that logs each invocation (to count
//! refreshes and transactions). The `Fixture` guard erases the test packages and keys and removes
//! the repository files, dnf's cache of them and the temp dir, even when a test fails.

mod common;
#[path = "common/http.rs"]
mod http_server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::Run;

/// rpm and dnf allow one writer: the tests take turns.
static RPM: Mutex<()> = Mutex::new(());

const PKG_A: &str = "opsagent-test-pkg-a";
const PKG_B: &str = "opsagent-test-pkg-b";
/// A package that installs a repository file (for `rpm-url`).
const PKG_RELEASE: &str = "opsagent-test-release";

struct Fixture {
    dir: tempfile::TempDir,
    /// The repository id, also the name of its file in /etc/yum.repos.d.
    id: String,
    /// gpg-pubkey ids a test imported.
    keys: Mutex<Vec<String>>,
    _turn: MutexGuard<'static, ()>,
}

impl Fixture {
    fn new() -> Fixture {
        let turn = RPM.lock().unwrap_or_else(|p| p.into_inner());
        for tool in ["dnf", "rpmbuild", "createrepo_c", "gpg"] {
            assert!(
                Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap().status.success(),
                "`{tool}` is missing: install the Debian packages dnf, rpm, createrepo-c and gnupg (.ci/run does)"
            );
        }
        let dir = tempfile::Builder::new().prefix("opsagent-test-yum-").tempdir().expect("temp dir");
        let id = dir.path().file_name().unwrap().to_string_lossy().to_string();
        let f = Fixture { dir, id, keys: Mutex::default(), _turn: turn };
        erase_test_packages();
        for sub in ["rpms", "repo", "bin", "state", "gnupg"] {
            std::fs::create_dir_all(f.path(sub)).unwrap();
        }
        std::fs::set_permissions(f.path("gnupg"), std::fs::Permissions::from_mode(0o700)).unwrap();
        f.build_rpm(PKG_A, "1.0", &[]);
        f.build_rpm(PKG_A, "1.1", &[]);
        f.build_rpm(PKG_B, "1.0", &[]);
        let d = f.dir.path().display();
        let wrapper = f.path("bin/dnf");
        std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$*\" >> {d}/dnf.log\nexec /usr/bin/dnf \"$@\"\n")).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn repo_file(&self) -> PathBuf {
        PathBuf::from(format!("/etc/yum.repos.d/{}.repo", self.id))
    }

    fn rpm(&self, package: &str, version: &str) -> PathBuf {
        self.path(&format!("rpms/{package}-{version}-1.noarch.rpm"))
    }

    /// Builds a noarch package holding one file, `/usr/share/<package>/version` (and `files`,
    /// path → content, for the release package).
    fn build_rpm(&self, package: &str, version: &str, files: &[(&str, &str)]) {
        let top = self.path(&format!("build/{package}-{version}"));
        std::fs::create_dir_all(top.join("SPECS")).unwrap();
        let mut install = format!(
            "mkdir -p %{{buildroot}}/usr/share/{package}\necho {version} > %{{buildroot}}/usr/share/{package}/version\n"
        );
        let mut listed = format!("/usr/share/{package}/version\n");
        for (path, content) in files {
            let source = top.join(format!("source-{}", listed.lines().count()));
            std::fs::write(&source, content).unwrap();
            let dir = Path::new(path).parent().unwrap().display().to_string();
            install.push_str(&format!("mkdir -p %{{buildroot}}{dir}\ncp {} %{{buildroot}}{path}\n", source.display()));
            listed.push_str(&format!("{path}\n"));
        }
        let spec = format!(
            "Name: {package}\nVersion: {version}\nRelease: 1\nSummary: opsagent test package\nLicense: MIT\n\
             BuildArch: noarch\n%description\nopsagent test package\n%install\n{install}%files\n{listed}"
        );
        let spec_file = top.join(format!("SPECS/{package}.spec"));
        std::fs::write(&spec_file, spec).unwrap();
        let out = Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("-bb")
            .arg(&spec_file)
            .output()
            .expect("rpmbuild");
        assert!(out.status.success(), "rpmbuild: {}", String::from_utf8_lossy(&out.stderr));
        let built = top.join(format!("RPMS/noarch/{package}-{version}-1.noarch.rpm"));
        std::fs::rename(built, self.rpm(package, version)).unwrap();
    }

    /// Makes the repository offer exactly `rpms` (package, version), with fresh metadata.
    fn publish(&self, rpms: &[(&str, &str)]) {
        let repo = self.path("repo");
        std::fs::remove_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        for (package, version) in rpms {
            std::fs::copy(self.rpm(package, version), repo.join(self.rpm(package, version).file_name().unwrap()))
                .unwrap();
        }
        let out = Command::new("createrepo_c").arg(&repo).output().expect("createrepo_c");
        assert!(out.status.success(), "createrepo_c: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The repository file's content; `gpgcheck` as given.
    fn repo_content(&self, gpgcheck: bool) -> String {
        format!(
            "[{}]\nname=opsagent test repository\nbaseurl=file://{}\nenabled=1\ngpgcheck={}\n",
            self.id,
            self.path("repo").display(),
            u8::from(gpgcheck)
        )
    }

    /// The `linux.yum.repo` state declaring the local repository.
    fn repo_state(&self, gpgcheck: bool) -> String {
        format!(
            "  - id: repo\n    module: linux.yum.repo\n    parameter:\n      name: {}\n      content: {:?}\n",
            self.id,
            self.repo_content(gpgcheck)
        )
    }

    /// A recipe: the repository, then a package state with `packages` (YAML flow mapping), from
    /// the test's repository only, and `extra` parameters.
    fn recipe(&self, packages: &str, extra: &str) -> String {
        format!(
            "states:\n{}  - id: pkgs\n    module: linux.yum.package\n    parameter:\n      name: {packages}\n      repo: {}\n{extra}",
            self.repo_state(false),
            self.id
        )
    }

    fn apply(&self, recipe: &str, extra: &[&str]) -> Run {
        let path = format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default());
        self.apply_with_path(recipe, extra, &path)
    }

    fn apply_with_path(&self, recipe: &str, extra: &[&str], path: &str) -> Run {
        let file = self.path("recipe.yaml");
        std::fs::write(&file, recipe).unwrap();
        let out = Command::new(common::bin())
            .arg("apply")
            .arg(&file)
            .args(extra)
            .arg("--state-dir")
            .arg(self.path("state"))
            .env("NO_COLOR", "1")
            .env("PATH", path)
            .output()
            .expect("run opsagent");
        Run::from(out)
    }

    /// Applies the repository state alone (under `--test`, a package state cannot see a
    /// repository that an earlier state has not written yet).
    fn declare_repo(&self) {
        let run = self.apply(&format!("states:\n{}", self.repo_state(false)), &["--json"]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        self.take_dnf_calls();
    }

    fn validate(&self, recipe: &str) -> Run {
        let file = self.path("bad.yaml");
        std::fs::write(&file, recipe).unwrap();
        Run::from(Command::new(common::bin()).arg("validate").arg(&file).env("NO_COLOR", "1").output().unwrap())
    }

    /// Each `dnf` invocation since the last call, and forgets them.
    fn take_dnf_calls(&self) -> Vec<String> {
        let log = self.path("dnf.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(str::to_string).collect()
    }

    /// Generates a signing key in the test's GNUPGHOME; returns the armored public key file and
    /// rpm's id of it (the last 8 hex digits of the key id, lowercase).
    fn gpg_key(&self, name: &str) -> (PathBuf, String) {
        let gpg = |args: &[&str]| {
            let out = Command::new("gpg")
                .args(["--batch", "--homedir"])
                .arg(self.path("gnupg"))
                .args(args)
                .output()
                .expect("gpg");
            assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let uid = format!("{name} <{name}@localhost>");
        gpg(&["--passphrase", "", "--quick-gen-key", &uid, "rsa2048", "sign", "never"]);
        let colons = gpg(&["--with-colons", "--list-keys", &uid]);
        let key_id = colons.lines().find(|l| l.starts_with("pub:")).unwrap().split(':').nth(4).unwrap().to_string();
        let id = key_id[key_id.len() - 8..].to_ascii_lowercase();
        let file = self.path(&format!("{name}.asc"));
        std::fs::write(&file, gpg(&["--armor", "--export", &uid])).unwrap();
        self.keys.lock().unwrap().push(id.clone());
        (file, id)
    }

    /// Signs an `.rpm` in place with the key of `name` (from [`Fixture::gpg_key`]).
    fn sign(&self, rpm: &Path, name: &str) {
        let out = Command::new("rpmsign")
            .arg("--addsign")
            .arg("--define")
            .arg("__gpg /usr/bin/gpg")
            .arg("--define")
            .arg(format!("_gpg_name {name} <{name}@localhost>"))
            .arg("--define")
            .arg(format!("_gpg_path {}", self.path("gnupg").display()))
            .arg(rpm)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("rpmsign");
        assert!(out.status.success(), "rpmsign: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // gpg started an agent for the test's GNUPGHOME.
        let _ = Command::new("gpgconf").arg("--homedir").arg(self.path("gnupg")).args(["--kill", "gpg-agent"]).output();
        erase_test_packages();
        for id in self.keys.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = Command::new("rpm").args(["-e", "--allmatches", &format!("gpg-pubkey-{id}")]).output();
        }
        let _ = std::fs::remove_file(self.repo_file());
        let _ = std::fs::remove_file(format!("/etc/yum.repos.d/{}-release.repo", self.id));
        // dnf's cache of the test's repositories: `<id>-<hash>/`, `<id>.solv`, `<id>-filenames.solvx`.
        if let Ok(entries) = std::fs::read_dir("/var/cache/dnf") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&self.id) {
                    let path = entry.path();
                    let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                }
            }
        }
    }
}

fn erase_test_packages() {
    for package in [PKG_A, PKG_B, PKG_RELEASE] {
        let _ = Command::new("rpm").args(["-e", "--nodeps", "--allmatches", package]).output();
    }
}

/// The installed `version-release` of a package, or `None`.
fn rpm_q(package: &str) -> Option<String> {
    let out = Command::new("rpm").args(["-q", "--qf", "%{VERSION}-%{RELEASE}", package]).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// The `changes` of state `id` in a JSON report, as `action target (detail)` lines.
fn changes(run: &Run, id: &str) -> Vec<String> {
    let json = run.json();
    let state = json["states"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
    state["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let detail = c["detail"].as_str().unwrap();
            let (action, target) = (c["action"].as_str().unwrap(), c["target"].as_str().unwrap());
            if detail.is_empty() {
                format!("{action} {target}")
            } else {
                format!("{action} {target} ({detail})")
            }
        })
        .collect()
}

/// The comment of state `id` in a JSON report.
fn comment(run: &Run, id: &str) -> String {
    let json = run.json();
    let state = json["states"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
    state["comment"].as_str().unwrap_or("").to_string()
}

/// `--test` then `apply` of state `id`: the test run plans exactly what the real run then reports.
fn test_then_apply(f: &Fixture, recipe: &str, id: &str, want: &[&str]) -> Run {
    let test = f.apply(recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(changes(&test, id), want, "--test plan");
    let run = f.apply(recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run, id), want, "what apply did");
    run
}

#[test]
fn installs_from_a_local_repository_in_one_transaction_then_changes_nothing() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0"), (PKG_B, "1.0")]);
    let repo_only = format!("states:\n{}", f.repo_state(false));
    let test = f.apply(&repo_only, &["--test", "--json"]);
    let repo_file = f.repo_file().display().to_string();
    let content = f.repo_content(false);
    assert_eq!(changes(&test, "repo"), [format!("create {repo_file} ({} bytes, mode 0644)", content.len())]);
    assert!(!f.repo_file().exists(), "--test changes nothing");
    let run = f.apply(&repo_only, &["--json"]);
    assert_eq!(run.statuses(), ["repo=changed"], "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(f.repo_file()).unwrap(), content);
    assert_eq!(std::fs::metadata(f.repo_file()).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(f.apply(&repo_only, &["--json"]).statuses(), ["repo=ok"]);
    f.take_dnf_calls();

    let recipe = f.recipe(&format!("{{{PKG_A}: \"\", {PKG_B}: \"\"}}"), "");
    let run = test_then_apply(
        &f,
        &recipe,
        "pkgs",
        &[&format!("create {PKG_A} (install 1.0-1)"), &format!("create {PKG_B} (install 1.0-1)")],
    );
    assert_eq!(run.statuses(), ["repo=ok", "pkgs=changed"]);
    let stdout = run.json()["states"][1]["stdout"].as_str().unwrap().to_string();
    assert!(stdout.contains(&format!("{PKG_A}-1.0-1.noarch")), "{stdout}");
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
    assert_eq!(rpm_q(PKG_B).as_deref(), Some("1.0-1"));
    assert_eq!(std::fs::read_to_string(format!("/usr/share/{PKG_A}/version")).unwrap(), "1.0\n");
    let calls = f.take_dnf_calls();
    // --test refreshed once (its own round), apply refreshed once and installed both in one go.
    let refreshes = calls.iter().filter(|c| c.starts_with("-y makecache --refresh")).count();
    let installs: Vec<&String> = calls.iter().filter(|c| c.starts_with("-y install ")).collect();
    assert_eq!(refreshes, 2, "{calls:?}");
    assert_eq!(installs.len(), 1, "{calls:?}");
    assert!(
        installs[0].ends_with(&format!("install --disablerepo=* --enablerepo={} {PKG_A}-1.0-1 {PKG_B}-1.0-1", f.id)),
        "{calls:?}"
    );

    let again = f.apply(&recipe, &["--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.statuses(), ["repo=ok", "pkgs=ok"]);
    assert_eq!(f.take_dnf_calls(), Vec::<String>::new(), "a converged run neither refreshes nor installs");
}

#[test]
fn versions_latest_and_removed() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    f.declare_repo();
    let pinned = f.recipe(&format!("[{{key: {PKG_A}, value: \"1.0\"}}]"), "");
    test_then_apply(&f, &pinned, "pkgs", &[&format!("create {PKG_A} (install 1.0-1)")]);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));

    // A newer version appears: a pinned version stays, `latest` upgrades to it.
    f.publish(&[(PKG_A, "1.0"), (PKG_A, "1.1"), (PKG_B, "1.0")]);
    let run = f.apply(&pinned, &["--json"]);
    assert_eq!(run.statuses(), ["repo=ok", "pkgs=ok"], "{}", run.stdout);
    let latest = f.recipe(&format!("{{{PKG_A}: latest}}"), "");
    test_then_apply(&f, &latest, "pkgs", &[&format!("update {PKG_A} (upgrade 1.0-1 -> 1.1-1)")]);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.1-1"));
    assert_eq!(f.apply(&latest, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    // A version with its release, back down.
    let pinned_release = f.recipe(&format!("{{{PKG_A}: \"1.0-1\"}}"), "");
    test_then_apply(&f, &pinned_release, "pkgs", &[&format!("update {PKG_A} (downgrade 1.1-1 -> 1.0-1)")]);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
    assert_eq!(f.apply(&pinned, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    // An install and a removal in one state: the install transaction, then the removal.
    let removed = f.recipe(&format!("{{{PKG_A}: removed, {PKG_B}: \"1.0\"}}"), "");
    test_then_apply(
        &f,
        &removed,
        "pkgs",
        &[&format!("create {PKG_B} (install 1.0-1)"), &format!("remove {PKG_A} (remove 1.0-1)")],
    );
    assert_eq!(rpm_q(PKG_B).as_deref(), Some("1.0-1"));
    assert_eq!(rpm_q(PKG_A), None);
    assert!(!Path::new(&format!("/usr/share/{PKG_A}/version")).exists());
    assert_eq!(f.apply(&removed, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);
    let purged = f.recipe(&format!("{{{PKG_A}: purged}}"), "");
    assert_eq!(f.apply(&purged, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);
    let calls = f.take_dnf_calls();
    assert!(
        calls
            .iter()
            .any(|c| c == &format!("-y remove --setopt=clean_requirements_on_remove=0 --disablerepo=* {PKG_A}")),
        "{calls:?}"
    );
}

#[test]
fn installs_an_rpm_file_by_path_or_file_url() {
    let f = Fixture::new();
    f.publish(&[]);
    f.declare_repo();
    let file = f.rpm(PKG_B, "1.0");
    let by_path = f.recipe(&format!("{{{PKG_B}: \"{}\"}}", file.display()), "");
    test_then_apply(&f, &by_path, "pkgs", &[&format!("create {PKG_B} (install 1.0-1 from {})", file.display())]);
    assert_eq!(rpm_q(PKG_B).as_deref(), Some("1.0-1"));
    let by_url = f.recipe(&format!("{{{PKG_B}: \"file://{}\"}}", file.display()), "");
    assert_eq!(f.apply(&by_url, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    // The file must hold the package it is given for.
    let wrong = f.recipe(&format!("{{{PKG_A}: \"{}\"}}", file.display()), "");
    let run = f.apply(&wrong, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert!(comment(&run, "pkgs").contains(&format!("holds package `{PKG_B}`, not `{PKG_A}`")), "{}", run.stdout);

    // A file's version is the wanted one: an older file than the installed package downgrades it.
    let (new, old) = (f.rpm(PKG_A, "1.1"), f.rpm(PKG_A, "1.0"));
    let newer = f.recipe(&format!("{{{PKG_A}: \"{}\"}}", new.display()), "");
    test_then_apply(&f, &newer, "pkgs", &[&format!("create {PKG_A} (install 1.1-1 from {})", new.display())]);
    let older = f.recipe(&format!("{{{PKG_A}: \"{}\"}}", old.display()), "");
    test_then_apply(
        &f,
        &older,
        "pkgs",
        &[&format!("update {PKG_A} (downgrade 1.1-1 -> 1.0-1 from {})", old.display())],
    );
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
    assert_eq!(f.apply(&older, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);
}

#[test]
fn an_unknown_package_version_or_repository_fails_naming_it() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    let unknown = f.recipe("{opsagent-test-no-such-pkg: \"\"}", "");
    let run = f.apply(&unknown, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        comment(&run, "pkgs"),
        format!(
            "package `opsagent-test-no-such-pkg` is not available from the repository `{}` (after refreshing the \
             metadata)",
            f.id
        )
    );

    let version = f.recipe(&format!("{{{PKG_A}: \"9.9\"}}"), "");
    let run = f.apply(&version, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        comment(&run, "pkgs"),
        format!("package `{PKG_A}` has no version 9.9 in the repository `{}` (available: 1.0-1)", f.id)
    );
    assert_eq!(rpm_q(PKG_A), None);

    let no_repo = format!(
        "states:\n  - id: pkgs\n    module: linux.yum.package\n    parameter: {{name: {{{PKG_A}: \"\"}}, repo: opsagent-test-no-such-repo}}\n"
    );
    let run = f.apply(&no_repo, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    let comment = comment(&run, "pkgs");
    assert!(comment.contains("opsagent-test-no-such-repo") && comment.contains("Unknown repo"), "{comment}");
}

#[test]
fn unsigned_packages_install_only_without_verify_gpg() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    let recipe = |extra: &str| {
        format!(
            "states:\n{}  - id: pkgs\n    module: linux.yum.package\n    parameter:\n      name: {{{PKG_A}: \"\"}}\n      repo: {}\n{extra}",
            f.repo_state(true),
            f.id
        )
    };
    let run = f.apply(&recipe(""), &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let comment = comment(&run, "pkgs");
    // "GPG check FAILED", with why: the package is not signed, or rpm has no key at all.
    assert!(
        comment.starts_with(&format!("package `{PKG_A}-1.0-1` could not be changed: `dnf` failed: GPG check FAILED")),
        "{comment}"
    );
    assert_eq!(rpm_q(PKG_A), None);
    let run = test_then_apply(
        &f,
        &recipe("      verify-gpg: false\n"),
        "pkgs",
        &[&format!("create {PKG_A} (install 1.0-1)")],
    );
    assert_eq!(run.statuses(), ["repo=ok", "pkgs=changed"]);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
}

#[test]
fn a_changed_repository_makes_the_next_package_state_refresh_again() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0"), (PKG_B, "1.0")]);
    f.declare_repo();
    let repo_state = |comment: &str| {
        format!(
            "  - id: repo\n    module: linux.yum.repo\n    parameter:\n      name: {}\n      content: {:?}\n",
            f.id,
            format!("{comment}{}", f.repo_content(false))
        )
    };
    let package = |id: &str, package: &str| {
        format!(
            "  - id: {id}\n    module: linux.yum.package\n    parameter: {{name: {{{package}: \"\"}}, repo: {}}}\n",
            f.id
        )
    };
    let recipe = format!("states:\n{}{}{}", package("b", PKG_B), repo_state("# changed\n"), package("a", PKG_A));
    let run = f.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["b=changed", "repo=changed", "a=changed"], "{}{}", run.stdout, run.stderr);
    let calls = f.take_dnf_calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("-y makecache")).count(), 2, "{calls:?}");

    // Without a repository change, one refresh serves the whole round.
    erase_test_packages();
    let run = f.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["b=changed", "repo=ok", "a=changed"], "{}{}", run.stdout, run.stderr);
    let calls = f.take_dnf_calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("-y makecache")).count(), 1, "{calls:?}");

    let gone =
        format!("states:\n  - id: repo\n    module: linux.yum.repo\n    parameter: {{name: {}, absent: true}}\n", f.id);
    let test = f.apply(&gone, &["--test", "--json"]);
    assert_eq!(changes(&test, "repo"), [format!("remove {}", f.repo_file().display())]);
    let run = f.apply(&gone, &["--json"]);
    assert_eq!(run.statuses(), ["repo=changed"]);
    assert!(!f.repo_file().exists());
    assert_eq!(f.apply(&gone, &["--json"]).statuses(), ["repo=ok"]);
}

#[test]
fn a_repository_from_an_rpm_file_is_installed_once_and_upgraded() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    // A release package, as epel-release is: it installs the repository's file.
    let release_repo = format!("/etc/yum.repos.d/{}-release.repo", f.id);
    let content = f.repo_content(false).replacen(&format!("[{}]", f.id), &format!("[{}-release]", f.id), 1);
    f.build_rpm(PKG_RELEASE, "1", &[(&release_repo, &content)]);
    f.build_rpm(PKG_RELEASE, "2", &[(&release_repo, &content)]);
    let state = |file: &Path, url: bool| {
        format!(
            "states:\n  - id: release\n    module: linux.yum.repo\n    parameter: {{name: {}-release, rpm-url: \"{}{}\"}}\n\
             \x20 - id: pkgs\n    module: linux.yum.package\n    parameter: {{name: {{{PKG_A}: \"\"}}, repo: {}-release}}\n",
            f.id,
            if url { "file://" } else { "" },
            file.display(),
            f.id
        )
    };
    let v1 = f.rpm(PKG_RELEASE, "1");
    let test = f.apply(&state(&v1, false), &["--test", "--json"]);
    assert_eq!(changes(&test, "release"), [format!("create {PKG_RELEASE} (install 1-1 from {})", v1.display())]);
    assert_eq!(rpm_q(PKG_RELEASE), None);
    let run = f.apply(&state(&v1, false), &["--json"]);
    assert_eq!(run.statuses(), ["release=changed", "pkgs=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run, "release"), [format!("create {PKG_RELEASE} (install 1-1 from {})", v1.display())]);
    assert_eq!(std::fs::read_to_string(&release_repo).unwrap(), content);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
    assert_eq!(f.apply(&state(&v1, true), &["--json"]).statuses(), ["release=ok", "pkgs=ok"]);

    let v2 = f.rpm(PKG_RELEASE, "2");
    let want = format!("update {PKG_RELEASE} (upgrade 1-1 -> 2-1 from {})", v2.display());
    let test = f.apply(&state(&v2, false), &["--test", "--json"]);
    assert_eq!(changes(&test, "release"), [want.as_str()]);
    let run = f.apply(&state(&v2, false), &["--json"]);
    assert_eq!(changes(&run, "release"), [want]);
    assert_eq!(rpm_q(PKG_RELEASE).as_deref(), Some("2-1"));
    // An older file than the installed package is fine as it is.
    assert_eq!(f.apply(&state(&v1, false), &["--json"]).statuses(), ["release=ok", "pkgs=ok"]);
}

#[test]
fn a_key_is_imported_once() {
    let f = Fixture::new();
    let (key, id) = f.gpg_key("opsagent-test-key");
    let recipe =
        format!("states:\n  - id: key\n    module: linux.rpm.key\n    parameter: {{path: {}}}\n", key.display());
    let want = format!("create gpg-pubkey-{id} (import from {})", key.display());
    let test = f.apply(&recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(changes(&test, "key"), [want.as_str()]);
    assert_eq!(rpm_q(&format!("gpg-pubkey-{id}")), None, "--test imports nothing");
    let run = f.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run, "key"), [want]);
    assert!(rpm_q(&format!("gpg-pubkey-{id}")).is_some());
    let file_url = format!(
        "states:\n  - id: key\n    module: linux.rpm.key\n    parameter: {{path: \"file://{}\"}}\n",
        key.display()
    );
    assert_eq!(f.apply(&file_url, &["--json"]).statuses(), ["key=ok"]);

    // Not a key: a clear error, nothing imported.
    let not_key = f.path("not-a-key.asc");
    std::fs::write(&not_key, "hello\n").unwrap();
    let bad =
        format!("states:\n  - id: key\n    module: linux.rpm.key\n    parameter: {{path: {}}}\n", not_key.display());
    let run = f.apply(&bad, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        comment(&run, "key"),
        format!("`{}` is not an OpenPGP key file (a packet header is broken)", not_key.display())
    );
}

#[test]
fn signed_packages_install_once_their_key_is_imported() {
    let f = Fixture::new();
    let (key, id) = f.gpg_key("opsagent-test-signer");
    f.sign(&f.rpm(PKG_A, "1.0"), "opsagent-test-signer");
    f.publish(&[(PKG_A, "1.0")]);
    let package = format!(
        "  - id: pkgs\n    module: linux.yum.package\n    parameter: {{name: {{{PKG_A}: \"\"}}, repo: {}}}\n",
        f.id
    );
    let without_key = format!("states:\n{}{package}", f.repo_state(true));
    let run = f.apply(&without_key, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(comment(&run, "pkgs").contains("GPG check FAILED"), "{}", run.stdout);
    assert_eq!(rpm_q(PKG_A), None);

    let key_state = format!("  - id: key\n    module: linux.rpm.key\n    parameter: {{path: {}}}\n", key.display());
    let with_key = format!("states:\n{}{key_state}{package}", f.repo_state(true));
    let test = f.apply(&with_key, &["--test", "--json"]);
    assert_eq!(changes(&test, "key"), [format!("create gpg-pubkey-{id} (import from {})", key.display())]);
    assert_eq!(changes(&test, "pkgs"), [format!("create {PKG_A} (install 1.0-1)")]);
    let run = f.apply(&with_key, &["--json"]);
    assert_eq!(run.statuses(), ["repo=ok", "key=changed", "pkgs=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
    assert_eq!(f.apply(&with_key, &["--json"]).statuses(), ["repo=ok", "key=ok", "pkgs=ok"]);
}

#[test]
fn no_dnf_and_no_yum_is_named() {
    let f = Fixture::new();
    // A PATH with rpm alone.
    std::os::unix::fs::symlink("/usr/bin/rpm", f.path("state/rpm")).unwrap();
    let recipe =
        format!("states:\n  - id: pkgs\n    module: linux.yum.package\n    parameter: {{name: {{{PKG_A}: \"\"}}}}\n");
    let run = f.apply_with_path(&recipe, &["--json", "--retries", "0"], &f.path("state").display().to_string());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let comment = comment(&run, "pkgs");
    assert!(comment.starts_with("`dnf` is not installed on this machine; nor is `yum`"), "{comment}");
}

#[test]
fn bad_parameters_are_refused_by_validate() {
    let f = Fixture::new();
    let run = f.validate(
        "states:
  - id: p1
    module: linux.yum.package
    parameter: {repo: base}
  - id: p2
    module: linux.yum.package
    parameter:
      name: {\"Bad Name\": \"\", nginx: lastest, curl: \"ftp://example.com/curl.rpm\", vim: relative/vim.rpm, bash.x86_64: \"\", zsh: /srv/zsh.deb}
      repo: \"two repos\"
  - id: r1
    module: linux.yum.repo
    parameter: {name: ../evil, content: \"hello world\"}
  - id: r2
    module: linux.yum.repo
    parameter: {name: epel}
  - id: r3
    module: linux.yum.repo
    parameter: {name: epel, rpm-url: \"https://example.com/epel-release.txt\"}
  - id: r4
    module: linux.yum.repo
    parameter: {name: x, content: \"[x]\\nbaseurl=file:///srv\\n\", rpm-url: /srv/x.rpm}
  - id: k1
    module: linux.rpm.key
    parameter: {path: keys/KEY}
  - id: k2
    module: linux.rpm.key
    parameter: {}
",
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "state 1 `p1` (linux.yum.package): parameter `name`: required parameter `name` is missing",
        "state 2 `p2` (linux.yum.package): parameter `name.Bad Name`: `Bad Name` is not an rpm package name",
        "parameter `name.nginx`: `lastest` is not an rpm version, `latest`, `removed`, `purged` or an `.rpm` path",
        "parameter `name.curl`: `ftp://example.com/curl.rpm` is neither a local path nor an http(s) URL",
        "parameter `name.vim`: `relative/vim.rpm` is not an absolute path",
        "parameter `name.bash.x86_64`: `bash.x86_64` names an architecture",
        "parameter `name.zsh`: `/srv/zsh.deb` is a Debian package",
        "parameter `repo`: `two repos` is not a repository id",
        "state 3 `r1` (linux.yum.repo): parameter `name`: `../evil` cannot name a file in /etc/yum.repos.d",
        "parameter `content`: line 1 (`hello world`) comes before the first `[id]` section",
        "state 4 `r2` (linux.yum.repo): parameter `content`: give `content` (the repository file) or `rpm-url`",
        "state 5 `r3` (linux.yum.repo): parameter `rpm-url`: `https://example.com/epel-release.txt` is not an `.rpm` file",
        "state 6 `r4` (linux.yum.repo): parameter `rpm-url`: `rpm-url` is ignored: `content` is given",
        "state 7 `k1` (linux.rpm.key): parameter `path`: `keys/KEY` is not an absolute path",
        "state 8 `k2` (linux.rpm.key): parameter `path`: required parameter `path` is missing",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn packages_repository_packages_and_keys_come_from_http_urls_downloaded_once() {
    let f = Fixture::new();
    f.publish(&[]);
    f.declare_repo();
    let release_repo = format!("/etc/yum.repos.d/{}-release.repo", f.id);
    let content = f.repo_content(false).replacen(&format!("[{}]", f.id), &format!("[{}-release]", f.id), 1);
    f.build_rpm(PKG_RELEASE, "1", &[(&release_repo, &content)]);
    let (key, id) = f.gpg_key("opsagent-test-http-key");
    let server = http_server::Server::start(None);
    let send = http_server::Send::Length;
    server.put("keys/KEY", &std::fs::read(&key).unwrap(), send);
    server.put("pool/release.noarch.rpm", &std::fs::read(f.rpm(PKG_RELEASE, "1")).unwrap(), send);
    server.put("pool/b.noarch.rpm", &std::fs::read(f.rpm(PKG_B, "1.0")).unwrap(), send);
    let (key_url, release_url, b_url) =
        (server.url("keys/KEY"), server.url("pool/release.noarch.rpm"), server.url("pool/b.noarch.rpm"));
    let recipe = format!(
        "states:\n  - id: key\n    module: linux.rpm.key\n    parameter: {{path: \"{key_url}\"}}\n\
         \x20 - id: release\n    module: linux.yum.repo\n    parameter: {{name: {id}-release, rpm-url: \"{release_url}\"}}\n\
         \x20 - id: pkgs\n    module: linux.yum.package\n    parameter: {{name: {{{PKG_B}: \"{b_url}\"}}, repo: {id}}}\n",
        id = f.id
    );
    let want = [
        ("key", format!("create gpg-pubkey-{id} (import from {key_url})")),
        ("release", format!("create {PKG_RELEASE} (install 1-1 from {release_url})")),
        ("pkgs", format!("create {PKG_B} (install 1.0-1 from {b_url})")),
    ];
    let test = f.apply(&recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    for (state, change) in &want {
        assert_eq!(changes(&test, state), [change.as_str()], "--test plan of {state}");
    }
    let run = f.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["key=changed", "release=changed", "pkgs=changed"], "{}{}", run.stdout, run.stderr);
    for (state, change) in &want {
        assert_eq!(changes(&run, state), [change.as_str()], "what apply did to {state}");
    }
    assert!(rpm_q(&format!("gpg-pubkey-{id}")).is_some());
    assert_eq!(rpm_q(PKG_RELEASE).as_deref(), Some("1-1"));
    assert_eq!(std::fs::read_to_string(&release_repo).unwrap(), content);
    assert_eq!(rpm_q(PKG_B).as_deref(), Some("1.0-1"));
    // Each file: downloaded by --test, revalidated (304) by the apply round, not sent again.
    let hits = server.take_hits();
    for path in ["keys/KEY", "pool/release.noarch.rpm", "pool/b.noarch.rpm"] {
        let statuses: Vec<u16> = hits.iter().filter(|h| h.path.ends_with(path)).map(|h| h.status).collect();
        assert_eq!(statuses, [200, 304], "{path}");
    }
    assert_eq!(f.apply(&recipe, &["--json"]).statuses(), ["key=ok", "release=ok", "pkgs=ok"]);
}

#[test]
fn the_yum_fallback_runs_where_dnf_is_missing() {
    // Debian has no yum 3. Here dnf stands in for it under the name `yum` (as on Fedora and RHEL 8+,
    // where `yum` is dnf), with `repoquery` (yum-utils') as `dnf repoquery`: this exercises the
    // commands the module runs with yum (`clean expire-cache` + `makecache`, `repoquery
    // --show-duplicates`, a separate `downgrade`), not yum 3 itself.
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0"), (PKG_A, "1.1")]);
    f.declare_repo();
    let bin = f.path("yum-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let d = f.dir.path().display();
    let scripts = [
        ("yum", format!("#!/bin/sh\necho \"$*\" >> {d}/yum.log\nexec /usr/bin/dnf \"$@\"\n")),
        (
            "repoquery",
            format!(
                "#!/bin/sh\necho \"$*\" >> {d}/repoquery.log\nfor a; do shift; [ \"$a\" = --show-duplicates ] || set -- \"$@\" \"$a\"; done\n\
                 exec /usr/bin/dnf repoquery \"$@\"\n"
            ),
        ),
    ];
    for (name, script) in scripts {
        std::fs::write(bin.join(name), script).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // rpm, and the `bash` that Debian's rpm runs to find its database (`%(bash -c 'echo ~/.rpmdb')`).
    std::os::unix::fs::symlink("/usr/bin/rpm", bin.join("rpm")).unwrap();
    std::os::unix::fs::symlink("/bin/bash", bin.join("bash")).unwrap();
    let path = bin.display().to_string();
    let apply = |recipe: &str, extra: &[&str]| f.apply_with_path(recipe, extra, &path);

    let latest = f.recipe(&format!("{{{PKG_A}: latest}}"), "");
    let test = apply(&latest, &["--test", "--json"]);
    assert_eq!(changes(&test, "pkgs"), [format!("create {PKG_A} (install 1.1-1)")], "{}{}", test.stdout, test.stderr);
    let run = apply(&latest, &["--json"]);
    assert_eq!(run.statuses(), ["repo=ok", "pkgs=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.1-1"));
    let pinned = f.recipe(&format!("{{{PKG_A}: \"1.0\"}}"), "");
    let run = apply(&pinned, &["--json"]);
    assert_eq!(
        changes(&run, "pkgs"),
        [format!("update {PKG_A} (downgrade 1.1-1 -> 1.0-1)")],
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(rpm_q(PKG_A).as_deref(), Some("1.0-1"));
    assert_eq!(apply(&pinned, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    let yum = std::fs::read_to_string(f.path("yum.log")).unwrap();
    let repo = format!("--disablerepo=* --enablerepo={}", f.id);
    for line in [
        format!("-y clean expire-cache {repo}"),
        format!("-y makecache {repo}"),
        format!("-y install {repo} {PKG_A}-1.1-1"),
        format!("-y downgrade {repo} {PKG_A}-1.0-1"),
    ] {
        assert!(yum.lines().any(|l| l == line), "no `yum {line}` in:\n{yum}");
    }
    assert!(
        !yum.lines().any(|l| l == format!("-y install {repo} {PKG_A}-1.0-1")),
        "yum downgrades with `downgrade`:\n{yum}"
    );
    let repoquery = std::fs::read_to_string(f.path("repoquery.log")).unwrap();
    // (The query format ends with a newline, so the log's lines are cut there.)
    assert!(repoquery.starts_with("-q --show-duplicates --qf=opsagent-q\t"), "{repoquery}");
    assert_eq!(std::fs::read_to_string(f.path("dnf.log")).unwrap_or_default(), "", "dnf itself is not on this PATH");
}

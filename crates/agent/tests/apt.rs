//! `linux.apt.repo` and `linux.apt.package` end to end, as root on Debian: tiny `.deb` packages built
//! here with `dpkg-deb`, served from a local `file:` repository that a `linux.apt.repo` state
//! declares, installed through the real `opsagent apply` with the real apt and dpkg.
//!
//! apt runs with `APT_CONFIG` pointing at a config that reads only the test's sources file and keeps
//! its package lists and caches in the test's temp dir, so the machine's own lists are never
//! touched and no network is used. `apt-get` is reached through a wrapper first on `PATH` that logs
//! each invocation (to count refreshes and transactions). The `Fixture` guard purges the test
//! packages and removes the sources file and temp dirs even when a test fails.

mod common;
#[path = "common/http.rs"]
mod http_server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::Run;

/// apt and dpkg allow one writer: the tests take turns.
static APT: Mutex<()> = Mutex::new(());

const PKG_A: &str = "opsagent-test-pkg-a";
const PKG_B: &str = "opsagent-test-pkg-b";
/// The conffile of package a (to tell `removed` from `purged`).
const CONFFILE_A: &str = "/etc/opsagent-test-pkg-a.conf";

struct Fixture {
    dir: tempfile::TempDir,
    list: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Fixture {
    fn new() -> Fixture {
        let turn = APT.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::Builder::new().prefix("opsagent-test-apt-").tempdir().expect("temp dir");
        let name = dir.path().file_name().unwrap().to_string_lossy().to_string();
        let list = PathBuf::from(format!("/etc/apt/sources.list.d/{name}.list"));
        let f = Fixture { dir, list, _turn: turn };
        purge_test_packages();
        for sub in ["debs", "repo", "lists/partial", "cache/archives/partial", "parts", "bin", "state"] {
            std::fs::create_dir_all(f.path(sub)).unwrap();
        }
        f.build_deb(PKG_A, "1.0");
        f.build_deb(PKG_A, "1.1");
        f.build_deb(PKG_B, "1.0");
        let d = f.dir.path().display();
        std::fs::write(
            f.path("apt.conf"),
            format!(
                "Dir::Etc::sourcelist \"{list}\";\nDir::Etc::sourceparts \"{d}/parts\";\n\
                 Dir::State::lists \"{d}/lists/\";\nDir::State::extended_states \"{d}/extended_states\";\n\
                 Dir::Cache \"{d}/cache/\";\nDir::Cache::archives \"{d}/cache/archives/\";\n",
                list = f.list.display()
            ),
        )
        .unwrap();
        let wrapper = f.path("bin/apt-get");
        std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$*\" >> {d}/apt-get.log\nexec /usr/bin/apt-get \"$@\"\n"))
            .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn deb(&self, package: &str, version: &str) -> PathBuf {
        self.path(&format!("debs/{package}_{version}_all.deb"))
    }

    /// Builds a package holding a doc file (and, for package a, a conffile).
    fn build_deb(&self, package: &str, version: &str) {
        let root = self.path(&format!("build/{package}-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join(format!("usr/share/doc/{package}"))).unwrap();
        std::fs::write(root.join(format!("usr/share/doc/{package}/version")), version).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: opsagent tests <root@localhost>\n\
                 Description: opsagent test package\n"
            ),
        )
        .unwrap();
        if package == PKG_A {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join(&CONFFILE_A[1..]), format!("version = {version}\n")).unwrap();
            std::fs::write(root.join("DEBIAN/conffiles"), format!("{CONFFILE_A}\n")).unwrap();
        }
        let out = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(self.deb(package, version))
            .output()
            .expect("dpkg-deb");
        assert!(out.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Makes the repository offer exactly `debs` (package, version), with a `Packages` index.
    fn publish(&self, debs: &[(&str, &str)]) {
        self.publish_as(debs, None);
    }

    /// Like `publish`, with a `Release` file naming the suite when `suite` is given.
    fn publish_as(&self, debs: &[(&str, &str)], suite: Option<&str>) {
        let repo = self.path("repo");
        std::fs::remove_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        let mut index = String::new();
        for (package, version) in debs {
            let file_name = format!("{package}_{version}_all.deb");
            std::fs::copy(self.deb(package, version), repo.join(&file_name)).unwrap();
            let control = Command::new("dpkg-deb").arg("-f").arg(repo.join(&file_name)).output().unwrap();
            let sha = Command::new("sha256sum").arg(repo.join(&file_name)).output().unwrap();
            let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
            let size = std::fs::metadata(repo.join(&file_name)).unwrap().len();
            index.push_str(&String::from_utf8_lossy(&control.stdout));
            index.push_str(&format!("Filename: ./{file_name}\nSize: {size}\nSHA256: {sha}\n\n"));
        }
        std::fs::write(repo.join("Packages"), &index).unwrap();
        if let Some(suite) = suite {
            let sha = Command::new("sha256sum").arg(repo.join("Packages")).output().unwrap();
            let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
            std::fs::write(
                repo.join("Release"),
                format!("Suite: {suite}\nCodename: {suite}\nSHA256:\n {sha} {} Packages\n", index.len()),
            )
            .unwrap();
        }
    }

    /// The `linux.apt.repo` state declaring the local repository.
    fn repo_state(&self) -> String {
        format!(
            "  - id: repo\n    module: linux.apt.repo\n    parameter:\n      name: {}\n      content: \"deb [trusted=yes] file:{} ./\\n\"\n",
            self.list.file_stem().unwrap().to_string_lossy(),
            self.path("repo").display()
        )
    }

    /// A recipe: the repository, then a package state with `packages` (YAML flow mapping) and `extra` parameters.
    fn recipe(&self, packages: &str, extra: &str) -> String {
        format!(
            "states:\n{}  - id: pkgs\n    module: linux.apt.package\n    parameter:\n      name: {packages}\n{extra}",
            self.repo_state()
        )
    }

    fn apply(&self, recipe: &str, extra: &[&str]) -> Run {
        let file = self.path("recipe.yaml");
        std::fs::write(&file, recipe).unwrap();
        let path = format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new(common::bin())
            .arg("apply")
            .arg(&file)
            .args(extra)
            .arg("--state-dir")
            .arg(self.path("state"))
            .env("NO_COLOR", "1")
            .env("APT_CONFIG", self.path("apt.conf"))
            .env("PATH", path)
            .output()
            .expect("run opsagent");
        Run::from(out)
    }

    /// Applies the repository state alone (under `--test`, a package state cannot see a
    /// repository that an earlier state has not written yet).
    fn declare_repo(&self) {
        let run = self.apply(&format!("states:\n{}", self.repo_state()), &["--json"]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        self.take_apt_calls();
    }

    fn validate(&self, recipe: &str) -> Run {
        let file = self.path("bad.yaml");
        std::fs::write(&file, recipe).unwrap();
        Run::from(Command::new(common::bin()).arg("validate").arg(&file).env("NO_COLOR", "1").output().unwrap())
    }

    /// Each `apt-get` invocation since the last call, and forgets them.
    fn take_apt_calls(&self) -> Vec<String> {
        let log = self.path("apt-get.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        purge_test_packages();
        let _ = std::fs::remove_file(&self.list);
    }
}

fn purge_test_packages() {
    let _ = Command::new("dpkg").args(["--purge", PKG_A, PKG_B]).output();
    debconf(PKG_A, "PURGE");
}

/// One command to debconf on behalf of `owner`; its answer.
fn debconf(owner: &str, command: &str) -> String {
    use std::io::Write;
    let Ok(mut child) = Command::new("debconf-communicate")
        .arg(owner)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        return String::new();
    };
    let _ = child.stdin.take().unwrap().write_all(format!("{command}\n").as_bytes());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// dpkg's status word and version of a package (`not-installed` when dpkg does not know it).
fn dpkg(package: &str) -> (String, String) {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}\t${Version}", package]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match text.split_once('\t') {
        Some((status, version)) if out.status.success() => {
            (status.split_whitespace().nth(2).unwrap_or("").to_string(), version.to_string())
        }
        _ => ("not-installed".into(), String::new()),
    }
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
            format!(
                "{} {} ({})",
                c["action"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect()
}

/// `--test` then `apply`: the test run plans exactly what the real run then reports.
fn test_then_apply(f: &Fixture, recipe: &str, want: &[&str]) -> Run {
    let test = f.apply(recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(changes(&test, "pkgs"), want, "--test plan");
    let run = f.apply(recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run, "pkgs"), want, "what apply did");
    run
}

#[test]
fn installs_from_a_local_repository_in_one_transaction_then_changes_nothing() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0"), (PKG_B, "1.0")]);
    let repo_only = format!("states:\n{}", f.repo_state());
    let run = f.apply(&repo_only, &["--json"]);
    assert_eq!(run.statuses(), ["repo=changed"], "{}", run.stderr);
    assert_eq!(std::fs::metadata(&f.list).unwrap().permissions().mode() & 0o777, 0o644);
    f.take_apt_calls();

    let recipe = f.recipe(&format!("{{{PKG_A}: \"\", {PKG_B}: \"\"}}"), "");
    let run = test_then_apply(
        &f,
        &recipe,
        &[&format!("create {PKG_A} (install 1.0)"), &format!("create {PKG_B} (install 1.0)")],
    );
    assert_eq!(run.statuses(), ["repo=ok", "pkgs=changed"]);
    let stdout = run.json()["states"][1]["stdout"].as_str().unwrap().to_string();
    assert!(stdout.contains(&format!("Setting up {PKG_A} (1.0)")), "{stdout}");
    assert!(!stdout.contains("(Reading database ... 5%"), "dpkg's progress lines are not reported:\n{stdout}");
    assert_eq!(dpkg(PKG_A), ("installed".into(), "1.0".into()));
    assert_eq!(dpkg(PKG_B), ("installed".into(), "1.0".into()));
    let calls = f.take_apt_calls();
    // --test refreshed once (its own round), apply refreshed once and installed both in one go.
    let updates = calls.iter().filter(|c| c.ends_with(" update")).count();
    let installs: Vec<&String> = calls.iter().filter(|c| c.contains(" install ")).collect();
    assert_eq!(updates, 2, "{calls:?}");
    assert_eq!(installs.len(), 1, "{calls:?}");
    assert!(installs[0].ends_with(&format!("install {PKG_A}=1.0 {PKG_B}=1.0")), "{calls:?}");

    let again = f.apply(&recipe, &["--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.statuses(), ["repo=ok", "pkgs=ok"]);
    assert!(changes(&again, "pkgs").is_empty());
    assert_eq!(f.take_apt_calls(), Vec::<String>::new(), "a converged run neither refreshes nor installs");
}

#[test]
fn versions_latest_removed_and_purged() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    f.declare_repo();
    let pinned = f.recipe(&format!("[{{key: {PKG_A}, value: \"1.0\"}}]"), "");
    test_then_apply(&f, &pinned, &[&format!("create {PKG_A} (install 1.0)")]);
    assert_eq!(dpkg(PKG_A), ("installed".into(), "1.0".into()));

    // A newer version appears: `latest` upgrades to it, a pinned version stays.
    f.publish(&[(PKG_A, "1.0"), (PKG_A, "1.1")]);
    let run = f.apply(&pinned, &["--json"]);
    assert_eq!(run.statuses(), ["repo=ok", "pkgs=ok"], "{}", run.stdout);
    let latest = f.recipe(&format!("{{{PKG_A}: latest}}"), "");
    test_then_apply(&f, &latest, &[&format!("update {PKG_A} (upgrade 1.0 -> 1.1)")]);
    assert_eq!(dpkg(PKG_A), ("installed".into(), "1.1".into()));
    assert_eq!(f.apply(&latest, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    test_then_apply(&f, &pinned, &[&format!("update {PKG_A} (downgrade 1.1 -> 1.0)")]);
    assert_eq!(dpkg(PKG_A), ("installed".into(), "1.0".into()));

    let removed = f.recipe(&format!("{{{PKG_A}: removed, {PKG_B}: removed}}"), "");
    test_then_apply(&f, &removed, &[&format!("remove {PKG_A} (remove 1.0)")]);
    assert_eq!(dpkg(PKG_A).0, "config-files");
    assert!(Path::new(CONFFILE_A).exists(), "remove keeps configuration files");
    assert_eq!(f.apply(&removed, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    let purged = f.recipe(&format!("{{{PKG_A}: purged}}"), "");
    test_then_apply(&f, &purged, &[&format!("remove {PKG_A} (purge config files)")]);
    assert_eq!(dpkg(PKG_A).0, "not-installed");
    assert!(!Path::new(CONFFILE_A).exists(), "purge removes configuration files");
    assert_eq!(f.apply(&purged, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);
}

#[test]
fn installs_a_deb_file_by_path_or_file_url() {
    let f = Fixture::new();
    f.publish(&[]);
    f.declare_repo();
    let deb = f.deb(PKG_B, "1.0");
    let by_path = f.recipe(&format!("{{{PKG_B}: \"{}\"}}", deb.display()), "");
    test_then_apply(&f, &by_path, &[&format!("create {PKG_B} (install 1.0 from {})", deb.display())]);
    assert_eq!(dpkg(PKG_B), ("installed".into(), "1.0".into()));
    let by_url = f.recipe(&format!("{{{PKG_B}: \"file://{}\"}}", deb.display()), "");
    assert_eq!(f.apply(&by_url, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);

    // The file must hold the package it is given for.
    let wrong = f.recipe(&format!("{{{PKG_A}: \"{}\"}}", deb.display()), "");
    let run = f.apply(&wrong, &["--json"]);
    assert_eq!(run.code, 1);
    let comment = run.json()["states"][1]["comment"].as_str().unwrap().to_string();
    assert!(comment.contains(&format!("holds package `{PKG_B}`, not `{PKG_A}`")), "{comment}");
}

#[test]
fn installs_a_deb_file_from_an_http_url_downloaded_once() {
    let f = Fixture::new();
    f.publish(&[]);
    f.declare_repo();
    let server = http_server::Server::start(None);
    let deb = std::fs::read(f.deb(PKG_B, "1.0")).unwrap();
    server.put(&format!("pool/{PKG_B}_1.0_all.deb"), &deb, http_server::Send::Length);
    let url = server.url(&format!("pool/{PKG_B}_1.0_all.deb"));
    let recipe = f.recipe(&format!("{{{PKG_B}: \"{url}\"}}"), "");
    test_then_apply(&f, &recipe, &[&format!("create {PKG_B} (install 1.0 from {url})")]);
    assert_eq!(dpkg(PKG_B), ("installed".into(), "1.0".into()));
    // --test downloaded it; apply revalidated that copy (304) instead of downloading it again.
    let statuses: Vec<u16> = server.take_hits().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [200, 304]);
    assert_eq!(f.apply(&recipe, &["--json"]).statuses(), ["repo=ok", "pkgs=ok"]);
}

#[test]
fn an_unknown_package_or_version_fails_naming_it() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    let unknown = f.recipe("{opsagent-test-no-such-pkg: \"\"}", "");
    let run = f.apply(&unknown, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let comment = run.json()["states"][1]["comment"].as_str().unwrap().to_string();
    assert_eq!(
        comment,
        "package `opsagent-test-no-such-pkg` is not available from any configured repository (after refreshing the \
         package lists)"
    );

    let version = f.recipe(&format!("{{{PKG_A}: \"9.9\"}}"), "");
    let run = f.apply(&version, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    let comment = run.json()["states"][1]["comment"].as_str().unwrap().to_string();
    assert_eq!(
        comment,
        format!("package `{PKG_A}` has no version 9.9 in the configured repositories (available: 1.0)")
    );
    assert_eq!(dpkg(PKG_A).0, "not-installed");
}

#[test]
fn bad_parameters_are_refused_by_validate() {
    let f = Fixture::new();
    let run = f.validate(
        "states:
  - id: p1
    module: linux.apt.package
    parameter: {repo: main}
  - id: p2
    module: linux.apt.package
    parameter:
      name: {\"Bad Name\": \"\", nginx: lastest, curl: \"ftp://example.com/curl.deb\", vim: relative/vim.deb}
      deb-conf-file: debconf.txt
  - id: r1
    module: linux.apt.repo
    parameter: {name: ../evil, content: \"hello world\"}
  - id: r2
    module: linux.apt.repo
    parameter: {content: \"deb file:/srv/repo ./\"}
  - id: p3
    module: linux.apt.package
    parameter: {name: {nginx: \"\"}, verify-gpg: false}
  - id: ppa
    module: linux.apt.ppa
    parameter: {name: \"not a ppa\", username: me, dist: Jammy, key-file: key.gpg}
",
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "state 1 `p1` (linux.apt.package): parameter `name`: required parameter `name` is missing",
        "parameter `name.Bad Name`: `Bad Name` is not a Debian package name",
        "parameter `name.nginx`: `lastest` is not a Debian version, `latest`, `removed`, `purged` or a `.deb` path",
        "parameter `name.curl`: `ftp://example.com/curl.deb` is neither a local path nor an http(s) URL",
        "parameter `name.vim`: `relative/vim.deb` is not an absolute path",
        "parameter `deb-conf-file`: `debconf.txt` is not an absolute path",
        "state 5 `p3` (linux.apt.package): parameter `verify-gpg`: `verify-gpg: false` is ignored",
        "state 6 `ppa` (linux.apt.ppa): parameter `name`: `not a ppa` is not a PPA name",
        "state 6 `ppa` (linux.apt.ppa): parameter `password`: `username` is given without `password`",
        "parameter `dist`: `Jammy` is not an Ubuntu series",
        "parameter `key-file`: `key.gpg` is not an absolute path",
        "state 3 `r1` (linux.apt.repo): parameter `name`: `../evil` cannot name a file in /etc/apt/sources.list.d",
        "parameter `content`: line 1 (`hello world`) is not a `deb` or `deb-src` line",
        "state 4 `r2` (linux.apt.repo): parameter `name`: required parameter `name` is missing",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn a_changed_repository_makes_the_next_package_state_refresh_again() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0"), (PKG_B, "1.0")]);
    f.declare_repo();
    let repo_state = |extra_line: &str| {
        format!(
            "  - id: repo\n    module: linux.apt.repo\n    parameter:\n      name: {}\n      content: \"{extra_line}deb [trusted=yes] file:{} ./\\n\"\n",
            f.list.file_stem().unwrap().to_string_lossy(),
            f.path("repo").display()
        )
    };
    let recipe = format!(
        "states:\n  - id: b\n    module: linux.apt.package\n    parameter: {{name: {{{PKG_B}: \"\"}}}}\n{}  - id: a\n    \
         module: linux.apt.package\n    parameter: {{name: {{{PKG_A}: \"\"}}}}\n",
        repo_state("# changed\\n")
    );
    let run = f.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["b=changed", "repo=changed", "a=changed"], "{}{}", run.stdout, run.stderr);
    let calls = f.take_apt_calls();
    assert_eq!(calls.iter().filter(|c| c.ends_with(" update")).count(), 2, "{calls:?}");

    // Without a repository change, one refresh serves the whole round.
    purge_test_packages();
    let run = f.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["b=changed", "repo=ok", "a=changed"], "{}{}", run.stdout, run.stderr);
    let calls = f.take_apt_calls();
    assert_eq!(calls.iter().filter(|c| c.ends_with(" update")).count(), 1, "{calls:?}");

    let gone = format!(
        "states:\n  - id: repo\n    module: linux.apt.repo\n    parameter: {{name: {}, absent: true}}\n",
        f.list.file_stem().unwrap().to_string_lossy()
    );
    let run = f.apply(&gone, &["--json"]);
    assert_eq!(run.statuses(), ["repo=changed"]);
    assert!(!f.list.exists());
    assert_eq!(f.apply(&gone, &["--json"]).statuses(), ["repo=ok"]);
}

#[test]
fn a_held_dpkg_lock_is_named() {
    let f = Fixture::new();
    f.publish(&[(PKG_A, "1.0")]);
    f.declare_repo();
    // dpkg and apt lock with fcntl record locks; this process holds the frontend lock.
    let lock = std::fs::OpenOptions::new().read(true).write(true).open("/var/lib/dpkg/lock-frontend").unwrap();
    let flock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&lock, nix::fcntl::FcntlArg::F_SETLK(&flock)).expect("take the dpkg frontend lock");
    // A 4 s timeout: apt waits 2 s for the lock, then gives up.
    let recipe = format!("{}    timeout: 4\n", f.recipe(&format!("{{{PKG_A}: \"\"}}"), ""));
    let run = f.apply(&recipe, &["--json", "--retries", "0"]);
    drop(lock);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let comment = run.json()["states"][1]["comment"].as_str().unwrap().to_string();
    assert!(
        comment.starts_with("`/var/lib/dpkg/lock-frontend` is locked: another apt or dpkg is running"),
        "{comment}"
    );
    assert_eq!(dpkg(PKG_A).0, "not-installed");
}

#[test]
fn target_release_and_debconf_selections_are_used() {
    let f = Fixture::new();
    f.publish_as(&[(PKG_A, "1.0")], Some("opsagent-test-suite"));
    f.declare_repo();
    let selections = f.path("debconf.txt");
    std::fs::write(&selections, format!("{PKG_A} {PKG_A}/greeting string hello\n")).unwrap();
    let recipe = f.recipe(
        &format!("{{{PKG_A}: \"\"}}"),
        &format!("      repo: opsagent-test-suite\n      deb-conf-file: {}\n", selections.display()),
    );
    test_then_apply(&f, &recipe, &[&format!("create {PKG_A} (install 1.0)")]);
    assert_eq!(dpkg(PKG_A), ("installed".into(), "1.0".into()));
    let calls = f.take_apt_calls();
    assert!(calls.iter().any(|c| c.ends_with(&format!("install -t opsagent-test-suite {PKG_A}=1.0"))), "{calls:?}");
    assert_eq!(debconf(PKG_A, &format!("GET {PKG_A}/greeting")), "0 hello");

    let unknown = f.recipe(&format!("{{{PKG_B}: \"\"}}"), "      repo: no-such-suite\n");
    let run = f.apply(&unknown, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let comment = run.json()["states"][1]["comment"].as_str().unwrap().to_string();
    assert!(
        comment.starts_with(&format!("package `{PKG_B}` cannot be looked up in the repositories: "))
            && comment.contains("no-such-suite"),
        "{comment}"
    );
}

/// Removes files when dropped (files a test writes outside its temp dir).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn a_ppa_that_does_not_verify_is_put_back_as_it_was() {
    let f = Fixture::new();
    let sources = PathBuf::from("/etc/apt/sources.list.d/opsagent-test-ubuntu-archive-jammy.list");
    let auth = PathBuf::from("/etc/apt/auth.conf.d/opsagent-test-ubuntu-archive.conf");
    let _cleanup = RemoveOnDrop(vec![sources.clone(), auth.clone()]);
    // No network here: every fetch goes to a closed local port and fails at once.
    let mut conf = std::fs::read_to_string(f.path("apt.conf")).unwrap();
    conf.push_str(
        "Acquire::http::Proxy \"http://127.0.0.1:9\";\nAcquire::https::Proxy \"http://127.0.0.1:9\";\nAcquire::Retries \"0\";\n",
    );
    std::fs::write(f.path("apt.conf"), conf).unwrap();
    let key = f.path("ppa.gpg");
    std::fs::write(&key, "not really a key").unwrap();
    let recipe = format!(
        "states:\n  - id: ppa\n    module: linux.apt.ppa\n    parameter: {{name: \"ppa:opsagent-test/archive\", dist: jammy, \
         username: someone, password: s3cret-pw, key-file: {}}}\n",
        key.display()
    );

    let test = f.apply(&recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    let line = format!(
        "deb [signed-by={}] https://private-ppa.launchpadcontent.net/opsagent-test/archive/ubuntu jammy main\n",
        key.display()
    );
    assert_eq!(
        changes(&test, "ppa"),
        [
            format!("create {} ({} bytes, mode 0644)", sources.display(), line.len()),
            format!("create {} (credentials, mode 0600)", auth.display()),
        ]
    );
    let diff = test.json()["states"][0]["diff"].as_str().unwrap().to_string();
    assert!(diff.contains(&format!("+{line}")), "{diff}");

    // An earlier sources file comes back as it was; the credentials file goes again.
    std::fs::write(&sources, "# earlier\n").unwrap();
    let run = f.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let comment = run.json()["states"][0]["comment"].as_str().unwrap().to_string();
    assert!(
        comment
            .starts_with(&format!("`{}` was put back as it was: its source could not be fetched", sources.display())),
        "{comment}"
    );
    assert_eq!(std::fs::read_to_string(&sources).unwrap(), "# earlier\n");
    assert!(!auth.exists());
    for out in [&test.stdout, &test.stderr, &run.stdout, &run.stderr] {
        assert!(!out.contains("s3cret-pw"), "the password leaked:\n{out}");
    }
    assert_eq!(f.take_apt_calls().len(), 1, "one fetch of the PPA alone");

    // This Debian machine names no Ubuntu series: without `dist`, the state says so.
    let no_dist = "states:\n  - id: ppa\n    module: linux.apt.ppa\n    parameter: {name: opsagent-test/archive}\n";
    let run = f.apply(no_dist, &["--test", "--json", "--retries", "0"]);
    let comment = run.json()["states"][0]["comment"].as_str().unwrap_or("").to_string();
    assert!(comment.contains("names no Ubuntu series") || run.code == 0, "{comment}");
}

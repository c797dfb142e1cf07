//! `linux.user` and `linux.group` on the real machine: real accounts named `opsagent-test-*`,
//! removed by drop guards even when a test fails. Needs root (CI runs as root).

mod common;

use std::process::Command;
use std::sync::Mutex;

use common::{Run, Scratch};

/// `useradd` and friends lock /etc/passwd: one test at a time changes accounts.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// Removes test users and groups when dropped.
struct Cleanup {
    users: Vec<&'static str>,
    groups: Vec<&'static str>,
}

impl Cleanup {
    fn new(users: &[&'static str], groups: &[&'static str]) -> Cleanup {
        let cleanup = Cleanup { users: users.to_vec(), groups: groups.to_vec() };
        cleanup.remove();
        cleanup
    }

    fn remove(&self) {
        for u in &self.users {
            let _ = Command::new("userdel").args(["-r", u]).output();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove();
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The line of `name` in a colon-separated database such as /etc/shadow.
fn db_line(file: &str, name: &str) -> Option<String> {
    std::fs::read_to_string(file).unwrap().lines().find(|l| l.split(':').next() == Some(name)).map(str::to_string)
}

fn changes(run: &Run) -> Vec<serde_json::Value> {
    run.json()["states"].as_array().unwrap().iter().map(|s| s["changes"].clone()).collect()
}

fn validate(recipe: &std::path::Path) -> Run {
    Run::from(Command::new(common::bin()).arg("validate").arg(recipe).env("NO_COLOR", "1").output().unwrap())
}

const RECIPE: &str = r#"
states:
  - id: group
    module: linux.group
    parameter: {groupname: opsagent-test-g1, gid: "1590"}
  - id: user
    module: linux.user
    parameter:
      username: opsagent-test-u1
      password: "correct horse battery staple"
      fullname: Test User
      uid: "1591"
      gid: opsagent-test-g1
      groups: [opsagent-test-g1, adm]
      shell: /bin/bash
"#;

#[test]
fn user_and_group_converge_then_stay_put() {
    let _lock = lock();
    let _cleanup = Cleanup::new(&["opsagent-test-u1"], &["opsagent-test-g1"]);
    let s = Scratch::new();
    let recipe = s.recipe("r.yaml", RECIPE);

    let first = s.apply(&recipe, &["--json"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.statuses(), ["group=changed", "user=changed"]);
    assert_eq!(
        db_line("/etc/passwd", "opsagent-test-u1").unwrap(),
        "opsagent-test-u1:x:1591:1590:Test User:/home/opsagent-test-u1:/bin/bash"
    );
    assert!(db_line("/etc/group", "opsagent-test-g1").unwrap().starts_with("opsagent-test-g1:x:1590:"));
    assert!(db_line("/etc/group", "adm").unwrap().contains("opsagent-test-u1"));
    assert!(std::path::Path::new("/home/opsagent-test-u1").is_dir());
    let shadow = db_line("/etc/shadow", "opsagent-test-u1").unwrap();
    assert!(shadow.starts_with("opsagent-test-u1:$6$"), "{shadow}");
    // The clear text appears nowhere in the report.
    assert!(!first.stdout.contains("horse") && !first.stderr.contains("horse"), "{}", first.stdout);

    // The second run changes nothing, and the hash (with its salt) is byte-identical.
    let second = s.apply(&recipe, &["--json"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.statuses(), ["group=ok", "user=ok"]);
    assert_eq!(db_line("/etc/shadow", "opsagent-test-u1").unwrap(), shadow, "an unchanged password is not rewritten");
}

#[test]
fn test_mode_predicts_apply_and_drift_is_repaired() {
    let _lock = lock();
    let _cleanup = Cleanup::new(&["opsagent-test-u2"], &["opsagent-test-g2"]);
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        &RECIPE.replace("-u1", "-u2").replace("-g1", "-g2").replace("1590", "1592").replace("1591", "1593"),
    );
    assert_eq!(s.apply(&recipe, &[]).code, 0);

    // Drift by hand: primary group, shell, groups and password.
    let old_shadow = db_line("/etc/shadow", "opsagent-test-u2").unwrap();
    for args in [
        &["usermod", "-s", "/bin/sh", "opsagent-test-u2"][..],
        &["gpasswd", "-d", "opsagent-test-u2", "adm"],
        &["usermod", "-p", "$6$abc$def", "opsagent-test-u2"],
        &["usermod", "-g", "adm", "opsagent-test-u2"],
    ] {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let passwd_before = db_line("/etc/passwd", "opsagent-test-u2");
    let predicted = s.apply(&recipe, &["--test", "--json"]);
    assert_eq!(predicted.code, 0, "{}", predicted.stderr);
    assert_eq!(db_line("/etc/passwd", "opsagent-test-u2"), passwd_before, "--test changes nothing");
    assert!(db_line("/etc/shadow", "opsagent-test-u2").unwrap().starts_with("opsagent-test-u2:$6$abc$def:"));
    assert_eq!(
        changes(&predicted)[1],
        serde_json::json!([
            {"action": "update", "target": "opsagent-test-u2", "detail": "gid 4 (adm) -> 1592 (opsagent-test-g2)"},
            {"action": "update", "target": "opsagent-test-u2", "detail": "shell /bin/sh -> /bin/bash"},
            {"action": "update", "target": "opsagent-test-u2", "detail": "groups opsagent-test-g2 -> adm,opsagent-test-g2"},
            {"action": "update", "target": "opsagent-test-u2", "detail": "password updated"},
        ]),
        "{}",
        predicted.stdout
    );

    let applied = s.apply(&recipe, &["--json"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    assert_eq!(applied.statuses(), ["group=ok", "user=changed"]);
    assert_eq!(changes(&applied), changes(&predicted), "--test predicted exactly what apply did");
    assert_eq!(
        db_line("/etc/passwd", "opsagent-test-u2").unwrap(),
        "opsagent-test-u2:x:1593:1592:Test User:/home/opsagent-test-u2:/bin/bash"
    );
    let shadow = db_line("/etc/shadow", "opsagent-test-u2").unwrap();
    assert!(shadow.starts_with("opsagent-test-u2:$6$") && shadow != old_shadow, "{shadow}");
    assert!(db_line("/etc/group", "adm").unwrap().contains("opsagent-test-u2"));
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["group=ok", "user=ok"]);
}

#[test]
fn group_gid_drift_is_repaired_and_the_wire_form_works() {
    let _lock = lock();
    let _cleanup = Cleanup::new(&["opsagent-test-u3"], &["opsagent-test-g3"]);
    let s = Scratch::new();
    // The original's wire form: numbers as strings, booleans, `groups` as an array, a given hash.
    let hash = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
    let recipe = s.recipe(
        "r.json",
        &serde_json::json!({
            "recipe_version": 7,
            "state": [
                {"id": "g", "module": "linux.group",
                 "parameter": {"groupname": "opsagent-test-g3", "gid": "1595", "system-group": "false"}},
                {"id": "u", "module": "linux.user",
                 "parameter": {"username": "opsagent-test-u3", "password": hash, "uid": "1596", "gid": "1595",
                               "no-login": "true", "groups": [], "system-account": false, "home": "/home/opsagent-test-u3"}}
            ]
        })
        .to_string(),
    );
    let first = s.apply(&recipe, &["--json"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.statuses(), ["g=changed", "u=changed"]);
    assert_eq!(
        db_line("/etc/passwd", "opsagent-test-u3").unwrap(),
        "opsagent-test-u3:x:1596:1595::/home/opsagent-test-u3:/usr/sbin/nologin"
    );
    assert!(db_line("/etc/shadow", "opsagent-test-u3").unwrap().starts_with(&format!("opsagent-test-u3:{hash}:")));
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["g=ok", "u=ok"]);

    // The group's gid drifts: the group state puts it back.
    let out = Command::new("groupmod").args(["-g", "1597", "opsagent-test-g3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        changes(&run)[0],
        serde_json::json!([{"action": "update", "target": "opsagent-test-g3", "detail": "gid 1597 -> 1595"}])
    );
    assert!(db_line("/etc/group", "opsagent-test-g3").unwrap().starts_with("opsagent-test-g3:x:1595:"));
}

#[test]
fn bad_parameters_are_named() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "bad.yaml",
        r#"states:
  - id: u
    module: linux.user
    parameter: {username: "9lives", password: "", uid: "abc", gid: "a b", shell: bin/sh, groups: ["ok", "no way"]}
  - id: v
    module: linux.user
    parameter: {username: opsagent-test-v, password: "hunter2", shell: /bin/bash, no-login: true, uid: "4294967295"}
  - id: g
    module: linux.group
    parameter: {gid: 12}
"#,
    );
    let run = validate(&recipe);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for expected in [
        "parameter `username`: `9lives` is not a valid account name",
        "parameter `password`: the password is empty",
        "parameter `uid`: expected a whole number, found `abc`",
        "parameter `gid`: `a b` is neither a group id nor a valid group name",
        "parameter `shell`: `bin/sh` is not an absolute path",
        "parameter `groups[1]`: `no way` is not a valid group name",
        "parameter `no-login`: `no-login: true` and `shell` contradict each other",
        "parameter `uid`: 4294967295 is out of range",
        "parameter `groupname`: required parameter `groupname` is missing",
    ] {
        assert!(run.stderr.contains(expected), "missing `{expected}` in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("hunter2"), "a password is never echoed: {}", run.stderr);
}

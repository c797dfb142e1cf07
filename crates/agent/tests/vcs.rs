//! `common.hg` and `common.svn` against real local repositories (no network).

mod common;

use std::path::Path;
use std::process::Command;

use common::Scratch;

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).current_dir(dir).env("HGPLAIN", "1").output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn detail(run: &common::Run) -> Vec<String> {
    run.json()["states"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn hg_clones_updates_and_respects_local_changes() {
    let s = Scratch::new();
    let up = s.path("up");
    std::fs::create_dir(&up).unwrap();
    run(&up, "hg", &["init"]);
    std::fs::write(up.join("README"), "one\n").unwrap();
    run(&up, "hg", &["commit", "-A", "-q", "-u", "opsagent-test", "-m", "one"]);
    let recipe = |force: bool| {
        s.recipe(
            &format!("hg-{force}.yaml"),
            &format!("states:\n  - {{id: src, module: common.hg, parameter: {{repo: \"{}\", path: \"@/co\", force: {force}}}}}\n", up.display()),
        )
    };
    assert_eq!(s.apply(&recipe(false), &["--json"]).statuses(), ["src=changed"]);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "one\n");
    assert_eq!(s.apply(&recipe(false), &["--json"]).statuses(), ["src=ok"]);

    std::fs::write(up.join("README"), "two\n").unwrap();
    run(&up, "hg", &["commit", "-q", "-u", "opsagent-test", "-m", "two"]);
    let predicted = s.apply(&recipe(false), &["--json", "--test"]);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "one\n", "--test changed nothing");
    let applied = s.apply(&recipe(false), &["--json"]);
    assert_eq!(detail(&applied), detail(&predicted));
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "two\n");

    std::fs::write(s.path("co/README"), "local\n").unwrap();
    let refused = s.apply(&recipe(false), &["--json", "--retries", "0"]);
    assert!(
        refused.json()["states"][0]["comment"].as_str().unwrap().contains("has local changes"),
        "{}",
        refused.stdout
    );
    assert_eq!(s.apply(&recipe(true), &["--json"]).statuses(), ["src=changed"]);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "two\n");
    assert_eq!(s.apply(&recipe(true), &["--json"]).statuses(), ["src=ok"]);
}

#[test]
fn svn_checks_out_pins_revisions_and_hides_the_password() {
    let s = Scratch::new();
    let repo = s.path("repo");
    run(s.dir.path(), "svnadmin", &["create", repo.to_str().unwrap()]);
    let url = format!("file://{}", repo.display());
    let work = s.path("work");
    run(s.dir.path(), "svn", &["checkout", "-q", &url, work.to_str().unwrap()]);
    std::fs::write(work.join("README"), "one\n").unwrap();
    run(&work, "svn", &["add", "-q", "README"]);
    run(&work, "svn", &["commit", "-q", "-m", "one", "--username", "opsagent-test"]);
    std::fs::write(work.join("README"), "two\n").unwrap();
    run(&work, "svn", &["commit", "-q", "-m", "two", "--username", "opsagent-test"]);

    let at = |rev: &str| {
        s.recipe(
            &format!("svn-{rev}.yaml"),
            &format!(
                "states:\n  - {{id: src, module: common.svn, parameter: {{repo: \"{url}\", path: \"@/co\", revision: \"{rev}\", username: deploy, password: hunter2-svn-secret}}}}\n"
            ),
        )
    };
    let first = s.apply(&at("1"), &["--json"]);
    assert_eq!(first.statuses(), ["src=changed"], "{}", first.stdout);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "one\n");
    assert_eq!(s.apply(&at("1"), &["--json"]).statuses(), ["src=ok"]);
    let predicted = s.apply(&at("HEAD"), &["--json", "--test"]);
    assert_eq!(detail(&predicted), ["r1 -> r2"]);
    let applied = s.apply(&at("HEAD"), &["--json"]);
    assert_eq!(detail(&applied), ["r1 -> r2"]);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "two\n");
    assert_eq!(s.apply(&at("HEAD"), &["--json"]).statuses(), ["src=ok"]);
    for output in [&first, &predicted, &applied] {
        assert!(!output.stdout.contains("hunter2") && !output.stderr.contains("hunter2"));
    }

    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: src, module: common.svn, parameter: {repo: x, path: /tmp/x, revision: tip}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("`tip` is not a revision"));
}

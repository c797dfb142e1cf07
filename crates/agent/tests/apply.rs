//! `opsagent apply` end to end: the real binary, real files and processes in a temp dir.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{alive, snapshot, wait_until, Scratch};

/// A recipe using every module of the foundation; `@` is the scratch dir.
const ALL_MODULES: &str = r#"
version: 4
states:
  - id: note
    module: meta.comment
    parameter: {comment: hello}
  - id: dirs
    module: linux.dir
    parameter: {path: ["@/tree", "@/tree/sub"], mode: "0750", recursive: false}
  - id: conf
    module: linux.file
    parameter: {path: "@/tree/app.conf", content: "a = 1\nb = 2\n", mode: "0640", user: nobody, group: nogroup}
  - id: secret
    module: linux.file
    parameter: {path: "@/tree/deep/er/secret", content: "s3cr3t", mode: 600}
  - id: link
    module: linux.symlink
    parameter: {target: "@/tree/current", source: "@/tree/app.conf"}
  - id: once
    module: linux.cmd
    parameter: {cmd: "echo ran >> @/tree/ran.log", if-path-absent: ["@/tree/ran.log"]}
  - id: gate
    module: meta.wait
    parameter: {state: ["@{db.state.1}"]}
"#;

#[test]
fn converges_then_reports_ok_without_touching_anything() {
    let s = Scratch::new();
    let recipe = s.recipe("r.yaml", ALL_MODULES);
    let first = s.apply(&recipe, &["--json", "--done", "gate"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(
        first.statuses(),
        ["note=skipped", "dirs=changed", "conf=changed", "secret=changed", "link=changed", "once=changed", "gate=ok"]
    );
    assert_eq!(first.json()["recipe_version"], 4);

    let conf = s.path("tree/app.conf");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "a = 1\nb = 2\n");
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw());
    assert_eq!(std::fs::metadata(s.path("tree/deep/er/secret")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(s.path("tree/sub")).unwrap().mode() & 0o777, 0o750);
    assert_eq!(std::fs::read_link(s.path("tree/current")).unwrap(), conf);

    let before = snapshot(&s.path("tree"));
    let second = s.apply(&recipe, &["--json", "--done", "gate"]);
    assert_eq!(second.code, 0);
    assert_eq!(second.statuses(), ["note=skipped", "dirs=ok", "conf=ok", "secret=ok", "link=ok", "once=ok", "gate=ok"]);
    assert!(second.json()["states"].as_array().unwrap().iter().all(|s| s["changes"].as_array().unwrap().is_empty()));
    assert_eq!(snapshot(&s.path("tree")), before, "a converged run changes nothing: inode, mtime, content");
}

#[test]
fn drift_is_repaired_and_shown_as_a_diff() {
    let s = Scratch::new();
    let recipe = s.recipe("r.yaml", ALL_MODULES);
    assert_eq!(s.apply(&recipe, &["--done", "gate"]).code, 0);
    std::fs::write(s.path("tree/app.conf"), "a = 1\nb = 3\n").unwrap();
    std::fs::set_permissions(s.path("tree/sub"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let run = s.apply(&recipe, &["--done", "gate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("-b = 3\n"), "{}", run.stdout);
    assert!(run.stdout.contains("+b = 2\n"), "{}", run.stdout);
    assert!(run.stdout.contains("chmod "), "{}", run.stdout);
    assert!(run.stdout.contains("0777 -> 0750"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(s.path("tree/app.conf")).unwrap(), "a = 1\nb = 2\n");
}

#[test]
fn test_mode_changes_nothing() {
    let s = Scratch::new();
    let recipe = s.recipe("r.yaml", ALL_MODULES);
    // On an empty tree…
    std::fs::create_dir(s.path("tree")).unwrap();
    let before = snapshot(s.dir.path());
    let run = s.apply(&recipe, &["--test", "--json", "--done", "gate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["test"], true);
    assert_eq!(snapshot(s.dir.path()), before);
    // …and on a drifted one.
    assert_eq!(s.apply(&recipe, &["--done", "gate"]).code, 0);
    std::fs::write(s.path("tree/app.conf"), "drifted").unwrap();
    std::fs::remove_file(s.path("tree/ran.log")).unwrap();
    let before = snapshot(s.dir.path());
    let run = s.apply(&recipe, &["--test", "--done", "gate"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("would change  linux.file     conf"), "{}", run.stdout);
    assert!(run.stdout.contains("would run echo ran"), "{}", run.stdout);
    assert!(run.stdout.contains("+a = 1"), "{}", run.stdout);
    assert_eq!(snapshot(s.dir.path()), before, "--test leaves the tree byte-identical");
}

#[test]
fn absent_removes() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("gone/dir/inner")).unwrap();
    std::fs::write(s.path("gone/file"), "x").unwrap();
    std::os::unix::fs::symlink("/nowhere", s.path("gone/link")).unwrap();
    let recipe = s.recipe(
        "r.yaml",
        r#"states:
  - {id: f, module: linux.file, parameter: {path: "@/gone/file", absent: true}}
  - {id: l, module: linux.symlink, parameter: {target: "@/gone/link", source: "/nowhere", absent: true}}
  - {id: d, module: linux.dir, parameter: {path: ["@/gone/dir"], absent: true}}
"#,
    );
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["f=changed", "l=changed", "d=changed"]);
    assert_eq!(std::fs::read_dir(s.path("gone")).unwrap().count(), 0);
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["f=ok", "l=ok", "d=ok"]);
}

#[test]
fn failed_state_is_retried_then_the_round_ceases() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        r#"states:
  - {id: count, module: linux.cmd, parameter: {cmd: "echo try >> @/tries; echo out; echo err >&2; exit 3"}}
  - {id: after, module: linux.file, parameter: {path: "@/after", content: x}}
"#,
    );
    let run = s.apply(&recipe, &["--json", "--retries", "2", "--retry-delay", "0.05"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.statuses(), ["count=failed", "after=not_run"]);
    let state = &run.json()["states"][0];
    assert_eq!(state["attempts"], 3);
    assert_eq!(state["stdout"], "out\n");
    assert_eq!(state["stderr"], "err\n");
    assert_eq!(state["comment"], "the command exited with status 3");
    assert_eq!(std::fs::read_to_string(s.path("tries")).unwrap().lines().count(), 3);
    assert!(!s.path("after").exists());

    // --keep-going runs the rest.
    let run = s.apply(&recipe, &["--json", "--retries", "0", "--keep-going"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.statuses(), ["count=failed", "after=changed"]);

    // Text output names the failure and the hint.
    let run = s.apply(&recipe, &["--retries", "0"]);
    assert!(run.stdout.contains("failed  linux.cmd      count"), "{}", run.stdout);
    assert!(run.stdout.contains("error: the command exited with status 3"), "{}", run.stdout);
    assert!(run.stdout.contains("not_run  linux.file     after"), "{}", run.stdout);
    assert!(run.stdout.contains("--keep-going"), "{}", run.stdout);
}

#[test]
fn wait_needs_done_locally() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        "states:\n  - {id: gate, module: meta.wait, parameter: {}}\n  - {id: after, module: meta.comment}\n",
    );
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.statuses(), ["gate=failed", "after=not_run"]);
    assert_eq!(run.json()["states"][0]["comment"], "wait `gate` was not released; release it with `--done gate`");
    assert_eq!(s.apply(&recipe, &["--json", "--done", "gate"]).statuses(), ["gate=ok", "after=skipped"]);
    let run = s.apply(&recipe, &["--done", "nope"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`--done nope` names no state"), "{}", run.stderr);
}

#[test]
fn cmd_runs_as_user_with_env_and_cwd() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("work")).unwrap();
    let recipe = s.recipe(
        "r.yaml",
        r#"states:
  - id: who
    module: linux.cmd
    parameter:
      cmd: 'echo "$(id -un):$(id -gn) $GREETING $PWD $HOME"'
      user: nobody
      cwd: /
      env: [{key: GREETING, value: hi}]
  - {id: where, module: linux.cmd, parameter: {cmd: pwd, cwd: "@/work", shell: /bin/bash}}
"#,
    );
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let states = &run.json()["states"];
    let home = nix::unistd::User::from_name("nobody").unwrap().unwrap().dir;
    assert_eq!(states[0]["stdout"], format!("nobody:nogroup hi / {}\n", home.display()));
    assert_eq!(states[1]["stdout"], format!("{}\n", s.path("work").display()));
}

#[test]
fn cmd_timeout_kills_background_grandchildren() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        r#"states:
  - id: hang
    module: linux.cmd
    timeout: 1
    retries: 0
    parameter: {cmd: "sleep 300 & echo $! > @/grandchild.pid; sleep 300"}
"#,
    );
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["states"][0]["comment"], "the command timed out after 1s; its process group was killed");
    let pid: i32 = std::fs::read_to_string(s.path("grandchild.pid")).unwrap().trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "the background grandchild {pid} is still running");
}

#[test]
fn sigint_interrupts_the_running_state_and_kills_its_group() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        r#"states:
  - {id: long, module: linux.cmd, parameter: {cmd: "echo $$ > @/child.pid; sleep 300"}}
  - {id: after, module: meta.comment}
"#,
    );
    let child = std::process::Command::new(common::bin())
        .args(["apply", "--json", "--state-dir"])
        .arg(s.path("state"))
        .arg(&recipe)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || s.path("child.pid").exists()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let run = common::Run::from(child.wait_with_output().unwrap());
    assert_eq!(run.code, 130);
    assert_eq!(run.statuses(), ["long=interrupted", "after=not_run"]);
    let pid: i32 = std::fs::read_to_string(s.path("child.pid")).unwrap().trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
}

#[test]
fn sensitive_state_hides_content_and_output() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        r#"states:
  - {id: key, module: linux.file, sensitive: true, parameter: {path: "@/key", content: "hunter2-secret"}}
  - {id: show, module: linux.cmd, sensitive: true, parameter: {cmd: "echo hunter2-secret"}}
"#,
    );
    for args in [&["--test"][..], &["--json"][..], &[][..]] {
        std::fs::remove_file(s.path("key")).ok();
        let run = s.apply(&recipe, args);
        assert!(
            !run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"),
            "{args:?}: {}{}",
            run.stdout,
            run.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(s.path("key")).unwrap(), "hunter2-secret");
}

#[test]
fn original_wire_form_runs_unchanged() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.json",
        r#"{"recipe_version": 12, "module": {"repo": "https://example.invalid/salt.git", "tag": "v2015-03-26"}, "state": [
  {"id": "state-3F1A", "module": "linux.dir", "parameter": {"path": ["@/app"], "user": "root", "group": "root", "mode": "0755", "recursive": true}},
  {"id": "state-3F1B", "module": "linux.file", "parameter": {"path": "@/app/env", "content": "X=1\n", "user": "root", "group": "root", "mode": "0644", "absent": false}},
  {"id": "state-3F1C", "module": "linux.cmd", "parameter": {"cmd": "true", "shell": "/bin/sh", "cwd": "@/app", "timeout": "600",
     "env": [{"key": "A", "value": "1"}, {"key": "B"}], "if-path-present": ["@/app/env"], "if-path-absent": []}},
  {"id": "state-3F1D", "module": "linux.symlink", "parameter": {"target": "@/app/link", "source": "@/app/env", "user": "root", "group": "root", "absent": false}}
]}"#,
    );
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["recipe_version"], 12);
    assert_eq!(
        run.statuses(),
        ["state-3F1A=changed", "state-3F1B=changed", "state-3F1C=changed", "state-3F1D=changed"]
    );
}

#[test]
fn recursive_dir_owns_everything_below_and_modes_subdirectories() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("data/a/b")).unwrap();
    std::fs::write(s.path("data/a/file"), "x").unwrap();
    std::fs::set_permissions(s.path("data/a/file"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let recipe = s.recipe(
        "r.yaml",
        "states:\n  - {id: d, module: linux.dir, parameter: {path: [\"@/data\"], user: nobody, mode: \"0751\"}}\n",
    );
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["d=changed"]);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    for (rel, mode) in [("data", 0o751), ("data/a", 0o751), ("data/a/b", 0o751), ("data/a/file", 0o600)] {
        let meta = std::fs::metadata(s.path(rel)).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (nobody, mode), "{rel}");
    }
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["d=ok"]);
}

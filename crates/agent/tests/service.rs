//! `linux.service` against a real SysV init script of a tiny test daemon (this machine has no
//! systemd as PID 1; the systemd provider is used wherever `/run/systemd/system` exists).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::Scratch;

/// A SysV service named `opsagent-test-svc-*`; removed (stopped, unregistered) on drop.
struct TestService {
    name: String,
}

impl TestService {
    fn install(tag: &str) -> TestService {
        let name = format!("opsagent-test-svc-{}-{tag}", std::process::id());
        let script = format!(
            r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          {name}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: opsagent test daemon
### END INIT INFO
PIDFILE=/run/{name}.pid
LOG=/run/{name}.log
running() {{ [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
case "$1" in
  start) running && exit 0
         setsid sh -c 'trap "echo reload >> '"$LOG"'" HUP; echo start >> '"$LOG"'; while :; do sleep 1 & wait $!; done' </dev/null >/dev/null 2>&1 &
         echo $! > "$PIDFILE" ;;
  stop) running && kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE" ;;
  restart) "$0" stop; "$0" start ;;
  reload) running && kill -HUP "$(cat "$PIDFILE")" ;;
  status) running ;;
  *) exit 2 ;;
esac
"#
        );
        let path = PathBuf::from("/etc/init.d").join(&name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestService { name }
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(format!("/run/{}.pid", self.name)).ok().map(|p| p.trim().to_string())
    }

    fn running(&self) -> bool {
        Command::new(format!("/etc/init.d/{}", self.name)).arg("status").status().unwrap().success()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(format!("/run/{}.log", self.name)).unwrap_or_default()
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = Command::new(format!("/etc/init.d/{}", self.name)).arg("stop").status();
        let _ = Command::new("update-rc.d").args(["-f", &self.name, "remove"]).output();
        let _ = std::fs::remove_file(format!("/etc/init.d/{}", self.name));
        let _ = std::fs::remove_file(format!("/run/{}.log", self.name));
        let _ = std::fs::remove_file(format!("/run/{}.pid", self.name));
    }
}

fn recipe(s: &Scratch, file: &str, svc: &TestService, content: &str, action: &str, extra: &str) -> PathBuf {
    s.recipe(
        file,
        &format!(
            r#"states:
  - {{id: conf, module: linux.file, parameter: {{path: "@/svc.conf", content: "{content}"}}}}
  - {{id: svc, module: linux.service, parameter: {{name: {{{name}: "{action}"}}, watch: ["@/svc.conf"]{extra}}}}}
"#,
            name = svc.name
        ),
    )
}

fn changes(run: &common::Run, id: &str) -> Vec<String> {
    let json = run.json();
    let state = json["states"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
    state["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["action"].as_str().unwrap(), c["target"].as_str().unwrap()))
        .collect()
}

#[test]
fn starts_then_restarts_on_a_watched_change_and_predicts_it() {
    let s = Scratch::new();
    let svc = TestService::install("restart");
    let v1 = recipe(&s, "v1.yaml", &svc, "v1", "", "");
    let run = s.apply(&v1, &["--json"]);
    assert_eq!(run.statuses(), ["conf=changed", "svc=changed"], "{}", run.stdout);
    assert_eq!(changes(&run, "svc"), [format!("start {}", svc.name)]);
    assert!(svc.running());
    let first_pid = svc.pid();

    // Converged: nothing to do, the daemon untouched.
    let run = s.apply(&v1, &["--json"]);
    assert_eq!(run.statuses(), ["conf=ok", "svc=ok"], "{}", run.stdout);
    assert_eq!(svc.pid(), first_pid);

    // A new config: --test predicts the restart and does nothing…
    let v2 = recipe(&s, "v2.yaml", &svc, "v2", "", "");
    std::fs::write(s.path("svc.conf"), "v2").unwrap();
    let predicted = s.apply(&v2, &["--json", "--test"]);
    assert_eq!(changes(&predicted, "svc"), [format!("restart {}", svc.name)]);
    assert_eq!(svc.pid(), first_pid);
    // …and apply does exactly that.
    let run = s.apply(&v2, &["--json"]);
    assert_eq!(changes(&run, "svc"), changes(&predicted, "svc"));
    assert_ne!(svc.pid(), first_pid, "restarted");
    assert_eq!(svc.log().matches("start").count(), 2);
    assert_eq!(s.apply(&v2, &["--json"]).statuses(), ["conf=ok", "svc=ok"]);

    // A dead daemon is started again.
    Command::new(format!("/etc/init.d/{}", svc.name)).arg("stop").status().unwrap();
    let run = s.apply(&v2, &["--json"]);
    assert_eq!(changes(&run, "svc"), [format!("start {}", svc.name)]);
    assert!(svc.running());
}

#[test]
fn reload_action_and_enable_at_boot() {
    let s = Scratch::new();
    let svc = TestService::install("reload");
    let v1 = recipe(&s, "v1.yaml", &svc, "a", "reload", ", enable: true");
    let run = s.apply(&v1, &["--json"]);
    assert_eq!(changes(&run, "svc"), [format!("start {}", svc.name), format!("enable {}", svc.name)], "{}", run.stdout);
    let linked = std::fs::read_dir("/etc/rc2.d")
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(&svc.name));
    assert!(linked, "update-rc.d made a start link");
    let pid = svc.pid();
    let v2 = recipe(&s, "v2.yaml", &svc, "b", "reload", ", enable: true");
    let run = s.apply(&v2, &["--json"]);
    assert_eq!(changes(&run, "svc"), [format!("reload {}", svc.name)]);
    assert_eq!(svc.pid(), pid, "reloaded, not restarted");
    assert!(common::wait_until(std::time::Duration::from_secs(5), || svc.log().contains("reload")));
    assert_eq!(s.apply(&v2, &["--json"]).statuses(), ["conf=ok", "svc=ok"]);
}

#[test]
fn an_unknown_service_fails_clearly() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        "states:\n  - {id: svc, module: linux.service, parameter: {name: {opsagent-test-no-such-svc: \"\"}}}\n",
    );
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    let comment = run.json()["states"][0]["comment"].as_str().unwrap().to_string();
    assert!(
        comment.contains("opsagent-test-no-such-svc") && comment.contains("is not a service known to"),
        "{comment}"
    );

    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: svc, module: linux.service, parameter: {name: {\"bad name!\": \"\"}, watch: [relative]}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("`bad name!` is not a service name"), "{stderr}");
    assert!(stderr.contains("parameter `watch[0]`"), "{stderr}");
}

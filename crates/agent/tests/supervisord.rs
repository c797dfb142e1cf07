//! `linux.supervisord` against a real supervisord started by the module with the test's own
//! configuration (socket, logs and programs in a temp dir).

mod common;

use std::process::Command;

use common::Scratch;

/// Stops the test's supervisord (and its programs) on drop.
struct Shutdown(String);

impl Drop for Shutdown {
    fn drop(&mut self) {
        let _ = Command::new("supervisorctl").args(["-c", &self.0, "shutdown"]).output();
    }
}

fn status(config: &str) -> String {
    String::from_utf8_lossy(&Command::new("supervisorctl").args(["-c", config, "status"]).output().unwrap().stdout)
        .into_owned()
}

#[test]
fn starts_supervisord_and_restarts_programs_on_change() {
    let s = Scratch::new();
    let dir = s.dir.path().display().to_string();
    std::fs::create_dir(s.path("conf.d")).unwrap();
    let config = s.path("supervisord.conf").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[unix_http_server]\nfile={dir}/sv.sock\n[supervisord]\nlogfile={dir}/supervisord.log\npidfile={dir}/supervisord.pid\nchildlogdir={dir}\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             [supervisorctl]\nserverurl=unix://{dir}/sv.sock\n[include]\nfiles = {dir}/conf.d/*.ini\n"
        ),
    )
    .unwrap();
    let _guard = Shutdown(config.clone());
    let recipe = |version: &str| {
        s.recipe(
            &format!("{version}.yaml"),
            &format!(
                r#"states:
  - id: ini
    module: linux.file
    parameter:
      path: "@/conf.d/worker.ini"
      content: "[program:opsagent-test-worker]\ncommand=/bin/sh -c 'echo {version} >> @/worker.log; exec sleep 1000'\nstartsecs=0\n"
  - {{id: workers, module: linux.supervisord, parameter: {{name: [opsagent-test-worker], config: "{config}", watch: ["@/conf.d/worker.ini"]}}}}
"#
            ),
        )
    };
    let run = s.apply(&recipe("v1"), &["--json"]);
    assert_eq!(run.statuses(), ["ini=changed", "workers=changed"], "{}{}", run.stdout, run.stderr);
    assert!(status(&config).contains("RUNNING"), "{}", status(&config));
    assert_eq!(s.apply(&recipe("v1"), &["--json"]).statuses(), ["ini=ok", "workers=ok"]);

    let run = s.apply(&recipe("v2"), &["--json"]);
    assert_eq!(run.statuses(), ["ini=changed", "workers=changed"], "{}", run.stdout);
    assert!(common::wait_until(std::time::Duration::from_secs(5), || std::fs::read_to_string(s.path("worker.log"))
        .unwrap_or_default()
        .contains("v2")));
    assert_eq!(s.apply(&recipe("v2"), &["--json"]).statuses(), ["ini=ok", "workers=ok"]);

    // A stopped program is started again.
    Command::new("supervisorctl").args(["-c", &config, "stop", "opsagent-test-worker"]).output().unwrap();
    let run = s.apply(&recipe("v2"), &["--json"]);
    assert_eq!(run.statuses(), ["ini=ok", "workers=changed"], "{}", run.stdout);
    assert!(status(&config).contains("RUNNING"));

    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: w, module: linux.supervisord, parameter: {name: [], config: relative}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`name` lists no program") && stderr.contains("`relative` is not an absolute path"),
        "{stderr}"
    );
}

//! `linux.cronjob` and `common.timezone` on the real machine: the crontab of a test user named
//! `opsagent-test-*`, and the machine's time zone, put back by drop guards even when a test fails.
//! Needs root (CI runs as root) and `crontab` (Debian package `cron`).

mod common;

use std::process::Command;

use common::{Run, Scratch};

/// A test user with a crontab; the user (and so the crontab) is removed when dropped.
struct CronUser(&'static str);

impl CronUser {
    fn new(name: &'static str) -> CronUser {
        let _ = Command::new("crontab").args(["-r", "-u", name]).output();
        let _ = Command::new("userdel").args(["-r", name]).output();
        let out = Command::new("useradd").args(["--no-create-home", name]).output().unwrap();
        assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
        CronUser(name)
    }

    fn crontab(&self) -> String {
        let out = Command::new("crontab").args(["-l", "-u", self.0]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn install(&self, text: &str, scratch: &Scratch) {
        let file = scratch.path("crontab.in");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("crontab").args(["-u", self.0]).arg(&file).output().unwrap();
        assert!(out.status.success(), "crontab: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for CronUser {
    fn drop(&mut self) {
        let _ = Command::new("crontab").args(["-r", "-u", self.0]).output();
        let _ = Command::new("userdel").args(["-r", self.0]).output();
    }
}

fn changes(run: &Run) -> Vec<serde_json::Value> {
    run.json()["states"].as_array().unwrap().iter().map(|s| s["changes"].clone()).collect()
}

fn validate(recipe: &std::path::Path) -> Run {
    Run::from(Command::new(common::bin()).arg("validate").arg(recipe).env("NO_COLOR", "1").output().unwrap())
}

const FOREIGN: &str = "MAILTO=\"\"\n0 1 * * * /bin/true # written by hand\n";

const CRON: &str = r#"
states:
  - id: cleanup
    module: linux.cronjob
    parameter: {user: opsagent-test-c1, minute: "*/5", cmd: ["/bin/echo one", "/bin/echo two"]}
  - id: nightly
    module: linux.cronjob
    parameter: {user: opsagent-test-c1, minute: "30", hour: "2", day-of-week: "1-5", cmd: "/bin/echo nightly"}
"#;

const CRON_BLOCKS: &str = "# BEGIN opsagent: cleanup\n*/5 * * * * /bin/echo one\n*/5 * * * * /bin/echo two\n\
# END opsagent: cleanup\n# BEGIN opsagent: nightly\n30 2 * * 1-5 /bin/echo nightly\n# END opsagent: nightly\n";

#[test]
fn cron_converges_next_to_foreign_lines_and_absent_removes_only_its_block() {
    let user = CronUser::new("opsagent-test-c1");
    let s = Scratch::new();
    user.install(FOREIGN, &s);
    let recipe = s.recipe("r.yaml", CRON);

    let predicted = s.apply(&recipe, &["--test", "--json"]);
    assert_eq!(predicted.code, 0, "{}{}", predicted.stdout, predicted.stderr);
    assert_eq!(user.crontab(), FOREIGN, "--test changes nothing");
    let first = s.apply(&recipe, &["--json"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.statuses(), ["cleanup=changed", "nightly=changed"]);
    assert_eq!(changes(&first), changes(&predicted), "--test predicted exactly what apply did");
    assert_eq!(
        changes(&first)[0],
        serde_json::json!([{"action": "create", "target": "crontab of opsagent-test-c1", "detail": "2 jobs"}])
    );
    assert_eq!(user.crontab(), format!("{FOREIGN}{CRON_BLOCKS}"));

    let second = s.apply(&recipe, &["--json"]);
    assert_eq!(second.statuses(), ["cleanup=ok", "nightly=ok"]);
    assert_eq!(user.crontab(), format!("{FOREIGN}{CRON_BLOCKS}"));

    // Drift: a job edited by hand is put back, in place; a line added outside the blocks stays.
    let drifted = format!("{FOREIGN}{CRON_BLOCKS}").replace("/bin/echo two", "/bin/echo 2") + "5 5 * * * /bin/true\n";
    user.install(&drifted, &s);
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["cleanup=changed", "nightly=ok"]);
    assert_eq!(user.crontab(), format!("{FOREIGN}{CRON_BLOCKS}5 5 * * * /bin/true\n"));
    let text = s.apply(&recipe, &[]);
    assert!(text.stdout.contains("ok  linux.cronjob"), "{}", text.stdout);

    // `absent` removes only the state's own block.
    let absent = s.recipe(
        "absent.yaml",
        "states:\n  - {id: cleanup, module: linux.cronjob, parameter: {user: opsagent-test-c1, cmd: [x], absent: true}}\n",
    );
    let predicted = s.apply(&absent, &["--test", "--json"]);
    let run = s.apply(&absent, &["--json"]);
    assert_eq!(run.statuses(), ["cleanup=changed"]);
    assert_eq!(changes(&run), changes(&predicted));
    assert_eq!(
        user.crontab(),
        format!(
            "{FOREIGN}# BEGIN opsagent: nightly\n30 2 * * 1-5 /bin/echo nightly\n# END opsagent: nightly\n5 5 * * * /bin/true\n"
        )
    );
    assert_eq!(s.apply(&absent, &["--json"]).statuses(), ["cleanup=ok"]);
}

#[test]
fn cron_for_a_missing_user_fails_clearly() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        "retries: 0\nstates:\n  - {id: c, module: linux.cronjob, parameter: {user: opsagent-test-nobody, cmd: [x]}}\n",
    );
    let run = s.apply(&recipe, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("user `opsagent-test-nobody` does not exist"), "{}{}", run.stdout, run.stderr);
}

#[test]
fn cron_bad_parameters_are_named() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "bad.yaml",
        r#"states:
  - id: c
    module: linux.cronjob
    parameter: {user: "bad user", minute: "61", hour: "*/0", day-of-month: "0", month: "jan-foo", day-of-week: "5-2", cmd: ["ok", ""]}
  - id: d
    module: linux.cronjob
    parameter: {minute: "*/x"}
"#,
    );
    let run = validate(&recipe);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for expected in [
        "parameter `user`: `bad user` is not a valid user name",
        "parameter `minute`: `61` is not a valid minute field: 61 is out of range 0-59",
        "parameter `hour`: `*/0` is not a valid hour field: step 0 is out of range 1-23",
        "parameter `day-of-month`: `0` is not a valid day-of-month field: 0 is out of range 1-31",
        "parameter `month`: `jan-foo` is not a valid month field: `foo` is not a number",
        "parameter `day-of-week`: `5-2` is not a valid day-of-week field: range 5-2 goes backwards",
        "parameter `cmd[1]`: the command is empty",
        "parameter `cmd`: required parameter `cmd` is missing",
        "parameter `minute`: `*/x` is not a valid minute field: step `x` is not a number",
    ] {
        assert!(run.stderr.contains(expected), "missing `{expected}` in:\n{}", run.stderr);
    }
}

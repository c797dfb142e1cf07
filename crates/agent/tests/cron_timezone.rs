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

/// The machine's zone settings as found; put back when dropped, even when a test fails.
struct ZoneRestore {
    localtime: Option<std::path::PathBuf>,
    timezone: Option<Vec<u8>>,
    adjtime: Option<Vec<u8>>,
}

impl ZoneRestore {
    fn save() -> ZoneRestore {
        ZoneRestore {
            localtime: std::fs::read_link("/etc/localtime").ok(),
            timezone: std::fs::read("/etc/timezone").ok(),
            adjtime: std::fs::read("/etc/adjtime").ok(),
        }
    }
}

impl Drop for ZoneRestore {
    fn drop(&mut self) {
        if let Some(target) = &self.localtime {
            let temp = "/etc/.localtime.opsagent-test-restore";
            let _ = std::fs::remove_file(temp);
            let _ = std::os::unix::fs::symlink(target, temp);
            let _ = std::fs::rename(temp, "/etc/localtime");
        }
        match &self.timezone {
            Some(text) => {
                let _ = std::fs::write("/etc/timezone", text);
            }
            None => {
                let _ = std::fs::remove_file("/etc/timezone");
            }
        }
        match &self.adjtime {
            Some(text) => {
                let _ = std::fs::write("/etc/adjtime", text);
            }
            None => {
                let _ = std::fs::remove_file("/etc/adjtime");
            }
        }
    }
}

/// The one test that changes the machine's zone (tests in a file run in parallel).
#[test]
fn timezone_converges_is_predicted_repaired_and_restored() {
    let _restore = ZoneRestore::save();
    let s = Scratch::new();
    // Start from a known state: UTC, and a hardware clock set to local time.
    let utc = s.recipe("utc.yaml", "states:\n  - {id: tz, module: common.timezone, parameter: {name: Etc/UTC}}\n");
    assert_eq!(s.apply(&utc, &[]).code, 0);
    std::fs::write("/etc/adjtime", "0.0 0 0.0\n0\nLOCAL\n").unwrap();

    // The original's wire form: `use-utc` as a string.
    let paris = s.recipe(
        "paris.json",
        r#"{"state": [{"id": "tz", "module": "common.timezone", "parameter": {"name": "Europe/Paris", "use-utc": "true"}}]}"#,
    );
    let predicted = s.apply(&paris, &["--test", "--json"]);
    assert_eq!(predicted.code, 0, "{}{}", predicted.stdout, predicted.stderr);
    assert_eq!(std::fs::read_link("/etc/localtime").unwrap(), std::path::Path::new("/usr/share/zoneinfo/Etc/UTC"));
    let run = s.apply(&paris, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.statuses(), ["tz=changed"]);
    assert_eq!(changes(&run), changes(&predicted), "--test predicted exactly what apply did");
    assert_eq!(
        changes(&run)[0],
        serde_json::json!([
            {"action": "update", "target": "/etc/localtime",
             "detail": "/usr/share/zoneinfo/Etc/UTC -> /usr/share/zoneinfo/Europe/Paris"},
            {"action": "update", "target": "/etc/timezone", "detail": "`Etc/UTC` -> `Europe/Paris`"},
            {"action": "update", "target": "/etc/adjtime", "detail": "hardware clock LOCAL -> UTC"},
        ])
    );
    assert_eq!(std::fs::read_link("/etc/localtime").unwrap(), std::path::Path::new("/usr/share/zoneinfo/Europe/Paris"));
    assert_eq!(std::fs::read_to_string("/etc/timezone").unwrap(), "Europe/Paris\n");
    assert_eq!(std::fs::read_to_string("/etc/adjtime").unwrap(), "0.0 0 0.0\n0\nUTC\n");
    let date = Command::new("date").arg("+%Z").output().unwrap();
    assert!(matches!(String::from_utf8_lossy(&date.stdout).trim(), "CET" | "CEST"), "{date:?}");
    assert_eq!(s.apply(&paris, &["--json"]).statuses(), ["tz=ok"]);

    // Drift: /etc/timezone edited by hand, /etc/localtime replaced by a copy.
    std::fs::write("/etc/timezone", "Etc/UTC\n").unwrap();
    std::fs::remove_file("/etc/localtime").unwrap();
    std::fs::copy("/usr/share/zoneinfo/Europe/Paris", "/etc/localtime").unwrap();
    let run = s.apply(&paris, &["--json"]);
    assert_eq!(run.statuses(), ["tz=changed"]);
    assert_eq!(std::fs::read_link("/etc/localtime").unwrap(), std::path::Path::new("/usr/share/zoneinfo/Europe/Paris"));
    assert_eq!(std::fs::read_to_string("/etc/timezone").unwrap(), "Europe/Paris\n");

    // Without /etc/adjtime there is nothing to record: a comment says so.
    std::fs::remove_file("/etc/adjtime").unwrap();
    let run = s.apply(&utc, &["--json"]);
    assert_eq!(run.statuses(), ["tz=changed"]);
    let comment = run.json()["states"][0]["comment"].as_str().unwrap_or_default().to_string();
    assert!(comment.contains("no /etc/adjtime"), "{comment}");
    assert!(!std::path::Path::new("/etc/adjtime").exists());

    // An unknown zone passes validation's syntax check but fails with the path when run.
    let nowhere = s.recipe(
        "nowhere.yaml",
        "retries: 0\nstates:\n  - {id: tz, module: common.timezone, parameter: {name: Mars/Olympus_Mons}}\n",
    );
    let run = s.apply(&nowhere, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "/usr/share/zoneinfo/Mars/Olympus_Mons` does not exist: `Mars/Olympus_Mons` is not a known time zone"
        ),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(std::fs::read_link("/etc/localtime").unwrap(), std::path::Path::new("/usr/share/zoneinfo/Etc/UTC"));
}

#[test]
fn timezone_bad_parameters_are_named() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "bad.yaml",
        r#"states:
  - {id: a, module: common.timezone, parameter: {name: /usr/share/zoneinfo/UTC, use-utc: maybe}}
  - {id: b, module: common.timezone, parameter: {name: "../../etc/passwd"}}
  - {id: c, module: common.timezone, parameter: {use-utc: true}}
"#,
    );
    let run = validate(&recipe);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for expected in [
        "parameter `name`: `/usr/share/zoneinfo/UTC` is not a time zone name: it is a path",
        "parameter `use-utc`: expected true or false, found `maybe`",
        "parameter `name`: `../../etc/passwd` is not a time zone name",
        "parameter `name`: required parameter `name` is missing",
    ] {
        assert!(run.stderr.contains(expected), "missing `{expected}` in:\n{}", run.stderr);
    }
}

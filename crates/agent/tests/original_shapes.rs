//! Recipes in the original's shapes (issue §E): `validate` accepts them with warnings, `--strict`
//! refuses them, and `apply` runs them. The recipes are in `tests/fixtures/original/`.

mod common;
#[path = "common/http.rs"]
mod http_server;

use std::process::Command;

use common::{Run, Scratch};

const BARE_LIST: &str = include_str!("fixtures/original/bare-list.json");
const WIRE_ALIASES: &str = include_str!("fixtures/original/wire-aliases.json");
const IDE_EXPORT: &str = include_str!("fixtures/original/ide-export.json");
const VALUES: &str = include_str!("fixtures/original/values.yaml");
const FAILING_CMD_LIST: &str = include_str!("fixtures/original/failing-cmd-list.yaml");

fn validate(args: &[&str]) -> Run {
    Run::from(Command::new(common::bin()).arg("validate").args(args).env("NO_COLOR", "1").output().unwrap())
}

/// Every fixture in `s`, as (name, path).
fn fixtures(s: &Scratch) -> Vec<(&'static str, String)> {
    [
        ("bare-list.json", BARE_LIST),
        ("wire-aliases.json", WIRE_ALIASES),
        ("ide-export.json", IDE_EXPORT),
        ("values.yaml", VALUES),
        ("failing-cmd-list.yaml", FAILING_CMD_LIST),
    ]
    .into_iter()
    .map(|(name, text)| (name, s.recipe(name, text).display().to_string()))
    .collect()
}

#[test]
fn every_shape_is_valid_with_warnings_and_strict_refuses_it() {
    let s = Scratch::new();
    for (name, path) in fixtures(&s) {
        let run = validate(&[&path]);
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains(&format!("valid {path}: ")), "{name}: {}", run.stdout);
        assert!(run.stdout.contains(" warning"), "{name}: {}", run.stdout);
        assert!(run.stderr.contains("warning: "), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("error: "), "{name}: {}", run.stderr);

        let strict = validate(&["--strict", &path]);
        assert_eq!(strict.code, 1, "{name}: {}{}", strict.stdout, strict.stderr);
        assert!(strict.stderr.contains(&format!("error: {path} is invalid: ")), "{name}: {}", strict.stderr);
        assert!(strict.stderr.contains("without `--strict`"), "{name}: {}", strict.stderr);
    }
}

#[test]
fn warnings_name_file_state_module_parameter_and_fix() {
    let s = Scratch::new();
    let all = fixtures(&s);
    let path = |name: &str| all.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let (bare, wire, ide, values) =
        (path("bare-list.json"), path("wire-aliases.json"), path("ide-export.json"), path("values.yaml"));
    let run = validate(&[&bare, &wire, &ide, &values]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        format!("warning: {bare}:2:4: state 1 `state-1` (linux.cmd): the state has no `id`: it is named `state-1` from its position"),
        format!("warning: {bare}:3:4: state 2 `state-2-2` (linux.file): the state has no `id`: it is named `state-2-2` from its position"),
        format!("warning: {wire}:2:26: state 1 `pv` (linux.lvm.pv): module id `linux lvm pv` is read as `linux.lvm.pv`\n  hint: write `module: linux.lvm.pv`"),
        format!("warning: {wire}:2:56: state 1 `pv` (linux.lvm.pv): parameter `devices`: parameter `devices` is the original's name for `path`; read as `path`\n  hint: rename it to `path`"),
        "state 4 `pkg` (linux.apt.package): parameter `fromrepo`: parameter `fromrepo` is the original's name for `repo`; read as `repo`\n  hint: rename it to `repo`".to_string(),
        "state 4 `pkg` (linux.apt.package): parameter `verify_gpg`: `y` is read as `true`\n  hint: write `verify-gpg: true`".to_string(),
        "state 5 `tz` (common.timezone): parameter `use_utc`: parameter `use_utc` is the original's name for `use-utc`".to_string(),
        "state 6 `venv` (common.virtualenv): parameter `python`: parameter `python` is the original's name for `python-bin`".to_string(),
        "state 7 `mnt` (linux.mount): parameter `dev`: parameter `dev` is the original's name for `device`".to_string(),
        "state 8 `fs` (linux.mkfs): parameter `dev`: parameter `dev` is the original's name for `device`".to_string(),
        "state 9 `link` (linux.symlink): parameter `mode`: parameter `mode` is accepted and ignored: a symbolic link has no mode".to_string(),
        "state 10 `grp` (linux.group): parameter `system`: parameter `system` is the original's name for `system-group`".to_string(),
        "state 11 `web` (linux.service): parameter `name`: `name` is given as a plain list where a mapping is expected".to_string(),
        format!("warning: {ide}:3:104: state 1 `conf` (linux.file): parameter `contnet`: unknown parameter `contnet` is ignored\n  hint: did you mean `content`?"),
        "state 2 `state-2` (linux.dir): parameter `path`: `path` is given as `{key, value}` entries where a plain list is expected".to_string(),
        format!("{values}:7:12: state 1 `run` (linux.cmd): parameter `cmd`: `cmd` is a list of 2 lines: they are joined into one script, run by `/bin/sh` with `set -e`"),
        format!("{values}:8:12: state 1 `run` (linux.cmd): parameter `env`: `env` is given as `KEY=VALUE` text: read as 2 variable(s)"),
        format!("warning: {values}:9:5: state 2 `run#2` (linux.cmd): state id `run` is already used by state 1 (line 4): this state is named `run#2`"),
        "state 3 `made` (linux.dir): parameter `recursive`: `N` is read as `false`".to_string(),
        "state 4 `file` (linux.file): parameter `absent`: `off` is read as `false`".to_string(),
        format!("warning: {values}: 5 warnings about what is accepted only for compatibility with the original; fix them, or `opsagent validate --strict` refuses the recipe"),
    ] {
        assert!(run.stderr.contains(&expected), "missing {expected:?} in:\n{}", run.stderr);
    }
}

#[test]
fn json_lists_every_diagnostic_with_its_severity() {
    let s = Scratch::new();
    let ide = s.recipe("ide-export.json", IDE_EXPORT);
    let run = validate(&["--format", "json", ide.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let file = &doc["files"][0];
    assert_eq!((file["valid"].as_bool(), file["states"].as_u64()), (Some(true), Some(2)));
    let diagnostics = file["diagnostics"].as_array().unwrap();
    let seen: Vec<(String, String, String)> = diagnostics
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
            (s("severity"), s("kind"), s("param"))
        })
        .collect();
    let want = |sev: &str, kind: &str, param: &str| (sev.to_string(), kind.to_string(), param.to_string());
    assert_eq!(
        seen,
        [
            want("warning", "unknown_parameter", "contnet"),
            want("warning", "missing_id", "-"),
            want("warning", "original_shape", "path"),
        ]
    );
    assert_eq!(diagnostics[0]["state_id"], "conf");
    assert_eq!(diagnostics[0]["module"], "linux.file");
    assert_eq!(diagnostics[0]["hint"], "did you mean `content`?");

    let strict = validate(&["--json", "--strict", ide.to_str().unwrap()]);
    assert_eq!(strict.code, 1);
    let doc = strict.json();
    assert_eq!(doc["files"][0]["valid"], false);
    let severities: Vec<&str> =
        doc["files"][0]["diagnostics"].as_array().unwrap().iter().map(|d| d["severity"].as_str().unwrap()).collect();
    assert_eq!(severities, ["error", "error", "error"]);
}

#[test]
fn apply_runs_a_bare_list_with_missing_ids() {
    let s = Scratch::new();
    let recipe = s.recipe("bare-list.json", BARE_LIST);
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.statuses(), ["state-1=changed", "state-2-2=changed", "state-2=skipped"]);
    assert_eq!(std::fs::read_to_string(s.path("bare-1")).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(s.path("bare-2")).unwrap(), "two\n");
    let warnings = run.json()["warnings"].as_array().unwrap().clone();
    assert_eq!(warnings.len(), 2);
    assert!(warnings.iter().all(|w| w["severity"] == "warning" && w["kind"] == "missing_id"));

    // `--strict` refuses it before anything runs.
    std::fs::remove_file(s.path("bare-1")).unwrap();
    let strict = s.apply(&recipe, &["--strict"]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
    assert!(strict.stderr.contains("is invalid: 2 errors"), "{}", strict.stderr);
    assert!(!s.path("bare-1").exists());
}

#[test]
fn apply_runs_the_originals_value_shapes() {
    let s = Scratch::new();
    let recipe = s.recipe("values.yaml", VALUES);
    let run = s.apply(&recipe, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // The warnings come first, on stderr; the repeated id is reported under its new name.
    assert!(run.stderr.contains("this state is named `run#2`"), "{}", run.stderr);
    assert!(run.stdout.contains("run#2"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(s.path("env-out")).unwrap(), "hello\ntwo words\n");
    assert_eq!(std::fs::read_to_string(s.path("dup-out")).unwrap(), "again\n");
    assert!(s.path("made").is_dir());
    assert_eq!(std::fs::read_to_string(s.path("made/file")).unwrap(), "x\n");

    let json = s.apply(&recipe, &["--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_eq!(json.statuses(), ["run=changed", "run#2=changed", "made=ok", "file=ok"]);
    // `--done` names a state by its new name too.
    let unknown = s.apply(&recipe, &["--done", "run#3"]);
    assert_eq!(unknown.code, 2);
}

#[test]
fn a_failing_line_of_a_cmd_list_fails_the_state() {
    let s = Scratch::new();
    let recipe = s.recipe("failing-cmd-list.yaml", FAILING_CMD_LIST);
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.statuses(), ["stops=failed"]);
    assert!(s.path("before").exists());
    assert!(!s.path("after").exists(), "the lines after the failing one do not run (`set -e`)");
}

#[test]
fn archive_checksum_from_a_checksum_file_url() {
    let s = Scratch::new();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello\n").unwrap();
    let archive = s.path("app-1.0.tar.gz");
    let tar = Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(&src).arg(".").output().unwrap();
    assert!(tar.status.success());
    let bytes = std::fs::read(&archive).unwrap();
    let sha = Command::new("sha256sum").arg(&archive).output().unwrap();
    let hex = String::from_utf8_lossy(&sha.stdout).split(' ').next().unwrap().to_string();

    let server = http_server::Server::start(None);
    server.put("app-1.0.tar.gz", &bytes, http_server::Send::Length);
    let other = "0".repeat(64);
    server.put(
        "SHA256SUMS",
        format!("{other}  app-0.9.tar.gz\n{hex}  app-1.0.tar.gz\n").as_bytes(),
        http_server::Send::Length,
    );
    server.put("bad.sha256", format!("{other}  app-1.0.tar.gz\n").as_bytes(), http_server::Send::Length);
    let recipe = |name: &str, sums: &str, dest: &str| {
        s.recipe(
            name,
            &format!(
                "- {{id: rel, module: common.archive, parameter: {{source: \"{}\", path: \"@/{dest}\", source_hash: \"{}\"}}}}\n",
                server.url("/app-1.0.tar.gz"),
                server.url(sums)
            ),
        )
    };

    let good = recipe("good.yaml", "/SHA256SUMS", "out");
    let run = s.apply(&good, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.statuses(), ["rel=changed"]);
    assert_eq!(std::fs::read_to_string(s.path("out/hello.txt")).unwrap(), "hello\n");
    // Converged: the checksum file gives the same sum, nothing is extracted again.
    let again = s.apply(&good, &["--json", "--retries", "0"]);
    assert_eq!(again.statuses(), ["rel=ok"], "{}", again.stdout);

    let bad = recipe("bad.yaml", "/bad.sha256", "bad-out");
    let run = s.apply(&bad, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(!s.path("bad-out").exists(), "nothing is extracted on a mismatch");
    let missing = recipe("missing.yaml", "/nowhere.sha256", "missing-out");
    let run = s.apply(&missing, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

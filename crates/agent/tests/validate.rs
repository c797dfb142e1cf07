//! `opsagent validate` and recipe errors in `apply`: every problem at once, with its location.

mod common;

use std::process::Command;

use common::{Run, Scratch};

const BAD: &str = "version: 1
states:
  - id: conf
    module: linux.fiel
    parameter: {path: /etc/x}
  - id: conf2
    module: linux.file
    parameter:
      path: relative/x
      mode: rwx
      contnet: hi
  - id: docker
    module: linux.docker.running
  - id: c
    module: linux.cmd
    parameter:
      timeout: soon
  - id: c
    module: meta.comment
";

fn validate(args: &[&str]) -> Run {
    Run::from(Command::new(common::bin()).arg("validate").args(args).env("NO_COLOR", "1").output().unwrap())
}

#[test]
fn lists_every_error_with_its_location() {
    let s = Scratch::new();
    let bad = s.recipe("bad.yaml", BAD);
    let run = validate(&[bad.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    let f = bad.display().to_string();
    let expected = [
        format!("error: {f}:4:13: state 1 `conf` (linux.fiel): unknown module `linux.fiel`\n  hint: did you mean `linux.file`?"),
        format!("error: {f}:9:13: state 2 `conf2` (linux.file): parameter `path`: `relative/x` is not an absolute path"),
        format!("error: {f}:10:13: state 2 `conf2` (linux.file): parameter `mode`: `rwx` is not an octal mode\n  hint: write it as a quoted octal string, e.g. \"0644\""),
        format!("error: {f}:12:5: state 3 `docker` (linux.docker.running): parameter `container`: required parameter `container` is missing"),
        format!("error: {f}:12:5: state 3 `docker` (linux.docker.running): parameter `image`: required parameter `image` is missing"),
        format!("error: {f}:17:7: state 4 `c` (linux.cmd): parameter `cmd`: required parameter `cmd` is missing"),
        format!("error: {f}:17:16: state 4 `c` (linux.cmd): parameter `timeout`: expected a whole number, found `soon`"),
        // What the original accepted is a warning, listed after the errors.
        format!("warning: {f}:11:7: state 2 `conf2` (linux.file): parameter `contnet`: unknown parameter `contnet` is ignored\n  hint: did you mean `content`?"),
        format!("warning: {f}:18:5: state 5 `c#5` (meta.comment): state id `c` is already used by state 4 (line 14): this state is named `c#5`"),
        format!("error: {f} is invalid: 7 errors"),
    ];
    let mut rest = run.stderr.as_str();
    for e in &expected {
        let at = rest
            .find(e.as_str())
            .unwrap_or_else(|| panic!("missing, or out of order: {e}\n--- stderr ---\n{}", run.stderr));
        rest = &rest[at + e.len()..];
    }

    // apply refuses the same recipe with exit 2, before running anything.
    let apply = s.apply(&bad, &[]);
    assert_eq!(apply.code, 2);
    assert!(apply.stderr.contains("is invalid: 7 errors"), "{}", apply.stderr);
}

#[test]
fn exit_codes_and_json() {
    let s = Scratch::new();
    let good = s.recipe("good.yaml", "states:\n  - {id: a, module: meta.comment, typo: 1}\n");
    let bad = s.recipe("bad.yaml", BAD);
    let run = validate(&[good.to_str().unwrap()]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("valid"), "{}", run.stdout);
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("unknown state key `typo` is ignored"),
        "{}",
        run.stderr
    );
    assert_eq!(validate(&[good.to_str().unwrap(), "/nonexistent/opsagent-test.yaml"]).code, 2);

    let run = validate(&["--json", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    let doc = run.json();
    assert_eq!(doc["files"][0]["valid"], true);
    assert_eq!(doc["files"][0]["states"], 1);
    let d = &doc["files"][1]["diagnostics"][2];
    assert_eq!(d["kind"], "bad_value");
    assert_eq!(d["state_id"], "conf2");
    assert_eq!(d["module"], "linux.file");
    assert_eq!(d["param"], "mode");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(10), Some(13)));
}

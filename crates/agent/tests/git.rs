//! `common.git` against real local repositories (no network).

mod common;

use std::path::Path;
use std::process::Command;

use common::Scratch;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "opsagent-test")
        .env("GIT_AUTHOR_EMAIL", "test@opsagent.invalid")
        .env("GIT_COMMITTER_NAME", "opsagent-test")
        .env("GIT_COMMITTER_EMAIL", "test@opsagent.invalid")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An upstream repository (with a working tree to commit from) and its bare clone to pull from.
struct Upstream {
    work: std::path::PathBuf,
    bare: std::path::PathBuf,
}

impl Upstream {
    fn new(s: &Scratch) -> Upstream {
        let work = s.path("upstream");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        let up = Upstream { work, bare: s.path("upstream.git") };
        up.commit("README", "one\n");
        git(s.dir.path(), &["clone", "--quiet", "--bare", up.work.to_str().unwrap(), up.bare.to_str().unwrap()]);
        up
    }

    fn commit(&self, file: &str, content: &str) -> String {
        std::fs::write(self.work.join(file), content).unwrap();
        git(&self.work, &["add", file]);
        git(&self.work, &["commit", "--quiet", "-m", content]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self) {
        git(&self.work, &["push", "--quiet", "--tags", self.bare.to_str().unwrap(), "main"]);
    }
}

fn changes(run: &common::Run) -> Vec<String> {
    run.json()["states"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn clones_follows_the_branch_and_predicts_updates() {
    let s = Scratch::new();
    let up = Upstream::new(&s);
    let recipe = s.recipe("r.yaml", &format!("states:\n  - {{id: src, module: common.git, parameter: {{repo: \"{}\", path: \"@/checkout\", revision: main}}}}\n", up.bare.display()));
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["src=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read_to_string(s.path("checkout/README")).unwrap(), "one\n");
    assert_eq!(git(&s.path("checkout"), &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["src=ok"]);

    // Upstream moves: --test predicts the move exactly, apply makes it.
    let old = git(&s.path("checkout"), &["rev-parse", "HEAD"]);
    let new = up.commit("README", "two\n");
    up.push();
    let predicted = s.apply(&recipe, &["--json", "--test"]);
    assert_eq!(changes(&predicted), [format!("{} -> {}", &old[..10], &new[..10])]);
    assert_eq!(git(&s.path("checkout"), &["rev-parse", "HEAD"]), old, "--test changed nothing");
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(changes(&run), changes(&predicted));
    assert_eq!(git(&s.path("checkout"), &["rev-parse", "HEAD"]), new);
    assert_eq!(std::fs::read_to_string(s.path("checkout/README")).unwrap(), "two\n");
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["src=ok"]);
}

#[test]
fn tags_commits_local_changes_and_force() {
    let s = Scratch::new();
    let up = Upstream::new(&s);
    let first = git(&up.work, &["rev-parse", "HEAD"]);
    git(&up.work, &["tag", "v1"]);
    up.commit("README", "two\n");
    up.push();
    let at = |rev: &str, force: bool| {
        s.recipe(
            &format!("{rev}-{force}.yaml"),
            &format!(
                "states:\n  - {{id: src, module: common.git, parameter: {{repo: \"{}\", path: \"@/co\", revision: \"{rev}\", force: {force}}}}}\n",
                up.bare.display()
            ),
        )
    };
    assert_eq!(s.apply(&at("v1", false), &["--json"]).statuses(), ["src=changed"]);
    assert_eq!(git(&s.path("co"), &["rev-parse", "HEAD"]), first);
    assert_eq!(s.apply(&at("v1", false), &["--json"]).statuses(), ["src=ok"]);
    let short = &first[..8];
    assert_eq!(
        s.apply(&at(short, false), &["--json"]).statuses(),
        ["src=ok"],
        "a short commit id names the same commit"
    );

    // Local changes stop the state unless force.
    std::fs::write(s.path("co/README"), "edited by hand\n").unwrap();
    let run = s.apply(&at("main", false), &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert!(run.json()["states"][0]["comment"].as_str().unwrap().contains("has local changes"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "edited by hand\n");
    assert_eq!(s.apply(&at("main", true), &["--json"]).statuses(), ["src=changed"]);
    assert_eq!(std::fs::read_to_string(s.path("co/README")).unwrap(), "two\n");
    assert_eq!(s.apply(&at("main", true), &["--json"]).statuses(), ["src=ok"]);
}

#[test]
fn errors_are_clear() {
    let s = Scratch::new();
    let up = Upstream::new(&s);
    let recipe = s.recipe("r.yaml", &format!("states:\n  - {{id: src, module: common.git, parameter: {{repo: \"{}\", path: \"@/co\", revision: nope}}}}\n", up.bare.display()));
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert!(
        run.json()["states"][0]["comment"].as_str().unwrap().contains("has no branch or tag `nope`"),
        "{}",
        run.stdout
    );
    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: src, module: common.git, parameter: {path: relative, revision: \"a b\"}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("required parameter `repo` is missing"), "{stderr}");
    assert!(stderr.contains("`relative` is not an absolute path"), "{stderr}");
    assert!(stderr.contains("`a b` is not a branch, tag or commit name"), "{stderr}");
}

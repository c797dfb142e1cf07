//! `common.archive` with real `tar` and `unzip` on archives built by the test, in temp dirs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{changes, Run, Scratch};

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

fn digest(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().to_string()
}

/// Builds `name` (a tar.gz or zip, by its extension) from `files` (path → content) under `src/`.
fn build(s: &Scratch, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = s.path("src");
    let _ = std::fs::remove_dir_all(&src);
    for (path, content) in files {
        let file = src.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let archive = s.path(name);
    let _ = std::fs::remove_file(&archive);
    let cmd = if name.ends_with(".zip") {
        format!("zip -qr {} .", archive.display())
    } else {
        format!("tar -czf {} .", archive.display())
    };
    sh(&src, &cmd);
    archive
}

fn recipe(s: &Scratch, name: &str, source: &Path, dest: &str, extra: &str) -> PathBuf {
    s.recipe(
        name,
        &format!(
            "states:\n  - {{id: rel, module: common.archive, parameter: {{source: \"{}\", path: \"{dest}\"{extra}}}}}\n",
            source.display()
        ),
    )
}

fn comment(run: &Run) -> String {
    run.json()["states"][0]["comment"].as_str().unwrap_or_default().to_string()
}

/// `--test`, then the real run: the changes made are the ones predicted, and `--test` touched nothing.
fn predicted_then_applied(s: &Scratch, recipe: &Path, dest: &Path) -> Vec<String> {
    let before = common::snapshot(dest);
    let test = s.apply(recipe, &["--json", "--test"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(common::snapshot(dest), before, "--test changed nothing");
    let run = s.apply(recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), changes(&test));
    changes(&run)
}

/// Entries of a directory that are opsagent's temporary extraction directories.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("opsagent-extract"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn extracts_once_and_again_when_the_archive_changes() {
    let s = Scratch::new();
    let archive = build(&s, "app.tar.gz", &[("app/bin/run", "v1\n"), ("app/README", "readme\n")]);
    let dest = s.path("opt/app");
    let shown = dest.display().to_string();
    let r = recipe(&s, "r.yaml", &archive, "@/opt/app", "");
    let sha = digest("sha256sum", &archive);
    assert_eq!(
        predicted_then_applied(&s, &r, &dest),
        [format!("create {shown} (extract {} (5 entries, sha256:{}…))", archive.display(), &sha[..12])]
    );
    assert_eq!(std::fs::read_to_string(dest.join("app/bin/run")).unwrap(), "v1\n");
    assert_eq!(leftovers(&s.path("opt")), Vec::<String>::new());
    let record = std::fs::read_to_string(s.path("state/archive/rel.json")).unwrap();
    assert!(record.contains(&format!("sha256:{sha}")), "{record}");
    let snap = common::snapshot(&dest);
    assert_eq!(s.apply(&r, &["--json"]).statuses(), ["rel=ok"], "a second run changes nothing");
    assert_eq!(common::snapshot(&dest), snap);

    // A file of ours beside the archive's files stays; a changed archive is extracted again.
    std::fs::write(dest.join("app/local.conf"), "mine\n").unwrap();
    build(&s, "app.tar.gz", &[("app/bin/run", "v2\n"), ("app/README", "readme\n")]);
    let sha = digest("sha256sum", &archive);
    assert_eq!(
        predicted_then_applied(&s, &r, &dest),
        [format!("update {shown} (extract {} (5 entries, sha256:{}…))", archive.display(), &sha[..12])]
    );
    assert_eq!(std::fs::read_to_string(dest.join("app/bin/run")).unwrap(), "v2\n");
    assert_eq!(std::fs::read_to_string(dest.join("app/local.conf")).unwrap(), "mine\n");
    assert_eq!(leftovers(&dest), Vec::<String>::new());
    assert_eq!(s.apply(&r, &["--json"]).statuses(), ["rel=ok"]);

    // The same checksum given explicitly (as a `file://` URL source) is what was recorded: fine.
    let url = s.recipe(
        "url.yaml",
        &format!(
            "states:\n  - {{id: rel, module: common.archive, parameter: {{source: \"file://{}\", path: \"@/opt/app\", checksum: \"sha256:{sha}\"}}}}\n",
            archive.display()
        ),
    );
    assert_eq!(s.apply(&url, &["--json"]).statuses(), ["rel=ok"]);

    // Removed by hand: extracted again.
    std::fs::remove_dir_all(&dest).unwrap();
    assert_eq!(s.apply(&r, &["--json"]).statuses(), ["rel=changed"]);
    assert!(dest.join("app/README").exists());
}

#[test]
fn checksums_are_verified_before_extracting() {
    let s = Scratch::new();
    let archive = build(&s, "app.tgz", &[("f", "x\n")]);
    let md5 = digest("md5sum", &archive);
    let wrong = "0".repeat(32);
    let bad = recipe(&s, "bad.yaml", &archive, "@/out", &format!(", checksum: \"md5:{wrong}\""));
    for extra in [&["--test"][..], &[]] {
        let run = s.apply(&bad, &[&["--json", "--retries", "0"][..], extra].concat());
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(comment(&run).contains(&format!("has md5:{md5}, not the md5:{wrong}")), "{}", comment(&run));
        assert!(comment(&run).contains("nothing was extracted"), "{}", comment(&run));
    }
    assert!(!s.path("out").exists());
    assert_eq!(leftovers(s.dir.path()), Vec::<String>::new());

    // The original's `md5=` form, right: extracted.
    let good = recipe(&s, "good.yaml", &archive, "@/out", &format!(", checksum: \"md5={md5}\""));
    assert_eq!(s.apply(&good, &["--json"]).statuses(), ["rel=changed"]);
    assert_eq!(std::fs::read_to_string(s.path("out/f")).unwrap(), "x\n");
    assert_eq!(s.apply(&good, &["--json"]).statuses(), ["rel=ok"]);
}

#[test]
fn if_path_absent_zip_and_refused_members() {
    let s = Scratch::new();
    let zip = build(&s, "site.zip", &[("index.html", "<p>hi</p>\n"), ("css/site.css", "p{}\n")]);
    let guarded = recipe(&s, "z.yaml", &zip, "@/www", ", if-path-absent: [\"@/www/index.html\"]");
    let dest = s.path("www");
    let made = predicted_then_applied(&s, &guarded, &dest);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(std::fs::read_to_string(dest.join("css/site.css")).unwrap(), "p{}\n");
    // The guard path exists now: nothing to do, even though the archive changes.
    build(&s, "site.zip", &[("index.html", "<p>new</p>\n")]);
    assert_eq!(s.apply(&guarded, &["--json"]).statuses(), ["rel=ok"]);
    assert_eq!(std::fs::read_to_string(dest.join("index.html")).unwrap(), "<p>hi</p>\n");

    // Members that would land outside `path` are refused before anything is extracted.
    std::fs::create_dir_all(s.path("work/in")).unwrap();
    std::fs::write(s.path("work/evil"), "evil\n").unwrap();
    sh(&s.path("work/in"), "tar -cPf ../../evil.tar ../evil");
    let evil = recipe(&s, "evil.yaml", &s.path("evil.tar"), "@/x/y", "");
    let run = s.apply(&evil, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(comment(&run).contains("holds the member `../evil`"), "{}", comment(&run));
    assert!(!s.path("x").exists() && !s.path("evil").exists());

    // A corrupt archive fails and leaves nothing behind.
    std::fs::write(s.path("broken.tar.gz"), "not gzip at all").unwrap();
    let run = s.apply(&recipe(&s, "broken.yaml", &s.path("broken.tar.gz"), "@/b", ""), &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!s.path("b").exists());
    assert_eq!(leftovers(s.dir.path()), Vec::<String>::new());
}

#[test]
fn bad_parameters_are_clear() {
    let s = Scratch::new();
    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: a, module: common.archive, parameter: {source: \"ftp://example.com/a.tgz\", path: rel}}\n  - {id: b, module: common.archive, parameter: {source: /srv/a.rar, path: /opt/a, checksum: \"sha256:abc\", if-path-absent: [x]}}\n  - {id: c, module: common.archive, parameter: {path: /opt/c, checksum: \"crc:00\"}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "`ftp://example.com/a.tgz` is neither a local path nor an http(s) URL",
        "`rel` is not an absolute path",
        "cannot tell the archive format of `/srv/a.rar` from its name",
        "`abc` is not a sha256 checksum (64 hex digits)",
        "`x` is not an absolute path",
        "required parameter `source` is missing",
        "`crc` is not a checksum algorithm opsagent knows",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn a_missing_tool_is_named() {
    let s = Scratch::new();
    let archive = build(&s, "app.tar.gz", &[("f", "x\n")]);
    let empty = s.path("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let r = recipe(&s, "r.yaml", &archive, "@/out", "");
    let out = Command::new(common::bin())
        .arg("apply")
        .arg(&r)
        .args(["--json", "--retries", "0", "--state-dir"])
        .arg(s.path("state"))
        .env("PATH", &empty)
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(comment(&run).contains("`tar` is not installed on this machine"), "{}", comment(&run));
    assert!(!s.path("out").exists());
}

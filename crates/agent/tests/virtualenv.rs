//! `common.virtualenv` end to end: environments made with the real `python3 -m venv` in the test's
//! temp dir, a requirements file installed from a directory of wheels the test writes (offline:
//! the file says `--no-index`, `extra-search-dir` gives the wheels), through the real `opsagent apply`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{changes, Run, Scratch};

const FOO: &str = "opsagent-test-foo";

/// Writes a wheel by hand: a zip with `METADATA`, `WHEEL` and `RECORD`.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
out, name, version = sys.argv[1], sys.argv[2], sys.argv[3]
dist = name.replace("-", "_")
info = f"{dist}-{version}.dist-info"
files = {
    f"{dist}/__init__.py": f"VERSION = {version!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: opsagent-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(f"{out}/{dist}-{version}-py3-none-any.whl", "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
"#;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn comment(run: &Run) -> String {
    run.json()["states"][0]["comment"].as_str().unwrap_or("").to_string()
}

/// `--test` predicts the changes and changes nothing; `apply` makes exactly them; then all is ok.
fn converge(s: &Scratch, recipe: &Path, expected: &[String]) {
    let before = common::snapshot(&s.path("venv"));
    let predicted = s.apply(recipe, &["--json", "--test"]);
    assert_eq!(predicted.code, 0, "{}{}", predicted.stdout, predicted.stderr);
    assert_eq!(changes(&predicted), expected, "--test");
    assert_eq!(common::snapshot(&s.path("venv")), before, "--test changed nothing");
    let run = s.apply(recipe, &["--json"]);
    assert_eq!(run.statuses(), ["env=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), expected, "apply did what --test said");
    let again = s.apply(recipe, &["--json"]);
    assert_eq!(again.statuses(), ["env=ok"], "{}{}", again.stdout, again.stderr);
}

fn sha(path: &Path) -> String {
    run("sha256sum", &[path.to_str().unwrap()])[..12].to_string()
}

fn foo_version(venv: &Path) -> String {
    run(venv.join("bin/python").to_str().unwrap(), &["-c", "import opsagent_test_foo as m; print(m.VERSION)"])
}

#[test]
fn creates_installs_requirements_and_follows_changes() {
    let s = Scratch::new();
    let wheels = s.path("wheels");
    std::fs::create_dir(&wheels).unwrap();
    for version in ["1.0", "1.1"] {
        run("python3", &["-c", MAKE_WHEEL, wheels.to_str().unwrap(), FOO, version]);
    }
    let requirements = s.path("requirements.txt");
    std::fs::write(&requirements, format!("--no-index\n{FOO}==1.0\n")).unwrap();
    let venv = s.path("venv");
    let python = run("python3", &["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]);
    let recipe_with = |name: &str, site: bool| -> PathBuf {
        s.recipe(
            name,
            &format!("states:\n  - {{id: env, module: common.virtualenv, parameter: {{path: \"@/venv/\", requirements-file: \"@/requirements.txt\", extra-search-dir: [\"@/wheels\"], system-site-packages: {site}}}}}\n"),
        )
    };
    let recipe = recipe_with("a.yaml", false);
    let shown = venv.display().to_string();
    converge(
        &s,
        &recipe,
        &[
            format!("create {shown} (python3 -m venv, Python {python})"),
            format!(
                "update {shown} (install requirements from {}, sha256 {})",
                requirements.display(),
                sha(&requirements)
            ),
        ],
    );
    assert_eq!(foo_version(&venv), "1.0");
    assert!(s.path("state/virtualenv/env.json").is_file(), "the fingerprint is kept under the state dir");

    // The requirements change: installed again.
    std::fs::write(&requirements, format!("--no-index\n{FOO}==1.1\n")).unwrap();
    converge(
        &s,
        &recipe,
        &[format!(
            "update {shown} (install requirements from {}, sha256 {})",
            requirements.display(),
            sha(&requirements)
        )],
    );
    assert_eq!(foo_version(&venv), "1.1");

    // The system site packages: only pyvenv.cfg changes, the packages stay.
    converge(&s, &recipe_with("b.yaml", true), &[format!("update {shown} (system site packages: false -> true)")]);
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(cfg.contains("include-system-site-packages = true"), "{cfg}");
    assert_eq!(foo_version(&venv), "1.1");

    // A broken interpreter: the environment is made again, and the requirements go back in.
    std::fs::remove_file(venv.join("bin/python")).unwrap();
    converge(
        &s,
        &recipe_with("b.yaml", true),
        &[
            format!(
                "update {shown} (recreate, its `bin/python` does not run: python3 -m venv, Python {python}, system site packages)"
            ),
            format!("update {shown} (install requirements from {}, sha256 {})", requirements.display(), sha(&requirements)),
        ],
    );
    assert_eq!(foo_version(&venv), "1.1");
}

#[test]
fn failures_are_clear() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("occupied")).unwrap();
    std::fs::write(s.path("occupied/data"), "mine\n").unwrap();
    let recipe =
        s.recipe("r.yaml", "states:\n  - {id: env, module: common.virtualenv, parameter: {path: \"@/occupied\"}}\n");
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        comment(&run),
        format!(
            "`{}` exists and is not a virtualenv (no `pyvenv.cfg`); remove it or choose another path",
            s.path("occupied").display()
        )
    );
    assert_eq!(std::fs::read_to_string(s.path("occupied/data")).unwrap(), "mine\n");

    let recipe = s.recipe(
        "p.yaml",
        "states:\n  - {id: env, module: common.virtualenv, parameter: {path: \"@/v\", python-bin: opsagent-test-no-python}}\n",
    );
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert!(comment(&run).starts_with("`opsagent-test-no-python` is not installed on this machine"), "{}", run.stdout);

    let recipe = s.recipe(
        "q.yaml",
        "states:\n  - {id: env, module: common.virtualenv, parameter: {path: \"@/v\", requirements-file: \"@/missing.txt\"}}\n",
    );
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert!(comment(&run).starts_with("reading the requirements file"), "{}", run.stdout);
    assert!(comment(&run).contains("missing.txt"), "{}", run.stdout);

    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: env, module: common.virtualenv, parameter: {requirements-file: rel.txt, extra-search-dir: [wheels], system-site-packages: maybe, python: python3, pyton-bin: x}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "required parameter `path` is missing",
        "`rel.txt` is not an absolute path",
        "`wheels` is not an absolute path",
        "expected true or false, found `maybe`",
        // Salt's name for `python-bin` is read as it, with a warning; a typo still gets "did you mean".
        "parameter `python` is the original's name for `python-bin`; read as `python-bin`",
        "unknown parameter `pyton-bin` is ignored",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

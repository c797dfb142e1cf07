//! `common.pip.package` end to end: tiny wheels written here (a wheel is a zip with `METADATA`,
//! `WHEEL` and `RECORD`), installed from a `find-links` directory with `no-index` into a virtualenv
//! made with `python3 -m venv` in the test's temp dir, through the real `opsagent apply` and the
//! real pip. Nothing is installed outside the temp dir, and no network is used.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{changes, Run, Scratch};

const FOO: &str = "opsagent-test-foo";
const BAR: &str = "opsagent-test-bar";

/// Writes a wheel by hand (no setuptools or wheel needed offline).
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
out, name, version, requires = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
dist = name.replace("-", "_")
info = f"{dist}-{version}.dist-info"
files = {
    f"{dist}/__init__.py": f"VERSION = {version!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    + "".join(f"Requires-Dist: {r}\n" for r in requires),
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

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A virtualenv and a directory of wheels in a temp dir (removed with it).
struct Fixture {
    s: Scratch,
    venv: PathBuf,
    wheels: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let s = Scratch::new();
        let venv = s.path("venv");
        let wheels = s.path("wheels");
        std::fs::create_dir(&wheels).unwrap();
        run("python3", &["-m", "venv", venv.to_str().unwrap()]);
        let f = Fixture { s, venv, wheels };
        f.wheel(FOO, "1.0", &[]);
        f.wheel(FOO, "1.1", &[]);
        f.wheel(BAR, "2.0", &[&format!("{FOO}>=1.0")]);
        f
    }

    fn wheel(&self, name: &str, version: &str, requires: &[&str]) {
        let mut args = vec!["-c", MAKE_WHEEL, self.wheels.to_str().unwrap(), name, version];
        args.extend(requires);
        run("python3", &args);
    }

    fn recipe(&self, name: &str, packages: &str) -> PathBuf {
        self.s.recipe(
            name,
            &format!(
                "states:\n  - {{id: py, module: common.pip.package, parameter: {{virtualenv: \"{}\", find-links: [\"{}\"], no-index: true, name: {{{packages}}}}}}}\n",
                self.venv.display(),
                self.wheels.display()
            ),
        )
    }

    /// `pip list` of the virtualenv: `name==version` of the test packages.
    fn installed(&self) -> Vec<String> {
        let out = Command::new(self.venv.join("bin/pip"))
            .args(["list", "--format=freeze", "--disable-pip-version-check"])
            .output()
            .unwrap();
        let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.to_lowercase().starts_with("opsagent"))
            .map(|l| l.to_lowercase().replace('_', "-"))
            .collect();
        list.sort();
        list
    }
}

fn comment(run: &Run) -> String {
    run.json()["states"][0]["comment"].as_str().unwrap_or("").to_string()
}

/// `--test` predicts the changes, changes nothing; `apply` makes exactly them; a second run is ok.
fn converge(f: &Fixture, recipe: &Path, expected: &[&str]) {
    let before = f.installed();
    let predicted = f.s.apply(recipe, &["--json", "--test"]);
    assert_eq!(predicted.code, 0, "{}{}", predicted.stdout, predicted.stderr);
    assert_eq!(changes(&predicted), expected, "--test");
    assert_eq!(f.installed(), before, "--test changed nothing");
    let run = f.s.apply(recipe, &["--json"]);
    assert_eq!(run.statuses(), ["py=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), expected, "apply did what --test said");
    let again = f.s.apply(recipe, &["--json"]);
    assert_eq!(again.statuses(), ["py=ok"], "{}{}", again.stdout, again.stderr);
}

#[test]
fn installs_pins_upgrades_downgrades_and_removes() {
    let f = Fixture::new();
    // The dependency (foo) comes in with bar, at the version pinned in the same state.
    let recipe = f.recipe("a.yaml", &format!("\"{FOO}\": \"1.0\", \"opsagent_test_Bar\": \"\""));
    converge(&f, &recipe, &[&format!("create {FOO} (install 1.0)"), &format!("create {BAR} (install 2.0)")]);
    assert_eq!(f.installed(), [format!("{BAR}==2.0"), format!("{FOO}==1.0")]);

    let latest = f.recipe("b.yaml", &format!("\"{FOO}\": latest, \"{BAR}\": \"\""));
    converge(&f, &latest, &[&format!("update {FOO} (upgrade 1.0 -> 1.1)")]);
    assert_eq!(f.installed(), [format!("{BAR}==2.0"), format!("{FOO}==1.1")]);

    // A newer wheel appears: `latest` follows it.
    f.wheel(FOO, "1.2", &[]);
    converge(&f, &latest, &[&format!("update {FOO} (upgrade 1.1 -> 1.2)")]);

    let pinned = f.recipe("c.yaml", &format!("\"{FOO}\": \"1.0\""));
    converge(&f, &pinned, &[&format!("update {FOO} (downgrade 1.2 -> 1.0)")]);

    let removed = f.recipe("d.yaml", &format!("\"{BAR}\": removed, \"{FOO}\": \"1.0\""));
    converge(&f, &removed, &[&format!("remove {BAR} (uninstall 2.0)")]);
    assert_eq!(f.installed(), [format!("{FOO}==1.0")]);
}

#[test]
fn unknown_packages_and_versions_fail_naming_them() {
    let f = Fixture::new();
    let unknown = f.recipe("u.yaml", "opsagent-test-nope: \"\"");
    let run = f.s.apply(&unknown, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        comment(&run),
        "package `opsagent-test-nope` is not offered by the package index (or `find-links`)",
        "{}",
        run.stdout
    );
    let version = f.recipe("v.yaml", &format!("\"{FOO}\": \"9.9\""));
    let run = f.s.apply(&version, &["--json", "--retries", "0", "--test"]);
    assert_eq!(
        comment(&run),
        format!("package `{FOO}` has no version 9.9 in the package index (available: 1.0, 1.1)"),
        "{}",
        run.stdout
    );
    assert!(f.installed().is_empty());
}

#[test]
fn a_missing_pip_or_virtualenv_is_named() {
    let f = Fixture::new();
    let bare = f.s.path("bare");
    run("python3", &["-m", "venv", "--without-pip", bare.to_str().unwrap()]);
    let recipe = f.s.recipe(
        "r.yaml",
        "states:\n  - {id: py, module: common.pip.package, parameter: {virtualenv: \"@/bare\", name: {x: \"\"}}}\n",
    );
    let run = f.s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert!(
        comment(&run).starts_with(&format!(
            "`{}/bin/pip` is not installed on this machine; this virtualenv has no pip",
            bare.display()
        )),
        "{}",
        run.stdout
    );
    let recipe = f.s.recipe(
        "s.yaml",
        "states:\n  - {id: py, module: common.pip.package, parameter: {virtualenv: \"@/nowhere\", name: {x: \"\"}}}\n",
    );
    let run = f.s.apply(&recipe, &["--json", "--retries", "0"]);
    assert!(comment(&run).contains("nowhere` is not a virtualenv (it has no `bin/python`)"), "{}", run.stdout);
}

/// Debian's own Python is "externally managed" (PEP 668): without a virtualenv the state refuses,
/// and says what to do instead.
#[test]
fn the_externally_managed_system_python_is_refused() {
    let marker = Command::new("/usr/bin/python3")
        .args(["-c", "import os, sysconfig; print(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'))"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(marker) = marker.filter(|m| m.is_file()) else {
        eprintln!("skipped: /usr/bin/python3 is not marked externally managed on this machine");
        return;
    };
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        &format!("states:\n  - {{id: py, module: common.pip.package, parameter: {{name: {{\"{FOO}\": \"\"}}}}}}\n"),
    );
    let out = Command::new(common::bin())
        .arg("apply")
        .arg(&recipe)
        .args(["--json", "--test", "--state-dir"])
        .arg(s.path("state"))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1);
    assert!(
        comment(&run).starts_with(&format!(
            "`{}` marks the system Python as managed by the distribution (PEP 668)",
            marker.display()
        )),
        "{}",
        run.stdout
    );
    assert!(comment(&run).contains("break-system-packages: true"));
}

#[test]
fn bad_parameters_are_reported_together() {
    let s = Scratch::new();
    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: py, module: common.pip.package, parameter: {virtualenv: relative, no-index: true, name: {\"foo bar\": \"\", ok: \">=1.0\", Foo_Bar: \"\", foo-bar: latest}, index: x}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "`foo bar` is not a Python package name",
        "`>=1.0` is not a version, `latest` or `removed`",
        "package `foo-bar` is listed twice (as `Foo_Bar` too)",
        "`relative` is not an absolute path",
        "`no-index: true` without `find-links`",
        "unknown parameter `index`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

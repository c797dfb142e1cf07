//! `common.gem.package` end to end with the real `gem`: tiny gems built here with `gem build`,
//! served from a `file:///` gem source made with `gem generate_index` or given as `.gem` paths,
//! installed through the real `opsagent apply` into a `GEM_HOME` in the test's temp dir (with
//! `HOME` there too, so gem's caches stay in it). No network is used.

mod common;
#[path = "common/http.rs"]
mod http_server;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{changes, Run, Scratch};

const FOO: &str = "opsagent-test-foo";
const BAR: &str = "opsagent-test-bar";

struct Fixture {
    s: Scratch,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture { s: Scratch::new() };
        std::fs::create_dir_all(f.s.path("repo/gems")).unwrap();
        std::fs::create_dir_all(f.s.path("home")).unwrap();
        f
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("GEM_HOME", self.s.path("gems"))
            .env("GEM_PATH", self.s.path("gems"))
            .env("GEM_SPEC_CACHE", self.s.path("spec-cache"))
            .env("HOME", self.s.path("home"));
    }

    fn gem(&self, args: &[&str], dir: &Path) -> String {
        let mut cmd = Command::new("gem");
        cmd.args(args).current_dir(dir);
        self.env(&mut cmd);
        let out = cmd.output().expect("gem");
        assert!(
            out.status.success(),
            "gem {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `gem build`s a gem into `into`; returns the file.
    fn build(&self, name: &str, version: &str, into: &Path) -> PathBuf {
        let src = self.s.path(&format!("src/{name}-{version}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join(format!("{name}.gemspec")),
            format!("Gem::Specification.new do |s|\n  s.name = \"{name}\"\n  s.version = \"{version}\"\n  s.summary = \"opsagent test gem\"\n  s.authors = [\"opsagent\"]\n  s.files = []\nend\n"),
        )
        .unwrap();
        self.gem(&["build", &format!("{name}.gemspec")], &src);
        let file = into.join(format!("{name}-{version}.gem"));
        std::fs::rename(src.join(format!("{name}-{version}.gem")), &file).unwrap();
        file
    }

    /// Adds a gem to the `file:///` source and indexes it again.
    fn publish(&self, name: &str, version: &str) {
        self.build(name, version, &self.s.path("repo/gems"));
        let repo = self.s.path("repo");
        self.gem(&["generate_index", "--directory", repo.to_str().unwrap()], &repo);
    }

    fn recipe(&self, name: &str, packages: &str) -> PathBuf {
        self.s.recipe(
            name,
            &format!("states:\n  - {{id: rb, module: common.gem.package, parameter: {{source: \"file://@/repo/\", name: {{{packages}}}}}}}\n"),
        )
    }

    fn apply(&self, recipe: &Path, extra: &[&str]) -> Run {
        let mut cmd = Command::new(common::bin());
        cmd.arg("apply").arg(recipe).args(extra).arg("--state-dir").arg(self.s.path("state")).env("NO_COLOR", "1");
        self.env(&mut cmd);
        Run::from(cmd.output().expect("run opsagent"))
    }

    /// The installed versions of the test gems, `name (versions)`.
    fn installed(&self) -> Vec<String> {
        let home = self.s.path("home");
        self.gem(&["list", "--local", "opsagent-test-"], &home)
            .lines()
            .map(str::to_string)
            .filter(|l| l.starts_with("opsagent-test-"))
            .collect()
    }

    fn converge(&self, recipe: &Path, expected: &[String]) {
        let before = self.installed();
        let predicted = self.apply(recipe, &["--json", "--test"]);
        assert_eq!(predicted.code, 0, "{}{}", predicted.stdout, predicted.stderr);
        assert_eq!(changes(&predicted), expected, "--test");
        assert_eq!(self.installed(), before, "--test changed nothing");
        let run = self.apply(recipe, &["--json"]);
        assert_eq!(run.statuses(), ["rb=changed"], "{}{}", run.stdout, run.stderr);
        assert_eq!(changes(&run), expected, "apply did what --test said");
        let again = self.apply(recipe, &["--json"]);
        assert_eq!(again.statuses(), ["rb=ok"], "{}{}", again.stdout, again.stderr);
    }
}

fn comment(run: &Run) -> String {
    run.json()["states"][0]["comment"].as_str().unwrap_or("").to_string()
}

#[test]
fn installs_pins_follows_latest_and_removes() {
    let f = Fixture::new();
    f.publish(FOO, "1.0.0");
    f.publish(FOO, "1.1.0");
    f.converge(&f.recipe("a.yaml", &format!("\"{FOO}\": \"1.0.0\"")), &[format!("create {FOO} (install 1.0.0)")]);
    assert_eq!(f.installed(), [format!("{FOO} (1.0.0)")]);

    let latest = f.recipe("b.yaml", &format!("\"{FOO}\": latest"));
    f.converge(&latest, &[format!("update {FOO} (install 1.1.0 beside 1.0.0)")]);
    assert_eq!(f.installed(), [format!("{FOO} (1.1.0, 1.0.0)")]);

    // A `.gem` file next to a registry gem: one `gem install`.
    let files = f.s.path("files");
    std::fs::create_dir_all(&files).unwrap();
    let bar = f.build(BAR, "2.0.0", &files);
    let both = f.recipe("c.yaml", &format!("\"{FOO}\": removed, \"{BAR}\": \"{}\"", bar.display()));
    f.converge(
        &both,
        &[
            format!("create {BAR} (install 2.0.0 from {})", bar.display()),
            format!("remove {FOO} (uninstall 1.1.0, 1.0.0)"),
        ],
    );
    assert_eq!(f.installed(), [format!("{BAR} (2.0.0)")]);
}

#[test]
fn unknown_gems_versions_and_tools_fail_naming_them() {
    let f = Fixture::new();
    f.publish(FOO, "1.0.0");
    let cases = [
        (
            "opsagent-test-nope: \"\"".to_string(),
            "package `opsagent-test-nope` is not offered by the gem sources".to_string(),
        ),
        (
            format!("\"{FOO}\": \"9.9\""),
            format!("package `{FOO}` has no version 9.9 in the gem sources (available: 1.0.0)"),
        ),
    ];
    for (i, (packages, expected)) in cases.iter().enumerate() {
        let run = f.apply(&f.recipe(&format!("e{i}.yaml"), packages), &["--json", "--retries", "0"]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert_eq!(&comment(&run), expected, "{}", run.stdout);
    }
    let files = f.s.path("files");
    std::fs::create_dir_all(&files).unwrap();
    let bar = f.build(BAR, "2.0.0", &files);
    let run = f.apply(&f.recipe("w.yaml", &format!("\"{FOO}\": \"{}\"", bar.display())), &["--json", "--retries", "0"]);
    assert_eq!(comment(&run), format!("`{}` holds gem `{BAR}`, not `{FOO}`; name the entry `{BAR}`", bar.display()));
    assert!(f.installed().is_empty());

    let mut cmd = Command::new(common::bin());
    cmd.arg("apply").arg(f.recipe("n.yaml", "x: \"\"")).args(["--json", "--retries", "0", "--state-dir"]);
    cmd.arg(f.s.path("state")).env("PATH", f.s.path("empty-bin"));
    let run = Run::from(cmd.output().unwrap());
    assert!(
        comment(&run).starts_with("`gem` is not installed on this machine; install the Debian package `ruby`"),
        "{}",
        run.stdout
    );

    let bad = f.s.recipe(
        "bad.yaml",
        "states:\n  - {id: rb, module: common.gem.package, parameter: {source: ftp://x, name: {\"bad name\": \"\", ok: \"~> 1.0\", f: \"/x/y.zip\"}, sources: x}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "`bad name` is not a gem name",
        "`~> 1.0` is not a version, `latest`, `removed` or a `.gem` path",
        "`/x/y.zip` is not a `.gem` file",
        "`ftp://x` is not a gem source URL",
        "unknown parameter `sources`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn installs_a_gem_file_from_an_http_url() {
    let f = Fixture::new();
    let files = f.s.path("files");
    std::fs::create_dir_all(&files).unwrap();
    let bar = f.build(BAR, "2.0.0", &files);
    let server = http_server::Server::start(None);
    server.put(&format!("gems/{BAR}-2.0.0.gem"), &std::fs::read(&bar).unwrap(), http_server::Send::Length);
    let url = server.url(&format!("gems/{BAR}-2.0.0.gem"));
    f.converge(
        &f.recipe("url.yaml", &format!("\"{BAR}\": \"{url}\"")),
        &[format!("create {BAR} (install 2.0.0 from {url})")],
    );
    assert_eq!(f.installed(), [format!("{BAR} (2.0.0)")]);
    // Downloaded once (by --test); every later round only revalidated it.
    let statuses: Vec<u16> = server.take_hits().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [200, 304, 304]);
}

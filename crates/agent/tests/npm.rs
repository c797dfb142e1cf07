//! `common.npm.package` end to end with the real npm: tiny packages made here with `npm pack`,
//! served by a registry the test runs on loopback (a packument per package, its tarballs) or
//! given as tarball paths, installed through the real `opsagent apply` into a directory (`path`)
//! or globally into a prefix in the temp dir (`npm_config_prefix`). npm's cache, config and logs
//! stay in the temp dir too; no network is used.

mod common;
#[path = "common/http.rs"]
mod http_server;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{changes, Run, Scratch};

const FOO: &str = "opsagent-test-foo";
const BAR: &str = "opsagent-test-bar";

struct Fixture {
    s: Scratch,
    registry: String,
}

impl Fixture {
    fn new() -> Fixture {
        let s = Scratch::new();
        std::fs::create_dir_all(s.path("registry")).unwrap();
        let registry = serve(s.path("registry"));
        let f = Fixture { s, registry };
        f.publish(FOO, "1.0.0");
        f.publish(FOO, "1.1.0");
        f
    }

    /// The npm configuration every npm run of the test uses (also opsagent's, which passes it on).
    fn env(&self, cmd: &mut Command) {
        cmd.env("npm_config_registry", &self.registry)
            .env("npm_config_cache", self.s.path("npm-cache"))
            .env("npm_config_userconfig", self.s.path("npmrc"))
            .env("npm_config_prefix", self.s.path("global"))
            .env("npm_config_fetch_retries", "0")
            .env("npm_config_update_notifier", "false")
            .env("npm_config_logs_dir", self.s.path("npm-logs"));
    }

    /// `npm pack`s a package into the registry directory; returns the tarball.
    fn pack(&self, name: &str, version: &str, into: &Path) -> PathBuf {
        let src = self.s.path(&format!("src/{name}-{version}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("package.json"),
            format!("{{\"name\": \"{name}\", \"version\": \"{version}\", \"main\": \"index.js\"}}\n"),
        )
        .unwrap();
        std::fs::write(src.join("index.js"), format!("module.exports = '{version}';\n")).unwrap();
        let mut cmd = Command::new("npm");
        cmd.args(["pack", "--silent", "--pack-destination"]).arg(into).current_dir(&src);
        self.env(&mut cmd);
        let out = cmd.output().expect("npm");
        assert!(out.status.success(), "npm pack: {}", String::from_utf8_lossy(&out.stderr));
        into.join(format!("{name}-{version}.tgz"))
    }

    fn publish(&self, name: &str, version: &str) {
        self.pack(name, version, &self.s.path("registry"));
    }

    fn recipe(&self, name: &str, params: &str) -> PathBuf {
        self.s.recipe(name, &format!("states:\n  - {{id: js, module: common.npm.package, parameter: {{{params}}}}}\n"))
    }

    fn apply(&self, recipe: &Path, extra: &[&str]) -> Run {
        let mut cmd = Command::new(common::bin());
        cmd.arg("apply").arg(recipe).args(extra).arg("--state-dir").arg(self.s.path("state")).env("NO_COLOR", "1");
        self.env(&mut cmd);
        Run::from(cmd.output().expect("run opsagent"))
    }

    /// `converge`: `--test` predicts, changes nothing; apply does exactly that; a second run is ok.
    fn converge(&self, recipe: &Path, watched: &Path, expected: &[String]) {
        let before = common::snapshot(watched);
        let predicted = self.apply(recipe, &["--json", "--test"]);
        assert_eq!(predicted.code, 0, "{}{}", predicted.stdout, predicted.stderr);
        assert_eq!(changes(&predicted), expected, "--test");
        assert_eq!(common::snapshot(watched), before, "--test changed nothing");
        let run = self.apply(recipe, &["--json"]);
        assert_eq!(run.statuses(), ["js=changed"], "{}{}", run.stdout, run.stderr);
        assert_eq!(changes(&run), expected, "apply did what --test said");
        let again = self.apply(recipe, &["--json"]);
        assert_eq!(again.statuses(), ["js=ok"], "{}{}", again.stdout, again.stderr);
    }
}

/// A registry on loopback: `/NAME` is the packument built from `dir`'s `NAME-VERSION.tgz` files
/// (the newest is `latest`), `/-/FILE` a tarball, anything else 404.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let url = base.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let (status, kind, body) = respond(&dir, &url, &path);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    base
}

fn respond(dir: &Path, url: &str, path: &str) -> (&'static str, &'static str, Vec<u8>) {
    if let Some(file) = path.strip_prefix("-/") {
        if let Ok(bytes) = std::fs::read(dir.join(file)) {
            return ("200 OK", "application/octet-stream", bytes);
        }
    }
    let mut versions: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_prefix(&format!("{path}-"))?.strip_suffix(".tgz").map(String::from))
        .collect();
    if path.is_empty() || path.contains('/') || versions.is_empty() {
        return ("404 Not Found", "application/json", b"{\"error\":\"Not found\"}".to_vec());
    }
    versions.sort_by_key(|v| v.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>());
    let entries: Vec<String> = versions
        .iter()
        .map(|v| {
            format!("\"{v}\": {{\"name\": \"{path}\", \"version\": \"{v}\", \"dist\": {{\"tarball\": \"{url}-/{path}-{v}.tgz\"}}}}")
        })
        .collect();
    let body = format!(
        "{{\"name\": \"{path}\", \"dist-tags\": {{\"latest\": \"{}\"}}, \"versions\": {{{}}}}}",
        versions.last().unwrap(),
        entries.join(", ")
    );
    ("200 OK", "application/json", body.into_bytes())
}

fn comment(run: &Run) -> String {
    run.json()["states"][0]["comment"].as_str().unwrap_or("").to_string()
}

fn version_in(modules: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(modules.join(name).join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(String::from)
}

#[test]
fn installs_in_a_directory_pins_upgrades_and_removes() {
    let f = Fixture::new();
    let app = f.s.path("app");
    let modules = app.join("node_modules");
    let at = |name: &str, value: &str| f.recipe(name, &format!("path: \"@/app\", name: {{{value}}}"));

    f.converge(
        &at("a.yaml", &format!("\"{FOO}\": \"1.0.0\"")),
        &f.s.path("app"),
        &[format!("create {FOO} (install 1.0.0)")],
    );
    assert_eq!(version_in(&modules, FOO).as_deref(), Some("1.0.0"));

    let latest = at("b.yaml", &format!("\"{FOO}\": latest"));
    f.converge(&latest, &app, &[format!("update {FOO} (upgrade 1.0.0 -> 1.1.0)")]);
    f.publish(FOO, "1.2.0");
    f.converge(&latest, &app, &[format!("update {FOO} (upgrade 1.1.0 -> 1.2.0)")]);
    assert_eq!(version_in(&modules, FOO).as_deref(), Some("1.2.0"));

    // A tarball next to a pinned downgrade: one `npm install`.
    let tarballs = f.s.path("tarballs");
    std::fs::create_dir_all(&tarballs).unwrap();
    let bar = f.pack(BAR, "2.0.0", &tarballs);
    let both = at("c.yaml", &format!("\"{FOO}\": \"1.0.0\", \"{BAR}\": \"{}\"", bar.display()));
    f.converge(
        &both,
        &app,
        &[
            format!("update {FOO} (downgrade 1.2.0 -> 1.0.0)"),
            format!("create {BAR} (install 2.0.0 from {})", bar.display()),
        ],
    );
    assert_eq!(version_in(&modules, BAR).as_deref(), Some("2.0.0"));

    let removed = at("d.yaml", &format!("\"{FOO}\": removed, \"{BAR}\": \"\""));
    f.converge(&removed, &app, &[format!("remove {FOO} (uninstall 1.0.0)")]);
    assert_eq!(version_in(&modules, FOO), None);
    assert_eq!(version_in(&modules, BAR).as_deref(), Some("2.0.0"));
}

#[test]
fn installs_globally_into_npms_prefix() {
    let f = Fixture::new();
    let recipe = f.recipe("g.yaml", &format!("name: {{\"{FOO}\": \"\"}}"));
    f.converge(&recipe, &f.s.path("global"), &[format!("create {FOO} (install 1.1.0)")]);
    assert_eq!(version_in(&f.s.path("global/lib/node_modules"), FOO).as_deref(), Some("1.1.0"));
}

#[test]
fn unknown_packages_versions_and_tools_fail_naming_them() {
    let f = Fixture::new();
    let cases = [
        (
            "opsagent-test-nope: \"\"",
            "package `opsagent-test-nope` is not in the npm registry (404 Not Found)".to_string(),
        ),
        (&*format!("\"{FOO}\": \"9.9.9\""), format!("package `{FOO}` has no version 9.9.9 in the npm registry")),
    ];
    for (i, (packages, expected)) in cases.iter().enumerate() {
        let recipe = f.recipe(&format!("e{i}.yaml"), &format!("path: \"@/app\", name: {{{packages}}}"));
        let run = f.apply(&recipe, &["--json", "--retries", "0"]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert_eq!(&comment(&run), expected, "{}", run.stdout);
    }
    assert!(!f.s.path("app").exists(), "nothing was installed");

    let tarballs = f.s.path("tarballs");
    std::fs::create_dir_all(&tarballs).unwrap();
    let bar = f.pack(BAR, "2.0.0", &tarballs);
    let recipe = f.recipe("t.yaml", &format!("path: \"@/app\", name: {{\"{FOO}\": \"{}\"}}", bar.display()));
    let run = f.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(
        comment(&run),
        format!("`{}` holds package `{BAR}`, not `{FOO}`; name the entry `{BAR}`", bar.display())
    );

    // No npm on PATH: the tool is named.
    let recipe = f.recipe("n.yaml", &format!("path: \"@/app\", name: {{\"{FOO}\": \"\"}}"));
    let mut cmd = Command::new(common::bin());
    cmd.arg("apply").arg(&recipe).args(["--json", "--retries", "0", "--state-dir"]).arg(f.s.path("state"));
    cmd.env("PATH", f.s.path("empty-bin"));
    let run = Run::from(cmd.output().unwrap());
    assert!(
        comment(&run).starts_with("`npm` is not installed on this machine; install the Debian package `npm`"),
        "{}",
        run.stdout
    );

    let bad = f.recipe(
        "bad.yaml",
        "path: relative, name: {\"Bad Name\": \"\", ok: \"^1.0.0\", web: \"git+https://example.com/x.git\", tar: \"/x/y.zip\"}, dir: x",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "`Bad Name` is not an npm package name",
        "`^1.0.0` is not a version, `latest`, `removed` or a `.tgz` path",
        "installing a package from git (`git+https://example.com/x.git`) is not yet supported",
        "`/x/y.zip` is not a package tarball",
        "`relative` is not an absolute path",
        "unknown parameter `dir`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn installs_a_tarball_from_an_http_url() {
    let f = Fixture::new();
    let tarballs = f.s.path("tarballs");
    std::fs::create_dir_all(&tarballs).unwrap();
    let bar = f.pack(BAR, "2.0.0", &tarballs);
    let server = http_server::Server::start(None);
    server.put(&format!("dist/{BAR}-2.0.0.tgz"), &std::fs::read(&bar).unwrap(), http_server::Send::Chunked);
    let url = server.url(&format!("dist/{BAR}-2.0.0.tgz"));
    let recipe = f.recipe("url.yaml", &format!("path: \"@/app\", name: {{\"{BAR}\": \"{url}\"}}"));
    f.converge(&recipe, &f.s.path("app"), &[format!("create {BAR} (install 2.0.0 from {url})")]);
    assert_eq!(version_in(&f.s.path("app/node_modules"), BAR).as_deref(), Some("2.0.0"));
    // Downloaded once (by --test); every later round only revalidated it.
    let statuses: Vec<u16> = server.take_hits().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [200, 304, 304]);
}

//! Remote sources over real HTTP and HTTPS on 127.0.0.1: `linux.file` `remote_uri` and
//! `common.archive` from a URL — downloaded, verified, cached and revalidated once per round,
//! directly or through a forward proxy the test runs.

mod common;
#[path = "common/http.rs"]
mod http_server;

use std::path::Path;
use std::process::Command;

use common::{Run, Scratch};
use http_server::{Send, Server};

fn apply(s: &Scratch, recipe: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = Command::new(common::bin());
    cmd.arg("apply").arg(recipe).args(extra).arg("--state-dir").arg(s.path("state")).env("NO_COLOR", "1");
    for var in ["SSL_CERT_FILE", "http_proxy", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run opsagent"))
}

fn file_recipe(s: &Scratch, url: &str, extra: &str) -> std::path::PathBuf {
    s.recipe(
        "file.yaml",
        &format!(
            "states:\n  - {{id: conf, module: linux.file, parameter: {{path: \"@/out/app.conf\", remote_uri: \"{url}\", mode: \"0640\"{extra}}}}}\n"
        ),
    )
}

fn state(run: &Run) -> serde_json::Value {
    run.json()["states"][0].clone()
}

fn changes(run: &Run) -> Vec<String> {
    state(run)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["action"].as_str().unwrap(), c["detail"].as_str().unwrap()))
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// No temporary download is left beside the cache.
fn no_partial_downloads(s: &Scratch) {
    let dir = s.path("state/downloads");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.contains(".part-")), "partial downloads left: {left:?}");
}

#[test]
fn remote_uri_converges_then_revalidates_without_downloading_again() {
    let s = Scratch::new();
    let server = Server::start(None);
    server.put("app.conf", b"port = 8080\n", Send::Length);
    let recipe = file_recipe(&s, &server.url("app.conf"), "");
    let out = s.path("out/app.conf");

    // --test predicts the file and writes nothing but the agent's cache.
    let test = apply(&s, &recipe, &["--json", "--test"], &[]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert!(!out.exists());
    let predicted = changes(&test);
    assert!(
        predicted.iter().any(|c| c.starts_with("create ") && c.contains("12 bytes from http://127.0.0.1")),
        "{predicted:?}"
    );
    assert!(state(&test)["diff"].as_str().unwrap().contains("+port = 8080"));

    let run = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), predicted);
    assert_eq!(std::fs::read(&out).unwrap(), b"port = 8080\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777, 0o640);
    // check and apply of one round shared one request; the second round asked conditionally.
    let hits = server.take_hits();
    assert_eq!(hits.iter().map(|h| h.status).collect::<Vec<_>>(), [200, 304], "{hits:?}");

    let again = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(state(&again)["status"], "ok", "{}", again.stdout);
    let hits = server.take_hits();
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].status, hits[0].if_none_match.is_some()), (304, true), "{hits:?}");

    // Drift on the machine is repaired from the cache; a change on the server is fetched.
    std::fs::write(&out, "port = 1\n").unwrap();
    let repaired = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(state(&repaired)["status"], "changed");
    assert_eq!(std::fs::read(&out).unwrap(), b"port = 8080\n");
    server.put("app.conf", b"port = 9090\n", Send::Chunked);
    let test = apply(&s, &recipe, &["--json", "--test"], &[]);
    assert!(state(&test)["diff"].as_str().unwrap().contains("+port = 9090"), "{}", test.stdout);
    let updated = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(changes(&updated), changes(&test));
    assert_eq!(std::fs::read(&out).unwrap(), b"port = 9090\n");
    no_partial_downloads(&s);
}

#[test]
fn a_checksum_pins_the_file_and_a_mismatch_writes_nothing() {
    let s = Scratch::new();
    let server = Server::start(None);
    let body = b"pinned content\n";
    server.put("pinned.txt", body, Send::Length);
    let recipe =
        file_recipe(&s, &server.url("redirect/pinned.txt"), &format!(", checksum: \"sha256:{}\"", sha256(body)));
    let run = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), body);
    assert_eq!(server.take_hits().iter().map(|h| h.status).collect::<Vec<_>>(), [302, 200]);
    // Converged and pinned: the next round asks no server at all.
    let again = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(state(&again)["status"], "ok");
    assert!(server.take_hits().is_empty());

    // The server now sends other bytes than the checksum names: the state fails, the file stays.
    server.put("other.txt", b"tampered\n", Send::Length);
    let bad = file_recipe(&s, &server.url("other.txt"), &format!(", checksum: \"sha256:{}\"", sha256(body)));
    let run = apply(&s, &bad, &["--json", "--retries", "0"], &[]);
    assert_eq!(run.code, 1);
    let comment = state(&run)["comment"].as_str().unwrap().to_string();
    assert!(comment.contains(&format!("not the sha256:{} the recipe names", sha256(body))), "{comment}");
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), body);
    no_partial_downloads(&s);
}

#[test]
fn download_failures_fail_the_state_and_keep_what_was_there() {
    let s = Scratch::new();
    let server = Server::start(None);
    server.put("big.bin", &vec![7u8; 200_000], Send::Length);
    let recipe = file_recipe(&s, &server.url("big.bin"), "");
    assert_eq!(apply(&s, &recipe, &["--json"], &[]).code, 0);

    // Cut off half-way: failed, the file and the cached copy as they were, no partial file.
    server.put("big.bin", &vec![8u8; 200_000], Send::CutOff);
    let run = apply(&s, &recipe, &["--json", "--retries", "0"], &[]);
    assert_eq!(run.code, 1);
    let comment = state(&run)["comment"].as_str().unwrap().to_string();
    assert!(comment.contains("the download ended after 100000 of 200000 bytes"), "{comment}");
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), vec![7u8; 200_000]);
    no_partial_downloads(&s);

    // A missing file names the status and the URL, with its query string hidden.
    let missing = file_recipe(&s, &server.url("nope.txt?X-Signature=secret"), "");
    let run = apply(&s, &missing, &["--json", "--retries", "0"], &[]);
    assert_eq!(run.code, 1);
    let comment = state(&run)["comment"].as_str().unwrap().to_string();
    assert!(comment.contains("the server answered 404"), "{comment}");
    assert!(comment.contains("nope.txt?…") && !run.stdout.contains("secret"), "{comment}");

    // Nothing listening.
    drop(server);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = file_recipe(&s, &format!("http://127.0.0.1:{port}/x"), "");
    let run = apply(&s, &refused, &["--json", "--retries", "0"], &[]);
    assert_eq!(run.code, 1);
    assert!(state(&run)["comment"].as_str().unwrap().contains(&format!("connecting to 127.0.0.1:{port}")));
}

#[test]
fn https_is_verified_against_the_trusted_roots() {
    let s = Scratch::new();
    let (ca, tls) = http_server::make_tls(s.dir.path());
    let server = Server::start(Some(tls));
    server.put("secure.conf", b"tls = yes\n", Send::Length);
    let recipe = file_recipe(&s, &server.url("secure.conf"), "");

    // A certificate from a CA the machine does not trust is refused.
    let run = apply(&s, &recipe, &["--json", "--retries", "0"], &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let comment = state(&run)["comment"].as_str().unwrap().to_string();
    assert!(comment.contains("TLS with 127.0.0.1") && comment.contains("certificate"), "{comment}");
    assert!(!s.path("out/app.conf").exists());

    // Trusted through SSL_CERT_FILE (as curl and OpenSSL read it): converges.
    let run = apply(&s, &recipe, &["--json"], &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), b"tls = yes\n");
    let again = apply(&s, &recipe, &["--json"], &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(state(&again)["status"], "ok");
}

#[test]
fn an_archive_from_a_url_is_extracted_then_left_alone() {
    let s = Scratch::new();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/app"), "#!/bin/sh\necho app\n").unwrap();
    std::fs::write(src.join("README"), "v1\n").unwrap();
    let tarball = s.path("app-1.0.tar.gz");
    let out = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&src).arg(".").output().unwrap();
    assert!(out.status.success());
    let bytes = std::fs::read(&tarball).unwrap();
    let server = Server::start(None);
    server.put("releases/app-1.0.tar.gz", &bytes, Send::Length);
    let recipe = s.recipe(
        "archive.yaml",
        &format!(
            "states:\n  - {{id: rel, module: common.archive, parameter: {{source: \"{}\", path: \"@/opt/app\"}}}}\n",
            server.url("releases/app-1.0.tar.gz")
        ),
    );
    let test = apply(&s, &recipe, &["--json", "--test"], &[]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert!(!s.path("opt/app").exists());
    let run = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), changes(&test));
    assert!(changes(&run)[0].contains("extract http://127.0.0.1"), "{:?}", changes(&run));
    assert_eq!(std::fs::read_to_string(s.path("opt/app/README")).unwrap(), "v1\n");
    server.take_hits();
    let again = apply(&s, &recipe, &["--json"], &[]);
    assert_eq!(state(&again)["status"], "ok");
    assert_eq!(server.take_hits().iter().map(|h| h.status).collect::<Vec<_>>(), [304]);

    // With a checksum: a converged state asks nothing; a wrong one extracts nothing.
    let pinned = s.recipe(
        "pinned.yaml",
        &format!(
            "states:\n  - {{id: rel, module: common.archive, parameter: {{source: \"{}\", path: \"@/opt/app\", checksum: \"sha256:{}\"}}}}\n",
            server.url("releases/app-1.0.tar.gz"),
            sha256(&bytes)
        ),
    );
    assert_eq!(apply(&s, &pinned, &["--json"], &[]).code, 0);
    server.take_hits();
    assert_eq!(state(&apply(&s, &pinned, &["--json"], &[]))["status"], "ok");
    assert!(server.take_hits().is_empty());
    let wrong = s.recipe(
        "wrong.yaml",
        &format!(
            "states:\n  - {{id: rel, module: common.archive, parameter: {{source: \"{}\", path: \"@/opt/other\", checksum: \"sha256:{}\"}}}}\n",
            server.url("releases/app-1.0.tar.gz"),
            "0".repeat(64)
        ),
    );
    let run = apply(&s, &wrong, &["--json", "--retries", "0"], &[]);
    assert_eq!(run.code, 1);
    assert!(state(&run)["comment"].as_str().unwrap().contains("it was not used"), "{}", run.stdout);
    assert!(!s.path("opt/other").exists());
    no_partial_downloads(&s);
}

#[test]
fn bad_remote_parameters_are_refused_by_validate() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "bad.yaml",
        "states:
  - {id: f1, module: linux.file, parameter: {path: /tmp/opsagent-test-x, remote_uri: \"ftp://h/x\"}}
  - {id: f2, module: linux.file, parameter: {path: /tmp/opsagent-test-x, remote_uri: \"https://h/x\", content: \"y\"}}
  - {id: f3, module: linux.file, parameter: {path: /tmp/opsagent-test-x, content: \"y\", checksum: \"sha256:00\"}}
  - {id: a1, module: common.archive, parameter: {source: \"https://h/download?id=3\", path: /tmp/opsagent-test-y}}
",
    );
    let run =
        Run::from(Command::new(common::bin()).arg("validate").arg(&recipe).env("NO_COLOR", "1").output().unwrap());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "state 1 `f1` (linux.file): parameter `remote_uri`: `ftp://h/x` is neither a local path nor an http(s) URL",
        "state 2 `f2` (linux.file): parameter `content`: `content` and `remote_uri` both give the file's content",
        "state 3 `f3` (linux.file): parameter `checksum`: `00` is not a sha256 checksum",
        "state 4 `a1` (common.archive): parameter `source`: cannot tell the archive format of `https://h/download?…`",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn downloads_go_through_the_proxy_the_environment_names() {
    let s = Scratch::new();
    let proxy = http_server::Proxy::start();
    let plain = Server::start(None);
    plain.put("app.conf", b"via = proxy\n", Send::Length);
    let proxy_url = std::path::PathBuf::from(proxy.url());

    // Plain HTTP: the whole URL goes to the proxy.
    let recipe = file_recipe(&s, &plain.url("app.conf"), "");
    let run = apply(&s, &recipe, &["--json"], &[("http_proxy", &proxy_url)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), b"via = proxy\n");
    let seen = proxy.take_seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, format!("GET {} HTTP/1.1", plain.url("app.conf")));

    // HTTPS: a CONNECT tunnel (TLS stays end to end, still verified), with the proxy's credentials.
    let (ca, tls) = http_server::make_tls(s.dir.path());
    let secure = Server::start(Some(tls));
    secure.put("app.conf", b"via = tunnel\n", Send::Length);
    let recipe = file_recipe(&s, &secure.url("app.conf"), "");
    let with_credentials = std::path::PathBuf::from(format!("http://ops:s3cret@127.0.0.1:{}", proxy.port));
    let env = [("SSL_CERT_FILE", ca.as_path()), ("https_proxy", with_credentials.as_path())];
    let run = apply(&s, &recipe, &["--json"], &env);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), b"via = tunnel\n");
    let seen = proxy.take_seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, format!("CONNECT 127.0.0.1:{} HTTP/1.1", secure.port));
    assert_eq!(seen[0].1.as_deref(), Some("Basic b3BzOnMzY3JldA=="));

    // no_proxy: straight to the server.
    secure.put("app.conf", b"direct\n", Send::Length);
    let no_proxy = std::path::PathBuf::from("example.com,127.0.0.1");
    let env = [("SSL_CERT_FILE", ca.as_path()), ("https_proxy", with_credentials.as_path()), ("no_proxy", &no_proxy)];
    assert_eq!(apply(&s, &recipe, &["--json"], &env).code, 0);
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), b"direct\n");
    assert!(proxy.take_seen().is_empty());

    // A proxy that refuses: one line naming the proxy and its answer; credentials never shown.
    proxy.refuse.store(true, std::sync::atomic::Ordering::Relaxed);
    secure.put("app.conf", b"refused\n", Send::Length);
    let env = [("SSL_CERT_FILE", ca.as_path()), ("https_proxy", with_credentials.as_path())];
    let run = apply(&s, &recipe, &["--json", "--retries", "0"], &env);
    assert_eq!(run.code, 1);
    let comment = state(&run)["comment"].as_str().unwrap().to_string();
    assert!(comment.contains(&format!("the proxy 127.0.0.1:{} refused the tunnel", proxy.port)), "{comment}");
    assert!(comment.contains("407"), "{comment}");
    assert!(!run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"));
    assert_eq!(std::fs::read(s.path("out/app.conf")).unwrap(), b"direct\n");
}

//! Rounds driven over the wire: a real hub, real agents, real SQLite, on loopback.

use std::time::{Duration, Instant};

use opsagent_testkit::{recipe, scratch, wait_until, Agent, Hub, FAST_AGENT};
use serde_json::Value;

fn state_status(instance: &Value, id: &str) -> String {
    instance["states"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .and_then(|s| s["status"].as_str())
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_pushed_recipe_reaches_every_agent_and_every_state_is_reported() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("shop");
    let mut agents = Vec::new();
    let mut secrets = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        let config = hub.add_instance("shop", name);
        let secret =
            config.lines().find_map(|l| l.strip_prefix("secret = ")).expect("a secret").trim_matches('"').to_string();
        secrets.push(secret);
        agents.push(Agent::start(&dir.path().join(name), &config, &format!("{FAST_AGENT}\n")));
    }
    let file = recipe(
        dir.path(),
        "r.yaml",
        r#"states:
  - {id: note, module: meta.comment, parameter: {comment: hi}}
  - {id: tree, module: linux.dir, parameter: {path: ["@/tree"]}}
  - {id: conf, module: linux.file, parameter: {path: "@/tree/app.conf", content: "x = 1\n"}}
  - {id: hello, module: linux.cmd, parameter: {cmd: "echo hello"}}
"#,
    );
    let version = hub.push("shop", &file);
    let converged = wait_until(Duration::from_secs(30), || {
        let status = hub.status("shop");
        status["instances"].as_array().is_some_and(|list| {
            list.len() == 3
                && list.iter().all(|i| {
                    i["recipe_version"] == version
                        && state_status(i, "note") == "skipped"
                        && matches!(state_status(i, "tree").as_str(), "ok" | "changed")
                        && matches!(state_status(i, "conf").as_str(), "ok" | "changed")
                        && state_status(i, "hello") == "changed"
                })
        })
    });
    assert!(converged, "status: {}\nhub log:\n{}", hub.status("shop"), hub.log_text());
    assert_eq!(std::fs::read_to_string(dir.path().join("tree/app.conf")).unwrap(), "x = 1\n");
    // The hub holds the command's output as reported.
    let logs = hub.json(&["logs", "shop", "--instance", "web-2", "--limit", "50"]);
    let text = logs.to_string();
    assert!(text.contains("hello\\n"), "{text}");
    // The instance secrets appear in no log and no report.
    for secret in &secrets {
        assert!(secret.len() >= 32);
        assert!(!hub.log_text().contains(secret.as_str()));
        assert!(!text.contains(secret.as_str()));
        for agent in &agents {
            assert!(!agent.log_text().contains(secret.as_str()), "an agent logged a secret");
        }
    }
}

#[test]
fn a_new_recipe_interrupts_the_running_state_at_once() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    let config = hub.add_instance("app", "i-1");
    let _agent = Agent::start(
        &dir.path().join("i-1"),
        &config,
        "round_interval_secs = 600\nsplay_secs = 0\nkill_grace_secs = 1",
    );
    let slow = recipe(
        dir.path(),
        "slow.yaml",
        "states:\n  - {id: long, module: linux.cmd, parameter: {cmd: \"echo $$ > @/long.pid; exec sleep 60\"}}\n",
    );
    let quick = recipe(
        dir.path(),
        "quick.yaml",
        "states:\n  - {id: mark, module: linux.file, parameter: {path: \"@/mark\", content: v2}}\n",
    );
    hub.push("app", &slow);
    assert!(wait_until(Duration::from_secs(20), || dir.path().join("long.pid").exists()));
    let pid: i32 = std::fs::read_to_string(dir.path().join("long.pid")).unwrap().trim().parse().unwrap();

    let pushed = Instant::now();
    let v2 = hub.push("app", &quick);
    let mut interrupted_after = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let logs = hub.json(&["logs", "app", "--instance", "i-1", "--limit", "100"]);
        let found = logs.to_string().contains("\"interrupted\"");
        if found && interrupted_after.is_none() {
            interrupted_after = Some(pushed.elapsed());
        }
        found
    }));
    let after = interrupted_after.unwrap();
    assert!(after < Duration::from_secs(2), "interrupted only after {after:?}");
    assert!(wait_until(Duration::from_secs(10), || dir.path().join("mark").exists()));
    assert!(
        wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{pid}")).exists()),
        "the command {pid} survived"
    );
    assert!(wait_until(Duration::from_secs(10), || hub.instance_status("app", "i-1")["round_result"] == "succeeded"));

    // The same recipe again changes nothing: same version, no new round.
    let round = hub.instance_status("app", "i-1")["round"].clone();
    assert_eq!(hub.push("app", &quick), v2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hub.instance_status("app", "i-1")["round"], round);
}

#[test]
fn waits_are_released_by_hand_and_by_other_instances() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("stack");
    let db = Agent::start(&dir.path().join("db"), &hub.add_instance("stack", "db"), FAST_AGENT);
    let web = Agent::start(&dir.path().join("web"), &hub.add_instance("stack", "web"), FAST_AGENT);
    let file = recipe(
        dir.path(),
        "r.yaml",
        r#"states:
  - {id: ready, module: linux.file, parameter: {path: "@/ready", content: "1"}}
  - {id: db-ready, module: meta.wait, parameter: {state: ["db/ready"]}}
  - {id: by-hand, module: meta.wait, parameter: {}}
  - {id: after, module: meta.comment}
"#,
    );
    hub.push("stack", &file);
    // Released automatically: db reported `ready`.
    assert!(
        wait_until(Duration::from_secs(30), || state_status(&hub.instance_status("stack", "web"), "db-ready") == "ok"),
        "{}",
        hub.status("stack")
    );
    // `by-hand` waits until an operator releases it.
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(state_status(&hub.instance_status("stack", "web"), "after"), "skipped");
    assert_eq!(hub.cli(&["done", "stack", "web", "by-hand"]).code, 0);
    assert!(wait_until(Duration::from_secs(20), || {
        let web = hub.instance_status("stack", "web");
        state_status(&web, "by-hand") == "ok" && state_status(&web, "after") == "skipped"
    }));
    // db's own `by-hand` is still waiting.
    assert_ne!(state_status(&hub.instance_status("stack", "db"), "after"), "skipped");
    drop((db, web));
}

#[test]
fn the_recipe_level_retry_count_reaches_the_agent() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    let _agent = Agent::start(&dir.path().join("a"), &hub.add_instance("app", "a"), FAST_AGENT);
    let file = recipe(
        dir.path(),
        "r.yaml",
        "retries: 0\nstates:\n  - {id: boom, module: linux.cmd, parameter: {cmd: \"exit 7\"}}\n",
    );
    hub.push("app", &file);
    assert!(wait_until(Duration::from_secs(20), || state_status(&hub.instance_status("app", "a"), "boom") == "failed"));
    let logs = hub.json(&["logs", "app", "--instance", "a", "--limit", "5"]);
    let first = logs["logs"].as_array().unwrap().iter().find(|l| l["id"] == "boom").unwrap().clone();
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["will_retry"], false, "retries: 0 means no retry: {first}");
}

/// Serves `body` at every path on 127.0.0.1 (plain HTTP/1.1, no caching headers); returns the port.
fn serve_body(body: std::sync::Arc<std::sync::Mutex<String>>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let text = body.lock().unwrap().clone();
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
        }
    });
    port
}

#[test]
fn each_round_looks_at_the_machine_and_the_sources_afresh() {
    // Round caches (downloads, users, the package refresh) must not outlive their round: a remote
    // file changed between two rounds of the daemon is fetched and written by the next one.
    let dir = scratch();
    let body = std::sync::Arc::new(std::sync::Mutex::new("v = 1\n".to_string()));
    let port = serve_body(body.clone());
    let hub = Hub::start(dir.path());
    hub.create_app("shop");
    let config = hub.add_instance("shop", "web-1");
    let _agent = Agent::start(&dir.path().join("web-1"), &config, &format!("{FAST_AGENT}\n"));
    let file = recipe(
        dir.path(),
        "r.yaml",
        &format!(
            "states:\n  - {{id: conf, module: linux.file, parameter: {{path: \"@/app.conf\", remote_uri: \"http://127.0.0.1:{port}/app.conf\"}}}}\n"
        ),
    );
    hub.push("shop", &file);
    let out = dir.path().join("app.conf");
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(30), || read() == "v = 1\n"), "{}", hub.status("shop"));
    *body.lock().unwrap() = "v = 2\n".to_string();
    assert!(wait_until(Duration::from_secs(30), || read() == "v = 2\n"), "the next rounds kept the first download");
}

/// A `CONNECT`-only forward proxy on 127.0.0.1; returns its port and the request lines it saw.
fn connect_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                log.lock().unwrap().push(line.trim().to_string());
                let mut header = String::new();
                while reader.read_line(&mut header).unwrap_or(0) > 0 && header != "\r\n" {
                    header.clear();
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let Ok(upstream) = std::net::TcpStream::connect(&target) else { return };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut reader, &mut up_write);
                    let _ = up_write.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut up_read, &mut client);
            });
        }
    });
    (port, seen)
}

#[test]
fn an_agent_reaches_its_hub_through_the_proxy_its_environment_names() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("shop");
    let config = hub.add_instance("shop", "web-1");
    let (port, seen) = connect_proxy();
    let proxy = format!("http://127.0.0.1:{port}");
    let _agent = Agent::start_with_env(
        &dir.path().join("web-1"),
        &config,
        &format!("{FAST_AGENT}\n"),
        &[("http_proxy", &proxy)],
    );
    let file = recipe(
        dir.path(),
        "r.yaml",
        "states:\n  - {id: conf, module: linux.file, parameter: {path: \"@/via-proxy\", content: \"ok\\n\"}}\n",
    );
    hub.push("shop", &file);
    let converged = wait_until(Duration::from_secs(30), || dir.path().join("via-proxy").exists());
    assert!(converged, "status: {}", hub.status("shop"));
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty() && seen.iter().all(|l| *l == format!("CONNECT {} HTTP/1.1", hub.addr)), "{seen:?}");
}

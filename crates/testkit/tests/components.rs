//! Apps as the original built them, over the wire: components and groups, links rendered per
//! instance from each agent's facts, Jinja over links, waits on other instances' states, reload
//! and its webhook. A real hub, real agents, real files, on loopback.

use std::path::Path;
use std::time::Duration;

use opsagent_testkit::{http_post, scratch, wait_until, Agent, Hub, FAST_AGENT};
use serde_json::Value;

/// Writes a recipe file; `ROOT` stands for `dir`.
fn recipe(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text.replace("ROOT", &dir.display().to_string())).unwrap();
    path
}

fn add(hub: &Hub, app: &str, instance: &str, component: &str) -> String {
    hub.json(&["instance", "add", app, instance, "--component", component])["config"].as_str().unwrap().to_string()
}

fn start(dir: &Path, name: &str, config: &str, ip: &str) -> Agent {
    Agent::start(&dir.join(name), config, &format!("{FAST_AGENT}\n[facts]\nPrivateIpAddress = \"{ip}\"\n"))
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn state_ids(instance: &Value) -> Vec<String> {
    instance["states"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str().map(String::from)).collect()
}

const SHOP: &str = r#"{"component": {
  "db": {"state": [
    {"id": "db-conf", "module": "linux.file",
     "parameter": {"path": "ROOT/db-1/db.conf", "content": "listen = @{self.PrivateIpAddress}\n"}}
  ]},
  "web": {"state": [
    {"id": "wait-db", "module": "meta.wait", "parameter": {"state": ["@{db.state.1}"]}},
    {"id": "web-conf", "module": "linux.file",
     "parameter": {"path": "ROOT/@{self.InstanceId}/web.conf",
                   "content": "db = @{db.PrivateIpAddress}\nweb = @{web.PrivateIpAddress}\n{% for ip in \"@{web.PrivateIpAddress}\".split(\",\") %}server.{{ loop.index }} = {{ ip }}\n{% endfor %}"}}
  ]}
}}"#;

#[test]
fn a_three_tier_app_renders_per_instance_and_waits_across_instances() {
    let dir = scratch();
    let root = dir.path();
    let hub = Hub::start(root);
    hub.create_app("shop");
    let db_config = add(&hub, "shop", "db-1", "db");
    let web1 = start(root, "web-1", &add(&hub, "shop", "web-1", "web"), "10.0.1.1");
    let web2 = start(root, "web-2", &add(&hub, "shop", "web-2", "web"), "10.0.1.2");
    let file = recipe(root, "shop.json", SHOP);
    hub.push("shop", &file);

    // db-1 has never connected: the web tier waits for its first state, and says so.
    let waiting = wait_until(Duration::from_secs(20), || {
        let web = hub.instance_status("shop", "web-1");
        web["waiting"].to_string().contains("waiting for db-1 state 1 (`db-conf`)")
    });
    assert!(waiting, "status: {}", hub.status("shop"));
    let web = hub.instance_status("shop", "web-1");
    assert!(web["waiting"].to_string().contains("`db-1` has never connected"), "{web}");
    assert_eq!(web["component"], "web");
    let text = hub.cli(&["status", "shop"]).stdout;
    assert!(text.contains("waiting for db-1 state 1 (`db-conf`)"), "{text}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!root.join("web-1/web.conf").exists(), "the wait did not hold");

    // db-1 comes up: its state succeeds, the web tier's wait is released and its file rendered.
    let db = start(root, "db-1", &db_config, "10.0.0.4");
    let expected = "db = 10.0.0.4\nweb = 10.0.1.1,10.0.1.2\nserver.1 = 10.0.1.1\nserver.2 = 10.0.1.2\n";
    let converged = wait_until(Duration::from_secs(30), || {
        read(root.join("web-1/web.conf")) == expected && read(root.join("web-2/web.conf")) == expected
    });
    assert!(
        converged,
        "web-1: {:?}\nstatus: {}\nhub log:\n{}",
        read(root.join("web-1/web.conf")),
        hub.status("shop"),
        hub.log_text()
    );
    assert_eq!(read(root.join("db-1/db.conf")), "listen = 10.0.0.4\n");
    // Each instance ran only its component's states.
    assert!(wait_until(Duration::from_secs(10), || !state_ids(&hub.instance_status("shop", "db-1")).is_empty()));
    assert_eq!(state_ids(&hub.instance_status("shop", "db-1")), ["db-conf"]);
    let web_states = state_ids(&hub.instance_status("shop", "web-2"));
    assert!(web_states.contains(&"web-conf".to_string()) && !web_states.contains(&"db-conf".to_string()));
    let shown = hub.json(&["recipe", "show", "shop", "--instance", "web-2"]);
    assert!(shown.to_string().contains("web = 10.0.1.1,10.0.1.2"), "{shown}");
    assert!(!shown.to_string().contains("db-conf"), "{shown}");

    // A third web instance joins: the others render again and converge on three servers.
    let db_version = hub.instance_status("shop", "db-1")["current_version"].clone();
    let web3 = start(root, "web-3", &add(&hub, "shop", "web-3", "web"), "10.0.1.3");
    let expected = "db = 10.0.0.4\nweb = 10.0.1.1,10.0.1.2,10.0.1.3\n\
                    server.1 = 10.0.1.1\nserver.2 = 10.0.1.2\nserver.3 = 10.0.1.3\n";
    let converged = wait_until(Duration::from_secs(30), || {
        ["web-1", "web-2", "web-3"].iter().all(|w| read(root.join(w).join("web.conf")) == expected)
    });
    assert!(converged, "web-1: {:?}\nstatus: {}", read(root.join("web-1/web.conf")), hub.status("shop"));
    // db's recipe renders the same: it was not sent a new one.
    let db_status = hub.instance_status("shop", "db-1");
    assert_eq!(db_status["current_version"], db_version, "{db_status}");
    drop((web1, web2, web3, db));
}

#[test]
fn a_push_is_refused_for_an_unknown_link_name_and_a_jinja_error() {
    let dir = scratch();
    let root = dir.path();
    let hub = Hub::start(root);
    hub.create_app("shop");
    add(&hub, "shop", "db-1", "db");
    let bad_name = recipe(
        root,
        "bad-name.yaml",
        "states:\n  - {id: conf, module: linux.file, parameter: {path: ROOT/x, content: \"@{dbb.PrivateIpAddress}\"}}\n",
    );
    let run = hub.cli(&["recipe", "push", "shop", bad_name.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("state `conf`") && run.stderr.contains("parameter `content`"), "{}", run.stderr);
    assert!(run.stderr.contains("`dbb`") && run.stderr.contains("did you mean `db"), "{}", run.stderr);

    let bad_jinja = recipe(
        root,
        "bad-jinja.yaml",
        "states:\n  - {id: conf, module: linux.file, parameter: {path: ROOT/x, content: \"{% for %}\"}}\n",
    );
    let run = hub.cli(&["recipe", "push", "shop", bad_jinja.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("Jinja") && run.stderr.contains("parameter `content`"), "{}", run.stderr);
    assert!(run.stderr.contains("`conf`"), "{}", run.stderr);
}

#[test]
fn an_unresolvable_link_holds_the_round_until_an_attribute_resolves_it() {
    let dir = scratch();
    let root = dir.path();
    let hub = Hub::start(root);
    hub.create_app("app");
    let _agent = start(root, "i-1", &add(&hub, "app", "i-1", "solo"), "10.0.0.9");
    let file = recipe(
        root,
        "r.yaml",
        "states:\n  - {id: before, module: linux.file, parameter: {path: ROOT/before, content: x}}\n  \
         - {id: needs-elb, module: linux.file, parameter: {path: ROOT/elb, content: \"@{solo.ElbDns} @{self.PrivateIpAddress}\"}}\n  \
         - {id: after, module: linux.file, parameter: {path: ROOT/after, content: y}}\n",
    );
    let run = hub.cli(&["recipe", "push", "app", file.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("ElbDns"), "a warning names the attribute nobody reports: {}", run.stderr);
    let held = wait_until(Duration::from_secs(20), || {
        let i = hub.instance_status("app", "i-1");
        i["states"].as_array().into_iter().flatten().any(|s| {
            s["id"] == "needs-elb"
                && s["status"] == "waiting"
                && s["comment"].as_str().unwrap_or("").contains("no attribute `ElbDns`")
        })
    });
    assert!(held, "status: {}", hub.status("app"));
    assert!(root.join("before").exists());
    std::thread::sleep(Duration::from_secs(1));
    assert!(!root.join("after").exists(), "the round went past a held state");

    hub.json(&["component", "set", "app", "solo", "--attr", "ElbDns=elb.example.com"]);
    assert!(wait_until(Duration::from_secs(20), || read(root.join("elb")) == "elb.example.com 10.0.0.9"));
    assert!(wait_until(Duration::from_secs(10), || root.join("after").exists()));
}

fn lines(path: &Path) -> usize {
    read(path).lines().count()
}

#[test]
fn reload_runs_a_round_now_and_the_webhook_needs_its_signature() {
    let dir = scratch();
    let root = dir.path();
    let hub = Hub::start(root);
    hub.create_app("app");
    let config = add(&hub, "app", "i-1", "i-1");
    let _agent =
        Agent::start(&root.join("i-1"), &config, "round_interval_secs = 600\nsplay_secs = 0\nkill_grace_secs = 1");
    let runs = root.join("runs");
    let file = recipe(
        root,
        "r.yaml",
        "states:\n  - {id: count, module: linux.cmd, parameter: {cmd: \"echo run >> ROOT/runs\"}}\n",
    );
    hub.push("app", &file);
    assert!(wait_until(Duration::from_secs(20), || lines(&runs) == 1));
    assert!(wait_until(Duration::from_secs(10), || hub.instance_status("app", "i-1")["round_result"] == "succeeded"));

    // An idle agent runs at once.
    let answer = hub.json(&["reload", "app"]);
    assert_eq!(answer["reloaded"], serde_json::json!(["i-1"]), "{answer}");
    assert!(wait_until(Duration::from_secs(5), || lines(&runs) == 2), "no round after reload");

    // A running round is preempted and starts again.
    let slow = recipe(
        root,
        "slow.yaml",
        "states:\n  - {id: slow, module: linux.cmd, parameter: {cmd: \"echo start >> ROOT/starts; exec sleep 60\"}}\n",
    );
    hub.push("app", &slow);
    let starts = root.join("starts");
    assert!(wait_until(Duration::from_secs(20), || lines(&starts) == 1));
    hub.json(&["reload", "app", "i-1"]);
    assert!(wait_until(Duration::from_secs(5), || lines(&starts) == 2), "the running round was not preempted");
    let logs = hub.json(&["logs", "app", "--instance", "i-1", "--limit", "100"]).to_string();
    assert!(logs.contains("\"interrupted\""), "{logs}");
    hub.push("app", &file);
    assert!(wait_until(Duration::from_secs(20), || lines(&runs) == 3));
    assert!(wait_until(Duration::from_secs(10), || hub.instance_status("app", "i-1")["round_result"] == "succeeded"));

    // The webhook: a GitHub-style signature with the app's secret, nothing else.
    let secret = hub.json(&["app", "webhook", "app"])["secret"].as_str().unwrap().to_string();
    let body = br#"{"ref": "refs/heads/main", "after": "0123abc"}"#;
    let path = "/api/v1/apps/app/reload";
    let (code, text) = http_post(&hub, path, &[("X-Hub-Signature-256", &sign("wrong", body))], body);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("signature"), "{text}");
    let (code, _) = http_post(&hub, path, &[], body);
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&runs), 3, "a refused webhook ran a round");
    let (code, text) = http_post(&hub, path, &[("X-Hub-Signature-256", &sign(&secret, body))], body);
    assert_eq!(code, 200, "{text}");
    assert!(wait_until(Duration::from_secs(5), || lines(&runs) == 4), "no round after the webhook");
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A metadata service on loopback that speaks IMDSv2 only: a token first, then the address.
fn fake_imds() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let first = head.first().cloned().unwrap_or_default();
            let has = |h: &str| head.iter().any(|l| l.to_ascii_lowercase().starts_with(h));
            let (status, body) =
                if first.starts_with("PUT /latest/api/token") && has("x-aws-ec2-metadata-token-ttl-seconds:") {
                    ("200 OK", "opsagent-test-token")
                } else if first.starts_with("GET /latest/meta-data/public-ipv4")
                    && head.iter().any(|l| l == "X-aws-ec2-metadata-token: opsagent-test-token")
                {
                    ("200 OK", "203.0.113.7")
                } else {
                    ("401 Unauthorized", "")
                };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn agents_report_their_facts_and_the_ec2_public_ip_through_imdsv2() {
    let dir = scratch();
    let root = dir.path();
    let hub = Hub::start(root);
    hub.create_app("app");
    let port = fake_imds();
    let config = add(&hub, "app", "i-1", "i-1");
    let _agent = Agent::start(
        &root.join("i-1"),
        &config,
        &format!("{FAST_AGENT}\nimds_url = \"http://127.0.0.1:{port}\"\n[facts]\nRack = \"r12\"\n"),
    );
    let file = recipe(
        root,
        "r.yaml",
        "states:\n  - {id: f, module: linux.file, parameter: {path: ROOT/facts, content: \"@{self.PublicIp} @{self.Rack} @{self.Hostname}\"}}\n",
    );
    hub.push("app", &file);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let expected = format!("203.0.113.7 r12 {hostname}");
    assert!(
        wait_until(Duration::from_secs(20), || read(root.join("facts")) == expected),
        "{:?}",
        read(root.join("facts"))
    );
    let list = hub.json(&["instance", "list", "app"]);
    let facts = &list["instances"][0]["facts"];
    assert_eq!(facts["PublicIp"], serde_json::json!(["203.0.113.7"]), "{list}");
    assert_eq!(facts["Rack"], serde_json::json!(["r12"]), "{list}");
}

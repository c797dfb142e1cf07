//! The agent over TLS: it connects to a hub whose certificate chains to its configured CA and
//! refuses one that does not verify. And a hostile hub's garbage cannot crash it.

use std::time::Duration;

use opsagent_testkit::{recipe, scratch, wait_until, Agent, Hub};

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn make_pki(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("opsagent-test {name} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (ca_path, cert_path, key_path) =
        (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}-cert.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

#[test]
fn agent_trusts_only_a_verified_hub() {
    let dir = scratch();
    let (ca, cert, key) = make_pki(dir.path(), "good");
    let (other_ca, _, _) = make_pki(dir.path(), "other");
    let hub = Hub::start_tls(dir.path(), &cert, &key, &ca);
    hub.create_app("app");
    let file = recipe(
        dir.path(),
        "r.yaml",
        "states:\n  - {id: f, module: linux.file, parameter: {path: \"@/tls-ok\", content: x}}\n",
    );
    hub.push("app", &file);

    let trusted = Agent::start(
        &dir.path().join("trusted"),
        &hub.add_instance("app", "trusted"),
        &format!("ca_file = \"{}\"\nsplay_secs = 0", ca.display()),
    );
    let untrusted = Agent::start(
        &dir.path().join("untrusted"),
        &hub.add_instance("app", "untrusted"),
        &format!("ca_file = \"{}\"\nsplay_secs = 0\nreconnect_max_secs = 1", other_ca.display()),
    );
    assert!(wait_until(Duration::from_secs(30), || dir.path().join("tls-ok").exists()), "{}", trusted.log_text());
    assert!(wait_until(Duration::from_secs(30), || hub.instance_status("app", "trusted")["connected"] == true));
    assert!(wait_until(Duration::from_secs(10), || untrusted.log_text().contains("connection to the hub ended")));
    let log = untrusted.log_text();
    assert!(log.to_lowercase().contains("certificate"), "the refusal names the certificate: {log}");
    assert!(!log.contains("connected to the hub"), "{log}");
    assert_ne!(hub.instance_status("app", "untrusted")["connected"], true);
}

#[test]
fn garbage_from_a_hostile_hub_does_not_crash_the_agent() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = scratch();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = format!("hub_url = \"ws://{addr}/agent/\"\napp_id = \"a\"\ninstance_id = \"i\"\nsecret = \"s\"\nsplay_secs = 0\nreconnect_max_secs = 1");
    let agent = Agent::start(&dir.path().join("agent"), &config, "");
    let served = runtime.block_on(async {
        let frames: Vec<Message> = vec![
            Message::text("not json at all"),
            Message::text(r#"{"code":"Hello","nonce":"n","protocol_version":2,"hub_version":"x"}"#),
            Message::text(r#"{"code":"Welcome","instance_id":"i","last_seq":0}"#),
            Message::text(r#"{"code":"NoSuchThing"}"#),
            Message::text(r#"{"code":"RecipeMetadata","recipe_version":"seven"}"#),
            Message::text(r#"{"code":"RecipeMetadata","recipe_version":5,"state":[{"id":"x","module":"linux.nope","parameter":{}}]}"#),
            Message::text(r#"{"code":"Ack","seq":18446744073709551615}"#),
            Message::binary(vec![0u8; 1024]),
            Message::text("x".repeat(opsagent_proto_max() + 10)),
        ];
        let mut served = 0;
        for _ in 0..3 {
            let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await else { break };
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { continue };
            for frame in frames.clone() {
                if ws.send(frame).await.is_err() {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
            served += 1;
        }
        served
    });
    assert!(served >= 2, "the agent kept reconnecting after garbage ({served} connections)");
    std::thread::sleep(Duration::from_millis(200));
    let pid = agent.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the agent died: {}", agent.log_text());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(!status.contains("State:\tZ"), "the agent died: {}", agent.log_text());
}

fn opsagent_proto_max() -> usize {
    16 << 20
}

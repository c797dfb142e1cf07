//! Bad frames — garbage, non-JSON, unknown codes, malformed fields, binary, oversized — get an
//! `Error` (or a close) and never disturb the hub or its other agents.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{instance, start, state_log, Agent};

fn bad_frames() -> Vec<String> {
    vec![
        "garbage".to_string(),
        "{\"code\": ".to_string(),
        "[1, 2, 3]".to_string(),
        "{\"no_code\": 1}".to_string(),
        "{\"code\": 42}".to_string(),
        json!({ "code": "Explode" }).to_string(),
        json!({ "code": "Hello", "nonce": "x", "protocol_version": 2, "hub_version": "1" }).to_string(),
        json!({ "code": "StateLog", "seq": "one" }).to_string(),
        json!({ "code": "RoundEnd", "seq": -1 }).to_string(),
        "\u{0}\u{1}\u{2}".to_string(),
    ]
}

#[tokio::test]
async fn bad_frames_before_the_handshake_get_an_error_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    for frame in bad_frames() {
        let mut agent = Agent::connect(&hub).await;
        agent.send_text(frame.clone()).await;
        let frames = agent.read_until_closed().await;
        assert_eq!(frames.len(), 1, "{frame}: {frames:?}");
        assert_eq!(frames[0]["code"], "Error", "{frame}");
    }
    // The hub still serves.
    let (_, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    assert_eq!(welcome["code"], "Welcome");
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_frames_after_the_handshake_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    let other_secret = instance(&hub, "demo", "web-2").await;
    let (mut bystander, _) = Agent::authenticated(&hub, "demo", "web-2", &other_secret, None).await;
    let mut frames = bad_frames();
    frames.push(
        json!({ "code": "Handshake", "app_id": "demo", "instance_id": "web-1",
        "agent_version": "x", "protocol_version": 2 })
        .to_string(),
    );
    frames.push(state_log(0, 1, "a", "meta.comment", "ok").to_string());
    frames.push(state_log(u64::MAX, 1, "a", "meta.comment", "ok").to_string());
    for (n, frame) in frames.into_iter().enumerate() {
        let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
        agent.send_text(frame.clone()).await;
        let answer = agent.read_until_closed().await;
        assert_eq!(answer.len(), 1, "{frame}: {answer:?}");
        assert_eq!(answer[0]["code"], "Error", "{frame}");
        let ack = bystander.report(state_log(n as u64 + 1, 1, "a", "meta.comment", "ok")).await;
        assert_eq!(ack["code"], "Ack");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn binary_and_oversized_frames_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;

    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    agent.socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let answer = agent.read_until_closed().await;
    assert_eq!(answer[0]["code"], "Error", "{answer:?}");

    // Over the 1 MiB limit, inside a valid-looking StateLog: refused, never stored.
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    let mut log = state_log(1, 1, "big", "linux.cmd", "ok");
    log["stdout"] = json!("x".repeat(opsagent_proto::MAX_AGENT_FRAME + 10));
    // The hub may close before the whole frame is written.
    let _ = agent.socket.send(Message::Text(log.to_string().into())).await;
    let answer = agent.read_until_closed().await;
    assert!(answer.iter().all(|f| f["code"] == "Error"), "{answer:?}");

    // Before the handshake too.
    let mut agent = Agent::connect(&hub).await;
    let _ = agent.socket.send(Message::Text("y".repeat(2 * opsagent_proto::MAX_AGENT_FRAME).into())).await;
    let answer = agent.read_until_closed().await;
    assert!(answer.iter().all(|f| f["code"] == "Error"), "{answer:?}");

    let (mut agent, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    assert_eq!(welcome["last_seq"], 0);
    // Large but under the limit: stored and acknowledged.
    let mut log = state_log(1, 1, "big", "linux.cmd", "ok");
    log["stdout"] = json!("z".repeat(opsagent_proto::MAX_AGENT_FRAME - 4096));
    assert_eq!(agent.report(log).await, json!({ "code": "Ack", "seq": 1 }));
    drop(agent);
    let (mut agent, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    assert_eq!(welcome["last_seq"], 1);
    assert_eq!(agent.report(state_log(2, 1, "a", "meta.comment", "ok")).await["code"], "Ack");
    hub.shutdown().await;
}

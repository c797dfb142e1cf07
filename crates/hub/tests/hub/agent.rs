//! The agent endpoint: handshake, refusals, identity, deduplication, recipe pushes.

use serde_json::json;

use crate::common::{api, instance, push, simple_states, start, state_log, wait_until, Agent, Read};

#[tokio::test]
async fn handshake_is_welcomed_with_last_seq_and_the_current_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    let (mut agent, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    assert_eq!(welcome["instance_id"], "web-1");
    assert_eq!(welcome["last_seq"], 0);
    // No recipe yet: the next frame is the ack of a report.
    let ack = agent.report(state_log(1, 1, "intro", "meta.comment", "skipped")).await;
    assert_eq!(ack, json!({ "code": "Ack", "seq": 1 }));

    let (status, body) = push(&hub, "demo", simple_states()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["recipe_version"], 1);
    assert_eq!(body["sent_to"], 1);
    let recipe = agent.recv().await;
    assert_eq!(recipe["code"], "RecipeMetadata");
    assert_eq!(recipe["recipe_version"], 1);
    assert_eq!(recipe["state"], simple_states());

    // A new connection with the agent's version up to date gets no recipe; an old one does.
    drop(agent);
    let (mut agent, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    assert_eq!(welcome["last_seq"], 1);
    let ack = agent.report(state_log(2, 1, "dir", "linux.dir", "ok")).await;
    assert_eq!(ack["code"], "Ack", "{ack}");
    drop(agent);
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(7)).await;
    assert_eq!(agent.recv().await["recipe_version"], 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_hmac_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    let mut agent = Agent::connect(&hub).await;
    agent.handshake("demo", "web-1", "not-the-secret", None).await;
    let frames = agent.read_until_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "Error");
    assert!(frames[0]["message"].as_str().unwrap().contains("hmac"));
    assert!(!frames[0].to_string().contains(&secret));

    let mut agent = Agent::connect(&hub).await;
    agent
        .send(json!({ "code": "Handshake", "app_id": "demo", "instance_id": "web-1",
            "agent_version": "x", "protocol_version": 2 }))
        .await;
    let frames = agent.read_until_closed().await;
    assert_eq!(frames[0]["code"], "Error", "{frames:?}");

    // An HMAC over another nonce (a replay) is refused too.
    let mut agent = Agent::connect(&hub).await;
    let old = opsagent_proto::handshake_hmac(&secret, &"0".repeat(64), "demo", "web-1");
    agent
        .send(json!({ "code": "Handshake", "app_id": "demo", "instance_id": "web-1",
            "agent_version": "x", "protocol_version": 2, "hmac": old }))
        .await;
    assert_eq!(agent.read_until_closed().await[0]["code"], "Error");
    hub.shutdown().await;
}

#[tokio::test]
async fn unknown_app_or_instance_gets_app_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    for (app, id) in [("nope", "web-1"), ("demo", "web-9")] {
        let mut agent = Agent::connect(&hub).await;
        agent.handshake(app, id, &secret, None).await;
        let frames = agent.read_until_closed().await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["code"], "AppNotReady");
        assert!(frames[0]["reason"].as_str().unwrap().contains("not registered"));
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn identity_comes_from_the_handshake_only() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret_a = instance(&hub, "app-a", "a-1").await;
    let _secret_b = instance(&hub, "app-b", "b-1").await;
    let b_states = json!([{ "id": "secret-b", "module": "meta.comment", "parameter": { "comment": "b only" } }]);
    assert_eq!(push(&hub, "app-b", b_states).await.0, 201);

    // a-1 cannot pose as b-1 with its own secret.
    let mut agent = Agent::connect(&hub).await;
    agent.handshake("app-b", "b-1", &secret_a, None).await;
    assert_eq!(agent.read_until_closed().await[0]["code"], "Error");

    // a-1 reports with app-b / b-1 in the frame: it is stored as a-1 of app-a.
    let (mut agent, _) = Agent::authenticated(&hub, "app-a", "a-1", &secret_a, None).await;
    let mut log = state_log(1, 1, "secret-b", "meta.comment", "ok");
    log["app_id"] = json!("app-b");
    log["instance_id"] = json!("b-1");
    let ack = agent.report(log).await;
    assert_eq!(ack["code"], "Ack", "app-a has no recipe: no RecipeMetadata of app-b may come");

    let (_, status_b) = api(&hub, "GET", "/apps/app-b/status", None).await;
    assert_eq!(status_b["instances"][0]["states"], json!([]));
    assert_eq!(status_b["instances"][0]["last_seq"], 0);
    let (_, status_a) = api(&hub, "GET", "/apps/app-a/status", None).await;
    assert_eq!(status_a["instances"][0]["states"][0]["id"], "secret-b");
    let (_, logs) = api(&hub, "GET", "/apps/app-a/logs", None).await;
    assert_eq!(logs["logs"][0]["app_id"], "app-a");
    assert_eq!(logs["logs"][0]["instance_id"], "a-1");

    // A push to app-b never reaches a-1.
    let (status, _) = push(&hub, "app-b", json!([])).await;
    assert_eq!(status, 201);
    let ack = agent.report(state_log(2, 1, "x", "meta.comment", "ok")).await;
    assert_eq!(ack, json!({ "code": "Ack", "seq": 2 }));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_report_is_stored_once_per_seq_and_acked_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    assert_eq!(push(&hub, "demo", simple_states()).await.0, 201);
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    let log = state_log(1, 1, "dir", "linux.dir", "changed");
    assert_eq!(agent.report(log.clone()).await, json!({ "code": "Ack", "seq": 1 }));
    assert_eq!(agent.report(log).await, json!({ "code": "Ack", "seq": 1 }));
    // A duplicate with other content is still a duplicate: the first one stays.
    let later = state_log(1, 1, "dir", "linux.dir", "failed");
    assert_eq!(agent.report(later).await, json!({ "code": "Ack", "seq": 1 }));
    agent
        .send(json!({ "code": "RoundStart", "seq": 2, "recipe_version": 1, "round": 4,
            "started_at": "2026-01-01T00:00:00Z" }))
        .await;
    assert_eq!(agent.recv().await, json!({ "code": "Ack", "seq": 2 }));
    agent
        .send(json!({ "code": "RoundEnd", "seq": 3, "recipe_version": 1, "round": 4,
            "result": "succeeded", "duration_ms": 12 }))
        .await;
    assert_eq!(agent.recv().await, json!({ "code": "Ack", "seq": 3 }));

    let (_, seqs) = api(&hub, "GET", "/apps/demo/instances/web-1/seqs", None).await;
    assert_eq!(seqs["seqs"], json!([1, 2, 3]));
    let (_, logs) = api(&hub, "GET", "/apps/demo/logs?instance=web-1", None).await;
    assert_eq!(logs["logs"].as_array().unwrap().len(), 1);
    assert_eq!(logs["logs"][0]["status"], "changed");
    assert!(logs["logs"][0]["received_at"].is_string());
    let (_, status) = api(&hub, "GET", "/apps/demo/status", None).await;
    let web = &status["instances"][0];
    assert_eq!(web["connected"], true);
    assert_eq!(web["last_seq"], 3);
    assert_eq!(web["round"], 4);
    assert_eq!(web["round_result"], "succeeded");
    assert_eq!(web["recipe_version"], 1);
    assert_eq!(web["states"][0]["status"], "changed");

    // Replays after a reconnect are acked again, not stored again.
    drop(agent);
    let (mut agent, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    assert_eq!(welcome["last_seq"], 3);
    let replay = state_log(1, 1, "dir", "linux.dir", "changed");
    assert_eq!(agent.report(replay).await, json!({ "code": "Ack", "seq": 1 }));
    let (_, seqs) = api(&hub, "GET", "/apps/demo/instances/web-1/seqs", None).await;
    assert_eq!(seqs["seqs"], json!([1, 2, 3]));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_pushed_recipe_reaches_every_connected_agent_of_the_app_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let s1 = instance(&hub, "demo", "web-1").await;
    let s2 = instance(&hub, "demo", "web-2").await;
    let s3 = instance(&hub, "other", "x-1").await;
    let (mut a1, _) = Agent::authenticated(&hub, "demo", "web-1", &s1, None).await;
    let (mut a2, _) = Agent::authenticated(&hub, "demo", "web-2", &s2, None).await;
    let (mut a3, _) = Agent::authenticated(&hub, "other", "x-1", &s3, None).await;
    let (status, body) = push(&hub, "demo", simple_states()).await;
    assert_eq!((status, body["sent_to"].clone()), (201, json!(2)));
    for agent in [&mut a1, &mut a2] {
        let recipe = agent.recv().await;
        assert_eq!((recipe["code"].as_str(), recipe["recipe_version"].as_u64()), (Some("RecipeMetadata"), Some(1)));
    }
    // The same body again: 200, same version, nothing sent.
    let (status, body) = push(&hub, "demo", simple_states()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recipe_version"], 1);
    assert_eq!(body["unchanged"], true);
    // A `recipe_version` in the body is ignored.
    let mut next = simple_states();
    next[0]["parameter"]["comment"] = json!("changed");
    let (status, body) =
        crate::common::api(&hub, "POST", "/apps/demo/recipes", Some(json!({ "recipe_version": 99, "state": next })))
            .await;
    assert_eq!((status, body["recipe_version"].clone()), (201, json!(2)));
    for agent in [&mut a1, &mut a2] {
        let recipe = agent.recv().await;
        assert_eq!((recipe["code"].as_str(), recipe["recipe_version"].as_u64()), (Some("RecipeMetadata"), Some(2)));
    }
    let ack = a3.report(state_log(1, 1, "intro", "meta.comment", "skipped")).await;
    assert_eq!(ack["code"], "Ack", "another app's push never reaches it: {ack}");
    let (_, shown) = api(&hub, "GET", "/apps/demo/recipe", None).await;
    assert_eq!(shown["recipe_version"], 2);
    assert_eq!(shown["state"], next);
    hub.shutdown().await;
}

#[tokio::test]
async fn pushed_recipes_arrive_in_order_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    let s3 = instance(&hub, "other", "x-1").await;
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    let (mut stranger, _) = Agent::authenticated(&hub, "other", "x-1", &s3, None).await;
    assert_eq!(push(&hub, "demo", simple_states()).await.0, 201);
    assert_eq!(push(&hub, "demo", simple_states()).await.0, 200);
    let mut next = simple_states();
    next[0]["parameter"]["comment"] = json!("v2");
    assert_eq!(push(&hub, "demo", next).await.0, 201);
    let first = agent.recv().await;
    let second = agent.recv().await;
    assert_eq!(first["recipe_version"], 1);
    assert_eq!(second["recipe_version"], 2);
    let ack = agent.report(state_log(1, 2, "intro", "meta.comment", "skipped")).await;
    assert_eq!(ack["code"], "Ack", "no third recipe frame: {ack}");
    let ack = stranger.report(state_log(1, 1, "intro", "meta.comment", "skipped")).await;
    assert_eq!(ack["code"], "Ack", "another app's push never reaches it: {ack}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_new_connection_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    let (mut old, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    let (mut new, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    assert!(matches!(old.read().await, Read::Closed));
    assert_eq!(push(&hub, "demo", simple_states()).await.1["sent_to"], 1);
    assert_eq!(new.recv().await["code"], "RecipeMetadata");
    wait_until("one agent is connected", || async { hub.connected_agents() == 1 }).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(dir.path());
    config.idle_timeout = std::time::Duration::from_millis(500);
    config.handshake_timeout = std::time::Duration::from_millis(500);
    let hub = opsagent_hub::serve(config).await.unwrap();
    let secret = instance(&hub, "demo", "web-1").await;
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    assert!(matches!(agent.read().await, Read::Closed));
    // No handshake in time: an Error, then the close.
    let mut agent = Agent::connect(&hub).await;
    let frames = agent.read_until_closed().await;
    assert_eq!(frames[0]["code"], "Error", "{frames:?}");
    wait_until("no agent is connected", || async { hub.connected_agents() == 0 }).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn pings_are_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    agent.socket.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + crate::common::PATIENCE;
    loop {
        let frame = tokio::time::timeout_at(deadline, agent.socket.next()).await.unwrap();
        if let Some(Ok(Message::Pong(payload))) = frame {
            assert_eq!(&payload[..], b"are you there");
            break;
        }
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_until_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(dir.path());
    config.max_connections = 1;
    let hub = opsagent_hub::serve(config).await.unwrap();
    let secret = instance(&hub, "demo", "web-1").await;
    let (agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;
    let refused = tokio_tungstenite::connect_async(hub.agent_url()).await;
    assert!(refused.is_err(), "a second connection must be refused");
    drop(agent);
    wait_until("the slot is free again", || async { tokio_tungstenite::connect_async(hub.agent_url()).await.is_ok() })
        .await;
    hub.shutdown().await;
}

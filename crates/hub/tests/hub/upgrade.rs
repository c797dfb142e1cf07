//! Upgrade orders through their one path, `releases::order_upgrade`: the API and the dashboard's
//! form refuse the same mistakes (a malformed version, a version with no release, a downgrade
//! without the flag) with the same words, and an accepted order reaches the connected agent. An
//! agent's `UpgradeStatus` is an `upgrade` notice on `/events` and shows on the releases page.

use opsagent_hub::releases;
use serde_json::{json, Value};

use crate::common::{self, Agent};
use crate::dashboard::{no_redirects, sign_in};

/// A real agent would run 0.2.0: orders for 0.1.0 are downgrades.
const RUNNING: &str = "0.2.0";

async fn agent_on(hub: &opsagent_hub::Hub, app: &str, instance: &str, secret: &str, version: &str) -> Agent {
    let mut agent = Agent::connect(hub).await;
    let hmac = opsagent_proto::handshake_hmac(secret, &agent.nonce, app, instance);
    agent
        .send(json!({
            "code": "Handshake", "app_id": app, "instance_id": instance, "agent_version": version,
            "protocol_version": 2, "hmac": hmac,
        }))
        .await;
    let welcome = agent.recv().await;
    assert_eq!(welcome["code"], "Welcome", "{welcome}");
    agent
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("a CSRF token").to_string()
}

#[tokio::test]
async fn the_api_and_the_dashboard_refuse_the_same_orders_and_send_the_accepted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let hub = common::start(dir.path()).await;
    let secret = common::instance(&hub, "demo", "web-1").await;
    let keys = dir.path().join("keys");
    releases::keygen(&keys).unwrap();
    let key = releases::read_signing_key(&keys.join(releases::PRIVATE_KEY_FILE)).unwrap();
    let binary = dir.path().join("agent-binary");
    std::fs::write(&binary, b"#!/bin/sh\nexit 0\n").unwrap();
    for version in ["0.1.0", "0.3.0"] {
        releases::add(dir.path(), version, &binary, &key).unwrap();
    }
    let mut agent = agent_on(&hub, "demo", "web-1", &secret, RUNNING).await;
    let upgrade = |body: Value| common::api(&hub, "POST", "/apps/demo/upgrade", Some(body));

    // The API's refusals.
    let (status, body) = upgrade(json!({ "version": "../x" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not a valid version"), "{body}");
    let (status, body) = upgrade(json!({ "version": "9.9.9" })).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "there is no release 9.9.9 on this hub");
    assert!(body["hint"].as_str().unwrap().contains("release add"), "{body}");
    let (status, body) = upgrade(json!({ "version": "0.1.0" })).await;
    assert_eq!(status, 409, "{body}");
    let downgrade = body["error"].as_str().unwrap().to_string();
    assert!(downgrade.contains("0.1.0 is older") && downgrade.contains("`web-1` runs 0.2.0"), "{body}");
    assert!(body["hint"].as_str().unwrap().contains("--allow-downgrade"), "{body}");

    // The dashboard's: the same words on the page, above the form; nothing ordered.
    let client = no_redirects().build().unwrap();
    let url = hub.url();
    let (cookie, _) = sign_in(&client, &url).await;
    let page = client.get(format!("{url}/apps/demo/releases")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("data-release=\"0.3.0\"") && page.contains("data-release=\"0.1.0\""), "{page}");
    assert!(page.contains("data-agent-version=\"0.2.0\""), "{page}");
    let csrf = csrf_of(&page);
    let order = |form: String| {
        client
            .post(format!("{url}/apps/demo/releases"))
            .header("cookie", &cookie)
            .header("origin", &url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let refused = order(format!("csrf={csrf}&version=0.1.0")).await.unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let text = refused.text().await.unwrap();
    assert!(text.contains("data-marker=\"order-error\""), "{text}");
    assert!(text.contains(&downgrade), "the API's words: {downgrade}\n{text}");
    assert!(text.contains("to order it anyway"), "{text}");
    let refused = order(format!("csrf={csrf}&version=9.9.9")).await.unwrap();
    assert_eq!(refused.status().as_u16(), 404);
    assert!(refused.text().await.unwrap().contains("there is no release 9.9.9 on this hub"));
    let refused = order("csrf=wrong&version=0.3.0".to_string()).await.unwrap();
    assert_eq!(refused.status().as_u16(), 403, "a form without its session's CSRF token");
    let (_, status) = common::api(&hub, "GET", "/apps/demo/status", None).await;
    assert!(status["target_version"].is_null(), "nothing was ordered: {status}");

    // An upgrade through the API reaches the agent.
    let (status, body) = upgrade(json!({ "version": "0.3.0" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sent_to"], 1);
    let update = agent.recv().await;
    assert_eq!((update["code"].as_str(), update["version"].as_str()), (Some("AgentUpdate"), Some("0.3.0")), "{update}");
    assert_ne!(update["allow_downgrade"], true, "{update}");

    // A downgrade with the box ticked, from the dashboard, too.
    let mut events = client.get(format!("{url}/events?app=demo")).header("cookie", &cookie).send().await.unwrap();
    let ordered = order(format!("csrf={csrf}&version=0.1.0&allow_downgrade=on")).await.unwrap();
    assert_eq!(ordered.status().as_u16(), 303);
    assert_eq!(ordered.headers()["location"], "/apps/demo/releases?ordered=0.1.0&sent_to=1");
    let update = agent.recv().await;
    assert_eq!((update["code"].as_str(), update["version"].as_str()), (Some("AgentUpdate"), Some("0.1.0")), "{update}");
    assert_eq!(update["allow_downgrade"], true);
    let (_, status) = common::api(&hub, "GET", "/apps/demo/status", None).await;
    assert_eq!(status["target_version"], "0.1.0");

    // The agent's report: an `upgrade` notice, and the phase with its reason on the page.
    agent
        .send(json!({
            "code": "UpgradeStatus", "seq": 1, "version": "0.1.0", "from": RUNNING, "phase": "rolled_back",
            "reason": "0.1.0 did not reach the hub within 4 s",
        }))
        .await;
    assert_eq!(agent.recv().await["code"], "Ack");
    let mut seen = String::new();
    let notice_of_web1 = |seen: &str| {
        seen.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .any(|n| n["kind"] == "upgrade" && n["instance"] == "web-1")
    };
    while !notice_of_web1(&seen) {
        let chunk = tokio::time::timeout(common::PATIENCE, events.chunk()).await.expect("a notice in time").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    assert!(seen.contains("\"kind\":\"upgrade\""), "the order itself is an app-wide notice: {seen}");
    let page = client.get(format!("{url}/apps/demo/releases")).header("cookie", &cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("data-phase=\"rolled_back\""), "{page}");
    assert!(page.contains("did not reach the hub within 4 s"), "{page}");
    drop(events);
    hub.shutdown().await;
}

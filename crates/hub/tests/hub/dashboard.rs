//! The dashboard without a browser (the browser tests are in crates/testkit/tests/dashboard.rs):
//! the notices an agent's reports cause on `/events`, and the session cookie over TLS.

use std::time::Duration;

use serde_json::json;

use crate::common::{self, push, state_log, Agent, TOKEN};

/// Signs in; returns the `Cookie` header value.
pub async fn sign_in(client: &reqwest::Client, url: &str) -> (String, String) {
    let response = client
        .post(format!("{url}/signin"))
        .header("origin", url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&next=%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    (cookie, set_cookie)
}

pub fn no_redirects() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

#[tokio::test]
async fn reports_reach_the_event_stream_of_their_app() {
    let dir = tempfile::tempdir().unwrap();
    let hub = common::start(dir.path()).await;
    let secret = common::instance(&hub, "demo", "web-1").await;
    common::instance(&hub, "other", "x").await;
    assert_eq!(push(&hub, "demo", common::simple_states()).await.0, 201);
    let client = no_redirects().build().unwrap();
    let (cookie, set_cookie) = sign_in(&client, &hub.url()).await;
    assert!(!set_cookie.contains("Secure"), "no Secure flag over plain http: {set_cookie}");

    let mut demo = client.get(format!("{}/events?app=demo", hub.url())).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(demo.status().as_u16(), 200);
    assert!(demo.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut other =
        client.get(format!("{}/events?app=other", hub.url())).header("cookie", &cookie).send().await.unwrap();

    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    assert_eq!(agent.report(state_log(1, 1, "intro", "meta.comment", "skipped")).await["code"], "Ack");
    let mut seen = String::new();
    while !seen.contains("\"kind\":\"report\"") {
        let chunk = tokio::time::timeout(common::PATIENCE, demo.chunk()).await.expect("a notice in time").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    assert!(seen.contains("event: update") && seen.contains("\"instance\":\"web-1\""), "{seen}");
    // Another app's page hears nothing of it.
    let quiet = tokio::time::timeout(Duration::from_millis(300), other.chunk()).await;
    assert!(quiet.is_err(), "the other app's stream got {quiet:?}");

    // A push is an app-wide notice.
    assert_eq!(push(&hub, "demo", json!([{ "id": "c", "module": "meta.comment" }])).await.0, 201);
    let mut seen = String::new();
    while !seen.contains("\"kind\":\"recipe\"") {
        let chunk = tokio::time::timeout(common::PATIENCE, demo.chunk()).await.expect("a notice in time").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    drop((demo, other));
    hub.shutdown().await;
}

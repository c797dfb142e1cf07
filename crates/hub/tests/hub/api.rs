//! The JSON API: the bearer token, apps and instances, recipe validation, status, logs, metrics,
//! and the refusal to serve plain ws on a public address.

use serde_json::json;

use crate::common::{api, api_with, instance, push, start, state_log, Agent, TOKEN};

#[tokio::test]
async fn every_api_route_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    for token in [None, Some("wrong"), Some(""), Some("test-token-012345678")] {
        for (method, path) in [("GET", "/apps"), ("POST", "/apps"), ("GET", "/apps/demo/status"), ("GET", "/nope")] {
            let (status, body) = api_with(&hub, token, method, path, Some(json!({ "id": "x" }))).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            assert!(body["error"].is_string() && body["hint"].is_string(), "{body}");
        }
    }
    // Nothing was created.
    let (status, body) = api_with(&hub, Some(TOKEN), "GET", "/apps", None).await;
    assert_eq!((status, body), (200, json!({ "apps": [] })));
    hub.shutdown().await;
}

#[tokio::test]
async fn apps_and_instances() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let (status, body) = api(&hub, "POST", "/apps", Some(json!({ "id": "demo" }))).await;
    assert_eq!((status, body), (201, json!({ "id": "demo" })));
    let (status, body) = api(&hub, "POST", "/apps", Some(json!({ "id": "demo" }))).await;
    assert_eq!(status, 409);
    assert!(body["error"].as_str().unwrap().contains("exists"));
    for bad in ["", "a b", "x/y", &"a".repeat(65), "é"] {
        let (status, body) = api(&hub, "POST", "/apps", Some(json!({ "id": bad }))).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["hint"].is_string());
    }
    let (status, body) = api(&hub, "POST", "/apps", Some(json!({ "name": "demo" }))).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = api(&hub, "POST", "/apps/demo/instances", Some(json!({ "id": "web-1" }))).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    let config = body["config"].as_str().unwrap();
    let expected = format!(
        "hub_url = \"{}\"\napp_id = \"demo\"\ninstance_id = \"web-1\"\nsecret = \"{secret}\"\n",
        hub.agent_url()
    );
    assert_eq!(config, expected);
    let (status, _) = api(&hub, "POST", "/apps/demo/instances", Some(json!({ "id": "web-1" }))).await;
    assert_eq!(status, 409);
    let (status, _) = api(&hub, "POST", "/apps/nope/instances", Some(json!({ "id": "web-1" }))).await;
    assert_eq!(status, 404);
    let (_, second) = api(&hub, "POST", "/apps/demo/instances", Some(json!({ "id": "web-2" }))).await;
    assert_ne!(second["secret"], body["secret"]);

    let (_, list) = api(&hub, "GET", "/apps/demo/instances", None).await;
    assert_eq!(list["instances"][0]["instance_id"], "web-1");
    assert_eq!(list["instances"][1]["instance_id"], "web-2");
    assert!(!list.to_string().contains(secret), "secrets are never listed");
    let (_, apps) = api(&hub, "GET", "/apps", None).await;
    assert_eq!(apps["apps"][0]["id"], "demo");
    hub.shutdown().await;
}

#[tokio::test]
async fn an_invalid_recipe_is_refused_with_every_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    instance(&hub, "demo", "web-1").await;
    let states = json!([
        { "id": "conf", "module": "linux.file", "parameter": { "path": "relative", "mode": "rwx" } },
        { "id": "oops", "module": "linux.nope", "parameter": {} },
        { "id": "conf", "module": "meta.comment", "parameter": { "comment": "dup" } },
    ]);
    let (status, body) = push(&hub, "demo", states).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("invalid"));
    let diagnostics = body["diagnostics"].as_array().unwrap();
    assert!(diagnostics.len() >= 3, "{body}");
    assert!(diagnostics.iter().any(|d| d["state_id"] == "conf" && d["param"] == "mode"), "{body}");
    assert!(diagnostics.iter().any(|d| d["state_id"] == "oops"), "{body}");
    for d in diagnostics {
        for key in ["state_id", "module", "param", "message", "hint"] {
            assert!(d.get(key).is_some(), "{key} in {d}");
        }
    }
    let (status, _) = api(&hub, "POST", "/apps/demo/recipes", Some(json!({ "stat": [] }))).await;
    assert_eq!(status, 400);
    let (status, _) = api(&hub, "GET", "/apps/demo/recipe", None).await;
    assert_eq!(status, 404, "nothing was stored");
    hub.shutdown().await;
}

#[tokio::test]
async fn status_lists_states_in_recipe_order_and_logs_newest_last() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let secret = instance(&hub, "demo", "web-1").await;
    instance(&hub, "demo", "web-2").await;
    let states = json!([
        { "id": "zeta", "module": "meta.comment", "parameter": { "comment": "first" } },
        { "id": "alpha", "module": "linux.dir", "parameter": { "path": ["/tmp/opsagent-test-x"] } },
    ]);
    assert_eq!(push(&hub, "demo", states).await.0, 201);
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    agent.report(state_log(1, 1, "alpha", "linux.dir", "failed")).await;
    agent.report(state_log(2, 1, "zeta", "meta.comment", "skipped")).await;
    agent.report(state_log(3, 1, "alpha", "linux.dir", "changed")).await;

    let (_, status) = api(&hub, "GET", "/apps/demo/status", None).await;
    assert_eq!(status["app_id"], "demo");
    assert_eq!(status["recipe_version"], 1);
    let web1 = &status["instances"][0];
    assert_eq!(web1["instance_id"], "web-1");
    assert_eq!(web1["agent_version"], "test");
    assert!(web1["last_seen"].is_string());
    let ids: Vec<_> = web1["states"].as_array().unwrap().iter().map(|s| s["id"].clone()).collect();
    assert_eq!(ids, vec![json!("zeta"), json!("alpha")]);
    assert_eq!(web1["states"][1]["status"], "changed");
    assert_eq!(web1["states"][1]["comment"], "alpha is changed");
    for key in ["module", "attempt", "recipe_version", "round", "updated_at"] {
        assert!(!web1["states"][1][key].is_null(), "{key}");
    }
    assert_eq!(status["instances"][1]["connected"], false);

    let (_, logs) = api(&hub, "GET", "/apps/demo/logs?limit=2", None).await;
    let seqs: Vec<_> = logs["logs"].as_array().unwrap().iter().map(|l| l["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(2), json!(3)]);
    let (_, logs) = api(&hub, "GET", "/apps/demo/logs?instance=web-1&after_seq=1", None).await;
    let seqs: Vec<_> = logs["logs"].as_array().unwrap().iter().map(|l| l["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(2), json!(3)]);
    let (status, _) = api(&hub, "GET", "/apps/demo/logs?limit=many", None).await;
    assert_eq!(status, 400);
    let (status, _) = api(&hub, "GET", "/apps/nope/status", None).await;
    assert_eq!(status, 404);

    let metrics = reqwest::get(format!("{}/metrics", hub.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("opsagent_hub_connected_agents 1"), "{metrics}");
    assert!(metrics.contains("opsagent_hub_state_logs_total{status=\"changed\"} 1"), "{metrics}");
    assert!(metrics.contains("opsagent_hub_state_logs_total{status=\"failed\"} 1"), "{metrics}");
    let index = reqwest::get(hub.url()).await.unwrap().text().await.unwrap();
    assert!(index.contains("opsagent hub"));
    hub.shutdown().await;
}

#[tokio::test]
async fn plain_ws_on_a_public_address_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(dir.path());
    config.listen = "0.0.0.0:0".parse().unwrap();
    match opsagent_hub::serve(config.clone()).await {
        Err(opsagent_hub::ServeError::Invalid { message, hint }) => {
            assert!(message.contains("loopback"), "{message}");
            assert!(hint.contains("--insecure-plain-ws"), "{hint}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a public plain hub must be refused"),
    }
    assert!(!dir.path().join("hub.db").exists(), "nothing opened before the check");
    config.insecure_plain_ws = true;
    let hub = opsagent_hub::serve(config).await.unwrap();
    hub.shutdown().await;
}

#[tokio::test]
async fn the_public_url_goes_into_instance_configs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(dir.path());
    config.public_url = Some("wss://hub\"x/agent/".to_string());
    assert!(matches!(opsagent_hub::serve(config.clone()).await, Err(opsagent_hub::ServeError::Invalid { .. })));
    config.public_url = Some("https://hub.example.com/agent/".to_string());
    assert!(matches!(opsagent_hub::serve(config.clone()).await, Err(opsagent_hub::ServeError::Invalid { .. })));
    config.public_url = Some("wss://hub.example.com/agent/".to_string());
    let hub = opsagent_hub::serve(config).await.unwrap();
    api(&hub, "POST", "/apps", Some(json!({ "id": "demo" }))).await;
    let (_, added) = api(&hub, "POST", "/apps/demo/instances", Some(json!({ "id": "web-1" }))).await;
    assert!(added["config"].as_str().unwrap().starts_with("hub_url = \"wss://hub.example.com/agent/\"\n"));
    hub.shutdown().await;
}

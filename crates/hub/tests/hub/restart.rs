//! A hub stopped and started again on the same data directory keeps everything: apps,
//! instances, secrets, recipes, statuses, seqs, DONEs and its generated API token.

use serde_json::json;

use crate::common::{api_with, state_log, Agent};

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(dir.path());
    config.api_token = None;
    let hub = opsagent_hub::serve(config.clone()).await.unwrap();
    let token = hub.api_token().to_string();
    assert_eq!(token.len(), 64);
    let file = dir.path().join("api-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let call = |hub: &opsagent_hub::Hub, method: &'static str, path: &'static str, body| {
        let token = token.clone();
        let url = hub.url();
        async move {
            let client = reqwest::Client::new();
            let mut request = client.request(method.parse().unwrap(), format!("{url}/api/v1{path}")).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    call(&hub, "POST", "/apps", Some(json!({ "id": "demo" }))).await;
    let (_, added) = call(&hub, "POST", "/apps/demo/instances", Some(json!({ "id": "web-1" }))).await;
    let secret = added["secret"].as_str().unwrap().to_string();
    let states = json!([{ "id": "w", "module": "meta.wait", "parameter": {} }]);
    let (status, _) = call(&hub, "POST", "/apps/demo/recipes", Some(json!({ "state": states }))).await;
    assert_eq!(status, 201);
    call(&hub, "POST", "/apps/demo/instances/web-1/done", Some(json!({ "state_id": "w" }))).await;
    let (mut agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    assert_eq!(agent.recv().await["code"], "State");
    for seq in 1..=3 {
        assert_eq!(agent.report(state_log(seq, 1, "w", "meta.wait", "ok")).await["seq"], seq);
    }
    hub.shutdown().await;

    let hub = opsagent_hub::serve(config).await.unwrap();
    assert_eq!(hub.api_token(), token, "the generated token is reused");
    let (mut agent, welcome) = Agent::authenticated(&hub, "demo", "web-1", &secret, Some(1)).await;
    assert_eq!(welcome["last_seq"], 3);
    assert_eq!(agent.recv().await, json!({ "code": "State", "recipe_version": 1, "id": "w" }));
    assert_eq!(agent.report(state_log(3, 1, "w", "meta.wait", "ok")).await["seq"], 3);
    assert_eq!(agent.report(state_log(4, 1, "w", "meta.wait", "ok")).await["seq"], 4);
    let (status, seqs) = api_with(&hub, Some(&token), "GET", "/apps/demo/instances/web-1/seqs", None).await;
    assert_eq!(status, 200);
    assert_eq!(seqs["seqs"], json!([1, 2, 3, 4]));
    let (_, recipe) = call(&hub, "GET", "/apps/demo/recipe", None).await;
    assert_eq!(recipe["recipe_version"], 1);
    let (_, status) = call(&hub, "GET", "/apps/demo/status", None).await;
    assert_eq!(status["instances"][0]["states"][0]["status"], "ok");
    hub.shutdown().await;
}

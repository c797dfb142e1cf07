//! Components, facts and per-instance recipes at the protocol level (a scripted agent), the
//! dashboard's *Run now*, and the original's recipe shapes through a push (warnings; strict apps).

use serde_json::json;

use crate::common::{self, api, Agent, TOKEN};
use crate::dashboard::{no_redirects, sign_in};

#[tokio::test]
async fn facts_render_links_and_only_a_changed_rendering_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let hub = common::start(dir.path()).await;
    let secret = common::instance(&hub, "demo", "web-1").await;
    let recipe = json!({ "state": [
        { "id": "conf", "module": "linux.file", "parameter": { "path": "/tmp/opsagent-test-x/@{self.Hostname}", "content": "ip=@{self.PrivateIpAddress}" } },
        { "id": "note", "module": "meta.comment", "parameter": { "comment": "c" } },
    ]});
    let (status, body) = api(&hub, "POST", "/apps/demo/recipes", Some(recipe.clone())).await;
    assert_eq!(status, 201, "{body}");

    // Never connected: the linked state is held, with the reason.
    let (_, sent) = api(&hub, "GET", "/apps/demo/recipe?instance=web-1", None).await;
    assert_eq!(sent["state"][0]["module"], "meta.hold", "{sent}");
    assert!(sent["state"][0]["parameter"]["reason"].as_str().unwrap().contains("never connected"), "{sent}");

    let mut agent = Agent::connect(&hub).await;
    let hmac = opsagent_proto::handshake_hmac(&secret, &agent.nonce, "demo", "web-1");
    agent
        .send(json!({
            "code": "Handshake", "app_id": "demo", "instance_id": "web-1", "agent_version": "test",
            "protocol_version": 2, "hmac": hmac, "recipe_version": null,
            "facts": { "PrivateIpAddress": ["10.0.0.7"], "Hostname": ["h1"] },
        }))
        .await;
    assert_eq!(agent.recv().await["code"], "Welcome");
    let recipe_frame = agent.recv().await;
    assert_eq!(recipe_frame["code"], "RecipeMetadata", "{recipe_frame}");
    assert_eq!(recipe_frame["state"][0]["parameter"]["path"], "/tmp/opsagent-test-x/h1", "{recipe_frame}");
    assert_eq!(recipe_frame["state"][0]["parameter"]["content"], "ip=10.0.0.7");
    let v = recipe_frame["recipe_version"].as_u64().unwrap();

    // The same facts again: nothing is sent. New facts: a new version at once.
    agent.send(json!({ "code": "Facts", "facts": { "PrivateIpAddress": ["10.0.0.7"], "Hostname": ["h1"] } })).await;
    agent.send(json!({ "code": "Facts", "facts": { "PrivateIpAddress": ["10.0.0.8"], "Hostname": ["h1"] } })).await;
    let next = agent.recv().await;
    assert_eq!(next["code"], "RecipeMetadata", "{next}");
    assert_eq!(next["recipe_version"], v + 1);
    assert_eq!(next["state"][0]["parameter"]["content"], "ip=10.0.0.8");
    let (_, list) = api(&hub, "GET", "/apps/demo/instances", None).await;
    assert_eq!(list["instances"][0]["facts"]["PrivateIpAddress"], json!(["10.0.0.8"]), "{list}");

    // A push that renders the same for web-1 (an unrelated component's change) sends it nothing;
    // moving web-1 to that component sends it that component's states.
    let two = json!({ "component": {
        "web-1": { "state": recipe["state"] },
        "db": { "state": [{ "id": "db", "module": "meta.comment", "parameter": { "comment": "db" } }] },
    }});
    let (status, body) = api(&hub, "POST", "/apps/demo/recipes", Some(two)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sent_to"], 0, "{body}");
    let (status, body) = api(&hub, "POST", "/apps/demo/instances/web-1", Some(json!({ "component": "db" }))).await;
    assert_eq!(status, 200, "{body}");
    let moved = agent.recv().await;
    assert_eq!(moved["code"], "RecipeMetadata", "{moved}");
    assert_eq!(moved["state"][0]["id"], "db", "{moved}");
    assert_eq!(moved["state"].as_array().unwrap().len(), 1);

    // The reload order reaches a connected agent.
    let (status, body) = api(&hub, "POST", "/apps/demo/reload", Some(json!({ "instances": ["web-1"] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.recv().await["code"], "Reload");
    // Without the token or a signature, no reload.
    let (status, _) = common::api_with(&hub, None, "POST", "/apps/demo/reload", Some(json!({}))).await;
    assert_eq!(status, 401);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_shows_the_component_and_what_a_wait_waits_for_and_runs_now() {
    let dir = tempfile::tempdir().unwrap();
    let hub = common::start(dir.path()).await;
    let secret = common::instance(&hub, "demo", "web-1").await;
    common::instance(&hub, "demo", "db-1").await;
    api(&hub, "POST", "/apps/demo/instances/web-1", Some(json!({ "component": "web" }))).await;
    let recipe = json!({ "component": {
        "web": { "state": [{ "id": "gate", "module": "meta.wait", "parameter": { "state": ["@{db-1.state.1}"] } }] },
        "db-1": { "state": [{ "id": "schema", "module": "meta.comment", "parameter": {} }] },
    }});
    let (status, body) = api(&hub, "POST", "/apps/demo/recipes", Some(recipe)).await;
    assert_eq!(status, 201, "{body}");
    let (_agent, _) = Agent::authenticated(&hub, "demo", "web-1", &secret, None).await;

    let client = no_redirects().build().unwrap();
    let (cookie, _) = sign_in(&client, &hub.url()).await;
    let page = client
        .get(format!("{}/apps/demo/instances/web-1", hub.url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("waiting for db-1 state 1 (<code>schema</code>)")
            || page.contains("waiting for db-1 state 1 (`schema`)"),
        "{page}"
    );
    assert!(page.contains("<code>web</code>"), "the component is shown: {page}");
    assert!(page.contains("data-marker=\"reload\""), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let response = client
        .post(format!("{}/apps/demo/instances/web-1/reload", hub.url()))
        .header("cookie", &cookie)
        .header("origin", hub.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303, "{:?}", response.text().await);
    let _ = TOKEN;
    hub.shutdown().await;
}

#[tokio::test]
async fn original_shapes_push_with_warnings_and_a_strict_app_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let hub = common::start(dir.path()).await;
    common::instance(&hub, "demo", "web-1").await;
    // A bare list, a state without id, an unknown parameter, `y` for a boolean.
    let body = json!([
        { "module": "meta.comment", "parameter": { "comment": "no id" } },
        { "id": "d", "module": "linux.dir", "parameter": { "path": ["/tmp/opsagent-test-d"], "recursive": "y", "colour": "blue" } },
    ]);
    let (status, answer) = api(&hub, "POST", "/apps/demo/recipes", Some(body.clone())).await;
    assert_eq!(status, 201, "{answer}");
    let warnings = answer["warnings"].as_array().unwrap();
    assert!(warnings.iter().all(|w| w["severity"] == "warning"), "{answer}");
    assert!(warnings.iter().any(|w| w["message"].as_str().unwrap().contains("state-1")), "{answer}");
    assert!(warnings.iter().any(|w| w["param"] == "colour"), "{answer}");

    let (status, _) = api(&hub, "POST", "/apps/demo/settings", Some(json!({ "strict": true }))).await;
    assert_eq!(status, 200);
    let mut changed = body.clone();
    changed[1]["parameter"]["path"] = json!(["/tmp/opsagent-test-e"]);
    let (status, answer) = api(&hub, "POST", "/apps/demo/recipes", Some(changed)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["diagnostics"].as_array().unwrap().iter().any(|d| d["severity"] == "error" && d["param"] == "colour"),
        "{answer}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn components_facts_and_rendered_versions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path());
    let hub = opsagent_hub::serve(config.clone()).await.unwrap();
    let secret = common::instance(&hub, "demo", "web-1").await;
    api(&hub, "POST", "/apps/demo/instances/web-1", Some(json!({ "component": "web" }))).await;
    let recipe = json!({ "component": { "web": { "state": [
        { "id": "conf", "module": "linux.file", "parameter": { "path": "/tmp/opsagent-test-r", "content": "@{self.PrivateIpAddress}" } },
    ]}}});
    let (status, _) = api(&hub, "POST", "/apps/demo/recipes", Some(recipe)).await;
    assert_eq!(status, 201);
    let handshake = |nonce: &str, version: Option<u64>| {
        let hmac = opsagent_proto::handshake_hmac(&secret, nonce, "demo", "web-1");
        json!({
            "code": "Handshake", "app_id": "demo", "instance_id": "web-1", "agent_version": "test",
            "protocol_version": 2, "hmac": hmac, "recipe_version": version,
            "facts": { "PrivateIpAddress": ["10.0.0.5"] },
        })
    };
    let mut agent = Agent::connect(&hub).await;
    let frame = handshake(&agent.nonce, None);
    agent.send(frame).await;
    assert_eq!(agent.recv().await["code"], "Welcome");
    let sent = agent.recv().await;
    assert_eq!(sent["state"][0]["parameter"]["content"], "10.0.0.5", "{sent}");
    let version = sent["recipe_version"].as_u64().unwrap();
    drop(agent);
    hub.shutdown().await;

    let hub = opsagent_hub::serve(config).await.unwrap();
    let mut agent = Agent::connect(&hub).await;
    let frame = handshake(&agent.nonce, Some(version));
    agent.send(frame).await;
    assert_eq!(agent.recv().await["code"], "Welcome");
    // Same facts, same version: the hub sends no recipe (the next frame is the report's Ack).
    let ack = agent.report(common::state_log(1, version, "conf", "linux.file", "changed")).await;
    assert_eq!(ack["code"], "Ack", "{ack}");
    let (_, list) = api(&hub, "GET", "/apps/demo/instances", None).await;
    assert_eq!(list["instances"][0]["component"], "web", "{list}");
    assert_eq!(list["instances"][0]["facts"]["PrivateIpAddress"], json!(["10.0.0.5"]), "{list}");
    let (_, shown) = api(&hub, "GET", "/apps/demo/recipe?instance=web-1", None).await;
    assert_eq!(shown["recipe_version"], version, "{shown}");
    hub.shutdown().await;
}

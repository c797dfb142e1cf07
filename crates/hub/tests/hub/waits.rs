//! `meta.wait` releases: automatic once the referenced states succeeded on other instances, and
//! by hand through the API.

use serde_json::{json, Value};

use crate::common::{api, instance, push, start, state_log, Agent, Read};

fn recipe() -> Value {
    json!([
        { "id": "migrate", "module": "linux.cmd", "parameter": { "cmd": "true" } },
        { "id": "wait-db", "module": "meta.wait",
          "parameter": { "state": ["db-1/migrate", "@{db-2.state.migrate}"] } },
        { "id": "wait-operator", "module": "meta.wait", "parameter": {} },
    ])
}

#[tokio::test]
async fn a_wait_is_released_when_every_referenced_state_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let web = instance(&hub, "demo", "web-1").await;
    let db1_secret = instance(&hub, "demo", "db-1").await;
    let db2 = instance(&hub, "demo", "db-2").await;
    assert_eq!(push(&hub, "demo", recipe()).await.0, 201);
    let (mut web, _) = Agent::authenticated(&hub, "demo", "web-1", &web, Some(1)).await;
    let (mut db1, _) = Agent::authenticated(&hub, "demo", "db-1", &db1_secret, Some(1)).await;

    // db-1 succeeded; db-2 not yet; a failure or another version does not count.
    assert_eq!(db1.report(state_log(1, 1, "migrate", "linux.cmd", "changed")).await["code"], "Ack");
    assert_eq!(web.report(state_log(1, 1, "migrate", "linux.cmd", "ok")).await["code"], "Ack");
    let (mut db2, _) = Agent::authenticated(&hub, "demo", "db-2", &db2, Some(1)).await;
    assert_eq!(db2.report(state_log(1, 1, "migrate", "linux.cmd", "failed")).await["code"], "Ack");
    assert_eq!(db2.report(state_log(2, 7, "migrate", "linux.cmd", "ok")).await["code"], "Ack");
    // Now it succeeds: every instance gets the DONE (after the ack of the report).
    assert_eq!(db2.report(state_log(3, 1, "migrate", "linux.cmd", "ok")).await["code"], "Ack");
    let done = json!({ "code": "State", "recipe_version": 1, "id": "wait-db" });
    assert_eq!(web.recv().await, done);
    assert_eq!(db1.recv().await, done);
    assert_eq!(db2.recv().await, done);
    // Only once.
    assert_eq!(db2.report(state_log(4, 1, "migrate", "linux.cmd", "ok")).await["code"], "Ack");
    assert_eq!(web.report(state_log(2, 1, "wait-db", "meta.wait", "ok")).await["code"], "Ack");

    // A reconnecting agent gets its DONEs again after Welcome.
    drop(db1);
    let (mut db1, _) = Agent::authenticated(&hub, "demo", "db-1", &db1_secret, Some(1)).await;
    assert_eq!(db1.recv().await, done);
    assert_eq!(db1.report(state_log(2, 1, "wait-db", "meta.wait", "ok")).await["code"], "Ack");
    drop(web);
    hub.shutdown().await;
}

#[tokio::test]
async fn dones_are_replayed_on_handshake_and_a_wait_is_released_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path()).await;
    let web_secret = instance(&hub, "demo", "web-1").await;
    let db_secret = instance(&hub, "demo", "db-1").await;
    let _ = instance(&hub, "demo", "db-2").await;
    assert_eq!(push(&hub, "demo", recipe()).await.0, 201);

    // By hand, for every instance; web-1 is offline and gets it on its handshake.
    let (mut db, _) = Agent::authenticated(&hub, "demo", "db-1", &db_secret, Some(1)).await;
    let (status, body) =
        api(&hub, "POST", "/apps/demo/instances/*/done", Some(json!({ "state_id": "wait-operator" }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"], json!(["db-1", "db-2", "web-1"]));
    assert_eq!(db.recv().await, json!({ "code": "State", "recipe_version": 1, "id": "wait-operator" }));
    let (mut web, _) = Agent::authenticated(&hub, "demo", "web-1", &web_secret, Some(1)).await;
    assert_eq!(web.recv().await, json!({ "code": "State", "recipe_version": 1, "id": "wait-operator" }));

    // Again: nothing new.
    let (status, body) =
        api(&hub, "POST", "/apps/demo/instances/web-1/done", Some(json!({ "state_id": "wait-operator" }))).await;
    assert_eq!(status, 200);
    assert_eq!(body["released"], json!([]));
    assert_eq!(body["already_released"], json!(["web-1"]));

    // A state that is not in the recipe, an unknown instance.
    let (status, body) =
        api(&hub, "POST", "/apps/demo/instances/web-1/done", Some(json!({ "state_id": "nope" }))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["hint"].is_string());
    let (status, _) =
        api(&hub, "POST", "/apps/demo/instances/web-9/done", Some(json!({ "state_id": "wait-db" }))).await;
    assert_eq!(status, 404);

    // One instance by hand: only it gets the DONE.
    let (status, _) =
        api(&hub, "POST", "/apps/demo/instances/web-1/done", Some(json!({ "state_id": "wait-db" }))).await;
    assert_eq!(status, 200);
    assert_eq!(web.recv().await, json!({ "code": "State", "recipe_version": 1, "id": "wait-db" }));
    // DONEs are delivered at least once: a release racing db-1's handshake replay may reach it twice.
    let mut answer = db.report(state_log(1, 1, "migrate", "linux.cmd", "failed")).await;
    while answer["code"] == "State" {
        assert_eq!(answer, json!({ "code": "State", "recipe_version": 1, "id": "wait-operator" }));
        answer = db.recv().await;
    }
    assert_eq!(answer["code"], "Ack");

    // A new version: the old DONEs do not carry over.
    let mut next = recipe();
    next[0]["parameter"]["cmd"] = json!("true # v2");
    assert_eq!(push(&hub, "demo", next).await.0, 201);
    assert_eq!(web.recv().await["recipe_version"], 2);
    drop(web);
    let (mut web, _) = Agent::authenticated(&hub, "demo", "web-1", &web_secret, Some(2)).await;
    let ack = web.report(state_log(1, 2, "migrate", "linux.cmd", "ok")).await;
    assert_eq!(ack["code"], "Ack", "no DONE of version 1 replayed: {ack}");
    drop(db);
    hub.shutdown().await;
    assert!(matches!(web.read().await, Read::Closed));
}

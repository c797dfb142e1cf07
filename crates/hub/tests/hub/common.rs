//! Shared helpers of the hub's tests: a real hub on 127.0.0.1:0 with SQLite in a temp dir, an
//! API client, and a real WebSocket agent.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use opsagent_hub::{Hub, Secret, ServeConfig};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "test-token-0123456789";

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn config(dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    config.api_token = Some(Secret::new(TOKEN.to_string()));
    config
}

pub async fn start(dir: &Path) -> Hub {
    opsagent_hub::serve(config(dir)).await.expect("the hub starts")
}

/// Calls the API with the test token; returns the status and the JSON body.
pub async fn api(hub: &Hub, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api_with(hub, Some(TOKEN), method, path, body).await
}

pub async fn api_with(hub: &Hub, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1{path}", hub.url());
    let mut request = client.request(method.parse().unwrap(), &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates an app (if needed) and an instance; returns the instance's secret.
pub async fn instance(hub: &Hub, app: &str, id: &str) -> String {
    let (status, _) = api(hub, "POST", "/apps", Some(json!({ "id": app }))).await;
    assert!(status == 201 || status == 409, "creating app {app}: {status}");
    let (status, body) = api(hub, "POST", &format!("/apps/{app}/instances"), Some(json!({ "id": id }))).await;
    assert_eq!(status, 201, "adding instance {id}: {body}");
    body["secret"].as_str().unwrap().to_string()
}

/// Pushes a recipe (the wire form's `state` list); returns the status and body.
pub async fn push(hub: &Hub, app: &str, states: Value) -> (u16, Value) {
    api(hub, "POST", &format!("/apps/{app}/recipes"), Some(json!({ "state": states }))).await
}

/// Polls `check` until it is true or `PATIENCE` runs out.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket agent driven by hand.
pub struct Agent {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub nonce: String,
}

/// What the next read gave.
#[derive(Debug)]
pub enum Read {
    Json(Value),
    Closed,
}

impl Agent {
    /// Connects and reads `Hello`.
    pub async fn connect(hub: &Hub) -> Agent {
        let (socket, _) =
            tokio_tungstenite::connect_async(hub.agent_url()).await.expect("the agent endpoint accepts the connection");
        Agent::after_connect(socket).await
    }

    pub async fn after_connect(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Agent {
        let mut agent = Agent { socket, nonce: String::new() };
        let hello = agent.recv().await;
        assert_eq!(hello["code"], "Hello", "{hello}");
        assert_eq!(hello["protocol_version"], 2);
        agent.nonce = hello["nonce"].as_str().unwrap().to_string();
        assert_eq!(agent.nonce.len(), 64);
        agent
    }

    /// Sends a `Handshake` with the right HMAC for `secret`.
    pub async fn handshake(&mut self, app: &str, instance: &str, secret: &str, recipe_version: Option<u64>) {
        let hmac = opsagent_proto::handshake_hmac(secret, &self.nonce, app, instance);
        self.send(json!({
            "code": "Handshake", "app_id": app, "instance_id": instance, "agent_version": "test",
            "protocol_version": 2, "hmac": hmac, "recipe_version": recipe_version,
        }))
        .await;
    }

    /// Connects, authenticates and reads `Welcome`.
    pub async fn authenticated(
        hub: &Hub,
        app: &str,
        instance: &str,
        secret: &str,
        recipe_version: Option<u64>,
    ) -> (Agent, Value) {
        let mut agent = Agent::connect(hub).await;
        agent.handshake(app, instance, secret, recipe_version).await;
        let welcome = agent.recv().await;
        assert_eq!(welcome["code"], "Welcome", "{welcome}");
        (agent, welcome)
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::Text(text.into())).await.expect("sending a frame");
    }

    /// The next JSON frame; fails on close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.read().await {
            Read::Json(value) => value,
            Read::Closed => panic!("the hub closed the connection"),
        }
    }

    /// The next JSON frame or the end of the connection (pings skipped).
    pub async fn read(&mut self) -> Read {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .expect("timed out waiting for a frame from the hub");
            match next {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Read::Closed,
                Some(Ok(Message::Text(text))) => {
                    return Read::Json(serde_json::from_str(text.as_str()).expect("hub frames are JSON"))
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until the connection ends; returns the frames read on the way.
    pub async fn read_until_closed(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Read::Json(value) = self.read().await {
            frames.push(value);
        }
        frames
    }

    /// Sends a `StateLog` and returns the next frame (the `Ack`, normally).
    pub async fn report(&mut self, log: Value) -> Value {
        self.send(log).await;
        self.recv().await
    }
}

/// A `StateLog` of the current protocol.
pub fn state_log(seq: u64, recipe_version: u64, id: &str, module: &str, status: &str) -> Value {
    json!({
        "code": "StateLog", "instance_id": "ignored", "app_id": "ignored",
        "recipe_version": recipe_version, "id": id,
        "state_result": status != "failed", "state_comment": format!("{id} is {status}"),
        "seq": seq, "round": 1, "attempt": 1, "status": status, "module": module,
        "changes": [], "duration_ms": 3, "started_at": "2026-01-01T00:00:00Z",
    })
}

/// A simple valid recipe: a comment and a directory.
pub fn simple_states() -> Value {
    json!([
        { "id": "intro", "module": "meta.comment", "parameter": { "comment": "hello" } },
        { "id": "dir", "module": "linux.dir", "parameter": { "path": ["/tmp/opsagent-test-hub"] } },
    ])
}

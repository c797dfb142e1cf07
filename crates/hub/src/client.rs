//! The operator CLI's HTTP client for the hub's JSON API, and how its failures map to exit codes.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::auth::Secret;

/// The CLI's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// The hub answered no (not found, exists already).
    Negative = 1,
    /// Bad input: arguments, recipe, token.
    Invalid = 2,
    /// The hub is unreachable or failed.
    Environment = 3,
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
    /// The API's error body, for `--json`.
    pub body: Option<Value>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into(), hint: None, body: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl Client {
    /// A client of the hub at `base` (e.g. `http://127.0.0.1:7700`), trusting `ca_cert` too.
    pub fn new(base: &str, token: Secret, ca_cert: Option<&Path>) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("reading the CA certificate {}", path.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder.build().context("setting up the HTTP client")?;
        Ok(Client { http, base: base.trim_end_matches('/').to_string(), token })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Calls `/api/v1{path}`; a non-2xx answer is a [`Failure`] with the API's `{error, hint}`.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            Failure::new(Exit::Environment, format!("cannot reach the hub at `{}`: {}", self.base, error_chain(&e)))
                .hint("is `opsagent-hub serve` running there? Set `--hub URL` or `OPSAGENT_HUB_URL`")
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::new(Exit::Environment, format!("reading the hub's answer: {}", error_chain(&e))))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let exit = match status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::PAYLOAD_TOO_LARGE => Exit::Invalid,
            s if s.is_server_error() => Exit::Environment,
            _ => Exit::Negative,
        };
        let message =
            value["error"].as_str().map(str::to_string).unwrap_or_else(|| format!("the hub answered {status}"));
        Err(Failure { exit, message, hint: value["hint"].as_str().map(str::to_string), body: Some(value) })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

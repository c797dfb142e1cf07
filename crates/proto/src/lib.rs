//! The wire protocol between `opsagent` (on each instance) and `opsagent-hub`: one JSON object per
//! WebSocket text frame, selected by its `"code"` (docs/protocol.md is the reference).
//!
//! The original OpsAgent's messages and field names are the base (`Handshake`, `RecipeMetadata`,
//! `State`, `StateLog`, `AgentUpdate`, `AppNotReady`; state id field `id`, `stateid` accepted);
//! everything new is additive: the hub's `Hello` nonce and the agent's HMAC answer, `Welcome`,
//! `Ack`, `Error`, `RoundStart`/`RoundEnd`, and the extra `StateLog` fields.
//!
//! [`decode_agent`] and [`decode_hub`] never panic: an oversized, malformed or unknown frame is a
//! [`ProtoError`]. Unknown fields are ignored, so the protocol grows by adding fields. The recipe
//! travels as raw JSON (`serde_json::Value`); this crate knows nothing of its meaning.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The protocol version this crate speaks (the original's was 1).
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest frame an agent may send (a `StateLog` with full output tails is far smaller).
pub const MAX_AGENT_FRAME: usize = 1 << 20;
/// Largest frame the hub may send (recipes can be big).
pub const MAX_HUB_FRAME: usize = 16 << 20;

/// Messages from the hub to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum HubMessage {
    /// First frame on every connection: the challenge the agent's `Handshake` must answer.
    Hello { nonce: String, protocol_version: u32, hub_version: String },
    /// The handshake was accepted. `last_seq` is the highest `seq` the hub holds from this
    /// instance: the agent drops those from its outbox and replays the rest.
    Welcome { instance_id: String, last_seq: u64 },
    /// The app's recipe (`state` is the list of `{id, module, parameter}`). The original's field names.
    RecipeMetadata {
        recipe_version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        module: Option<serde_json::Value>,
        #[serde(default)]
        state: Option<Vec<serde_json::Value>>,
        /// Ours: the recipe-level retry count of failed states.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
    },
    /// DONE: the `meta.wait` state `id` of `recipe_version` is released.
    State {
        recipe_version: u64,
        #[serde(alias = "stateid")]
        id: String,
    },
    /// Upgrade order: install `version` from `url` (sha256 and ed25519 signature checked) at the
    /// next round boundary.
    AgentUpdate {
        version: String,
        url: String,
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        signature: Option<String>,
        /// Ours: the operator allowed installing a version older than the agent's.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_downgrade: bool,
    },
    /// The app or the instance is not known (yet): retry later.
    AppNotReady {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Every agent message with `seq` up to this one is stored (cumulative).
    Ack { seq: u64 },
    /// The hub refuses the connection (bad HMAC, protocol error); it closes afterwards.
    Error { message: String },
    /// Ours: run a round now (the original's *Reload States*): at once when idle, preempting the
    /// running round otherwise. The recipe stays the same.
    Reload {},
}

/// Messages from an agent to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum AgentMessage {
    /// The answer to `Hello`. `hmac` = [`handshake_hmac`] of the instance secret; the secret itself
    /// never crosses the wire.
    Handshake {
        instance_id: String,
        app_id: String,
        agent_version: String,
        protocol_version: u32,
        #[serde(default)]
        hmac: Option<String>,
        /// The recipe version the agent runs (from its cache), if any.
        #[serde(default)]
        recipe_version: Option<u64>,
        #[serde(default)]
        init_errors: Option<String>,
        /// Ours: what the instance knows of itself, for the hub's links (`@{db.PrivateIpAddress}`):
        /// attribute name → values (several for a multi-valued attribute such as secondary IPs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        facts: Option<Facts>,
    },
    /// Ours: the instance's facts changed since the handshake (the whole new set).
    Facts {
        facts: Facts,
    },
    StateLog(Box<StateLog>),
    /// A round starts.
    RoundStart {
        seq: u64,
        recipe_version: u64,
        round: u64,
        started_at: String,
    },
    /// A round ended: `result` is `succeeded`, `failed` or `interrupted`.
    RoundEnd {
        seq: u64,
        recipe_version: u64,
        round: u64,
        result: String,
        duration_ms: u64,
    },
    /// Ours: progress of a self-upgrade to `version` (`phase`: `downloading`, `downloaded`, `verified`,
    /// `installed`, `confirmed`, `refused`, `failed`, `rolled_back`); `reason` says why it stopped.
    UpgradeStatus {
        seq: u64,
        version: String,
        #[serde(default)]
        from: Option<String>,
        phase: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// The report of one attempt at one state. The first seven fields are the original's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StateLog {
    pub instance_id: String,
    pub app_id: String,
    pub recipe_version: u64,
    #[serde(alias = "stateid")]
    pub id: String,
    pub state_result: bool,
    #[serde(default)]
    pub state_comment: Option<String>,
    #[serde(default)]
    pub state_stdout: Option<String>,
    /// Per-agent, monotonic; the hub acknowledges and deduplicates by (instance, seq).
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub round: u64,
    #[serde(default)]
    pub attempt: u32,
    /// `ok`, `changed`, `failed`, `skipped`, `interrupted`.
    #[serde(default)]
    pub status: String,
    /// Whether another attempt follows (this one failed and will be retried).
    #[serde(default)]
    pub will_retry: bool,
    #[serde(default)]
    pub module: String,
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub diff: Option<String>,
    #[serde(default)]
    pub duration_ms: u64,
    /// RFC 3339 UTC.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
}

/// One change a state made (or, with `--test`, would make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Change {
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub detail: String,
}

impl AgentMessage {
    /// The outbox sequence number, for the messages that carry one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            AgentMessage::StateLog(log) => Some(log.seq),
            AgentMessage::RoundStart { seq, .. }
            | AgentMessage::RoundEnd { seq, .. }
            | AgentMessage::UpgradeStatus { seq, .. } => Some(*seq),
            AgentMessage::Handshake { .. } | AgentMessage::Facts { .. } => None,
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("frame of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("frame is not a JSON object: {0}")]
    NotJson(String),
    #[error("frame has no string `code`")]
    NoCode,
    #[error("unknown message code `{0}`")]
    UnknownCode(String),
    #[error("malformed `{code}` message: {message}")]
    Malformed { code: String, message: String },
}

const AGENT_CODES: &[&str] = &["Handshake", "Facts", "StateLog", "RoundStart", "RoundEnd", "UpgradeStatus"];
const HUB_CODES: &[&str] =
    &["Hello", "Welcome", "RecipeMetadata", "State", "AgentUpdate", "AppNotReady", "Ack", "Error", "Reload"];

/// An instance's facts: attribute name (`PrivateIpAddress`, `Hostname`, …) → its values, first
/// the primary one. Sorted by name, so that equal sets encode equally.
pub type Facts = std::collections::BTreeMap<String, Vec<String>>;

/// Most facts an agent may report, the most values of one, and the longest name and value kept.
pub const MAX_FACTS: usize = 256;
pub const MAX_FACT_VALUES: usize = 64;
pub const MAX_FACT_LEN: usize = 1024;

/// Facts within those limits: longer names and values are dropped, then the extra values and
/// facts. The agent sends no more; the hub keeps no more from a peer that does.
pub fn bounded_facts(facts: Facts) -> Facts {
    facts
        .into_iter()
        .filter(|(name, _)| name.len() <= MAX_FACT_LEN)
        .take(MAX_FACTS)
        .map(|(name, values)| {
            let values = values.into_iter().filter(|v| v.len() <= MAX_FACT_LEN).take(MAX_FACT_VALUES).collect();
            (name, values)
        })
        .collect()
}

/// Decodes a frame an agent sent.
pub fn decode_agent(text: &str) -> Result<AgentMessage, ProtoError> {
    decode(text, MAX_AGENT_FRAME, AGENT_CODES)
}

/// Decodes a frame the hub sent.
pub fn decode_hub(text: &str) -> Result<HubMessage, ProtoError> {
    decode(text, MAX_HUB_FRAME, HUB_CODES)
}

fn decode<T: serde::de::DeserializeOwned>(text: &str, limit: usize, codes: &[&str]) -> Result<T, ProtoError> {
    if text.len() > limit {
        return Err(ProtoError::TooLarge { size: text.len(), limit });
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ProtoError::NotJson(e.to_string()))?;
    let Some(code) = value.get("code").and_then(|c| c.as_str()) else {
        return Err(ProtoError::NoCode);
    };
    if !codes.contains(&code) {
        return Err(ProtoError::UnknownCode(code.chars().take(64).collect()));
    }
    let code = code.to_string();
    serde_json::from_value(value).map_err(|e| ProtoError::Malformed { code, message: e.to_string() })
}

/// Encodes a message as one JSON text frame.
pub fn encode<T: Serialize>(message: &T) -> String {
    // The message types hold only strings, numbers, booleans and JSON values: serializing cannot fail.
    serde_json::to_string(message).unwrap_or_default()
}

/// The message a release's ed25519 signature covers: domain-separated, so that a signature made
/// for anything else can never pass for a release. `sha256` is lowercase hex.
pub fn release_message(version: &str, sha256: &str, size: u64) -> String {
    format!("opsagent-release\n{version}\n{sha256}\n{size}")
}

/// The handshake proof: hex HMAC-SHA256 keyed by the instance secret over
/// `nonce \n app_id \n instance_id`.
pub fn handshake_hmac(secret: &str, nonce: &str, app_id: &str, instance_id: &str) -> String {
    hex::encode(handshake_mac(secret, nonce, app_id, instance_id).finalize().into_bytes())
}

/// Checks a handshake proof in constant time.
pub fn verify_handshake(secret: &str, nonce: &str, app_id: &str, instance_id: &str, proof: &str) -> bool {
    let Ok(proof) = hex::decode(proof) else { return false };
    handshake_mac(secret, nonce, app_id, instance_id).verify_slice(&proof).is_ok()
}

fn handshake_mac(secret: &str, nonce: &str, app_id: &str, instance_id: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    for (i, part) in [nonce, app_id, instance_id].into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        mac.update(part.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests;

//! `/etc/opsagent.conf`: the daemon's configuration (TOML), read raw and then validated, every
//! problem reported with its key and the file. Unknown keys warn (a rolled-back agent must still
//! start on a newer config); the secret is never printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the daemon reads its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/opsagent.conf";

/// The instance secret; prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub hub_url: String,
    pub app_id: String,
    pub instance_id: String,
    pub secret: Secret,
    pub state_dir: PathBuf,
    /// Extra CA certificates (PEM) trusted for the hub, besides the public roots.
    pub ca_file: Option<PathBuf>,
    pub round_interval: Duration,
    /// Up to this much is added to `round_interval`, fixed per instance (a hash of its id).
    pub splay: Duration,
    /// Longest pause between reconnection attempts.
    pub reconnect_max: Duration,
    /// Between SIGTERM and SIGKILL when a command is interrupted.
    pub kill_grace: Duration,
    /// How often the agent pings the hub; three intervals of silence drop the connection.
    pub heartbeat: Duration,
    /// The ed25519 key that must have signed a release for the agent to install it.
    pub update_public_key: Option<ed25519_dalek::VerifyingKey>,
    /// Prefix of the installed layout (`<root>/opt/madeira/{versions/<v>,current}`); `/` on instances.
    pub install_root: PathBuf,
    /// How long a new version has to reach the hub before it is rolled back.
    pub upgrade_confirm: Duration,
    /// `[facts]`: facts the operator sets, overriding or adding to the collected ones.
    pub facts: opsagent_proto::Facts,
    /// Where the EC2 instance metadata service answers (`None`: only asked on EC2, at its
    /// link-local address); a test points it at loopback.
    pub imds_url: Option<String>,
    /// How often the agent looks whether its facts changed (and tells the hub if they did).
    pub facts_interval: Duration,
}

#[derive(Debug, Deserialize)]
struct Raw {
    hub_url: Option<String>,
    app_id: Option<String>,
    instance_id: Option<String>,
    secret: Option<String>,
    state_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    allow_insecure_ws: Option<bool>,
    round_interval_secs: Option<u64>,
    splay_secs: Option<u64>,
    reconnect_max_secs: Option<u64>,
    kill_grace_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    update_public_key: Option<String>,
    install_root: Option<PathBuf>,
    upgrade_confirm_secs: Option<u64>,
    facts: Option<std::collections::BTreeMap<String, FactValue>>,
    imds_url: Option<String>,
    facts_interval_secs: Option<u64>,
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
}

const KEYS: &[&str] = &[
    "hub_url",
    "app_id",
    "instance_id",
    "secret",
    "state_dir",
    "ca_file",
    "allow_insecure_ws",
    "round_interval_secs",
    "splay_secs",
    "reconnect_max_secs",
    "kill_grace_secs",
    "heartbeat_secs",
    "update_public_key",
    "install_root",
    "upgrade_confirm_secs",
    "facts",
    "imds_url",
    "facts_interval_secs",
];

/// A `[facts]` value: one string, or a list for a multi-valued attribute.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FactValue {
    One(String),
    Many(Vec<String>),
}

/// What reading the configuration found: the config, or every error; warnings either way.
pub struct Loaded {
    pub config: Result<Config, Vec<String>>,
    pub warnings: Vec<String>,
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Loaded {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Loaded {
                config: Err(vec![format!("cannot read the configuration `{shown}`: {e}")]),
                warnings: Vec::new(),
            }
        }
    };
    let mut warnings = Vec::new();
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warnings
                .push(format!("`{shown}` holds the instance secret but other users can read it: `chmod 600 {shown}`"));
        }
    }
    let raw: Raw = match toml::from_str(&text) {
        Ok(raw) => raw,
        Err(e) => return Loaded { config: Err(vec![format!("`{shown}` is not valid TOML: {e}")]), warnings },
    };
    for key in raw.unknown.keys() {
        let hint = opsagent_recipe::diag::did_you_mean(key, KEYS).map(|h| format!(" ({h})")).unwrap_or_default();
        warnings.push(format!("`{shown}`: unknown key `{key}` is ignored{hint}"));
    }
    let mut errors = Vec::new();
    let mut required = |key: &str, value: Option<String>| match value.filter(|v| !v.trim().is_empty()) {
        Some(v) => v,
        None => {
            errors.push(format!("`{shown}`: `{key}` is missing"));
            String::new()
        }
    };
    let hub_url = required("hub_url", raw.hub_url);
    let app_id = required("app_id", raw.app_id);
    let instance_id = required("instance_id", raw.instance_id);
    let secret = required("secret", raw.secret);
    if !hub_url.is_empty() {
        if let Err(e) = check_hub_url(&hub_url, raw.allow_insecure_ws.unwrap_or(false)) {
            errors.push(format!("`{shown}`: `hub_url`: {e}"));
        }
    }
    if let Some(ca) = &raw.ca_file {
        if !ca.is_file() {
            errors.push(format!("`{shown}`: `ca_file`: `{}` does not exist", ca.display()));
        }
    }
    let update_public_key = match raw.update_public_key.as_deref().map(parse_public_key).transpose() {
        Ok(key) => key,
        Err(e) => {
            errors.push(format!("`{shown}`: `update_public_key`: {e}"));
            None
        }
    };
    let install_root = raw.install_root.unwrap_or_else(|| PathBuf::from("/"));
    if !install_root.is_absolute() {
        errors.push(format!("`{shown}`: `install_root`: `{}` is not an absolute path", install_root.display()));
    }
    let mut facts = opsagent_proto::Facts::new();
    for (name, value) in raw.facts.unwrap_or_default() {
        let values = match value {
            FactValue::One(v) => vec![v],
            FactValue::Many(v) => v,
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.is_empty() {
            errors.push(format!(
                "`{shown}`: `[facts]`: `{name}` is not a usable attribute name; use letters, digits, `_` and `-`, as in `PrivateIpAddress`"
            ));
            continue;
        }
        facts.insert(name, values);
    }
    if !errors.is_empty() {
        return Loaded { config: Err(errors), warnings };
    }
    let config = Config {
        hub_url,
        app_id,
        instance_id,
        secret: Secret(secret),
        state_dir: raw.state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/madeira")),
        ca_file: raw.ca_file,
        round_interval: Duration::from_secs(raw.round_interval_secs.unwrap_or(600)),
        splay: Duration::from_secs(raw.splay_secs.unwrap_or(60)),
        reconnect_max: Duration::from_secs(raw.reconnect_max_secs.unwrap_or(300).max(1)),
        kill_grace: Duration::from_secs(raw.kill_grace_secs.unwrap_or(5)),
        heartbeat: Duration::from_secs(raw.heartbeat_secs.unwrap_or(15).max(1)),
        update_public_key,
        install_root,
        upgrade_confirm: Duration::from_secs(raw.upgrade_confirm_secs.unwrap_or(120).max(1)),
        facts,
        imds_url: raw.imds_url.filter(|u| !u.trim().is_empty()),
        facts_interval: Duration::from_secs(raw.facts_interval_secs.unwrap_or(60).max(1)),
    };
    Loaded { config: Ok(config), warnings }
}

/// A hex ed25519 public key (as `opsagent-hub keygen` prints it).
fn parse_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bytes = hex_decode(text.trim()).and_then(|b| <[u8; 32]>::try_from(b).ok());
    let Some(bytes) = bytes else {
        return Err("not an ed25519 public key: write the 64 hex digits `opsagent-hub keygen` printed".into());
    };
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// `wss://` anywhere; `ws://` only to a loopback address unless explicitly allowed.
fn check_hub_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a URL; write e.g. `wss://hub.example.com/agent/`"))?;
    let host = rest.split('/').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    match scheme {
        "wss" => Ok(()),
        "ws" if allow_insecure || is_loopback(host) => Ok(()),
        "ws" => Err(format!(
            "plain `ws://` to `{host}` would send reports unencrypted; use `wss://`, or set `allow_insecure_ws = true`"
        )),
        other => Err(format!("unsupported scheme `{other}`; use `wss://` (or `ws://` on loopback)")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// A stable hash of the instance id (FNV-1a), for per-instance splay.
pub fn instance_hash(instance_id: &str) -> u64 {
    instance_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_hub_url("wss://hub.example.com/agent/", false).is_ok());
        assert!(check_hub_url("ws://127.0.0.1:7700/agent/", false).is_ok());
        assert!(check_hub_url("ws://[::1]:7700/agent/", false).is_ok());
        assert!(check_hub_url("ws://10.0.0.1:7700/agent/", false).is_err());
        assert!(check_hub_url("ws://10.0.0.1:7700/agent/", true).is_ok());
        assert!(check_hub_url("http://x", false).is_err());
    }

    #[test]
    fn secret_is_hidden_in_debug() {
        assert_eq!(format!("{:?}", Secret("s3cret".into())), "***");
    }
}

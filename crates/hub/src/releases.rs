//! Signed agent releases and upgrade orders.
//!
//! A release lives in the hub's data directory, written there by `opsagent-hub release add` on the
//! hub's machine (no upload endpoint: whoever can write the data directory owns the hub anyway):
//! `<data-dir>/releases/<version>/opsagent` and `manifest.json` (`version`, `sha256`, `size`, the
//! ed25519 `signature` over [`opsagent_proto::release_message`] and the signer's `public_key`, hex).
//! The hub serves the binaries without a token (`GET /releases/{version}/opsagent`): integrity comes
//! from the signature the agent checks against the key pinned in its configuration, not from the
//! channel. [`update_frame`] builds the `AgentUpdate` an agent gets when its version is not its
//! app's target.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use opsagent_proto::HubMessage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::registry::Outgoing;
use crate::shared::Shared;
use crate::store::Target;

/// The file names `keygen` writes.
pub const PRIVATE_KEY_FILE: &str = "release.key";
pub const PUBLIC_KEY_FILE: &str = "release.pub";

/// What `release add` records beside a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// Hex of the 64-byte ed25519 signature over `release_message(version, sha256, size)`.
    pub signature: String,
    /// Hex of the signer's 32-byte public key.
    pub public_key: String,
}

/// Versions are 1 to 64 of `A-Z a-z 0-9 . _ + -`, not starting with a dot: safe in paths and URLs.
pub fn check_version(version: &str) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&version.len())
        && !version.starts_with('.')
        && version.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !valid {
        bail!("`{version}` is not a valid version: use 1 to 64 letters, digits, `.`, `_`, `+` or `-`");
    }
    Ok(())
}

/// `opsagent-hub keygen`: a new ed25519 key pair in `out` (`release.key`, mode 0600, and
/// `release.pub`), both hex; returns the public key. Refuses to overwrite a private key.
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("reading random bytes from the system: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let private = out.join(PRIVATE_KEY_FILE);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&private)
            .with_context(|| format!("creating {} (an existing key is never overwritten)", private.display()))?
    };
    file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", private.display()))?;
    let public = hex::encode(key.verifying_key().as_bytes());
    let public_path = out.join(PUBLIC_KEY_FILE);
    std::fs::write(&public_path, format!("{public}\n"))
        .with_context(|| format!("writing {}", public_path.display()))?;
    Ok(public)
}

/// Reads a private key written by [`keygen`].
pub fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the signing key {}", path.display()))?;
    let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
    let Some(seed) = bytes else {
        bail!("{} is not a signing key made by `opsagent-hub keygen` (64 hex digits)", path.display());
    };
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses a hex public key (as in `release.pub` and the agent's `update_public_key`).
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
    let Some(bytes) = bytes else { bail!("not an ed25519 public key (64 hex digits)") };
    VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("not an ed25519 public key: {e}"))
}

pub fn releases_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("releases")
}

/// `opsagent-hub release add`: copies `binary` into `<data-dir>/releases/<version>/` and signs its
/// manifest. Adding the same bytes again is a no-op; other bytes under an existing version are
/// refused (a version names one binary for ever).
pub fn add(data_dir: &Path, version: &str, binary: &Path, key: &SigningKey) -> anyhow::Result<Manifest> {
    check_version(version)?;
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    let signature = key.sign(opsagent_proto::release_message(version, &sha256, size).as_bytes());
    let manifest = Manifest {
        version: version.to_string(),
        sha256,
        size,
        signature: hex::encode(signature.to_bytes()),
        public_key: hex::encode(key.verifying_key().as_bytes()),
    };
    if let Some(existing) = manifest_of(data_dir, version)? {
        if existing.sha256 == manifest.sha256 && existing.public_key == manifest.public_key {
            return Ok(existing);
        }
        bail!("release {version} exists already with other contents or another key: give the new binary a new version");
    }
    let dir = releases_dir(data_dir).join(version);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_new(&dir.join("opsagent"), &bytes, 0o755)?;
    let text = serde_json::to_string_pretty(&manifest).context("encoding the manifest")?;
    // The manifest last: a release without one does not exist.
    write_new(&dir.join("manifest.json"), text.as_bytes(), 0o644)?;
    Ok(manifest)
}

/// The manifest of a stored release, if there is one.
pub fn manifest_of(data_dir: &Path, version: &str) -> anyhow::Result<Option<Manifest>> {
    check_version(version)?;
    let path = releases_dir(data_dir).join(version).join("manifest.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Every stored release, sorted by version (as [`compare_versions`] orders them).
pub fn list(data_dir: &Path) -> anyhow::Result<Vec<Manifest>> {
    let dir = releases_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut manifests = Vec::new();
    for entry in entries {
        let name = entry.with_context(|| format!("listing {}", dir.display()))?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Ok(Some(manifest)) = manifest_of(data_dir, name) {
            manifests.push(manifest);
        }
    }
    manifests.sort_by(|a, b| compare_versions(&a.version, &b.version));
    Ok(manifests)
}

/// Orders versions by their dot-separated parts, numerically where both parts are numbers.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| v.split(['.', '-', '+']).map(str::to_string).collect::<Vec<_>>();
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The `AgentUpdate` for an app's target: `url` is a path the agent resolves against its
/// `hub_url`, unless the hub knows its public URL.
pub fn update_frame(shared: &Shared, target: &Target) -> anyhow::Result<Option<String>> {
    let Some(manifest) = manifest_of(&shared.data_dir, &target.version)? else {
        tracing::error!(version = %target.version, "the app's target release is missing from the data directory");
        return Ok(None);
    };
    let path = format!("/releases/{}/opsagent", manifest.version);
    let url = match &shared.public_url {
        Some(public) => {
            let base = public.replacen("wss://", "https://", 1).replacen("ws://", "http://", 1);
            let base = base.trim_end_matches('/').trim_end_matches("/agent");
            format!("{base}{path}")
        }
        None => path,
    };
    let message = HubMessage::AgentUpdate {
        version: manifest.version,
        url,
        sha256: Some(manifest.sha256),
        signature: Some(manifest.signature),
        allow_downgrade: target.allow_downgrade,
    };
    Ok(Some(opsagent_proto::encode(&message)))
}

/// Whether an instance reporting `agent_version` should be sent the target.
pub fn needs_update(agent_version: Option<&str>, target: &Target) -> bool {
    agent_version != Some(target.version.as_str())
}

/// Sends the app's target to its connected agents that run another version; returns how many.
pub async fn send_updates(shared: &Shared, app: &str) -> anyhow::Result<usize> {
    let Some(target) = shared.store.target(app).await? else { return Ok(0) };
    let Some(frame) = update_frame(shared, &target)? else { return Ok(0) };
    let mut sent = 0;
    for instance in shared.store.list_instances(app).await? {
        if needs_update(instance.agent_version.as_deref(), &target)
            && shared.registry.send(app, &instance.id, Outgoing::Frame(frame.clone())).is_ok()
        {
            sent += 1;
        }
    }
    Ok(sent)
}

/// Why an upgrade order was refused: the operator's mistakes ([`OrderError::message`] and
/// [`OrderError::hint`] say what and how to fix it), or the hub's own failure.
#[derive(Debug)]
pub enum OrderError {
    /// Not a well-formed version.
    InvalidVersion(String),
    /// No release of this version in the data directory.
    UnknownVersion(String),
    /// The version is older than what some instances run, and the order does not allow downgrades:
    /// `(instance, its agent version)`.
    Downgrade {
        version: String,
        newer: Vec<(String, String)>,
    },
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for OrderError {
    fn from(error: anyhow::Error) -> OrderError {
        OrderError::Internal(error)
    }
}

impl OrderError {
    /// What was wrong, for the operator.
    pub fn message(&self) -> String {
        match self {
            OrderError::InvalidVersion(message) => message.clone(),
            OrderError::UnknownVersion(version) => format!("there is no release {version} on this hub"),
            OrderError::Downgrade { version, newer } => {
                const SHOWN: usize = 5;
                let mut named: Vec<String> =
                    newer.iter().take(SHOWN).map(|(id, v)| format!("`{id}` runs {v}")).collect();
                if newer.len() > SHOWN {
                    named.push(format!("{} more", newer.len() - SHOWN));
                }
                format!(
                    "{version} is older than the agent of {} instance(s) ({}): that is a downgrade, and the order does not allow one",
                    newer.len(),
                    named.join(", ")
                )
            }
            OrderError::Internal(_) => "internal error".to_string(),
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            OrderError::InvalidVersion(_) => None,
            OrderError::UnknownVersion(_) => {
                Some("add it with `opsagent-hub release add --version V --binary PATH --signing-key KEY`")
            }
            OrderError::Downgrade { .. } => {
                Some("order it again with `--allow-downgrade` (in the API: `\"allow_downgrade\": true`)")
            }
            OrderError::Internal(_) => None,
        }
    }
}

/// What an accepted upgrade order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    pub version: String,
    pub allow_downgrade: bool,
    /// Connected agents on another version that were sent the order now (the others get it at
    /// their next handshake).
    pub sent_to: usize,
}

/// Orders the agents of `app` (which must exist) to run `version`: the one path of the API's
/// `POST /apps/{app}/upgrade` and the dashboard's form. Checks that the release exists and that it
/// is not older than what an instance last reported running unless `allow_downgrade` (the agent
/// refuses such an order too, but only once it got it: here the operator hears it at once), then
/// stores the app's target and sends `AgentUpdate` to the connected agents on another version.
pub async fn order_upgrade(
    shared: &Shared,
    app: &str,
    version: &str,
    allow_downgrade: bool,
) -> Result<Ordered, OrderError> {
    check_version(version).map_err(|e| OrderError::InvalidVersion(e.to_string()))?;
    if manifest_of(&shared.data_dir, version)?.is_none() {
        return Err(OrderError::UnknownVersion(version.to_string()));
    }
    if !allow_downgrade {
        let newer: Vec<(String, String)> = shared
            .store
            .list_instances(app)
            .await?
            .into_iter()
            .filter_map(|i| Some((i.id, i.agent_version?)))
            .filter(|(_, running)| compare_versions(version, running).is_lt())
            .collect();
        if !newer.is_empty() {
            return Err(OrderError::Downgrade { version: version.to_string(), newer });
        }
    }
    let target = Target { version: version.to_string(), allow_downgrade };
    shared.store.set_target(app, Some(&target)).await?;
    let sent_to = send_updates(shared, app).await?;
    tracing::info!(app_id = %app, version = %version, allow_downgrade, sent_to, "agent upgrade ordered");
    shared.events.publish(app, None, crate::events::EventKind::Upgrade);
    Ok(Ordered { version: version.to_string(), allow_downgrade, sent_to })
}

/// When a release was added (its manifest's modification time), as RFC 3339 UTC.
pub fn added_at(data_dir: &Path, version: &str) -> Option<String> {
    check_version(version).ok()?;
    let path = releases_dir(data_dir).join(version).join("manifest.json");
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let secs = modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(rfc3339(secs))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (days to a civil date: H. Hinnant's algorithm).
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, (rest % 3600) / 60, rest % 60)
}

/// `GET /releases/{version}/opsagent` (the binary) and `GET /releases/{version}/manifest.json`.
pub async fn download(
    State(shared): State<Arc<Shared>>,
    UrlPath((version, file)): UrlPath<(String, String)>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such release").into_response();
    if check_version(&version).is_err() || !matches!(file.as_str(), "opsagent" | "manifest.json") {
        return not_found();
    }
    // Only released versions (with a manifest) are served.
    if !matches!(manifest_of(&shared.data_dir, &version), Ok(Some(_))) {
        return not_found();
    }
    let path = releases_dir(&shared.data_dir).join(&version).join(&file);
    let opened = tokio::fs::File::open(&path).await;
    let (file_handle, size) = match opened {
        Ok(f) => match f.metadata().await {
            Ok(meta) => (f, meta.len()),
            Err(_) => return not_found(),
        },
        Err(_) => return not_found(),
    };
    let content_type = if file == "opsagent" { "application/octet-stream" } else { "application/json" };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file_handle));
    ([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_LENGTH, size.to_string())], body)
        .into_response()
}

/// Writes a file of the release (temp name, fsync, rename).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn a_release_is_signed_over_its_domain_separated_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let public = keygen(dir.path()).unwrap();
        let key = read_signing_key(&dir.path().join(PRIVATE_KEY_FILE)).unwrap();
        let binary = dir.path().join("bin");
        std::fs::write(&binary, b"#!/bin/sh\n").unwrap();
        let manifest = add(dir.path(), "1.2.3", &binary, &key).unwrap();
        assert_eq!(manifest.public_key, public);
        let verifying = parse_public_key(&public).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&hex::decode(&manifest.signature).unwrap()).unwrap();
        let message = opsagent_proto::release_message("1.2.3", &manifest.sha256, 10);
        assert!(verifying.verify(message.as_bytes(), &signature).is_ok());
        assert!(verifying.verify(b"1.2.3", &signature).is_err());
        // The same bytes again: fine; other bytes under the same version: refused.
        assert_eq!(add(dir.path(), "1.2.3", &binary, &key).unwrap(), manifest);
        std::fs::write(&binary, b"#!/bin/sh\nexit 1\n").unwrap();
        assert!(add(dir.path(), "1.2.3", &binary, &key).is_err());
        assert!(keygen(dir.path()).is_err(), "a private key is never overwritten");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(PRIVATE_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("0.10.0", "0.9.1"), Greater);
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert!(check_version("../x").is_err());
        assert!(check_version("0.2.0-rc.1").is_ok());
    }

    #[test]
    fn release_dates_read_as_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_723), "2000-02-29T01:02:03Z");
        assert_eq!(rfc3339(1_795_651_200), "2026-11-26T00:00:00Z");
    }
}

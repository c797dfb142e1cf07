//! Self-upgrade with rollback. The layout on the instance (`<root>` is `install_root`, `/` there):
//! `<root>/opt/madeira/versions/<v>/opsagent`, and `<root>/opt/madeira/current`, a symlink to
//! `versions/<v>` that is only ever replaced atomically (a symlink at a temp name renamed over it).
//!
//! The steps, each persisted in `<state dir>/upgrade.json` (`from`, `to`, `phase`, `deadline`,
//! `reason`) *before* it is taken, and reported to the hub (`UpgradeStatus`, through the outbox):
//! `downloading` (to `versions/<v>/opsagent.part`) → `downloaded` → `verified` (sha256 and the
//! ed25519 signature against the pinned `update_public_key`; the file renamed to `opsagent`) →
//! `installed` (deadline set; `current` swapped; the process re-executes itself from `current`) →
//! `confirmed` once the new version got the hub's `Welcome` before the deadline. Otherwise it is
//! rolled back: `rolling_back` (reason kept) → `current` swapped back → re-exec → the previous
//! version finds `rolling_back`, records `rolled_back` and tells the hub why. Refusals (`refused`)
//! install nothing. `<root>/opt/madeira/stable` points at the last confirmed version: cron runs
//! the watchdog from there, so a new version that cannot even start cannot disable its own rescue. Whatever kills the agent between two steps, [`recover`] at the next start and
//! `opsagent watchdog` finish the job: an interrupted download is `failed` (retried when the hub
//! asks again), an unconfirmed install is rolled back.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use opsagent_proto::AgentMessage;
use opsagent_states::ctx::Owner;
use opsagent_states::fsutil::write_atomic;
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::outbox::Outbox;
use crate::version;

/// An upgrade order from the hub (`AgentUpdate`).
#[derive(Debug, Clone)]
pub struct UpdateOrder {
    pub version: String,
    pub url: String,
    pub sha256: Option<String>,
    pub signature: Option<String>,
    pub allow_downgrade: bool,
}

/// `<state dir>/upgrade.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeState {
    pub from: String,
    pub to: String,
    pub phase: String,
    /// Unix seconds by which the new version must have confirmed (from `installed` on).
    #[serde(default)]
    pub deadline: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// The release itself was refused (its signature): the same release is not tried again.
    #[serde(default)]
    pub release_refused: bool,
}

pub const DOWNLOADING: &str = "downloading";
pub const DOWNLOADED: &str = "downloaded";
pub const VERIFIED: &str = "verified";
pub const INSTALLED: &str = "installed";
pub const CONFIRMED: &str = "confirmed";
pub const ROLLING_BACK: &str = "rolling_back";
pub const ROLLED_BACK: &str = "rolled_back";
pub const REFUSED: &str = "refused";
pub const FAILED: &str = "failed";

/// The installed layout under `install_root`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub madeira: PathBuf,
}

impl Layout {
    pub fn new(install_root: &Path) -> Layout {
        Layout { madeira: install_root.join("opt/madeira") }
    }

    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.madeira.join("versions").join(version)
    }

    pub fn current(&self) -> PathBuf {
        self.madeira.join("current")
    }

    pub fn current_binary(&self) -> PathBuf {
        self.current().join("opsagent")
    }

    /// The version `current` points at (`versions/<v>`), if it exists.
    pub fn current_version(&self) -> Option<String> {
        let target = std::fs::read_link(self.current()).ok()?;
        target.file_name()?.to_str().map(str::to_string)
    }

    /// Points `current` at `versions/<version>`: a new symlink at a temp name renamed over it.
    pub fn point_current_at(&self, version: &str) -> anyhow::Result<()> {
        self.point_link_at("current", version)
    }

    /// Points `stable` (the last confirmed version, which cron runs the watchdog from, so that a
    /// broken new version cannot take the watchdog down with it) at `versions/<version>`.
    pub fn point_stable_at(&self, version: &str) -> anyhow::Result<()> {
        self.point_link_at("stable", version)
    }

    fn point_link_at(&self, name: &str, version: &str) -> anyhow::Result<()> {
        let link = self.madeira.join(name);
        let temp = self.madeira.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let target = Path::new("versions").join(version);
        std::os::unix::fs::symlink(&target, &temp).with_context(|| format!("creating {}", temp.display()))?;
        std::fs::rename(&temp, &link)
            .with_context(|| format!("renaming {} over {}", temp.display(), link.display()))?;
        sync_dir(&self.madeira)
    }
}

pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("upgrade.json")
}

pub fn load(state_dir: &Path) -> Option<UpgradeState> {
    let text = std::fs::read_to_string(state_path(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn save(state_dir: &Path, state: &UpgradeState) -> anyhow::Result<()> {
    let path = state_path(state_dir);
    let text = serde_json::to_string(state).context("encoding the upgrade state")?;
    write_atomic(&path, text.as_bytes(), 0o600, Owner::default()).with_context(|| format!("writing {}", path.display()))
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Stores the state, reports it to the hub, and (tests only) dies here if `OPSAGENT_TEST_KILL_AT`
/// names this phase, as a power cut would.
fn step(config: &Config, outbox: &Outbox, state: &UpgradeState) -> anyhow::Result<()> {
    save(&config.state_dir, state)?;
    report(outbox, state);
    tracing::info!(from = %state.from, to = %state.to, phase = %state.phase, reason = ?state.reason, "upgrade");
    die_if_asked(&state.phase);
    Ok(())
}

/// Test hook: `OPSAGENT_TEST_KILL_AT=<phase>` makes the agent SIGKILL itself right after persisting
/// that phase (`restarted`: in the new version, before it confirms).
pub fn die_if_asked(phase: &str) {
    if std::env::var("OPSAGENT_TEST_KILL_AT").is_ok_and(|p| p == phase) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

pub fn report(outbox: &Outbox, state: &UpgradeState) {
    let result = outbox.append(|seq| AgentMessage::UpgradeStatus {
        seq,
        version: state.to.clone(),
        from: Some(state.from.clone()),
        phase: state.phase.clone(),
        reason: state.reason.clone(),
    });
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "cannot store an upgrade report in the outbox");
    }
}

/// Carries out an order at once. Returns only when nothing was installed (refused, failed, or not
/// needed); after a successful install the process has become the new version.
pub async fn upgrade(config: &Config, outbox: &Outbox, order: UpdateOrder) {
    if let Some(prepared) = prepare(config, outbox, order).await {
        install(config, outbox, prepared);
    }
}

/// A release downloaded and verified, ready to be installed at the round boundary.
pub struct Prepared {
    order: UpdateOrder,
    state: UpgradeState,
}

/// Downloads and verifies the order's release into `versions/<v>/opsagent` (a round may run
/// meanwhile). `None` when there is nothing to install (a refusal or failure is recorded and reported).
pub async fn prepare(config: &Config, outbox: &Outbox, order: UpdateOrder) -> Option<Prepared> {
    let from = version::version().to_string();
    if order.version == from {
        tracing::info!(version = %from, "upgrade order for the running version: nothing to do");
        return None;
    }
    if let Some(previous) = load(&config.state_dir) {
        let same = previous.to == order.version && previous.sha256 == order.sha256;
        // A rolled-back release, or one whose signature failed, would fail again; a refusal for
        // another reason (no key yet, a downgrade not allowed then, a corrupted download) is retried.
        if same && (previous.phase == ROLLED_BACK || (previous.phase == REFUSED && previous.release_refused)) {
            tracing::warn!(version = %order.version, phase = %previous.phase, reason = ?previous.reason,
                "not retrying an upgrade that already failed here; the hub needs a new release");
            return None;
        }
    }
    let mut state = UpgradeState {
        from: from.clone(),
        to: order.version.clone(),
        phase: DOWNLOADING.into(),
        deadline: None,
        reason: None,
        sha256: order.sha256.clone(),
        release_refused: false,
    };
    match try_prepare(config, outbox, &order, &mut state).await {
        Ok(()) => Some(Prepared { order, state }),
        Err(stop) => {
            end(config, outbox, &mut state, stop);
            None
        }
    }
}

/// Swaps `current` to a prepared release and re-executes it. Returns only if that failed (then
/// `current` is back on the running version, and the failure reported).
pub fn install(config: &Config, outbox: &Outbox, prepared: Prepared) {
    let Prepared { order, mut state } = prepared;
    match try_install(config, outbox, &order, &mut state) {
        Ok(never) => match never {},
        Err(stop) => end(config, outbox, &mut state, stop),
    }
}

fn end(config: &Config, outbox: &Outbox, state: &mut UpgradeState, Stop { phase, reason }: Stop) {
    tracing::error!(from = %state.from, to = %state.to, phase, reason = %reason, "upgrade not installed");
    state.phase = phase.into();
    state.release_refused = phase == REFUSED && reason.starts_with("bad signature");
    state.reason = Some(reason);
    state.deadline = None;
    if let Err(e) = save(&config.state_dir, state) {
        tracing::error!(error = %format!("{e:#}"), "cannot record the upgrade's end");
    }
    report(outbox, state);
}

enum Never {}

struct Stop {
    phase: &'static str,
    reason: String,
}

fn refuse(reason: impl Into<String>) -> Stop {
    Stop { phase: REFUSED, reason: reason.into() }
}

fn fail(error: anyhow::Error) -> Stop {
    Stop { phase: FAILED, reason: format!("{error:#}") }
}

async fn try_prepare(
    config: &Config,
    outbox: &Outbox,
    order: &UpdateOrder,
    state: &mut UpgradeState,
) -> Result<(), Stop> {
    if version::compare(&order.version, &state.from).is_lt() && !order.allow_downgrade {
        return Err(refuse(format!(
            "{} is older than the running {}: a downgrade needs `opsagent-hub upgrade --allow-downgrade`",
            order.version, state.from
        )));
    }
    let Some(key) = config.update_public_key else {
        return Err(refuse("no `update_public_key` in the agent's configuration: it installs no release"));
    };
    let (Some(sha256), Some(signature)) = (order.sha256.as_deref(), order.signature.as_deref()) else {
        return Err(refuse("the order carries no sha256 or no signature"));
    };
    let valid_version =
        !order.version.is_empty() && order.version.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !valid_version || order.version.starts_with('.') {
        return Err(refuse(format!("`{}` is not a valid version", order.version)));
    }
    let layout = Layout::new(&config.install_root);
    if layout.current_version().as_deref() != Some(state.from.as_str()) {
        return Err(refuse(format!(
            "this agent does not run from {} → versions/{}: install it with the userdata script to upgrade it",
            layout.current().display(),
            state.from
        )));
    }
    let dir = layout.version_dir(&order.version);
    let part = dir.join("opsagent.part");
    step(config, outbox, state).map_err(fail)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display())).map_err(fail)?;
    let url = super::fetch::resolve(&order.url, &config.hub_url).map_err(|e| refuse(format!("{e:#}")))?;
    let downloaded =
        super::fetch::download(&url, || super::connection::tls_config(config).map(std::sync::Arc::new), &part)
            .await
            .with_context(|| format!("downloading {url}"));
    let (actual_sha256, size) = match downloaded {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(fail(e));
        }
    };
    state.phase = DOWNLOADED.into();
    step(config, outbox, state).map_err(fail)?;

    if let Err(reason) = verify(&key, &order.version, sha256, signature, &actual_sha256, size) {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_dir(&dir);
        return Err(refuse(reason));
    }
    let binary = dir.join("opsagent");
    let installed = (|| -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", part.display()))?;
        std::fs::rename(&part, &binary)
            .with_context(|| format!("renaming {} to {}", part.display(), binary.display()))?;
        sync_dir(&dir)
    })();
    installed.map_err(fail)?;
    state.phase = VERIFIED.into();
    step(config, outbox, state).map_err(fail)?;
    Ok(())
}

fn try_install(config: &Config, outbox: &Outbox, order: &UpdateOrder, state: &mut UpgradeState) -> Result<Never, Stop> {
    let layout = Layout::new(&config.install_root);
    if layout.current_version().as_deref() != Some(state.from.as_str()) {
        return Err(fail(anyhow::anyhow!("{} moved while the release was prepared", layout.current().display())));
    }
    state.phase = INSTALLED.into();
    state.deadline = Some(now_secs() + config.upgrade_confirm.as_secs());
    step(config, outbox, state).map_err(fail)?;
    if let Err(e) = layout.point_current_at(&order.version) {
        let _ = layout.point_current_at(&state.from);
        return Err(fail(e));
    }
    die_if_asked("swapped");
    tracing::info!(to = %order.version, "restarting into the new version");
    let error = exec_current(&layout);
    // exec failed: nothing runs the new version, so go back at once.
    let _ = layout.point_current_at(&state.from);
    Err(fail(error))
}

/// Checks what was downloaded against the order and the pinned key.
fn verify(
    key: &ed25519_dalek::VerifyingKey,
    version: &str,
    expected_sha256: &str,
    signature: &str,
    actual_sha256: &str,
    size: u64,
) -> Result<(), String> {
    if !expected_sha256.eq_ignore_ascii_case(actual_sha256) {
        return Err(format!("sha256 mismatch: the order says {expected_sha256}, the download is {actual_sha256}"));
    }
    let signature = hex::decode(signature)
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or("the signature is not 64 hex-encoded bytes")?;
    let message = opsagent_proto::release_message(version, actual_sha256, size);
    key.verify_strict(message.as_bytes(), &signature)
        .map_err(|_| "bad signature: the release was not signed by the key pinned in `update_public_key`".to_string())
}

/// Replaces this process with `current/opsagent`, same arguments. Returns only on failure.
pub fn exec_current(layout: &Layout) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let binary = layout.current_binary();
    let error = std::process::Command::new(&binary).args(std::env::args_os().skip(1)).exec();
    anyhow::Error::new(error).context(format!("executing {}", binary.display()))
}

/// What a starting daemon must do about an upgrade in progress.
pub enum Pending {
    Nothing,
    /// This is the new version: reach the hub by `deadline` (unix seconds) or roll back.
    Confirm {
        deadline: u64,
    },
}

/// At start: finishes what an interrupted upgrade left (see the module doc).
pub fn recover(config: &Config, outbox: &Outbox) -> Pending {
    let Some(mut state) = load(&config.state_dir) else { return Pending::Nothing };
    let running = version::version();
    let layout = Layout::new(&config.install_root);
    match state.phase.as_str() {
        DOWNLOADING | DOWNLOADED | VERIFIED => {
            // Stopped before `current` moved: this is the old version; forget the half-done work.
            let _ = std::fs::remove_file(layout.version_dir(&state.to).join("opsagent.part"));
            state.reason = Some(format!("the agent stopped during the upgrade (phase `{}`)", state.phase));
            state.phase = FAILED.into();
        }
        INSTALLED if running == state.to => {
            die_if_asked("restarted");
            let deadline = state.deadline.unwrap_or_else(|| now_secs() + config.upgrade_confirm.as_secs());
            tracing::info!(from = %state.from, to = %state.to, deadline_in_secs = deadline.saturating_sub(now_secs()),
                "new version: confirming the upgrade once the hub answers");
            return Pending::Confirm { deadline };
        }
        INSTALLED | ROLLING_BACK => {
            // The previous version runs again (a rollback, or `current` never moved).
            if layout.current_version().as_deref() != Some(running) {
                let _ = layout.point_current_at(running);
            }
            if state.reason.is_none() {
                state.reason = Some(format!("version {} did not confirm", state.to));
            }
            state.phase = ROLLED_BACK.into();
        }
        _ => return Pending::Nothing,
    }
    state.deadline = None;
    if let Err(e) = save(&config.state_dir, &state) {
        tracing::error!(error = %format!("{e:#}"), "cannot record the upgrade's end");
    }
    report(outbox, &state);
    tracing::warn!(from = %state.from, to = %state.to, phase = %state.phase, reason = ?state.reason, "upgrade ended");
    Pending::Nothing
}

/// The new version reached the hub: the upgrade is done.
pub fn confirm(config: &Config, outbox: &Outbox) {
    let Some(mut state) = load(&config.state_dir) else { return };
    state.phase = CONFIRMED.into();
    state.deadline = None;
    state.reason = None;
    if let Err(e) = save(&config.state_dir, &state) {
        tracing::error!(error = %format!("{e:#}"), "cannot record the upgrade's confirmation");
    }
    if let Err(e) = Layout::new(&config.install_root).point_stable_at(&state.to) {
        tracing::error!(error = %format!("{e:#}"), "cannot record the new version as the stable one");
    }
    report(outbox, &state);
    tracing::info!(from = %state.from, to = %state.to, "upgrade confirmed");
}

/// The new version failed to confirm: back to the previous one (re-exec). Returns only if that
/// could not even start.
pub fn roll_back(config: &Config, reason: &str) -> anyhow::Error {
    let Some(mut state) = load(&config.state_dir) else { return anyhow::anyhow!("no upgrade to roll back") };
    state.phase = ROLLING_BACK.into();
    state.reason = Some(reason.to_string());
    if let Err(e) = save(&config.state_dir, &state) {
        return e;
    }
    tracing::error!(from = %state.to, to = %state.from, reason, "rolling the upgrade back");
    let layout = Layout::new(&config.install_root);
    if let Err(e) = layout.point_current_at(&state.from) {
        return e;
    }
    exec_current(&layout)
}

/// How long until `deadline` (unix seconds).
pub fn until(deadline: u64) -> Duration {
    Duration::from_secs(deadline.saturating_sub(now_secs()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn verification_needs_the_right_sha256_and_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let sha = "ab".repeat(32);
        let sign = |k: &SigningKey, v: &str, size: u64| {
            hex::encode(k.sign(opsagent_proto::release_message(v, &sha, size).as_bytes()).to_bytes())
        };
        let public = key.verifying_key();
        assert!(verify(&public, "2", &sha, &sign(&key, "2", 10), &sha, 10).is_ok());
        assert!(verify(&public, "2", &sha, &sign(&other, "2", 10), &sha, 10).unwrap_err().contains("bad signature"));
        assert!(verify(&public, "2", &sha, &sign(&key, "3", 10), &sha, 10).is_err(), "signed for another version");
        assert!(verify(&public, "2", &sha, &sign(&key, "2", 11), &sha, 10).is_err(), "signed for another size");
        assert!(verify(&public, "2", &"cd".repeat(32), &sign(&key, "2", 10), &sha, 10).unwrap_err().contains("sha256"));
    }

    #[test]
    fn current_is_swapped_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.version_dir("1")).unwrap();
        std::fs::create_dir_all(layout.version_dir("2")).unwrap();
        layout.point_current_at("1").unwrap();
        assert_eq!(layout.current_version().as_deref(), Some("1"));
        layout.point_current_at("2").unwrap();
        assert_eq!(layout.current_version().as_deref(), Some("2"));
        assert_eq!(std::fs::read_link(layout.current()).unwrap(), Path::new("versions/2"));
    }
}

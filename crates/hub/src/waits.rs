//! Releasing `meta.wait` states: automatically, once every state a wait references (on instances
//! of the same app) has succeeded in the current recipe version, and by hand (API, CLI).
//!
//! A release is stored first (once per app, instance, version and wait), then sent as `State` to
//! the instance if it is connected; an agent that connects later gets it in its handshake.

use opsagent_proto::HubMessage;

use crate::registry::Outgoing;
use crate::shared::Shared;

/// One `meta.wait` of the current recipe and what it waits for: `(instance, state id)` pairs,
/// `None` for a reference that cannot be read (such a wait is only released by hand).
#[derive(Debug, Clone)]
pub struct WaitSpec {
    pub state_id: String,
    pub references: Vec<Option<(String, String)>>,
}

impl WaitSpec {
    /// Whether the hub may release this wait by itself (it references something, all readable).
    fn automatic(&self) -> bool {
        !self.references.is_empty() && self.references.iter().all(Option::is_some)
    }
}

/// Reads `INSTANCE/STATE_ID` or the original's `@{INSTANCE.state.STATE_ID}`.
pub fn parse_reference(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let (instance, state) = match text.strip_prefix("@{") {
        Some(rest) => rest.strip_suffix('}')?.split_once(".state.")?,
        None => text.split_once('/')?,
    };
    if instance.is_empty() || state.is_empty() {
        return None;
    }
    Some((instance.to_string(), state.to_string()))
}

/// Whether a success of `state_id` on `instance` in `recipe_version` may release a wait.
pub fn is_referenced(shared: &Shared, app: &str, instance: &str, state_id: &str, recipe_version: u64) -> bool {
    let Some(recipe) = shared.recipes.cached(app) else {
        // Not loaded yet: let the full check decide.
        return true;
    };
    recipe.version == recipe_version
        && recipe.waits.iter().any(|w| w.references.iter().flatten().any(|(i, s)| i == instance && s == state_id))
}

/// Releases, on every instance of the app, every wait of the current version whose references
/// all succeeded. Returns how many releases it made.
pub async fn release_ready(shared: &Shared, app: &str) -> anyhow::Result<usize> {
    let Some(recipe) = shared.recipes.current(&shared.store, app).await? else {
        return Ok(0);
    };
    if !recipe.waits.iter().any(WaitSpec::automatic) {
        return Ok(0);
    }
    let succeeded = shared.store.succeeded_in_app(app, recipe.version).await?;
    let ready: Vec<&WaitSpec> = recipe
        .waits
        .iter()
        .filter(|w| w.automatic())
        .filter(|w| w.references.iter().flatten().all(|pair| succeeded.contains(pair)))
        .collect();
    if ready.is_empty() {
        return Ok(0);
    }
    let released = shared.store.released_in_app(app, recipe.version).await?;
    let instances = shared.store.list_instances(app).await?;
    let mut count = 0;
    for instance in &instances {
        for wait in &ready {
            if released.contains(&(instance.id.clone(), wait.state_id.clone())) {
                continue;
            }
            if release(shared, app, &instance.id, recipe.version, &wait.state_id).await? {
                tracing::info!(app_id = app, instance_id = %instance.id, state_id = %wait.state_id,
                    recipe_version = recipe.version, "wait released: its references succeeded");
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Releases a wait by hand (API, CLI, dashboard) on each of `instances`, then whatever became
/// ready. Returns the instances released now and those released already.
pub async fn release_by_hand(
    shared: &Shared,
    app: &str,
    instances: &[String],
    recipe_version: u64,
    state_id: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut released = Vec::new();
    let mut already = Vec::new();
    for id in instances {
        if release(shared, app, id, recipe_version, state_id).await? {
            tracing::info!(app_id = %app, instance_id = %id, state_id = %state_id, recipe_version, "wait released by hand");
            released.push(id.clone());
        } else {
            already.push(id.clone());
        }
    }
    release_ready(shared, app).await?;
    Ok((released, already))
}

/// Stores a release and sends it if the instance is connected; `false` if it was released already.
pub async fn release(
    shared: &Shared,
    app: &str,
    instance: &str,
    recipe_version: u64,
    state_id: &str,
) -> anyhow::Result<bool> {
    if !shared.store.release_wait(app, instance, recipe_version, state_id).await? {
        return Ok(false);
    }
    shared.metrics.wait_released();
    let _ = shared.registry.send(app, instance, done_frame(recipe_version, state_id));
    shared.events.publish(app, Some(instance), crate::dashboard::EventKind::Release);
    Ok(true)
}

/// The `State` (DONE) message for a wait.
pub fn done_frame(recipe_version: u64, state_id: &str) -> Outgoing {
    Outgoing::Frame(opsagent_proto::encode(&HubMessage::State { recipe_version, id: state_id.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::parse_reference;

    #[test]
    fn references_in_both_forms() {
        let pair = |i: &str, s: &str| Some((i.to_string(), s.to_string()));
        assert_eq!(parse_reference("db-1/migrate"), pair("db-1", "migrate"));
        assert_eq!(parse_reference("@{db-1.state.migrate}"), pair("db-1", "migrate"));
        assert_eq!(parse_reference("@{db.1.state.3}"), pair("db.1", "3"));
        assert_eq!(parse_reference(" db/x "), pair("db", "x"));
        assert_eq!(parse_reference("nothing"), None);
        assert_eq!(parse_reference("@{db.migrate}"), None);
        assert_eq!(parse_reference("/x"), None);
        assert_eq!(parse_reference("@{db.state.x"), None);
    }
}

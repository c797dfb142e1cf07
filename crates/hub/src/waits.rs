//! Releasing `meta.wait` states: automatically, once every state a wait references has succeeded
//! in the current recipe of the instance that runs it, and by hand (API, CLI, dashboard).
//!
//! A reference is `@{NAME.state.N}` (the original's form; N is a state id, or the state's 1-based
//! position in NAME's recipe, as the IDE numbers them) or `NAME/N`. NAME is an instance, or a
//! component: then **every** member must have succeeded (a component with no member holds the
//! wait). A release is stored first (once per app, instance, version and wait), then sent as
//! `State` to the instance if it is connected; an agent that connects later gets it in its
//! handshake.

use std::collections::{HashMap, HashSet};

use opsagent_proto::HubMessage;

use crate::recipe::{AppRecipes, CurrentRecipe};
use crate::registry::Outgoing;
use crate::shared::Shared;
use crate::store::{InstanceRow, StateStatusRow};

/// One `meta.wait` of a recipe and what it waits for: `(name, state)` pairs, `None` for a
/// reference that cannot be read (such a wait is only released by hand).
#[derive(Debug, Clone)]
pub struct WaitSpec {
    pub state_id: String,
    pub references: Vec<Option<(String, String)>>,
}

impl WaitSpec {
    /// Whether the hub may release this wait by itself (it references something, all readable).
    pub fn automatic(&self) -> bool {
        !self.references.is_empty() && self.references.iter().all(Option::is_some)
    }
}

/// Reads `NAME/STATE` or the original's `@{NAME.state.STATE}`.
pub fn parse_reference(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let (instance, state) = match text.strip_prefix("@{") {
        Some(rest) => rest.strip_suffix('}')?.rsplit_once(".state.")?,
        None => text.split_once('/')?,
    };
    if instance.is_empty() || state.is_empty() {
        return None;
    }
    Some((instance.to_string(), state.to_string()))
}

/// What a wait still waits for, in words: "db-1 state 3 (`install-mysql`)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending(pub String);

/// The app as waits see it: members by component, current recipes, succeeded states.
pub struct Progress {
    instances: Vec<InstanceRow>,
    recipes: std::sync::Arc<AppRecipes>,
    /// (instance, state id) that succeeded in the instance's current recipe.
    succeeded: HashSet<(String, String)>,
}

impl Progress {
    pub async fn load(shared: &Shared, app: &str) -> anyhow::Result<Progress> {
        let recipes = shared.recipes.app(&shared.store, app).await?;
        let instances = shared.store.list_instances(app).await?;
        Ok(Progress::new(recipes, instances, &shared.store.state_statuses(app).await?))
    }

    /// From what the caller read already: the app's recipes, instances and latest state reports.
    pub fn new(
        recipes: std::sync::Arc<AppRecipes>,
        instances: Vec<InstanceRow>,
        statuses: &[StateStatusRow],
    ) -> Progress {
        let versions: HashMap<&str, u64> = recipes.instances.iter().map(|(i, r)| (i.as_str(), r.version)).collect();
        let succeeded = statuses
            .iter()
            .filter(|s| s.status == "ok" || s.status == "changed")
            .filter(|s| versions.get(s.instance_id.as_str()) == Some(&s.recipe_version))
            .map(|s| (s.instance_id.clone(), s.state_id.clone()))
            .collect();
        Progress { instances, recipes, succeeded }
    }

    /// The first reference of `wait` not satisfied yet, `None` when all are.
    pub fn pending(&self, wait: &WaitSpec) -> Option<Pending> {
        for reference in &wait.references {
            let Some((name, state)) = reference else {
                return Some(Pending("a reference the hub cannot read (release it by hand)".into()));
            };
            if let Some(p) = self.pending_reference(name, state) {
                return Some(p);
            }
        }
        None
    }

    fn pending_reference(&self, name: &str, state: &str) -> Option<Pending> {
        let mut targets: Vec<&str> =
            self.instances.iter().filter(|i| i.component == name).map(|i| i.id.as_str()).collect();
        if targets.is_empty() {
            if self.instances.iter().any(|i| i.id == name) {
                targets.push(name);
            } else if self.recipes.source.as_ref().is_some_and(|s| s.component_names().contains(name)) {
                return Some(Pending(format!("component `{name}` to have an instance")));
            } else {
                return Some(Pending(format!("`{name}`, which is no instance or component of the app")));
            }
        }
        for target in targets {
            let recipe: Option<&CurrentRecipe> = self.recipes.instances.get(target).map(|r| r.as_ref());
            let Some(recipe) = recipe else {
                return Some(Pending(format!("{target} state {state} ({target} has no recipe yet)")));
            };
            let Some(id) = recipe.resolve_state(state) else {
                return Some(Pending(format!(
                    "{target} state {state} (its recipe has no such state; it has {})",
                    recipe.ids.len()
                )));
            };
            if !self.succeeded.contains(&(target.to_string(), id.to_string())) {
                return Some(Pending(if id == state {
                    format!("{target} state `{id}`")
                } else {
                    format!("{target} state {state} (`{id}`)")
                }));
            }
        }
        None
    }
}

/// Whether a success on the app may release a wait (cheap; the full check decides).
pub fn may_release(shared: &Shared, app: &str) -> bool {
    shared.recipes.cached(app).is_none_or(|r| r.has_waits())
}

/// Releases, on every instance of the app, every wait of its current recipe whose references all
/// succeeded. Returns how many releases it made.
pub async fn release_ready(shared: &Shared, app: &str) -> anyhow::Result<usize> {
    let recipes = shared.recipes.app(&shared.store, app).await?;
    if !recipes.instances.values().any(|r| r.waits.iter().any(WaitSpec::automatic)) {
        return Ok(0);
    }
    let progress = Progress::load(shared, app).await?;
    let released = released_now(shared.store.released_all(app).await?, &recipes);
    let mut count = 0;
    for (instance, recipe) in &recipes.instances {
        for wait in recipe.waits.iter().filter(|w| w.automatic()) {
            if released.contains(&(instance.clone(), wait.state_id.clone())) {
                continue;
            }
            if progress.pending(wait).is_some() {
                continue;
            }
            if release(shared, app, instance, recipe.version, &wait.state_id).await? {
                tracing::info!(app_id = app, instance_id = %instance, state_id = %wait.state_id,
                    recipe_version = recipe.version, "wait released: its references succeeded");
                count += 1;
            }
        }
    }
    Ok(count)
}

/// What an instance's recipe waits for, in recipe order: `(state id, words)` for each `meta.wait`
/// not released yet ("waiting for db-1 state 3 (`install-mysql`)") and each held state (its reason).
/// `released` holds the (instance, wait) pairs released in each instance's current version.
pub fn waiting_for(
    progress: &Progress,
    instance: &str,
    recipe: &CurrentRecipe,
    released: &HashSet<(String, String)>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for wait in &recipe.waits {
        if released.contains(&(instance.to_string(), wait.state_id.clone())) {
            continue;
        }
        if let Some(Pending(what)) = progress.pending(wait) {
            out.push((wait.state_id.clone(), format!("waiting for {what}")));
        }
    }
    for (id, reason) in &recipe.holds {
        out.push((id.clone(), reason.clone()));
    }
    out.sort_by_key(|(id, _)| recipe.order.get(id).copied().unwrap_or(usize::MAX));
    out
}

/// Of every release of the app (`Store::released_all`), the (instance, wait) pairs of each
/// instance's current recipe version.
pub fn released_now(all: HashSet<(String, u64, String)>, recipes: &AppRecipes) -> HashSet<(String, String)> {
    all.into_iter()
        .filter(|(i, v, _)| recipes.instances.get(i).is_some_and(|r| r.version == *v))
        .map(|(i, _, s)| (i, s))
        .collect()
}

/// Releases a wait by hand (API, CLI, dashboard) on each of `instances` (with the version each
/// runs), then whatever became ready. Returns the instances released now and those released already.
pub async fn release_by_hand(
    shared: &Shared,
    app: &str,
    instances: &[(String, u64)],
    state_id: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut released = Vec::new();
    let mut already = Vec::new();
    for (id, recipe_version) in instances {
        if release(shared, app, id, *recipe_version, state_id).await? {
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
    shared.events.publish(app, Some(instance), crate::events::EventKind::Release);
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

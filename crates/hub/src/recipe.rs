//! Recipes as the hub sees them: validated on push (shape and parameters only — the hub never
//! checks or applies a state), and each app's current version kept parsed in memory with its
//! encoded `RecipeMetadata` frame and its `meta.wait` references.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opsagent_proto::HubMessage;
use opsagent_recipe::Diagnostic;
use opsagent_states::Module;
use serde_json::Value;

use opsagent_recipe::node::{self, Node, Value as NodeValue};

use crate::registry::Outgoing;
use crate::shared::Shared;
use crate::store::{Pushed, RecipeRow, Store};
use crate::waits::{self, parse_reference, WaitSpec};

/// An app's current recipe version, ready to send.
#[derive(Debug)]
pub struct CurrentRecipe {
    pub version: u64,
    /// The wire form `{"recipe_version", "state": [...]}`.
    pub body: Value,
    /// The encoded `RecipeMetadata` frame.
    pub frame: Arc<str>,
    /// State id → position in the recipe.
    pub order: HashMap<String, usize>,
    /// The `meta.wait` states and what they wait for.
    pub waits: Vec<WaitSpec>,
}

/// A recipe body that passed validation, reduced to what is stored.
#[derive(Debug, Clone)]
pub struct Validated {
    pub state: Value,
    pub retries: Option<Value>,
}

/// Validates a pushed body `{"state": [...], "retries"?}` (any `recipe_version` is ignored).
pub fn validate(body: &Value) -> Result<Validated, Vec<Diagnostic>> {
    let Some(state) = body.get("state").filter(|s| s.is_array()) else {
        let d = Diagnostic::error(opsagent_recipe::Kind::Shape, "the recipe has no `state` list")
            .with_hint("send the wire form: {\"state\": [{\"id\", \"module\", \"parameter\"}, …]}");
        return Err(vec![d]);
    };
    let mut candidate = serde_json::json!({ "state": state });
    let retries = body.get("retries").filter(|r| !r.is_null()).cloned();
    if let Some(retries) = &retries {
        candidate["retries"] = retries.clone();
    }
    check_text(&candidate.to_string()).map_err(|mut diagnostics| {
        // Positions would point into our own serialization, not into anything the user wrote.
        for d in &mut diagnostics {
            d.pos = None;
        }
        diagnostics
    })?;
    Ok(Validated { state: state.clone(), retries })
}

/// Checks a recipe's text (any form) like `opsagent validate`: every problem of every readable
/// state, errors first in state order. Returns the warnings when there is no error.
pub fn check_text(text: &str) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    let (recipe, mut diagnostics) = opsagent_recipe::parse_lenient(text);
    match opsagent_states::compile(&recipe) {
        Ok((_states, warnings)) => diagnostics.extend(warnings),
        Err(more) => diagnostics.extend(more),
    }
    diagnostics.sort_by_key(|d| {
        (!d.is_error(), d.state.as_ref().map(|s| s.number).unwrap_or(0), d.pos.map(|p| (p.line, p.col)))
    });
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    Ok(diagnostics)
}

/// Reads a recipe's text (any of the three forms, YAML or JSON) like `opsagent validate`, and
/// gives its wire form `{"state": [...], "retries"?}` with the warnings; every diagnostic (with
/// positions in `text`) when it is invalid.
pub fn wire_form(text: &str) -> Result<(Value, Vec<Diagnostic>), Vec<Diagnostic>> {
    let warnings = check_text(text)?;
    // Valid, so it parses.
    let recipe = opsagent_recipe::parse_str(text).map_err(|e| e.diagnostics)?;
    let root = match node::parse_yaml(text) {
        Ok(root) => node_to_json(&root),
        Err(_) => serde_json::from_str(text).unwrap_or(Value::Null),
    };
    let mut wire = serde_json::json!({ "state": states_of(&root) });
    if let Some(retries) = recipe.retries {
        wire["retries"] = serde_json::json!(retries);
    }
    Ok((wire, warnings))
}

/// What pushing a recipe did.
#[derive(Debug, Clone, Copy)]
pub struct PushOutcome {
    pub version: u64,
    /// Identical to the current version: nothing stored or sent.
    pub unchanged: bool,
    /// How many connected agents it was sent to.
    pub sent_to: usize,
}

/// Stores a validated recipe as the app's next version, sends it to every connected agent of
/// the app (which preempts their rounds), and releases the waits that are ready. The one push
/// path of the API, the CLI (through the API) and the dashboard.
pub async fn push(shared: &Shared, app: &str, validated: Validated) -> anyhow::Result<PushOutcome> {
    let pushed = shared.store.push_recipe(app, &validated.state, validated.retries.as_ref()).await?;
    let version = match pushed {
        Pushed::Unchanged(version) => {
            tracing::info!(app_id = %app, recipe_version = version, "recipe pushed again unchanged: nothing sent");
            return Ok(PushOutcome { version, unchanged: true, sent_to: 0 });
        }
        Pushed::Created(version) => version,
    };
    shared.metrics.recipe_pushed();
    let mut body = serde_json::json!({ "recipe_version": version, "state": validated.state });
    if let Some(retries) = validated.retries {
        body["retries"] = retries;
    }
    let current = Arc::new(CurrentRecipe::from_row(RecipeRow { version, body }));
    let current = shared.recipes.update(app, current);
    let sent_to =
        shared.registry.broadcast(app, &Outgoing::Recipe { version: current.version, frame: current.frame.clone() });
    tracing::info!(app_id = %app, recipe_version = version, sent_to, "recipe pushed");
    shared.events.publish(app, None, crate::dashboard::EventKind::Recipe);
    waits::release_ready(shared, app).await?;
    Ok(PushOutcome { version, unchanged: false, sent_to })
}

impl CurrentRecipe {
    pub fn from_row(row: RecipeRow) -> CurrentRecipe {
        let states: Vec<Value> = row.body.get("state").and_then(Value::as_array).cloned().unwrap_or_default();
        let order = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let id = s.get("id").or_else(|| s.get("stateid"))?.as_str()?;
                Some((id.to_string(), i))
            })
            .collect();
        let frame = opsagent_proto::encode(&HubMessage::RecipeMetadata {
            recipe_version: row.version,
            module: None,
            state: Some(states),
            retries: row.body.get("retries").and_then(Value::as_u64).and_then(|r| u32::try_from(r).ok()),
        });
        CurrentRecipe { version: row.version, waits: waits_of(&row.body), body: row.body, frame: frame.into(), order }
    }
}

/// Every app's current recipe, loaded from the store on first use.
#[derive(Default)]
pub struct RecipeCache {
    apps: Mutex<HashMap<String, Arc<CurrentRecipe>>>,
}

impl RecipeCache {
    /// The app's current recipe, `None` if it has none.
    pub async fn current(&self, store: &Store, app: &str) -> anyhow::Result<Option<Arc<CurrentRecipe>>> {
        if let Some(recipe) = self.lock().get(app) {
            return Ok(Some(recipe.clone()));
        }
        let Some(row) = store.current_recipe(app).await? else {
            return Ok(None);
        };
        let recipe = Arc::new(CurrentRecipe::from_row(row));
        Ok(Some(self.update(app, recipe)))
    }

    /// The app's current recipe if it is loaded already (no I/O).
    pub fn cached(&self, app: &str) -> Option<Arc<CurrentRecipe>> {
        self.lock().get(app).cloned()
    }

    /// Records a version as current, unless a newer one already is; returns the current one.
    pub fn update(&self, app: &str, recipe: Arc<CurrentRecipe>) -> Arc<CurrentRecipe> {
        let mut apps = self.lock();
        let entry = apps.entry(app.to_string()).or_insert_with(|| recipe.clone());
        if entry.version < recipe.version {
            *entry = recipe;
        }
        entry.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CurrentRecipe>>> {
        // Each operation is a single get or insert: a poisoned map is still consistent.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `meta.wait` states of a stored (so valid) recipe, through the module's own `from_params`.
fn waits_of(body: &Value) -> Vec<WaitSpec> {
    let Ok(recipe) = opsagent_recipe::from_json(body) else {
        return Vec::new();
    };
    let Ok((compiled, _warnings)) = opsagent_states::compile(&recipe) else {
        return Vec::new();
    };
    compiled
        .iter()
        .filter_map(|c| match &c.module {
            Module::Wait(wait) => Some(WaitSpec {
                state_id: c.state.id.clone(),
                references: wait.refs.iter().map(|r| parse_reference(r)).collect(),
            }),
            _ => None,
        })
        .collect()
}

/// The list of states of any of the three recipe forms (the reader accepted the document).
fn states_of(root: &Value) -> Value {
    if root.is_array() {
        return root.clone();
    }
    if let Some(components) = root.get("component").and_then(Value::as_object) {
        let states: Vec<Value> =
            components.values().filter_map(|c| c.get("state").and_then(Value::as_array)).flatten().cloned().collect();
        return Value::Array(states);
    }
    root.get("states").or_else(|| root.get("state")).cloned().unwrap_or_else(|| serde_json::json!([]))
}

/// A YAML tree as JSON. Numbers stay numbers only when JSON writes them the same way (`0644`
/// stays the string "0644", as the recipe reader would read it).
fn node_to_json(node: &Node) -> Value {
    match &node.value {
        NodeValue::Null => Value::Null,
        NodeValue::Bool(b) => Value::Bool(*b),
        NodeValue::Number(text) => match serde_json::from_str::<serde_json::Number>(text) {
            Ok(n) if n.to_string() == *text => Value::Number(n),
            _ => Value::String(text.clone()),
        },
        NodeValue::String(s) => Value::String(s.clone()),
        NodeValue::Seq(items) => Value::Array(items.iter().map(node_to_json).collect()),
        NodeValue::Map(entries) => {
            Value::Object(entries.iter().map(|e| (e.key.clone(), node_to_json(&e.value))).collect())
        }
    }
}

//! Recipes as the hub sees them. An app's recipe (the *source*, versioned as pushed) is either one
//! list of states that every instance runs, or a set of **components**, each its own list, every
//! instance running the list of the component it belongs to. Each instance gets its own rendered
//! recipe (links and Jinja resolved for it, `render.rs`) with its own version stream: a push or a
//! change of facts that renders identically for an instance sends it nothing.
//!
//! The hub validates shape and parameters on push (never checks or applies a state), keeps each
//! app's source and each instance's current recipe in memory, and sends an instance its recipe
//! whenever it renders differently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use opsagent_proto::HubMessage;
use opsagent_recipe::{Diagnostic, Kind};
use opsagent_states::Module;
use serde_json::Value;

use opsagent_recipe::node::{self, Node, Value as NodeValue};

use crate::registry::Outgoing;
use crate::render::{self, Member, Rendered, World};
use crate::shared::Shared;
use crate::store::{without_version, InstanceRecipeRow, Pushed, RecipeRow, Store};
use crate::waits::{self, parse_reference, WaitSpec};

/// An app's recipe as pushed.
#[derive(Debug)]
pub struct Source {
    pub version: u64,
    /// `{"recipe_version", "state"}` or `{"recipe_version", "component"}` (+ `retries`).
    pub body: Value,
    /// Component name → its states; `None` when every instance runs `shared`.
    pub components: Option<BTreeMap<String, Vec<Value>>>,
    pub shared: Vec<Value>,
    pub retries: Option<Value>,
}

impl Source {
    pub fn from_row(row: RecipeRow) -> Source {
        let components = row.body.get("component").and_then(Value::as_object).map(|map| {
            map.iter()
                .map(|(name, c)| (name.clone(), c.get("state").and_then(Value::as_array).cloned().unwrap_or_default()))
                .collect()
        });
        let shared = row.body.get("state").and_then(Value::as_array).cloned().unwrap_or_default();
        let retries = row.body.get("retries").filter(|r| !r.is_null()).cloned();
        Source { version: row.version, body: row.body, components, shared, retries }
    }

    /// The states an instance of `component` runs.
    pub fn states_for(&self, component: &str) -> &[Value] {
        match &self.components {
            Some(components) => components.get(component).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.shared,
        }
    }

    /// The component names the recipe defines.
    pub fn component_names(&self) -> BTreeSet<String> {
        self.components.as_ref().map(|c| c.keys().cloned().collect()).unwrap_or_default()
    }
}

/// One instance's current recipe, ready to send.
#[derive(Debug)]
pub struct CurrentRecipe {
    pub version: u64,
    /// The app recipe version it was rendered from.
    pub source_version: u64,
    /// The wire form `{"recipe_version", "state": [...]}`.
    pub body: Value,
    /// The encoded `RecipeMetadata` frame.
    pub frame: Arc<str>,
    /// The state ids in order (as the agent reads them).
    pub ids: Vec<String>,
    /// State id → position in the recipe.
    pub order: HashMap<String, usize>,
    /// The `meta.wait` states and what they wait for.
    pub waits: Vec<WaitSpec>,
    /// The states held (links not resolved yet): id → why.
    pub holds: Vec<(String, String)>,
}

impl CurrentRecipe {
    pub fn from_row(row: InstanceRecipeRow) -> CurrentRecipe {
        let states: Vec<Value> = row.body.get("state").and_then(Value::as_array).cloned().unwrap_or_default();
        let frame = opsagent_proto::encode(&HubMessage::RecipeMetadata {
            recipe_version: row.version,
            module: None,
            state: Some(states.clone()),
            retries: row.body.get("retries").and_then(Value::as_u64).and_then(|r| u32::try_from(r).ok()),
        });
        let mut ids = Vec::new();
        let mut waits = Vec::new();
        let mut holds = Vec::new();
        if let Ok(recipe) = opsagent_recipe::from_json(&row.body) {
            ids = recipe.states.iter().map(|s| s.id.clone()).collect();
            if let Ok((compiled, _)) = opsagent_states::compile(&recipe) {
                for c in &compiled {
                    match &c.module {
                        Module::Wait(wait) => waits.push(WaitSpec {
                            state_id: c.state.id.clone(),
                            references: wait.refs.iter().map(|r| parse_reference(r)).collect(),
                        }),
                        Module::Hold(hold) => holds.push((c.state.id.clone(), hold.reason.clone())),
                        _ => {}
                    }
                }
            }
        }
        let order = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        CurrentRecipe {
            version: row.version,
            source_version: row.source_version,
            body: row.body,
            frame: frame.into(),
            ids,
            order,
            waits,
            holds,
        }
    }

    /// The id of a state named by id or by its 1-based position.
    pub fn resolve_state(&self, id_or_position: &str) -> Option<&str> {
        if let Some(&i) = self.order.get(id_or_position) {
            return Some(&self.ids[i]);
        }
        let n: usize = id_or_position.parse().ok()?;
        self.ids.get(n.checked_sub(1)?).map(String::as_str)
    }
}

/// What the hub holds of one app's recipes.
#[derive(Debug, Default, Clone)]
pub struct AppRecipes {
    pub source: Option<Arc<Source>>,
    /// Instance id → its current recipe.
    pub instances: HashMap<String, Arc<CurrentRecipe>>,
}

impl AppRecipes {
    /// Whether any instance's recipe has a wait the hub may release by itself.
    pub fn has_waits(&self) -> bool {
        self.instances.values().any(|r| !r.waits.is_empty())
    }
}

/// Every app's recipes, loaded from the store on first use.
#[derive(Default)]
pub struct RecipeCache {
    apps: Mutex<HashMap<String, Arc<AppRecipes>>>,
    /// One render at a time, so that a render made from older facts never lands after a newer one.
    render: tokio::sync::Mutex<()>,
}

impl RecipeCache {
    /// The app's recipes.
    pub async fn app(&self, store: &Store, app: &str) -> anyhow::Result<Arc<AppRecipes>> {
        if let Some(recipes) = self.cached(app) {
            return Ok(recipes);
        }
        let source = store.current_recipe(app).await?.map(|row| Arc::new(Source::from_row(row)));
        let instances = store
            .current_instance_recipes(app)
            .await?
            .into_iter()
            .map(|row| (row.instance_id.clone(), Arc::new(CurrentRecipe::from_row(row))))
            .collect();
        let loaded = Arc::new(AppRecipes { source, instances });
        let mut apps = self.lock();
        Ok(apps.entry(app.to_string()).or_insert(loaded).clone())
    }

    /// The app's current source recipe, `None` if it has none.
    pub async fn source(&self, store: &Store, app: &str) -> anyhow::Result<Option<Arc<Source>>> {
        Ok(self.app(store, app).await?.source.clone())
    }

    /// An instance's current recipe, `None` before it has one.
    pub async fn current(
        &self,
        store: &Store,
        app: &str,
        instance: &str,
    ) -> anyhow::Result<Option<Arc<CurrentRecipe>>> {
        Ok(self.app(store, app).await?.instances.get(instance).cloned())
    }

    /// The app's recipes if loaded already (no I/O).
    pub fn cached(&self, app: &str) -> Option<Arc<AppRecipes>> {
        self.lock().get(app).cloned()
    }

    fn set_source(&self, app: &str, source: Arc<Source>) {
        let mut apps = self.lock();
        let entry = apps.entry(app.to_string()).or_default();
        if entry.source.as_ref().is_none_or(|s| s.version < source.version) {
            Arc::make_mut(entry).source = Some(source);
        }
    }

    fn set_instance(&self, app: &str, instance: &str, recipe: Arc<CurrentRecipe>) -> Arc<CurrentRecipe> {
        let mut apps = self.lock();
        let entry = Arc::make_mut(apps.entry(app.to_string()).or_default());
        let slot = entry.instances.entry(instance.to_string()).or_insert_with(|| recipe.clone());
        if slot.version < recipe.version {
            *slot = recipe;
        }
        slot.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AppRecipes>>> {
        // Each operation is a single get or insert: a poisoned map is still consistent.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A recipe body that passed validation: the source to store, `{"state"}` or `{"component"}`
/// (+ `retries`), without `recipe_version`.
#[derive(Debug, Clone)]
pub struct Validated {
    pub source: Value,
}

/// The world links are checked against at push: the app's instances and components.
pub async fn world(shared: &Shared, app: &str, source: Option<&Source>) -> anyhow::Result<World> {
    let instances = shared.store.list_instances(app).await?;
    let members = instances.into_iter().map(|i| Member { id: i.id, component: i.component, facts: i.facts }).collect();
    let attrs = shared.store.attributes(app).await?;
    let components = source.map(Source::component_names).unwrap_or_default();
    Ok(World { members, attrs, components, unknown_app: false })
}

/// Validates a pushed body: `{"state": [...]}` (one list every instance runs) or
/// `{"component": {NAME: {"state": [...]}}}` (the IDE export), `retries` optional, any
/// `recipe_version` ignored. Links are checked against `world` (its components are taken from the
/// body). `strict` refuses the original's tolerated shapes (unknown parameters, aliases…). Returns
/// the source to store and the warnings, or every diagnostic.
pub fn validate(
    body: &Value,
    world: &mut World,
    strict: bool,
) -> Result<(Validated, Vec<Diagnostic>), Vec<Diagnostic>> {
    let retries = body.get("retries").filter(|r| !r.is_null()).cloned();
    let mut source = serde_json::Map::new();
    let lists: Vec<(Option<String>, Vec<Value>)> = match normalize(body) {
        Some(Form::Shared(states)) => {
            source.insert("state".into(), Value::Array(states.clone()));
            vec![(None, states)]
        }
        Some(Form::Components(components)) => {
            let mut map = serde_json::Map::new();
            for (name, states) in &components {
                map.insert(name.clone(), serde_json::json!({ "state": states }));
            }
            source.insert("component".into(), Value::Object(map));
            world.components = components.iter().map(|(n, _)| n.clone()).collect();
            components.into_iter().map(|(n, s)| (Some(n), s)).collect()
        }
        None => {
            let d = Diagnostic::error(Kind::Shape, "the recipe has no `state` list and no `component` map").with_hint(
                "send {\"state\": [{\"id\", \"module\", \"parameter\"}, …]} or the IDE export {\"component\": {\"db\": {\"state\": [...]}}}",
            );
            return Err(vec![d]);
        }
    };
    if let Some(retries) = &retries {
        source.insert("retries".into(), retries.clone());
    }
    let mut diagnostics = Vec::new();
    for (component, states) in &lists {
        if let Some(name) = component {
            if !name_ok(name) {
                diagnostics.push(
                    Diagnostic::error(Kind::Shape, format!("`{name}` is not a usable component name"))
                        .with_hint("use 1 to 64 letters, digits, `.`, `_` or `-`"),
                );
            }
        }
        let mut found = check_states(states, retries.as_ref());
        render::check_source(states, world, &mut found);
        if let Some(name) = component {
            for d in &mut found {
                d.message = format!("component `{name}`: {}", d.message);
            }
        }
        diagnostics.extend(found);
    }
    if let Some(components) = lists.iter().map(|(c, _)| c.clone()).collect::<Option<BTreeSet<String>>>() {
        let mut idle: Vec<&str> =
            world.members.iter().filter(|m| !components.contains(&m.component)).map(|m| m.id.as_str()).collect();
        idle.sort();
        if !idle.is_empty() {
            diagnostics.push(
                Diagnostic::warning(
                    Kind::Shape,
                    format!("instance(s) {} belong to no component of this recipe: they run no state", idle.join(", ")),
                )
                .with_hint("move them with `opsagent-hub instance set APP INSTANCE --component NAME`"),
            );
        }
    }
    if strict {
        diagnostics = diagnostics.into_iter().map(strict_diagnostic).collect();
    }
    diagnostics.sort_by_key(|d| !d.is_error());
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    Ok((Validated { source: Value::Object(source) }, diagnostics))
}

/// Under a strict setting, what the original tolerated is an error.
fn strict_diagnostic(mut d: Diagnostic) -> Diagnostic {
    if d.is_compat_warning() {
        d.severity = opsagent_recipe::Severity::Error;
        d.message = format!("{} (refused: the app's pushes are strict)", d.message);
    }
    d
}

fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The two shapes of a recipe body.
enum Form {
    Shared(Vec<Value>),
    Components(Vec<(String, Vec<Value>)>),
}

/// Reads the accepted spellings: a bare list, `state`/`states`, `component`/`components` (each
/// component's list under `state` or `states`).
fn normalize(body: &Value) -> Option<Form> {
    if let Some(list) = body.as_array() {
        return Some(Form::Shared(list.clone()));
    }
    let list_of = |v: &Value| v.get("state").or_else(|| v.get("states")).and_then(Value::as_array).cloned();
    if let Some(map) = body.get("component").or_else(|| body.get("components")).and_then(Value::as_object) {
        let components = map.iter().map(|(name, c)| (name.clone(), list_of(c).unwrap_or_default())).collect();
        return Some(Form::Components(components));
    }
    list_of(body).map(Form::Shared)
}

/// Checks one list of states like `opsagent validate`; the parameters of a state with links or
/// Jinja are checked once rendered (per instance), not here.
fn check_states(states: &[Value], retries: Option<&Value>) -> Vec<Diagnostic> {
    let mut candidate = serde_json::json!({ "state": states });
    if let Some(retries) = retries {
        candidate["retries"] = retries.clone();
    }
    let templated: BTreeSet<usize> =
        states.iter().enumerate().filter(|(_, s)| render::is_templated(s)).map(|(i, _)| i + 1).collect();
    let diagnostics = match check_text(&candidate.to_string()) {
        Ok(warnings) => warnings,
        Err(all) => all,
    };
    diagnostics
        .into_iter()
        .filter(|d| {
            let of_templated = d.state.as_ref().is_some_and(|s| templated.contains(&s.number));
            !(of_templated && d.is_error() && d.param.is_some())
        })
        .map(|mut d| {
            // Positions would point into our own serialization, not into anything the user wrote.
            d.pos = None;
            d
        })
        .collect()
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

/// Reads a recipe's text (YAML or JSON; a bare list, `states:`, the IDE export `component:` or
/// our `components:`) and gives the body to push — `{"state": [...]}` or `{"component": {...}}`
/// (+ `retries`) — with the warnings; every diagnostic when it is invalid. Links are checked by
/// the hub, which knows the app's instances.
pub fn wire_form(text: &str) -> Result<(Value, Vec<Diagnostic>), Vec<Diagnostic>> {
    let root = match node::parse_yaml(text) {
        Ok(root) => node_to_json(&root),
        Err(_) => match serde_json::from_str(text) {
            Ok(root) => root,
            // Not readable: the reader says where.
            Err(_) => return Err(check_text(text).err().unwrap_or_else(|| vec![no_states()])),
        },
    };
    let body = match normalize(&root) {
        Some(Form::Shared(states)) => serde_json::json!({ "state": states }),
        Some(Form::Components(components)) => {
            let map: serde_json::Map<String, Value> =
                components.into_iter().map(|(n, s)| (n, serde_json::json!({ "state": s }))).collect();
            serde_json::json!({ "component": map })
        }
        // The reader names what is wrong with the shape.
        None => return Err(check_text(text).err().unwrap_or_else(|| vec![no_states()])),
    };
    let mut body = body;
    if let Some(retries) = root.get("retries").filter(|r| !r.is_null()) {
        body["retries"] = retries.clone();
    }
    let (_, warnings) = validate(&body, &mut World { unknown_app: true, ..World::default() }, false)?;
    // Unknown link names are the hub's to judge: it knows the app.
    Ok((body, warnings))
}

fn no_states() -> Diagnostic {
    Diagnostic::error(Kind::Shape, "the recipe has no `states` list and no `components` map")
        .with_hint("write `states: [...]`, or `components: {db: {states: [...]}, web: {states: [...]}}`")
}

/// What pushing a recipe did.
#[derive(Debug, Clone, Copy)]
pub struct PushOutcome {
    pub version: u64,
    /// Identical to the current version: nothing stored or sent.
    pub unchanged: bool,
    /// How many connected agents were sent a new recipe.
    pub sent_to: usize,
}

/// Stores a validated recipe as the app's next version, renders it for every instance, sends each
/// connected instance whose recipe changed its new one (which preempts its round), and releases
/// the waits that are ready. The one push path of the API, the CLI (through the API) and the
/// dashboard.
pub async fn push(shared: &Shared, app: &str, validated: Validated) -> anyhow::Result<PushOutcome> {
    let guard = shared.recipes.render.lock().await;
    let pushed = shared.store.push_recipe(app, &validated.source).await?;
    let version = match pushed {
        Pushed::Unchanged(version) => {
            tracing::info!(app_id = %app, recipe_version = version, "recipe pushed again unchanged: nothing sent");
            return Ok(PushOutcome { version, unchanged: true, sent_to: 0 });
        }
        Pushed::Created(version) => version,
    };
    shared.metrics.recipe_pushed();
    let mut body = validated.source;
    body["recipe_version"] = version.into();
    shared.recipes.set_source(app, Arc::new(Source::from_row(RecipeRow { version, body })));
    let sent_to = render_locked(shared, app).await?;
    drop(guard);
    tracing::info!(app_id = %app, recipe_version = version, sent_to, "recipe pushed");
    shared.events.publish(app, None, crate::events::EventKind::Recipe);
    waits::release_ready(shared, app).await?;
    Ok(PushOutcome { version, unchanged: false, sent_to })
}

/// Renders the app's recipe again for every instance (after facts, membership or attributes
/// changed), sends the instances whose recipe changed, and releases the waits that became ready.
/// Returns how many instances were sent a new recipe.
pub async fn rerender(shared: &Shared, app: &str) -> anyhow::Result<usize> {
    let sent = {
        let _guard = shared.recipes.render.lock().await;
        render_locked(shared, app).await?
    };
    if sent > 0 {
        shared.events.publish(app, None, crate::events::EventKind::Recipe);
    }
    waits::release_ready(shared, app).await?;
    Ok(sent)
}

async fn render_locked(shared: &Shared, app: &str) -> anyhow::Result<usize> {
    let recipes = shared.recipes.app(&shared.store, app).await?;
    let Some(source) = recipes.source.clone() else {
        return Ok(0);
    };
    let world = world(shared, app, Some(&source)).await?;
    // Render everything first; store what changed in one transaction; then send.
    let changed: Vec<(String, Value)> = world
        .members
        .iter()
        .map(|member| (member.id.clone(), render_for(&source, &world, member)))
        .filter(|(id, body)| !recipes.instances.get(id).is_some_and(|current| without_version(&current.body) == *body))
        .collect();
    if changed.is_empty() {
        return Ok(0);
    }
    let stored = shared.store.store_instance_recipes(app, source.version, &changed).await?;
    let mut sent = 0;
    for ((id, body), pushed) in changed.into_iter().zip(stored) {
        let Pushed::Created(version) = pushed else { continue };
        let mut full = body;
        full["recipe_version"] = version.into();
        let row = InstanceRecipeRow { instance_id: id.clone(), version, source_version: source.version, body: full };
        let current = shared.recipes.set_instance(app, &id, Arc::new(CurrentRecipe::from_row(row)));
        for (state_id, reason) in &current.holds {
            tracing::info!(app_id = %app, instance_id = %id, state_id = %state_id, reason = %reason, "state held");
        }
        let message = Outgoing::Recipe { version: current.version, frame: current.frame.clone() };
        if shared.registry.send(app, &id, message).is_ok() {
            sent += 1;
        }
        tracing::info!(app_id = %app, instance_id = %id, recipe_version = version,
            source_version = source.version, "recipe rendered");
    }
    Ok(sent)
}

/// The wire body (without `recipe_version`) of one instance: its component's states, each
/// rendered for it, held where a link is not resolved or the rendered parameters are invalid.
pub fn render_for(source: &Source, world: &World, member: &Member) -> Value {
    let states: Vec<Value> = source
        .states_for(&member.component)
        .iter()
        .map(|state| match render::render_state(state, world, &member.id) {
            Rendered::Held { reason } => render::held_state(state, &reason),
            Rendered::State(rendered) if render::is_templated(state) => match check_rendered(&rendered) {
                Ok(()) => rendered,
                Err(reason) => render::held_state(state, &reason),
            },
            Rendered::State(rendered) => rendered,
        })
        .collect();
    let mut body = serde_json::json!({ "state": states });
    if let Some(retries) = &source.retries {
        body["retries"] = retries.clone();
    }
    body
}

/// A rendered state's parameters, checked by its module.
fn check_rendered(state: &Value) -> Result<(), String> {
    let candidate = serde_json::json!({ "state": [state] });
    match check_text(&candidate.to_string()) {
        Ok(_) => Ok(()),
        Err(diagnostics) => {
            let errors: Vec<String> = diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| match &d.param {
                    Some(p) => format!("`{p}`: {}", d.message),
                    None => d.message.clone(),
                })
                .collect();
            Err(format!("rendered for this instance, the state is invalid: {}", errors.join("; ")))
        }
    }
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

/// Orders a round now on each of `instances` (the original's *Reload States*): an idle agent
/// starts one at once, a running round is preempted. Returns the instances ordered and those not
/// connected.
pub fn reload(shared: &Shared, app: &str, instances: &[String]) -> (Vec<String>, Vec<String>) {
    let frame = opsagent_proto::encode(&HubMessage::Reload {});
    let mut sent = Vec::new();
    let mut offline = Vec::new();
    for id in instances {
        match shared.registry.send(app, id, Outgoing::Frame(frame.clone())) {
            Ok(()) => sent.push(id.clone()),
            Err(_) => offline.push(id.clone()),
        }
    }
    (sent, offline)
}

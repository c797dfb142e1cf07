//! Storage: the one interface through which the hub reads and writes its data (apps, instances,
//! recipe versions, state statuses, the message history, released waits).
//!
//! [`Store`] is what a PostgreSQL backend will implement later; today it is SQLite (`sqlite.rs`,
//! the only place that holds SQL). Times are RFC 3339 UTC strings made by the database.

mod batch;
mod sqlite;

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

/// How many messages (state logs and round events) are kept per instance.
pub const HISTORY_PER_INSTANCE: i64 = 10_000;

/// The hub's storage.
#[derive(Clone)]
pub struct Store {
    backend: sqlite::Sqlite,
}

/// An app.
#[derive(Debug, Clone)]
pub struct AppRow {
    pub id: String,
    pub created_at: String,
}

/// An instance and what its agent last reported about itself.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub app_id: String,
    pub id: String,
    pub created_at: String,
    pub last_seq: u64,
    pub agent_version: Option<String>,
    pub recipe_version: Option<u64>,
    pub last_seen: Option<String>,
    pub round: Option<u64>,
    pub round_result: Option<String>,
    /// The component it belongs to (its group); by default one named like the instance.
    pub component: String,
    /// The facts its agent last reported; `None` before it first connected.
    pub facts: Option<opsagent_proto::Facts>,
    /// The latest `UpgradeStatus` the agent reported.
    pub upgrade: Option<UpgradeRow>,
}

/// An instance's latest upgrade report.
#[derive(Debug, Clone)]
pub struct UpgradeRow {
    pub version: String,
    pub from: Option<String>,
    pub phase: String,
    pub reason: Option<String>,
    pub at: String,
}

/// The agent version an app's instances should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub version: String,
    pub allow_downgrade: bool,
}

/// A stored body without its `recipe_version`: what two versions are compared by (the version
/// differs between any two).
pub fn without_version(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("recipe_version");
    }
    body
}

/// What one instance was sent: its rendered recipe (`body` is the wire form with its own
/// `recipe_version`), made from the app's recipe `source_version`.
#[derive(Debug, Clone)]
pub struct InstanceRecipeRow {
    pub instance_id: String,
    pub version: u64,
    pub source_version: u64,
    pub body: Value,
}

/// An app's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSettings {
    /// The secret of the reload webhook (`X-Hub-Signature-256`); `None`: the webhook is off.
    pub webhook_secret: Option<String>,
    /// Pushes with compatibility warnings are refused.
    pub strict: bool,
}

/// A stored version of an app's recipe, as pushed: `body` is `{"recipe_version", "state": [...]}`
/// (every instance runs the list) or `{"recipe_version", "component": {NAME: {"state": [...]}}}`.
#[derive(Debug, Clone)]
pub struct RecipeRow {
    pub version: u64,
    pub body: Value,
}

/// One stored recipe version and when it was pushed.
#[derive(Debug, Clone)]
pub struct RecipeVersionRow {
    pub version: u64,
    pub created_at: String,
    pub body: Value,
}

/// What pushing a recipe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored as this new version.
    Created(u64),
    /// Identical to the current version, which is this one: nothing stored.
    Unchanged(u64),
}

/// The latest report of one state on one instance.
#[derive(Debug, Clone)]
pub struct StateStatusRow {
    pub instance_id: String,
    pub state_id: String,
    pub module: String,
    pub status: String,
    pub attempt: u32,
    pub recipe_version: u64,
    pub round: u64,
    pub comment: Option<String>,
    pub updated_at: String,
}

/// One stored message (a `StateLog`, `RoundStart` or `RoundEnd`) as its JSON.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub instance_id: String,
    pub seq: u64,
    pub received_at: String,
    pub body: Value,
}

/// A message from an agent that carries a seq, already reduced to what the store needs. The
/// identity (app, instance) is the authenticated one, never the frame's.
#[derive(Debug, Clone)]
pub struct Report {
    pub seq: u64,
    /// `StateLog`, `RoundStart` or `RoundEnd`.
    pub kind: &'static str,
    /// The message as JSON, with the authenticated ids.
    pub body: Value,
    pub recipe_version: u64,
    pub effect: Effect,
}

/// What a report changes besides the history.
#[derive(Debug, Clone)]
pub enum Effect {
    State { state_id: String, module: String, status: String, attempt: u32, round: u64, comment: Option<String> },
    RoundStart { round: u64 },
    RoundEnd { round: u64, result: String },
    Upgrade { version: String, from: Option<String>, phase: String, reason: Option<String> },
}

/// A query on the state-log history.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub instance_id: Option<String>,
    pub after_seq: Option<u64>,
    pub limit: u32,
}

/// Which (instance, state id) pairs.
pub type Pairs = HashSet<(String, String)>;

impl Store {
    /// Opens (creating if needed) `<data_dir>/hub.db` and brings its schema up to date.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Store> {
        Ok(Store { backend: sqlite::Sqlite::open(&data_dir.join("hub.db")).await? })
    }

    /// Creates an app; `false` when it already exists.
    pub async fn create_app(&self, id: &str) -> anyhow::Result<bool> {
        self.backend.create_app(id).await
    }

    pub async fn list_apps(&self) -> anyhow::Result<Vec<AppRow>> {
        self.backend.list_apps().await
    }

    pub async fn app_exists(&self, id: &str) -> anyhow::Result<bool> {
        self.backend.app_exists(id).await
    }

    /// Creates an instance of an existing app in `component`; `false` when it already exists.
    pub async fn create_instance(&self, app: &str, id: &str, secret: &str, component: &str) -> anyhow::Result<bool> {
        self.backend.create_instance(app, id, secret, component).await
    }

    /// Moves an instance to another component; `false` when it does not exist.
    pub async fn set_component(&self, app: &str, id: &str, component: &str) -> anyhow::Result<bool> {
        self.backend.set_component(app, id, component).await
    }

    /// Records the facts an agent reported; `true` when they differ from the stored ones.
    pub async fn record_facts(&self, app: &str, id: &str, facts: &opsagent_proto::Facts) -> anyhow::Result<bool> {
        self.backend.record_facts(app, id, facts).await
    }

    /// Sets (or with `None` removes) an operator attribute of an instance or a component
    /// (`scope`); `true` when that changed something.
    pub async fn set_attribute(
        &self,
        app: &str,
        scope: &str,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> anyhow::Result<bool> {
        self.backend.set_attribute(app, scope, name, key, value).await
    }

    /// Every operator attribute of the app.
    pub async fn attributes(&self, app: &str) -> anyhow::Result<Vec<crate::render::Attr>> {
        self.backend.attributes(app).await
    }

    /// The latest rendered recipe of every instance of the app that has one.
    pub async fn current_instance_recipes(&self, app: &str) -> anyhow::Result<Vec<InstanceRecipeRow>> {
        self.backend.current_instance_recipes(app).await
    }

    /// Stores each `(instance, body)` (bodies without `recipe_version`) as that instance's next
    /// rendered recipe unless it equals its current one, all in one transaction. A new version is
    /// the larger of the previous one plus one and `source_version`, so that an app whose instances
    /// all render alike keeps one numbering.
    pub async fn store_instance_recipes(
        &self,
        app: &str,
        source_version: u64,
        bodies: &[(String, Value)],
    ) -> anyhow::Result<Vec<Pushed>> {
        self.backend.store_instance_recipes(app, source_version, bodies).await
    }

    /// The app's settings; `None` when the app is unknown.
    pub async fn app_settings(&self, app: &str) -> anyhow::Result<Option<AppSettings>> {
        self.backend.app_settings(app).await
    }

    pub async fn set_app_settings(&self, app: &str, settings: &AppSettings) -> anyhow::Result<bool> {
        self.backend.set_app_settings(app, settings).await
    }

    /// Every (instance, recipe version, wait) released in the app.
    pub async fn released_all(&self, app: &str) -> anyhow::Result<HashSet<(String, u64, String)>> {
        self.backend.released_all(app).await
    }

    pub async fn list_instances(&self, app: &str) -> anyhow::Result<Vec<InstanceRow>> {
        self.backend.list_instances(app).await
    }

    pub async fn instance(&self, app: &str, id: &str) -> anyhow::Result<Option<InstanceRow>> {
        self.backend.instance(app, id).await
    }

    /// The instance's secret, `None` when the app or the instance is unknown.
    pub async fn instance_secret(&self, app: &str, id: &str) -> anyhow::Result<Option<String>> {
        self.backend.instance_secret(app, id).await
    }

    /// Records an accepted handshake; returns the instance's `last_seq`.
    pub async fn record_handshake(
        &self,
        app: &str,
        id: &str,
        agent_version: &str,
        recipe_version: Option<u64>,
    ) -> anyhow::Result<u64> {
        self.backend.record_handshake(app, id, agent_version, recipe_version).await
    }

    /// Records that an instance's connection ended (its `last_seen`).
    pub async fn record_disconnect(&self, app: &str, id: &str) -> anyhow::Result<()> {
        self.backend.record_disconnect(app, id).await
    }

    /// Stores `source` (a recipe body without `recipe_version`) as the app's next recipe
    /// version, unless it equals the current version's.
    pub async fn push_recipe(&self, app: &str, source: &Value) -> anyhow::Result<Pushed> {
        self.backend.push_recipe(app, source).await
    }

    pub async fn current_recipe(&self, app: &str) -> anyhow::Result<Option<RecipeRow>> {
        self.backend.current_recipe(app).await
    }

    /// Every recipe version of the app, newest first.
    pub async fn recipe_versions(&self, app: &str) -> anyhow::Result<Vec<RecipeVersionRow>> {
        self.backend.recipe_versions(app).await
    }

    /// One recipe version of the app.
    pub async fn recipe_version(&self, app: &str, version: u64) -> anyhow::Result<Option<RecipeVersionRow>> {
        self.backend.recipe_version(app, version).await
    }

    /// The latest status of every state of one instance.
    pub async fn instance_state_statuses(&self, app: &str, id: &str) -> anyhow::Result<Vec<StateStatusRow>> {
        self.backend.instance_state_statuses(app, id).await
    }

    /// The instance's most recent stored messages (state logs and round events), newest last.
    pub async fn instance_messages(&self, app: &str, id: &str, limit: u32) -> anyhow::Result<Vec<MessageRow>> {
        self.backend.instance_messages(app, id, limit).await
    }

    /// Stores a report once per (app, instance, seq); `false` when it was already stored.
    pub async fn record_report(&self, app: &str, id: &str, report: &Report) -> anyhow::Result<bool> {
        self.backend.record_report(app, id, report).await
    }

    /// Marks a wait released; `false` when it already was.
    pub async fn release_wait(&self, app: &str, id: &str, recipe_version: u64, state_id: &str) -> anyhow::Result<bool> {
        self.backend.release_wait(app, id, recipe_version, state_id).await
    }

    /// The waits released for one instance in one version.
    pub async fn released_waits(&self, app: &str, id: &str, recipe_version: u64) -> anyhow::Result<Vec<String>> {
        self.backend.released_waits(app, id, recipe_version).await
    }

    /// Every (instance, wait) released in the app for one version.
    pub async fn released_in_app(&self, app: &str, recipe_version: u64) -> anyhow::Result<Pairs> {
        self.backend.released_in_app(app, recipe_version).await
    }

    /// Every (instance, state) whose latest status in `recipe_version` is `ok` or `changed`.
    pub async fn succeeded_in_app(&self, app: &str, recipe_version: u64) -> anyhow::Result<Pairs> {
        self.backend.succeeded_in_app(app, recipe_version).await
    }

    /// The latest status of every state on every instance of the app.
    pub async fn state_statuses(&self, app: &str) -> anyhow::Result<Vec<StateStatusRow>> {
        self.backend.state_statuses(app).await
    }

    /// Stored state logs, newest last.
    pub async fn state_logs(&self, app: &str, query: &LogQuery) -> anyhow::Result<Vec<MessageRow>> {
        self.backend.state_logs(app, query).await
    }

    /// Every seq stored for an instance, ascending.
    pub async fn seqs(&self, app: &str, id: &str) -> anyhow::Result<Vec<u64>> {
        self.backend.seqs(app, id).await
    }

    /// Sets (or with `None` clears) the agent version of an app; `false` when the app is unknown.
    pub async fn set_target(&self, app: &str, target: Option<&Target>) -> anyhow::Result<bool> {
        self.backend.set_target(app, target).await
    }

    /// The agent version an app's instances should run, if one was set.
    pub async fn target(&self, app: &str) -> anyhow::Result<Option<Target>> {
        self.backend.target(app).await
    }

    /// Closes the database (waits for running queries).
    pub async fn close(&self) {
        self.backend.close().await
    }
}

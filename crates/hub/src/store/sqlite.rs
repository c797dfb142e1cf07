//! The SQLite backend of [`Store`](super::Store): one file in WAL mode, one writing connection
//! (so writers queue in the hub instead of failing with `SQLITE_BUSY`) and a few readers.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::Row;

use opsagent_proto::Facts;

use crate::render::Attr;

use super::{
    without_version, AppRow, AppSettings, Effect, InstanceRecipeRow, InstanceRow, LogQuery, MessageRow, Pairs, Pushed,
    RecipeRow, RecipeVersionRow, Report, StateStatusRow, Target, UpgradeRow, HISTORY_PER_INSTANCE,
};

/// The SQL expression for "now" (RFC 3339 UTC with milliseconds).
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Prune an instance's history when its seq is a multiple of this.
const PRUNE_EVERY: u64 = 256;

#[derive(Clone)]
pub(super) struct Sqlite {
    writer: SqlitePool,
    reader: SqlitePool,
    reports: super::batch::Batcher,
}

impl Sqlite {
    pub(super) async fn open(path: &Path) -> anyhow::Result<Sqlite> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .context("building the SQLite options")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening the database {}", path.display()))?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .with_context(|| format!("migrating the database {}", path.display()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("opening the database {} to read", path.display()))?;
        let reports = super::batch::Batcher::start(writer.clone());
        Ok(Sqlite { writer, reader, reports })
    }

    pub(super) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub(super) async fn create_app(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(&format!("INSERT OR IGNORE INTO apps (id, created_at) VALUES (?, {NOW})"))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn list_apps(&self) -> anyhow::Result<Vec<AppRow>> {
        let rows = sqlx::query("SELECT id, created_at FROM apps ORDER BY id").fetch_all(&self.reader).await?;
        rows.iter().map(|r| Ok(AppRow { id: r.try_get("id")?, created_at: r.try_get("created_at")? })).collect()
    }

    pub(super) async fn app_exists(&self, id: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM apps WHERE id = ?").bind(id).fetch_optional(&self.reader).await?;
        Ok(row.is_some())
    }

    pub(super) async fn create_instance(
        &self,
        app: &str,
        id: &str,
        secret: &str,
        component: &str,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(&format!(
            "INSERT OR IGNORE INTO instances (app_id, id, secret, component, created_at) VALUES (?, ?, ?, ?, {NOW})"
        ))
        .bind(app)
        .bind(id)
        .bind(secret)
        .bind(component)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn set_component(&self, app: &str, id: &str, component: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE instances SET component = ? WHERE app_id = ? AND id = ?")
            .bind(component)
            .bind(app)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn record_facts(&self, app: &str, id: &str, facts: &Facts) -> anyhow::Result<bool> {
        let text = serde_json::to_string(facts)?;
        let done =
            sqlx::query("UPDATE instances SET facts = ? WHERE app_id = ? AND id = ? AND (facts IS NULL OR facts <> ?)")
                .bind(&text)
                .bind(app)
                .bind(id)
                .bind(&text)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn set_attribute(
        &self,
        app: &str,
        scope: &str,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> anyhow::Result<bool> {
        let done = match value {
            Some(value) => {
                sqlx::query(
                    "INSERT INTO attributes (app_id, scope, name, key, value) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (app_id, scope, name, key) DO UPDATE SET value = excluded.value \
                 WHERE value <> excluded.value",
                )
                .bind(app)
                .bind(scope)
                .bind(name)
                .bind(key)
                .bind(value)
                .execute(&self.writer)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM attributes WHERE app_id = ? AND scope = ? AND name = ? AND key = ?")
                    .bind(app)
                    .bind(scope)
                    .bind(name)
                    .bind(key)
                    .execute(&self.writer)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn attributes(&self, app: &str) -> anyhow::Result<Vec<Attr>> {
        let rows =
            sqlx::query("SELECT scope, name, key, value FROM attributes WHERE app_id = ? ORDER BY scope, name, key")
                .bind(app)
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Attr {
                    scope: r.try_get("scope")?,
                    name: r.try_get("name")?,
                    key: r.try_get("key")?,
                    value: r.try_get("value")?,
                })
            })
            .collect()
    }

    pub(super) async fn current_instance_recipes(&self, app: &str) -> anyhow::Result<Vec<InstanceRecipeRow>> {
        let rows = sqlx::query(
            "SELECT r.instance_id, r.version, r.source_version, r.body FROM instance_recipes r \
             JOIN (SELECT instance_id, MAX(version) AS version FROM instance_recipes WHERE app_id = ? \
                   GROUP BY instance_id) latest \
             ON latest.instance_id = r.instance_id AND latest.version = r.version \
             WHERE r.app_id = ? ORDER BY r.instance_id",
        )
        .bind(app)
        .bind(app)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InstanceRecipeRow {
                    instance_id: r.try_get("instance_id")?,
                    version: to_u64(r.try_get("version")?),
                    source_version: to_u64(r.try_get("source_version")?),
                    body: serde_json::from_str(r.try_get("body")?)?,
                })
            })
            .collect()
    }

    pub(super) async fn store_instance_recipes(
        &self,
        app: &str,
        source_version: u64,
        bodies: &[(String, Value)],
    ) -> anyhow::Result<Vec<Pushed>> {
        let mut tx = self.writer.begin().await?;
        let mut out = Vec::with_capacity(bodies.len());
        for (id, body) in bodies {
            let current = sqlx::query(
                "SELECT version, body FROM instance_recipes WHERE app_id = ? AND instance_id = ? \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(app)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let mut next = source_version.max(1);
            if let Some(row) = current {
                let version = to_u64(row.try_get("version")?);
                let stored: Value = serde_json::from_str(row.try_get("body")?)?;
                if without_version(&stored) == *body {
                    out.push(Pushed::Unchanged(version));
                    continue;
                }
                next = next.max(version + 1);
            }
            let mut full = body.clone();
            full["recipe_version"] = next.into();
            sqlx::query(&format!(
                "INSERT INTO instance_recipes (app_id, instance_id, version, source_version, body, created_at) \
                 VALUES (?, ?, ?, ?, ?, {NOW})"
            ))
            .bind(app)
            .bind(id)
            .bind(to_i64(next)?)
            .bind(to_i64(source_version)?)
            .bind(full.to_string())
            .execute(&mut *tx)
            .await?;
            out.push(Pushed::Created(next));
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn app_settings(&self, app: &str) -> anyhow::Result<Option<AppSettings>> {
        let row = sqlx::query("SELECT webhook_secret, strict FROM apps WHERE id = ?")
            .bind(app)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            Ok(AppSettings {
                webhook_secret: r.try_get("webhook_secret")?,
                strict: r.try_get::<i64, _>("strict")? != 0,
            })
        })
        .transpose()
    }

    pub(super) async fn set_app_settings(&self, app: &str, settings: &AppSettings) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE apps SET webhook_secret = ?, strict = ? WHERE id = ?")
            .bind(&settings.webhook_secret)
            .bind(i64::from(settings.strict))
            .bind(app)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn released_all(&self, app: &str) -> anyhow::Result<HashSet<(String, u64, String)>> {
        let rows = sqlx::query("SELECT instance_id, recipe_version, state_id FROM released_waits WHERE app_id = ?")
            .bind(app)
            .fetch_all(&self.reader)
            .await?;
        let mut set = HashSet::with_capacity(rows.len());
        for r in rows {
            set.insert((r.try_get("instance_id")?, to_u64(r.try_get("recipe_version")?), r.try_get("state_id")?));
        }
        Ok(set)
    }

    pub(super) async fn list_instances(&self, app: &str) -> anyhow::Result<Vec<InstanceRow>> {
        let rows = sqlx::query(&format!("{INSTANCE_COLUMNS} WHERE app_id = ? ORDER BY id"))
            .bind(app)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(instance_row).collect()
    }

    pub(super) async fn instance(&self, app: &str, id: &str) -> anyhow::Result<Option<InstanceRow>> {
        let row = sqlx::query(&format!("{INSTANCE_COLUMNS} WHERE app_id = ? AND id = ?"))
            .bind(app)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(instance_row).transpose()
    }

    pub(super) async fn instance_secret(&self, app: &str, id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT secret FROM instances WHERE app_id = ? AND id = ?")
            .bind(app)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| r.try_get("secret")).transpose()?)
    }

    pub(super) async fn record_handshake(
        &self,
        app: &str,
        id: &str,
        agent_version: &str,
        recipe_version: Option<u64>,
    ) -> anyhow::Result<u64> {
        let row = sqlx::query(&format!(
            "UPDATE instances SET agent_version = ?, recipe_version = COALESCE(?, recipe_version), \
             last_seen = {NOW} WHERE app_id = ? AND id = ? RETURNING last_seq"
        ))
        .bind(agent_version)
        .bind(recipe_version.map(to_i64).transpose()?)
        .bind(app)
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        let Some(row) = row else {
            anyhow::bail!("instance `{id}` of app `{app}` vanished during its handshake");
        };
        Ok(to_u64(row.try_get("last_seq")?))
    }

    pub(super) async fn record_disconnect(&self, app: &str, id: &str) -> anyhow::Result<()> {
        sqlx::query(&format!("UPDATE instances SET last_seen = {NOW} WHERE app_id = ? AND id = ?"))
            .bind(app)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn push_recipe(&self, app: &str, source: &Value) -> anyhow::Result<Pushed> {
        let mut tx = self.writer.begin().await?;
        let current = sqlx::query("SELECT version, body FROM recipes WHERE app_id = ? ORDER BY version DESC LIMIT 1")
            .bind(app)
            .fetch_optional(&mut *tx)
            .await?;
        let mut next = 1;
        if let Some(row) = current {
            let version = to_u64(row.try_get("version")?);
            let body: Value = serde_json::from_str(row.try_get("body")?)?;
            if without_version(&body) == *source {
                return Ok(Pushed::Unchanged(version));
            }
            next = version + 1;
        }
        let mut body = source.clone();
        body["recipe_version"] = next.into();
        sqlx::query(&format!("INSERT INTO recipes (app_id, version, body, created_at) VALUES (?, ?, ?, {NOW})"))
            .bind(app)
            .bind(to_i64(next)?)
            .bind(body.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Pushed::Created(next))
    }

    pub(super) async fn current_recipe(&self, app: &str) -> anyhow::Result<Option<RecipeRow>> {
        let row = sqlx::query("SELECT version, body FROM recipes WHERE app_id = ? ORDER BY version DESC LIMIT 1")
            .bind(app)
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(RecipeRow {
            version: to_u64(row.try_get("version")?),
            body: serde_json::from_str(row.try_get("body")?)?,
        }))
    }

    pub(super) async fn record_report(&self, app: &str, id: &str, report: &Report) -> anyhow::Result<bool> {
        self.reports.record(app, id, report).await
    }

    pub(super) async fn release_wait(
        &self,
        app: &str,
        id: &str,
        recipe_version: u64,
        state_id: &str,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(&format!(
            "INSERT OR IGNORE INTO released_waits (app_id, instance_id, recipe_version, state_id, released_at) \
             VALUES (?, ?, ?, ?, {NOW})"
        ))
        .bind(app)
        .bind(id)
        .bind(to_i64(recipe_version)?)
        .bind(state_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn released_waits(&self, app: &str, id: &str, recipe_version: u64) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT state_id FROM released_waits WHERE app_id = ? AND instance_id = ? \
             AND recipe_version = ? ORDER BY released_at, state_id",
        )
        .bind(app)
        .bind(id)
        .bind(to_i64(recipe_version)?)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("state_id")?)).collect()
    }

    pub(super) async fn released_in_app(&self, app: &str, recipe_version: u64) -> anyhow::Result<Pairs> {
        let rows =
            sqlx::query("SELECT instance_id, state_id FROM released_waits WHERE app_id = ? AND recipe_version = ?")
                .bind(app)
                .bind(to_i64(recipe_version)?)
                .fetch_all(&self.reader)
                .await?;
        pairs(&rows)
    }

    pub(super) async fn succeeded_in_app(&self, app: &str, recipe_version: u64) -> anyhow::Result<Pairs> {
        let rows = sqlx::query(
            "SELECT instance_id, state_id FROM state_status WHERE app_id = ? \
             AND recipe_version = ? AND status IN ('ok', 'changed')",
        )
        .bind(app)
        .bind(to_i64(recipe_version)?)
        .fetch_all(&self.reader)
        .await?;
        pairs(&rows)
    }

    pub(super) async fn state_statuses(&self, app: &str) -> anyhow::Result<Vec<StateStatusRow>> {
        let rows = sqlx::query(&format!("{STATUS_COLUMNS} WHERE app_id = ? ORDER BY instance_id, state_id"))
            .bind(app)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(status_row).collect()
    }

    pub(super) async fn instance_state_statuses(&self, app: &str, id: &str) -> anyhow::Result<Vec<StateStatusRow>> {
        let rows = sqlx::query(&format!("{STATUS_COLUMNS} WHERE app_id = ? AND instance_id = ? ORDER BY state_id"))
            .bind(app)
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(status_row).collect()
    }

    pub(super) async fn recipe_versions(&self, app: &str) -> anyhow::Result<Vec<RecipeVersionRow>> {
        let rows = sqlx::query("SELECT version, created_at, body FROM recipes WHERE app_id = ? ORDER BY version DESC")
            .bind(app)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(recipe_version_row).collect()
    }

    pub(super) async fn recipe_version(&self, app: &str, version: u64) -> anyhow::Result<Option<RecipeVersionRow>> {
        let row = sqlx::query("SELECT version, created_at, body FROM recipes WHERE app_id = ? AND version = ?")
            .bind(app)
            .bind(to_i64(version)?)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(recipe_version_row).transpose()
    }

    pub(super) async fn instance_messages(&self, app: &str, id: &str, limit: u32) -> anyhow::Result<Vec<MessageRow>> {
        let rows = sqlx::query(
            "SELECT instance_id, seq, received_at, body FROM messages WHERE app_id = ? AND instance_id = ? \
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(app)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut messages = rows.iter().map(message_row).collect::<anyhow::Result<Vec<_>>>()?;
        messages.reverse();
        Ok(messages)
    }

    pub(super) async fn state_logs(&self, app: &str, query: &LogQuery) -> anyhow::Result<Vec<MessageRow>> {
        let limit = i64::from(query.limit);
        let after = query.after_seq.map(to_i64).transpose()?;
        // With `after_seq`: the oldest after it (paging forward); otherwise the newest ones.
        let order = if after.is_some() { "seq ASC, rowid ASC" } else { "rowid DESC" };
        let sql = format!(
            "SELECT instance_id, seq, received_at, body FROM messages \
             WHERE app_id = ?1 AND kind = 'StateLog' AND (?2 IS NULL OR instance_id = ?2) \
             AND (?3 IS NULL OR seq > ?3) ORDER BY {order} LIMIT ?4"
        );
        let rows = sqlx::query(&sql)
            .bind(app)
            .bind(query.instance_id.as_deref())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        let mut logs = rows.iter().map(message_row).collect::<anyhow::Result<Vec<_>>>()?;
        if after.is_none() {
            logs.reverse();
        }
        Ok(logs)
    }

    pub(super) async fn set_target(&self, app: &str, target: Option<&Target>) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE apps SET target_version = ?, allow_downgrade = ? WHERE id = ?")
            .bind(target.map(|t| t.version.as_str()))
            .bind(target.is_some_and(|t| t.allow_downgrade))
            .bind(app)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn target(&self, app: &str) -> anyhow::Result<Option<Target>> {
        let row = sqlx::query("SELECT target_version, allow_downgrade FROM apps WHERE id = ?")
            .bind(app)
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let version: Option<String> = row.try_get("target_version")?;
        let allow_downgrade: bool = row.try_get("allow_downgrade")?;
        Ok(version.map(|version| Target { version, allow_downgrade }))
    }

    pub(super) async fn seqs(&self, app: &str, id: &str) -> anyhow::Result<Vec<u64>> {
        let rows = sqlx::query("SELECT seq FROM messages WHERE app_id = ? AND instance_id = ? ORDER BY seq")
            .bind(app)
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| Ok(to_u64(r.try_get("seq")?))).collect()
    }
}

/// Stores one report inside a transaction (see `batch.rs`); `false` for a duplicate.
pub(super) async fn record_report_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    app: &str,
    id: &str,
    report: &Report,
) -> anyhow::Result<bool> {
    // Every conversion that can fail happens before the first write: a report is stored whole
    // or not at all, even inside a batch (`batch.rs`) that commits other reports.
    let seq = to_i64(report.seq)?;
    // An upgrade report says nothing of the recipe or the round.
    let upgrade = matches!(report.effect, Effect::Upgrade { .. });
    let recipe_version = if upgrade { None } else { Some(to_i64(report.recipe_version)?) };
    let (round, round_result) = match &report.effect {
        Effect::RoundStart { round } => (Some(to_i64(*round)?), Some("running".to_string())),
        Effect::RoundEnd { round, result } => (Some(to_i64(*round)?), Some(result.clone())),
        Effect::State { round, .. } => (Some(to_i64(*round)?), None),
        Effect::Upgrade { .. } => (None, None),
    };
    let round_event = if round_result.is_some() { round } else { None };
    let floor = sqlx::query("SELECT pruned_seq FROM instances WHERE app_id = ? AND id = ?")
        .bind(app)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(floor) = floor else {
        anyhow::bail!("instance `{id}` of app `{app}` is unknown");
    };
    let floor: i64 = floor.try_get("pruned_seq")?;
    if seq <= floor {
        return Ok(false);
    }
    let inserted = sqlx::query(&format!(
        "INSERT OR IGNORE INTO messages (app_id, instance_id, seq, kind, body, received_at) \
         VALUES (?, ?, ?, ?, ?, {NOW})"
    ))
    .bind(app)
    .bind(id)
    .bind(seq)
    .bind(report.kind)
    .bind(report.body.to_string())
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    // Values from an older message (a replay after a newer one) never overwrite newer ones:
    // in an UPDATE every expression sees the row as it was, so `last_seq` is the old one.
    sqlx::query(&format!(
        "UPDATE instances SET \
           recipe_version = CASE WHEN ?1 > last_seq AND ?2 IS NOT NULL THEN ?2 ELSE recipe_version END, \
           round = CASE WHEN ?1 > last_seq AND ?3 IS NOT NULL THEN ?3 ELSE round END, \
           round_result = CASE WHEN ?1 > last_seq AND ?4 IS NOT NULL THEN ?4 ELSE round_result END, \
           last_seq = MAX(last_seq, ?1), last_seen = {NOW} \
         WHERE app_id = ?5 AND id = ?6"
    ))
    .bind(seq)
    .bind(recipe_version)
    .bind(round_event)
    .bind(round_result)
    .bind(app)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if let Effect::State { state_id, module, status, attempt, comment, .. } = &report.effect {
        sqlx::query(&format!(
            "INSERT INTO state_status (app_id, instance_id, state_id, module, status, attempt, \
               recipe_version, round, seq, comment, updated_at, log) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW}, ?) \
             ON CONFLICT (app_id, instance_id, state_id) DO UPDATE SET \
               module = excluded.module, status = excluded.status, attempt = excluded.attempt, \
               recipe_version = excluded.recipe_version, round = excluded.round, \
               seq = excluded.seq, comment = excluded.comment, updated_at = excluded.updated_at, \
               log = excluded.log \
             WHERE excluded.seq > state_status.seq"
        ))
        .bind(app)
        .bind(id)
        .bind(state_id)
        .bind(module)
        .bind(status)
        .bind(i64::from(*attempt))
        .bind(recipe_version)
        .bind(round)
        .bind(seq)
        .bind(comment.as_deref())
        .bind(report.body.to_string())
        .execute(&mut **tx)
        .await?;
    }
    if let Effect::Upgrade { version, from, phase, reason } = &report.effect {
        sqlx::query(&format!(
            "UPDATE instances SET upgrade_seq = ?1, upgrade_version = ?2, upgrade_from = ?3, upgrade_phase = ?4, \
               upgrade_reason = ?5, upgrade_at = {NOW} \
             WHERE app_id = ?6 AND id = ?7 AND (upgrade_seq IS NULL OR upgrade_seq < ?1)"
        ))
        .bind(seq)
        .bind(version)
        .bind(from.as_deref())
        .bind(phase)
        .bind(reason.as_deref())
        .bind(app)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    if report.seq % PRUNE_EVERY == 0 {
        prune(tx, app, id).await?;
    }
    Ok(true)
}

const INSTANCE_COLUMNS: &str = "SELECT app_id, id, created_at, last_seq, agent_version, \
    recipe_version, last_seen, round, round_result, upgrade_version, upgrade_from, upgrade_phase, \
    upgrade_reason, upgrade_at, component, facts FROM instances";

fn instance_row(r: &SqliteRow) -> anyhow::Result<InstanceRow> {
    Ok(InstanceRow {
        app_id: r.try_get("app_id")?,
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        last_seq: to_u64(r.try_get("last_seq")?),
        agent_version: r.try_get("agent_version")?,
        recipe_version: r.try_get::<Option<i64>, _>("recipe_version")?.map(to_u64),
        last_seen: r.try_get("last_seen")?,
        round: r.try_get::<Option<i64>, _>("round")?.map(to_u64),
        round_result: r.try_get("round_result")?,
        component: r.try_get::<Option<String>, _>("component")?.unwrap_or_else(|| r.try_get("id").unwrap_or_default()),
        facts: r.try_get::<Option<String>, _>("facts")?.and_then(|f| serde_json::from_str(&f).ok()),
        upgrade: match (
            r.try_get::<Option<String>, _>("upgrade_version")?,
            r.try_get::<Option<String>, _>("upgrade_phase")?,
        ) {
            (Some(version), Some(phase)) => Some(UpgradeRow {
                version,
                from: r.try_get("upgrade_from")?,
                phase,
                reason: r.try_get("upgrade_reason")?,
                at: r.try_get::<Option<String>, _>("upgrade_at")?.unwrap_or_default(),
            }),
            _ => None,
        },
    })
}

const STATUS_COLUMNS: &str = "SELECT instance_id, state_id, module, status, attempt, recipe_version, round, \
    comment, updated_at FROM state_status";

fn status_row(r: &SqliteRow) -> anyhow::Result<StateStatusRow> {
    Ok(StateStatusRow {
        instance_id: r.try_get("instance_id")?,
        state_id: r.try_get("state_id")?,
        module: r.try_get("module")?,
        status: r.try_get("status")?,
        attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
        recipe_version: to_u64(r.try_get("recipe_version")?),
        round: to_u64(r.try_get("round")?),
        comment: r.try_get("comment")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn message_row(r: &SqliteRow) -> anyhow::Result<MessageRow> {
    Ok(MessageRow {
        instance_id: r.try_get("instance_id")?,
        seq: to_u64(r.try_get("seq")?),
        received_at: r.try_get("received_at")?,
        body: serde_json::from_str(r.try_get("body")?)?,
    })
}

fn recipe_version_row(r: &SqliteRow) -> anyhow::Result<RecipeVersionRow> {
    Ok(RecipeVersionRow {
        version: to_u64(r.try_get("version")?),
        created_at: r.try_get("created_at")?,
        body: serde_json::from_str(r.try_get("body")?)?,
    })
}

fn pairs(rows: &[SqliteRow]) -> anyhow::Result<Pairs> {
    let mut set = HashSet::with_capacity(rows.len());
    for r in rows {
        set.insert((r.try_get("instance_id")?, r.try_get("state_id")?));
    }
    Ok(set)
}

/// Drops an instance's messages older than the last [`HISTORY_PER_INSTANCE`], remembering the
/// floor so that a replay of a dropped seq still counts as a duplicate.
async fn prune(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, app: &str, id: &str) -> anyhow::Result<()> {
    let cutoff =
        sqlx::query("SELECT seq FROM messages WHERE app_id = ? AND instance_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?")
            .bind(app)
            .bind(id)
            .bind(HISTORY_PER_INSTANCE)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(cutoff) = cutoff else {
        return Ok(());
    };
    let cutoff: i64 = cutoff.try_get("seq")?;
    sqlx::query("DELETE FROM messages WHERE app_id = ? AND instance_id = ? AND seq <= ?")
        .bind(app)
        .bind(id)
        .bind(cutoff)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE instances SET pruned_seq = MAX(pruned_seq, ?) WHERE app_id = ? AND id = ?")
        .bind(cutoff)
        .bind(app)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Seqs and versions are `u64` on the wire and `INTEGER` (i64) in SQLite.
fn to_i64(value: u64) -> anyhow::Result<i64> {
    i64::try_from(value).with_context(|| format!("{value} is too large to store"))
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

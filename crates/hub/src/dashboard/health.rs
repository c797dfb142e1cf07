//! What the dashboard says about an instance at a glance: its [`Health`] (from its connection,
//! its last round and its states' latest reports in the current recipe version) and how each
//! status reads, with a symbol, so that nothing depends on colour alone.

use std::collections::{HashMap, HashSet};

use crate::recipe::CurrentRecipe;
use crate::store::{InstanceRow, StateStatusRow};

/// An instance's condition, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Its agent is not connected.
    Disconnected,
    /// Its last round failed, or a state of the running round failed (and is retried).
    Failing,
    /// Its round stopped at a `meta.wait` that is not released yet.
    Waiting,
    /// A round runs, or it has not finished one of the current recipe version yet.
    Running,
    /// Its last round of the current recipe version succeeded.
    Converged,
}

impl Health {
    pub const ALL: [Health; 5] =
        [Health::Converged, Health::Running, Health::Waiting, Health::Failing, Health::Disconnected];

    pub fn label(self) -> &'static str {
        match self {
            Health::Converged => "converged",
            Health::Running => "running",
            Health::Waiting => "waiting",
            Health::Failing => "failing",
            Health::Disconnected => "disconnected",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Health::Converged => "✔",
            Health::Running => "↻",
            Health::Waiting => "‖",
            Health::Failing => "✖",
            Health::Disconnected => "⊘",
        }
    }
}

/// The symbol of a state status as reported (`ok`, `changed`, …), of `pending`/`waiting`, or of
/// an upgrade phase (`downloading` … `confirmed`, `rolled_back`, `refused`, `failed`).
pub fn status_symbol(status: &str) -> &'static str {
    match status {
        "ok" => "✔",
        "changed" => "✎",
        "failed" => "✖",
        "skipped" => "↷",
        "interrupted" => "■",
        "waiting" => "‖",
        "released" => "✔",
        "pending" => "○",
        "not run" => "–",
        "running" => "↻",
        "succeeded" => "✔",
        // Upgrade phases.
        "downloading" => "↓",
        "downloaded" => "⤓",
        "verified" => "☑",
        "installed" => "⇪",
        "confirmed" => "✔",
        "rolling_back" => "↺",
        "rolled_back" => "↶",
        "refused" => "⊘",
        _ => "·",
    }
}

/// What one instance looks like now.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub health: Health,
    pub connected: bool,
    /// The latest report of each state of the current recipe in the instance's current round,
    /// in recipe order: `(state id, status)`; `pending` when it has no report in that round,
    /// `waiting` for a wait the round reached.
    pub states: Vec<(String, String)>,
    /// The wait the round stopped at, if any.
    pub waiting_at: Option<String>,
}

/// Everything needed to judge the instances of one app, read once per page.
pub struct AppFacts<'a> {
    /// Each instance's current recipe.
    pub recipes: &'a HashMap<String, std::sync::Arc<CurrentRecipe>>,
    /// (instance, wait) released in the instance's current version.
    pub released: &'a HashSet<(String, String)>,
    /// Latest reports by instance.
    pub statuses: &'a HashMap<String, Vec<StateStatusRow>>,
}

impl AppFacts<'_> {
    /// Judges one instance.
    pub fn view(&self, instance: &InstanceRow, connected: bool) -> InstanceView {
        let no_reports = Vec::new();
        let reports = self.statuses.get(&instance.id).unwrap_or(&no_reports);
        let recipe = self.recipes.get(&instance.id).map(|r| r.as_ref());
        let current_version = recipe.map(|r| r.version);
        let round = instance.round;
        // Reports of the instance's current round of the current version.
        let in_round: HashMap<&str, &StateStatusRow> = reports
            .iter()
            .filter(|r| Some(r.recipe_version) == current_version && Some(r.round) == round)
            .map(|r| (r.state_id.as_str(), r))
            .collect();
        let running = instance.round_result.as_deref() == Some("running");
        let mut states = Vec::new();
        let mut waiting_at = None;
        if let Some(recipe) = recipe {
            let mut ordered: Vec<(&String, usize)> = recipe.order.iter().map(|(id, i)| (id, *i)).collect();
            ordered.sort_by_key(|(_, i)| *i);
            let mut all_before_done = true;
            for (id, _) in ordered {
                let status = match in_round.get(id.as_str()) {
                    Some(report) => report.status.clone(),
                    None => {
                        let is_wait =
                            recipe.waits.iter().any(|w| &w.state_id == id) || recipe.holds.iter().any(|(h, _)| h == id);
                        let released = self.released.contains(&(instance.id.clone(), id.clone()));
                        if is_wait && running && all_before_done && !released && waiting_at.is_none() {
                            waiting_at = Some(id.clone());
                            "waiting".to_string()
                        } else {
                            "pending".to_string()
                        }
                    }
                };
                all_before_done &= matches!(status.as_str(), "ok" | "changed" | "skipped");
                states.push((id.clone(), status));
            }
        }
        let on_current = current_version.is_some() && instance.recipe_version == current_version;
        let any_failed = states.iter().any(|(_, s)| s == "failed");
        let health = if !connected {
            Health::Disconnected
        } else if recipe.is_none() {
            // Nothing to run: the agent is as converged as it can be.
            Health::Converged
        } else if on_current && (instance.round_result.as_deref() == Some("failed") || (running && any_failed)) {
            Health::Failing
        } else if waiting_at.is_some() {
            Health::Waiting
        } else if on_current && instance.round_result.as_deref() == Some("succeeded") {
            Health::Converged
        } else {
            Health::Running
        };
        InstanceView { health, connected, states, waiting_at }
    }
}

/// Groups status rows by instance.
pub fn by_instance(rows: Vec<StateStatusRow>) -> HashMap<String, Vec<StateStatusRow>> {
    let mut map: HashMap<String, Vec<StateStatusRow>> = HashMap::new();
    for row in rows {
        map.entry(row.instance_id.clone()).or_default().push(row);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InstanceRecipeRow;

    fn recipe() -> CurrentRecipe {
        let body = serde_json::json!({ "recipe_version": 2, "state": [
            { "id": "conf", "module": "linux.file", "parameter": { "path": "/tmp/x", "content": "x" } },
            { "id": "gate", "module": "meta.wait", "parameter": {} },
            { "id": "after", "module": "meta.comment", "parameter": {} },
        ]});
        CurrentRecipe::from_row(InstanceRecipeRow { instance_id: "i".into(), version: 2, source_version: 2, body })
    }

    fn instance(recipe_version: Option<u64>, round: Option<u64>, result: Option<&str>) -> InstanceRow {
        InstanceRow {
            app_id: "app".into(),
            id: "i".into(),
            created_at: String::new(),
            last_seq: 0,
            agent_version: Some("0.1.0".into()),
            recipe_version,
            last_seen: None,
            round,
            round_result: result.map(str::to_string),
            component: "i".into(),
            facts: None,
            upgrade: None,
        }
    }

    fn report(state_id: &str, status: &str, recipe_version: u64, round: u64) -> StateStatusRow {
        StateStatusRow {
            instance_id: "i".into(),
            state_id: state_id.into(),
            module: String::new(),
            status: status.into(),
            attempt: 1,
            recipe_version,
            round,
            comment: None,
            updated_at: String::new(),
        }
    }

    /// The health of instance `i` with these reports, connected, gate released or not.
    fn check(row: InstanceRow, reports: Vec<StateStatusRow>, released: bool, expect: (Health, &[&str])) {
        let recipes = HashMap::from([("i".to_string(), std::sync::Arc::new(recipe()))]);
        let mut released_set = HashSet::new();
        if released {
            released_set.insert(("i".to_string(), "gate".to_string()));
        }
        let statuses = HashMap::from([("i".to_string(), reports)]);
        let facts = AppFacts { recipes: &recipes, released: &released_set, statuses: &statuses };
        let view = facts.view(&row, true);
        let states: Vec<&str> = view.states.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!((view.health, states.as_slice()), expect);
    }

    #[test]
    fn healths() {
        let running = || instance(Some(2), Some(5), Some("running"));
        check(running(), vec![], false, (Health::Running, &["pending", "pending", "pending"]));
        check(
            running(),
            vec![report("conf", "changed", 2, 5)],
            false,
            (Health::Waiting, &["changed", "waiting", "pending"]),
        );
        check(
            running(),
            vec![report("conf", "changed", 2, 5)],
            true,
            (Health::Running, &["changed", "pending", "pending"]),
        );
        check(
            running(),
            vec![report("conf", "failed", 2, 5)],
            false,
            (Health::Failing, &["failed", "pending", "pending"]),
        );
        // Reports of an older round or version do not count for the current one.
        check(running(), vec![report("conf", "ok", 2, 4)], true, (Health::Running, &["pending", "pending", "pending"]));
        let done = vec![report("conf", "ok", 2, 5), report("gate", "ok", 2, 5), report("after", "skipped", 2, 5)];
        check(instance(Some(2), Some(5), Some("succeeded")), done, true, (Health::Converged, &["ok", "ok", "skipped"]));
        // Succeeded on an older version: not converged on the current one.
        check(
            instance(Some(1), Some(5), Some("succeeded")),
            vec![],
            true,
            (Health::Running, &["pending", "pending", "pending"]),
        );
        check(
            instance(Some(2), Some(5), Some("failed")),
            vec![],
            true,
            (Health::Failing, &["pending", "pending", "pending"]),
        );
    }
}

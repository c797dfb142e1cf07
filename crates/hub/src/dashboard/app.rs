//! `/apps/{app}`: the app's instances as a grid, each with its health, the states of its current
//! round (one symbol per state, in recipe order), its recipe version and its last contact.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::health::{self, AppFacts, Health, InstanceView};
use super::layout::{self, AppTab, Page};
use super::session::{encode_component, Session};
use super::{require_app, PageResult};
use crate::recipe::AppRecipes;
use crate::shared::Shared;
use crate::store::{InstanceRow, StateStatusRow};

/// What the pages read about one app.
pub(super) struct AppData {
    pub recipes: Arc<AppRecipes>,
    pub instances: Vec<InstanceRow>,
    pub statuses: HashMap<String, Vec<StateStatusRow>>,
    pub released: HashSet<(String, String)>,
}

impl AppData {
    pub(super) async fn load(shared: &Shared, app: &str) -> anyhow::Result<AppData> {
        let recipes = shared.recipes.app(&shared.store, app).await?;
        let released = crate::waits::released_now(shared.store.released_all(app).await?, &recipes);
        Ok(AppData {
            instances: shared.store.list_instances(app).await?,
            statuses: health::by_instance(shared.store.state_statuses(app).await?),
            recipes,
            released,
        })
    }

    /// Every instance with its view.
    pub(super) fn views<'a>(&'a self, shared: &Shared, app: &str) -> Vec<(&'a InstanceRow, InstanceView)> {
        let facts = AppFacts { recipes: &self.recipes.instances, released: &self.released, statuses: &self.statuses };
        self.instances.iter().map(|i| (i, facts.view(i, shared.registry.is_connected(app, &i.id)))).collect()
    }
}

/// How many instances are in each health, and which agent versions run.
pub(super) struct Summary {
    pub counts: BTreeMap<Health, usize>,
    pub agent_versions: BTreeMap<String, usize>,
}

impl Summary {
    pub(super) fn of(views: &[(&InstanceRow, InstanceView)]) -> Summary {
        let mut counts = BTreeMap::new();
        let mut agent_versions = BTreeMap::new();
        for (instance, view) in views {
            *counts.entry(view.health).or_insert(0) += 1;
            let version = instance.agent_version.clone().unwrap_or_else(|| "never connected".into());
            *agent_versions.entry(version).or_insert(0) += 1;
        }
        Summary { counts, agent_versions }
    }

    pub(super) fn render(&self) -> Markup {
        html! {
            ul.counts {
                @for health in Health::ALL {
                    li class=(format!("count h-{}", health.label())) data-health=(health.label()) {
                        span.n { (self.counts.get(&health).copied().unwrap_or(0)) }
                        " " span aria-hidden="true" { (health.symbol()) } " " (health.label())
                    }
                }
            }
            p.versions {
                "agents: "
                @for (i, (version, n)) in self.agent_versions.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (version) } " × " (n)
                }
                @if self.agent_versions.is_empty() { span.muted { "no instances" } }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct GridQuery {
    /// Only these instances' cards (comma-separated ids): what `dashboard.js` asks for when a few
    /// instances changed, so that a page of thousands is patched rather than re-rendered.
    only: Option<String>,
}

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(app): Path<String>,
    Query(query): Query<GridQuery>,
) -> PageResult {
    require_app(&shared, &app).await?;
    let data = AppData::load(&shared, &app).await?;
    let mut views = data.views(&shared, &app);
    let summary = Summary::of(&views);
    let n_instances = views.len();
    if let Some(only) = &query.only {
        let only: HashSet<&str> = only.split(',').collect();
        views.retain(|(instance, _)| only.contains(instance.id.as_str()));
    }
    let current = data.recipes.source.as_ref().map(|r| r.version);
    let body = html! {
        section.summary {
            (summary.render())
            p {
                "recipe: "
                @match current { Some(v) => strong { "version " (v) }, None => span.muted { "none pushed yet" } }
                " · " a href=(format!("/apps/{}/recipes", encode_component(&app))) { "recipes, diffs and push" }
                " · " a href=(format!("/apps/{}/releases", encode_component(&app))) data-marker="releases-link" { "releases and upgrades" }
            }
        }
        section {
            h2 { (n_instances) " instances" }
            ol.grid data-marker="instance-grid" data-patch="instances" {
                @for (instance, view) in &views {
                    (card(&app, instance, view, data.recipes.instances.get(&instance.id).map(|r| r.version)))
                }
            }
        }
    };
    let live = Some(format!("/events?app={}", encode_component(&app)));
    let crumbs = [("apps", "/".to_string())];
    Ok(super::html(layout::page(
        &Page { title: &app, crumbs: &crumbs, live, app: Some((app.as_str(), Some(AppTab::Instances))) },
        &session,
        body,
    )))
}

fn card(app: &str, instance: &InstanceRow, view: &InstanceView, current: Option<u64>) -> Markup {
    let href = format!("/apps/{}/instances/{}", encode_component(app), encode_component(&instance.id));
    let done = view.states.iter().filter(|(_, s)| matches!(s.as_str(), "ok" | "changed" | "skipped")).count();
    html! {
        li class=(format!("card inst h-{}", view.health.label())) data-instance=(instance.id) data-health=(view.health.label()) {
            div.head {
                a.name href=(href) { (instance.id) }
                @if instance.component != instance.id { " " span.muted data-marker="component" { "in " code { (instance.component) } } }
                (layout::health_badge(view.health))
            }
            @if !view.states.is_empty() {
                div.cells { @for (id, status) in &view.states { (layout::status_cell(id, status)) } }
            }
            dl.facts {
                dt { "round" }
                dd {
                    @match (instance.round, &instance.round_result) {
                        (Some(round), Some(result)) => { "#" (round) " " (result) " · " (done) "/" (view.states.len()) }
                        _ => span.muted { "none yet" },
                    }
                    @if let Some(wait) = &view.waiting_at { " · waits at " code { (wait) } }
                }
                dt { "recipe" }
                dd {
                    @match instance.recipe_version {
                        Some(v) if Some(v) == current => { "v" (v) }
                        Some(v) => { "v" (v) span.muted { " (current: v" (current.unwrap_or(0)) ")" } }
                        None => span.muted { "none" },
                    }
                }
                dt { "contact" }
                dd { @if view.connected { "connected" } @else { (layout::time(instance.last_seen.as_deref())) } }
            }
        }
    }
}

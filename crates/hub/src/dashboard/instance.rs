//! `/apps/{app}/instances/{instance}`: the current and recent rounds of one instance, state by
//! state (status, attempts, duration, changes, diff, output tails, errors), and a release button
//! for every `meta.wait` of the current recipe not released yet on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::health::{AppFacts, InstanceView};
use super::layout::{self, Page};
use super::session::{csrf_ok, csrf_refused, encode_component, Session};
use super::{require_app, PageError, PageResult};
use crate::recipe::CurrentRecipe;
use crate::shared::Shared;
use crate::store::{InstanceRow, MessageRow};
use crate::waits;

/// Messages read for the rounds shown.
const MESSAGES: u32 = 500;

/// Rounds shown: the current one and this many before it.
const EARLIER_ROUNDS: usize = 5;

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path((app, id)): Path<(String, String)>,
) -> PageResult {
    require_app(&shared, &app).await?;
    let Some(instance) = shared.store.instance(&app, &id).await? else {
        return Err(PageError::NotFound(format!("app `{app}` has no instance `{id}`")));
    };
    let recipe = shared.recipes.current(&shared.store, &app, &id).await?;
    let released: HashSet<(String, String)> = match &recipe {
        Some(r) => {
            shared.store.released_waits(&app, &id, r.version).await?.into_iter().map(|s| (id.clone(), s)).collect()
        }
        None => HashSet::new(),
    };
    let statuses = HashMap::from([(id.clone(), shared.store.instance_state_statuses(&app, &id).await?)]);
    let recipes: HashMap<String, Arc<CurrentRecipe>> = recipe.iter().map(|r| (id.clone(), r.clone())).collect();
    let facts = AppFacts { recipes: &recipes, released: &released, statuses: &statuses };
    let waiting_for: Vec<(String, String)> = match &recipe {
        Some(r) => {
            let progress = waits::Progress::load(&shared, &app).await?;
            waits::waiting_for(&progress, &id, r, &released)
        }
        None => Vec::new(),
    };
    let connected = shared.registry.is_connected(&app, &id);
    let view = facts.view(&instance, connected);
    let rounds = rounds(shared.store.instance_messages(&app, &id, MESSAGES).await?);

    let body = html! {
        section.summary.card {
            div.head { h2 { (id) } (layout::health_badge(view.health)) }
            (facts_list(&instance, &view, recipe.as_deref()))
            @for (state_id, message) in &waiting_for {
                p.waiting data-marker="waiting-for" data-state=(state_id) { code { (state_id) } ": " (message) }
            }
            form.inline method="post" action=(format!("/apps/{}/instances/{}/reload", encode_component(&app), encode_component(&id))) {
                input type="hidden" name="csrf" value=(session.csrf);
                button type="submit" data-marker="reload" { "Run now" }
            }
        }
        @if let Some(recipe) = &recipe {
            (waits_section(&app, &instance, &view, recipe, &released, &session))
        }
        @let mut rounds = rounds.iter();
        @if let Some(round) = rounds.next() {
            section.round.current data-marker="current-round" {
                h2 { "Round " (round.round) " " span.muted { "(recipe v" (round.recipe_version) ")" } }
                (round_table(round, Some((&view, recipe.as_deref()))))
            }
        } @else {
            p.card.muted { "No round reported yet." }
        }
        @let earlier: Vec<&Round> = rounds.take(EARLIER_ROUNDS).collect();
        @if !earlier.is_empty() {
            section.earlier {
                h2 { "Earlier rounds" }
                @for round in earlier {
                    details.round data-key=(format!("round-{}-{}", round.recipe_version, round.round)) {
                        summary {
                            "Round " (round.round) " (recipe v" (round.recipe_version) ") "
                            (layout::status_badge(round.result.as_deref().unwrap_or("running")))
                            @if let Some(ms) = round.duration_ms { " " span.muted { (layout::duration_ms(ms)) } }
                        }
                        (round_table(round, None))
                    }
                }
            }
        }
    };
    let live = Some(format!("/events?app={}&instance={}", encode_component(&app), encode_component(&id)));
    let crumbs = [("apps", "/".to_string()), (app.as_str(), format!("/apps/{}", encode_component(&app)))];
    Ok(super::html(layout::page(
        &Page { title: &id, crumbs: &crumbs, live, app: Some((app.as_str(), None)) },
        &session,
        body,
    )))
}

fn facts_list(instance: &InstanceRow, view: &InstanceView, recipe: Option<&CurrentRecipe>) -> Markup {
    html! {
        dl.facts.wide {
            dt { "agent" }
            dd {
                @if view.connected { "connected" } @else { "disconnected" }
                @if let Some(v) = &instance.agent_version { " · version " code { (v) } }
            }
            dt { "last contact" } dd { (layout::time(instance.last_seen.as_deref())) }
            dt { "component" } dd { code { (instance.component) } }
            @if let Some(facts) = &instance.facts {
                dt { "facts" }
                dd.facts {
                    @for (i, (k, v)) in facts.iter().enumerate() {
                        @if i > 0 { " · " }
                        (k) " " code { (v.join(",")) }
                    }
                }
            }
            dt { "recipe" }
            dd {
                @match instance.recipe_version { Some(v) => { "v" (v) }, None => span.muted { "none" } }
                @if let Some(r) = recipe { span.muted { " (current: v" (r.version) ")" } }
            }
            dt { "round" }
            dd {
                @match (instance.round, &instance.round_result) {
                    (Some(round), Some(result)) => { "#" (round) " " (layout::status_badge(result)) }
                    _ => span.muted { "none yet" },
                }
            }
            dt { "last seq" } dd { (instance.last_seq) }
        }
    }
}

fn waits_section(
    app: &str,
    instance: &InstanceRow,
    view: &InstanceView,
    recipe: &CurrentRecipe,
    released: &HashSet<(String, String)>,
    session: &Session,
) -> Markup {
    if recipe.waits.is_empty() {
        return layout::nothing();
    }
    let action = format!("/apps/{}/instances/{}/release", encode_component(app), encode_component(&instance.id));
    html! {
        section.waits.card {
            h2 { "Waits (recipe v" (recipe.version) ")" }
            ul {
                @for wait in &recipe.waits {
                    @let is_released = released.contains(&(instance.id.clone(), wait.state_id.clone()));
                    @let reached = view.waiting_at.as_deref() == Some(wait.state_id.as_str());
                    li data-wait=(wait.state_id) {
                        code { (wait.state_id) }
                        " "
                        @if is_released {
                            (layout::status_badge("released"))
                        } @else {
                            @if reached { (layout::status_badge("waiting")) " the round stopped here " }
                            @else { span.muted { "not reached yet " } }
                            form.inline method="post" action=(action) {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="state_id" value=(wait.state_id);
                                input type="hidden" name="recipe_version" value=(recipe.version);
                                button type="submit" data-release=(wait.state_id) { "Release " (wait.state_id) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What every form of the instance page checks first: the CSRF token, then that the app and the
/// instance exist. `Some` is the answer to give instead.
async fn check_form(
    shared: &Shared,
    session: &Session,
    csrf: &str,
    app: &str,
    id: &str,
) -> Result<Option<Response>, PageError> {
    if !csrf_ok(session, csrf) {
        return Ok(Some(csrf_refused()));
    }
    require_app(shared, app).await?;
    if shared.store.instance(app, id).await?.is_none() {
        return Err(PageError::NotFound(format!("app `{app}` has no instance `{id}`")));
    }
    Ok(None)
}

#[derive(Deserialize)]
pub(super) struct ReleaseForm {
    csrf: String,
    state_id: String,
    recipe_version: u64,
}

/// `POST …/release`: releases one wait on this instance, as `opsagent-hub done` does.
pub(super) async fn release(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path((app, id)): Path<(String, String)>,
    Form(form): Form<ReleaseForm>,
) -> Result<Response, PageError> {
    if let Some(refused) = check_form(&shared, &session, &form.csrf, &app, &id).await? {
        return Ok(refused);
    }
    let Some(current) = shared.recipes.current(&shared.store, &app, &id).await? else {
        return Err(PageError::NotFound(format!("instance `{id}` of app `{app}` has no recipe yet")));
    };
    if form.recipe_version != current.version || !current.order.contains_key(&form.state_id) {
        let message = format!(
            "recipe version {} of instance `{id}` has no state `{}` (the current version is {}); reload the page",
            form.recipe_version, form.state_id, current.version
        );
        return Ok((StatusCode::CONFLICT, message).into_response());
    }
    waits::release_by_hand(&shared, &app, &[(id.clone(), form.recipe_version)], &form.state_id).await?;
    let back = format!("/apps/{}/instances/{}", encode_component(&app), encode_component(&id));
    Ok(Redirect::to(&back).into_response())
}

#[derive(Deserialize)]
pub(super) struct ReloadForm {
    csrf: String,
}

/// `POST …/reload`: runs a round now on this instance, as `opsagent-hub reload` does.
pub(super) async fn reload(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path((app, id)): Path<(String, String)>,
    Form(form): Form<ReloadForm>,
) -> Result<Response, PageError> {
    if let Some(refused) = check_form(&shared, &session, &form.csrf, &app, &id).await? {
        return Ok(refused);
    }
    let (_, offline) = crate::recipe::reload(&shared, &app, std::slice::from_ref(&id));
    if !offline.is_empty() {
        let message = format!("instance `{id}` is not connected: its agent runs a round when it connects");
        return Ok((StatusCode::CONFLICT, message).into_response());
    }
    let back = format!("/apps/{}/instances/{}", encode_component(&app), encode_component(&id));
    Ok(Redirect::to(&back).into_response())
}

/// One round as its messages tell it.
struct Round {
    recipe_version: u64,
    round: u64,
    started_at: Option<String>,
    result: Option<String>,
    duration_ms: Option<u64>,
    /// State id → its attempts' logs, oldest first; ids in the order they first reported.
    logs: Vec<(String, Vec<Value>)>,
}

/// Groups messages (oldest first) into rounds, newest round first.
fn rounds(messages: Vec<MessageRow>) -> Vec<Round> {
    let mut rounds: BTreeMap<(u64, u64), Round> = BTreeMap::new();
    let mut order: Vec<(u64, u64)> = Vec::new();
    for message in messages {
        let body = message.body;
        let version = body["recipe_version"].as_u64().unwrap_or(0);
        let number = body["round"].as_u64().unwrap_or(0);
        let key = (version, number);
        let round = rounds.entry(key).or_insert_with(|| {
            order.push(key);
            Round {
                recipe_version: version,
                round: number,
                started_at: None,
                result: None,
                duration_ms: None,
                logs: Vec::new(),
            }
        });
        match body["code"].as_str() {
            Some("RoundStart") => round.started_at = body["started_at"].as_str().map(str::to_string),
            Some("RoundEnd") => {
                round.result = body["result"].as_str().map(str::to_string);
                round.duration_ms = body["duration_ms"].as_u64();
            }
            _ => {
                let id = body["id"].as_str().unwrap_or("").to_string();
                match round.logs.iter_mut().find(|(s, _)| *s == id) {
                    Some((_, attempts)) => attempts.push(body),
                    None => round.logs.push((id, vec![body])),
                }
            }
        }
    }
    // Rounds count up per agent: the newest is the one with the highest number (a round that
    // started last), whatever its version.
    order.sort_by_key(|(version, number)| std::cmp::Reverse((*number, *version)));
    order.into_iter().filter_map(|key| rounds.remove(&key)).collect()
}

/// A round's states; for the current round, also the states of the current recipe that have not
/// reported yet (pending, or the wait the round stopped at).
fn round_table(round: &Round, current: Option<(&InstanceView, Option<&CurrentRecipe>)>) -> Markup {
    let mut rows: Vec<(String, Option<&Vec<Value>>, String)> =
        round.logs.iter().map(|(id, attempts)| (id.clone(), Some(attempts), String::new())).collect();
    if let Some((view, Some(recipe))) = current {
        if recipe.version == round.recipe_version {
            rows = view
                .states
                .iter()
                .map(|(id, status)| {
                    let attempts = round.logs.iter().find(|(s, _)| s == id).map(|(_, a)| a);
                    (id.clone(), attempts, status.clone())
                })
                .collect();
        }
    }
    html! {
        p.round-meta {
            @if let Some(started) = &round.started_at { "started " (layout::time(Some(started))) " · " }
            @match &round.result {
                Some(result) => { (layout::status_badge(result)) }
                None => { (layout::status_badge("running")) }
            }
            @if let Some(ms) = round.duration_ms { " in " (layout::duration_ms(ms)) }
        }
        ol.states {
            @for (id, attempts, fallback) in &rows {
                @match attempts.and_then(|a| a.last()) {
                    Some(log) => (state_row(id, log, attempts.map_or(0, |a| a.len()))),
                    None => li.state data-state=(id) {
                        // A round that ended without reaching a state did not run it.
                        @let status = if round.result.is_some() && fallback == "pending" { "not run" } else { fallback.as_str() };
                        div.head { (layout::status_badge(status)) " " code.id { (id) } }
                    },
                }
            }
        }
    }
}

fn state_row(id: &str, log: &Value, n_attempts: usize) -> Markup {
    let status = log["status"].as_str().unwrap_or("");
    let module = log["module"].as_str().unwrap_or("");
    let text = |key: &str| log[key].as_str().filter(|s| !s.is_empty());
    let changes = log["changes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    html! {
        li class=(format!("state s-{status}")) data-state=(id) data-status=(status) {
            div.head {
                (layout::status_badge(status)) " "
                code.id { (id) } " " span.module { (module) }
                span.muted.right {
                    "attempt " (log["attempt"].as_u64().unwrap_or(0))
                    @if n_attempts > 1 { " (" (n_attempts) " reported)" }
                    @if log["will_retry"] == true { " · will retry" }
                    " · " (layout::duration_ms(log["duration_ms"].as_u64().unwrap_or(0)))
                }
            }
            @if let Some(comment) = text("state_comment") {
                @if status == "failed" {
                    p.error role="note" {
                        span aria-hidden="true" { "✖ " } "state " code { (id) } " (" (module) "): " (comment)
                    }
                } @else {
                    p.comment { (comment) }
                }
            }
            @if !changes.is_empty() {
                ul.changes {
                    @for c in changes {
                        li {
                            span.action { (c["action"].as_str().unwrap_or("")) } " "
                            code { (c["target"].as_str().unwrap_or("")) }
                            @if let Some(detail) = c["detail"].as_str().filter(|d| !d.is_empty()) { " " span.muted { (detail) } }
                        }
                    }
                }
            }
            @if let Some(diff) = text("diff") {
                details data-key=(format!("{id}-diff")) { summary { "diff" } pre.diff { (diff_markup(diff)) } }
            }
            @for (key, label) in [("stdout", "stdout (tail)"), ("stderr", "stderr (tail)")] {
                @if let Some(out) = text(key) {
                    details data-key=(format!("{id}-{key}")) { summary { (label) } pre { (out) } }
                }
            }
        }
    }
}

/// A unified diff, each line marked for its class (the `+`/`-` stay: readable without colour).
pub(super) fn diff_markup(diff: &str) -> Markup {
    html! {
        @for line in diff.lines() {
            @let class = if line.starts_with("+++") || line.starts_with("---") { "meta" }
                else if line.starts_with('+') { "add" }
                else if line.starts_with('-') { "del" }
                else if line.starts_with("@@") { "hunk" }
                else { "ctx" };
            span class=(class) { (line) } "\n"
        }
    }
}

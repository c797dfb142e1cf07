//! `/apps/{app}/releases`: the agent releases on this hub, the app's target version, each
//! instance's agent version and latest upgrade report (phase, from → to, reason), live; and a form
//! to order an upgrade, which goes through `releases::order_upgrade` as the API does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AppTab, Page};
use super::session::{csrf_ok, csrf_refused, encode_component, Session};
use super::{require_app, PageError, PageResult};
use crate::releases::{self, Manifest, OrderError};
use crate::shared::Shared;
use crate::store::{InstanceRow, Target};

#[derive(Deserialize, Default)]
pub(super) struct OrderedQuery {
    /// The version just ordered (a notice after the redirect).
    ordered: Option<String>,
    sent_to: Option<usize>,
}

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(app): Path<String>,
    Query(query): Query<OrderedQuery>,
) -> PageResult {
    require_app(&shared, &app).await?;
    let notice = query.ordered.map(|v| {
        format!(
            "ordered agent {v}: sent to {} connected agent(s) on another version; the others upgrade when they connect",
            query.sent_to.unwrap_or(0)
        )
    });
    let data = Data::load(&shared, &app).await?;
    Ok(super::html(render(&app, &session, &data, notice.as_deref(), None)))
}

#[derive(Deserialize)]
pub(super) struct OrderForm {
    /// Missing counts as wrong (403 with the reason, not a bare 422).
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: String,
    /// A ticked checkbox sends `on`; an unticked one sends nothing.
    allow_downgrade: Option<String>,
}

/// `POST /apps/{app}/releases`: orders an upgrade through `releases::order_upgrade`; a refused
/// order shows the page again with the error above the form.
pub(super) async fn order(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(app): Path<String>,
    Form(form): Form<OrderForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&session, &form.csrf) {
        return Ok(csrf_refused());
    }
    require_app(&shared, &app).await?;
    let allow_downgrade = form.allow_downgrade.is_some();
    match releases::order_upgrade(&shared, &app, &form.version, allow_downgrade).await {
        Ok(ordered) => {
            let back = format!(
                "/apps/{}/releases?ordered={}&sent_to={}",
                encode_component(&app),
                encode_component(&ordered.version),
                ordered.sent_to
            );
            Ok(Redirect::to(&back).into_response())
        }
        Err(OrderError::Internal(e)) => Err(PageError::Internal(e)),
        Err(error) => {
            tracing::info!(app_id = %app, version = %form.version, allow_downgrade, error = %error.message(),
                "dashboard upgrade order refused");
            let status = match error {
                OrderError::UnknownVersion(_) => StatusCode::NOT_FOUND,
                OrderError::Downgrade { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            let data = Data::load(&shared, &app).await?;
            let refused = Refused { error: &error, version: &form.version, allow_downgrade };
            let mut response = super::html(render(&app, &session, &data, None, Some(refused)));
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

/// What the page shows.
struct Data {
    /// Newest first.
    releases: Vec<(Manifest, Option<String>)>,
    target: Option<Target>,
    instances: Vec<(InstanceRow, bool)>,
}

impl Data {
    async fn load(shared: &Shared, app: &str) -> anyhow::Result<Data> {
        let mut releases: Vec<(Manifest, Option<String>)> = releases::list(&shared.data_dir)?
            .into_iter()
            .map(|m| {
                let added = releases::added_at(&shared.data_dir, &m.version);
                (m, added)
            })
            .collect();
        releases.reverse();
        let instances = shared
            .store
            .list_instances(app)
            .await?
            .into_iter()
            .map(|i| {
                let connected = shared.registry.is_connected(app, &i.id);
                (i, connected)
            })
            .collect();
        Ok(Data { releases, target: shared.store.target(app).await?, instances })
    }
}

/// A refused order: why, and what was chosen (kept in the form).
struct Refused<'a> {
    error: &'a OrderError,
    version: &'a str,
    allow_downgrade: bool,
}

fn render(app: &str, session: &Session, data: &Data, notice: Option<&str>, refused: Option<Refused<'_>>) -> Markup {
    let action = format!("/apps/{}/releases", encode_component(app));
    let target = data.target.as_ref();
    let selected = refused
        .as_ref()
        .map(|r| r.version.to_string())
        .or_else(|| target.map(|t| t.version.clone()))
        .or_else(|| data.releases.first().map(|(m, _)| m.version.clone()));
    let mut running: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for (instance, _) in &data.instances {
        *running.entry(instance.agent_version.as_deref()).or_insert(0) += 1;
    }
    let on_target = target
        .map(|t| data.instances.iter().filter(|(i, _)| i.agent_version.as_deref() == Some(t.version.as_str())).count());
    let body = html! {
        @if let Some(notice) = notice { p.notice.card role="status" { span aria-hidden="true" { "✔ " } (notice) } }
        section.summary.card {
            h2 { "Agent version" }
            dl.facts.wide {
                dt { "target" }
                dd data-marker="target" {
                    @match target {
                        Some(t) => {
                            code { (t.version) }
                            @if t.allow_downgrade { " " span.muted { "(downgrade allowed)" } }
                            " · on it: " (on_target.unwrap_or(0)) " of " (data.instances.len()) " instance(s)"
                        }
                        None => span.muted { "none ordered: every agent keeps the version it runs" },
                    }
                }
                dt { "running" }
                dd {
                    @for (i, (version, n)) in running.iter().enumerate() {
                        @if i > 0 { ", " }
                        @match version { Some(v) => code { (v) }, None => span.muted { "never connected" } }
                        " × " (n)
                    }
                    @if running.is_empty() { span.muted { "no instances" } }
                }
            }
        }
        section.card.order {
            h2 { "Order an upgrade" }
            @if let Some(refused) = &refused {
                div role="alert" data-marker="order-error" {
                    p.error { span aria-hidden="true" { "✖ " } (refused.error.message()) "; nothing was ordered" }
                    @if let Some(hint) = page_hint(refused.error) { p.hint { "hint: " (hint) } }
                }
            }
            @if data.releases.is_empty() {
                p.muted {
                    "No release on this hub yet: add one on the hub's machine with "
                    code { "opsagent-hub release add --version V --binary PATH --signing-key KEY" } "."
                }
            } @else {
                form.diff-form method="post" action=(action) #upgrade-form {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for="version" { "agent version" }
                    select #version name="version" data-keep {
                        @for (m, _) in &data.releases {
                            option value=(m.version) selected[selected.as_deref() == Some(m.version.as_str())] {
                                (m.version)
                                @if target.is_some_and(|t| t.version == m.version) { " (target)" }
                            }
                        }
                    }
                    label.check {
                        input #allow-downgrade type="checkbox" name="allow_downgrade" value="on" data-keep
                            checked[refused.as_ref().is_some_and(|r| r.allow_downgrade)];
                        " allow a downgrade"
                    }
                    button type="submit" { "Order upgrade" }
                }
                p.muted {
                    "Connected agents on another version get the order at once (a round that runs ends first); "
                    "the others when they next connect. An agent checks the release's signature before it installs it, "
                    "and goes back to its version if the new one does not reach the hub."
                }
            }
        }
        section.card {
            h2 { "Instances (" (data.instances.len()) ")" }
            @if data.instances.is_empty() { p.muted { "No instances yet." } }
            @else {
                table.list data-marker="upgrade-table" {
                    thead { tr { th { "instance" } th { "agent" } th { "latest upgrade" } th { "reported" } } }
                    tbody {
                        @for (instance, connected) in &data.instances {
                            (instance_row(app, instance, *connected, target))
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Releases on this hub (" (data.releases.len()) ")" }
            @if data.releases.is_empty() { p.muted { "None yet." } }
            @else {
                table.versions data-marker="releases" {
                    thead { tr { th { "version" } th { "added" } th { "size" } th { "sha256" } } }
                    tbody {
                        @for (m, added) in &data.releases {
                            tr data-release=(m.version) {
                                td {
                                    code { (m.version) }
                                    @if target.is_some_and(|t| t.version == m.version) { " " strong { "(target)" } }
                                }
                                td { (layout::time(added.as_deref())) }
                                td { (size(m.size)) }
                                td { code title=(m.sha256) { (m.sha256.get(..12).unwrap_or(&m.sha256)) "…" } }
                            }
                        }
                    }
                }
            }
        }
    };
    // A refused order's page stays as it is (a live refresh would fetch the page without its error).
    let live = refused.is_none().then(|| format!("/events?app={}", encode_component(app)));
    let crumbs = [("apps", "/".to_string()), (app, format!("/apps/{}", encode_component(app)))];
    let page = Page { title: "releases", crumbs: &crumbs, live, app: Some((app, Some(AppTab::Releases))) };
    layout::page(&page, session, body)
}

fn instance_row(app: &str, instance: &InstanceRow, connected: bool, target: Option<&Target>) -> Markup {
    let href = format!("/apps/{}/instances/{}", encode_component(app), encode_component(&instance.id));
    let upgrade = instance.upgrade.as_ref();
    let behind = target.filter(|t| instance.agent_version.as_deref() != Some(t.version.as_str()));
    html! {
        tr data-instance=(instance.id) data-agent-version=[instance.agent_version.as_deref()]
            data-phase=[upgrade.map(|u| u.phase.as_str())] {
            td data-label="instance" { a href=(href) { (instance.id) } }
            td data-label="agent" {
                @match &instance.agent_version {
                    Some(v) => {
                        code { (v) } " "
                        @if connected {
                            span title="connected" { span aria-hidden="true" { "●" } " connected" }
                        } @else {
                            span.muted title="disconnected" { span aria-hidden="true" { "⊘" } " disconnected" }
                        }
                    }
                    None => span.muted { "never connected" },
                }
                @if let Some(t) = behind { br; span.muted { "→ " (t.version) " ordered" } }
            }
            td data-label="latest upgrade" {
                @match upgrade {
                    Some(u) => {
                        (layout::status_badge(&u.phase)) " "
                        @if let Some(from) = &u.from { code { (from) } " → " }
                        code { (u.version) }
                        @if let Some(reason) = &u.reason {
                            @if matches!(u.phase.as_str(), "failed" | "rolled_back" | "refused") {
                                p.error { span aria-hidden="true" { "✖ " } (reason) }
                            } @else {
                                p.comment { (reason) }
                            }
                        }
                    }
                    None => span.muted { "none reported" },
                }
            }
            td data-label="reported" { (layout::time(upgrade.map(|u| u.at.as_str()))) }
        }
    }
}

/// How to fix a refused order from this page.
fn page_hint(error: &OrderError) -> Option<&'static str> {
    match error {
        OrderError::Downgrade { .. } => Some("tick \"allow a downgrade\" to order it anyway"),
        _ => error.hint(),
    }
}

/// A byte count, short.
fn size(bytes: u64) -> String {
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

//! `/apps/{app}/recipes`: the app's recipe versions, a diff between any two, and a form to push a
//! new version (pasted or loaded from a file) — validated like `opsagent validate`, with every
//! diagnostic shown next to the state it is about.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use opsagent_recipe::{Diagnostic, Severity};
use serde::Deserialize;
use similar::TextDiff;

use super::layout::{self, AppTab, Page};
use super::session::{csrf_ok, csrf_refused, encode_component, Session};
use super::{require_app, PageError, PageResult};
use crate::recipe;
use crate::shared::Shared;
use crate::store::RecipeVersionRow;

#[derive(Deserialize, Default)]
pub(super) struct DiffQuery {
    from: Option<u64>,
    to: Option<u64>,
    /// The version just pushed (a notice after the redirect).
    pushed: Option<u64>,
    sent_to: Option<usize>,
    unchanged: Option<bool>,
}

pub(super) async fn page(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(app): Path<String>,
    Query(query): Query<DiffQuery>,
) -> PageResult {
    require_app(&shared, &app).await?;
    let versions = shared.store.recipe_versions(&app).await?;
    let notice = query.pushed.map(|v| {
        if query.unchanged == Some(true) {
            format!("the recipe is unchanged: the app stays at version {v}; nothing sent")
        } else {
            format!("pushed recipe version {v} (sent to {} connected agent(s))", query.sent_to.unwrap_or(0))
        }
    });
    let body = render(&app, &session, &versions, &query, notice.as_deref(), None, &[]);
    Ok(super::html(body))
}

#[derive(Deserialize)]
pub(super) struct PushForm {
    csrf: String,
    recipe: String,
}

/// `POST /apps/{app}/recipes`: validates the text, then pushes it through `recipe::push`.
pub(super) async fn push(
    State(shared): State<Arc<Shared>>,
    Extension(session): Extension<Session>,
    Path(app): Path<String>,
    Form(form): Form<PushForm>,
) -> Result<Response, PageError> {
    if !csrf_ok(&session, &form.csrf) {
        return Ok(csrf_refused());
    }
    require_app(&shared, &app).await?;
    let strict = shared.store.app_settings(&app).await?.is_some_and(|s| s.strict);
    let mut world = recipe::world(&shared, &app, None).await?;
    let checked = recipe::wire_form(&form.recipe).and_then(|(wire, _)| recipe::validate(&wire, &mut world, strict));
    let (validated, warnings) = match checked {
        Ok(validated) => validated,
        Err(diagnostics) => {
            tracing::info!(app_id = %app, errors = diagnostics.iter().filter(|d| d.is_error()).count(),
                "dashboard recipe push refused: invalid recipe");
            let versions = shared.store.recipe_versions(&app).await?;
            let failed = Failed { text: &form.recipe, diagnostics: &diagnostics };
            let body = render(&app, &session, &versions, &DiffQuery::default(), None, Some(failed), &[]);
            let mut response = super::html(body);
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    let pushed = recipe::push(&shared, &app, validated).await?;
    if !warnings.is_empty() {
        // Shown now, with the notice: a redirect would lose them.
        let versions = shared.store.recipe_versions(&app).await?;
        let notice = format!(
            "pushed recipe version {} (sent to {} connected agent(s)), with {} warning(s)",
            pushed.version,
            pushed.sent_to,
            warnings.len()
        );
        let body = render(&app, &session, &versions, &DiffQuery::default(), Some(&notice), None, &warnings);
        return Ok(super::html(body));
    }
    let back = format!(
        "/apps/{}/recipes?pushed={}&sent_to={}&unchanged={}",
        encode_component(&app),
        pushed.version,
        pushed.sent_to,
        pushed.unchanged
    );
    Ok(Redirect::to(&back).into_response())
}

/// A refused push: what was sent and why.
struct Failed<'a> {
    text: &'a str,
    diagnostics: &'a [Diagnostic],
}

fn render(
    app: &str,
    session: &Session,
    versions: &[RecipeVersionRow],
    query: &DiffQuery,
    notice: Option<&str>,
    failed: Option<Failed<'_>>,
    warnings: &[Diagnostic],
) -> Markup {
    let newest = versions.first().map(|v| v.version);
    let to = query.to.or(newest);
    let from = query.from.or_else(|| to.map(|t| t.saturating_sub(1)).filter(|v| *v > 0));
    let find = |v: Option<u64>| v.and_then(|v| versions.iter().find(|r| r.version == v));
    let action = format!("/apps/{}/recipes", encode_component(app));
    let push_section = html! {
        section.card.push {
            h2 { "Push a new version" }
            @if let Some(failed) = &failed { (diagnostics(failed)) }
            form method="post" action=(action) #push-form {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="recipe" { "Recipe (YAML or JSON, any of the three forms)" }
                textarea #recipe name="recipe" rows="14" spellcheck="false" required {
                    @if let Some(failed) = &failed { (failed.text) }
                }
                div.row {
                    label.file { "or load a file: " input #recipe-file type="file" accept=".yaml,.yml,.json,text/*"; }
                    button type="submit" { "Validate and push" }
                }
            }
        }
    };
    let body = html! {
        @if let Some(notice) = notice { p.notice.card role="status" { span aria-hidden="true" { "✔ " } (notice) } }
        @if !warnings.is_empty() {
            ul.diags.card data-marker="push-warnings" {
                @for d in warnings {
                    @if let Some(state) = &d.state { li.muted { "state #" (state.number) " " code { (state.id.clone().unwrap_or_default()) } " " (state.module.clone().unwrap_or_default()) } }
                    (diagnostic(d))
                }
            }
        }
        @if failed.is_some() { (push_section) }
        section.card {
            h2 { "Versions" }
            @if versions.is_empty() { p.muted { "No recipe pushed yet." } }
            @else {
                form.diff-form method="get" action=(action) {
                    label { "diff from " (version_select("from", versions, from)) }
                    label { " to " (version_select("to", versions, to)) }
                    " " button type="submit" { "Show diff" }
                }
                @match (find(from), find(to)) {
                    (Some(a), Some(b)) => (diff(a, b)),
                    (None, Some(b)) => {
                        h3 { "version " (b.version) }
                        pre.diff { (pretty(b)) }
                    }
                    _ => {}
                }
                table.versions {
                    thead { tr { th { "version" } th { "pushed" } th { "states" } } }
                    tbody {
                        @for v in versions {
                            tr {
                                td { "v" (v.version) @if Some(v.version) == newest { " (current)" } }
                                td { (layout::time(Some(&v.created_at))) }
                                td { (v.body["state"].as_array().map_or(0, Vec::len)) }
                            }
                        }
                    }
                }
            }
        }
        @if failed.is_none() { (push_section) }
    };
    let crumbs = [("apps", "/".to_string()), (app, format!("/apps/{}", encode_component(app)))];
    layout::page(
        &Page { title: "recipes", crumbs: &crumbs, live: None, app: Some((app, Some(AppTab::Recipes))) },
        session,
        body,
    )
}

fn version_select(name: &str, versions: &[RecipeVersionRow], selected: Option<u64>) -> Markup {
    html! {
        select name=(name) {
            @for v in versions {
                option value=(v.version) selected[Some(v.version) == selected] { "v" (v.version) }
            }
        }
    }
}

fn pretty(row: &RecipeVersionRow) -> String {
    // The version differs between any two: it would be noise in every diff.
    serde_json::to_string_pretty(&crate::store::without_version(&row.body)).unwrap_or_default()
}

fn diff(from: &RecipeVersionRow, to: &RecipeVersionRow) -> Markup {
    let (old, new) = (pretty(from), pretty(to));
    let text = TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("v{}", from.version), &format!("v{}", to.version))
        .to_string();
    html! {
        h3 { "v" (from.version) " → v" (to.version) }
        @if text.is_empty() { p.muted { "no difference" } }
        @else { pre.diff data-marker="recipe-diff" { (super::instance::diff_markup(&text)) } }
    }
}

/// The diagnostics of a refused push: the ones about no state first, then each state of the
/// text in order with its own diagnostics right under it.
fn diagnostics(failed: &Failed<'_>) -> Markup {
    let errors = failed.diagnostics.iter().filter(|d| d.is_error()).count();
    let (recipe, _) = opsagent_recipe::parse_lenient(failed.text);
    let general: Vec<&Diagnostic> = failed.diagnostics.iter().filter(|d| d.state.is_none()).collect();
    let mut numbers: Vec<usize> = recipe.states.iter().map(|s| s.number).collect();
    for d in failed.diagnostics {
        if let Some(state) = &d.state {
            if !numbers.contains(&state.number) {
                numbers.push(state.number);
            }
        }
    }
    numbers.sort_unstable();
    html! {
        div.invalid role="alert" data-marker="diagnostics" {
            p.error { span aria-hidden="true" { "✖ " } "the recipe is invalid (" (errors) " error(s)); nothing was pushed" }
            @if !general.is_empty() { ul.diags { @for d in general { (diagnostic(d)) } } }
            ol.states {
                @for number in numbers {
                    @let state = recipe.states.iter().find(|s| s.number == number);
                    @let diags: Vec<&Diagnostic> = failed.diagnostics.iter().filter(|d| d.state.as_ref().is_some_and(|s| s.number == number)).collect();
                    @let id = state.map(|s| s.id.clone()).or_else(|| diags.iter().find_map(|d| d.state.as_ref()?.id.clone())).unwrap_or_default();
                    @let module = state.map(|s| s.module.clone()).or_else(|| diags.iter().find_map(|d| d.state.as_ref()?.module.clone())).unwrap_or_default();
                    li class=(if diags.iter().any(|d| d.is_error()) { "state s-failed" } else { "state s-ok" }) data-state=(id) {
                        div.head {
                            @if diags.iter().any(|d| d.is_error()) { (layout::status_badge("failed")) } @else { (layout::status_badge("ok")) }
                            " " span.muted { "#" (number) } " " code.id { (id) } " " span.module { (module) }
                        }
                        @if !diags.is_empty() { ul.diags { @for d in diags { (diagnostic(d)) } } }
                    }
                }
            }
        }
    }
}

fn diagnostic(d: &Diagnostic) -> Markup {
    let (class, symbol, word) = match d.severity {
        Severity::Error => ("diag error", "✖", "error"),
        Severity::Warning => ("diag warning", "⚠", "warning"),
    };
    html! {
        li class=(class) {
            span aria-hidden="true" { (symbol) " " } strong { (word) } ": "
            @if let Some(param) = &d.param { "parameter " code { (param) } ": " }
            (d.message)
            @if let Some(pos) = d.pos { span.muted { " (line " (pos.line) ", column " (pos.col) ")" } }
            @if let Some(hint) = &d.hint { br; span.hint { "hint: " (hint) } }
        }
    }
}

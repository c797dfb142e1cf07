//! `/`: every app at a glance — how many instances are converged, running, waiting, failing or
//! disconnected, which agent versions they run, and the current recipe version.

use std::sync::Arc;

use axum::extract::State;
use axum::Extension;
use maud::html;

use super::app::{AppData, Summary};
use super::layout::{self, Page};
use super::session::{encode_component, Session};
use super::PageResult;
use crate::shared::Shared;

pub(super) async fn page(State(shared): State<Arc<Shared>>, Extension(session): Extension<Session>) -> PageResult {
    let apps = shared.store.list_apps().await?;
    let mut rows = Vec::with_capacity(apps.len());
    for app in &apps {
        let data = AppData::load(&shared, &app.id).await?;
        let summary = Summary::of(&data.views(&shared, &app.id));
        rows.push((app, data.recipes.source.as_ref().map(|r| r.version), data.instances.len(), summary));
    }
    let body = html! {
        @if rows.is_empty() {
            p.card { "No apps yet. Create one with " code { "opsagent-hub app create APP" } "." }
        }
        ol.apps data-marker="apps" {
            @for (app, version, n, summary) in &rows {
                li.card.app data-app=(app.id) {
                    div.head {
                        a.name href=(format!("/apps/{}", encode_component(&app.id))) { (app.id) }
                        span.muted {
                            (n) " instances · recipe "
                            @match version { Some(v) => { "v" (v) }, None => { "none" } }
                        }
                    }
                    (summary.render())
                }
            }
        }
    };
    let page = Page { title: "apps", crumbs: &[], live: Some("/events".to_string()), app: None };
    Ok(super::html(layout::page(&page, &session, body)))
}

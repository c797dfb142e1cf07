//! Live updates: `GET /events` streams the hub's notices (`crate::events`) to a page as
//! server-sent events.
//!
//! A notice carries no data: the page re-fetches itself (`dashboard.js`), so what it shows is
//! always what the store says, and a page that missed notices (a lagging receiver) only refreshes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::events::Notice;

use crate::shared::Shared;

#[derive(Deserialize)]
pub(super) struct Filter {
    /// Only this app's notices (all apps when absent).
    app: Option<String>,
    /// Only this instance's notices and the app-wide ones.
    instance: Option<String>,
}

impl Filter {
    fn wants(&self, notice: &Notice) -> bool {
        if self.app.as_deref().is_some_and(|app| app != &*notice.app) {
            return false;
        }
        match (&self.instance, &notice.instance) {
            (Some(wanted), Some(instance)) => wanted == &**instance,
            _ => true,
        }
    }
}

/// `GET /events?app=A&instance=I`: `update` events (data: the kind, app and instance) until the
/// page closes or the hub stops.
pub(super) async fn stream(State(shared): State<Arc<Shared>>, Query(filter): Query<Filter>) -> impl IntoResponse {
    let receiver = shared.events.subscribe();
    let stop = shared.shutdown.clone();
    let events = futures_util::stream::unfold((receiver, filter, stop), |(mut receiver, filter, stop)| async move {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return None,
                next = receiver.recv() => next,
            };
            let data = match next {
                Ok(notice) if filter.wants(&notice) => serde_json::json!({
                    "kind": notice.kind.as_str(),
                    "app": &*notice.app,
                    "instance": notice.instance.as_deref(),
                }),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => serde_json::json!({ "kind": "lagged" }),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let event = Event::default().event("update").data(data.to_string());
            return Some((Ok::<_, Infallible>(event), (receiver, filter, stop)));
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

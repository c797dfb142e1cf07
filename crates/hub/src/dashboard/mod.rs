//! The web dashboard, served by the hub itself: server-rendered pages (maud), one small
//! hand-written script and one stylesheet embedded in the binary (`crates/hub/assets/`), live
//! updates over server-sent events. Nothing is fetched from elsewhere and nothing is built.
//!
//! Pages: `/` (apps), `/apps/{app}` (its instances), `/apps/{app}/instances/{instance}` (rounds,
//! state by state), `/apps/{app}/recipes` (versions, diffs, push), `/apps/{app}/releases`
//! (releases, target version, each instance's upgrade; order an upgrade). Actions (release a
//! wait, push a recipe, order an upgrade) go through the same functions as the API
//! (`waits::release_by_hand`, `recipe::wire_form` + `recipe::validate` + `recipe::push`,
//! `releases::order_upgrade`). Every route but the sign-in form and the assets needs a session
//! (`session.rs`).
//!
//! **Architecture Invariant:** no SQL and no business rule here: reads go through `Store`,
//! actions through the modules the API uses.

mod app;
mod apps;
mod assets;
mod events;
mod health;
mod instance;
mod layout;
mod recipes;
mod session;
mod upgrades;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;

pub use session::Sessions;

use crate::shared::Shared;

/// The dashboard's routes (merged at the root of the hub's router).
pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let signed_in = Router::new()
        .route("/", get(apps::page))
        .route("/apps/{app}", get(app::page))
        .route("/apps/{app}/instances/{instance}", get(instance::page))
        .route("/apps/{app}/instances/{instance}/release", post(instance::release))
        .route("/apps/{app}/instances/{instance}/reload", post(instance::reload))
        .route("/apps/{app}/recipes", get(recipes::page).post(recipes::push))
        .route("/apps/{app}/releases", get(upgrades::page).post(upgrades::order))
        .route("/events", get(events::stream))
        .route("/signout", post(session::sign_out))
        .layer(middleware::from_fn_with_state(shared, session::require));
    Router::new()
        .route("/signin", get(session::form).post(session::sign_in))
        .route(assets::CSS_PATH, get(assets::css))
        .route(assets::JS_PATH, get(assets::js))
        .merge(signed_in)
}

/// Why a page could not be shown.
enum PageError {
    NotFound(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for PageError {
    fn from(error: anyhow::Error) -> PageError {
        PageError::Internal(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotFound(message) => (StatusCode::NOT_FOUND, message).into_response(),
            PageError::Internal(error) => {
                tracing::error!(error = %format!("{error:#}"), "dashboard page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the hub logged the details").into_response()
            }
        }
    }
}

type PageResult = Result<Response, PageError>;

fn html(markup: Markup) -> Response {
    let mut response = Html(markup.into_string()).into_response();
    // Pages show live data and must never be served from a cache (or after sign-out).
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Only our own script and stylesheet run; no page may frame these (clickjacking).
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn require_app(shared: &Shared, app: &str) -> Result<(), PageError> {
    if shared.store.app_exists(app).await? {
        return Ok(());
    }
    Err(PageError::NotFound(format!("app `{app}` does not exist")))
}

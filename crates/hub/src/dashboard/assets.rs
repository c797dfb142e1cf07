//! The dashboard's stylesheet and script, embedded in the binary from `crates/hub/assets/`.

use axum::http::header;
use axum::response::IntoResponse;

pub const CSS_PATH: &str = "/assets/dashboard.css";
pub const JS_PATH: &str = "/assets/dashboard.js";

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

pub(super) async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CSS)
}

pub(super) async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], JS)
}

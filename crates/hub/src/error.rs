//! `ApiError`: every failure of the JSON API. A client error answers its status with
//! `{error, hint}` (and `diagnostics` for an invalid recipe); an internal error answers a generic
//! 500 and logs the detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    hint: Option<String>,
    diagnostics: Option<Vec<Value>>,
    internal: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError { status, error: error.into(), hint: None, diagnostics: None, internal: None }
    }

    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    pub fn conflict(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, error)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong API token")
            .hint("send `Authorization: Bearer <token>`; the token is in `<data-dir>/api-token` on the hub")
    }

    /// An invalid recipe, with every diagnostic.
    pub fn invalid_recipe(diagnostics: Vec<Value>) -> ApiError {
        let count = diagnostics.iter().filter(|d| d["severity"] == "error").count();
        ApiError {
            diagnostics: Some(diagnostics),
            ..ApiError::bad_request(format!("the recipe is invalid ({count} error(s))"))
                .hint("fix every diagnostic listed, then push again")
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        ApiError { internal: Some(error), ..ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error") }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let detail = self.internal.map(|e| format!("{e:#}")).unwrap_or_else(|| self.error.clone());
            tracing::error!(status = self.status.as_u16(), error = %detail, "API request failed");
            let body = json!({
                "error": "internal error",
                "hint": "the hub logged the details; retry later",
            });
            return (self.status, Json(body)).into_response();
        }
        let mut body = json!({ "error": self.error, "hint": self.hint });
        if let Some(diagnostics) = self.diagnostics {
            body["diagnostics"] = Value::Array(diagnostics);
        }
        (self.status, Json(body)).into_response()
    }
}

//! Sign-in with the operator token: a form posts the token; the hub answers with a session cookie
//! holding a random session id (HttpOnly, SameSite=Strict, Secure when serving TLS) — never the
//! token. Every page and action needs a session; every POST also needs the session's CSRF token
//! in its form and an `Origin` (or `Referer`) of this hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::layout;
use crate::auth::random_hex;
use crate::shared::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "opsagent_session";

/// How long a session lasts after sign-in.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; the oldest goes first beyond that.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser: what pages and actions see (a request extension).
#[derive(Clone)]
pub struct Session {
    /// The token every form of this session carries (`csrf` field).
    pub csrf: String,
}

struct Entry {
    csrf: String,
    expires: Instant,
}

/// Every session of this hub, in memory: a hub restart signs everyone out.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    /// Opens a session; returns its id (the cookie value).
    fn open(&self) -> anyhow::Result<String> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, e| e.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.iter().min_by_key(|(_, e)| e.expires).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), Entry { csrf, expires: now + LIFETIME });
        Ok(id)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let sessions = self.lock();
        let entry = sessions.get(id).filter(|e| e.expires > Instant::now())?;
        Some(Session { csrf: entry.csrf.clone() })
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Each operation leaves the map consistent: a poisoned lock is still usable.
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Middleware of every dashboard route but sign-in and assets: no session → a page redirects to
/// the sign-in form, anything else (`/events`, actions) gets 401. A POST from another origin
/// gets 403.
pub(super) async fn require(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let session = cookie(request.headers()).and_then(|id| shared.sessions.get(&id));
    let Some(session) = session else {
        let page = request.method() == Method::GET && !request.uri().path().starts_with("/events");
        if page {
            let next = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            return Redirect::to(&format!("/signin?next={}", encode_component(next))).into_response();
        }
        return (StatusCode::UNAUTHORIZED, "sign in first: this needs a dashboard session").into_response();
    };
    if request.method() != Method::GET && !same_origin(request.headers()) {
        return (StatusCode::FORBIDDEN, "refused: the request does not come from this hub's pages").into_response();
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// Whether a form's CSRF token is its session's.
pub(super) fn csrf_ok(session: &Session, form_token: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(session.csrf.as_bytes(), form_token.as_bytes()).into()
}

/// The answer to a form without its session's CSRF token.
pub(super) fn csrf_refused() -> Response {
    (StatusCode::FORBIDDEN, "refused: the form's CSRF token does not match this session; reload the page")
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// `GET /signin`.
pub(super) async fn form(Query(query): Query<NextQuery>) -> Html<String> {
    Html(layout::signin(&safe_next(query.next.as_deref()), None).into_string())
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /signin`: the token → a session cookie and a redirect to where the operator was going.
pub(super) async fn sign_in(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "refused: the sign-in form was not posted from this hub").into_response();
    }
    if !shared.api_token.matches(form.token.trim()) {
        tracing::warn!("dashboard sign-in refused: wrong token");
        let page = layout::signin(&next, Some("wrong token: it is the operator token in `<data-dir>/api-token`"));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    }
    let id = match shared.sessions.open() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot open a dashboard session");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the hub logged the details").into_response();
        }
    };
    tracing::info!("dashboard sign-in");
    let secure = if shared.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", LIFETIME.as_secs());
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

#[derive(Deserialize)]
pub(super) struct SignOut {
    csrf: String,
}

/// `POST /signout`.
pub(super) async fn sign_out(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Extension(session): axum::Extension<Session>,
    Form(form): Form<SignOut>,
) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return csrf_refused();
    }
    if let Some(id) = cookie(&headers) {
        shared.sessions.close(&id);
    }
    let secure = if shared.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    with_cookie(Redirect::to("/signin").into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session id from the `Cookie` header.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Whether a state-changing request comes from this hub's own pages: its `Origin` (or, without
/// one, its `Referer`) has the request's `Host`. A request with neither is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let source = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let rest = source.strip_prefix("http://").or_else(|| source.strip_prefix("https://")).unwrap_or("");
    let authority = rest.split('/').next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

/// A redirect target from a form or query: a path on this hub only (no `//host`, no scheme).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => next.to_string(),
        _ => "/".to_string(),
    }
}

/// Percent-encodes a query value.
pub(super) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[("host", "127.0.0.1:7700"), ("origin", "http://127.0.0.1:7700")])));
        assert!(same_origin(&headers(&[("host", "hub"), ("referer", "https://hub/apps/x")])));
        assert!(!same_origin(&headers(&[("host", "hub"), ("origin", "https://evil")])));
        assert!(!same_origin(&headers(&[("host", "hub"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("host", "hub")])));
    }

    #[test]
    fn redirect_targets() {
        assert_eq!(safe_next(Some("/apps/a?x=1")), "/apps/a?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}

//! The operator's JSON API under `/api/v1` (every route needs `Authorization: Bearer <token>`):
//! apps, instances, recipe pushes, manual wait releases, status and logs, releases and upgrades.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opsagent_recipe::{Diagnostic, Severity};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::random_hex;
use crate::error::ApiError;
use crate::recipe;
use crate::releases;
use crate::shared::Shared;
use crate::store::LogQuery;
use crate::waits;

type ApiResult = Result<Response, ApiError>;

/// The `/api/v1` router.
pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/apps", post(create_app).get(list_apps))
        .route("/apps/{app}/instances", post(create_instance).get(list_instances))
        .route("/apps/{app}/recipes", post(push_recipe))
        .route("/apps/{app}/recipe", get(show_recipe))
        .route("/apps/{app}/instances/{instance}/done", post(release_wait))
        .route("/apps/{app}/instances/{instance}/seqs", get(seqs))
        .route("/apps/{app}/status", get(status))
        .route("/apps/{app}/logs", get(logs))
        .route("/apps/{app}/upgrade", post(upgrade))
        .route("/apps/{app}/install", get(install_info))
        .route("/releases", get(list_releases))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(DefaultBodyLimit::max(opsagent_proto::MAX_HUB_FRAME))
        .layer(middleware::from_fn_with_state(shared, require_token))
}

async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(token) if shared.api_token.matches(token) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

#[derive(Deserialize)]
struct NewId {
    id: String,
}

async fn create_app(State(shared): State<Arc<Shared>>, body: Result<Json<NewId>, JsonRejection>) -> ApiResult {
    let Json(NewId { id }) = body.map_err(bad_json)?;
    check_id("app", &id)?;
    if !shared.store.create_app(&id).await? {
        return Err(ApiError::conflict(format!("app `{id}` exists already")));
    }
    tracing::info!(app_id = %id, "app created");
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

async fn list_apps(State(shared): State<Arc<Shared>>) -> ApiResult {
    let apps: Vec<Value> = shared
        .store
        .list_apps()
        .await?
        .into_iter()
        .map(|a| json!({ "id": a.id, "created_at": a.created_at }))
        .collect();
    Ok(Json(json!({ "apps": apps })).into_response())
}

async fn create_instance(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Result<Json<NewId>, JsonRejection>,
) -> ApiResult {
    let Json(NewId { id }) = body.map_err(bad_json)?;
    check_id("instance", &id)?;
    require_app(&shared, &app).await?;
    let secret = random_hex(32)?;
    if !shared.store.create_instance(&app, &id, &secret).await? {
        return Err(ApiError::conflict(format!("instance `{id}` of app `{app}` exists already"))
            .hint("its secret was shown once, when it was added; add an instance with another id"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    let hub_url = shared.agent_url(host);
    let config =
        format!("hub_url = \"{hub_url}\"\napp_id = \"{app}\"\ninstance_id = \"{id}\"\nsecret = \"{secret}\"\n");
    tracing::info!(app_id = %app, instance_id = %id, "instance added");
    let body = json!({ "app_id": app, "instance_id": id, "secret": secret, "config": config });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_instances(State(shared): State<Arc<Shared>>, Path(app): Path<String>) -> ApiResult {
    require_app(&shared, &app).await?;
    let instances: Vec<Value> = shared
        .store
        .list_instances(&app)
        .await?
        .into_iter()
        .map(|i| {
            json!({
                "instance_id": i.id,
                "created_at": i.created_at,
                "connected": shared.registry.is_connected(&app, &i.id),
            })
        })
        .collect();
    Ok(Json(json!({ "app_id": app, "instances": instances })).into_response())
}

async fn push_recipe(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(bad_json)?;
    require_app(&shared, &app).await?;
    let validated =
        recipe::validate(&body).map_err(|d| ApiError::invalid_recipe(d.iter().map(diagnostic_json).collect()))?;
    let pushed = recipe::push(&shared, &app, validated).await?;
    let body = json!({ "recipe_version": pushed.version, "unchanged": pushed.unchanged, "sent_to": pushed.sent_to });
    if pushed.unchanged {
        return Ok(Json(body).into_response());
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn show_recipe(State(shared): State<Arc<Shared>>, Path(app): Path<String>) -> ApiResult {
    require_app(&shared, &app).await?;
    let Some(recipe) = shared.recipes.current(&shared.store, &app).await? else {
        return Err(ApiError::not_found(format!("app `{app}` has no recipe yet"))
            .hint("push one with `opsagent-hub recipe push APP FILE`"));
    };
    Ok(Json(recipe.body.clone()).into_response())
}

#[derive(Deserialize)]
struct Done {
    state_id: String,
    #[serde(default)]
    recipe_version: Option<u64>,
}

async fn release_wait(
    State(shared): State<Arc<Shared>>,
    Path((app, instance)): Path<(String, String)>,
    body: Result<Json<Done>, JsonRejection>,
) -> ApiResult {
    let Json(done) = body.map_err(bad_json)?;
    require_app(&shared, &app).await?;
    let Some(current) = shared.recipes.current(&shared.store, &app).await? else {
        return Err(ApiError::not_found(format!("app `{app}` has no recipe yet")));
    };
    let version = done.recipe_version.unwrap_or(current.version);
    if version == current.version && !current.order.contains_key(&done.state_id) {
        return Err(ApiError::not_found(format!(
            "recipe version {version} of app `{app}` has no state `{}`",
            done.state_id
        ))
        .hint("`opsagent-hub recipe show APP` lists the states"));
    }
    let instances: Vec<String> = if instance == "*" {
        shared.store.list_instances(&app).await?.into_iter().map(|i| i.id).collect()
    } else {
        if shared.store.instance(&app, &instance).await?.is_none() {
            return Err(ApiError::not_found(format!("app `{app}` has no instance `{instance}`")));
        }
        vec![instance]
    };
    let (released, already) = waits::release_by_hand(&shared, &app, &instances, version, &done.state_id).await?;
    let body = json!({
        "app_id": app, "recipe_version": version, "state_id": done.state_id,
        "released": released, "already_released": already,
    });
    Ok(Json(body).into_response())
}

async fn status(State(shared): State<Arc<Shared>>, Path(app): Path<String>) -> ApiResult {
    require_app(&shared, &app).await?;
    let recipe = shared.recipes.current(&shared.store, &app).await?;
    let order = |state_id: &str| recipe.as_ref().and_then(|r| r.order.get(state_id).copied()).unwrap_or(usize::MAX);
    let mut states_by_instance: HashMap<String, Vec<_>> = HashMap::new();
    for row in shared.store.state_statuses(&app).await? {
        states_by_instance.entry(row.instance_id.clone()).or_default().push(row);
    }
    let mut instances = Vec::new();
    for i in shared.store.list_instances(&app).await? {
        let mut states = states_by_instance.remove(&i.id).unwrap_or_default();
        states.sort_by(|a, b| (order(&a.state_id), &a.state_id).cmp(&(order(&b.state_id), &b.state_id)));
        let states: Vec<Value> = states
            .into_iter()
            .map(|s| {
                json!({
                    "id": s.state_id, "module": s.module, "status": s.status,
                    "attempt": s.attempt, "recipe_version": s.recipe_version, "round": s.round,
                    "updated_at": s.updated_at, "comment": s.comment,
                })
            })
            .collect();
        instances.push(json!({
            "instance_id": i.id,
            "connected": shared.registry.is_connected(&app, &i.id),
            "agent_version": i.agent_version,
            "recipe_version": i.recipe_version,
            "round": i.round,
            "round_result": i.round_result,
            "last_seen": i.last_seen,
            "last_seq": i.last_seq,
            "upgrade": i.upgrade.map(|u| json!({
                "version": u.version, "from": u.from, "phase": u.phase, "reason": u.reason, "at": u.at,
            })),
            "states": states,
        }));
    }
    let target = shared.store.target(&app).await?;
    let body = json!({
        "app_id": app,
        "recipe_version": recipe.map(|r| r.version),
        "target_version": target.map(|t| t.version),
        "instances": instances,
    });
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct LogParams {
    instance: Option<String>,
    limit: Option<u32>,
    after_seq: Option<u64>,
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(format!("bad query: {}", e.body_text())).hint("use `?instance=ID&limit=N&after_seq=S`")
    })?;
    require_app(&shared, &app).await?;
    let query = LogQuery {
        instance_id: params.instance,
        after_seq: params.after_seq,
        limit: params.limit.unwrap_or(100).clamp(1, 10_000),
    };
    let logs: Vec<Value> = shared
        .store
        .state_logs(&app, &query)
        .await?
        .into_iter()
        .map(|row| {
            let mut log = row.body;
            if let Value::Object(map) = &mut log {
                map.insert("received_at".into(), Value::String(row.received_at));
            }
            log
        })
        .collect();
    Ok(Json(json!({ "app_id": app, "logs": logs })).into_response())
}

async fn seqs(State(shared): State<Arc<Shared>>, Path((app, instance)): Path<(String, String)>) -> ApiResult {
    require_app(&shared, &app).await?;
    if shared.store.instance(&app, &instance).await?.is_none() {
        return Err(ApiError::not_found(format!("app `{app}` has no instance `{instance}`")));
    }
    let seqs = shared.store.seqs(&app, &instance).await?;
    Ok(Json(json!({ "app_id": app, "instance_id": instance, "seqs": seqs })).into_response())
}

#[derive(Deserialize)]
struct Upgrade {
    version: String,
    #[serde(default)]
    allow_downgrade: bool,
}

/// `POST /apps/{app}/upgrade`: sets the agent version of the app's instances and orders the connected
/// ones that run another version to upgrade (the others get the order at their next handshake);
/// `releases::order_upgrade` does it, as for the dashboard.
async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    body: Result<Json<Upgrade>, JsonRejection>,
) -> ApiResult {
    let Json(Upgrade { version, allow_downgrade }) = body.map_err(bad_json)?;
    require_app(&shared, &app).await?;
    let ordered = releases::order_upgrade(&shared, &app, &version, allow_downgrade).await.map_err(order_error)?;
    Ok(Json(json!({
        "app_id": app, "version": ordered.version, "allow_downgrade": ordered.allow_downgrade, "sent_to": ordered.sent_to,
    }))
    .into_response())
}

/// A refused upgrade order as an API error: a bad version 400, an unknown one 404, a downgrade
/// without the flag 409.
fn order_error(error: releases::OrderError) -> ApiError {
    use releases::OrderError;
    let (message, hint) = (error.message(), error.hint());
    let api = match error {
        OrderError::InvalidVersion(_) => ApiError::bad_request(message),
        OrderError::UnknownVersion(_) => ApiError::not_found(message),
        OrderError::Downgrade { .. } => ApiError::conflict(message),
        OrderError::Internal(e) => return ApiError::from(e),
    };
    match hint {
        Some(hint) => api.hint(hint),
        None => api,
    }
}

#[derive(Deserialize)]
struct InstallParams {
    version: Option<String>,
}

/// `GET /apps/{app}/install[?version=V]`: what the userdata script installs — the agents' URL, and
/// the release (the app's target version, else the newest) with where to download it.
async fn install_info(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    params: Result<Query<InstallParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    require_app(&shared, &app).await?;
    let version = match params.version {
        Some(v) => Some(v),
        None => match shared.store.target(&app).await? {
            Some(target) => Some(target.version),
            None => releases::list(&shared.data_dir)?.pop().map(|m| m.version),
        },
    };
    let Some(version) = version else {
        return Err(ApiError::not_found("this hub has no agent release yet")
            .hint("add one with `opsagent-hub release add --version V --binary PATH --signing-key KEY`"));
    };
    releases::check_version(&version).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Some(manifest) = releases::manifest_of(&shared.data_dir, &version)? else {
        return Err(ApiError::not_found(format!("there is no release {version} on this hub")));
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    let agent_url = shared.agent_url(host);
    let base = agent_url.replacen("wss://", "https://", 1).replacen("ws://", "http://", 1);
    let base = base.trim_end_matches('/').trim_end_matches("/agent");
    let body = json!({
        "app_id": app,
        "agent_url": agent_url,
        "version": manifest.version,
        "sha256": manifest.sha256,
        "size": manifest.size,
        "public_key": manifest.public_key,
        "binary_url": format!("{base}/releases/{}/opsagent", manifest.version),
    });
    Ok(Json(body).into_response())
}

async fn list_releases(State(shared): State<Arc<Shared>>) -> ApiResult {
    let list = releases::list(&shared.data_dir)?;
    let list: Vec<Value> =
        list.into_iter().map(|m| json!({ "version": m.version, "sha256": m.sha256, "size": m.size })).collect();
    Ok(Json(json!({ "releases": list })).into_response())
}

async fn require_app(shared: &Shared, app: &str) -> Result<(), ApiError> {
    if shared.store.app_exists(app).await? {
        return Ok(());
    }
    Err(ApiError::not_found(format!("app `{app}` does not exist")).hint("create it with `opsagent-hub app create APP`"))
}

/// Ids are 1 to 64 of `A-Z a-z 0-9 . _ -`.
fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        return Ok(());
    }
    Err(ApiError::bad_request(format!("`{id}` is not a valid {what} id"))
        .hint("use 1 to 64 letters, digits, `.`, `_` or `-`"))
}

fn bad_json(rejection: JsonRejection) -> ApiError {
    ApiError::bad_request(format!("bad request body: {}", rejection.body_text()))
        .hint("send a JSON object with `Content-Type: application/json`")
}

/// A recipe diagnostic as API data.
pub fn diagnostic_json(d: &Diagnostic) -> Value {
    let state = d.state.as_ref();
    json!({
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "kind": d.kind.as_str(),
        "state_id": state.and_then(|s| s.id.clone()),
        "module": state.and_then(|s| s.module.clone()),
        "param": d.param,
        "message": d.message,
        "hint": d.hint,
    })
}

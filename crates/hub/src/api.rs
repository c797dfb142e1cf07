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
use crate::render;
use crate::shared::Shared;
use crate::store::LogQuery;
use crate::waits;

type ApiResult = Result<Response, ApiError>;

/// The `/api/v1` router. Every route needs the operator token, except the reload webhook, which
/// takes the token or a signature made with the app's webhook secret.
pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let protected = Router::new()
        .route("/apps", post(create_app).get(list_apps))
        .route("/apps/{app}/instances", post(create_instance).get(list_instances))
        .route("/apps/{app}/instances/{instance}", post(set_instance))
        .route("/apps/{app}/components/{component}", post(set_component_attrs))
        .route("/apps/{app}/settings", post(set_settings).get(show_settings))
        .route("/apps/{app}/webhook", post(new_webhook_secret))
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
        .layer(middleware::from_fn_with_state(shared, require_token));
    let webhook = Router::new()
        .route("/apps/{app}/reload", post(reload))
        .layer(DefaultBodyLimit::max(opsagent_proto::MAX_HUB_FRAME));
    webhook.merge(protected)
}

async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if has_token(&shared, request.headers()) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Whether the request carries the operator token (`Authorization: Bearer …`).
fn has_token(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| shared.api_token.matches(token.trim()))
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

#[derive(Deserialize)]
struct NewInstance {
    id: String,
    /// Default: a component named like the instance.
    #[serde(default)]
    component: Option<String>,
}

async fn create_instance(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Result<Json<NewInstance>, JsonRejection>,
) -> ApiResult {
    let Json(NewInstance { id, component }) = body.map_err(bad_json)?;
    check_id("instance", &id)?;
    let component = component.unwrap_or_else(|| id.clone());
    check_id("component", &component)?;
    require_app(&shared, &app).await?;
    let secret = random_hex(32)?;
    if !shared.store.create_instance(&app, &id, &secret, &component).await? {
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
    tracing::info!(app_id = %app, instance_id = %id, component = %component, "instance added");
    // A new member changes what links to its component render to.
    recipe::rerender(&shared, &app).await?;
    let body = json!({ "app_id": app, "instance_id": id, "component": component, "secret": secret, "config": config });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_instances(State(shared): State<Arc<Shared>>, Path(app): Path<String>) -> ApiResult {
    require_app(&shared, &app).await?;
    let attrs = shared.store.attributes(&app).await?;
    let instances: Vec<Value> = shared
        .store
        .list_instances(&app)
        .await?
        .into_iter()
        .map(|i| {
            json!({
                "instance_id": i.id,
                "component": i.component,
                "created_at": i.created_at,
                "connected": shared.registry.is_connected(&app, &i.id),
                "facts": i.facts,
                "attributes": render::attrs_of(&attrs, "instance", &i.id),
            })
        })
        .collect();
    let mut components: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for a in attrs.iter().filter(|a| a.scope == "component") {
        components.entry(a.name.clone()).or_insert_with(|| json!({}))[&a.key] = Value::String(a.value.clone());
    }
    Ok(Json(json!({ "app_id": app, "instances": instances, "component_attributes": components })).into_response())
}

#[derive(Deserialize)]
struct SetInstance {
    #[serde(default)]
    component: Option<String>,
    /// Attribute → value; `null` removes it.
    #[serde(default)]
    attributes: HashMap<String, Option<String>>,
}

/// `POST /apps/{app}/instances/{instance}`: moves an instance to another component and/or sets
/// its attributes; the app's recipes are rendered again.
async fn set_instance(
    State(shared): State<Arc<Shared>>,
    Path((app, instance)): Path<(String, String)>,
    body: Result<Json<SetInstance>, JsonRejection>,
) -> ApiResult {
    let Json(set) = body.map_err(bad_json)?;
    require_app(&shared, &app).await?;
    let Some(row) = shared.store.instance(&app, &instance).await? else {
        return Err(ApiError::not_found(format!("app `{app}` has no instance `{instance}`")));
    };
    let mut changed = false;
    if let Some(component) = &set.component {
        check_id("component", component)?;
        if *component != row.component {
            shared.store.set_component(&app, &instance, component).await?;
            tracing::info!(app_id = %app, instance_id = %instance, from = %row.component, to = %component, "instance moved to another component");
            changed = true;
        }
    }
    changed |= set_attributes(&shared, &app, "instance", &instance, &set.attributes).await?;
    let sent = if changed { recipe::rerender(&shared, &app).await? } else { 0 };
    let row = shared.store.instance(&app, &instance).await?.map(|r| r.component).unwrap_or_default();
    let attrs = shared.store.attributes(&app).await?;
    Ok(Json(json!({
        "app_id": app, "instance_id": instance, "component": row, "changed": changed, "sent_to": sent,
        "attributes": render::attrs_of(&attrs, "instance", &instance),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct SetAttributes {
    #[serde(default)]
    attributes: HashMap<String, Option<String>>,
}

/// `POST /apps/{app}/components/{component}`: sets attributes of a component (`@{web.ElbDns}`).
async fn set_component_attrs(
    State(shared): State<Arc<Shared>>,
    Path((app, component)): Path<(String, String)>,
    body: Result<Json<SetAttributes>, JsonRejection>,
) -> ApiResult {
    let Json(set) = body.map_err(bad_json)?;
    require_app(&shared, &app).await?;
    check_id("component", &component)?;
    let changed = set_attributes(&shared, &app, "component", &component, &set.attributes).await?;
    let sent = if changed { recipe::rerender(&shared, &app).await? } else { 0 };
    let attrs = shared.store.attributes(&app).await?;
    Ok(Json(json!({
        "app_id": app, "component": component, "changed": changed, "sent_to": sent,
        "attributes": render::attrs_of(&attrs, "component", &component),
    }))
    .into_response())
}

async fn set_attributes(
    shared: &Shared,
    app: &str,
    scope: &str,
    name: &str,
    attributes: &HashMap<String, Option<String>>,
) -> Result<bool, ApiError> {
    let mut changed = false;
    for (key, value) in attributes {
        let key_ok =
            (1..=128).contains(&key.len()) && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
        if !key_ok {
            return Err(ApiError::bad_request(format!("`{key}` is not a usable attribute name"))
                .hint("use letters, digits, `_` and `-`, as in `ElbDns`"));
        }
        if value.as_ref().is_some_and(|v| v.len() > opsagent_proto::MAX_FACT_LEN) {
            return Err(ApiError::bad_request(format!("the value of `{key}` is too long")));
        }
        changed |= shared.store.set_attribute(app, scope, name, key, value.as_deref()).await?;
    }
    Ok(changed)
}

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    strict: Option<bool>,
}

async fn show_settings(State(shared): State<Arc<Shared>>, Path(app): Path<String>) -> ApiResult {
    let Some(settings) = shared.store.app_settings(&app).await? else {
        return Err(ApiError::not_found(format!("app `{app}` does not exist")));
    };
    Ok(Json(json!({ "app_id": app, "strict": settings.strict, "webhook": settings.webhook_secret.is_some() }))
        .into_response())
}

/// `POST /apps/{app}/settings`: `{"strict": true}` refuses pushes with compatibility warnings.
async fn set_settings(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    body: Result<Json<Settings>, JsonRejection>,
) -> ApiResult {
    let Json(new) = body.map_err(bad_json)?;
    let Some(mut settings) = shared.store.app_settings(&app).await? else {
        return Err(ApiError::not_found(format!("app `{app}` does not exist")));
    };
    if let Some(strict) = new.strict {
        settings.strict = strict;
    }
    shared.store.set_app_settings(&app, &settings).await?;
    Ok(Json(json!({ "app_id": app, "strict": settings.strict, "webhook": settings.webhook_secret.is_some() }))
        .into_response())
}

/// `POST /apps/{app}/webhook`: makes a new secret for the reload webhook (shown once; the old
/// one stops working).
async fn new_webhook_secret(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let Some(mut settings) = shared.store.app_settings(&app).await? else {
        return Err(ApiError::not_found(format!("app `{app}` does not exist")));
    };
    let secret = random_hex(32)?;
    settings.webhook_secret = Some(secret.clone());
    shared.store.set_app_settings(&app, &settings).await?;
    tracing::info!(app_id = %app, "new reload webhook secret");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("HUB");
    let scheme = if shared.tls { "https" } else { "http" };
    let url = format!("{scheme}://{host}/api/v1/apps/{app}/reload");
    Ok(Json(json!({ "app_id": app, "url": url, "secret": secret, "content_type": "application/json" })).into_response())
}

#[derive(Deserialize, Default)]
struct Reload {
    /// Default: every instance of the app.
    #[serde(default)]
    instances: Vec<String>,
}

/// `POST /apps/{app}/reload`: runs a round now on the app's instances (or those named), as the
/// original's *Reload States*. Authenticated by the operator token, or — for a push webhook such as
/// GitHub's — by `X-Hub-Signature-256: sha256=HMAC(app's webhook secret, body)`.
async fn reload(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let by_operator = has_token(&shared, &headers);
    let request: Reload = if by_operator {
        if body.is_empty() {
            Reload::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("bad request body: {e}"))
                    .hint("send {\"instances\": [\"web-1\"]} or nothing")
            })?
        }
    } else {
        let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
        let Some(signature) = signature else {
            return Err(ApiError::unauthorized());
        };
        let secret = shared.store.app_settings(&app).await?.and_then(|s| s.webhook_secret);
        let valid = secret.is_some_and(|secret| crate::auth::verify_body_signature(&secret, &body, signature));
        if !valid {
            tracing::warn!(app_id = %app, "reload webhook refused: wrong signature");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the webhook signature does not match the app's secret",
            )
            .hint("set the webhook's secret to the one `opsagent-hub app webhook APP` printed"));
        }
        // A GitHub push event (or any signed body): run every instance.
        Reload::default()
    };
    require_app(&shared, &app).await?;
    let all: Vec<String> = shared.store.list_instances(&app).await?.into_iter().map(|i| i.id).collect();
    for id in &request.instances {
        if !all.contains(id) {
            return Err(ApiError::not_found(format!("app `{app}` has no instance `{id}`")));
        }
    }
    let chosen = if request.instances.is_empty() { all } else { request.instances };
    let (sent, offline) = recipe::reload(&shared, &app, &chosen);
    tracing::info!(app_id = %app, sent = sent.len(), offline = offline.len(), by_operator, "reload");
    Ok(Json(json!({ "app_id": app, "reloaded": sent, "not_connected": offline })).into_response())
}

async fn push_recipe(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(bad_json)?;
    require_app(&shared, &app).await?;
    let strict = shared.store.app_settings(&app).await?.is_some_and(|s| s.strict)
        || body.get("strict").and_then(Value::as_bool).unwrap_or(false);
    let mut world = recipe::world(&shared, &app, None).await?;
    let (validated, warnings) = recipe::validate(&body, &mut world, strict)
        .map_err(|d| ApiError::invalid_recipe(d.iter().map(diagnostic_json).collect()))?;
    let pushed = recipe::push(&shared, &app, validated).await?;
    let warnings: Vec<Value> = warnings.iter().map(diagnostic_json).collect();
    let body = json!({
        "recipe_version": pushed.version, "unchanged": pushed.unchanged, "sent_to": pushed.sent_to, "warnings": warnings,
    });
    if pushed.unchanged {
        return Ok(Json(body).into_response());
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct ShowParams {
    instance: Option<String>,
}

/// `GET /apps/{app}/recipe[?instance=ID]`: the app's recipe as pushed, or what one instance was
/// sent (rendered for it).
async fn show_recipe(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    params: Result<Query<ShowParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(params) = params.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    require_app(&shared, &app).await?;
    if let Some(instance) = params.instance {
        let Some(recipe) = shared.recipes.current(&shared.store, &app, &instance).await? else {
            return Err(ApiError::not_found(format!("instance `{instance}` of app `{app}` has no recipe yet")));
        };
        return Ok(Json(recipe.body.clone()).into_response());
    }
    let Some(source) = shared.recipes.source(&shared.store, &app).await? else {
        return Err(ApiError::not_found(format!("app `{app}` has no recipe yet"))
            .hint("push one with `opsagent-hub recipe push APP FILE`"));
    };
    Ok(Json(source.body.clone()).into_response())
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
    let recipes = shared.recipes.app(&shared.store, &app).await?;
    if recipes.source.is_none() {
        return Err(ApiError::not_found(format!("app `{app}` has no recipe yet")));
    }
    let every = instance == "*";
    let names: Vec<String> = if every {
        shared.store.list_instances(&app).await?.into_iter().map(|i| i.id).collect()
    } else {
        if shared.store.instance(&app, &instance).await?.is_none() {
            return Err(ApiError::not_found(format!("app `{app}` has no instance `{instance}`")));
        }
        vec![instance.clone()]
    };
    // Each instance runs its own recipe version; the state is named by id or 1-based position.
    let mut chosen = Vec::new();
    let mut state_id = done.state_id.clone();
    for name in names {
        let Some(current) = recipes.instances.get(&name) else { continue };
        let version = done.recipe_version.unwrap_or(current.version);
        match current.resolve_state(&done.state_id).filter(|_| version == current.version) {
            Some(id) => {
                state_id = id.to_string();
                chosen.push((name, version));
            }
            None if version != current.version => chosen.push((name, version)),
            None if every => {}
            None => {
                return Err(ApiError::not_found(format!(
                    "the recipe (version {version}) of instance `{name}` has no state `{}`",
                    done.state_id
                ))
                .hint(format!("`opsagent-hub recipe show APP --instance {name}` lists its states")))
            }
        }
    }
    if chosen.is_empty() {
        return Err(ApiError::not_found(format!("no instance of app `{app}` has a state `{}`", done.state_id)));
    }
    let version = chosen[0].1;
    let (released, already) = waits::release_by_hand(&shared, &app, &chosen, &state_id).await?;
    let body = json!({
        "app_id": app, "recipe_version": version, "state_id": state_id,
        "released": released, "already_released": already,
    });
    Ok(Json(body).into_response())
}

async fn status(State(shared): State<Arc<Shared>>, Path(app): Path<String>) -> ApiResult {
    require_app(&shared, &app).await?;
    let recipes = shared.recipes.app(&shared.store, &app).await?;
    let statuses = shared.store.state_statuses(&app).await?;
    let listed = shared.store.list_instances(&app).await?;
    let progress = waits::Progress::new(recipes.clone(), listed.clone(), &statuses);
    let released = waits::released_now(shared.store.released_all(&app).await?, &recipes);
    let mut states_by_instance: HashMap<String, Vec<_>> = HashMap::new();
    for row in statuses {
        states_by_instance.entry(row.instance_id.clone()).or_default().push(row);
    }
    let mut instances = Vec::new();
    for i in listed {
        let recipe = recipes.instances.get(&i.id);
        let order = |state_id: &str| recipe.and_then(|r| r.order.get(state_id).copied()).unwrap_or(usize::MAX);
        let waiting: Vec<Value> = recipe
            .map(|r| {
                waits::waiting_for(&progress, &i.id, r, &released)
                    .into_iter()
                    .map(|(state_id, message)| json!({ "state_id": state_id, "message": message }))
                    .collect()
            })
            .unwrap_or_default();
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
            "component": i.component,
            "connected": shared.registry.is_connected(&app, &i.id),
            "agent_version": i.agent_version,
            "recipe_version": i.recipe_version,
            "current_version": recipe.map(|r| r.version),
            "waiting": waiting,
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
        "recipe_version": recipes.source.as_ref().map(|r| r.version),
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

//! The agent endpoint `/agent/` (docs/protocol.md): the nonce handshake, then reports stored
//! once per (app, instance, seq) and acknowledged, recipes and DONEs pushed.
//!
//! One task per connection reads; a writer task owns the socket's sending half and drains a
//! bounded queue (a peer that cannot keep up is disconnected). The app and instance of every
//! message come from the authenticated handshake, never from the frame.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use opsagent_proto::{AgentMessage, HubMessage, StateLog, MAX_AGENT_FRAME, PROTOCOL_VERSION};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::random_hex;
use crate::events::EventKind;
use crate::metrics::Refusal;
use crate::recipe;
use crate::registry::{try_send, Outgoing, Peer, SendError};
use crate::releases;
use crate::shared::Shared;
use crate::store::{Effect, Report};
use crate::waits;

/// `GET /agent/`: upgrades to a WebSocket if a connection slot is free.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(permit) = shared.connection_slots.clone().try_acquire_owned() else {
        shared.metrics.refused(Refusal::Full);
        tracing::warn!(%peer, "agent connection refused: the connection limit is reached");
        return (StatusCode::SERVICE_UNAVAILABLE, "the hub has too many agent connections; retry later")
            .into_response();
    };
    let tasks = shared.tasks.clone();
    // tungstenite allocates its read buffer up front (128 KiB by default): with thousands of
    // agents that would be most of the hub's memory, and agents' frames are small.
    let ws = ws
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_AGENT_FRAME)
        .max_frame_size(MAX_AGENT_FRAME);
    ws.on_upgrade(move |socket| {
        let span = tracing::info_span!(
            "connection",
            %peer,
            app_id = tracing::field::Empty,
            instance_id = tracing::field::Empty
        );
        tasks.track_future(connection(shared, socket, permit).instrument(span))
    })
}

/// The read buffer of one agent connection (a larger frame still fits, up to the limit).
const READ_BUFFER_BYTES: usize = 8 * 1024;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// How a connection ends.
enum End {
    /// The peer closed, went silent, or the hub stops: nothing more to say.
    Quiet,
    /// Tell the agent why (an `Error` or `AppNotReady`), then close.
    Refuse(HubMessage),
}

async fn connection(shared: Arc<Shared>, socket: WebSocket, _permit: OwnedSemaphorePermit) {
    shared.metrics.connection_opened();
    let (mut sink, mut stream) = socket.split();
    let Some(Authenticated { app, instance, welcome, recipe_version, agent_version, facts }) =
        handshake(&shared, &mut sink, &mut stream).await
    else {
        return;
    };
    let span = tracing::Span::current();
    span.record("app_id", app.as_str());
    span.record("instance_id", instance.as_str());

    let cancel = shared.shutdown.child_token();
    let (sender, receiver) = mpsc::channel(shared.limits.queue);
    let peer = Peer { connection_id: shared.registry.connection_id(), sender, cancel: cancel.clone() };
    let mut writer = tokio::spawn(
        writer(sink, receiver, cancel.clone(), shared.limits.write_timeout).instrument(tracing::Span::current()),
    );
    // Welcome goes into the queue before the connection is registered, so it is always first.
    let _ = try_send(&peer, Outgoing::Frame(opsagent_proto::encode(&welcome)));
    shared.registry.register(&app, &instance, peer.clone());
    shared.events.publish(&app, Some(&instance), EventKind::Connection);
    let end = match greet(&shared, &app, &instance, recipe_version, &agent_version, facts, &peer).await {
        Ok(()) => read_reports(&shared, &app, &instance, &peer, &mut stream).await,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the store for a new connection");
            End::Quiet
        }
    };
    shared.registry.unregister(&app, &instance, peer.connection_id);
    if let End::Refuse(message) = end {
        let queued =
            timeout(shared.limits.write_timeout, peer.sender.send(Outgoing::Frame(opsagent_proto::encode(&message))))
                .await;
        if matches!(queued, Ok(Ok(()))) {
            let _ = peer.sender.try_send(Outgoing::Close);
        } else {
            cancel.cancel();
        }
    } else {
        cancel.cancel();
    }
    drop(peer);
    if timeout(shared.limits.write_timeout, &mut writer).await.is_err() {
        tracing::warn!("the connection's writer did not stop in time");
        writer.abort();
    }
    if let Err(e) = shared.store.record_disconnect(&app, &instance).await {
        tracing::warn!(error = %format!("{e:#}"), "cannot record a disconnection");
    }
    shared.events.publish(&app, Some(&instance), EventKind::Connection);
    tracing::info!("agent disconnected");
}

/// Who an accepted handshake says the agent is.
struct Authenticated {
    app: String,
    instance: String,
    welcome: HubMessage,
    /// The recipe version the agent runs.
    recipe_version: Option<u64>,
    /// The agent's own version.
    agent_version: String,
    /// The facts the agent reported.
    facts: Option<opsagent_proto::Facts>,
}

/// Says `Hello`, reads and checks the `Handshake`. `None` when the connection was refused (and
/// closed).
async fn handshake(shared: &Shared, sink: &mut Sink, stream: &mut Stream) -> Option<Authenticated> {
    let nonce = match random_hex(32) {
        Ok(nonce) => nonce,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot make a handshake nonce");
            return None;
        }
    };
    let hello = HubMessage::Hello {
        nonce: nonce.clone(),
        protocol_version: PROTOCOL_VERSION,
        hub_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if send_now(shared, sink, &hello).await.is_err() {
        return None;
    }
    let first = tokio::select! {
        _ = shared.shutdown.cancelled() => return None,
        first = timeout(shared.limits.handshake_timeout, next_text(stream)) => first,
    };
    let text = match first {
        Err(_) => {
            shared.metrics.refused(Refusal::Timeout);
            let message = format!("no handshake within {} s", shared.limits.handshake_timeout.as_secs());
            tracing::info!("agent refused: {message}");
            refuse(shared, sink, HubMessage::Error { message }).await;
            return None;
        }
        Ok(Err(end)) => {
            if let End::Refuse(message) = end {
                shared.metrics.refused(Refusal::BadFrame);
                refuse(shared, sink, message).await;
            }
            return None;
        }
        Ok(Ok(text)) => text,
    };
    let message = match opsagent_proto::decode_agent(&text) {
        Ok(message) => message,
        Err(e) => {
            shared.metrics.refused(Refusal::BadFrame);
            tracing::info!(error = %e, "agent refused: bad handshake frame");
            let message = format!("bad frame: {e}");
            refuse(shared, sink, HubMessage::Error { message }).await;
            return None;
        }
    };
    let AgentMessage::Handshake {
        instance_id,
        app_id,
        agent_version,
        protocol_version,
        hmac,
        recipe_version,
        init_errors,
        facts,
    } = message
    else {
        shared.metrics.refused(Refusal::BadFrame);
        let message = "the first message must be a `Handshake`".to_string();
        refuse(shared, sink, HubMessage::Error { message }).await;
        return None;
    };
    let secret = match shared.store.instance_secret(&app_id, &instance_id).await {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the store during a handshake");
            return None;
        }
    };
    let Some(secret) = secret else {
        shared.metrics.refused(Refusal::Unknown);
        let app_known = shared.store.app_exists(&app_id).await.unwrap_or(false);
        let reason = if app_known {
            format!("instance `{}` of app `{}` is not registered on this hub", clip(&instance_id), clip(&app_id))
        } else {
            format!("app `{}` is not registered on this hub", clip(&app_id))
        };
        tracing::info!(app_id = %clip(&app_id), instance_id = %clip(&instance_id), "agent refused: unknown app or instance");
        let reason = Some(reason);
        refuse(shared, sink, HubMessage::AppNotReady { reason }).await;
        return None;
    };
    let proof = hmac.unwrap_or_default();
    if !opsagent_proto::verify_handshake(&secret, &nonce, &app_id, &instance_id, &proof) {
        shared.metrics.refused(Refusal::BadHmac);
        tracing::warn!(app_id = %app_id, instance_id = %instance_id, "agent refused: wrong or missing handshake hmac");
        let message = "authentication failed: the handshake hmac does not match this instance's secret".to_string();
        refuse(shared, sink, HubMessage::Error { message }).await;
        return None;
    }
    let last_seq = match shared.store.record_handshake(&app_id, &instance_id, &agent_version, recipe_version).await {
        Ok(last_seq) => last_seq,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot record a handshake");
            return None;
        }
    };
    shared.metrics.handshake_accepted();
    tracing::info!(app_id = %app_id, instance_id = %instance_id, agent_version = %agent_version,
        protocol_version, recipe_version = ?recipe_version, last_seq, "agent connected");
    if let Some(errors) = init_errors.filter(|e| !e.is_empty()) {
        tracing::warn!(app_id = %app_id, instance_id = %instance_id, init_errors = %clip(&errors), "agent reported errors at start");
    }
    let welcome = HubMessage::Welcome { instance_id: instance_id.clone(), last_seq };
    Some(Authenticated { app: app_id, instance: instance_id, welcome, recipe_version, agent_version, facts })
}

/// After `Welcome`: the upgrade order if the agent runs another version than its app's target;
/// its facts recorded (the app's recipes rendered again if they changed); its current recipe if
/// the agent runs another version, then every DONE of this version; then releases whatever waits
/// became ready.
async fn greet(
    shared: &Shared,
    app: &str,
    instance: &str,
    agent_version: Option<u64>,
    agent_release: &str,
    facts: Option<opsagent_proto::Facts>,
    peer: &Peer,
) -> anyhow::Result<()> {
    if let Some(target) = shared.store.target(app).await? {
        if releases::needs_update(Some(agent_release), &target) {
            if let Some(frame) = releases::update_frame(shared, &target)? {
                let _ = try_send(peer, Outgoing::Frame(frame));
            }
        }
    }
    // An agent of the original protocol reports no facts: it still counts as connected.
    let facts = facts.map(opsagent_proto::bounded_facts).unwrap_or_default();
    if shared.store.record_facts(app, instance, &facts).await? {
        tracing::info!(app_id = %app, instance_id = %instance, "new facts: rendering the app's recipes again");
        recipe::rerender(shared, app).await?;
    }
    let Some(recipe) = shared.recipes.current(&shared.store, app, instance).await? else {
        return Ok(());
    };
    if agent_version != Some(recipe.version) {
        let _ = try_send(peer, Outgoing::Recipe { version: recipe.version, frame: recipe.frame.clone() });
    }
    for state_id in shared.store.released_waits(app, instance, recipe.version).await? {
        let _ = try_send(peer, waits::done_frame(recipe.version, &state_id));
    }
    waits::release_ready(shared, app).await?;
    Ok(())
}

/// Reads reports until the connection ends.
async fn read_reports(shared: &Shared, app: &str, instance: &str, peer: &Peer, stream: &mut Stream) -> End {
    loop {
        let text = tokio::select! {
            _ = peer.cancel.cancelled() => return End::Quiet,
            next = timeout(shared.limits.idle_timeout, next_text(stream)) => match next {
                Err(_) => {
                    shared.metrics.refused(Refusal::Timeout);
                    tracing::info!(idle_secs = shared.limits.idle_timeout.as_secs(), "agent silent for too long: disconnecting");
                    return End::Quiet;
                }
                Ok(Err(end)) => {
                    if matches!(end, End::Refuse(_)) {
                        shared.metrics.refused(Refusal::BadFrame);
                    }
                    return end;
                }
                Ok(Ok(text)) => text,
            },
        };
        let message = match opsagent_proto::decode_agent(&text) {
            Ok(message) => message,
            Err(e) => {
                shared.metrics.refused(Refusal::BadFrame);
                tracing::info!(error = %e, "bad frame from agent: closing");
                let message = format!("bad frame: {e}");
                return End::Refuse(HubMessage::Error { message });
            }
        };
        if let AgentMessage::Facts { facts } = message {
            match shared.store.record_facts(app, instance, &opsagent_proto::bounded_facts(facts)).await {
                Ok(true) => {
                    tracing::info!("the agent's facts changed: rendering the app's recipes again");
                    if let Err(e) = recipe::rerender(shared, app).await {
                        tracing::error!(error = %format!("{e:#}"), "cannot render the app's recipes");
                    }
                    shared.events.publish(app, Some(instance), EventKind::Connection);
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot store facts"),
            }
            continue;
        }
        let report = match to_report(app, instance, message) {
            Ok(report) => report,
            Err(message) => {
                shared.metrics.refused(Refusal::BadFrame);
                tracing::info!(error = %message, "bad message from agent: closing");
                return End::Refuse(HubMessage::Error { message });
            }
        };
        match shared.store.record_report(app, instance, &report).await {
            Ok(true) => {
                count(shared, &report);
                let kind = if matches!(report.effect, Effect::Upgrade { .. }) {
                    EventKind::Upgrade
                } else {
                    EventKind::Report
                };
                shared.events.publish(app, Some(instance), kind);
            }
            Ok(false) => shared.metrics.duplicate(),
            Err(e) => {
                // Not acknowledged: the agent keeps it in its outbox and replays it.
                tracing::error!(error = %format!("{e:#}"), seq = report.seq, "cannot store a report: disconnecting the agent");
                let message = "the hub cannot store reports right now; retry later".to_string();
                return End::Refuse(HubMessage::Error { message });
            }
        }
        let ack = Outgoing::Frame(opsagent_proto::encode(&HubMessage::Ack { seq: report.seq }));
        if let Err(SendError::Slow) = try_send(peer, ack) {
            shared.metrics.refused(Refusal::Slow);
            tracing::warn!("agent too slow to read its acks: disconnecting");
            return End::Quiet;
        }
        if let Effect::State { status, .. } = &report.effect {
            let succeeded = status == "ok" || status == "changed";
            if succeeded && waits::may_release(shared, app) {
                if let Err(e) = waits::release_ready(shared, app).await {
                    tracing::error!(error = %format!("{e:#}"), "cannot release waits");
                }
            }
        }
    }
}

fn count(shared: &Shared, report: &Report) {
    match &report.effect {
        Effect::State { status, .. } => shared.metrics.state_log(status),
        Effect::RoundStart { .. } | Effect::RoundEnd { .. } | Effect::Upgrade { .. } => shared.metrics.round_event(),
    }
}

/// Turns a decoded message into a report with the authenticated identity.
fn to_report(app: &str, instance: &str, message: AgentMessage) -> Result<Report, String> {
    let seq = message.seq().unwrap_or(0);
    if seq == 0 || i64::try_from(seq).is_err() {
        return Err(format!("`seq` must be between 1 and {} (protocol version {PROTOCOL_VERSION})", i64::MAX));
    }
    let report = match message {
        AgentMessage::Handshake { .. } => {
            return Err("unexpected `Handshake`: this connection is authenticated already".into())
        }
        AgentMessage::Facts { .. } => return Err("`Facts` carries no seq".into()),
        AgentMessage::StateLog(log) => state_report(app, instance, *log),
        AgentMessage::RoundStart { seq, recipe_version, round, ref started_at } => Report {
            seq,
            kind: "RoundStart",
            body: serde_json::json!({
                "code": "RoundStart", "app_id": app, "instance_id": instance, "seq": seq,
                "recipe_version": recipe_version, "round": round, "started_at": started_at,
            }),
            recipe_version,
            effect: Effect::RoundStart { round },
        },
        AgentMessage::RoundEnd { seq, recipe_version, round, result, duration_ms } => Report {
            seq,
            kind: "RoundEnd",
            body: serde_json::json!({
                "code": "RoundEnd", "app_id": app, "instance_id": instance, "seq": seq,
                "recipe_version": recipe_version, "round": round, "result": result,
                "duration_ms": duration_ms,
            }),
            recipe_version,
            effect: Effect::RoundEnd { round, result },
        },
        AgentMessage::UpgradeStatus { seq, version, from, phase, reason } => {
            tracing::info!(version = %clip(&version), phase = %clip(&phase), reason = ?reason, "agent upgrade status");
            Report {
                seq,
                kind: "UpgradeStatus",
                body: serde_json::json!({
                    "code": "UpgradeStatus", "app_id": app, "instance_id": instance, "seq": seq,
                    "version": version, "from": from, "phase": phase, "reason": reason,
                }),
                recipe_version: 0,
                effect: Effect::Upgrade { version, from, phase, reason },
            }
        }
    };
    Ok(report)
}

fn state_report(app: &str, instance: &str, mut log: StateLog) -> Report {
    log.app_id = app.to_string();
    log.instance_id = instance.to_string();
    if log.status.is_empty() {
        // An agent of the original protocol only says whether the state succeeded.
        log.status = if log.state_result { "ok" } else { "failed" }.to_string();
    }
    let body = serde_json::to_value(&log).unwrap_or_default();
    Report {
        seq: log.seq,
        kind: "StateLog",
        recipe_version: log.recipe_version,
        effect: Effect::State {
            state_id: log.id,
            module: log.module,
            status: log.status,
            attempt: log.attempt,
            round: log.round,
            comment: log.state_comment,
        },
        body,
    }
}

/// The next text frame; pings and pongs are skipped (the WebSocket layer answers pings).
async fn next_text(stream: &mut Stream) -> Result<String, End> {
    loop {
        match stream.next().await {
            None => return Err(End::Quiet),
            Some(Err(e)) => {
                tracing::info!(error = %e, "agent connection failed");
                let message = if e.to_string().contains("Space limit exceeded") || e.to_string().contains("too long") {
                    format!("frame larger than the limit of {MAX_AGENT_FRAME} bytes")
                } else {
                    return Err(End::Quiet);
                };
                return Err(End::Refuse(HubMessage::Error { message }));
            }
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
            Some(Ok(Message::Binary(_))) => {
                let message = "binary frames are not part of the protocol: send JSON text frames".to_string();
                return Err(End::Refuse(HubMessage::Error { message }));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) => return Err(End::Quiet),
        }
    }
}

/// Drains a connection's queue into the socket.
async fn writer(
    mut sink: Sink,
    mut receiver: mpsc::Receiver<Outgoing>,
    cancel: CancellationToken,
    write_timeout: std::time::Duration,
) {
    let mut newest_recipe = 0;
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => break,
            next = receiver.recv() => next,
        };
        let text = match next {
            None => break,
            Some(Outgoing::Frame(text)) => text,
            Some(Outgoing::Recipe { version, frame }) => {
                // A push racing the handshake's replay may queue the same version twice: one
                // copy is enough, and an older one is stale.
                if version <= newest_recipe {
                    continue;
                }
                newest_recipe = version;
                frame.to_string()
            }
            Some(Outgoing::Close) => {
                let _ = timeout(write_timeout, sink.send(Message::Close(None))).await;
                break;
            }
        };
        match timeout(write_timeout, sink.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot write to the agent");
                break;
            }
            Err(_) => {
                tracing::warn!("agent not reading: disconnecting");
                break;
            }
        }
    }
    cancel.cancel();
}

/// Sends one message before the writer exists (during the handshake).
async fn send_now(shared: &Shared, sink: &mut Sink, message: &HubMessage) -> Result<(), ()> {
    let text = opsagent_proto::encode(message);
    match timeout(shared.limits.write_timeout, sink.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends a refusal and closes.
async fn refuse(shared: &Shared, sink: &mut Sink, message: HubMessage) {
    if send_now(shared, sink, &message).await.is_ok() {
        let _ = timeout(shared.limits.write_timeout, sink.send(Message::Close(None))).await;
    }
}

/// An id from an unauthenticated peer, cut short for logs and messages.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

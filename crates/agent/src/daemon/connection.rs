//! The connection to the hub: connect (TLS verified), answer the `Hello` challenge, then read
//! frames and send the outbox until the connection ends; reconnect with exponential backoff and
//! full jitter. It never waits on a round: orders go to the driver over a channel, and reports
//! come from the outbox.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use opsagent_proto::{AgentMessage, HubMessage, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use tokio_util::sync::CancellationToken;

use super::config::{instance_hash, Config};
use super::outbox::Outbox;

/// What the hub orders, for the driver.
#[derive(Debug)]
pub enum Order {
    Recipe(serde_json::Value),
    Done {
        recipe_version: u64,
        id: String,
    },
    Update(super::upgrade::UpdateOrder),
    /// Run a round now, with the same recipe.
    Reload,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by every connection attempt.
pub struct Link {
    pub config: Config,
    pub outbox: Arc<Outbox>,
    pub orders: mpsc::Sender<Order>,
    /// The recipe version the driver runs, sent in the handshake.
    pub recipe_version: tokio::sync::watch::Receiver<Option<u64>>,
    /// Whether the hub has welcomed the current connection (an upgrade confirms on it).
    pub connected: tokio::sync::watch::Sender<bool>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Link {
    pub fn new(
        config: Config,
        outbox: Arc<Outbox>,
        orders: mpsc::Sender<Order>,
        recipe_version: tokio::sync::watch::Receiver<Option<u64>>,
    ) -> anyhow::Result<Link> {
        let tls = if config.hub_url.starts_with("wss://") { Some(Arc::new(tls_config(&config)?)) } else { None };
        let (connected, _) = tokio::sync::watch::channel(false);
        Ok(Link { config, outbox, orders, recipe_version, connected, tls })
    }

    /// Connects, and reconnects, until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        // Splay the first connect so that a fleet booting together does not arrive at once.
        let mut delay = Duration::from_millis(instance_hash(&self.config.instance_id) % 2000);
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return,
            }
            tracing::info!(hub = %self.config.hub_url, failures, "connecting to the hub");
            let welcomed = tokio::select! {
                result = self.session() => match result {
                    Ok(()) => true,
                    Err(SessionEnd { welcomed, error }) => {
                        tracing::warn!(hub = %self.config.hub_url, error = %format!("{error:#}"), "connection to the hub ended");
                        welcomed
                    }
                },
                () = cancel.cancelled() => return,
            };
            self.connected.send_replace(false);
            failures = if welcomed { 0 } else { failures.saturating_add(1) };
            delay = backoff(failures, self.config.reconnect_max);
        }
    }

    async fn session(&self) -> Result<(), SessionEnd> {
        let mut welcomed = false;
        let result = self.session_inner(&mut welcomed).await;
        result.map_err(|error| SessionEnd { welcomed, error })
    }

    async fn session_inner(&self, welcomed: &mut bool) -> anyhow::Result<()> {
        let config = &self.config;
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(opsagent_proto::MAX_HUB_FRAME))
            .max_frame_size(Some(opsagent_proto::MAX_HUB_FRAME));
        let connector = self.tls.clone().map(Connector::Rustls);
        // TCP (through the environment's proxy, if it names one), then TLS and the WebSocket over it.
        let (mut ws, _) = timeout(HANDSHAKE_TIMEOUT, async {
            let tcp = opsagent_states::http::connect(&config.hub_url).await?;
            tokio_tungstenite::client_async_tls_with_config(
                config.hub_url.as_str(),
                tcp,
                Some(ws_config),
                connector.or(Some(Connector::Plain)),
            )
            .await
            .map_err(anyhow::Error::from)
        })
        .await
        .context("connecting timed out")?
        .with_context(|| format!("connecting to {}", config.hub_url))?;

        // Hello → Handshake → Welcome.
        let nonce =
            match timeout(HANDSHAKE_TIMEOUT, next_hub_message(&mut ws)).await.context("no Hello from the hub")?? {
                HubMessage::Hello { nonce, .. } => nonce,
                other => bail!("expected Hello, got {}", code_of(&other)),
            };
        let mut facts = super::facts::collect(config).await;
        let handshake = AgentMessage::Handshake {
            instance_id: config.instance_id.clone(),
            app_id: config.app_id.clone(),
            agent_version: crate::version::version().to_string(),
            protocol_version: PROTOCOL_VERSION,
            hmac: Some(opsagent_proto::handshake_hmac(
                config.secret.expose(),
                &nonce,
                &config.app_id,
                &config.instance_id,
            )),
            recipe_version: *self.recipe_version.borrow(),
            init_errors: None,
            facts: Some(facts.clone()),
        };
        ws.send(Message::text(opsagent_proto::encode(&handshake))).await.context("sending the handshake")?;
        let last_seq = match timeout(HANDSHAKE_TIMEOUT, next_hub_message(&mut ws))
            .await
            .context("no answer to the handshake")??
        {
            HubMessage::Welcome { last_seq, .. } => last_seq,
            HubMessage::AppNotReady { reason } => {
                bail!("the hub does not know this app or instance yet: {}", reason.unwrap_or_default())
            }
            HubMessage::Error { message } => bail!("the hub refused the handshake: {message}"),
            other => bail!("expected Welcome, got {}", code_of(&other)),
        };
        *welcomed = true;
        self.connected.send_replace(true);
        tracing::info!(hub = %config.hub_url, last_seq, pending = self.outbox.len(), "connected to the hub");
        self.outbox.continue_after(last_seq);
        self.outbox.ack(last_seq)?;

        let mut sent = last_seq;
        let mut appended = self.outbox.watch();
        let silence_limit = config.heartbeat * 3;
        let mut ping = tokio::time::interval(config.heartbeat);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut facts_timer = tokio::time::interval(config.facts_interval);
        facts_timer.tick().await;
        loop {
            // Send everything not yet sent (replay after reconnect, then new reports).
            for (seq, text) in self.outbox.after(sent) {
                ws.send(Message::text(text)).await.context("sending a report")?;
                sent = seq;
            }
            tokio::select! {
                frame = ws.next() => {
                    last_heard = Instant::now();
                    match frame {
                        None => bail!("the hub closed the connection"),
                        Some(Err(e)) => return Err(e).context("reading from the hub"),
                        Some(Ok(Message::Text(text))) => self.handle(&text).await?,
                        Some(Ok(Message::Ping(data))) => ws.send(Message::Pong(data)).await.context("answering a ping")?,
                        Some(Ok(Message::Close(frame))) => bail!("the hub closed the connection: {}", frame.map(|f| f.reason.to_string()).unwrap_or_default()),
                        Some(Ok(_)) => {}
                    }
                }
                changed = appended.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = facts_timer.tick() => {
                    let now = super::facts::collect(config).await;
                    if now != facts {
                        tracing::info!("the instance's facts changed: telling the hub");
                        facts = now;
                        let message = AgentMessage::Facts { facts: facts.clone() };
                        ws.send(Message::text(opsagent_proto::encode(&message))).await.context("sending facts")?;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        bail!("no sign of life from the hub for {}s", silence_limit.as_secs());
                    }
                    ws.send(Message::Ping(Vec::new().into())).await.context("sending a ping")?;
                }
            }
        }
    }

    async fn handle(&self, text: &str) -> anyhow::Result<()> {
        let message = match opsagent_proto::decode_hub(text) {
            Ok(m) => m,
            Err(e) => {
                // A frame we do not understand is the hub's bug, not a reason to stop working.
                tracing::warn!(error = %e, "ignoring a frame from the hub");
                return Ok(());
            }
        };
        let order = match message {
            HubMessage::Ack { seq } => {
                self.outbox.ack(seq)?;
                return Ok(());
            }
            HubMessage::RecipeMetadata { recipe_version, state, retries, .. } => {
                let mut recipe = serde_json::json!({ "recipe_version": recipe_version, "state": state });
                if let Some(retries) = retries {
                    recipe["retries"] = retries.into();
                }
                Order::Recipe(recipe)
            }
            HubMessage::State { recipe_version, id } => Order::Done { recipe_version, id },
            HubMessage::AgentUpdate { version, url, sha256, signature, allow_downgrade } => {
                Order::Update(super::upgrade::UpdateOrder { version, url, sha256, signature, allow_downgrade })
            }
            HubMessage::Reload {} => Order::Reload,
            HubMessage::Error { message } => bail!("the hub reported an error: {message}"),
            HubMessage::Hello { .. } | HubMessage::Welcome { .. } | HubMessage::AppNotReady { .. } => return Ok(()),
        };
        self.orders.send(order).await.context("the driver has stopped")?;
        Ok(())
    }
}

struct SessionEnd {
    welcomed: bool,
    error: anyhow::Error,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_hub_message(ws: &mut Ws) -> anyhow::Result<HubMessage> {
    loop {
        match ws.next().await {
            None => bail!("the hub closed the connection"),
            Some(Err(e)) => return Err(e).context("reading from the hub"),
            Some(Ok(Message::Text(text))) => {
                return opsagent_proto::decode_hub(&text).context("decoding a frame from the hub")
            }
            Some(Ok(Message::Close(frame))) => {
                bail!("the hub closed the connection: {}", frame.map(|f| f.reason.to_string()).unwrap_or_default())
            }
            Some(Ok(_)) => {}
        }
    }
}

fn code_of(message: &HubMessage) -> String {
    serde_json::to_value(message).ok().and_then(|v| v["code"].as_str().map(String::from)).unwrap_or_default()
}

/// Full jitter: a uniform random pause in `[0, min(max, 1 s · 2^failures)]`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let cap = Duration::from_secs(1).saturating_mul(1u32 << failures.min(20)).min(max);
    cap.mul_f64(fastrand::f64())
}

/// Public roots plus the configured CA file; certificates are always verified.
pub(super) fn tls_config(config: &Config) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots_certs());
    if let Some(ca) = &config.ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs =
            rustls_pki_types::CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?;
        for cert in certs {
            roots
                .add(cert.with_context(|| format!("reading a certificate of {}", ca.display()))?)
                .with_context(|| format!("adding a CA of {}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn webpki_roots_certs() -> impl Iterator<Item = rustls_pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}

//! Starting and stopping a hub: [`serve`] checks the configuration, opens the store, binds and
//! returns a [`Hub`] handle; [`Hub::shutdown`] closes every connection and drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Secret};
use crate::metrics::Metrics;
use crate::recipe::RecipeCache;
use crate::registry::Registry;
use crate::shared::{Limits, Shared};
use crate::store::Store;
use crate::{api, dashboard, tls, ws};

/// How to run a hub. [`ServeConfig::new`] gives the defaults of `opsagent-hub serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen; port 0 picks a free one ([`Hub::local_addr`] tells which).
    pub listen: SocketAddr,
    /// Holds `hub.db` and, unless `api_token` is given, `api-token`.
    pub data_dir: PathBuf,
    /// Serve `https`/`wss` with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Allow plain `http`/`ws` on an address that is not loopback.
    pub insecure_plain_ws: bool,
    /// The operator token; `None` reads or creates `<data_dir>/api-token`.
    pub api_token: Option<Secret>,
    /// The agents' URL to print in instance config snippets (default: from the request's host).
    pub public_url: Option<String>,
    /// At most this many agent connections at once.
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// Drop an agent connection silent for this long.
    pub idle_timeout: Duration,
    /// How long [`Hub::shutdown`] waits for connections to end.
    pub shutdown_grace: Duration,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            listen,
            data_dir,
            tls: None,
            insecure_plain_ws: false,
            api_token: None,
            public_url: None,
            max_connections: 20_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why a hub did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is refused (exit 2): nothing was opened.
    #[error("{message}")]
    Invalid { message: String, hint: String },
    /// The environment failed: data directory, database, address, TLS files (exit 3).
    #[error(transparent)]
    Environment(#[from] anyhow::Error),
}

/// A running hub. Dropping it without [`Hub::shutdown`] stops it abruptly (connections cut).
pub struct Hub {
    shared: Arc<Shared>,
    server: axum_server::Handle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    grace: Duration,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shared.shutdown.cancel();
            self.server.shutdown();
        }
    }
}

impl Hub {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// `http://ADDR` (or `https`): the API's base is `{url}/api/v1`.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.shared.local_addr)
    }

    /// `ws://ADDR/agent/` (or `wss`): where agents connect.
    pub fn agent_url(&self) -> String {
        let scheme = if self.shared.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/agent/", self.shared.local_addr)
    }

    /// The operator token the API expects.
    pub fn api_token(&self) -> &str {
        self.shared.api_token.expose()
    }

    /// How many agents are connected now.
    pub fn connected_agents(&self) -> usize {
        self.shared.registry.count()
    }

    /// Stops: refuses new connections, closes every agent connection, waits (up to the grace
    /// period) for them and the HTTP server to end, then closes the store.
    pub async fn shutdown(mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let grace = self.grace;
        self.shared.shutdown.cancel();
        self.server.graceful_shutdown(Some(grace));
        self.shared.tasks.close();
        if tokio::time::timeout(grace, self.shared.tasks.wait()).await.is_err() {
            tracing::warn!("some agent connections did not end in time");
        }
        match tokio::time::timeout(grace, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "the HTTP server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server task failed"),
            Err(_) => tracing::warn!("the HTTP server did not stop in time"),
        }
        self.shared.store.close().await;
        tracing::info!("hub stopped");
    }
}

/// Starts a hub: checks the configuration, opens (or creates) the data directory and the
/// database, binds, and serves in the background until [`Hub::shutdown`].
pub async fn serve(config: ServeConfig) -> Result<Hub, ServeError> {
    let loopback = config.listen.ip().is_loopback();
    if config.tls.is_none() && !loopback && !config.insecure_plain_ws {
        return Err(ServeError::Invalid {
            message: format!(
                "refusing to serve plain http/ws on `{}`, which is not a loopback address",
                config.listen
            ),
            hint: "give `--tls-cert` and `--tls-key`, listen on 127.0.0.1, or pass `--insecure-plain-ws` if a proxy terminates TLS".into(),
        });
    }
    if let Some(url) = &config.public_url {
        let scheme_ok = url.starts_with("ws://") || url.starts_with("wss://");
        if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control() || "\"\\".contains(c)) {
            return Err(ServeError::Invalid {
                message: format!("`{url}` is not a WebSocket URL for agents"),
                hint: "write it like `wss://hub.example.com/agent/`".into(),
            });
        }
    }
    let tls_config = match &config.tls {
        Some(files) => Some(tls::server_config(&files.cert, &files.key)?),
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let api_token = match config.api_token.clone() {
        Some(token) => token,
        None => auth::load_or_create_token(&config.data_dir)?,
    };
    let store = Store::open(&config.data_dir).await?;
    let listener =
        std::net::TcpListener::bind(config.listen).with_context(|| format!("listening on {}", config.listen))?;
    listener.set_nonblocking(true).context("setting the listener non-blocking")?;
    let local_addr = listener.local_addr().context("reading the bound address")?;
    let shared = Arc::new(Shared {
        store,
        registry: Registry::default(),
        recipes: RecipeCache::default(),
        metrics: Metrics::default(),
        api_token,
        sessions: Default::default(),
        events: Default::default(),
        public_url: config.public_url.clone(),
        tls: tls_config.is_some(),
        data_dir: config.data_dir.clone(),
        local_addr,
        limits: Limits {
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            queue: 256,
            write_timeout: Duration::from_secs(10),
        },
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        connection_slots: Arc::new(Semaphore::new(config.max_connections)),
    });
    let app = router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let task = match tls_config {
        Some(tls_config) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls_config);
            let server = axum_server::from_tcp_rustls(listener, rustls).handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        None => {
            let server = axum_server::from_tcp(listener).handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
    };
    tracing::info!(address = %local_addr, tls = shared.tls, data_dir = %config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"), "hub listening");
    Ok(Hub { shared, server: handle, task: Some(task), grace: config.shutdown_grace })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/agent/", get(ws::upgrade))
        .route("/agent", get(ws::upgrade))
        .nest("/api/v1", api::router(shared.clone()))
        .route("/metrics", get(metrics))
        .route("/releases/{version}/{file}", get(crate::releases::download))
        .merge(dashboard::router(shared.clone()))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render(shared.registry.count()))
}

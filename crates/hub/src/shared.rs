//! What every request and connection of one running hub shares: the store, the registry of
//! connected agents, the recipe cache, metrics, the API token, dashboard sessions and notices, and the
//! limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Secret;
use crate::dashboard::Sessions;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::recipe::RecipeCache;
use crate::registry::Registry;
use crate::store::Store;

pub struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub recipes: RecipeCache,
    pub metrics: Metrics,
    pub api_token: Secret,
    /// Signed-in dashboard browsers.
    pub sessions: Sessions,
    /// "Something changed" notices for the dashboard's live pages.
    pub events: Events,
    /// Where agents connect, as configured (`--public-url`); else derived per request.
    pub public_url: Option<String>,
    pub tls: bool,
    /// The data directory (the database, `releases/`).
    pub data_dir: std::path::PathBuf,
    pub local_addr: SocketAddr,
    pub limits: Limits,
    /// Cancelled when the hub stops: every connection ends.
    pub shutdown: CancellationToken,
    /// Owns every connection task.
    pub tasks: TaskTracker,
    /// One permit per agent connection.
    pub connection_slots: Arc<Semaphore>,
}

/// Timeouts and sizes of agent connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long an agent has to answer `Hello`.
    pub handshake_timeout: Duration,
    /// A connection with no frame (pings included) for this long is dropped.
    pub idle_timeout: Duration,
    /// Messages queued for one agent before it counts as too slow and is disconnected.
    pub queue: usize,
    /// How long one frame may take to write.
    pub write_timeout: Duration,
}

impl Shared {
    /// The agents' WebSocket URL as seen from `host` (the `Host` of an API request), for the
    /// config snippet of a new instance.
    pub fn agent_url(&self, host: Option<&str>) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let scheme = if self.tls { "wss" } else { "ws" };
        let host = host.filter(|h| !h.is_empty()).map(str::to_string).unwrap_or_else(|| self.local_addr.to_string());
        format!("{scheme}://{host}/agent/")
    }
}

//! The connected agents: (app, instance) → the sending side of the connection's writer. A new
//! connection of an instance replaces (and closes) the old one; a peer whose queue is full is
//! disconnected rather than buffered without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a connection's writer sends.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// One encoded hub message.
    Frame(String),
    /// An encoded `RecipeMetadata` of `version`: the writer skips it if it already sent a newer
    /// one, so a push racing with a handshake never leaves an agent on an older version.
    Recipe { version: u64, frame: Arc<str> },
    /// Close the connection (after what is queued before it).
    Close,
}

/// The handle of one connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub connection_id: u64,
    pub sender: mpsc::Sender<Outgoing>,
    /// Cancelling it ends the connection (reader and writer).
    pub cancel: CancellationToken,
}

/// Why a message did not reach a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    NotConnected,
    /// The peer's queue was full: it was disconnected.
    Slow,
}

#[derive(Default)]
pub struct Registry {
    apps: Mutex<HashMap<String, HashMap<String, Peer>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// A fresh id for a connection.
    pub fn connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a connection, closing the one it replaces.
    pub fn register(&self, app: &str, instance: &str, peer: Peer) {
        let old = self.lock().entry(app.to_string()).or_default().insert(instance.to_string(), peer);
        if let Some(old) = old {
            old.cancel.cancel();
        }
    }

    /// Removes a connection, unless a newer one of the same instance replaced it already.
    pub fn unregister(&self, app: &str, instance: &str, connection_id: u64) {
        let mut apps = self.lock();
        if let Some(instances) = apps.get_mut(app) {
            if instances.get(instance).is_some_and(|p| p.connection_id == connection_id) {
                instances.remove(instance);
            }
            if instances.is_empty() {
                apps.remove(app);
            }
        }
    }

    pub fn is_connected(&self, app: &str, instance: &str) -> bool {
        self.lock().get(app).is_some_and(|instances| instances.contains_key(instance))
    }

    /// How many agents are connected.
    pub fn count(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// Queues a message for one instance.
    pub fn send(&self, app: &str, instance: &str, message: Outgoing) -> Result<(), SendError> {
        let peer = self.lock().get(app).and_then(|instances| instances.get(instance)).cloned();
        let Some(peer) = peer else {
            return Err(SendError::NotConnected);
        };
        try_send(&peer, message)
    }

    /// Queues a message for every connected instance of an app; returns how many got it.
    pub fn broadcast(&self, app: &str, message: &Outgoing) -> usize {
        let peers: Vec<Peer> =
            self.lock().get(app).map(|instances| instances.values().cloned().collect()).unwrap_or_default();
        peers.iter().filter(|peer| try_send(peer, message.clone()).is_ok()).count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, Peer>>> {
        // A panic while holding this lock cannot leave the map half-updated (each operation is
        // one insert or remove), so a poisoned lock is still usable.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Queues without waiting; a full queue disconnects the peer.
pub fn try_send(peer: &Peer, message: Outgoing) -> Result<(), SendError> {
    match peer.sender.try_send(message) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            peer.cancel.cancel();
            Err(SendError::Slow)
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::NotConnected),
    }
}

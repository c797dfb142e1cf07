//! The hub's notices: a broadcast of "something changed" (fed by the agent connections, recipe
//! pushes and renderings, wait releases and upgrade orders), which the dashboard streams to its
//! pages (`dashboard/events.rs`). A hub service, not the web UI's: the API and the WebSocket side
//! publish to it without knowing who listens.
//!
//! A notice carries no data: a listener re-reads the store, so a missed notice (a lagging
//! receiver) only costs a refresh.

use std::sync::Arc;

use tokio::sync::broadcast;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A state log or round event was stored.
    Report,
    /// An agent connected or disconnected.
    Connection,
    /// A wait was released.
    Release,
    /// A recipe version was pushed.
    Recipe,
    /// An agent reported an upgrade step, or an upgrade was ordered (app-wide).
    Upgrade,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Report => "report",
            EventKind::Connection => "connection",
            EventKind::Release => "release",
            EventKind::Recipe => "recipe",
            EventKind::Upgrade => "upgrade",
        }
    }
}

/// One notice: `instance` is `None` for an app-wide change (a recipe push).
#[derive(Debug, Clone)]
pub struct Notice {
    pub app: Arc<str>,
    pub instance: Option<Arc<str>>,
    pub kind: EventKind,
}

/// The hub's notice channel. Sending never blocks; with no page open, notices are dropped.
pub struct Events {
    sender: broadcast::Sender<Notice>,
}

/// Notices buffered per open page before it counts as lagging (it then refreshes once).
const BUFFER: usize = 1024;

impl Default for Events {
    fn default() -> Events {
        Events { sender: broadcast::channel(BUFFER).0 }
    }
}

impl Events {
    /// Tells every open page of `app` (and of `instance`, if given) that something changed.
    pub fn publish(&self, app: &str, instance: Option<&str>, kind: EventKind) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        // An error only means that no page listens any more.
        let _ = self.sender.send(Notice { app: app.into(), instance: instance.map(Into::into), kind });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.sender.subscribe()
    }
}

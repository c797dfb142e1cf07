//! The opsagent hub: the control plane that agents connect to (`/agent/`, docs/protocol.md), its
//! JSON API for operators (`/api/v1`), its web dashboard (`dashboard`), its metrics, and the operator CLI (`opsagent-hub`).
//!
//! It stores apps, instances, recipe versions, every state's latest status and a bounded
//! history of reports (`store`, SQLite today); pushes recipes and DONEs to connected agents
//! (`registry`, `ws`); releases `meta.wait` states (`waits`); serves signed agent releases and
//! orders agents to upgrade to their app's target version (`releases`). It validates recipes with the
//! modules' `from_params` only: it never checks or applies a state.
//!
//! Start reading at [`serve`] (`server.rs`), then `ws.rs` and `api.rs`.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod metrics;
pub mod quickstart;
pub mod recipe;
pub mod registry;
pub mod releases;
pub mod render;
pub mod server;
pub mod shared;
pub mod store;
pub mod tls;
pub mod userdata;
pub mod waits;
pub mod ws;

pub use auth::Secret;
pub use server::{serve, Hub, ServeConfig, ServeError, TlsFiles};

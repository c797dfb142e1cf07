//! The hub's integration tests: the real server on 127.0.0.1:0, real SQLite files in temp dirs,
//! real WebSocket clients and the real CLI binary. One test binary, one module per area.

mod common;

mod agent;
mod api;
mod cli;
mod components;
mod dashboard;
mod frames;
mod restart;
mod store;
mod tls;
mod upgrade;
mod waits;

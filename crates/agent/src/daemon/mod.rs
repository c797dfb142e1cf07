//! `opsagent run`: the daemon. Reads the configuration, opens the durable state (outbox, recipe
//! cache, DONEs), then runs two long-lived tasks until SIGINT/SIGTERM: the connection to the hub
//! (`connection`) and the round driver (`driver`). They talk over a channel of orders (hub →
//! driver) and through the outbox (driver → hub), so neither ever waits on the other.

pub mod config;
pub mod connection;
pub mod driver;
pub mod outbox;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::ExitCode;

/// Runs the daemon until a signal; the exit code says why it stopped.
pub async fn run(config_path: &Path, state_dir: Option<&Path>) -> ExitCode {
    let loaded = config::load(config_path);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut config = match loaded.config {
        Ok(config) => config,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::Invalid;
        }
    };
    if let Some(dir) = state_dir {
        config.state_dir = dir.to_path_buf();
    }
    let outbox = match outbox::Outbox::open(&config.state_dir) {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::Environment;
        }
    };
    let files = match store::StateFiles::open(&config.state_dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::Environment;
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), hub = %config.hub_url, app_id = %config.app_id, instance_id = %config.instance_id, state_dir = %config.state_dir.display(), pending_reports = outbox.len(), "opsagent starts");

    let (orders_tx, orders_rx) = mpsc::channel(64);
    let (version_tx, version_rx) = watch::channel(None);
    let link = match connection::Link::new(config.clone(), outbox.clone(), orders_tx, version_rx) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::Invalid;
        }
    };
    let driver = driver::Driver { config, outbox, files, orders: orders_rx, version_tx };

    let cancel = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(link.run(cancel.clone()));
    tasks.spawn(driver.run(cancel.clone()));
    tasks.close();

    wait_for_signal().await;
    tracing::info!("stopping: interrupting the round");
    cancel.cancel();
    tasks.wait().await;
    tracing::info!("stopped");
    ExitCode::Success
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

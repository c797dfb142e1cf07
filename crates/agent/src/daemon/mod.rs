//! `opsagent run`: the daemon. Reads the configuration, opens the durable state (outbox, recipe
//! cache, DONEs), then runs two long-lived tasks until SIGINT/SIGTERM: the connection to the hub
//! (`connection`) and the round driver (`driver`). They talk over a channel of orders (hub →
//! driver) and through the outbox (driver → hub), so neither ever waits on the other.

pub mod config;
pub mod connection;
pub mod driver;
pub mod facts;
pub mod fetch;
pub mod outbox;
pub mod status;
pub mod store;
pub mod upgrade;
pub mod watchdog;

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
    // One agent per state directory, before anything in it is read.
    let _single = match watchdog::lock_state_dir(&config.state_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::Environment;
        }
    };
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
    if let Err(e) = watchdog::write_pidfile(&config.state_dir) {
        eprintln!("error: {e:#}");
        return ExitCode::Environment;
    }
    tracing::info!(version = crate::version::version(), hub = %config.hub_url, app_id = %config.app_id, instance_id = %config.instance_id, state_dir = %config.state_dir.display(), pending_reports = outbox.len(), "opsagent starts");

    let (orders_tx, orders_rx) = mpsc::channel(64);
    let (version_tx, version_rx) = watch::channel(None);
    let link = match connection::Link::new(config.clone(), outbox.clone(), orders_tx, version_rx) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::Invalid;
        }
    };
    let pending = upgrade::recover(&config, &outbox);
    let status = Arc::new(status::StatusFile::new(&config.state_dir, &config.hub_url));
    let mut connected = link.connected.subscribe();
    let mut connection_changes = link.connected.subscribe();
    let connection_status = status.clone();
    let confirm_config = config.clone();
    let confirm_outbox = outbox.clone();
    let driver = driver::Driver { config, outbox, files, orders: orders_rx, version_tx, status };

    let cancel = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    if let upgrade::Pending::Confirm { deadline } = pending {
        // This is a new version: it must reach the hub before the deadline, or go back.
        let stop = cancel.clone();
        tasks.spawn(async move {
            let reached = tokio::select! {
                reached = tokio::time::timeout(upgrade::until(deadline), connected.wait_for(|c| *c)) => reached,
                () = stop.cancelled() => return,
            };
            if matches!(reached, Ok(Ok(_))) {
                upgrade::confirm(&confirm_config, &confirm_outbox);
                return;
            }
            let reason = format!(
                "version {} did not reach the hub within {} s",
                crate::version::version(),
                confirm_config.upgrade_confirm.as_secs()
            );
            let error = upgrade::roll_back(&confirm_config, &reason);
            tracing::error!(error = %format!("{error:#}"), "cannot roll the upgrade back; the watchdog will retry");
        });
    }
    let stop = cancel.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                changed = connection_changes.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            let now = *connection_changes.borrow_and_update();
            connection_status.update(|s| {
                s.connected = now;
                s.connection_since = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            });
        }
    });
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

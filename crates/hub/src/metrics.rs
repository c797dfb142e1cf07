//! The hub's Prometheus metrics, as plain atomics rendered in the text exposition format. Labels
//! come from bounded sets only (statuses, refusal reasons), never ids.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The state statuses a `StateLog` may carry; anything else counts as `other`.
const STATUSES: &[&str] = &["ok", "changed", "failed", "skipped", "interrupted", "other"];

/// Why a connection was refused or closed by the hub.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    Unknown = 0,
    BadHmac = 1,
    BadFrame = 2,
    Timeout = 3,
    Slow = 4,
    Full = 5,
}

const REFUSALS: &[&str] = &["unknown_instance", "bad_hmac", "bad_frame", "timeout", "slow", "full"];

#[derive(Default)]
pub struct Metrics {
    connections: AtomicU64,
    handshakes: AtomicU64,
    state_logs: [AtomicU64; 6],
    duplicates: AtomicU64,
    round_events: AtomicU64,
    refusals: [AtomicU64; 6],
    recipes_pushed: AtomicU64,
    waits_released: AtomicU64,
}

impl Metrics {
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handshake_accepted(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn state_log(&self, status: &str) {
        let index = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len() - 1);
        self.state_logs[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn round_event(&self) {
        self.round_events.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn recipe_pushed(&self) {
        self.recipes_pushed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn wait_released(&self) {
        self.waits_released.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition; `connected` is the number of agents connected now.
    pub fn render(&self, connected: usize) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(&mut out, "opsagent_hub_connected_agents", "Agents connected now.", connected as u64);
        counter(
            &mut out,
            "opsagent_hub_connections_total",
            "WebSocket connections opened on /agent/.",
            get(&self.connections),
        );
        counter(&mut out, "opsagent_hub_handshakes_total", "Handshakes accepted.", get(&self.handshakes));
        header(&mut out, "opsagent_hub_state_logs_total", "State logs stored, by status.", "counter");
        for (status, count) in STATUSES.iter().zip(&self.state_logs) {
            let _ = writeln!(out, "opsagent_hub_state_logs_total{{status=\"{status}\"}} {}", get(count));
        }
        counter(
            &mut out,
            "opsagent_hub_duplicate_reports_total",
            "Reports received again (already stored) and acknowledged again.",
            get(&self.duplicates),
        );
        counter(
            &mut out,
            "opsagent_hub_round_events_total",
            "RoundStart and RoundEnd messages stored.",
            get(&self.round_events),
        );
        header(
            &mut out,
            "opsagent_hub_refused_connections_total",
            "Connections refused or closed by the hub, by reason.",
            "counter",
        );
        for (reason, count) in REFUSALS.iter().zip(&self.refusals) {
            let _ = writeln!(out, "opsagent_hub_refused_connections_total{{reason=\"{reason}\"}} {}", get(count));
        }
        counter(&mut out, "opsagent_hub_recipes_pushed_total", "Recipe versions created.", get(&self.recipes_pushed));
        counter(
            &mut out,
            "opsagent_hub_waits_released_total",
            "meta.wait states released (automatically or by hand).",
            get(&self.waits_released),
        );
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

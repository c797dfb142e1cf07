//! The round driver: runs the current recipe in rounds, for ever. A new recipe version preempts
//! the running round at once (the running state is interrupted, its process group killed); DONEs
//! release waits (and are kept per version on disk); after a successful round it sleeps
//! `round_interval` plus the instance's splay, after a ceased one the growing retry delay. Every
//! attempt of every state, and every round start and end, goes to the outbox. An upgrade order's
//! release is downloaded and verified beside the round and installed at its end (ARCHITECTURE.md
//! §3); the whole upgrade is carried out at once when the agent is
//! idle between rounds or blocked in a `meta.wait` (that round is interrupted and starts again
//! from the first state after the restart: released waits are kept on disk).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use opsagent_engine::{round_retry_delay, Policy, RoundResult, Status};
use opsagent_proto::{AgentMessage, Change, StateLog};
use opsagent_states::ctx::RoundCtx;
use opsagent_states::{Compiled, Module, Tail};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{instance_hash, Config};
use super::connection::Order;
use super::outbox::Outbox;
use super::store::StateFiles;
use super::upgrade;

/// The download and verification of a release, running beside a round.
type Preparing = std::pin::Pin<Box<dyn std::future::Future<Output = Option<upgrade::Prepared>> + Send>>;
use crate::round::{run_round, RoundEvent, RoundOptions, StateReport};

/// A recipe ready to run.
struct Current {
    version: u64,
    /// The wire form, kept to answer an original-style recipe that bumps the version without states.
    raw: serde_json::Value,
    states: Vec<Compiled>,
    retries: Option<u32>,
}

pub struct Driver {
    pub config: Config,
    pub outbox: Arc<Outbox>,
    pub files: StateFiles,
    pub orders: mpsc::Receiver<Order>,
    pub version_tx: watch::Sender<Option<u64>>,
    pub status: Arc<super::status::StatusFile>,
}

enum Wake {
    Order(Order),
    Elapsed,
    Stop,
}

impl Driver {
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut current = match self.files.recipe() {
            Ok(Some(raw)) => compile(&raw)
                .map_err(|e| tracing::error!(error = %e, "the cached recipe is unusable; waiting for the hub"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the cached recipe; waiting for the hub");
                None
            }
        };
        if let Some(c) = &current {
            tracing::info!(recipe_version = c.version, states = c.states.len(), "running the cached recipe");
        }
        self.version_tx.send_replace(current.as_ref().map(|c| c.version));
        let mut round_no = self.files.last_round();
        let mut failures: u32 = 0;
        let splay = self.config.splay.mul_f64((instance_hash(&self.config.instance_id) % 1000) as f64 / 1000.0);

        loop {
            let Some(recipe) = current.take() else {
                // Nothing to run: wait for a recipe.
                match self.wake(None, &cancel).await {
                    Wake::Order(Order::Update(order)) => upgrade::upgrade(&self.config, &self.outbox, order).await,
                    Wake::Order(order) => current = self.on_order_idle(order, None),
                    Wake::Elapsed => {}
                    Wake::Stop => return,
                }
                continue;
            };
            let version = recipe.version;
            let (done_tx, mut done_rx) = watch::channel(self.files.dones(version));
            round_no += 1;
            if let Err(e) = self.files.save_round(round_no) {
                tracing::error!(error = %format!("{e:#}"), "cannot persist the round counter");
            }
            self.report(|seq| AgentMessage::RoundStart {
                seq,
                recipe_version: version,
                round: round_no,
                started_at: rfc3339(SystemTime::now()),
            });
            tracing::info!(recipe_version = version, round = round_no, "round starts");
            let n_states = recipe.states.len();
            self.status.update(|s| {
                s.recipe_version = Some(version);
                s.round = Some(round_no);
                s.round_state = "running".into();
                s.states = Some(n_states);
                s.state_id = None;
                s.state_index = None;
            });

            let options = RoundOptions {
                policy: Policy::default(),
                retries_override: None,
                recipe_retries: recipe.retries,
                test: false,
                default_wait_timeout: None,
            };
            let round_cancel = cancel.child_token();
            // Fresh per round: its caches (users, groups, the once-per-round package refresh,
            // downloads) must not outlive the round, or drift made meanwhile would go unseen.
            let round_ctx = Arc::new({
                let mut ctx = RoundCtx::new(self.config.state_dir.clone());
                ctx.kill_grace = self.config.kill_grace;
                ctx.ca_files = self.config.ca_file.iter().cloned().collect();
                ctx
            });
            let mut next: Option<Current> = None;
            // An upgrade order during the round: its release is downloaded and verified meanwhile
            // (`preparing`), and installed once the round has ended.
            let mut preparing: Option<Preparing> = None;
            let mut prepared: Option<upgrade::Prepared> = None;
            let mut interrupted_for_update = false;
            let mut reload = false;
            let waiting = AtomicBool::new(false);
            let report = {
                let outbox = &self.outbox;
                let config = &self.config;
                let states = &recipe.states;
                let status = &self.status;
                let round_fut =
                    run_round(states, &round_ctx, &options, &mut done_rx, &round_cancel, |event| match event {
                        RoundEvent::Waiting { index } => {
                            waiting.store(true, Ordering::Relaxed);
                            if let Some(held) = states.get(*index).filter(|c| matches!(c.module, Module::Hold(_))) {
                                append_held_log(outbox, config, version, round_no, held);
                            }
                            let id = states.get(*index).map(|c| c.state.id.clone());
                            status.update(|s| {
                                s.state_id = id;
                                s.state_index = Some(index + 1);
                            });
                        }
                        RoundEvent::Started { index, attempt } => {
                            waiting.store(false, Ordering::Relaxed);
                            if *attempt == 1 {
                                let id = states.get(*index).map(|c| c.state.id.clone());
                                status.update(|s| {
                                    s.state_id = id;
                                    s.state_index = Some(index + 1);
                                });
                            }
                        }
                        RoundEvent::Finished(report) => {
                            waiting.store(false, Ordering::Relaxed);
                            append_state_log(outbox, config, version, round_no, report);
                        }
                    });
                tokio::pin!(round_fut);
                loop {
                    tokio::select! {
                        report = &mut round_fut => break report,
                        ready = async { preparing.as_mut().expect("polled only while preparing").await }, if preparing.is_some() => {
                            preparing = None;
                            prepared = ready;
                        }
                        order = self.orders.recv() => match order {
                            None => round_cancel.cancel(),
                            Some(Order::Recipe(raw)) => {
                                if let Some(new) = self.accept_recipe(raw, Some(&recipe)) {
                                    tracing::info!(from = version, to = new.version, "new recipe: ceasing the round");
                                    next = Some(new);
                                    round_cancel.cancel();
                                }
                            }
                            Some(Order::Done { recipe_version, id }) => self.on_done(version, recipe_version, id, &done_tx),
                            Some(Order::Reload) => {
                                tracing::info!(recipe_version = version, "reload: ceasing the round to run it again now");
                                reload = true;
                                round_cancel.cancel();
                            }
                            Some(Order::Update(order)) => {
                                if waiting.load(Ordering::Relaxed) {
                                    tracing::info!(to = %order.version, "upgrade order while waiting: interrupting the wait");
                                    interrupted_for_update = true;
                                    round_cancel.cancel();
                                } else {
                                    tracing::info!(to = %order.version, "upgrade order: downloading it now, installing it when the round ends");
                                }
                                prepared = None;
                                let (config, outbox) = (config.clone(), outbox.clone());
                                preparing = Some(Box::pin(async move { upgrade::prepare(&config, &outbox, order).await }));
                            }
                        },
                    }
                }
            };
            let result = match report.result {
                RoundResult::Succeeded => "succeeded",
                RoundResult::Failed => "failed",
                RoundResult::Interrupted => "interrupted",
            };
            self.report(|seq| AgentMessage::RoundEnd {
                seq,
                recipe_version: version,
                round: round_no,
                result: result.into(),
                duration_ms: report.duration.as_millis() as u64,
            });
            self.status.update(|s| {
                s.round_state = "idle".into();
                s.last_result = Some(result.to_string());
                s.state_id = None;
                s.state_index = None;
            });
            tracing::info!(
                recipe_version = version,
                round = round_no,
                result,
                duration_ms = report.duration.as_millis() as u64,
                "round ends"
            );
            if cancel.is_cancelled() {
                return;
            }
            if let Some(still) = preparing {
                prepared = still.await;
            }
            if let Some(ready) = prepared.take() {
                // Returns only if nothing was installed.
                upgrade::install(&self.config, &self.outbox, ready);
            }
            if (interrupted_for_update || reload) && next.is_none() {
                current = Some(recipe);
                continue;
            }
            if let Some(new) = next {
                failures = 0;
                current = Some(new);
                continue;
            }
            let pause = match report.result {
                RoundResult::Succeeded => {
                    failures = 0;
                    self.config.round_interval + splay
                }
                _ => {
                    failures += 1;
                    round_retry_delay(failures)
                }
            };
            // Sleep, but a new recipe starts at once, and DONEs are recorded.
            let deadline = tokio::time::Instant::now() + pause;
            current = Some(recipe);
            loop {
                match self.wake(Some(deadline), &cancel).await {
                    Wake::Elapsed => break,
                    Wake::Stop => return,
                    Wake::Order(Order::Done { recipe_version, id }) => {
                        self.on_done(version, recipe_version, id, &done_tx)
                    }
                    Wake::Order(Order::Update(order)) => upgrade::upgrade(&self.config, &self.outbox, order).await,
                    Wake::Order(Order::Reload) => {
                        tracing::info!(recipe_version = version, "reload: running a round now");
                        failures = 0;
                        break;
                    }
                    Wake::Order(order) => {
                        if let Some(new) = self.on_order_idle(order, current.as_ref()) {
                            failures = 0;
                            current = Some(new);
                            break;
                        }
                    }
                }
            }
        }
    }

    async fn wake(&mut self, deadline: Option<tokio::time::Instant>, cancel: &CancellationToken) -> Wake {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            order = self.orders.recv() => order.map(Wake::Order).unwrap_or(Wake::Stop),
            () = sleep => Wake::Elapsed,
            () = cancel.cancelled() => Wake::Stop,
        }
    }

    /// A recipe order outside a round: the new recipe, if it is one.
    fn on_order_idle(&mut self, order: Order, current: Option<&Current>) -> Option<Current> {
        match order {
            Order::Recipe(raw) => self.accept_recipe(raw, current),
            Order::Done { recipe_version, id } => {
                // Between rounds: keep it for when that version runs.
                let mut dones = self.files.dones(recipe_version);
                if dones.insert(id) {
                    let _ = self.files.save_dones(recipe_version, &dones);
                }
                None
            }
            // Handled by the caller, which can wait for the install.
            Order::Update(_) => None,
            // No recipe yet: nothing to run.
            Order::Reload => None,
        }
    }

    /// Validates and caches a recipe from the hub; `None` when it is the same version or unusable.
    fn accept_recipe(&self, mut raw: serde_json::Value, current: Option<&Current>) -> Option<Current> {
        let version = raw["recipe_version"].as_u64()?;
        if current.is_some_and(|c| c.version == version) {
            tracing::debug!(recipe_version = version, "same recipe version again: ignored");
            return None;
        }
        // The original's "reload": a version without states keeps the states and restarts.
        if raw["state"].is_null() {
            raw["state"] = current.map(|c| c.raw["state"].clone()).unwrap_or_else(|| serde_json::json!([]));
        }
        match compile(&raw) {
            Ok(new) => {
                if let Err(e) = self.files.save_recipe(&raw) {
                    tracing::error!(error = %format!("{e:#}"), "cannot cache the recipe: a restart without the hub would run the old one");
                }
                self.version_tx.send_replace(Some(version));
                Some(new)
            }
            Err(e) => {
                tracing::error!(recipe_version = version, error = %e, "the hub sent an invalid recipe; keeping the current one");
                None
            }
        }
    }

    fn on_done(&self, running: u64, recipe_version: u64, id: String, done_tx: &watch::Sender<BTreeSet<String>>) {
        if recipe_version != running {
            tracing::warn!(recipe_version, running, state_id = %id, "DONE for another recipe version: ignored");
            return;
        }
        let mut inserted = false;
        done_tx.send_modify(|set| inserted = set.insert(id.clone()));
        if inserted {
            if let Err(e) = self.files.save_dones(running, &done_tx.borrow()) {
                tracing::error!(error = %format!("{e:#}"), "cannot persist a DONE");
            }
        }
    }

    fn report(&self, build: impl FnOnce(u64) -> AgentMessage) {
        if let Err(e) = self.outbox.append(build) {
            tracing::error!(error = %format!("{e:#}"), "cannot store a report in the outbox: it is lost");
        }
    }
}

fn compile(raw: &serde_json::Value) -> Result<Current, String> {
    let recipe = opsagent_recipe::from_json(raw)
        .map_err(|e| e.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let version = recipe.version.ok_or("the recipe has no recipe_version")?;
    let (states, _warnings) = opsagent_states::compile(&recipe)
        .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    Ok(Current { version, raw: raw.clone(), states, retries: recipe.retries })
}

/// Stores one finished attempt as a `StateLog` (not-run states are not reported).
fn append_state_log(outbox: &Outbox, config: &Config, version: u64, round: u64, r: &StateReport) {
    if r.status == Status::NotRun {
        return;
    }
    let text = |t: &Option<Tail>| t.as_ref().filter(|t| !t.is_empty()).map(Tail::text);
    let (stdout, stderr) = (text(&r.stdout), text(&r.stderr));
    let combined = match (&stdout, &stderr) {
        (Some(o), Some(e)) => Some(format!("{o}{e}")),
        (o, e) => o.clone().or(e.clone()),
    };
    let started = SystemTime::now().checked_sub(r.duration).unwrap_or(SystemTime::now());
    let result = outbox.append(|seq| {
        AgentMessage::StateLog(Box::new(StateLog {
            instance_id: config.instance_id.clone(),
            app_id: config.app_id.clone(),
            recipe_version: version,
            id: r.id.clone(),
            state_result: matches!(r.status, Status::Ok | Status::Changed | Status::Skipped),
            state_comment: r.comment.clone(),
            state_stdout: combined,
            seq,
            round,
            attempt: r.attempt,
            status: r.status.as_str().to_string(),
            will_retry: r.will_retry,
            module: r.module.clone(),
            changes: r
                .changes
                .iter()
                .map(|c| Change {
                    action: c.action.as_str().into(),
                    target: c.target.clone(),
                    detail: c.detail.clone(),
                })
                .collect(),
            diff: r.diff.clone(),
            duration_ms: r.duration.as_millis() as u64,
            started_at: rfc3339(started),
            stdout,
            stderr,
        }))
    });
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), state_id = %r.id, "cannot store a report in the outbox: it is lost");
    }
}

/// Reports a state the hub holds (its links are not resolved yet) as `waiting`, with the reason.
fn append_held_log(outbox: &Outbox, config: &Config, version: u64, round: u64, held: &Compiled) {
    let Module::Hold(hold) = &held.module else { return };
    let result = outbox.append(|seq| {
        AgentMessage::StateLog(Box::new(StateLog {
            instance_id: config.instance_id.clone(),
            app_id: config.app_id.clone(),
            recipe_version: version,
            id: held.state.id.clone(),
            state_result: false,
            state_comment: Some(hold.reason.clone()),
            seq,
            round,
            attempt: 1,
            status: "waiting".into(),
            module: hold.module.clone().unwrap_or_else(|| held.state.module.clone()),
            started_at: rfc3339(SystemTime::now()),
            ..StateLog::default()
        }))
    });
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), state_id = %held.state.id, "cannot store a report in the outbox: it is lost");
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

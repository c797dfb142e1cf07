//! Runs one round: the `engine` decides what comes next, the `states` modules do it, and every
//! attempt is reported through a callback as it ends. Shared by `opsagent apply` and the daemon.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use opsagent_engine::{
    Action, Millis, Outcome as EngineOutcome, Policy, Round, RoundResult, Status, Step, StepKind, DEFAULT_RETRIES,
};
use opsagent_states::ctx::RoundCtx;
use opsagent_states::{Change, Compiled, Ctx, Module, StateError, Tail};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How to run a round.
#[derive(Debug, Clone)]
pub struct RoundOptions {
    pub policy: Policy,
    /// Overrides every retry count (recipe and state) when set: `apply --retries`.
    pub retries_override: Option<u32>,
    /// The recipe-level retry count.
    pub recipe_retries: Option<u32>,
    /// Dry run: check only, change nothing.
    pub test: bool,
    /// Timeout of a `meta.wait` that names none (`None`: wait until released).
    pub default_wait_timeout: Option<Duration>,
}

/// The result of one attempt at one state (or the final word on a state that was not run).
#[derive(Debug, Clone)]
pub struct StateReport {
    pub id: String,
    pub module: String,
    pub status: Status,
    pub attempt: u32,
    /// Whether another attempt follows (this one failed and will be retried).
    pub will_retry: bool,
    pub duration: Duration,
    pub changes: Vec<Change>,
    pub diff: Option<String>,
    pub comment: Option<String>,
    pub stdout: Option<Tail>,
    pub stderr: Option<Tail>,
}

/// Something a round tells its caller while it runs.
#[derive(Debug, Clone)]
pub enum RoundEvent {
    /// A state's attempt starts (for progress display).
    Started { index: usize, attempt: u32 },
    /// A wait state starts waiting for its release.
    Waiting { index: usize },
    /// An attempt ended, or a state was skipped, interrupted or not run.
    Finished(StateReport),
}

/// The round's final summary: one report per state, in order.
#[derive(Debug, Clone)]
pub struct RoundReport {
    pub result: RoundResult,
    pub states: Vec<StateReport>,
    pub duration: Duration,
}

/// Runs `states` once. `done` holds the ids of released waits (it may grow while the round runs);
/// `cancel` interrupts the round at once.
pub async fn run_round(
    states: &[Compiled],
    round_ctx: &Arc<RoundCtx>,
    options: &RoundOptions,
    done: &mut watch::Receiver<BTreeSet<String>>,
    cancel: &CancellationToken,
    mut on_event: impl FnMut(&RoundEvent),
) -> RoundReport {
    let steps: Vec<Step> = states.iter().map(|s| step_of(s, options)).collect();
    let mut round = Round::new(steps, options.policy);
    let start = Instant::now();
    let now = || Millis(start.elapsed().as_millis() as u64);
    let mut last: Vec<Option<StateReport>> = vec![None; states.len()];
    let mut announced = vec![false; states.len()];
    release_done(states, &mut round, &done.borrow());

    loop {
        let action = round.next(now());
        announce_settled(states, &round, &last, options, &mut announced, &mut on_event);
        match action {
            Action::Run { index, attempt } => {
                let compiled = &states[index];
                on_event(&RoundEvent::Started { index, attempt });
                let ctx = Ctx {
                    round: round_ctx.clone(),
                    cancel: cancel.child_token(),
                    timeout: compiled.timeout(),
                    sensitive: compiled.state.sensitive,
                };
                let began = Instant::now();
                let result = execute(&compiled.module, &ctx, options.test).await;
                let mut report = report_of(compiled, attempt, began.elapsed(), result);
                if cancel.is_cancelled() {
                    report.status = Status::Interrupted;
                    round.interrupt();
                } else {
                    let outcome = match report.status {
                        Status::Ok => EngineOutcome::Ok,
                        Status::Changed => EngineOutcome::Changed,
                        _ => EngineOutcome::Failed,
                    };
                    round.finish(index, outcome, now());
                    report.will_retry =
                        report.status == Status::Failed && round.records()[index].status == Status::NotRun;
                }
                on_event(&RoundEvent::Finished(report.clone()));
                announced[index] = !report.will_retry;
                last[index] = Some(report);
            }
            Action::Wait { index, deadline } => {
                let id = states[index].state.id.clone();
                let is_wait = matches!(states[index].module, Module::Wait(_));
                if is_wait && done.borrow().contains(&id) {
                    round.release(index);
                    continue;
                }
                on_event(&RoundEvent::Waiting { index });
                let sleep = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(start + Duration::from_millis(d.0)).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    released = done.wait_for(|set| is_wait && set.contains(&id)) => {
                        if let Ok(set) = released {
                            release_done(states, &mut round, &set);
                        } else if deadline.is_none() {
                            // Nobody can release it any more: fail instead of hanging.
                            round.interrupt();
                        }
                    }
                    () = sleep => {}
                    () = cancel.cancelled() => round.interrupt(),
                }
            }
            Action::Sleep { until } => {
                tokio::select! {
                    () = tokio::time::sleep_until(start + Duration::from_millis(until.0)) => {}
                    () = cancel.cancelled() => round.interrupt(),
                }
            }
            Action::Finished(result) => {
                let states = final_reports(states, &round, last, options);
                return RoundReport { result, states, duration: start.elapsed() };
            }
        }
    }
}

/// Releases every wait state whose id is in `done` (a release that came early counts).
fn release_done(states: &[Compiled], round: &mut Round, done: &BTreeSet<String>) {
    for (index, compiled) in states.iter().enumerate() {
        if matches!(compiled.module, Module::Wait(_)) && done.contains(&compiled.state.id) {
            round.release(index);
        }
    }
}

/// The engine's view of a state.
fn step_of(compiled: &Compiled, options: &RoundOptions) -> Step {
    let retries =
        options.retries_override.or(compiled.state.retries).or(options.recipe_retries).unwrap_or(DEFAULT_RETRIES);
    let kind = match &compiled.module {
        Module::Comment(_) => StepKind::Skip,
        Module::Wait(wait) => {
            StepKind::Wait { timeout: compiled.state.timeout.or(wait.timeout).or(options.default_wait_timeout) }
        }
        // Only a new recipe from the hub ends a hold (locally, with `apply`, it fails at once).
        Module::Hold(_) => StepKind::Wait { timeout: options.default_wait_timeout },
        _ => StepKind::Run,
    };
    Step { kind, retries }
}

/// What one attempt produced.
type AttemptResult = Result<(Status, opsagent_states::Outcome), StateError>;

/// One attempt: check, then (unless testing) apply what the check planned.
async fn execute(module: &Module, ctx: &Ctx, test: bool) -> AttemptResult {
    let plan = module.check(ctx).await?;
    if plan.is_empty() {
        return Ok((Status::Ok, plan.into()));
    }
    if test {
        return Ok((Status::Changed, plan.into()));
    }
    let outcome = module.apply(ctx, plan).await?;
    Ok((Status::Changed, outcome))
}

fn report_of(compiled: &Compiled, attempt: u32, duration: Duration, result: AttemptResult) -> StateReport {
    let mut report = StateReport {
        id: compiled.state.id.clone(),
        module: compiled.state.module.clone(),
        status: Status::Failed,
        attempt,
        will_retry: false,
        duration,
        changes: Vec::new(),
        diff: None,
        comment: None,
        stdout: None,
        stderr: None,
    };
    match result {
        Ok((status, outcome)) => {
            report.status = status;
            report.changes = outcome.changes;
            report.diff = outcome.diff;
            report.comment = outcome.comment;
            report.stdout = outcome.stdout;
            report.stderr = outcome.stderr;
        }
        Err(error) => {
            if let Some((stdout, stderr)) = error.output() {
                report.stdout = Some(stdout.clone());
                report.stderr = Some(stderr.clone());
            }
            report.status = if matches!(error, StateError::Cancelled) { Status::Interrupted } else { Status::Failed };
            report.comment = Some(error.to_string());
        }
    }
    if compiled.state.sensitive {
        // Output of a sensitive state may hold its secrets: it never leaves the machine.
        let hidden = |t: Option<Tail>| {
            t.filter(|t| !t.is_empty()).map(|_| Tail { bytes: b"(hidden: sensitive state)".to_vec(), dropped: 0 })
        };
        report.stdout = hidden(report.stdout.take());
        report.stderr = hidden(report.stderr.take());
        report.diff = None;
    }
    report
}

/// Announces states the engine settled without running them (skipped comments, released or
/// timed-out waits, an interrupted wait), as soon as it settles them.
fn announce_settled(
    states: &[Compiled],
    round: &Round,
    last: &[Option<StateReport>],
    options: &RoundOptions,
    announced: &mut [bool],
    on_event: &mut impl FnMut(&RoundEvent),
) {
    for (index, record) in round.records().iter().enumerate() {
        if announced[index] || matches!(record.status, Status::NotRun) {
            continue;
        }
        let report = match &last[index] {
            // Interrupted while waiting to retry: its last word is `interrupted`, not the failure.
            Some(failed) if failed.will_retry && record.status == Status::Interrupted => StateReport {
                status: Status::Interrupted,
                will_retry: false,
                comment: Some("interrupted while waiting to retry".into()),
                ..failed.clone()
            },
            // The attempt that settled it was reported as it ended.
            Some(_) => continue,
            None => unrun_report(&states[index], record, options),
        };
        announced[index] = true;
        on_event(&RoundEvent::Finished(report));
    }
}

/// Final reports for every state: the last attempt of those that ran, and a report for the others.
fn final_reports(
    states: &[Compiled],
    round: &Round,
    last: Vec<Option<StateReport>>,
    options: &RoundOptions,
) -> Vec<StateReport> {
    states
        .iter()
        .zip(round.records())
        .zip(last)
        .map(|((compiled, record), last)| match last {
            Some(mut report) => {
                report.status = record.status;
                report.will_retry = false;
                report
            }
            None => unrun_report(compiled, record, options),
        })
        .collect()
}

/// The report of a state that was not run by a module (comment, wait, not reached).
fn unrun_report(compiled: &Compiled, record: &opsagent_engine::Record, options: &RoundOptions) -> StateReport {
    let id = &compiled.state.id;
    let comment = match (record.status, &compiled.module) {
        (Status::Failed, Module::Wait(_)) if options.default_wait_timeout == Some(Duration::ZERO) => {
            Some(format!("wait `{id}` was not released; release it with `--done {id}`"))
        }
        (Status::Failed, Module::Wait(_)) => Some(format!("wait `{id}` was not released before its timeout")),
        (_, Module::Hold(hold)) => Some(format!("held by the hub: {}", hold.reason)),
        (Status::Skipped, Module::Comment(c)) => c.comment.clone(),
        _ => None,
    };
    StateReport {
        id: id.clone(),
        module: compiled.state.module.clone(),
        status: record.status,
        attempt: record.attempts,
        will_retry: false,
        duration: Duration::ZERO,
        changes: Vec::new(),
        diff: None,
        comment,
        stdout: None,
        stderr: None,
    }
}

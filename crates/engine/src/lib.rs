//! The round engine: the rules by which opsagent runs a recipe, as a state machine with no I/O.
//!
//! A [`Round`] runs steps (states) in order. The caller asks [`Round::next`] what to do at time
//! `now`, does it (runs a state, waits, sleeps) and feeds the result back ([`Round::finish`],
//! [`Round::release`], [`Round::interrupt`]). The engine never reads a clock, touches a file or
//! starts a process, so every rule is tested exhaustively with a fake clock (see `tests`).
//!
//! Rules (ARCHITECTURE.md §3): a failed step is retried up to `retries` times with a growing
//! delay (`retry_delay`, doubled each attempt); if it still fails the round is ceased (the rest
//! are `NotRun`), unless `keep_going`. `Skip` steps (`meta.comment`) are skipped. `Wait` steps
//! (`meta.wait`) block until released; a release that came earlier counts; an optional timeout
//! fails the wait (a wait is not retried: its timeout is its patience). [`round_retry_delay`]
//! gives the pause before a ceased round starts again.

use std::collections::BTreeSet;
use std::time::Duration;

/// A point in time, in milliseconds since an origin the caller picks (monotonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(d.as_millis().min(u64::MAX as u128) as u64))
    }

    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// How a step is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// An ordinary state: run it.
    Run,
    /// `meta.comment`: reported as skipped.
    Skip,
    /// `meta.wait`: blocks until released, failing after `timeout` if one is set.
    Wait { timeout: Option<Duration> },
}

/// One step of a round, with its resolved retry count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub retries: u32,
}

/// Round-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Delay before the first retry; doubled for each further one (2 s, 4 s, 8 s …).
    pub retry_delay: Duration,
    /// Run every step even after one has failed (each still retried).
    pub keep_going: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { retry_delay: Duration::from_secs(2), keep_going: false }
    }
}

/// Default number of retries of a failed state.
pub const DEFAULT_RETRIES: u32 = 3;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Already in the desired state.
    Ok,
    /// Repaired.
    Changed,
    Failed,
    /// `meta.comment`.
    Skipped,
    /// Cancelled while running (new recipe, shutdown).
    Interrupted,
    /// Not reached: the round was ceased or interrupted before it.
    NotRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
            Status::NotRun => "not_run",
        }
    }
}

/// The result of one attempt, as the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Changed,
    Failed,
}

/// What the caller must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run step `index` (attempt 1, 2, …), then call [`Round::finish`].
    Run { index: usize, attempt: u32 },
    /// Step `index` waits: call [`Round::release`] when released, or `next` again at `deadline`.
    Wait { index: usize, deadline: Option<Millis> },
    /// Nothing to do before `until` (a retry delay); then call `next` again.
    Sleep { until: Millis },
    /// The round is over.
    Finished(RoundResult),
}

/// How the whole round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundResult {
    /// Every step ended ok, changed or skipped.
    Succeeded,
    /// A step failed after its retries.
    Failed,
    Interrupted,
}

/// What the round recorded for one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub status: Status,
    /// Attempts made (0 for skipped, waits and steps not run).
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Ready to look at step `cursor`.
    Ready,
    /// Step `cursor` is running its `attempt`.
    Running {
        attempt: u32,
    },
    /// Step `cursor` failed attempt `attempt - 1`; run `attempt` at `until`.
    Delay {
        attempt: u32,
        until: Millis,
    },
    /// Step `cursor` (a wait) started waiting at `since`.
    Waiting {
        since: Millis,
    },
    Finished(RoundResult),
}

/// One round over a recipe's steps.
#[derive(Debug, Clone)]
pub struct Round {
    steps: Vec<Step>,
    policy: Policy,
    cursor: usize,
    phase: Phase,
    records: Vec<Record>,
    released: BTreeSet<usize>,
    failed: bool,
}

impl Round {
    pub fn new(steps: Vec<Step>, policy: Policy) -> Round {
        let records = vec![Record { status: Status::NotRun, attempts: 0 }; steps.len()];
        Round { steps, policy, cursor: 0, phase: Phase::Ready, records, released: BTreeSet::new(), failed: false }
    }

    /// What to do at `now`.
    pub fn next(&mut self, now: Millis) -> Action {
        loop {
            match self.phase {
                Phase::Finished(result) => return Action::Finished(result),
                Phase::Running { attempt } => return Action::Run { index: self.cursor, attempt },
                Phase::Delay { attempt, until } => {
                    if now < until {
                        return Action::Sleep { until };
                    }
                    self.phase = Phase::Running { attempt };
                }
                Phase::Waiting { since } => {
                    let Step { kind: StepKind::Wait { timeout }, .. } = self.steps[self.cursor] else {
                        unreachable!("only wait steps enter Waiting");
                    };
                    if self.released.contains(&self.cursor) {
                        self.record(Status::Ok, 0);
                        continue;
                    }
                    let deadline = timeout.map(|t| since.plus(t));
                    match deadline {
                        Some(deadline) if now >= deadline => self.record(Status::Failed, 0),
                        _ => return Action::Wait { index: self.cursor, deadline },
                    }
                }
                Phase::Ready => {
                    let Some(step) = self.steps.get(self.cursor) else {
                        let result = if self.failed { RoundResult::Failed } else { RoundResult::Succeeded };
                        self.phase = Phase::Finished(result);
                        continue;
                    };
                    match step.kind {
                        StepKind::Run => self.phase = Phase::Running { attempt: 1 },
                        StepKind::Skip => self.record(Status::Skipped, 0),
                        StepKind::Wait { .. } => self.phase = Phase::Waiting { since: now },
                    }
                }
            }
        }
    }

    /// The result of the attempt of step `index` that [`Action::Run`] asked for.
    pub fn finish(&mut self, index: usize, outcome: Outcome, now: Millis) {
        let Phase::Running { attempt } = self.phase else {
            return;
        };
        if index != self.cursor {
            return;
        }
        match outcome {
            Outcome::Ok => self.record(Status::Ok, attempt),
            Outcome::Changed => self.record(Status::Changed, attempt),
            Outcome::Failed if attempt <= self.steps[index].retries => {
                let delay = retry_delay(self.policy.retry_delay, attempt);
                self.phase = Phase::Delay { attempt: attempt + 1, until: now.plus(delay) };
            }
            Outcome::Failed => self.record(Status::Failed, attempt),
        }
    }

    /// Releases wait step `index` (the hub's DONE, or `--done`). An early release counts.
    pub fn release(&mut self, index: usize) {
        self.released.insert(index);
    }

    /// Ceases the round at once: a running (or retrying, or waiting) step is `Interrupted`, the
    /// rest `NotRun`.
    pub fn interrupt(&mut self) {
        match self.phase {
            Phase::Finished(_) => return,
            Phase::Running { attempt } | Phase::Delay { attempt, .. } => {
                self.records[self.cursor] = Record { status: Status::Interrupted, attempts: attempt };
            }
            Phase::Waiting { .. } => self.records[self.cursor] = Record { status: Status::Interrupted, attempts: 0 },
            Phase::Ready => {}
        }
        self.phase = Phase::Finished(RoundResult::Interrupted);
    }

    /// Every step's record so far (`NotRun` for those not reached).
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The step the round is at (the one running, waiting or about to start).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    fn record(&mut self, status: Status, attempts: u32) {
        self.records[self.cursor] = Record { status, attempts };
        if status == Status::Failed {
            self.failed = true;
            if !self.policy.keep_going {
                self.phase = Phase::Finished(RoundResult::Failed);
                return;
            }
        }
        self.cursor += 1;
        self.phase = Phase::Ready;
    }
}

/// The delay before retry number `attempt` (1-based) of a failed step: `base`, doubled each time.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
}

/// First pause before a ceased round starts again.
pub const ROUND_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Longest pause before a ceased round starts again.
pub const ROUND_RETRY_CAP: Duration = Duration::from_secs(600);

/// The pause before restarting after `consecutive_failures` ceased rounds (1-based): 5 s,
/// doubling, capped at 10 min; a successful round resets the count.
pub fn round_retry_delay(consecutive_failures: u32) -> Duration {
    retry_delay(ROUND_RETRY_DELAY, consecutive_failures.max(1)).min(ROUND_RETRY_CAP)
}

#[cfg(test)]
mod tests;

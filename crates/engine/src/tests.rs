//! Engine tests: a driver with a fake clock plays a script of outcomes through a round and
//! writes down every action, so each rule is checked against a readable trace.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

/// What the fake world does: the outcome of each attempt, in order, per step; and which waits
/// are released (and when: before the round, or after `n` ms of waiting).
#[derive(Debug, Clone, Default)]
struct World {
    outcomes: Vec<VecDeque<Outcome>>,
    released_early: Vec<usize>,
    released_after: Vec<(usize, u64)>,
    /// Interrupt when this step starts its attempt.
    interrupt_at: Option<(usize, u32)>,
}

struct Trace {
    actions: Vec<String>,
    result: RoundResult,
    records: Vec<Record>,
    now: Millis,
}

/// Each attempt takes 10 ms of fake time.
fn drive(steps: &[Step], policy: Policy, mut world: World) -> Trace {
    let mut round = Round::new(steps.to_vec(), policy);
    for &i in &world.released_early {
        round.release(i);
    }
    let mut now = Millis(0);
    let mut actions = Vec::new();
    for _ in 0..10_000 {
        let action = round.next(now);
        match action {
            Action::Run { index, attempt } => {
                actions.push(format!("run {index}#{attempt}@{}", now.0));
                if world.interrupt_at == Some((index, attempt)) {
                    round.interrupt();
                    continue;
                }
                now = now.plus(Duration::from_millis(10));
                let outcome = world.outcomes[index].pop_front().unwrap_or(Outcome::Ok);
                round.finish(index, outcome, now);
            }
            Action::Wait { index, deadline } => {
                actions.push(format!("wait {index}@{} until {:?}", now.0, deadline.map(|d| d.0)));
                match world.released_after.iter().position(|(i, _)| *i == index) {
                    Some(p) => {
                        let (_, after) = world.released_after.remove(p);
                        now = now.plus(Duration::from_millis(after));
                        round.release(index);
                    }
                    None => match deadline {
                        Some(d) => now = d,
                        None => {
                            actions.push("stuck".into());
                            round.interrupt();
                        }
                    },
                }
            }
            Action::Sleep { until } => {
                actions.push(format!("sleep {}", until.0 - now.0));
                now = until;
            }
            Action::Finished(result) => {
                return Trace { actions, result, records: round.records().to_vec(), now };
            }
        }
    }
    panic!("the round never finished: {actions:?}");
}

fn run(_index: usize) -> Step {
    Step { kind: StepKind::Run, retries: 3 }
}

fn statuses(t: &Trace) -> String {
    t.records.iter().map(|r| format!("{}/{}", r.status.as_str(), r.attempts)).collect::<Vec<_>>().join(" ")
}

fn check(
    steps: &[Step],
    policy: Policy,
    world: World,
    expect_actions: &str,
    expect_statuses: &str,
    expect: RoundResult,
) {
    let t = drive(steps, policy, world);
    assert_eq!(t.actions.join(", "), expect_actions);
    assert_eq!(statuses(&t), expect_statuses);
    assert_eq!(t.result, expect);
}

fn outcomes(per_step: &[&[Outcome]]) -> Vec<VecDeque<Outcome>> {
    per_step.iter().map(|o| o.iter().copied().collect()).collect()
}

use Outcome::{Changed, Failed};

#[test]
fn states_run_in_order() {
    let world = World { outcomes: outcomes(&[&[], &[Changed], &[]]), ..World::default() };
    check(
        &[run(0), run(1), run(2)],
        Policy::default(),
        world,
        "run 0#1@0, run 1#1@10, run 2#1@20",
        "ok/1 changed/1 ok/1",
        RoundResult::Succeeded,
    );
}

#[test]
fn failed_state_retried_with_growing_delay_then_ceased() {
    let world = World { outcomes: outcomes(&[&[], &[Failed, Failed, Failed, Failed], &[]]), ..World::default() };
    check(
        &[run(0), run(1), run(2)],
        Policy::default(),
        world,
        "run 0#1@0, run 1#1@10, sleep 2000, run 1#2@2020, sleep 4000, run 1#3@6030, sleep 8000, run 1#4@14040",
        "ok/1 failed/4 not_run/0",
        RoundResult::Failed,
    );
}

#[test]
fn retry_that_succeeds() {
    let world = World { outcomes: outcomes(&[&[Failed, Changed]]), ..World::default() };
    check(
        &[run(0)],
        Policy::default(),
        world,
        "run 0#1@0, sleep 2000, run 0#2@2010",
        "changed/2",
        RoundResult::Succeeded,
    );
}

#[test]
fn keep_going_runs_the_rest() {
    let steps = [Step { kind: StepKind::Run, retries: 0 }, run(1)];
    let world = World { outcomes: outcomes(&[&[Failed], &[]]), ..World::default() };
    check(
        &steps,
        Policy { keep_going: true, ..Policy::default() },
        world,
        "run 0#1@0, run 1#1@10",
        "failed/1 ok/1",
        RoundResult::Failed,
    );
}

#[test]
fn comment_skipped() {
    let steps = [Step { kind: StepKind::Skip, retries: 3 }, run(1)];
    check(
        &steps,
        Policy::default(),
        World { outcomes: outcomes(&[&[], &[]]), ..World::default() },
        "run 1#1@0",
        "skipped/0 ok/1",
        RoundResult::Succeeded,
    );
}

#[test]
fn wait_released_early_does_not_block() {
    let steps = [run(0), Step { kind: StepKind::Wait { timeout: None }, retries: 3 }, run(2)];
    let world = World { outcomes: outcomes(&[&[], &[], &[]]), released_early: vec![1], ..World::default() };
    check(&steps, Policy::default(), world, "run 0#1@0, run 2#1@10", "ok/1 ok/0 ok/1", RoundResult::Succeeded);
}

#[test]
fn wait_released_later() {
    let steps = [Step { kind: StepKind::Wait { timeout: None }, retries: 3 }, run(1)];
    let world = World { outcomes: outcomes(&[&[], &[]]), released_after: vec![(0, 500)], ..World::default() };
    check(&steps, Policy::default(), world, "wait 0@0 until None, run 1#1@500", "ok/0 ok/1", RoundResult::Succeeded);
}

#[test]
fn wait_times_out_and_ceases() {
    let steps = [Step { kind: StepKind::Wait { timeout: Some(Duration::from_secs(3)) }, retries: 3 }, run(1)];
    check(
        &steps,
        Policy::default(),
        World { outcomes: outcomes(&[&[], &[]]), ..World::default() },
        "wait 0@0 until Some(3000)",
        "failed/0 not_run/0",
        RoundResult::Failed,
    );
}

#[test]
fn interrupt_while_running() {
    let world = World { outcomes: outcomes(&[&[], &[], &[]]), interrupt_at: Some((1, 1)), ..World::default() };
    check(
        &[run(0), run(1), run(2)],
        Policy::default(),
        world,
        "run 0#1@0, run 1#1@10",
        "ok/1 interrupted/1 not_run/0",
        RoundResult::Interrupted,
    );
}

#[test]
fn round_retry_delay_grows_and_caps() {
    let secs: Vec<u64> = (1..=10).map(|n| round_retry_delay(n).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    assert_eq!(round_retry_delay(0).as_secs(), 5);
    assert_eq!(round_retry_delay(u32::MAX), ROUND_RETRY_CAP);
}

fn arb_step() -> impl Strategy<Value = Step> {
    let kind = prop_oneof![
        6 => Just(StepKind::Run),
        1 => Just(StepKind::Skip),
        1 => proptest::option::of(1u64..5000).prop_map(|t| StepKind::Wait { timeout: t.map(Duration::from_millis) }),
    ];
    (kind, 0u32..4).prop_map(|(kind, retries)| Step { kind, retries })
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Ok), Just(Outcome::Changed), Just(Outcome::Failed)]
}

proptest! {
    /// The round's invariants, whatever the recipe and the outcomes.
    #[test]
    fn round_invariants(
        steps in prop::collection::vec(arb_step(), 0..12),
        script in prop::collection::vec(prop::collection::vec(arb_outcome(), 0..6), 12),
        early in prop::collection::vec(0usize..12, 0..4),
        keep_going in any::<bool>(),
    ) {
        let n = steps.len();
        // Waits without timeout must be released or they block forever: release those early.
        let mut released_early: Vec<usize> = early.into_iter().filter(|i| *i < n).collect();
        released_early.extend(steps.iter().enumerate().filter(|(_, s)| s.kind == StepKind::Wait { timeout: None }).map(|(i, _)| i));
        let world = World { outcomes: script.iter().take(n).map(|o| o.iter().copied().collect()).collect(), released_early: released_early.clone(), ..World::default() };
        let policy = Policy { keep_going, ..Policy::default() };
        let t = drive(&steps, policy, world);

        // Every step has exactly one final record, and at most retries + 1 attempts.
        prop_assert_eq!(t.records.len(), n);
        let mut first_failure = None;
        for (i, (step, rec)) in steps.iter().zip(&t.records).enumerate() {
            prop_assert!(rec.attempts <= step.retries + 1);
            match step.kind {
                StepKind::Skip => prop_assert!(matches!(rec.status, Status::Skipped | Status::NotRun)),
                StepKind::Wait { .. } => {
                    prop_assert_eq!(rec.attempts, 0);
                    if released_early.contains(&i) && first_failure.is_none() {
                        prop_assert_eq!(rec.status, Status::Ok, "an early release is honoured");
                    }
                }
                StepKind::Run => {
                    if rec.status == Status::Failed {
                        prop_assert_eq!(rec.attempts, step.retries + 1, "a failure is final only after every retry");
                    }
                }
            }
            if rec.status == Status::Failed && first_failure.is_none() {
                first_failure = Some(i);
            }
            prop_assert!(rec.status != Status::Interrupted);
        }
        // A ceased round runs nothing after the failure; keep_going runs everything.
        match (first_failure, keep_going) {
            (Some(f), false) => {
                prop_assert!(t.records[f + 1..].iter().all(|r| r.status == Status::NotRun));
                prop_assert_eq!(t.result, RoundResult::Failed);
            }
            (Some(_), true) => {
                prop_assert!(t.records.iter().all(|r| r.status != Status::NotRun));
                prop_assert_eq!(t.result, RoundResult::Failed);
            }
            (None, _) => {
                prop_assert!(t.records.iter().all(|r| matches!(r.status, Status::Ok | Status::Changed | Status::Skipped)));
                prop_assert_eq!(t.result, RoundResult::Succeeded);
            }
        }
        // Retry sleeps double: 2 s, 4 s, 8 s.
        for a in &t.actions {
            if let Some(ms) = a.strip_prefix("sleep ") {
                prop_assert!(["2000", "4000", "8000"].contains(&ms));
            }
        }
        prop_assert!(t.now.0 < 1_000_000);
    }

    /// An interruption at any attempt marks exactly that step interrupted and nothing after it runs.
    #[test]
    fn interruption(n in 1usize..8, at in 0usize..8, fail_first in any::<bool>()) {
        let at = at % n;
        let steps: Vec<Step> = (0..n).map(run).collect();
        let mut script = vec![VecDeque::new(); n];
        if fail_first { script[at].push_back(Outcome::Failed); }
        let attempt = if fail_first { 2 } else { 1 };
        let world = World { outcomes: script, interrupt_at: Some((at, attempt)), ..World::default() };
        let t = drive(&steps, Policy::default(), world);
        prop_assert_eq!(t.result, RoundResult::Interrupted);
        prop_assert_eq!(t.records[at].status, Status::Interrupted);
        prop_assert!(t.records[..at].iter().all(|r| r.status == Status::Ok));
        prop_assert!(t.records[at + 1..].iter().all(|r| r.status == Status::NotRun));
    }
}

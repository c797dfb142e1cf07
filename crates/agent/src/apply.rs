//! `opsagent apply FILE`: one round of a recipe on this machine, without a hub.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opsagent_engine::{Policy, RoundResult, Status};
use opsagent_recipe::Diagnostic;
use opsagent_states::ctx::RoundCtx;
use opsagent_states::{Compiled, Tail};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::load::{load_recipe, Loaded};
use crate::printer::{human_duration, Printer};
use crate::round::{run_round, RoundEvent, RoundOptions, RoundReport, StateReport};
use crate::ExitCode;

/// What `apply` was asked to do.
#[derive(Debug, Clone)]
pub struct ApplyArgs {
    pub file: PathBuf,
    pub test: bool,
    pub keep_going: bool,
    pub json: bool,
    pub retries: Option<u32>,
    pub retry_delay: Option<Duration>,
    pub done: Vec<String>,
    /// Refuse the original's compatibility shapes (see `opsagent_recipe::strict`).
    pub strict: bool,
    pub state_dir: PathBuf,
}

pub async fn apply(args: ApplyArgs, printer: Printer) -> ExitCode {
    let options = opsagent_recipe::Options { strict: args.strict };
    let Some(Loaded { recipe, states, warnings }) = load_recipe(&args.file, options, printer, args.json) else {
        return ExitCode::Invalid;
    };
    if !args.json {
        crate::load::print_warnings(&args.file, &warnings, printer);
    }
    let unknown_done: Vec<&String> = args.done.iter().filter(|id| !states.iter().any(|s| &s.state.id == *id)).collect();
    if let Some(id) = unknown_done.first() {
        printer.err(&format!(
            "error: `--done {id}` names no state of {}\n  hint: give the id of a `meta.wait` state of the recipe",
            args.file.display()
        ));
        return ExitCode::Invalid;
    }

    let round_ctx = Arc::new(RoundCtx::new(args.state_dir.clone()));
    let options = RoundOptions {
        policy: Policy {
            keep_going: args.keep_going,
            retry_delay: args.retry_delay.unwrap_or(Policy::default().retry_delay),
        },
        retries_override: args.retries,
        recipe_retries: recipe.retries,
        test: args.test,
        // Nobody can release a wait during a local run: by default it fails at once, saying how.
        default_wait_timeout: Some(Duration::ZERO),
    };
    let (_done_tx, mut done_rx) = watch::channel(args.done.iter().cloned().collect::<BTreeSet<String>>());
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone()));

    let mut view = TextView { printer, test: args.test, json: args.json, states: &states, ticker: None };
    let report = run_round(&states, &round_ctx, &options, &mut done_rx, &cancel, |event| view.on_event(event)).await;
    view.stop_ticker();
    signals.abort();

    if args.json {
        printer.out(&json_report(recipe.version, args.test, &report, &warnings));
    } else {
        view.summary(&report);
    }
    match report.result {
        RoundResult::Succeeded => ExitCode::Success,
        RoundResult::Failed => ExitCode::Failure,
        RoundResult::Interrupted => ExitCode::Interrupted,
    }
}

async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
}

/// Prints the round as it goes, one line per state.
struct TextView<'a> {
    printer: Printer,
    test: bool,
    json: bool,
    states: &'a [Compiled],
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl TextView<'_> {
    fn on_event(&mut self, event: &RoundEvent) {
        if self.json {
            return;
        }
        match event {
            RoundEvent::Started { index, attempt } => {
                self.stop_ticker();
                if self.printer.progress {
                    let state = &self.states[*index].state;
                    let label = format!(
                        "running {} `{}`{}",
                        state.module,
                        state.id,
                        if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() }
                    );
                    self.ticker = Some(tokio::spawn(ticker(self.printer, label)));
                }
            }
            RoundEvent::Waiting { index } => {
                self.stop_ticker();
                let id = &self.states[*index].state.id;
                self.printer.err(&format!(
                    "{}  meta.wait      {id}: waiting to be released (`--done {id}`)",
                    self.printer.paint("     waiting", "36")
                ));
            }
            RoundEvent::Finished(report) => {
                self.stop_ticker();
                if report.will_retry {
                    let why = report.comment.as_deref().unwrap_or("failed");
                    self.printer.err(&format!(
                        "{}  {} `{}`: attempt {} failed: {why}; retrying",
                        self.printer.paint("       retry", "33"),
                        report.module,
                        report.id,
                        report.attempt
                    ));
                    return;
                }
                self.print_state(report);
            }
        }
    }

    fn stop_ticker(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
            self.printer.clear_progress();
        }
    }

    fn print_state(&self, r: &StateReport) {
        let p = self.printer;
        let mut line = format!("{}  {:<14} {}", p.status(r.status, self.test), r.module, r.id);
        if !matches!(r.status, Status::Skipped | Status::NotRun) {
            line.push_str(&format!("  {}", p.paint(&human_duration(r.duration), "2")));
        }
        if r.attempt > 1 {
            line.push_str(&format!(" ({} attempts)", r.attempt));
        }
        p.out(&line);
        let indent = " ".repeat(14);
        if matches!(r.status, Status::Changed | Status::Failed | Status::Interrupted) {
            for c in &r.changes {
                p.out(&format!("{indent}{} {c}", if self.test { "would" } else { "-" }));
            }
            if let Some(diff) = &r.diff {
                for l in diff.lines() {
                    let painted = match l.chars().next() {
                        Some('+') if !l.starts_with("+++") => p.paint(l, "32"),
                        Some('-') if !l.starts_with("---") => p.paint(l, "31"),
                        Some('@') => p.paint(l, "36"),
                        _ => l.to_string(),
                    };
                    p.out(&format!("{indent}{painted}"));
                }
            }
            if r.status != Status::Changed {
                if let Some(comment) = &r.comment {
                    p.out(&format!("{indent}{}: {comment}", p.paint("error", "31;1")));
                }
            }
            for (name, tail) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                if let Some(tail) = tail.as_ref().filter(|t| !t.is_empty()) {
                    p.out(&format!("{indent}{name}:"));
                    let text = tail.text();
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(20);
                    if from > 0 {
                        p.out(&format!("{indent}  [{from} earlier lines]"));
                    }
                    for l in &lines[from..] {
                        p.out(&format!("{indent}  {l}"));
                    }
                }
            }
        } else if r.status == Status::Failed || (r.status == Status::Skipped && r.comment.is_some()) {
            if let Some(comment) = &r.comment {
                p.out(&format!("{indent}{}", p.paint(comment, "2")));
            }
        }
    }

    fn summary(&self, report: &RoundReport) {
        for r in report.states.iter().filter(|r| r.status == Status::NotRun) {
            self.print_state(r);
        }
        let count = |s: Status| report.states.iter().filter(|r| r.status == s).count();
        let mut parts = Vec::new();
        for (status, word) in [
            (Status::Ok, "ok"),
            (Status::Changed, if self.test { "would change" } else { "changed" }),
            (Status::Failed, "failed"),
            (Status::Skipped, "skipped"),
            (Status::Interrupted, "interrupted"),
            (Status::NotRun, "not run"),
        ] {
            let n = count(status);
            if n > 0 || matches!(status, Status::Ok | Status::Changed) {
                parts.push(format!("{n} {word}"));
            }
        }
        let verdict = match report.result {
            RoundResult::Succeeded if self.test => self.printer.paint("test round done", "32"),
            RoundResult::Succeeded => self.printer.paint("round succeeded", "32;1"),
            RoundResult::Failed => self.printer.paint("round failed", "31;1"),
            RoundResult::Interrupted => self.printer.paint("round interrupted", "31;1"),
        };
        self.printer.out(&format!("\n{verdict} in {}: {}", human_duration(report.duration), parts.join(", ")));
        if report.result == RoundResult::Failed && count(Status::NotRun) > 0 {
            self.printer
                .out("\nhint: the round ceased at the failed state; `--keep-going` runs the remaining states anyway");
        }
        if self.test {
            self.printer.out("nothing was changed (--test)");
        }
    }
}

/// Refreshes "running … 3s" on stderr after the first half second.
async fn ticker(printer: Printer, label: String) {
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        printer.show_progress(&format!("{label} {}", human_duration(Duration::from_secs(start.elapsed().as_secs()))));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    recipe_version: Option<u64>,
    test: bool,
    result: &'static str,
    duration_ms: u64,
    states: Vec<JsonState<'a>>,
    /// The recipe's warnings, as `opsagent validate --format json` lists them.
    warnings: Vec<crate::load::JsonDiagnostic>,
}

#[derive(Serialize)]
struct JsonState<'a> {
    id: &'a str,
    module: &'a str,
    status: &'static str,
    attempts: u32,
    duration_ms: u64,
    changes: Vec<JsonChange<'a>>,
    diff: Option<&'a str>,
    comment: Option<&'a str>,
    stdout: Option<String>,
    stderr: Option<String>,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    action: &'static str,
    target: &'a str,
    detail: &'a str,
}

/// The `--format json` document.
fn json_report(version: Option<u64>, test: bool, report: &RoundReport, warnings: &[Diagnostic]) -> String {
    let result = match report.result {
        RoundResult::Succeeded => "succeeded",
        RoundResult::Failed => "failed",
        RoundResult::Interrupted => "interrupted",
    };
    let doc = JsonReport {
        recipe_version: version,
        test,
        result,
        duration_ms: report.duration.as_millis() as u64,
        states: report
            .states
            .iter()
            .map(|r| JsonState {
                id: &r.id,
                module: &r.module,
                status: r.status.as_str(),
                attempts: r.attempt,
                duration_ms: r.duration.as_millis() as u64,
                changes: r
                    .changes
                    .iter()
                    .map(|c| JsonChange { action: c.action.as_str(), target: &c.target, detail: &c.detail })
                    .collect(),
                diff: r.diff.as_deref(),
                comment: r.comment.as_deref(),
                stdout: r.stdout.as_ref().map(Tail::text),
                stderr: r.stderr.as_ref().map(Tail::text),
            })
            .collect(),
        warnings: warnings.iter().map(crate::load::json_diagnostic).collect(),
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The state directory used when none is given.
pub fn default_state_dir() -> &'static Path {
    Path::new("/var/lib/madeira")
}

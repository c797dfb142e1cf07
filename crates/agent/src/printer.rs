//! All terminal output of the CLI: colours (only on a terminal, never with `NO_COLOR`,
//! `TERM=dumb` or JSON), the per-state lines of `apply`, and a progress line on stderr for
//! states that take a while.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use opsagent_engine::Status;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Writes data to stdout and messages to stderr.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub color: bool,
    /// Whether stderr is a terminal that may show a transient progress line.
    pub progress: bool,
}

impl Printer {
    pub fn new(choice: ColorChoice, json: bool) -> Printer {
        let env_allows =
            std::env::var_os("NO_COLOR").is_none() && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true);
        let color = !json
            && match choice {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => env_allows && std::io::stdout().is_terminal(),
            };
        let progress = !json
            && std::io::stderr().is_terminal()
            && std::env::var_os("OPSAGENT_NO_PROGRESS").is_none()
            && env_allows;
        Printer { color, progress }
    }

    pub fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn status(&self, status: Status, test: bool) -> String {
        let word = match (status, test) {
            (Status::Changed, true) => "would change",
            (status, _) => status.as_str(),
        };
        let padded = format!("{word:>12}");
        let code = match status {
            Status::Ok => "32",
            Status::Changed => "33",
            Status::Failed | Status::Interrupted => "31;1",
            Status::Skipped | Status::NotRun => "2",
        };
        self.paint(&padded, code)
    }

    /// Prints a line to stdout, ignoring a closed pipe (the reader went away: not our error).
    pub fn out(&self, line: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
    }

    /// Prints a message to stderr.
    pub fn err(&self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }

    /// Shows or refreshes the transient progress line.
    pub fn show_progress(&self, text: &str) {
        if self.progress {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{text}");
            let _ = stderr.flush();
        }
    }

    pub fn clear_progress(&self) {
        if self.progress {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

/// `1ms`, `2.4s`, `3m05s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10 {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

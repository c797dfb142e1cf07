//! `opsagent`: the agent that keeps an instance in the state its recipe declares.
//!
//! Subcommands: `apply` runs one round of a recipe file locally; `validate` checks recipe files;
//! `run` is the daemon; `watchdog` (cron, every minute) restarts it and finishes interrupted upgrades;
//! `status` shows what the daemon on this machine is doing.
//! The flow of `apply`: `load` (recipe → compiled states) → `round` (engine + states) →
//! `apply` (text or JSON report). Exit codes: 0 success, 1 a state failed / a recipe is invalid
//! (`validate`), 2 invalid input (nothing ran), 3 environment or internal failure, 130 interrupted.

mod apply;
mod daemon;
mod load;
mod printer;
mod round;
mod version;

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::printer::{ColorChoice, Printer};

#[derive(Debug, Parser)]
#[command(name = "opsagent", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("OPSAGENT_COMMIT"), ")"), about = "Keeps this machine in the state its recipe declares")]
struct Cli {
    /// When to colour the output
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one round of a recipe on this machine, without a hub
    Apply {
        /// The recipe (YAML, or the original's JSON)
        file: PathBuf,
        /// Dry run: show what would change, change nothing
        #[arg(long)]
        test: bool,
        /// Run every state even after one has failed (each still retried)
        #[arg(long)]
        keep_going: bool,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Same as `--format json`
        #[arg(long)]
        json: bool,
        /// Retries of a failed state, overriding the recipe's (default 3)
        #[arg(long, value_name = "N")]
        retries: Option<u32>,
        /// Seconds before the first retry, doubled for each further one (default 2)
        #[arg(long, value_name = "SECONDS")]
        retry_delay: Option<f64>,
        /// Release the `meta.wait` state with this id (repeatable)
        #[arg(long, value_name = "ID")]
        done: Vec<String>,
        /// Refuse what is accepted only for compatibility with the original: unknown parameters,
        /// parameter and module aliases, missing or repeated state ids, the original's value shapes
        #[arg(long)]
        strict: bool,
        /// Where the agent keeps generated files (the default working directory of commands is its `tmp`)
        #[arg(long, value_name = "DIR", env = "OPSAGENT_STATE_DIR", default_value = apply::default_state_dir().as_os_str())]
        state_dir: PathBuf,
    },
    /// Run the agent: connect to the hub and keep this machine in the state of its recipe
    Run {
        /// The configuration file (TOML)
        #[arg(long, value_name = "FILE", env = "OPSAGENT_CONFIG", default_value = daemon::config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Overrides the configuration's `state_dir`
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Restart a dead agent and finish or roll back an interrupted upgrade (cron runs it every minute)
    Watchdog {
        /// The configuration file (TOML)
        #[arg(long, value_name = "FILE", env = "OPSAGENT_CONFIG", default_value = daemon::config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show the agent on this machine: version, hub connection, current round and state, pending upgrade
    Status {
        /// The configuration file (TOML)
        #[arg(long, value_name = "FILE", env = "OPSAGENT_CONFIG", default_value = daemon::config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Check recipe files and list every problem
    Validate {
        /// The recipe files
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Same as `--format json`
        #[arg(long)]
        json: bool,
        /// Refuse what is accepted only for compatibility with the original: unknown parameters,
        /// parameter and module aliases, missing or repeated state ids, the original's value shapes
        #[arg(long)]
        strict: bool,
    },
}

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    /// Ran, and the answer is no: a state failed, a recipe is invalid (`validate`).
    Failure = 1,
    /// Invalid arguments or recipe: nothing ran.
    Invalid = 2,
    /// Environment or internal failure.
    Environment = 3,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted = 130,
}

fn main() -> std::process::ExitCode {
    // `--version` shows the version slot (see `version.rs`), which a build may have had patched.
    let shown: &'static str =
        Box::leak(format!("{} ({})", version::version(), env!("OPSAGENT_COMMIT")).into_boxed_str());
    let cli = match Cli::from_arg_matches(&Cli::command().version(shown).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::Apply { file, test, keep_going, format, json, retries, retry_delay, done, strict, state_dir } => {
            let json = json || format == Format::Json;
            let printer = Printer::new(cli.color, json);
            let retry_delay = match retry_delay.map(Duration::try_from_secs_f64).transpose() {
                Ok(d) => d,
                Err(_) => {
                    printer.err("error: `--retry-delay` must be a non-negative number of seconds");
                    return std::process::ExitCode::from(ExitCode::Invalid as u8);
                }
            };
            let args = apply::ApplyArgs { file, test, keep_going, json, retries, retry_delay, done, strict, state_dir };
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    printer.err(&format!("error: cannot start the async runtime: {e}"));
                    return std::process::ExitCode::from(ExitCode::Environment as u8);
                }
            };
            runtime.block_on(apply::apply(args, printer))
        }
        Command::Run { config, state_dir } => {
            init_logging();
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return std::process::ExitCode::from(ExitCode::Environment as u8);
                }
            };
            runtime.block_on(daemon::run(&config, state_dir.as_deref()))
        }
        Command::Status { config, json } => {
            let loaded = daemon::config::load(&config);
            match loaded.config {
                Ok(config) => {
                    if daemon::status::show(&config, json) {
                        ExitCode::Success
                    } else {
                        ExitCode::Failure
                    }
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    ExitCode::Invalid
                }
            }
        }
        Command::Watchdog { config } => {
            init_logging();
            watchdog(&config)
        }
        Command::Validate { files, format, json, strict } => {
            let json = json || format == Format::Json;
            validate(&files, opsagent_recipe::Options { strict }, Printer::new(cli.color, json), json)
        }
    };
    std::process::ExitCode::from(code as u8)
}

/// `opsagent watchdog`: 0 all well or repaired, 2 bad configuration, 3 could not repair.
fn watchdog(config_path: &std::path::Path) -> ExitCode {
    let loaded = daemon::config::load(config_path);
    let config = match loaded.config {
        Ok(config) => config,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::Invalid;
        }
    };
    match daemon::watchdog::run(&config, config_path) {
        Ok(_) => ExitCode::Success,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::Environment
        }
    }
}

/// Logs to stderr; `OPSAGENT_LOG` takes `RUST_LOG` syntax (default `info`), and
/// `OPSAGENT_LOG_FORMAT=json` writes one JSON object a line (for log shippers).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("OPSAGENT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let _ = builder.json().with_current_span(true).with_span_list(false).try_init();
    } else {
        let _ = builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_target(false).try_init();
    }
}

/// `opsagent validate`: 0 all valid (warnings or not), 1 some invalid, 2 some unreadable.
fn validate(files: &[PathBuf], options: opsagent_recipe::Options, printer: Printer, json: bool) -> ExitCode {
    let mut code = ExitCode::Success;
    let mut reports = Vec::new();
    for file in files {
        match load::read_recipe(file, options) {
            Ok(loaded) => {
                if json {
                    reports.push(load::valid_file_report(file, &loaded));
                } else {
                    load::print_warnings(file, &loaded.warnings, printer);
                    let n = loaded.warnings.len();
                    let warnings = match n {
                        0 => String::new(),
                        1 => ", 1 warning".to_string(),
                        n => format!(", {n} warnings"),
                    };
                    printer.out(&format!(
                        "{} {}: {} states{warnings}",
                        printer.paint("valid", "32;1"),
                        file.display(),
                        loaded.states.len()
                    ));
                }
            }
            Err(error) => {
                let this =
                    if matches!(error, load::LoadError::Unreadable(_)) { ExitCode::Invalid } else { ExitCode::Failure };
                if this == ExitCode::Invalid || code == ExitCode::Success {
                    code = this;
                }
                if json {
                    reports.push(load::file_report(file, &error));
                } else {
                    load::print_load_error(file, &error, printer);
                }
            }
        }
    }
    if json {
        printer.out(&serde_json::to_string_pretty(&serde_json::json!({ "files": reports })).unwrap_or_default());
    }
    code
}

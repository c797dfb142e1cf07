//! The state modules of opsagent and what they share.
//!
//! A module (`modules/<family>_<name>.rs`, e.g. `linux_file.rs` for `linux.file`) has the same
//! small contract everywhere (ARCHITECTURE.md §2):
//! - `from_params` reads and validates its parameters when the recipe loads, reporting every
//!   problem as a [`Diagnostic`];
//! - `check` compares the machine with the desired state and returns a [`Plan`] — read-only;
//!   an empty plan means "already fine", and a failure to look is an error, never "fine";
//! - `apply` carries out the plan and returns an [`Outcome`].
//!
//! [`compile`] turns a [`Recipe`] into [`Compiled`] states (every error of every state at once;
//! what is accepted only for compatibility with the original — unknown parameters, aliases, the
//! original's value shapes — comes back as warnings); [`compile_strict`] refuses those too;
//! [`Module`] dispatches the contract to the module. Files are written only by
//! [`fsutil::write_atomic`], processes run only through [`process::run`] (own process group,
//! timeout and cancellation kill the whole group). This crate never decides round order or
//! retries: that is the `engine`'s job.

pub mod checksum;
pub mod ctx;
pub mod diff;
pub mod fetch;
pub mod fsutil;
pub mod http;
pub mod modules;
pub mod process;
pub mod providers;
pub mod watch;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use opsagent_recipe::{Diagnostic, Kind, Recipe, State};

pub use ctx::Ctx;
pub use modules::Module;
pub use process::Tail;

/// A state ready to run: its recipe entry and its validated module.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub state: State,
    pub module: Module,
}

impl Compiled {
    /// The state's timeout: the recipe's override, else the module's default.
    pub fn timeout(&self) -> Duration {
        self.state.timeout.or_else(|| self.module.own_timeout()).unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// Timeout of a state whose module and recipe name none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Validates every state's parameters. On failure, every error of every state is listed, in
/// state order (warnings after them); on success, the warnings come with the states.
pub fn compile(recipe: &Recipe) -> Result<(Vec<Compiled>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut states = Vec::with_capacity(recipe.states.len());
    let mut errors = Vec::new();
    let mut warnings = recipe.warnings.clone();
    for state in &recipe.states {
        match Module::from_state(state) {
            Ok((module, w)) => {
                warnings.extend(w);
                // The module holds what it read; the parameter tree is not kept twice.
                let state = state.clone_without_params();
                states.push(Compiled { state, module });
            }
            Err(diagnostics) => {
                for d in diagnostics {
                    if d.is_error() {
                        errors.push(d);
                    } else {
                        warnings.push(d);
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok((states, warnings))
    } else {
        errors.extend(warnings);
        Err(errors)
    }
}

/// [`compile`] in strict mode: the compatibility warnings of the recipe and of every state's
/// parameters ([`Diagnostic::is_compat_warning`]: unknown parameters, aliases, missing and
/// repeated ids, the original's value shapes) are errors. Other warnings stay warnings.
pub fn compile_strict(recipe: &Recipe) -> Result<(Vec<Compiled>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let (states, diagnostics) = match compile(recipe) {
        Ok((states, warnings)) => (Some(states), warnings),
        Err(diagnostics) => (None, diagnostics),
    };
    let mut diagnostics = opsagent_recipe::strict(diagnostics);
    match states {
        Some(states) if !diagnostics.iter().any(Diagnostic::is_error) => Ok((states, diagnostics)),
        _ => {
            diagnostics.sort_by_key(|d| (!d.is_error(), d.state.as_ref().map(|s| s.number).unwrap_or(0)));
            Err(diagnostics)
        }
    }
}

/// The diagnostic for a module of the original's table that is not implemented yet.
pub fn not_yet_supported(state: &State) -> Diagnostic {
    Diagnostic::error(
        Kind::NotYetSupported,
        format!("module `{}` is not yet supported by this version of opsagent", state.module),
    )
    .state(state.state_ref())
    .at(state.pos)
    .with_hint(format!(
        "it is a module of the original VisualOps table; the modules supported now are: {}",
        modules::SUPPORTED.join(", ")
    ))
}

/// What a change does, for reports and JSON (`as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Remove,
    Chmod,
    Chown,
    Run,
    Start,
    Restart,
    Reload,
    Enable,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Remove => "remove",
            Action::Chmod => "chmod",
            Action::Chown => "chown",
            Action::Run => "run",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Reload => "reload",
            Action::Enable => "enable",
        }
    }
}

/// One change that `check` found needed (or `apply` made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    /// What it acts on: a path, a command.
    pub target: String,
    /// A short description, e.g. `0600 -> 0644`.
    pub detail: String,
}

impl Change {
    pub fn new(action: Action, target: impl Into<String>, detail: impl Into<String>) -> Change {
        Change { action, target: target.into(), detail: detail.into() }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.as_str(), self.target)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// What `check` found: the changes needed (none means the state is already fine) and, for
/// file contents, a unified diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub diff: Option<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changes: Vec<Change>,
    pub diff: Option<String>,
    pub comment: Option<String>,
    pub stdout: Option<Tail>,
    pub stderr: Option<Tail>,
}

impl From<Plan> for Outcome {
    fn from(plan: Plan) -> Outcome {
        Outcome { changes: plan.changes, diff: plan.diff, ..Outcome::default() }
    }
}

/// Why a state could not be checked or applied.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("user `{0}` does not exist")]
    UnknownUser(String),
    #[error("group `{0}` does not exist")]
    UnknownGroup(String),
    #[error("`{}` {problem}", path.display())]
    Conflict { path: PathBuf, problem: String },
    #[error("the command {termination}")]
    Command { termination: process::Termination, stdout: Tail, stderr: Tail },
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// A wrapped tool (puppet, chef) ran and reported failure; `command` is what it was asked to do
    /// (without its arguments, which may hold secrets).
    #[error("`{command}` {problem}")]
    ToolFailed { command: String, problem: String, stdout: Tail, stderr: Tail },
    #[error("`{tool}` is not installed on this machine; {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("package `{package}` {problem}")]
    Package { package: String, problem: String },
    #[error("downloading {url}: {problem}")]
    Download { url: String, problem: String },
    /// A service a module talks to does not answer (e.g. the Docker daemon).
    #[error("{what} is not running at {at}; {hint}")]
    NotRunning { what: String, at: String, hint: String },
    #[error("interrupted")]
    Cancelled,
}

impl StateError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StateError {
        let path = path.into();
        move |source| StateError::Io { op, path, source }
    }

    /// The output captured before a command failed, if any.
    pub fn output(&self) -> Option<(&Tail, &Tail)> {
        match self {
            StateError::Command { stdout, stderr, .. } | StateError::ToolFailed { stdout, stderr, .. } => {
                Some((stdout, stderr))
            }
            _ => None,
        }
    }
}

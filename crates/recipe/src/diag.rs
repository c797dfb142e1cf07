//! Diagnostics: what is wrong with a recipe, where (file, state, module, parameter, line:column),
//! and how to fix it. They travel as data (to `--json`, the hub, the dashboard) and render as text.

use std::fmt;

use crate::node::Pos;

/// Whether a diagnostic blocks the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem it is; stable names for machines (`as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Syntax,
    Shape,
    UnknownModule,
    NotYetSupported,
    MissingParameter,
    UnknownParameter,
    WrongType,
    BadValue,
    DuplicateId,
    IgnoredKey,
    /// A state without an `id`, given one from its position.
    MissingId,
    /// A module id or parameter written with the original's (or Salt's) name, read as ours.
    Alias,
    /// A value in one of the original's shapes, converted (a list where a mapping is expected,
    /// `y`/`n` booleans, `env` as one string, `cmd` as a list).
    OriginalShape,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Syntax => "syntax",
            Kind::Shape => "shape",
            Kind::UnknownModule => "unknown_module",
            Kind::NotYetSupported => "not_yet_supported",
            Kind::MissingParameter => "missing_parameter",
            Kind::UnknownParameter => "unknown_parameter",
            Kind::WrongType => "wrong_type",
            Kind::BadValue => "bad_value",
            Kind::DuplicateId => "duplicate_id",
            Kind::IgnoredKey => "ignored_key",
            Kind::MissingId => "missing_id",
            Kind::Alias => "alias",
            Kind::OriginalShape => "original_shape",
        }
    }

    /// Whether this kind marks something accepted for compatibility with the original: a warning
    /// in the default mode, an error in strict mode ([`crate::strict`]).
    pub fn is_compat(self) -> bool {
        matches!(
            self,
            Kind::UnknownParameter
                | Kind::DuplicateId
                | Kind::IgnoredKey
                | Kind::MissingId
                | Kind::Alias
                | Kind::OriginalShape
        )
    }
}

/// Which state a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateRef {
    /// 1-based position of the state in the recipe.
    pub number: usize,
    pub id: Option<String>,
    pub module: Option<String>,
}

/// One problem found in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub kind: Kind,
    /// The file, when the recipe came from one.
    pub file: Option<String>,
    pub state: Option<StateRef>,
    /// Path of the parameter inside the state, e.g. `env[2].key` or `path[0]`.
    pub param: Option<String>,
    pub pos: Option<Pos>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(kind: Kind, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            kind,
            file: None,
            state: None,
            param: None,
            pos: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(kind: Kind, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(kind, message) }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, pos: Option<Pos>) -> Diagnostic {
        self.pos = self.pos.or(pos);
        self
    }

    pub fn param(mut self, param: impl Into<String>) -> Diagnostic {
        self.param = Some(param.into());
        self
    }

    pub fn state(mut self, state: StateRef) -> Diagnostic {
        self.state = Some(state);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A warning of a compatibility kind ([`Kind::is_compat`]), which strict mode refuses.
    pub fn is_compat_warning(&self) -> bool {
        self.severity == Severity::Warning && self.kind.is_compat()
    }

    /// The location part: `file:line:col: state 3 `id` (module): parameter `p``.
    pub fn location(&self) -> String {
        let mut parts = Vec::new();
        match (&self.file, self.pos) {
            (Some(file), Some(pos)) => parts.push(format!("{file}:{pos}")),
            (Some(file), None) => parts.push(file.clone()),
            (None, Some(pos)) => parts.push(format!("line {pos}")),
            (None, None) => {}
        }
        if let Some(state) = &self.state {
            let mut s = format!("state {}", state.number);
            if let Some(id) = &state.id {
                s.push_str(&format!(" `{id}`"));
            }
            if let Some(module) = &state.module {
                s.push_str(&format!(" ({module})"));
            }
            parts.push(s);
        }
        if let Some(param) = &self.param {
            parts.push(format!("parameter `{param}`"));
        }
        parts.join(": ")
    }
}

impl fmt::Display for Diagnostic {
    /// `error: recipe.yaml:12:7: state 3 `conf` (linux.file): parameter `mode`: `rwx` is not an
    /// octal mode`, then the hint on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let location = self.location();
        if location.is_empty() {
            write!(f, "{level}: {}", self.message)?;
        } else {
            write!(f, "{level}: {location}: {}", self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest names to `wanted` among `known`, best first (for "did you mean").
pub fn suggest<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &str)> = known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&wanted.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(score, _)| *score > 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let best = scored.first().map(|s| s.0).unwrap_or(0.0);
    scored.into_iter().take_while(|(score, _)| best - score < 0.05).take(3).map(|(_, k)| k).collect()
}

/// "did you mean `a` or `b`?", or `None` when nothing is close.
pub fn did_you_mean(wanted: &str, known: &[&str]) -> Option<String> {
    let close = suggest(wanted, known.iter().copied());
    if close.is_empty() {
        return None;
    }
    let names: Vec<String> = close.iter().map(|k| format!("`{k}`")).collect();
    Some(format!("did you mean {}?", names.join(" or ")))
}

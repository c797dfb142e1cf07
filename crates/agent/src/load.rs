//! Reading a recipe file for the CLI: parse, compile every state, and print the diagnostics.

use std::path::Path;

use opsagent_recipe::{Diagnostic, Options, Recipe};
use opsagent_states::Compiled;
use serde::Serialize;

use crate::printer::Printer;

/// A recipe ready to run.
pub struct Loaded {
    pub recipe: Recipe,
    pub states: Vec<Compiled>,
    pub warnings: Vec<Diagnostic>,
}

/// Why a recipe file cannot be used.
pub enum LoadError {
    /// It could not be read at all (missing, unreadable, not UTF-8).
    Unreadable(String),
    /// It was read and has errors (listed, with any warnings after them).
    Invalid(Vec<Diagnostic>),
}

/// Reads, parses and compiles `path`. With `options.strict`, what is accepted only for
/// compatibility with the original (`Diagnostic::is_compat_warning`) is an error.
pub fn read_recipe(path: &Path, options: Options) -> Result<Loaded, LoadError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| LoadError::Unreadable(format!("cannot read `{shown}`: {e}")))?;
    // Read what can be read, then check the parameters of every readable state, so that one run
    // lists every problem of the file.
    let (mut recipe, mut diagnostics) = opsagent_recipe::parse_lenient(&text);
    drop(text);
    let compiled = opsagent_states::compile(&recipe);
    let (states, compile_diagnostics) = match compiled {
        Ok((states, warnings)) => (states, warnings),
        Err(diagnostics) => (Vec::new(), diagnostics),
    };
    // (A lenient recipe carries no warnings of its own: they are all in `diagnostics`.)
    diagnostics.extend(compile_diagnostics);
    if options.strict {
        diagnostics = opsagent_recipe::strict(diagnostics);
    }
    for d in &mut diagnostics {
        d.file = Some(shown.clone());
    }
    diagnostics.sort_by_key(|d| {
        (!d.is_error(), d.state.as_ref().map(|s| s.number).unwrap_or(0), d.pos.map(|p| (p.line, p.col)))
    });
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(LoadError::Invalid(diagnostics));
    }
    let warnings = diagnostics;
    // The modules hold what they read: the parameter trees can go (a large recipe's biggest part).
    for state in &mut recipe.states {
        state.params = Vec::new();
    }
    Ok(Loaded { recipe, states, warnings })
}

/// Like [`read_recipe`], printing the problems (as text, or as JSON on stdout) when it fails.
pub fn load_recipe(path: &Path, options: Options, printer: Printer, json: bool) -> Option<Loaded> {
    match read_recipe(path, options) {
        Ok(loaded) => Some(loaded),
        Err(error) => {
            if json {
                printer.out(&serde_json::to_string_pretty(&file_report(path, &error)).unwrap_or_default());
            } else {
                print_load_error(path, &error, printer);
            }
            None
        }
    }
}

/// Prints every warning, then a count with what to do about them.
pub fn print_warnings(path: &Path, warnings: &[Diagnostic], printer: Printer) {
    for w in warnings {
        printer.err(&render(w, printer));
    }
    let compat = warnings.iter().filter(|w| w.kind.is_compat()).count();
    if compat > 0 {
        printer.err(&format!(
            "{}: {}: {compat} warning{} about what is accepted only for compatibility with the original; fix them, or `opsagent validate --strict` refuses the recipe",
            printer.paint("warning", "33;1"),
            path.display(),
            if compat == 1 { "" } else { "s" }
        ));
    }
}

/// Prints every diagnostic, then a count.
pub fn print_load_error(path: &Path, error: &LoadError, printer: Printer) {
    match error {
        LoadError::Unreadable(message) => printer.err(&format!("{}: {message}", printer.paint("error", "31;1"))),
        LoadError::Invalid(diagnostics) => {
            for d in diagnostics {
                printer.err(&render(d, printer));
            }
            let n = diagnostics.iter().filter(|d| d.is_error()).count();
            printer.err(&format!(
                "{}: {} is invalid: {n} error{}",
                printer.paint("error", "31;1"),
                path.display(),
                if n == 1 { "" } else { "s" }
            ));
            if diagnostics.iter().any(|d| d.is_error() && d.kind.is_compat()) {
                printer.err(&format!(
                    "\n{}: without `--strict`, what the original accepted (unknown parameters, aliases, missing or repeated ids, its value shapes) is only a warning",
                    printer.paint("hint", "36")
                ));
            }
        }
    }
}

/// A diagnostic as text, with colour when the printer has it.
pub fn render(d: &Diagnostic, printer: Printer) -> String {
    let text = d.to_string();
    if !printer.color {
        return text;
    }
    text.replacen("error:", &printer.paint("error:", "31;1"), 1)
        .replacen("warning:", &printer.paint("warning:", "33;1"), 1)
        .replacen("hint:", &printer.paint("hint:", "36"), 1)
}

#[derive(Serialize)]
pub struct JsonFile {
    file: String,
    valid: bool,
    readable: bool,
    states: Option<usize>,
    diagnostics: Vec<JsonDiagnostic>,
}

/// One diagnostic in `--format json` (validate's `diagnostics`, apply's `warnings`).
#[derive(Serialize)]
pub struct JsonDiagnostic {
    severity: &'static str,
    kind: &'static str,
    state_number: Option<usize>,
    state_id: Option<String>,
    module: Option<String>,
    param: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
    hint: Option<String>,
}

pub fn json_diagnostic(d: &Diagnostic) -> JsonDiagnostic {
    JsonDiagnostic {
        severity: if d.is_error() { "error" } else { "warning" },
        kind: d.kind.as_str(),
        state_number: d.state.as_ref().map(|s| s.number),
        state_id: d.state.as_ref().and_then(|s| s.id.clone()),
        module: d.state.as_ref().and_then(|s| s.module.clone()),
        param: d.param.clone(),
        line: d.pos.map(|p| p.line),
        column: d.pos.map(|p| p.col),
        message: d.message.clone(),
        hint: d.hint.clone(),
    }
}

/// The JSON view of one file's validation.
pub fn file_report(path: &Path, result: &LoadError) -> JsonFile {
    match result {
        LoadError::Unreadable(message) => JsonFile {
            file: path.display().to_string(),
            valid: false,
            readable: false,
            states: None,
            diagnostics: vec![JsonDiagnostic {
                severity: "error",
                kind: "unreadable",
                state_number: None,
                state_id: None,
                module: None,
                param: None,
                line: None,
                column: None,
                message: message.clone(),
                hint: None,
            }],
        },
        LoadError::Invalid(diagnostics) => JsonFile {
            file: path.display().to_string(),
            valid: false,
            readable: true,
            states: None,
            diagnostics: diagnostics.iter().map(json_diagnostic).collect(),
        },
    }
}

/// The JSON view of a valid file.
pub fn valid_file_report(path: &Path, loaded: &Loaded) -> JsonFile {
    JsonFile {
        file: path.display().to_string(),
        valid: true,
        readable: true,
        states: Some(loaded.states.len()),
        diagnostics: loaded.warnings.iter().map(json_diagnostic).collect(),
    }
}

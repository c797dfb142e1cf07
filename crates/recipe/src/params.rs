//! `ParamReader`: how state modules read their parameters. Each getter accepts the shapes the
//! original sent (numbers as strings, `dict` as `[{"key", "value"}]` lists) as well as the plain
//! ones, and records a diagnostic naming the parameter path and position instead of stopping, so
//! that validation lists every problem at once.

use crate::diag::{did_you_mean, Diagnostic, Kind, StateRef};
use crate::node::{Entry, Node, Pos, Value};
use crate::State;

/// Reads one state's parameters; created by a module's `from_params`.
pub struct ParamReader<'a> {
    state: StateRef,
    entries: &'a [Entry],
    pos: Option<Pos>,
    used: Vec<bool>,
    diagnostics: Vec<Diagnostic>,
}

/// One entry of a `dict` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictEntry {
    pub key: String,
    pub value: Option<String>,
}

impl<'a> ParamReader<'a> {
    pub fn new(state: &'a State) -> ParamReader<'a> {
        ParamReader {
            state: state.state_ref(),
            entries: &state.params,
            pos: state.params_pos,
            used: vec![false; state.params.len()],
            diagnostics: Vec::new(),
        }
    }

    /// Records a problem with parameter `param`.
    pub fn report(
        &mut self,
        kind: Kind,
        param: &str,
        pos: Option<Pos>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut d = Diagnostic::error(kind, message).state(self.state.clone()).param(param).at(pos.or(self.pos));
        d.hint = hint;
        self.diagnostics.push(d);
    }

    /// The raw node of a parameter; `null` counts as absent (the original sent nulls for unset values).
    pub fn node(&mut self, name: &str) -> Option<&'a Node> {
        let index = self.entries.iter().position(|e| e.key == name)?;
        self.used[index] = true;
        let node = &self.entries[index].value;
        if matches!(node.value, Value::Null) {
            return None;
        }
        Some(node)
    }

    /// Whether the parameter is given (and not null).
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.key == name && !matches!(e.value.value, Value::Null))
    }

    pub fn required_string(&mut self, name: &str, hint: &str) -> Option<String> {
        if !self.has(name) {
            self.node(name);
            self.report(
                Kind::MissingParameter,
                name,
                None,
                format!("required parameter `{name}` is missing"),
                Some(hint.to_string()),
            );
            return None;
        }
        self.string(name)
    }

    /// A string; numbers and booleans are taken as their text.
    pub fn string(&mut self, name: &str) -> Option<String> {
        let node = self.node(name)?;
        match node.scalar_text() {
            Some(text) => Some(text),
            None => {
                self.report(Kind::WrongType, name, node.pos, format!("expected a string, found {}", node.kind()), None);
                None
            }
        }
    }

    /// A boolean; `"true"`/`"false"`/`"yes"`/`"no"` strings are accepted.
    pub fn bool(&mut self, name: &str) -> Option<bool> {
        let node = self.node(name)?;
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Some(true),
                "false" | "no" | "0" | "" => Some(false),
                _ => {
                    self.report(Kind::WrongType, name, node.pos, format!("expected true or false, found `{s}`"), None);
                    None
                }
            },
            Value::Number(n) if n == "0" || n == "1" => Some(n == "1"),
            _ => {
                self.report(
                    Kind::WrongType,
                    name,
                    node.pos,
                    format!("expected true or false, found {}", node.kind()),
                    None,
                );
                None
            }
        }
    }

    /// A non-negative whole number; `"600"` strings are accepted.
    pub fn u64(&mut self, name: &str) -> Option<u64> {
        let node = self.node(name)?;
        let parsed = node.scalar_text().and_then(|t| t.trim().parse::<u64>().ok());
        if parsed.is_none() {
            let found = node.scalar_text().map(|t| format!("`{t}`")).unwrap_or_else(|| node.kind().to_string());
            self.report(
                Kind::WrongType,
                name,
                node.pos,
                format!("expected a whole number, found {found}"),
                Some(format!("write it as a number, e.g. `{name}: 30`")),
            );
        }
        parsed
    }

    /// A file mode. Digits are always octal, as in the original (`"0644"`, `"644"` and `644` mean
    /// rw-r--r--); a YAML `0o644` is accepted too.
    pub fn mode(&mut self, name: &str) -> Option<u32> {
        let node = self.node(name)?;
        let text = node.scalar_text().unwrap_or_default();
        let digits = text.trim().trim_start_matches("0o");
        let parsed = if !digits.is_empty() && digits.len() <= 4 && digits.chars().all(|c| ('0'..='7').contains(&c)) {
            u32::from_str_radix(digits, 8).ok()
        } else {
            None
        };
        if parsed.is_none() {
            let found = node.scalar_text().map(|t| format!("`{t}`")).unwrap_or_else(|| node.kind().to_string());
            self.report(
                Kind::BadValue,
                name,
                node.pos,
                format!("{found} is not an octal mode"),
                Some("write it as a quoted octal string, e.g. \"0644\"".into()),
            );
        }
        parsed
    }

    /// A list of strings; a single string is taken as a list of one (the original's `array`).
    pub fn string_list(&mut self, name: &str) -> Option<Vec<String>> {
        let node = self.node(name)?;
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.scalar_text() {
                        Some(text) => out.push(text),
                        None => self.report(
                            Kind::WrongType,
                            &format!("{name}[{i}]"),
                            item.pos,
                            format!("expected a string, found {}", item.kind()),
                            None,
                        ),
                    }
                }
                Some(out)
            }
            _ => match node.scalar_text() {
                Some(text) => Some(vec![text]),
                None => {
                    self.report(
                        Kind::WrongType,
                        name,
                        node.pos,
                        format!("expected a list of strings, found {}", node.kind()),
                        None,
                    );
                    None
                }
            },
        }
    }

    /// A `dict` parameter: the original's `[{"key": k, "value": v}]` list (value optional) or a
    /// plain mapping, in order.
    pub fn dict(&mut self, name: &str) -> Option<Vec<DictEntry>> {
        let node = self.node(name)?;
        match &node.value {
            Value::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for entry in entries {
                    let value = match &entry.value.value {
                        Value::Null => None,
                        _ => match entry.value.scalar_text() {
                            Some(text) => Some(text),
                            None => {
                                self.report(
                                    Kind::WrongType,
                                    &format!("{name}.{}", entry.key),
                                    entry.value.pos,
                                    format!("expected a string value, found {}", entry.value.kind()),
                                    None,
                                );
                                continue;
                            }
                        },
                    };
                    out.push(DictEntry { key: entry.key.clone(), value });
                }
                Some(out)
            }
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{name}[{i}]");
                    let key = item.get("key").and_then(Node::scalar_text);
                    let value = item.get("value").and_then(|v| match v.value {
                        Value::Null => None,
                        _ => v.scalar_text(),
                    });
                    match (item.as_map(), key) {
                        (Some(_), Some(key)) if !key.is_empty() => out.push(DictEntry { key, value }),
                        (Some(_), _) => self.report(
                            Kind::WrongType,
                            &format!("{path}.key"),
                            item.pos,
                            "each entry needs a non-empty `key`",
                            Some(
                                "write entries as {\"key\": \"name\", \"value\": \"...\"}, or use a plain mapping"
                                    .into(),
                            ),
                        ),
                        (None, _) => self.report(
                            Kind::WrongType,
                            &path,
                            item.pos,
                            format!("expected a {{key, value}} entry, found {}", item.kind()),
                            Some(
                                "write entries as {\"key\": \"name\", \"value\": \"...\"}, or use a plain mapping"
                                    .into(),
                            ),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                self.report(
                    Kind::WrongType,
                    name,
                    node.pos,
                    format!("expected a mapping or a list of {{key, value}} entries, found {}", node.kind()),
                    None,
                );
                None
            }
        }
    }

    /// Ends reading: every parameter not read is unknown (an error, with the closest known names);
    /// `ignored` names are accepted for compatibility and produce a warning only.
    pub fn finish(mut self, known: &[&str], ignored: &[&str]) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let mut warnings = Vec::new();
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used || entry.key.starts_with('_') {
                continue;
            }
            if ignored.contains(&entry.key.as_str()) {
                warnings.push(
                    Diagnostic::warning(
                        Kind::IgnoredKey,
                        format!("parameter `{}` is accepted for compatibility and ignored", entry.key),
                    )
                    .state(self.state.clone())
                    .param(&entry.key)
                    .at(entry.key_pos),
                );
                continue;
            }
            let hint = did_you_mean(&entry.key, known).or_else(|| {
                Some(format!(
                    "the parameters of this module are: {}",
                    known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ))
            });
            let mut d = Diagnostic::error(Kind::UnknownParameter, format!("unknown parameter `{}`", entry.key))
                .state(self.state.clone())
                .param(&entry.key)
                .at(entry.key_pos.or(self.pos));
            d.hint = hint;
            self.diagnostics.push(d);
        }
        if self.diagnostics.is_empty() {
            Ok(warnings)
        } else {
            self.diagnostics.extend(warnings);
            Err(self.diagnostics)
        }
    }
}

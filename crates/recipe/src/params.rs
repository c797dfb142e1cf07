//! `ParamReader`: how state modules read their parameters. Each getter accepts the shapes the
//! original sent (numbers as strings, `dict` as `[{"key", "value"}]` lists, plain lists where a
//! `dict` is expected and the reverse, `y`/`n`/`on`/`off` booleans) as well as the plain ones, and
//! records a diagnostic naming the parameter path and position instead of stopping, so that
//! validation lists every problem at once.
//!
//! Names: a parameter is found under our name, under an alias of the module's entry in
//! [`crate::catalog::PARAM_ALIASES`] (`fromrepo` for `repo`), or under a spelling that differs
//! only in case, `_` or spaces (`verify_gpg`, `pool metadata size`); the last two warn
//! ([`Kind::Alias`]). A parameter nobody read is unknown: a warning with the closest known name
//! ([`Kind::UnknownParameter`]), which [`crate::strict`] turns into an error.

use crate::catalog;
use crate::diag::{did_you_mean, Diagnostic, Kind, StateRef};
use crate::node::{Entry, Node, Pos, Value};
use crate::State;

/// Reads one state's parameters; created by a module's `from_params`.
pub struct ParamReader<'a> {
    state: StateRef,
    module: String,
    entries: &'a [Entry],
    pos: Option<Pos>,
    used: Vec<bool>,
    /// The name an entry was read as, when that is not its own key (an alias or another spelling).
    read_as: Vec<Option<String>>,
    /// Errors (reported by the getters and the module).
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Parameters whose original shape was already warned about (one warning each).
    shape_warned: Vec<String>,
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
            module: state.module.clone(),
            entries: &state.params,
            pos: state.params_pos,
            used: vec![false; state.params.len()],
            read_as: vec![None; state.params.len()],
            diagnostics: Vec::new(),
            warnings: Vec::new(),
            shape_warned: Vec::new(),
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
        let param = self.written_path(param);
        let mut d = Diagnostic::error(kind, message).state(self.state.clone()).param(param).at(pos.or(self.pos));
        d.hint = hint;
        self.diagnostics.push(d);
    }

    /// A parameter path (`name`, `name[2]`, `name.key`) with the name as the recipe writes it.
    fn written_path(&self, path: &str) -> String {
        let end = path.find(['[', '.']).unwrap_or(path.len());
        let (name, rest) = path.split_at(end);
        format!("{}{rest}", self.written_name(name))
    }

    /// Records a warning about parameter `param` (never blocking, except in strict mode when
    /// `kind` is a compatibility kind).
    pub fn warn(
        &mut self,
        kind: Kind,
        param: &str,
        pos: Option<Pos>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut d = Diagnostic::warning(kind, message).state(self.state.clone()).param(param).at(pos.or(self.pos));
        d.hint = hint;
        self.warnings.push(d);
    }

    /// Warns once per parameter that its value came in one of the original's shapes.
    pub fn warn_shape(&mut self, param: &str, pos: Option<Pos>, message: impl Into<String>, hint: impl Into<String>) {
        if self.shape_warned.iter().any(|p| p == param) {
            return;
        }
        self.shape_warned.push(param.to_string());
        let written = self.written_name(param);
        self.warn(Kind::OriginalShape, &written, pos, message, Some(hint.into()));
    }

    /// The name parameter `name` is written under in the recipe (an alias, another spelling), so
    /// that diagnostics point at what the user wrote.
    fn written_name(&self, name: &str) -> String {
        let read_as = self.read_as.iter().position(|r| r.as_deref() == Some(name));
        read_as.map(|i| self.entries[i].key.clone()).unwrap_or_else(|| name.to_string())
    }

    /// The raw node of a parameter; `null` counts as absent (the original sent nulls for unset values).
    /// The parameter is found under its name, an alias, or another spelling (see the module doc).
    pub fn node(&mut self, name: &str) -> Option<&'a Node> {
        let index = self.find(name)?;
        self.used[index] = true;
        let entry = &self.entries[index];
        if entry.key != name && self.read_as[index].is_none() {
            // Warned about in `finish`, unless the module knows this spelling too.
            self.read_as[index] = Some(name.to_string());
        }
        let node = &self.entries[index].value;
        if matches!(node.value, Value::Null) {
            return None;
        }
        Some(node)
    }

    /// Whether the parameter is given (and not null), under any of its names.
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some_and(|i| !matches!(self.entries[i].value.value, Value::Null))
    }

    /// The entry holding parameter `name`: its own key first, then an alias, then another spelling.
    /// An entry already read as another parameter is not found again under its own key.
    fn find(&self, name: &str) -> Option<usize> {
        let free = |i: usize| self.read_as[i].as_deref().is_none_or(|r| r == name);
        if let Some(i) = self.entries.iter().position(|e| e.key == name) {
            return free(i).then_some(i);
        }
        let aliased = |e: &Entry| !e.key.starts_with('_') && catalog::param_alias(&self.module, &e.key) == Some(name);
        if let Some(i) = (0..self.entries.len()).find(|&i| free(i) && aliased(&self.entries[i])) {
            return Some(i);
        }
        let wanted = catalog::normalize_param(name);
        (0..self.entries.len()).find(|&i| {
            let key = &self.entries[i].key;
            free(i) && !key.starts_with('_') && catalog::normalize_param(key) == wanted
        })
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

    /// A boolean. `"true"`/`"false"`/`"yes"`/`"no"`/`1`/`0` are accepted as they are; the
    /// original's `y`/`n` and `on`/`off` (any case) too, with a warning.
    pub fn bool(&mut self, name: &str) -> Option<bool> {
        let node = self.node(name)?;
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Some(true),
                "false" | "no" | "0" | "" => Some(false),
                word @ ("y" | "on" | "n" | "off") => {
                    let value = matches!(word, "y" | "on");
                    self.warn_shape(
                        name,
                        node.pos,
                        format!("`{s}` is read as `{value}`"),
                        format!("write `{name}: {value}`"),
                    );
                    Some(value)
                }
                _ => {
                    self.report(
                        Kind::WrongType,
                        name,
                        node.pos,
                        format!("expected true or false, found `{s}`"),
                        Some(format!("write `{name}: true` or `{name}: false`")),
                    );
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
                    Some(format!("write `{name}: true` or `{name}: false`")),
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

    /// A list of strings; a single string is taken as a list of one (the original's `array`). A
    /// `{key, value}` list or a mapping (the original's `dict` shape) gives its keys, with a warning.
    pub fn string_list(&mut self, name: &str) -> Option<Vec<String>> {
        let node = self.node(name)?;
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let (Some(_), Some(key)) = (item.as_map(), item.get("key").and_then(Node::scalar_text)) {
                        let value = item.get("value").and_then(Node::scalar_text).filter(|v| !v.is_empty());
                        self.warn_dict_as_list(name, node.pos, value.is_some());
                        out.push(key);
                        continue;
                    }
                    match item.scalar_text() {
                        Some(text) => out.push(text),
                        None => self.report(
                            Kind::WrongType,
                            &format!("{name}[{i}]"),
                            item.pos,
                            format!("expected a string, found {}", item.kind()),
                            Some(format!("write `{name}` as a list of strings, e.g. `{name}: [a, b]`")),
                        ),
                    }
                }
                Some(out)
            }
            Value::Map(entries) => {
                let with_values = entries.iter().any(|e| e.value.scalar_text().is_some_and(|v| !v.is_empty()));
                self.warn_dict_as_list(name, node.pos, with_values);
                Some(entries.iter().map(|e| e.key.clone()).collect())
            }
            _ => match node.scalar_text() {
                Some(text) => Some(vec![text]),
                None => {
                    self.report(
                        Kind::WrongType,
                        name,
                        node.pos,
                        format!("expected a list of strings, found {}", node.kind()),
                        Some(format!("write `{name}` as a list of strings, e.g. `{name}: [a, b]`")),
                    );
                    None
                }
            },
        }
    }

    fn warn_dict_as_list(&mut self, name: &str, pos: Option<Pos>, with_values: bool) {
        let ignored = if with_values { " (their values are ignored)" } else { "" };
        self.warn_shape(
            name,
            pos,
            format!("`{name}` is given as `{{key, value}}` entries where a plain list is expected: their keys are read{ignored}"),
            format!("write `{name}` as a list of strings, e.g. `{name}: [a, b]`"),
        );
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
                    if let Some(text) = item.scalar_text() {
                        // A plain list where a `dict` is expected (`name: [nginx, php-fpm]`).
                        self.warn_list_as_dict(name, node.pos);
                        if !text.is_empty() {
                            out.push(DictEntry { key: text, value: None });
                        }
                        continue;
                    }
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
            Value::String(_) | Value::Number(_) => {
                // One name where a `dict` is expected (`name: nginx`).
                let text = node.scalar_text().unwrap_or_default();
                self.warn_list_as_dict(name, node.pos);
                Some(if text.is_empty() { Vec::new() } else { vec![DictEntry { key: text, value: None }] })
            }
            _ => {
                self.report(
                    Kind::WrongType,
                    name,
                    node.pos,
                    format!("expected a mapping or a list of {{key, value}} entries, found {}", node.kind()),
                    Some(format!("write `{name}` as a mapping, e.g. `{name}: {{a: \"\", b: \"\"}}`")),
                );
                None
            }
        }
    }

    fn warn_list_as_dict(&mut self, name: &str, pos: Option<Pos>) {
        self.warn_shape(
            name,
            pos,
            format!("`{name}` is given as a plain list where a mapping is expected: each item is read as a key with no value"),
            format!("write `{name}` as a mapping, e.g. `{name}: {{nginx: \"\", php-fpm: \"\"}}`"),
        );
    }

    /// An environment: a `dict` (mapping or `{key, value}` list), or the original's other shapes —
    /// one string of `KEY=VALUE` words (`"A=1 B='x y'"`) or lines, or a list of `KEY=VALUE`
    /// strings — with a warning.
    pub fn env(&mut self, name: &str) -> Option<Vec<DictEntry>> {
        let node = self.node(name)?;
        let words: Vec<String> = match &node.value {
            Value::String(text) if text.trim().is_empty() => return Some(Vec::new()),
            Value::String(text) => {
                if text.contains('\n') {
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from)
                        .collect()
                } else {
                    match split_words(text) {
                        Some(words) => words,
                        None => {
                            self.report(
                                Kind::BadValue,
                                name,
                                node.pos,
                                "a quote is not closed",
                                Some("write it as `KEY=VALUE` words, e.g. `A=1 B='two words'`".into()),
                            );
                            return None;
                        }
                    }
                }
            }
            Value::Seq(items) if items.iter().all(|i| matches!(i.value, Value::String(_))) && !items.is_empty() => {
                items.iter().filter_map(Node::scalar_text).collect()
            }
            _ => return self.dict(name),
        };
        self.warn_shape(
            name,
            node.pos,
            format!("`{name}` is given as `KEY=VALUE` text: read as {} variable(s)", words.len()),
            format!("write `{name}` as a mapping, e.g. `{name}: {{A: \"1\"}}`"),
        );
        let mut out = Vec::with_capacity(words.len());
        for word in words {
            match word.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    out.push(DictEntry { key: key.trim().to_string(), value: Some(unquote(value.trim())) })
                }
                _ => self.report(
                    Kind::BadValue,
                    name,
                    node.pos,
                    format!("`{word}` is not `KEY=VALUE`"),
                    Some("write each variable as `KEY=VALUE`".into()),
                ),
            }
        }
        Some(out)
    }

    /// Ends reading. Every parameter not read is unknown: a warning with the closest known names
    /// (an error only in strict mode, see [`crate::strict`]). `ignored` names (and the module's
    /// entries of [`catalog::IGNORED_PARAMS`]) are accepted for compatibility and ignored, with a
    /// warning. `Ok` holds the warnings; `Err` the errors, then the warnings.
    pub fn finish(mut self, known: &[&str], ignored: &[&str]) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let mut warnings = Vec::new();
        for (entry, read_as) in self.entries.iter().zip(&self.read_as) {
            let Some(ours) = read_as.as_deref().filter(|_| !known.contains(&entry.key.as_str())) else {
                continue;
            };
            let (message, hint) = if catalog::param_alias(&self.module, &entry.key) == Some(ours) {
                (
                    format!("parameter `{}` is the original's name for `{ours}`; read as `{ours}`", entry.key),
                    format!("rename it to `{ours}`"),
                )
            } else {
                (format!("parameter `{}` is read as `{ours}`", entry.key), format!("write it `{ours}`"))
            };
            warnings.push(
                Diagnostic::warning(Kind::Alias, message)
                    .state(self.state.clone())
                    .param(&entry.key)
                    .at(entry.key_pos.or(self.pos))
                    .with_hint(hint),
            );
        }
        warnings.append(&mut self.warnings);
        for (i, entry) in self.entries.iter().enumerate() {
            if self.used[i] || entry.key.starts_with('_') {
                continue;
            }
            let warning = |kind: Kind, message: String, hint: String| {
                Diagnostic::warning(kind, message)
                    .state(self.state.clone())
                    .param(&entry.key)
                    .at(entry.key_pos.or(self.pos))
                    .with_hint(hint)
            };
            if ignored.contains(&entry.key.as_str()) {
                warnings.push(warning(
                    Kind::IgnoredKey,
                    format!("parameter `{}` is accepted for compatibility and ignored", entry.key),
                    format!("remove `{}`: this version of opsagent does not use it", entry.key),
                ));
                continue;
            }
            if let Some(why) = catalog::ignored_param(&self.module, &entry.key) {
                warnings.push(warning(
                    Kind::IgnoredKey,
                    format!("parameter `{}` is accepted and ignored: {why}", entry.key),
                    format!("remove `{}`", entry.key),
                ));
                continue;
            }
            let wanted = catalog::normalize_param(&entry.key);
            let ours = catalog::param_alias(&self.module, &entry.key)
                .or_else(|| known.iter().copied().find(|k| catalog::normalize_param(k) == wanted));
            if let Some(ours) = ours.filter(|o| known.contains(o)) {
                warnings.push(warning(
                    Kind::Alias,
                    format!("parameter `{}` (another name for `{ours}`) is ignored: `{ours}` is given too", entry.key),
                    format!("remove `{}`", entry.key),
                ));
                continue;
            }
            let hint = did_you_mean(&entry.key, known).unwrap_or_else(|| {
                format!(
                    "remove it; the parameters of this module are: {}",
                    known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )
            });
            warnings.push(warning(
                Kind::UnknownParameter,
                format!("unknown parameter `{}` is ignored", entry.key),
                hint,
            ));
        }
        if self.diagnostics.is_empty() {
            Ok(warnings)
        } else {
            self.diagnostics.extend(warnings);
            Err(self.diagnostics)
        }
    }
}

/// Splits `A=1 B='x y' C="z"` into shell-like words, quotes kept for [`unquote`]; `None` when a
/// quote is not closed.
fn split_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                word.push(c);
            }
            Some(_) => word.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
                word.push(c);
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// A value without its surrounding quotes (`'x y'` → `x y`).
fn unquote(value: &str) -> String {
    for q in ['\'', '"'] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return value[1..value.len() - 1].to_string();
        }
    }
    value.to_string()
}

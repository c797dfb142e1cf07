//! The recipe model of opsagent: turns the four recipe forms — the original's wire form
//! (`{"recipe_version", "state": [...]}`), the original IDE export (`{"component": {...}}`), our
//! YAML authoring form (`version:` + `states:`) and a bare list of states — into one [`Recipe`],
//! checking its shape: module ids known, parameters a mapping, state ids unique.
//!
//! It never does I/O and knows nothing of how a module runs: module parameters are checked by
//! each module's `from_params` in the `states` crate, through [`ParamReader`]. Every problem is a
//! [`Diagnostic`] naming the state, module, parameter and line:column, with a hint.
//!
//! **Compatibility with the original.** The original ignored what it did not know, so its recipes
//! come in shapes ours would refuse. They are accepted, each with a warning of a compatibility
//! kind ([`Kind::is_compat`]):
//! - a state without an `id` is named from its 1-based position, `state-N` (`state-N-2`… should
//!   an explicit id already be `state-N`) — [`Kind::MissingId`];
//! - a repeated id: the later states are renamed `{id}#{position}` in the [`Recipe`], so that the
//!   agent and the hub (both read recipes with this crate) name them alike in reports, DONEs and
//!   waits — [`Kind::DuplicateId`];
//! - older or spaced module ids (`linux lvm pv`, `linux pv`) and parameter aliases per module
//!   ([`catalog::PARAM_ALIASES`]: `fromrepo`, `use_utc`, `dev`…) — [`Kind::Alias`];
//! - values in the original's shapes (see [`ParamReader`]) — [`Kind::OriginalShape`];
//! - unknown parameters (with "did you mean") and state keys — [`Kind::UnknownParameter`],
//!   [`Kind::IgnoredKey`].
//!
//! **Strict mode** refuses all of these: [`strict`] turns the compatibility warnings of a list of
//! diagnostics into errors ([`parse_str_with`] with [`Options`]`{ strict: true }` does it while
//! parsing; `opsagent_states::compile_strict` after checking the parameters too).
//!
//! Start reading at [`parse_str`].

pub mod catalog;
pub mod diag;
pub mod node;
pub mod params;

use std::time::Duration;

pub use diag::{Diagnostic, Kind, Severity, StateRef};
pub use node::{Entry, Node, Pos, Value};
pub use params::{DictEntry, ParamReader};

/// A recipe whose shape is valid: an ordered list of states with unique ids and known modules.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// `recipe_version` (wire form) or `version` (YAML); `None` for a local recipe without one.
    pub version: Option<u64>,
    /// Recipe-level retry count for failed states, overriding the engine's default.
    pub retries: Option<u32>,
    pub states: Vec<State>,
    /// Warnings found while reading (ignored keys); never blocking.
    pub warnings: Vec<Diagnostic>,
}

/// One state of a recipe, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// 1-based position in the recipe.
    pub number: usize,
    pub id: String,
    pub module: String,
    /// The `parameter` mapping, in document order.
    pub params: Vec<Entry>,
    pub params_pos: Option<Pos>,
    pub pos: Option<Pos>,
    /// Per-state overrides of the engine's defaults (our extension; the original had none).
    pub retries: Option<u32>,
    pub timeout: Option<Duration>,
    /// Hide this state's contents and output in diffs, logs and reports.
    pub sensitive: bool,
}

impl State {
    /// A copy without the parameter tree (which the compiled module has read).
    pub fn clone_without_params(&self) -> State {
        State {
            number: self.number,
            id: self.id.clone(),
            module: self.module.clone(),
            params: Vec::new(),
            params_pos: self.params_pos,
            pos: self.pos,
            retries: self.retries,
            timeout: self.timeout,
            sensitive: self.sensitive,
        }
    }

    pub fn state_ref(&self) -> StateRef {
        StateRef { number: self.number, id: Some(self.id.clone()), module: Some(self.module.clone()) }
    }
}

/// A recipe that could not be read; `diagnostics` lists every problem (errors, then warnings).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the recipe is invalid ({} error(s))", self.error_count())]
pub struct RecipeError {
    pub diagnostics: Vec<Diagnostic>,
}

impl RecipeError {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Sets the file name on every diagnostic.
    pub fn in_file(mut self, file: &str) -> RecipeError {
        for d in &mut self.diagnostics {
            d.file = Some(file.to_string());
        }
        self
    }
}

/// Parses a recipe file's text (YAML, or JSON, which YAML contains).
pub fn parse_str(text: &str) -> Result<Recipe, RecipeError> {
    parse_str_with(text, Options::default())
}

/// How a recipe is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Refuse what is accepted only for compatibility with the original (see the crate doc):
    /// its warnings become errors.
    pub strict: bool,
}

/// [`parse_str`], with options.
pub fn parse_str_with(text: &str, options: Options) -> Result<Recipe, RecipeError> {
    let (recipe, diagnostics) = parse_lenient(text);
    finish(recipe, apply_options(diagnostics, options))
}

/// Strict mode: the compatibility warnings ([`Diagnostic::is_compat_warning`]) become errors;
/// every other diagnostic is kept as it is, in order.
pub fn strict(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics
        .into_iter()
        .map(|mut d| {
            if d.is_compat_warning() {
                d.severity = Severity::Error;
            }
            d
        })
        .collect()
}

fn apply_options(diagnostics: Vec<Diagnostic>, options: Options) -> Vec<Diagnostic> {
    if options.strict {
        strict(diagnostics)
    } else {
        diagnostics
    }
}

/// For validation only: reads what can be read, so that the states crate can check the
/// parameters of every readable state even when others are broken. The recipe holds the states
/// whose id and module are usable; it must not run unless `diagnostics` has no error.
pub fn parse_lenient(text: &str) -> (Recipe, Vec<Diagnostic>) {
    match parse_root(text) {
        Ok(mut root) => {
            let mut reader = Reader::default();
            let recipe = reader.read_document(&mut root);
            (recipe, reader.diagnostics)
        }
        Err(e) => (Recipe { version: None, retries: None, states: Vec::new(), warnings: Vec::new() }, e.diagnostics),
    }
}

fn parse_root(text: &str) -> Result<Node, RecipeError> {
    let root = match node::parse_yaml(text) {
        Ok(root) => root,
        Err(yaml_error) => match serde_json::from_str::<serde_json::Value>(text) {
            // YAML 1.2 reads nearly all JSON; the few documents it refuses still parse as JSON,
            // without positions.
            Ok(json) => Node::from_json(&json),
            Err(_) => {
                let d = Diagnostic::error(Kind::Syntax, format!("cannot parse the recipe: {}", yaml_error.message))
                    .at(yaml_error.pos)
                    .with_hint("a recipe is YAML or JSON; check the brackets, quotes and indentation near this line");
                return Err(RecipeError { diagnostics: vec![d] });
            }
        },
    };
    Ok(root)
}

/// Reads a recipe that arrived as JSON (the wire form of `RecipeMetadata`).
pub fn from_json(value: &serde_json::Value) -> Result<Recipe, RecipeError> {
    from_node(Node::from_json(value))
}

/// [`from_json`], with options.
pub fn from_json_with(value: &serde_json::Value, options: Options) -> Result<Recipe, RecipeError> {
    from_node_with(Node::from_json(value), options)
}

/// Reads any of the four forms from a parsed document (its states' parameters are moved out of it).
pub fn from_node(root: Node) -> Result<Recipe, RecipeError> {
    from_node_with(root, Options::default())
}

/// [`from_node`], with options.
pub fn from_node_with(mut root: Node, options: Options) -> Result<Recipe, RecipeError> {
    let mut reader = Reader::default();
    let recipe = reader.read_document(&mut root);
    finish(recipe, apply_options(reader.diagnostics, options))
}

fn finish(recipe: Recipe, mut diagnostics: Vec<Diagnostic>) -> Result<Recipe, RecipeError> {
    if diagnostics.iter().any(Diagnostic::is_error) {
        diagnostics.sort_by_key(|d| (d.severity == Severity::Warning, d.state.as_ref().map(|s| s.number).unwrap_or(0)));
        return Err(RecipeError { diagnostics });
    }
    Ok(Recipe { warnings: diagnostics, ..recipe })
}

const STATE_KEYS: &[&str] = &["id", "stateid", "module", "parameter", "retries", "timeout", "sensitive"];

#[derive(Default)]
struct Reader {
    diagnostics: Vec<Diagnostic>,
}

impl Reader {
    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Reads the document; the states' parameter trees are moved out of `root`, not copied.
    fn read_document(&mut self, root: &mut Node) -> Recipe {
        let mut recipe = Recipe { version: None, retries: None, states: Vec::new(), warnings: Vec::new() };
        let shape_hint = "a recipe is a mapping with `version:` and `states:` (YAML), `recipe_version` and `state` (wire form), or `component` (IDE export)";
        match &root.value {
            Value::Map(_) => {}
            Value::Seq(_) => {
                // A bare list of states: accepted, as the original's tools wrote some.
                recipe.states = self.read_states(root, 0);
                self.name_states(&mut recipe.states);
                recipe.states.retain(|s| catalog::is_known_module(&s.module));
                return recipe;
            }
            _ => {
                self.error(
                    Diagnostic::error(Kind::Shape, format!("expected a recipe mapping, found {}", root.kind()))
                        .at(root.pos)
                        .with_hint(shape_hint),
                );
                return recipe;
            }
        }
        recipe.version = self.read_version(root.get("recipe_version").or_else(|| root.get("version")));
        if let Some(node) = root.get("retries") {
            recipe.retries = self.read_u32(node, "retries", None);
        }
        let has_version = root.get("recipe_version").is_some();
        let root_pos = root.pos;
        if let Some(components) = root.get_mut("component") {
            let Value::Map(entries) = &mut components.value else {
                self.error(
                    Diagnostic::error(
                        Kind::Shape,
                        format!("`component` must be a mapping of component names, found {}", components.kind()),
                    )
                    .at(components.pos),
                );
                return recipe;
            };
            for entry in entries {
                // A component without states (a plain resource) is not our business.
                if let Some(states) = entry.value.get_mut("state") {
                    let offset = recipe.states.len();
                    recipe.states.extend(self.read_states(states, offset));
                }
            }
        } else if root.get("states").is_some() || root.get("state").is_some() {
            let key = if root.get("states").is_some() { "states" } else { "state" };
            let states = root.get_mut(key).expect("just checked");
            recipe.states = self.read_states(states, 0);
        } else if !has_version {
            self.error(
                Diagnostic::error(Kind::Shape, "the recipe has no `states` list").at(root_pos).with_hint(shape_hint),
            );
        }
        self.name_states(&mut recipe.states);
        // States of unknown modules were reported; what remains is what the modules can check.
        recipe.states.retain(|s| catalog::is_known_module(&s.module));
        recipe
    }

    fn read_version(&mut self, node: Option<&Node>) -> Option<u64> {
        let node = node?;
        if matches!(node.value, Value::Null) {
            return None;
        }
        match node.scalar_text().and_then(|t| t.trim().parse::<u64>().ok()) {
            Some(v) => Some(v),
            None => {
                self.error(
                    Diagnostic::error(
                        Kind::WrongType,
                        format!("the recipe version must be a whole number, found {}", node.kind()),
                    )
                    .at(node.pos)
                    .with_hint("write e.g. `version: 3`"),
                );
                None
            }
        }
    }

    fn read_u32(&mut self, node: &Node, what: &str, state: Option<StateRef>) -> Option<u32> {
        match node.scalar_text().and_then(|t| t.trim().parse::<u32>().ok()) {
            Some(v) => Some(v),
            None => {
                let mut d = Diagnostic::error(
                    Kind::WrongType,
                    format!("`{what}` must be a whole number, found {}", node.kind()),
                )
                .at(node.pos);
                d.state = state;
                self.error(d);
                None
            }
        }
    }

    fn read_states(&mut self, list: &mut Node, offset: usize) -> Vec<State> {
        let kind = list.kind();
        let Value::Seq(items) = &mut list.value else {
            if !matches!(list.value, Value::Null) {
                self.error(
                    Diagnostic::error(Kind::Shape, format!("the states must be a list, found {kind}")).at(list.pos),
                );
            }
            return Vec::new();
        };
        let mut states = Vec::with_capacity(items.len());
        for (i, item) in items.iter_mut().enumerate() {
            if let Some(state) = self.read_state(item, offset + i + 1) {
                states.push(state);
            }
        }
        states
    }

    fn read_state(&mut self, item: &mut Node, number: usize) -> Option<State> {
        // The parameter tree is moved into the state (a recipe of 1,000 states holds it once).
        let parameter = item.get_mut("parameter").map(|n| Node { value: std::mem::take(&mut n.value), pos: n.pos });
        let item: &Node = item;
        let mut sref = StateRef { number, id: None, module: None };
        let Some(entries) = item.as_map() else {
            self.error(
                Diagnostic::error(
                    Kind::Shape,
                    format!("a state must be a mapping with `id`, `module` and `parameter`, found {}", item.kind()),
                )
                .state(sref)
                .at(item.pos),
            );
            return None;
        };
        // A missing id is given one from the state's position later (`name_states`).
        let id = item
            .get("id")
            .or_else(|| item.get("stateid"))
            .and_then(Node::scalar_text)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        sref.id = id.clone();
        let mut module = item.get("module").and_then(Node::scalar_text);
        if let Some(written) = &module {
            if let Some(ours) = catalog::canonical_module(written).filter(|ours| ours != written) {
                sref.module = Some(ours.to_string());
                self.diagnostics.push(
                    Diagnostic::warning(Kind::Alias, format!("module id `{written}` is read as `{ours}`"))
                        .state(sref.clone())
                        .at(item.get("module").and_then(|n| n.pos))
                        .with_hint(format!("write `module: {ours}`")),
                );
                module = Some(ours.to_string());
            }
        }
        sref.module = module.clone();
        match &module {
            None => {
                self.error(
                    Diagnostic::error(Kind::MissingParameter, "the state has no `module`")
                        .state(sref.clone())
                        .at(item.pos)
                        .with_hint("name the module, e.g. `module: linux.file`"),
                );
            }
            Some(m) if !catalog::is_known_module(m) => {
                let pos = item.get("module").and_then(|n| n.pos);
                let hint = diag::did_you_mean(m, catalog::ORIGINAL_MODULES)
                    .unwrap_or_else(|| "see the module reference in the README for the known module ids".into());
                self.error(
                    Diagnostic::error(Kind::UnknownModule, format!("unknown module `{m}`"))
                        .state(sref.clone())
                        .at(pos)
                        .with_hint(hint),
                );
            }
            Some(_) => {}
        }
        let (params, params_pos) = match parameter {
            None => (Vec::new(), item.pos),
            Some(node) => match node.value {
                Value::Map(entries) => (entries, node.pos),
                Value::Null => (Vec::new(), node.pos),
                _ => {
                    self.error(
                        Diagnostic::error(
                            Kind::WrongType,
                            format!("`parameter` must be a mapping, found {}", node.kind()),
                        )
                        .state(sref.clone())
                        .at(node.pos),
                    );
                    (Vec::new(), node.pos)
                }
            },
        };
        let mut state = State {
            number,
            id: id.unwrap_or_default(),
            module: module.unwrap_or_default(),
            params,
            params_pos,
            pos: item.pos,
            retries: None,
            timeout: None,
            sensitive: false,
        };
        for entry in entries {
            match entry.key.as_str() {
                "retries" => state.retries = self.read_u32(&entry.value, "retries", Some(sref.clone())),
                "timeout" => {
                    state.timeout = self
                        .read_u32(&entry.value, "timeout", Some(sref.clone()))
                        .map(|s| Duration::from_secs(s.into()))
                }
                "sensitive" => match entry.value.value {
                    Value::Bool(b) => state.sensitive = b,
                    _ => self.error(
                        Diagnostic::error(Kind::WrongType, "`sensitive` must be true or false")
                            .state(sref.clone())
                            .at(entry.value.pos),
                    ),
                },
                key if STATE_KEYS.contains(&key) || key.starts_with('_') => {}
                key => {
                    let hint = diag::did_you_mean(key, STATE_KEYS).unwrap_or_else(|| {
                        "state keys are `id`, `module`, `parameter`, `retries`, `timeout` and `sensitive`".into()
                    });
                    self.diagnostics.push(
                        Diagnostic::warning(Kind::IgnoredKey, format!("unknown state key `{key}` is ignored"))
                            .state(sref.clone())
                            .at(entry.key_pos)
                            .with_hint(hint),
                    );
                }
            }
        }
        Some(state)
    }

    /// Names the states that have no id (`state-N`, from their position) and renames the later
    /// states of a repeated id (`{id}#N`), with a warning each; the names are never an id already
    /// used in the recipe, and depend only on the recipe, so every reader finds the same ones.
    fn name_states(&mut self, states: &mut [State]) {
        let mut taken: std::collections::HashSet<String> =
            states.iter().filter(|s| !s.id.is_empty()).map(|s| s.id.clone()).collect();
        let free_name = |taken: &std::collections::HashSet<String>, base: String, sep: char| {
            if !taken.contains(&base) {
                return base;
            }
            (2..).map(|k| format!("{base}{sep}{k}")).find(|n| !taken.contains(n)).expect("some name is free")
        };
        for state in states.iter_mut().filter(|s| s.id.is_empty()) {
            let name = free_name(&taken, format!("state-{}", state.number), '-');
            taken.insert(name.clone());
            state.id = name;
            self.diagnostics.push(
                Diagnostic::warning(
                    Kind::MissingId,
                    format!("the state has no `id`: it is named `{}` from its position", state.id),
                )
                .state(state.state_ref())
                .at(state.pos)
                .with_hint(format!(
                    "give every state a unique `id`, e.g. `id: app-config`; until then reports, DONEs and waits name it `{}`",
                    state.id
                )),
            );
        }
        let mut first_of: std::collections::HashMap<String, (usize, Option<Pos>)> = std::collections::HashMap::new();
        for state in states.iter_mut() {
            let Some(&(first_number, first_pos)) = first_of.get(&state.id) else {
                first_of.insert(state.id.clone(), (state.number, state.pos));
                continue;
            };
            let written = std::mem::take(&mut state.id);
            let name = free_name(&taken, format!("{written}#{}", state.number), '.');
            taken.insert(name.clone());
            state.id = name;
            first_of.insert(state.id.clone(), (state.number, state.pos));
            let first_at = first_pos.map(|p| format!(" (line {})", p.line)).unwrap_or_default();
            self.diagnostics.push(
                Diagnostic::warning(
                    Kind::DuplicateId,
                    format!(
                        "state id `{written}` is already used by state {first_number}{first_at}: this state is named `{}`",
                        state.id
                    ),
                )
                .state(state.state_ref())
                .at(state.pos)
                .with_hint(format!(
                    "state ids should be unique within a recipe; rename one of them (reports, DONEs and waits name this one `{}`)",
                    state.id
                )),
            );
        }
    }
}

#[cfg(test)]
mod tests;

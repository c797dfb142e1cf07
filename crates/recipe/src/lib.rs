//! The recipe model of opsagent: turns the three recipe forms — the original's wire form
//! (`{"recipe_version", "state": [...]}`), the original IDE export (`{"component": {...}}`) and
//! our YAML authoring form (`version:` + `states:`) — into one [`Recipe`], checking its shape:
//! state ids present and unique, module ids known, parameters a mapping.
//!
//! It never does I/O and knows nothing of how a module runs: module parameters are checked by
//! each module's `from_params` in the `states` crate, through [`ParamReader`]. Every problem is a
//! [`Diagnostic`] naming the state, module, parameter and line:column, with a hint.
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
    let (recipe, diagnostics) = parse_lenient(text);
    finish(recipe, diagnostics)
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

/// Reads any of the three forms from a parsed document (its states' parameters are moved out of it).
pub fn from_node(mut root: Node) -> Result<Recipe, RecipeError> {
    let mut reader = Reader::default();
    let recipe = reader.read_document(&mut root);
    finish(recipe, reader.diagnostics)
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
                // A bare list of states: accepted, as a convenience for hand-written files.
                recipe.states = self.read_states(root, 0);
                self.check_unique_ids(&recipe.states);
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
        self.check_unique_ids(&recipe.states);
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
        let id = item.get("id").or_else(|| item.get("stateid")).and_then(Node::scalar_text).filter(|s| !s.is_empty());
        sref.id = id.clone();
        let module = item.get("module").and_then(Node::scalar_text);
        sref.module = module.clone();
        if id.is_none() {
            self.error(
                Diagnostic::error(Kind::MissingParameter, "the state has no `id`")
                    .state(sref.clone())
                    .at(item.pos)
                    .with_hint("give every state a unique `id`, e.g. `id: app-config`"),
            );
        }
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
        (!state.id.is_empty()).then_some(state)
    }

    fn check_unique_ids(&mut self, states: &[State]) {
        for (i, state) in states.iter().enumerate() {
            if let Some(first) = states[..i].iter().find(|s| s.id == state.id) {
                let first_at = first.pos.map(|p| format!(" (line {})", p.line)).unwrap_or_default();
                self.error(
                    Diagnostic::error(
                        Kind::DuplicateId,
                        format!("state id `{}` is already used by state {}{first_at}", state.id, first.number),
                    )
                    .state(state.state_ref())
                    .at(state.pos)
                    .with_hint("state ids must be unique within a recipe; rename one of them"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;

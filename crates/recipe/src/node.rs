//! A parsed document as a tree of values that remember where they came from (line and column).
//!
//! YAML and JSON files are read through `yaml-rust2`'s event parser so that every value keeps its
//! position; recipes that arrive over the wire (already `serde_json::Value`) have no positions.
//! Scalars keep their source text: `mode: 0644` stays the text `0644` and is never read as 644.

use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One value of the document and its position, when the source format gives one.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Option<Pos>,
}

/// The kinds of value a recipe can hold. Numbers keep their text.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One key of a mapping, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Option<Pos>,
    pub value: Node,
}

/// A document that could not be parsed at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Option<Pos>,
}

impl Node {
    pub fn new(value: Value, pos: Option<Pos>) -> Node {
        Node { value, pos }
    }

    /// The entries of a mapping, or `None` for any other kind.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value at `key` of a mapping (the first one, should the key repeat).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// The value under `key` of a mapping, to take parts out of it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(entries) => entries.iter_mut().find(|e| e.key == key).map(|e| &mut e.value),
            _ => None,
        }
    }

    /// A word for the kind of value, for error messages ("a list", "a string").
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar (string, number or boolean), as written.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) | Value::Number(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Converts a JSON value (a recipe from the wire); such nodes carry no position.
    pub fn from_json(value: &serde_json::Value) -> Node {
        let value = match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.to_string()),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => Value::Seq(items.iter().map(Node::from_json).collect()),
            serde_json::Value::Object(map) => Value::Map(
                map.iter().map(|(k, v)| Entry { key: k.clone(), key_pos: None, value: Node::from_json(v) }).collect(),
            ),
        };
        Node { value, pos: None }
    }
}

/// Parses YAML (and so JSON, which YAML 1.2 contains) into a positioned tree. An empty document
/// is `Null`. Only the first document of a stream is read; a second one is an error.
pub fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, true)
        .map_err(|e| SyntaxError { message: e.info().to_string(), pos: Some(to_pos(*e.marker())) })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    if builder.documents > 1 {
        return Err(SyntaxError {
            message: "the file holds more than one YAML document; a recipe is one document".into(),
            pos: builder.second_document,
        });
    }
    Ok(builder.root.unwrap_or(Node { value: Value::Null, pos: None }))
}

fn to_pos(mark: Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos { line: mark.line(), col: mark.col() + 1 }
}

/// A collection being built: its node, for a mapping the key waiting for its value, and its anchor.
type Open = (Node, Option<(String, Option<Pos>)>, usize);

/// Builds the tree from parser events.
#[derive(Default)]
struct Builder {
    /// Open collections, innermost last.
    stack: Vec<Open>,
    root: Option<Node>,
    anchors: Vec<(usize, Node)>,
    documents: usize,
    second_document: Option<Pos>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        self.insert(node);
    }

    fn insert(&mut self, node: Node) {
        let Some((parent, pending_key, _)) = self.stack.last_mut() else {
            if self.documents == 1 {
                self.root = Some(node);
            }
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                None => match node.scalar_text().or(matches!(node.value, Value::Null).then(String::new)) {
                    Some(key) => *pending_key = Some((key, node.pos)),
                    None => {
                        if self.error.is_none() {
                            self.error = Some(SyntaxError {
                                message: format!("a mapping key must be a plain value, not {}", node.kind()),
                                pos: node.pos,
                            });
                        }
                        *pending_key = Some((String::new(), node.pos));
                    }
                },
                Some((key, key_pos)) => entries.push(Entry { key, key_pos, value: node }),
            },
            _ => unreachable!("only collections are pushed on the stack"),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let pos = Some(to_pos(mark));
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document = pos;
                }
            }
            Event::Scalar(mut text, style, anchor, tag) => {
                // The scanner grows scalars a character at a time: keep only what they hold (a
                // recipe of large file contents would otherwise be held at up to twice its size).
                text.shrink_to_fit();
                let value = if style == TScalarStyle::Plain && tag.is_none() {
                    resolve_plain(text)
                } else {
                    Value::String(text)
                };
                self.push_value(Node { value, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((Node::new(Value::Seq(Vec::new()), pos), None, anchor)),
            Event::MappingStart(anchor, _) => self.stack.push((Node::new(Value::Map(Vec::new()), pos), None, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, _, anchor)) = self.stack.pop() {
                    match &mut node.value {
                        Value::Map(entries) => entries.shrink_to_fit(),
                        Value::Seq(items) => items.shrink_to_fit(),
                        _ => {}
                    }
                    // A block mapping's start mark falls after its first key; point at that key.
                    if let Value::Map(entries) = &node.value {
                        if let Some(first) = entries.first() {
                            node.pos = first.key_pos.or(node.pos);
                        }
                    }
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.iter().rev().find(|(a, _)| *a == id).map(|(_, n)| n.clone());
                match node {
                    Some(mut node) => {
                        node.pos = pos;
                        self.insert(node);
                    }
                    None => {
                        self.error.get_or_insert(SyntaxError { message: "alias to an unknown anchor".into(), pos });
                    }
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar; numbers keep their text.
fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ if looks_numeric(&text) => Value::Number(text),
        _ => Value::String(text),
    }
}

fn looks_numeric(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0o")) {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    !digits.is_empty()
        && digits.parse::<f64>().is_ok()
        && digits.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_raw_numbers() {
        let node = parse_yaml("a: 1\nmode: 0644\nlist:\n  - x\n  - 'y'\n").unwrap();
        assert_eq!(node.get("mode").unwrap().value, Value::Number("0644".into()));
        assert_eq!(node.get("mode").unwrap().pos, Some(Pos { line: 2, col: 7 }));
        let list = node.get("list").unwrap();
        assert_eq!(list.pos.map(|p| p.line), Some(4));
        assert!(matches!(&list.value, Value::Seq(items) if items.len() == 2));
    }

    #[test]
    fn json_is_yaml() {
        let node = parse_yaml("{\"a\":1,\t\"b\": [true, null, \"\\u00e9\"], \"c\": {}}").unwrap();
        assert_eq!(node.get("a").unwrap().value, Value::Number("1".into()));
        let Value::Seq(items) = &node.get("b").unwrap().value else { panic!() };
        assert_eq!(items[0].value, Value::Bool(true));
        assert_eq!(items[1].value, Value::Null);
        assert_eq!(items[2].value, Value::String("é".into()));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse_yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.is_some());
    }

    #[test]
    fn anchors_and_aliases() {
        let node = parse_yaml("x: &v hello\ny: *v\n").unwrap();
        assert_eq!(node.get("y").unwrap().value, Value::String("hello".into()));
    }
}

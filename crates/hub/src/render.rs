//! Rendering an app's recipe for one instance: links (`@{db.PrivateIpAddress}`) replaced by the
//! values they name, then Jinja over the result — what the original's control plane did before it
//! sent a recipe (ARCHITECTURE.md §4.2).
//!
//! A link is `@{NAME.ATTR}` or `@{NAME.ATTR[n]}`. NAME is `self` (the receiving instance), a
//! component (the values of all its members, joined with `,`, members sorted by instance id) or an
//! instance; ATTR is a fact the agent reported (`PrivateIpAddress`, `PublicIp`, `MacAddress`,
//! `Hostname`, or any `[facts]` name), an attribute the operator set (`instance set --attr`), or
//! `InstanceId`. `[n]` is the n-th value (0-based) of a multi-valued attribute. References to
//! states (`@{db.state.3}`) are not links: `meta.wait` reads them, and they are left as written.
//!
//! A link that cannot be resolved yet holds its state (`meta.hold` with the reason is sent
//! instead); a link to a name that is neither turns the push down ([`check_source`]).

use std::collections::{BTreeMap, BTreeSet};

use opsagent_proto::Facts;
use opsagent_recipe::{Diagnostic, Kind, StateRef};
use serde_json::Value;

/// The attributes every instance has, for hints.
pub const KNOWN_ATTRS: &[&str] = &["PrivateIpAddress", "PublicIp", "MacAddress", "Hostname", "InstanceId"];

/// An instance as links see it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub component: String,
    /// What its agent last reported; `None` if it never connected.
    pub facts: Option<Facts>,
}

/// An attribute an operator set on an instance or a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// `instance` or `component`.
    pub scope: String,
    pub name: String,
    pub key: String,
    pub value: String,
}

/// Everything links can name in one app.
#[derive(Debug, Default)]
pub struct World {
    /// Sorted by id.
    pub members: Vec<Member>,
    pub attrs: Vec<Attr>,
    /// The components the recipe defines (they exist even with no member yet).
    pub components: BTreeSet<String>,
    /// The app is not known here (a local check before a push): link names are not checked.
    pub unknown_app: bool,
}

/// One link found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// As written, e.g. `@{db.PrivateIpAddress[1]}`.
    pub text: String,
    pub name: String,
    pub attr: String,
    pub index: Option<usize>,
}

/// The links of a string, in order (state references such as `@{db.state.3}` excluded).
pub fn links_in(text: &str) -> Vec<(std::ops::Range<usize>, Link)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find("@{").map(|i| i + from) {
        let Some(end) = text[start..].find('}').map(|i| i + start) else { break };
        let inner = &text[start + 2..end];
        from = end + 1;
        if inner.contains(".state.") {
            continue;
        }
        let Some((name, attr)) = inner.rsplit_once('.') else { continue };
        let (attr, index) = match attr.strip_suffix(']').and_then(|a| a.split_once('[')) {
            Some((attr, n)) => match n.trim().parse::<usize>() {
                Ok(n) => (attr, Some(n)),
                Err(_) => continue,
            },
            None => (attr, None),
        };
        let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let attr_ok = !attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
        if name_ok && attr_ok {
            let link = Link { text: text[start..=end].to_string(), name: name.into(), attr: attr.into(), index };
            found.push((start..end + 1, link));
        }
    }
    found
}

/// Whether a string holds Jinja tags.
pub fn has_jinja(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Why a link has no value (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// NAME is no instance or component of the app.
    UnknownName { link: String, name: String },
    /// Not resolvable now; the message says what is missing.
    NotYet(String),
}

impl World {
    /// Every name a link may use.
    pub fn names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.components.clone();
        for m in &self.members {
            names.insert(m.id.clone());
            names.insert(m.component.clone());
        }
        names.insert("self".into());
        names
    }

    fn is_component(&self, name: &str) -> bool {
        self.components.contains(name) || self.members.iter().any(|m| m.component == name)
    }

    /// The value of a link for the instance `me`.
    pub fn resolve(&self, link: &Link, me: &str) -> Result<String, Missing> {
        let name = if link.name == "self" { me } else { link.name.as_str() };
        if link.name != "self" && self.is_component(name) {
            if let Some(value) = self.attr("component", name, &link.attr) {
                return pick(link, vec![value.to_string()], name);
            }
            let members: Vec<&Member> = self.members.iter().filter(|m| m.component == name).collect();
            if members.is_empty() {
                return Err(Missing::NotYet(format!(
                    "link `{}` is not resolved yet: component `{name}` has no instance",
                    link.text
                )));
            }
            let mut values = Vec::new();
            for member in members {
                values.push(self.member_value(link, member)?);
            }
            return Ok(values.join(","));
        }
        match self.members.iter().find(|m| m.id == name) {
            Some(member) => self.member_value(link, member),
            None => Err(Missing::UnknownName { link: link.text.clone(), name: name.to_string() }),
        }
    }

    fn member_value(&self, link: &Link, member: &Member) -> Result<String, Missing> {
        let values = if link.attr == "InstanceId" {
            Some(vec![member.id.clone()])
        } else if let Some(value) = self.attr("instance", &member.id, &link.attr) {
            Some(vec![value.to_string()])
        } else if let Some(values) = member.facts.as_ref().and_then(|f| f.get(&link.attr)) {
            Some(values.clone())
        } else {
            self.attr("component", &member.component, &link.attr).map(|v| vec![v.to_string()])
        };
        match values {
            Some(values) => pick(link, values, &member.id),
            None if member.facts.is_none() => Err(Missing::NotYet(format!(
                "link `{}` is not resolved yet: instance `{}` has never connected",
                link.text, member.id
            ))),
            None => Err(Missing::NotYet(format!(
                "link `{}` is not resolved yet: instance `{}` has no attribute `{}`; its agent can report it in `[facts]` of /etc/opsagent.conf, or set it with `opsagent-hub instance set APP {} --attr {}=VALUE`",
                link.text, member.id, link.attr, member.id, link.attr
            ))),
        }
    }

    fn attr(&self, scope: &str, name: &str, key: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.scope == scope && a.name == name && a.key == key).map(|a| a.value.as_str())
    }
}

fn pick(link: &Link, values: Vec<String>, of: &str) -> Result<String, Missing> {
    match link.index {
        None => values.into_iter().next().ok_or_else(|| {
            Missing::NotYet(format!("link `{}` is not resolved yet: `{of}` reported no value", link.text))
        }),
        Some(n) => values.into_iter().nth(n).ok_or_else(|| {
            Missing::NotYet(format!("link `{}` is not resolved yet: `{of}` has no value number {n}", link.text))
        }),
    }
}

/// Substitutes the links of one string for instance `me`.
pub fn substitute(text: &str, world: &World, me: &str) -> Result<String, Missing> {
    let links = links_in(text);
    if links.is_empty() {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, link) in links {
        out.push_str(&text[at..range.start]);
        out.push_str(&world.resolve(&link, me)?);
        at = range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// The Jinja environment: strict about undefined names, Python's string methods
/// (`"a,b".split(",")`), and a bounded amount of work per template.
fn jinja() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_fuel(Some(100_000));
    env
}

/// Renders one string's Jinja.
pub fn render_jinja(text: &str) -> Result<String, String> {
    let mut out = jinja().render_str(text, ()).map_err(|e| jinja_error(&e))?;
    // Jinja drops one trailing newline; a file's content keeps it.
    if text.ends_with('\n') && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Checks a template's syntax only.
pub fn check_jinja(text: &str) -> Result<(), String> {
    let env = jinja();
    env.template_from_str(text).map(|_| ()).map_err(|e| jinja_error(&e))
}

fn jinja_error(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    if let Some(line) = e.line() {
        if !text.contains("line") && !text.contains("<string>:") {
            text.push_str(&format!(" (line {line})"));
        }
    }
    text
}

/// One string parameter of a state: its path (`content`, `name.nginx`, `env[2]`) and text.
fn strings<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                out.push((path.clone(), k.as_str()));
                strings(v, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
            }
        }
        _ => {}
    }
}

/// Whether a state needs rendering (it has links or Jinja in its parameters).
pub fn is_templated(state: &Value) -> bool {
    let mut found = Vec::new();
    strings(state.get("parameter").unwrap_or(&Value::Null), String::new(), &mut found);
    found.iter().any(|(_, s)| has_jinja(s) || !links_in(s).is_empty())
}

/// The push-time checks of one component's states: every link names something that exists (the
/// closest names as a hint), attribute names look right, and every Jinja template parses.
pub fn check_source(states: &[Value], world: &World, diagnostics: &mut Vec<Diagnostic>) {
    let names: Vec<String> = world.names().into_iter().collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for (i, state) in states.iter().enumerate() {
        let state_ref = StateRef {
            number: i + 1,
            id: state.get("id").or_else(|| state.get("stateid")).and_then(Value::as_str).map(String::from),
            module: state.get("module").and_then(Value::as_str).map(String::from),
        };
        let mut found = Vec::new();
        strings(state.get("parameter").unwrap_or(&Value::Null), String::new(), &mut found);
        for (param, text) in found {
            let param = if param.is_empty() { "parameter".to_string() } else { param };
            for (_, link) in links_in(text) {
                if link.name != "self" && !names.contains(&link.name) && !world.unknown_app {
                    let hint = opsagent_recipe::diag::did_you_mean(&link.name, &name_refs)
                        .unwrap_or_else(|| format!("the app's components and instances are: {}", quoted(&name_refs)));
                    diagnostics.push(
                        Diagnostic::error(
                            Kind::BadValue,
                            format!(
                                "link `{}` names `{}`, which is neither a component nor an instance of the app",
                                link.text, link.name
                            ),
                        )
                        .state(state_ref.clone())
                        .param(&param)
                        .with_hint(hint),
                    );
                }
                let reported =
                    world.members.iter().any(|m| m.facts.as_ref().is_some_and(|f| f.contains_key(&link.attr)))
                        || world.attrs.iter().any(|a| a.key == link.attr);
                if !KNOWN_ATTRS.contains(&link.attr.as_str()) && !reported && !world.unknown_app {
                    let mut d = Diagnostic::warning(
                        Kind::BadValue,
                        format!(
                            "link `{}`: no instance reports an attribute `{}` yet; the state is held until one does",
                            link.text, link.attr
                        ),
                    )
                    .state(state_ref.clone())
                    .param(&param);
                    d.hint = opsagent_recipe::diag::did_you_mean(&link.attr, KNOWN_ATTRS);
                    diagnostics.push(d);
                }
            }
            if has_jinja(text) {
                // The links' values are not known here: any text checks the syntax.
                let placeholder = links_in(text).into_iter().rev().fold(text.to_string(), |mut s, (range, _)| {
                    s.replace_range(range, "0");
                    s
                });
                if let Err(e) = check_jinja(&placeholder) {
                    diagnostics.push(
                        Diagnostic::error(Kind::BadValue, format!("Jinja template error: {e}"))
                            .state(state_ref.clone())
                            .param(&param)
                            .with_hint("fix the template; to write `{{` literally, put it in `{% raw %}…{% endraw %}`"),
                    );
                }
            }
        }
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// One state rendered for one instance: its wire form, or why it is held.
pub enum Rendered {
    State(Value),
    Held { reason: String },
}

/// Renders one state for instance `me`.
pub fn render_state(state: &Value, world: &World, me: &str) -> Rendered {
    if !is_templated(state) {
        return Rendered::State(state.clone());
    }
    let mut state = state.clone();
    if let Some(parameter) = state.get_mut("parameter") {
        if let Err(reason) = render_value(parameter, world, me) {
            return Rendered::Held { reason };
        }
    }
    Rendered::State(state)
}

fn render_value(value: &mut Value, world: &World, me: &str) -> Result<(), String> {
    match value {
        Value::String(s) => *s = render_string(s, world, me)?,
        Value::Array(items) => {
            for item in items {
                render_value(item, world, me)?;
            }
        }
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                render_value(&mut v, world, me)?;
                map.insert(render_string(&k, world, me)?, v);
            }
        }
        _ => {}
    }
    Ok(())
}

fn render_string(text: &str, world: &World, me: &str) -> Result<String, String> {
    let text = substitute(text, world, me).map_err(|m| match m {
        Missing::NotYet(reason) => reason,
        Missing::UnknownName { link, name } => {
            format!("link `{link}` names `{name}`, which is neither a component nor an instance of the app")
        }
    })?;
    if has_jinja(&text) {
        return render_jinja(&text).map_err(|e| format!("Jinja template error: {e}"));
    }
    Ok(text)
}

/// The held form of a state: `meta.hold`, which stops the round there with the reason.
pub fn held_state(state: &Value, reason: &str) -> Value {
    let id = state.get("id").or_else(|| state.get("stateid")).cloned().unwrap_or(Value::Null);
    let module = state.get("module").cloned().unwrap_or(Value::Null);
    serde_json::json!({ "id": id, "module": "meta.hold", "parameter": { "reason": reason, "module": module } })
}

/// An attribute list as `key → value` for one (scope, name).
pub fn attrs_of(attrs: &[Attr], scope: &str, name: &str) -> BTreeMap<String, String> {
    attrs.iter().filter(|a| a.scope == scope && a.name == name).map(|a| (a.key.clone(), a.value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        let facts = |ip: &[&str]| {
            let mut f = Facts::new();
            f.insert("PrivateIpAddress".into(), ip.iter().map(|s| s.to_string()).collect());
            f.insert("Hostname".into(), vec!["h".into()]);
            Some(f)
        };
        World {
            members: vec![
                Member { id: "db-1".into(), component: "db".into(), facts: facts(&["10.0.0.4"]) },
                Member { id: "web-1".into(), component: "web".into(), facts: facts(&["10.0.1.1", "10.0.1.11"]) },
                Member { id: "web-2".into(), component: "web".into(), facts: facts(&["10.0.1.2"]) },
                Member { id: "web-3".into(), component: "web".into(), facts: None },
            ],
            attrs: vec![Attr {
                scope: "component".into(),
                name: "db".into(),
                key: "Port".into(),
                value: "5432".into(),
            }],
            components: ["db", "web", "cache"].into_iter().map(String::from).collect(),
            unknown_app: false,
        }
    }

    #[test]
    fn links_are_found_and_state_references_are_not() {
        let links = links_in("a @{db.PrivateIpAddress} b @{self.PublicIp[1]} @{db.state.3} @{x} @{db-1.Hostname}");
        let texts: Vec<_> = links.iter().map(|(_, l)| (l.name.as_str(), l.attr.as_str(), l.index)).collect();
        assert_eq!(
            texts,
            [("db", "PrivateIpAddress", None), ("self", "PublicIp", Some(1)), ("db-1", "Hostname", None)]
        );
    }

    #[test]
    fn instances_components_and_self() {
        let mut w = world();
        w.members.retain(|m| m.id != "web-3");
        assert_eq!(substitute("@{db.PrivateIpAddress}:@{db.Port}", &w, "web-1").unwrap(), "10.0.0.4:5432");
        assert_eq!(substitute("@{web.PrivateIpAddress}", &w, "db-1").unwrap(), "10.0.1.1,10.0.1.2");
        assert_eq!(substitute("@{self.PrivateIpAddress[1]}", &w, "web-1").unwrap(), "10.0.1.11");
        assert_eq!(substitute("@{self.InstanceId}", &w, "web-2").unwrap(), "web-2");
        assert_eq!(substitute("@{db-1.Port}", &w, "web-2").unwrap(), "5432", "a member falls back to its component");
    }

    #[test]
    fn what_cannot_be_resolved_says_why() {
        let w = world();
        let err = substitute("@{web.PrivateIpAddress}", &w, "db-1").unwrap_err();
        assert!(matches!(&err, Missing::NotYet(m) if m.contains("`web-3` has never connected")), "{err:?}");
        let err = substitute("@{cache.PrivateIpAddress}", &w, "db-1").unwrap_err();
        assert!(matches!(&err, Missing::NotYet(m) if m.contains("has no instance")), "{err:?}");
        let err = substitute("@{db-1.PrivateIpAddress[3]}", &w, "db-1").unwrap_err();
        assert!(matches!(err, Missing::NotYet(_)));
        assert!(matches!(substitute("@{dbx.PrivateIpAddress}", &w, "db-1"), Err(Missing::UnknownName { .. })));
    }

    #[test]
    fn jinja_after_links_with_python_methods() {
        let mut w = world();
        w.members.retain(|m| m.id != "web-3");
        let state = serde_json::json!({"id": "zk", "module": "linux.file", "parameter": {
            "path": "/etc/@{self.Hostname}.cfg",
            "content": "{% for ip in \"@{web.PrivateIpAddress}\".split(\",\") %}server.{{ loop.index }}={{ ip }}\n{% endfor %}{% raw %}{{ literal }}{% endraw %}",
        }});
        let Rendered::State(out) = render_state(&state, &w, "db-1") else { panic!("held") };
        assert_eq!(out["parameter"]["path"], "/etc/h.cfg");
        assert_eq!(out["parameter"]["content"], "server.1=10.0.1.1\nserver.2=10.0.1.2\n{{ literal }}");
    }

    #[test]
    fn push_checks_name_the_state_and_parameter() {
        let w = world();
        let states = vec![serde_json::json!({"id": "cfg", "module": "linux.file", "parameter": {
            "path": "/x", "content": "@{dbb.PrivateIpAddress} {% if %}",
        }})];
        let mut d = Vec::new();
        check_source(&states, &w, &mut d);
        let errors: Vec<_> = d.iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 2, "{d:?}");
        assert!(errors[0].message.contains("`dbb`") && errors[0].hint.as_deref().unwrap_or("").contains("db"));
        assert_eq!(errors[0].param.as_deref(), Some("content"));
        assert_eq!(errors[0].state.as_ref().and_then(|s| s.id.as_deref()), Some("cfg"));
        assert!(errors[1].message.contains("Jinja"), "{:?}", errors[1]);
    }
}

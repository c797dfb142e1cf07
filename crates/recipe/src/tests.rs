//! Recipe parsing tests: one `check` helper renders the outcome as text, so each case reads as
//! input → expected diagnostics or states.

use proptest::prelude::*;

use super::*;

/// Renders a parse outcome: one line per state (`number id module [params]`) or per diagnostic.
fn render(text: &str) -> String {
    match parse_str(text) {
        Ok(recipe) => {
            let mut out = format!("version {:?}\n", recipe.version);
            for s in &recipe.states {
                let keys: Vec<&str> = s.params.iter().map(|e| e.key.as_str()).collect();
                out.push_str(&format!("{} {} {} [{}]\n", s.number, s.id, s.module, keys.join(",")));
            }
            for w in &recipe.warnings {
                out.push_str(&format!("{w}\n"));
            }
            out
        }
        Err(e) => e.diagnostics.iter().map(|d| format!("{d}\n")).collect(),
    }
}

fn check(text: &str, expect: &str) {
    let got = render(text);
    assert_eq!(got.trim(), expect.trim(), "\n--- got ---\n{got}");
}

#[test]
fn wire_form() {
    check(
        r#"{"recipe_version": 7, "state": [
            {"id": "s1", "module": "linux.file", "parameter": {"path": "/x", "mode": "0644"}, "_": "comment"},
            {"stateid": "s2", "module": "meta.comment", "parameter": {"comment": "hi"}}]}"#,
        "version Some(7)\n1 s1 linux.file [path,mode]\n2 s2 meta.comment [comment]",
    );
}

#[test]
fn ide_export_components_in_order() {
    check(
        r#"{"component": {
            "web": {"type": "AWS.EC2.Instance", "state": [{"id": "a", "module": "meta.comment", "parameter": {}}]},
            "db": {"type": "AWS.EC2.Instance"},
            "app": {"state": [{"id": "b", "module": "linux.cmd", "parameter": {"cmd": "true"}}]}}}"#,
        "version None\n1 a meta.comment []\n2 b linux.cmd [cmd]",
    );
}

#[test]
fn yaml_form() {
    check(
        "version: 3\nstates:\n  - id: conf\n    module: linux.file\n    parameter:\n      path: /etc/x\n      mode: 0644\n",
        "version Some(3)\n1 conf linux.file [path,mode]",
    );
}

#[test]
fn every_shape_error_at_once() {
    check(
        "version: 1\nstates:\n  - id: a\n    module: linux.fiel\n  - module: linux.cmd\n  - id: a\n    module: meta.comment\n  - id: c\n    module: linux.dir\n    parameter: [1]\n",
        "error: line 4:13: state 1 `a` (linux.fiel): unknown module `linux.fiel`
  hint: did you mean `linux.file`?
error: line 10:16: state 4 `c` (linux.dir): `parameter` must be a mapping, found a list
warning: line 5:5: state 2 `state-2` (linux.cmd): the state has no `id`: it is named `state-2` from its position
  hint: give every state a unique `id`, e.g. `id: app-config`; until then reports, DONEs and waits name it `state-2`
warning: line 6:5: state 3 `a#3` (meta.comment): state id `a` is already used by state 1 (line 3): this state is named `a#3`
  hint: state ids should be unique within a recipe; rename one of them (reports, DONEs and waits name this one `a#3`)",
    );
}

#[test]
fn bare_list_with_missing_ids_gets_position_names() {
    // `state-2` is taken by an explicit id, so the second state without one becomes `state-2-2`.
    check(
        r#"[{"module": "meta.comment", "parameter": {}},
            {"module": "meta.comment"},
            {"id": "state-2", "module": "meta.comment"}]"#,
        "version None
1 state-1 meta.comment []
2 state-2-2 meta.comment []
3 state-2 meta.comment []
warning: line 1:3: state 1 `state-1` (meta.comment): the state has no `id`: it is named `state-1` from its position
  hint: give every state a unique `id`, e.g. `id: app-config`; until then reports, DONEs and waits name it `state-1`
warning: line 2:14: state 2 `state-2-2` (meta.comment): the state has no `id`: it is named `state-2-2` from its position
  hint: give every state a unique `id`, e.g. `id: app-config`; until then reports, DONEs and waits name it `state-2-2`",
    );
    // The same in YAML, in the wire form and in the IDE export (positions count across components).
    let yaml = parse_str("- module: meta.comment\n- {id: x, module: meta.comment}\n").unwrap();
    assert_eq!(ids(&yaml), ["state-1", "x"]);
    let wire = from_json(&serde_json::json!({"recipe_version": 2, "state": [{"module": "meta.comment"}]})).unwrap();
    assert_eq!(ids(&wire), ["state-1"]);
    let ide = from_json(&serde_json::json!({"component": {
        "a": {"state": [{"id": "s", "module": "meta.comment"}]},
        "b": {"state": [{"module": "meta.comment"}]}}}))
    .unwrap();
    assert_eq!(ids(&ide), ["s", "state-2"]);
}

fn ids(recipe: &Recipe) -> Vec<&str> {
    recipe.states.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn repeated_ids_are_renamed_by_position() {
    let recipe = parse_str(
        "states:\n  - {id: a, module: meta.comment}\n  - {id: a, module: meta.comment}\n  - {id: a#2, module: meta.comment}\n  - {id: a, module: meta.comment}\n",
    )
    .unwrap();
    // `a#2` is an explicit id, so the second `a` becomes `a#2.2`.
    assert_eq!(ids(&recipe), ["a", "a#2.2", "a#2", "a#4"]);
    let kinds: Vec<Kind> = recipe.warnings.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, [Kind::DuplicateId, Kind::DuplicateId]);
    assert!(recipe.warnings[1].message.contains("this state is named `a#4`"), "{}", recipe.warnings[1]);
}

#[test]
fn older_module_ids_are_read_as_ours() {
    check(
        "- {id: a, module: linux lvm pv}\n- {id: b, module: linux pv}\n- {id: c, module: Linux.LVM.VG}\n- {id: d, module: linux_apt_pkg}\n- {id: e, module: \"meta #\"}\n",
        "version None
1 a linux.lvm.pv []
2 b linux.lvm.pv []
3 c linux.lvm.vg []
4 d linux.apt.package []
5 e meta.comment []
warning: line 1:19: state 1 `a` (linux.lvm.pv): module id `linux lvm pv` is read as `linux.lvm.pv`
  hint: write `module: linux.lvm.pv`
warning: line 2:19: state 2 `b` (linux.lvm.pv): module id `linux pv` is read as `linux.lvm.pv`
  hint: write `module: linux.lvm.pv`
warning: line 3:19: state 3 `c` (linux.lvm.vg): module id `Linux.LVM.VG` is read as `linux.lvm.vg`
  hint: write `module: linux.lvm.vg`
warning: line 4:19: state 4 `d` (linux.apt.package): module id `linux_apt_pkg` is read as `linux.apt.package`
  hint: write `module: linux.apt.package`
warning: line 5:19: state 5 `e` (meta.comment): module id `meta #` is read as `meta.comment`
  hint: write `module: meta.comment`",
    );
}

#[test]
fn strict_mode_refuses_compat_warnings() {
    let text = "- {module: meta.comment}\n- {id: a, module: meta.comment, retires: 1}\n";
    assert!(parse_str(text).is_ok());
    let err = parse_str_with(text, Options { strict: true }).unwrap_err();
    let kinds: Vec<(Kind, Severity)> = err.diagnostics.iter().map(|d| (d.kind, d.severity)).collect();
    assert_eq!(kinds, [(Kind::MissingId, Severity::Error), (Kind::IgnoredKey, Severity::Error)]);
    // Warnings of other kinds stay warnings.
    let other = Diagnostic::warning(Kind::BadValue, "x");
    assert_eq!(strict(vec![other.clone()]), [other]);
    assert!(from_json_with(&serde_json::json!([{"module": "meta.comment"}]), Options { strict: true }).is_err());
}

#[test]
fn syntax_error_has_position() {
    check("states:\n  - id: a\n    module: [x\n", "error: line 4:1: cannot parse the recipe: while parsing a flow sequence, expected ',' or ']'\n  hint: a recipe is YAML or JSON; check the brackets, quotes and indentation near this line");
}

#[test]
fn unknown_state_key_warns() {
    check(
        "states:\n  - id: a\n    module: meta.comment\n    retires: 2\n",
        "version None\n1 a meta.comment []\nwarning: line 4:5: state 1 `a` (meta.comment): unknown state key `retires` is ignored\n  hint: did you mean `retries`?",
    );
}

#[test]
fn state_options() {
    let r = parse_str("retries: 5\nstates:\n  - {id: a, module: linux.cmd, timeout: 30, retries: 0, sensitive: true, parameter: {cmd: x}}\n").unwrap();
    assert_eq!(r.retries, Some(5));
    assert_eq!(r.states[0].timeout, Some(Duration::from_secs(30)));
    assert_eq!(r.states[0].retries, Some(0));
    assert!(r.states[0].sensitive);
}

#[test]
fn not_a_recipe() {
    check("just text", "error: line 1:1: expected a recipe mapping, found a string\n  hint: a recipe is a mapping with `version:` and `states:` (YAML), `recipe_version` and `state` (wire form), or `component` (IDE export)");
}

mod params;

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-z._]{0,12}".prop_map(serde_json::Value::String),
        prop_oneof![
            Just("id"),
            Just("module"),
            Just("parameter"),
            Just("state"),
            Just("linux.file"),
            Just("meta.wait")
        ]
        .prop_map(|s| serde_json::Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("id".to_string()),
            Just("module".to_string()),
            Just("parameter".to_string()),
            Just("state".to_string()),
            Just("states".to_string()),
            Just("component".to_string()),
            Just("recipe_version".to_string()),
            "[a-z]{1,6}".prop_map(String::from)
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Arbitrary JSON never panics the reader, and whatever it accepts has unique ids.
    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        if let Ok(recipe) = from_json(&value) {
            let mut ids: Vec<&str> = recipe.states.iter().map(|s| s.id.as_str()).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), recipe.states.len());
        }
        let text = value.to_string();
        let _ = parse_str(&text);
    }

    /// Arbitrary text never panics the parser.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_str(&text);
    }
}

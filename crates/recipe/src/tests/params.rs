//! `ParamReader` tests: the original's names and value shapes, read as ours with a warning.

use crate::{parse_str, DictEntry, Kind, ParamReader, Severity};

/// Reads the parameters of the first state of `yaml` with `read`, then finishes with `known`;
/// returns what `read` gave and every diagnostic as `severity kind param: message`.
fn with_reader<T>(yaml: &str, known: &[&str], read: impl FnOnce(&mut ParamReader<'_>) -> T) -> (T, Vec<String>) {
    let recipe = parse_str(yaml).unwrap();
    let mut p = ParamReader::new(&recipe.states[0]);
    let got = read(&mut p);
    let diagnostics = match p.finish(known, &[]) {
        Ok(w) | Err(w) => w,
    };
    let lines = diagnostics
        .iter()
        .map(|d| {
            let severity = if d.severity == Severity::Error { "error" } else { "warning" };
            format!("{severity} {} {}: {}", d.kind.as_str(), d.param.as_deref().unwrap_or("-"), d.message)
        })
        .collect();
    (got, lines)
}

fn state(module: &str, params: &str) -> String {
    format!("- id: s\n  module: {module}\n  parameter: {params}\n")
}

#[test]
fn unknown_parameters_warn_with_did_you_mean() {
    let recipe = parse_str(&state("linux.file", "{path: /x, contnet: hi}")).unwrap();
    let mut p = ParamReader::new(&recipe.states[0]);
    p.string("path");
    p.string("content");
    let warnings = p.finish(&["path", "content"], &[]).expect("unknown parameters do not block");
    assert_eq!(warnings.len(), 1);
    let w = &warnings[0];
    assert_eq!((w.kind, w.severity), (Kind::UnknownParameter, Severity::Warning));
    assert_eq!(w.to_string(), "warning: line 3:25: state 1 `s` (linux.file): parameter `contnet`: unknown parameter `contnet` is ignored\n  hint: did you mean `content`?");
    // Nothing close: the hint lists the module's parameters.
    let (_, lines) = with_reader(&state("linux.file", "{zzz: 1}"), &["path"], |_| ());
    assert_eq!(lines, ["warning unknown_parameter zzz: unknown parameter `zzz` is ignored"]);
}

#[test]
fn aliases_of_the_table_are_read_as_ours() {
    let (repo, lines) =
        with_reader(&state("linux.apt.package", "{name: {x: ''}, fromrepo: stable}"), &["name", "repo"], |p| {
            assert!(p.has("repo"));
            p.dict("name");
            p.string("repo")
        });
    assert_eq!(repo.as_deref(), Some("stable"));
    assert_eq!(
        lines,
        ["warning alias fromrepo: parameter `fromrepo` is the original's name for `repo`; read as `repo`"]
    );
    for (module, params, ours, value) in [
        ("linux.mount", "{dev: /dev/x}", "device", "/dev/x"),
        ("linux.mkfs", "{dev: /dev/y}", "device", "/dev/y"),
        ("linux.raid", "{dev: /dev/md0}", "device-name", "/dev/md0"),
        ("common.virtualenv", "{python: python3}", "python-bin", "python3"),
        ("common.archive", "{source_hash: 'md5:00'}", "checksum", "md5:00"),
        ("linux.group", "{system: 'true'}", "system-group", "true"),
        ("linux.yum.package", "{fromrepo: epel}", "repo", "epel"),
    ] {
        let (got, lines) = with_reader(&state(module, params), &[ours], |p| p.string(ours));
        assert_eq!(got.as_deref(), Some(value), "{module} {params}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("warning alias "), "{lines:?}");
    }
}

#[test]
fn other_spellings_are_read_as_ours() {
    let (got, lines) =
        with_reader(&state("linux.yum.package", "{verify_gpg: true, Use_UTC: 1}"), &["verify-gpg", "use-utc"], |p| {
            (p.bool("verify-gpg"), p.bool("use-utc"))
        });
    assert_eq!(got, (Some(true), Some(true)));
    assert_eq!(
        lines,
        [
            "warning alias verify_gpg: parameter `verify_gpg` is the original's name for `verify-gpg`; read as `verify-gpg`",
            "warning alias Use_UTC: parameter `Use_UTC` is read as `use-utc`"
        ]
    );
    // A module that reads both spellings itself gets the entry once.
    let (got, _) = with_reader(
        &state("linux.lvm.lv", "{pool metadata size: 4m}"),
        &["pool-metadata-size", "pool metadata size"],
        |p| (p.string("pool-metadata-size"), p.string("pool metadata size")),
    );
    assert_eq!(got, (Some("4m".to_string()), None));
}

#[test]
fn an_alias_beside_our_name_is_ignored_with_a_warning() {
    let (got, lines) =
        with_reader(&state("linux.mount", "{device: /dev/a, dev: /dev/b}"), &["device"], |p| p.string("device"));
    assert_eq!(got.as_deref(), Some("/dev/a"));
    assert_eq!(
        lines,
        ["warning alias dev: parameter `dev` (another name for `device`) is ignored: `device` is given too"]
    );
}

#[test]
fn ignored_parameters_of_the_table_warn() {
    let (_, lines) = with_reader(&state("linux.symlink", "{mode: '0755'}"), &["target"], |_| ());
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("warning ignored_key mode: parameter `mode` is accepted and ignored: a symbolic link"));
}

#[test]
fn booleans_in_the_originals_words() {
    for (text, want) in [("y", true), ("N", false), ("on", true), ("OFF", false), ("Yes", true), ("no", false)] {
        let (got, lines) =
            with_reader(&state("linux.dir", &format!("{{absent: {text}}}")), &["absent"], |p| p.bool("absent"));
        assert_eq!(got, Some(want), "{text}");
        let warned = !matches!(text, "Yes" | "no");
        assert_eq!(lines.len(), usize::from(warned), "{text}: {lines:?}");
    }
    let (got, lines) = with_reader(&state("linux.dir", "{absent: maybe}"), &["absent"], |p| p.bool("absent"));
    assert_eq!(got, None);
    assert_eq!(lines, ["error wrong_type absent: expected true or false, found `maybe`"]);
}

#[test]
fn plain_lists_and_dicts_swap_shapes() {
    let entry = |k: &str| DictEntry { key: k.into(), value: None };
    let (got, lines) = with_reader(&state("linux.service", "{name: [nginx, php-fpm]}"), &["name"], |p| p.dict("name"));
    assert_eq!(got, Some(vec![entry("nginx"), entry("php-fpm")]));
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("warning original_shape name: `name` is given as a plain list"), "{lines:?}");
    let (got, _) = with_reader(&state("linux.service", "{name: nginx}"), &["name"], |p| p.dict("name"));
    assert_eq!(got, Some(vec![entry("nginx")]));

    let (got, lines) = with_reader(&state("linux.dir", "{path: [{key: /a, value: ''}, {key: /b}]}"), &["path"], |p| {
        p.string_list("path")
    });
    assert_eq!(got, Some(vec!["/a".to_string(), "/b".to_string()]));
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("given as `{key, value}` entries where a plain list is expected"), "{lines:?}");
    let (got, _) = with_reader(&state("linux.dir", "{path: {/a: '', /b: ''}}"), &["path"], |p| p.string_list("path"));
    assert_eq!(got, Some(vec!["/a".to_string(), "/b".to_string()]));
}

#[test]
fn env_as_one_string_or_lines() {
    let kv = |k: &str, v: &str| DictEntry { key: k.into(), value: Some(v.into()) };
    let (got, lines) = with_reader(&state("linux.cmd", "{env: \"A=1 B='two words' C=\"}"), &["env"], |p| p.env("env"));
    assert_eq!(got, Some(vec![kv("A", "1"), kv("B", "two words"), kv("C", "")]));
    assert_eq!(lines, ["warning original_shape env: `env` is given as `KEY=VALUE` text: read as 3 variable(s)"]);
    let recipe = parse_str("- id: s\n  module: linux.cmd\n  parameter:\n    env: |\n      A=1\n      B=x y\n").unwrap();
    let mut p = ParamReader::new(&recipe.states[0]);
    assert_eq!(p.env("env"), Some(vec![kv("A", "1"), kv("B", "x y")]));
    let (got, _) = with_reader(&state("linux.cmd", "{env: [A=1, B=2]}"), &["env"], |p| p.env("env"));
    assert_eq!(got, Some(vec![kv("A", "1"), kv("B", "2")]));
    let (got, lines) = with_reader(&state("linux.cmd", "{env: {A: '1'}}"), &["env"], |p| p.env("env"));
    assert_eq!((got, lines.len()), (Some(vec![kv("A", "1")]), 0));
    let (_, lines) = with_reader(&state("linux.cmd", "{env: 'A=1 oops'}"), &["env"], |p| p.env("env"));
    assert!(lines.iter().any(|l| l == "error bad_value env: `oops` is not `KEY=VALUE`"), "{lines:?}");
}

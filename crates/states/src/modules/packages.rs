//! What the package modules (`linux.apt.package`, `linux.yum.package`, `common.pip.package`,
//! `common.npm.package`, `common.gem.package`) share: reading the original's `name` dict, package
//! name → wanted state, with every problem reported against `name.<package>`. Planning and
//! applying are shared too, in `providers/packages.rs`.

use opsagent_recipe::{Kind, ParamReader, Pos};

use crate::fetch::Source;
pub(crate) use crate::providers::packages::Wanted;

/// How one package manager names its packages.
pub(crate) struct Names<'a> {
    /// The word in messages: "package", "gem".
    pub noun: &'a str,
    /// The hint for a missing or empty `name`, e.g. "give the packages, e.g. `name: { … }`".
    pub example: &'a str,
    /// Why a name is not one of this manager's: (message, hint).
    pub problem: &'a dyn Fn(&str) -> Option<(String, String)>,
    /// Two names are the same package when these agree (pip folds case and `-_.`).
    pub canonical: &'a dyn Fn(&str) -> String,
    /// Accept the original's `name==version` keys (with an empty value) as `name: version`.
    pub version_in_key: bool,
}

/// Reads `name` (required): each entry's name checked, listed once, its value read by `wanted`
/// (given the parameter path `name.<package>`, the position, and the value text).
pub(crate) fn read_names<W>(
    p: &mut ParamReader<'_>,
    names: &Names<'_>,
    mut wanted: impl FnMut(&mut ParamReader<'_>, &str, Option<Pos>, &str) -> Option<W>,
) -> Vec<(String, W)> {
    let pos = p.node("name").and_then(|n| n.pos);
    if !p.has("name") {
        p.report(
            Kind::MissingParameter,
            "name",
            None,
            "required parameter `name` is missing",
            Some(names.example.into()),
        );
        return Vec::new();
    }
    let Some(entries) = p.dict("name") else { return Vec::new() };
    if entries.is_empty() {
        p.report(Kind::BadValue, "name", pos, format!("no {} is given", names.noun), Some(names.example.into()));
    }
    let mut packages: Vec<(String, W)> = Vec::new();
    for entry in entries {
        let path = format!("name.{}", entry.key);
        let value = entry.value.unwrap_or_default();
        let (key, value) = match entry.key.split_once("==") {
            Some((k, v)) if names.version_in_key && value.is_empty() => (k.trim().to_string(), v.trim().to_string()),
            _ => (entry.key, value),
        };
        if let Some((message, hint)) = (names.problem)(&key) {
            p.report(Kind::BadValue, &path, pos, message, Some(hint));
            continue;
        }
        let canonical = (names.canonical)(&key);
        if let Some((other, _)) = packages.iter().find(|(n, _)| (names.canonical)(n) == canonical) {
            let (message, hint) = if *other == key {
                (format!("{} `{key}` is listed twice", names.noun), format!("keep one entry per {}", names.noun))
            } else {
                (
                    format!("{} `{key}` is listed twice (as `{other}` too)", names.noun),
                    format!(
                        "names differing only in case, `-`, `_` or `.` are the same {}; keep one entry",
                        names.noun
                    ),
                )
            };
            p.report(Kind::BadValue, &path, pos, message, Some(hint));
            continue;
        }
        if let Some(w) = wanted(p, &path, pos, &value) {
            packages.push((key, w));
        }
    }
    packages
}

/// What one package manager accepts as a package's value (beside empty, `latest`, `removed`).
pub(crate) struct Values<'a> {
    /// What `purged` means.
    pub purged: Purged,
    /// A value of another manager, refused with (kind, message, hint): an `.rpm` for apt.
    pub refuse: &'a dyn Fn(&str) -> Option<Refusal>,
    /// The package files it installs, if any.
    pub file: Option<FileKind<'a>>,
    /// The version a value means, if it is one (as written, or normalised: npm drops a `v`).
    pub version: &'a dyn Fn(&str) -> Option<String>,
    /// For any other value: "`VALUE` is not {not_a}", and the hint.
    pub not_a: &'a str,
    pub hint: &'a str,
}

/// A value refused: the kind of problem, the message and the hint.
pub(crate) type Refusal = (Kind, String, String);

/// What `purged` means to a package manager.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purged {
    /// Its own state: no configuration files left either (apt).
    OwnState,
    /// The same as `removed` (rpm keeps no configuration files apart).
    AsRemoved,
    /// Not a value.
    Refused,
}

/// The package files a manager installs.
pub(crate) struct FileKind<'a> {
    /// Lowercase name endings, e.g. `[".deb"]`.
    pub endings: &'a [&'a str],
    /// A path shown in the hints, e.g. `/srv/pkg_1.0_all.deb`.
    pub example: &'a str,
    /// "`SOURCE` is not {what}", e.g. "a `.deb` file", and the hint.
    pub what: &'a str,
    pub hint: &'a str,
}

/// Reads one package's wanted state, as `values` say (the `wanted` of [`read_names`]).
pub(crate) fn parse_wanted(
    p: &mut ParamReader<'_>,
    values: &Values<'_>,
    path: &str,
    pos: Option<Pos>,
    value: &str,
) -> Option<Wanted> {
    let value = value.trim();
    match (value, values.purged) {
        ("", _) => return Some(Wanted::Installed),
        ("latest", _) => return Some(Wanted::Latest),
        ("removed", _) | ("purged", Purged::AsRemoved) => return Some(Wanted::Removed),
        ("purged", Purged::OwnState) => return Some(Wanted::Purged),
        _ => {}
    }
    if let Some((kind, message, hint)) = (values.refuse)(value) {
        p.report(kind, path, pos, message, Some(hint));
        return None;
    }
    let lower = value.to_ascii_lowercase();
    if let Some(file) = &values.file {
        if value.contains("://") || value.starts_with('/') || file.endings.iter().any(|e| lower.ends_with(e)) {
            let source = Source::read(p, path, pos, value, file.example)?;
            if !file.endings.iter().any(|e| source.file_name().ends_with(e)) {
                p.report(Kind::BadValue, path, pos, format!("`{source}` is not {}", file.what), Some(file.hint.into()));
                return None;
            }
            return Some(Wanted::File(source));
        }
    }
    if let Some(version) = (values.version)(value) {
        return Some(Wanted::Version(version));
    }
    p.report(Kind::BadValue, path, pos, format!("`{value}` is not {}", values.not_a), Some(values.hint.into()));
    None
}

/// Refuses nothing.
pub(crate) fn refuse_none(_: &str) -> Option<Refusal> {
    None
}

/// Names compared as they are written.
pub(crate) fn as_written(name: &str) -> String {
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str, version_in_key: bool) -> (Vec<(String, String)>, Vec<String>) {
        let recipe = opsagent_recipe::parse_str(yaml).unwrap();
        let mut p = ParamReader::new(&recipe.states[0]);
        let names = Names {
            noun: "gem",
            example: "give the gems",
            problem: &|n| n.contains(' ').then(|| (format!("`{n}` is not a gem name"), "no spaces".to_string())),
            canonical: &|n| n.to_lowercase(),
            version_in_key,
        };
        let packages = read_names(&mut p, &names, |_, _, _, v| Some(v.to_string()));
        let errors = match p.finish(&["name"], &[]) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.iter().map(|d| d.message.clone()).collect(),
        };
        (packages, errors)
    }

    #[test]
    fn names_are_checked_listed_once_and_may_carry_their_version() {
        let yaml = "states:\n  - {id: g, module: common.gem.package, parameter: {name: {\"rake==13.0.6\": \"\", Rake: \"1\", \"a b\": \"\", x: latest}}}\n";
        let (packages, errors) = read(yaml, true);
        assert_eq!(packages, [("rake".to_string(), "13.0.6".to_string()), ("x".to_string(), "latest".to_string())]);
        assert_eq!(errors, ["gem `Rake` is listed twice (as `rake` too)", "`a b` is not a gem name"]);
        let (packages, _) = read(yaml, false);
        assert_eq!(packages[0], ("rake==13.0.6".to_string(), String::new()));
        let (_, errors) = read("states:\n  - {id: g, module: common.gem.package, parameter: {name: {}}}\n", true);
        assert_eq!(errors, ["no gem is given"]);
        let (_, errors) = read("states:\n  - {id: g, module: common.gem.package, parameter: {}}\n", true);
        assert_eq!(errors, ["required parameter `name` is missing"]);
    }
}

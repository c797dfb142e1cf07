//! What the modules that wrap another configuration tool (puppet, chef) share: reading the
//! original's `arguments` dict into command-line options, finding the tool, checking the version
//! a recipe asks for, and joining the output of several runs into one tail.

use std::path::Path;

use opsagent_recipe::{Kind, ParamReader};

use crate::process::{run_spec_any_exit, Spec, Tail, Termination};
use crate::{Ctx, StateError};

/// How a tool takes an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionStyle {
    /// `--key=value` (puppet).
    Equals,
    /// `--key value` (chef).
    Separate,
}

/// One entry of `arguments`: an option name without its dashes, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOption {
    pub key: String,
    pub value: Option<String>,
}

/// Reads the `arguments` dict. Keys may be written with or without their leading dashes; keys in
/// `reserved` (the options the module sets itself) are refused with the hint given beside them.
pub fn read_arguments(p: &mut ParamReader<'_>, reserved: &[(&str, &str)]) -> Vec<ToolOption> {
    let pos = p.node("arguments").and_then(|n| n.pos);
    let mut out = Vec::new();
    for entry in p.dict("arguments").unwrap_or_default() {
        let key = entry.key.trim().trim_start_matches('-').to_string();
        let param = format!("arguments.{}", entry.key);
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            p.report(
                Kind::BadValue,
                &param,
                pos,
                format!("`{}` is not an option name", entry.key),
                Some(
                    "write the option's long name without its value, e.g. `modulepath: /etc/puppet/code/modules`"
                        .into(),
                ),
            );
            continue;
        }
        let bare = key.strip_prefix("no-").unwrap_or(&key);
        if let Some((_, hint)) = reserved.iter().find(|(r, _)| *r == key || *r == bare) {
            p.report(
                Kind::BadValue,
                &param,
                pos,
                format!("option `--{key}` is set by opsagent itself"),
                Some(hint.to_string()),
            );
            continue;
        }
        out.push(ToolOption { key, value: entry.value.map(|v| v.trim().to_string()) });
    }
    out
}

/// The command-line words of `options`: an empty value or `true` gives `--key`, `false` gives
/// `--no-key`, anything else `--key=value` or `--key value` depending on `style`.
pub fn option_args(options: &[ToolOption], style: OptionStyle) -> Vec<String> {
    let mut out = Vec::new();
    for option in options {
        match option.value.as_deref() {
            None | Some("") | Some("true") => out.push(format!("--{}", option.key)),
            Some("false") => out.push(format!("--no-{}", option.key)),
            Some(value) => match style {
                OptionStyle::Equals => out.push(format!("--{}={value}", option.key)),
                OptionStyle::Separate => {
                    out.push(format!("--{}", option.key));
                    out.push(value.to_string());
                }
            },
        }
    }
    out
}

/// `name` as found on `PATH`, else in one of `extra_dirs` (where vendors' packages put their tools
/// outside `PATH`, e.g. `/opt/puppetlabs/bin`); else `name` itself, whose start then fails as a
/// missing tool naming it.
pub fn find_program(name: &str, extra_dirs: &[&str]) -> String {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name))))
        .unwrap_or(false);
    if on_path {
        return name.to_string();
    }
    extra_dirs
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable(candidate))
        .map(|candidate| candidate.display().to_string())
        .unwrap_or_else(|| name.to_string())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Whether `installed` (a tool's version output) is the version `want` names: `7.23` matches
/// `7.23.0` and `Chef Infra Client: 18.2.7` matches `18.2`, but `7.2` does not match `7.23.0`.
pub fn version_matches(installed: &str, want: &str) -> bool {
    installed
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .any(|word| word == want || word.strip_prefix(want).is_some_and(|rest| rest.starts_with(['.', '-'])))
}

/// Fails unless `program --version` reports the version `want`.
pub async fn check_version(ctx: &Ctx, program: &str, want: &str, install_hint: &str) -> Result<(), StateError> {
    let spec = Spec { program: program.to_string(), args: vec!["--version".into()], ..Spec::default() };
    let output = run_spec_any_exit(ctx, &spec, install_hint).await?;
    let text = String::from_utf8_lossy(&output.stdout.bytes).trim().to_string();
    if output.termination != Termination::Exited(0) {
        return Err(StateError::ToolFailed {
            command: format!("{program} --version"),
            problem: format!("{}", output.termination),
            stdout: output.stdout,
            stderr: output.stderr,
        });
    }
    if version_matches(&text, want) {
        return Ok(());
    }
    Err(StateError::Package {
        package: program.to_string(),
        problem: format!(
            "is version {}, the recipe asks for {want}; opsagent does not install it: install that version in an earlier state, or change `version`",
            text.lines().next().unwrap_or("?")
        ),
    })
}

/// Several runs' output as one tail of at most `max` bytes.
pub fn join_tails(tails: &[Tail], max: usize) -> Tail {
    let mut bytes = Vec::new();
    let mut dropped = 0;
    for tail in tails {
        dropped += tail.dropped;
        bytes.extend_from_slice(&tail.bytes);
    }
    let mut joined = Tail::from_bytes(bytes, max);
    joined.dropped += dropped;
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(key: &str, value: Option<&str>) -> ToolOption {
        ToolOption { key: key.into(), value: value.map(str::to_string) }
    }

    #[test]
    fn options_become_words_in_each_style() {
        let options = [
            opt("modulepath", Some("/a/b")),
            opt("verbose", None),
            opt("show_diff", Some("true")),
            opt("splay", Some("false")),
        ];
        assert_eq!(
            option_args(&options, OptionStyle::Equals),
            ["--modulepath=/a/b", "--verbose", "--show_diff", "--no-splay"]
        );
        assert_eq!(
            option_args(&options, OptionStyle::Separate),
            ["--modulepath", "/a/b", "--verbose", "--show_diff", "--no-splay"]
        );
    }

    #[test]
    fn versions_match_by_whole_components() {
        assert!(version_matches("7.23.0", "7.23"));
        assert!(version_matches("7.23.0", "7.23.0"));
        assert!(version_matches("7.23.0\n", "7"));
        assert!(!version_matches("7.23.0", "7.2"));
        assert!(!version_matches("7.23.0", "3.7.3"));
        assert!(version_matches("Chef Infra Client: 18.2.7", "18.2"));
        assert!(version_matches("Chef: 12.0.1", "12.0.1"));
    }

    #[test]
    fn joined_tails_keep_the_end_and_count_the_rest() {
        let a = Tail { bytes: b"abc".to_vec(), dropped: 2 };
        let b = Tail { bytes: b"def".to_vec(), dropped: 0 };
        let joined = join_tails(&[a, b], 4);
        assert_eq!(joined.bytes, b"cdef");
        assert_eq!(joined.dropped, 4);
    }
}

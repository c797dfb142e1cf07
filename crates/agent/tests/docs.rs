//! Repository tidiness: every Rust file opens with a `//!` line, and the module reference
//! (`docs/modules.md`) is generated from the modules' own docs. `OPSAGENT_BLESS=1 cargo test
//! --test docs` rewrites it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 10);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc line: {missing:?}");
}

/// The reference as generated from `crates/states/src/modules/*.rs`, in the order of `SUPPORTED`.
fn generated_reference() -> String {
    let modules = root().join("crates/states/src/modules");
    let mod_rs = std::fs::read_to_string(modules.join("mod.rs")).unwrap();
    let list = mod_rs.split("pub const SUPPORTED: &[&str] = &[").nth(1).unwrap().split("];").next().unwrap();
    let ids: Vec<&str> = list.split(',').map(|s| s.trim().trim_matches('"')).filter(|s| !s.is_empty()).collect();
    let mut out = String::from("# Module reference\n\n<!-- Generated from the `//!` docs of crates/states/src/modules/*.rs by `OPSAGENT_BLESS=1 cargo test --test docs`; do not edit. -->\n\n");
    for id in ids {
        let file = modules.join(format!("{}.rs", id.replace('.', "_")));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("no file for module {id}: {}", file.display()));
        let doc: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.strip_prefix("//! ").unwrap_or(l.strip_prefix("//!").unwrap_or(l)))
            .collect();
        out.push_str(&format!("## `{id}`\n\n"));
        let mut lines = doc.into_iter();
        let first = lines.next().unwrap_or_default();
        // The first line reads "`id` — summary": keep the summary.
        let summary = first.split_once(" — ").map(|(_, s)| s).unwrap_or(first);
        let mut chars = summary.chars();
        out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        out.push_str(chars.as_str());
        out.push('\n');
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[test]
fn module_reference_is_up_to_date() {
    let path = root().join("docs/modules.md");
    let want = generated_reference();
    if std::env::var_os("OPSAGENT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/modules.md is stale: run `OPSAGENT_BLESS=1 cargo test -p opsagent --test docs`");
}

//! Watched files (the original's `watch`): SHA-256 fingerprints of files a state watches, kept
//! under `<state dir>/watch/<state id>.json` and saved only after the state succeeds, so that an
//! action that failed is tried again next round. A file never fingerprinted counts as changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ctx::Owner;
use crate::{fsutil, Ctx, StateError};

/// The watched files of `state_id` whose content differs from the last saved fingerprint.
pub fn changed_files(ctx: &Ctx, state_id: &str, paths: &[PathBuf]) -> Result<Vec<String>, StateError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let saved: BTreeMap<String, String> = std::fs::read_to_string(file_of(ctx, state_id))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let mut changed = Vec::new();
    for path in paths {
        let key = path.display().to_string();
        if saved.get(&key) != Some(&fingerprint(path)?) {
            changed.push(key);
        }
    }
    Ok(changed)
}

/// Records the current fingerprints of `paths` for `state_id` (after the state succeeded).
pub fn save(ctx: &Ctx, state_id: &str, paths: &[PathBuf]) -> Result<(), StateError> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut fingerprints = BTreeMap::new();
    for path in paths {
        fingerprints.insert(path.display().to_string(), fingerprint(path)?);
    }
    let file = file_of(ctx, state_id);
    let dir = fsutil::parent_of(&file);
    std::fs::create_dir_all(dir).map_err(StateError::io("creating", dir))?;
    let text = serde_json::to_string(&fingerprints).unwrap_or_default();
    fsutil::write_atomic(&file, text.as_bytes(), 0o600, Owner::default()).map_err(StateError::io("writing", &file))
}

fn file_of(ctx: &Ctx, state_id: &str) -> PathBuf {
    ctx.round.state_dir.join("watch").join(format!("{}.json", state_id.replace('/', "-")))
}

/// SHA-256 of a file's content (`absent` when there is no file).
fn fingerprint(path: &Path) -> Result<String, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("absent".into()),
        Err(e) => Err(StateError::io("reading the watched file", path)(e)),
    }
}

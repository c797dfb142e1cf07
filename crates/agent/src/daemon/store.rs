//! The agent's other durable state under `<state dir>`: the recipe cache (an agent rebooted
//! without a hub runs its cached recipe), the DONEs received per recipe version, and the round
//! counter. All written with `write_atomic`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use opsagent_states::ctx::Owner;
use opsagent_states::fsutil::write_atomic;

/// Files of the agent's state directory.
pub struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    pub fn open(dir: &Path) -> anyhow::Result<StateFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(StateFiles { dir: dir.to_path_buf() })
    }

    /// The cached recipe (the wire form, as received), if any.
    pub fn recipe(&self) -> anyhow::Result<Option<serde_json::Value>> {
        let path = self.dir.join("recipe.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save_recipe(&self, recipe: &serde_json::Value) -> anyhow::Result<()> {
        self.write("recipe.json", &recipe.to_string())
    }

    /// The DONEs received for `version`.
    pub fn dones(&self, version: u64) -> BTreeSet<String> {
        let path = self.dir.join("dones.json");
        let Ok(text) = std::fs::read_to_string(path) else { return BTreeSet::new() };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { return BTreeSet::new() };
        if value["recipe_version"].as_u64() != Some(version) {
            return BTreeSet::new();
        }
        value["ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(|i| i.as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    pub fn save_dones(&self, version: u64, ids: &BTreeSet<String>) -> anyhow::Result<()> {
        self.write("dones.json", &serde_json::json!({ "recipe_version": version, "ids": ids }).to_string())
    }

    /// The number of the last round started (0 before the first).
    pub fn last_round(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("round")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
    }

    pub fn save_round(&self, round: u64) -> anyhow::Result<()> {
        self.write("round", &round.to_string())
    }

    fn write(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        write_atomic(&path, text.as_bytes(), 0o600, Owner::default())
            .with_context(|| format!("writing {}", path.display()))
    }
}

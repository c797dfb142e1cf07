//! `meta.wait` — blocks the round until the hub says this state is DONE (for the current recipe
//! version); with `opsagent apply`, until `--done ID` names it.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `state` | list of strings | — | the states (on other instances) this wait is for, e.g. `@{db.state.3}`; the hub releases the wait once all of them succeeded |
//! | `timeout` | seconds | none with a hub; 0 with `apply` | ours: fail the wait after this long |
//!
//! "Already fine" means released; a release that arrived before the wait was reached counts.
//!
//! ```yaml
//! - id: wait-for-db
//!   module: meta.wait
//!   parameter: { state: ["@{db.state.2}"], timeout: 600 }
//! ```

use std::time::Duration;

use opsagent_recipe::{Diagnostic, ParamReader, State};

/// A validated `meta.wait`.
#[derive(Debug, Clone)]
pub struct Wait {
    /// References to the states waited for (the hub resolves them).
    pub refs: Vec<String>,
    pub timeout: Option<Duration>,
}

impl Wait {
    pub fn from_params(state: &State) -> Result<(Wait, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let refs = p.string_list("state").unwrap_or_default();
        let timeout = p.u64("timeout").map(Duration::from_secs);
        let warnings = p.finish(&["state", "timeout"], &[])?;
        Ok((Wait { refs, timeout }, warnings))
    }
}

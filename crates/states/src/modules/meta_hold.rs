//! `meta.hold` — ours, written by the hub, never by hand: it stands in for a state whose links the
//! hub cannot resolve yet (`@{db.PrivateIpAddress}` of an instance that never connected). The
//! round stops there, reported `waiting` with the reason, until the hub sends a new recipe in which
//! the state is rendered; nothing else releases it.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `reason` | string | — | what the state waits for, e.g. "link `@{db.PrivateIpAddress}` …" |
//! | `module` | string | — | the module of the state held |
//!
//! ```yaml
//! - id: app-config
//!   module: meta.hold
//!   parameter: { reason: "link `@{db.PrivateIpAddress}` is not resolved yet: instance `db-1` has never connected", module: linux.file }
//! ```

use opsagent_recipe::{Diagnostic, ParamReader, State};

/// A validated `meta.hold`.
#[derive(Debug, Clone)]
pub struct Hold {
    pub reason: String,
    /// The module of the state held, for messages.
    pub module: Option<String>,
}

impl Hold {
    pub fn from_params(state: &State) -> Result<(Hold, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let reason = p.string("reason").unwrap_or_else(|| "held by the hub".to_string());
        let module = p.string("module");
        let warnings = p.finish(&["reason", "module"], &[])?;
        Ok((Hold { reason, module }, warnings))
    }
}

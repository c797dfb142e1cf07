//! `meta.comment` — a note in the recipe. It is never run and always reported `skipped`.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `comment` | string | — | free text |
//!
//! ```yaml
//! - id: note
//!   module: meta.comment
//!   parameter: { comment: "the web tier starts here" }
//! ```

use opsagent_recipe::{Diagnostic, ParamReader, State};

/// A validated `meta.comment`.
#[derive(Debug, Clone)]
pub struct Comment {
    pub comment: Option<String>,
}

impl Comment {
    pub fn from_params(state: &State) -> Result<(Comment, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let comment = p.string("comment");
        let warnings = p.finish(&["comment"], &[])?;
        Ok((Comment { comment }, warnings))
    }
}

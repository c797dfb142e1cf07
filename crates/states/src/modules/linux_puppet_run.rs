//! `linux.puppet.run` — one `puppet agent` run as the machine's Puppet configuration sets it up.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `arguments` | dict | — | puppet options: `tags: "apache::server"` gives `--tags=apache::server`; an empty value or `true` gives `--KEY`, `false` gives `--no-KEY` |
//! | `version` | string | — | the Puppet version required, checked with `puppet --version` (opsagent does not install Puppet) |
//!
//! As `linux.puppet.agent`, without naming a server: Puppet's own configuration
//! (`puppet.conf`) says which (the original ran Salt's `puppet.run`, which runs `puppet agent`
//! once). Dry run first (`--noop`), then the real run when it predicts changes; exit statuses as
//! in `linux.puppet.apply`.
//!
//! ```yaml
//! - id: puppet-round
//!   module: linux.puppet.run
//!   parameter: { arguments: { tags: "basefiles::edit,apache::server" } }
//! ```

use opsagent_recipe::{Diagnostic, ParamReader, State};

use crate::providers::puppet::{Invocation, Subcommand, RESERVED_OPTIONS};
use crate::providers::wrapped::read_arguments;
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `linux.puppet.run`.
#[derive(Debug, Clone)]
pub struct PuppetRun {
    pub invocation: Invocation,
}

impl PuppetRun {
    pub fn from_params(state: &State) -> Result<(PuppetRun, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let options = read_arguments(&mut p, RESERVED_OPTIONS);
        let version = p.string("version").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let warnings = p.finish(&["arguments", "version"], &[])?;
        let runs = vec![Subcommand::Agent { server: None }];
        Ok((PuppetRun { invocation: Invocation { runs, options, version } }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.invocation.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.invocation.apply(ctx, plan).await
    }
}

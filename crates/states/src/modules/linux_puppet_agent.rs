//! `linux.puppet.agent` — one `puppet agent` run against a Puppet server, reporting what it changed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `server` | host name | required | `--server=SERVER`; as Puppet requires, the server's name (its certificate's), not its IP address |
//! | `arguments` | dict | — | puppet options: `environment: staging` gives `--environment=staging`; an empty value or `true` gives `--KEY`, `false` gives `--no-KEY` |
//! | `version` | string | — | the Puppet version required, checked with `puppet --version` (opsagent does not install Puppet) |
//!
//! Runs `puppet agent --onetime --no-daemonize --verbose --no-usecacheonfailure --no-splay
//! --detailed-exitcodes --color=false --server=SERVER`, first with `--noop` (Puppet's dry run):
//! "already fine" means it predicts no change; otherwise the real run follows, and its exit status
//! says changed (2), nothing changed (0) or failed (1, 4, 6; Puppet's errors are in the output
//! tails). `--test` shows the resources the dry run would change. An unreachable server, or a
//! certificate the server has not signed, fails the state with Puppet's own message. Everything
//! else is as in `linux.puppet.apply`.
//!
//! ```yaml
//! - id: puppet-round
//!   module: linux.puppet.agent
//!   parameter: { server: puppet.example.com, arguments: { environment: production } }
//! ```

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use crate::providers::puppet::{Invocation, Subcommand, RESERVED_OPTIONS};
use crate::providers::wrapped::read_arguments;
use crate::{Ctx, Outcome, Plan, StateError};

/// The options `linux.puppet.agent` sets itself: puppet's, and the server.
const RESERVED: &[(&str, &str)] = &[("server", "give the server in the `server` parameter")];

/// A validated `linux.puppet.agent`.
#[derive(Debug, Clone)]
pub struct PuppetAgent {
    pub invocation: Invocation,
}

impl PuppetAgent {
    pub fn from_params(state: &State) -> Result<(PuppetAgent, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("server").and_then(|n| n.pos);
        let server = p
            .required_string("server", "name the Puppet server, e.g. `server: puppet.example.com`")
            .map(|s| s.trim().to_string());
        if let Some(server) = &server {
            if !valid_host(server) {
                p.report(
                    Kind::BadValue,
                    "server",
                    pos,
                    format!("`{server}` is not a host name"),
                    Some("give the server's name, e.g. `puppet.example.com` (its port goes in `arguments: { serverport: 8140 }`)".into()),
                );
            }
        }
        let reserved: Vec<(&str, &str)> = RESERVED_OPTIONS.iter().chain(RESERVED).copied().collect();
        let options = read_arguments(&mut p, &reserved);
        let version = p.string("version").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let warnings = p.finish(&["server", "arguments", "version"], &[])?;
        let runs = vec![Subcommand::Agent { server }];
        Ok((PuppetAgent { invocation: Invocation { runs, options, version } }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.invocation.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.invocation.apply(ctx, plan).await
    }
}

/// A host name or address as Puppet takes it: no spaces, no scheme, no leading dash.
pub(crate) fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
}

//! `linux.chef.client` — one `chef-client` run against a Chef server, reporting what Chef changed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `server` | URL | required | `--server URL`, e.g. `https://chef.example.com/organizations/shop` |
//! | `client_key` | absolute path | — | `--client_key PATH`: the client's key for the server |
//! | `config` | absolute path | — | `--config PATH` (`client.rb`) |
//! | `arguments` | dict | — | chef options: `log_level: warn` gives `--log_level warn`; an empty value or `true` gives `--KEY`, `false` gives `--no-KEY`. Chef 15 and later need `chef-license: accept` |
//! | `version` | string | — | the Chef version required (`18.2` matches `18.2.7`); checked with `chef-client --version`. The original installed it with Chef's install script: opsagent does not install Chef |
//!
//! Runs `chef-client --once --no-color --force-formatter --format doc --server URL …`, first with
//! `--why-run` (Chef's dry run): "already fine" means it would update no resource (its closing
//! `0/N resources would have been updated`). Otherwise the real run follows; it succeeded when
//! `chef-client` exits 0 (35 and 37, a reboot scheduled or needed, count as success with a
//! comment), and its `N/M resources updated` and resource lines (`* file[/etc/motd] action create`,
//! `- update content …`) are reported as the changes. Any other exit status fails the state with
//! Chef's output in the tails (hidden for a `sensitive` state, as are the resources). `--test` shows
//! what the dry run would update. `chef-client` is looked up on `PATH`, then in `/opt/chef/bin`;
//! if it is missing the state fails naming it.
//!
//! ```yaml
//! - id: chef-round
//!   module: linux.chef.client
//!   parameter:
//!     server: https://chef.example.com/organizations/shop
//!     client_key: /etc/chef/client.pem
//!     arguments: { chef-license: accept, log_level: warn }
//! ```

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use crate::providers::chef::{Chef, Run, RESERVED_OPTIONS};
use crate::providers::wrapped::read_arguments;
use crate::{Ctx, Outcome, Plan, StateError};

/// The options `linux.chef.client` takes as parameters.
const RESERVED: &[(&str, &str)] = &[
    ("server", "give the server in the `server` parameter"),
    ("client_key", "give the key in the `client_key` parameter"),
    ("config", "give the configuration file in the `config` parameter"),
];

/// A validated `linux.chef.client`.
#[derive(Debug, Clone)]
pub struct ChefClient {
    pub chef: Chef,
}

impl ChefClient {
    pub fn from_params(state: &State) -> Result<(ChefClient, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("server").and_then(|n| n.pos);
        let server = p
            .required_string(
                "server",
                "give the Chef server's URL, e.g. `server: https://chef.example.com/organizations/shop`",
            )
            .map(|s| s.trim().to_string());
        if let Some(server) = &server {
            if !valid_url(server) {
                p.report(
                    Kind::BadValue,
                    "server",
                    pos,
                    format!("`{server}` is not an http(s) URL"),
                    Some("give the server's URL, e.g. `https://chef.example.com/organizations/shop`".into()),
                );
            }
        }
        let client_key = absolute(&mut p, "client_key");
        let config = absolute(&mut p, "config");
        let reserved: Vec<(&str, &str)> = RESERVED_OPTIONS.iter().chain(RESERVED).copied().collect();
        let options = read_arguments(&mut p, &reserved);
        let version = p.string("version").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let warnings = p.finish(&["server", "client_key", "config", "arguments", "version"], &[])?;
        let run = Run::Client { server: server.unwrap_or_default(), client_key, config };
        Ok((ChefClient { chef: Chef { run, options, version } }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.chef.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.chef.apply(ctx, plan).await
    }
}

/// An optional absolute path parameter (empty counts as absent, as the original's IDE sent it).
pub(crate) fn absolute(p: &mut ParamReader<'_>, name: &str) -> Option<String> {
    let pos = p.node(name).and_then(|n| n.pos);
    let value = p.string(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())?;
    check_absolute(p, name, pos, &value).map(|path| path.display().to_string())
}

/// An http(s) URL without spaces.
pub(crate) fn valid_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace))
}

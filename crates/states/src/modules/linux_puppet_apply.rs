//! `linux.puppet.apply` — applies Puppet manifests with `puppet apply`, reporting what Puppet changed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `manifests` | list of absolute paths | required | each is applied by its own `puppet apply`, in order |
//! | `arguments` | dict | — | puppet options: `modulepath: /a/b` gives `--modulepath=/a/b`; an empty value or `true` gives `--KEY`, `false` gives `--no-KEY` |
//! | `version` | string | — | the Puppet version required (`7.23` matches `7.23.0`); checked with `puppet --version`. The original installed it as a gem: opsagent does not install Puppet (an earlier `linux.apt.package` state can) |
//!
//! Each manifest is first run with `--noop` (Puppet's dry run): "already fine" means it predicts
//! no change. Otherwise `puppet apply --detailed-exitcodes` runs it for real: exit status 2 means
//! changed, 0 nothing changed, 4 or 6 failed resources, 1 that Puppet could not run (a syntax
//! error, a missing file): the state then fails with Puppet's errors in its output tails. `--test`
//! shows the resources the dry run would change and changes nothing. The resources changed are
//! listed in the report; Puppet's stdout and stderr are kept as tails (hidden for a `sensitive`
//! state, as are the resources). A converged machine costs one dry run per manifest. `puppet` is
//! looked up on `PATH`, then in `/opt/puppetlabs/bin`; if it is missing the state fails naming it.
//! opsagent sets `--detailed-exitcodes`, `--color=false` and (for `--test`) `--noop` itself;
//! `arguments` may not set them.
//!
//! ```yaml
//! - id: web-manifest
//!   module: linux.puppet.apply
//!   parameter:
//!     manifests: [/etc/puppet/code/site.pp]
//!     arguments: { modulepath: /etc/puppet/code/modules, tags: "apache::server" }
//! ```

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use crate::providers::puppet::{Invocation, Subcommand, RESERVED_OPTIONS};
use crate::providers::wrapped::read_arguments;
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `linux.puppet.apply`.
#[derive(Debug, Clone)]
pub struct PuppetApply {
    pub invocation: Invocation,
}

impl PuppetApply {
    pub fn from_params(state: &State) -> Result<(PuppetApply, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("manifests").and_then(|n| n.pos);
        let mut runs = Vec::new();
        match p.string_list("manifests") {
            None if !p.has("manifests") => p.report(
                Kind::MissingParameter,
                "manifests",
                None,
                "required parameter `manifests` is missing",
                Some("list the manifest files, e.g. `manifests: [/etc/puppet/code/site.pp]`".into()),
            ),
            None => {}
            Some(list) if list.is_empty() => p.report(
                Kind::BadValue,
                "manifests",
                pos,
                "`manifests` lists no manifest",
                Some("list at least one manifest file".into()),
            ),
            Some(list) => {
                for (i, manifest) in list.iter().enumerate() {
                    if let Some(path) = check_absolute(&mut p, &format!("manifests[{i}]"), pos, manifest) {
                        runs.push(Subcommand::Apply { manifest: path.display().to_string() });
                    }
                }
            }
        }
        let options = read_arguments(&mut p, RESERVED_OPTIONS);
        let version = p.string("version").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let warnings = p.finish(&["manifests", "arguments", "version"], &[])?;
        Ok((PuppetApply { invocation: Invocation { runs, options, version } }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.invocation.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.invocation.apply(ctx, plan).await
    }
}

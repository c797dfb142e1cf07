//! `linux.chef.solo` — one `chef-solo` run of local cookbooks, reporting what Chef changed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `config` | absolute path | — | `--config PATH` (`solo.rb`: where the cookbooks are, what to run); recommended |
//! | `override-runlist` | string | — | `--override-runlist ITEMS`, e.g. `recipe[web::default]`: run these instead, this once (`override_runlist`, as the original's documentation spells it, is read too) |
//! | `recipe_url` | URL or absolute path | — | `--recipe-url`: a gzipped tarball of cookbooks that chef fetches and unpacks first |
//! | `arguments` | dict | — | chef options: `log_level: warn` gives `--log_level warn`; an empty value or `true` gives `--KEY`, `false` gives `--no-KEY`. Chef 15 and later need `chef-license: accept` |
//! | `version` | string | — | the Chef version required, checked with `chef-solo --version` (opsagent does not install Chef) |
//!
//! Runs `chef-solo --no-color --force-formatter --format doc …`, first with `--why-run`; the
//! result is read as in `linux.chef.client` (dry run first, "already fine" when it would update no
//! resource; exit status 0, 35 or 37 is success; the updated resources are the changes).
//! `chef-solo` is looked up on `PATH`, then in `/opt/chef/bin`; if it is missing the state fails
//! naming it. With `recipe_url`, the dry run fetches the tarball too.
//!
//! ```yaml
//! - id: cookbooks
//!   module: linux.chef.solo
//!   parameter: { config: /etc/chef/solo.rb, override-runlist: "recipe[web::default]",
//!                arguments: { chef-license: accept } }
//! ```

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_chef_client::{absolute, valid_url};
use crate::providers::chef::{Chef, Run, RESERVED_OPTIONS};
use crate::providers::wrapped::read_arguments;
use crate::{Ctx, Outcome, Plan, StateError};

/// The options `linux.chef.solo` takes as parameters.
const RESERVED: &[(&str, &str)] = &[
    ("config", "give the configuration file in the `config` parameter"),
    ("override-runlist", "give the run list in the `override-runlist` parameter"),
    ("recipe-url", "give the tarball in the `recipe_url` parameter"),
];

/// A validated `linux.chef.solo`.
#[derive(Debug, Clone)]
pub struct ChefSolo {
    pub chef: Chef,
}

impl ChefSolo {
    pub fn from_params(state: &State) -> Result<(ChefSolo, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let config = absolute(&mut p, "config");
        // The original's documentation spells it `override_runlist`: both are read.
        let key = if p.has("override_runlist") && !p.has("override-runlist") {
            "override_runlist"
        } else {
            "override-runlist"
        };
        let runlist_pos = p.node(key).and_then(|n| n.pos);
        let override_runlist = p.string(key).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(list) = &override_runlist {
            if list.chars().any(char::is_whitespace) {
                p.report(
                    Kind::BadValue,
                    key,
                    runlist_pos,
                    format!("`{list}` is not a run list"),
                    Some("separate items with commas, without spaces: `recipe[web::default],role[db]`".into()),
                );
            }
        }
        let url_pos = p.node("recipe_url").and_then(|n| n.pos);
        let recipe_url = p.string("recipe_url").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(url) = &recipe_url {
            let local = url.starts_with('/') && !url.chars().any(char::is_whitespace);
            if !valid_url(url) && !local {
                p.report(
                    Kind::BadValue,
                    "recipe_url",
                    url_pos,
                    format!("`{url}` is not an http(s) URL or an absolute path"),
                    Some("e.g. `recipe_url: https://example.com/cookbooks.tgz`".into()),
                );
            }
        }
        let reserved: Vec<(&str, &str)> = RESERVED_OPTIONS.iter().chain(RESERVED).copied().collect();
        let options = read_arguments(&mut p, &reserved);
        let version = p.string("version").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let warnings =
            p.finish(&["config", "override-runlist", "override_runlist", "recipe_url", "arguments", "version"], &[])?;
        let run = Run::Solo { config, override_runlist, recipe_url };
        Ok((ChefSolo { chef: Chef { run, options, version } }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        self.chef.check(ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        self.chef.apply(ctx, plan).await
    }
}

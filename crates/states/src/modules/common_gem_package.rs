//! `common.gem.package` — Ruby gems installed (any version, a given one, the newest, a local `.gem`) or removed, with `gem`.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | dict: gem → wanted | required | the original's `[{"key": gem, "value": v}]` list or a plain mapping; see below |
//! | `source` | URL | RubyGems' configured sources | ours: the only gem source to use (`gem --clear-sources --source URL`), e.g. an internal mirror or a `file:///` directory made by `gem generate_index` |
//!
//! What each gem may be given:
//!
//! | value | means |
//! |---|---|
//! | empty or absent | installed, any version (the source's newest when it must be installed) |
//! | a version, e.g. `13.0.6` | that version installed (gems live side by side: other installed versions stay) |
//! | `latest` | the source's newest version installed |
//! | `removed` | no version installed (`gem uninstall --all --executables`) |
//! | `/path/name-1.0.0.gem`, `file://` or `https://host/name-1.0.0.gem` | installed from that file (as `gem build` makes it), at its version; the file's gem name must be the entry's name; a URL is downloaded into the agent's cache (TLS verified) and revalidated once per round |
//!
//! "Already fine" means `gem list --local` shows every gem as wanted. `check` asks the source which
//! versions it has (`gem list --remote --exact --all`, so an unknown gem or version fails before
//! anything changes) and reads a `.gem` file's name and version (`gem spec`); `--test` lists each
//! change: `create gem (install 1.0.0)`, `update gem (install 1.1.0 beside 1.0.0)`, `remove gem
//! (uninstall 1.0.0)`, with ` from FILE` for a file. `apply` installs everything in one `gem install
//! --no-document` call (`name:version` each), then one `gem uninstall`, and reads `gem list`
//! again to verify. Gems go where `gem` puts them for the agent's user (`GEM_HOME` is honoured).
//!
//! `gem` must be installed (the Debian package `ruby`); a missing one fails the state, naming it.
//! The original installed `rubygems` first and split `name==version` entries into separate steps.
//!
//! ```yaml
//! - id: tools
//!   module: common.gem.package
//!   parameter:
//!     name: { bundler: "", rake: "13.0.6", rubocop: latest, sass: removed }
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::packages::{as_written, parse_wanted, read_names, refuse_none, FileKind, Names, Purged, Values, Wanted};
use crate::process::Output;
use crate::providers::gem;
use crate::providers::packages::{self, Installed, Op, PackageManager, Request, Resolved, Versions};
use crate::{Ctx, Outcome, Plan, StateError};

/// A validated `common.gem.package`.
#[derive(Debug, Clone)]
pub struct GemPackage {
    /// In recipe order.
    pub packages: Vec<(String, Wanted)>,
    pub source: Option<String>,
}

/// What a gem may be given.
const VALUES: Values<'static> = Values {
    purged: Purged::Refused,
    refuse: &refuse_none,
    file: Some(FileKind {
        endings: &[".gem"],
        example: "/srv/x-1.0.0.gem",
        what: "a `.gem` file",
        hint: "give a gem file made by `gem build`, ending in `.gem`",
    }),
    version: &|value| {
        let is_version = value.starts_with(|c: char| c.is_ascii_digit())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        is_version.then(|| value.to_string())
    },
    not_a: "a version, `latest`, `removed` or a `.gem` path",
    hint: "leave it empty for any version, or give e.g. `13.0.6`, `latest`, `removed`, `/srv/x-1.0.0.gem`",
};

impl GemPackage {
    pub fn from_params(state: &State) -> Result<(GemPackage, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        // The original's `name==version` keys are read as `name: version`.
        let packages = read_names(
            &mut p,
            &Names {
                noun: "gem",
                example: "give the gems, e.g. `name: { rake: \"13.0.6\", bundler: latest }`",
                problem: &|name| {
                    (!is_gem_name(name)).then(|| {
                        (
                            format!("`{name}` is not a gem name"),
                            "gem names are letters, digits, `-`, `_` and `.`, e.g. `rake`".into(),
                        )
                    })
                },
                canonical: &as_written,
                version_in_key: true,
            },
            |p, path, pos, value| parse_wanted(p, &VALUES, path, pos, value),
        );
        let source_pos = p.node("source").and_then(|n| n.pos);
        let source = p.string("source").filter(|s| !s.trim().is_empty());
        if let Some(url) = &source {
            if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file://")) {
                p.report(
                    Kind::BadValue,
                    "source",
                    source_pos,
                    format!("`{url}` is not a gem source URL"),
                    Some("give the source's URL, e.g. `https://rubygems.org/` or `file:///srv/gems/`".into()),
                );
            }
        }
        let warnings = p.finish(&["name", "source"], &[])?;
        Ok((GemPackage { packages, source }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        packages::check(self, ctx).await
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        packages::apply(self, ctx, plan).await
    }

    fn source_args(&self) -> Vec<String> {
        match &self.source {
            Some(url) => vec!["--clear-sources".into(), "--source".into(), url.clone()],
            None => Vec::new(),
        }
    }
}

impl PackageManager for GemPackage {
    fn packages(&self) -> &[(String, Wanted)] {
        &self.packages
    }

    fn program(&self) -> String {
        "gem".into()
    }

    fn remove_word(&self) -> &'static str {
        "uninstall"
    }

    fn noun(&self) -> &'static str {
        "gem"
    }

    fn compare(&self, a: &str, b: &str) -> Ordering {
        gem::compare_versions(a, b)
    }

    fn matches(&self, have: &str, wanted: &str) -> bool {
        have == wanted
    }

    fn versions(&self) -> Versions {
        Versions::SideBySide
    }

    async fn installed(&self, ctx: &Ctx, _names: &[&str]) -> Result<HashMap<String, Installed>, StateError> {
        let listed = gem::installed(ctx).await?;
        Ok(listed
            .into_iter()
            .map(|(name, versions)| {
                let now = Installed::at(&name, versions);
                (name, now)
            })
            .collect())
    }

    async fn file_identity(&self, ctx: &Ctx, file: &Path) -> Result<(String, String), StateError> {
        gem::file_identity(ctx, file).await
    }

    /// The version the sources give for each: the one asked for, else their newest.
    async fn resolve(&self, ctx: &Ctx, requests: &[Request<'_>]) -> Result<Vec<Resolved>, StateError> {
        let mut out = Vec::new();
        for request in requests {
            let version = match request.wanted {
                Wanted::Version(v) => Some(v.as_str()),
                _ => None,
            };
            let version = gem::offered(ctx, request.name, version, &self.source_args()).await?;
            out.push(Resolved { package: request.name.to_string(), version });
        }
        Ok(out)
    }

    async fn install(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut args = vec!["install".to_string(), "--no-document".into()];
        args.extend(self.source_args());
        args.extend(ops.iter().map(|op| op.install_arg(":")));
        Ok(vec![gem::run(ctx, args).await?])
    }

    async fn remove(&self, ctx: &Ctx, ops: &[&Op]) -> Result<Vec<Output>, StateError> {
        let mut args =
            vec!["uninstall".to_string(), "--all".into(), "--executables".into(), "--ignore-dependencies".into()];
        args.extend(ops.iter().map(|op| op.package.clone()));
        Ok(vec![gem::run(ctx, args).await?])
    }
}

fn is_gem_name(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

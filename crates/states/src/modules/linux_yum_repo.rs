//! `linux.yum.repo` — a yum/dnf repository: the file `/etc/yum.repos.d/<name>.repo` with the given content, or a repository package (`rpm-url`) installed.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | string | required | the file is `/etc/yum.repos.d/<name>.repo`; letters, digits, `_`, `-` and `.` only |
//! | `content` | text | — | the repository file: `[id]` sections of `key=value` lines (comments and blank lines allowed) |
//! | `rpm-url` | path or URL | — | used when `content` is not given: a package that installs the repository (such as `epel-release`): a local path, `file://` or `http(s)://` URL (downloaded into the agent's download cache, revalidated once per round) |
//! | `absent` | bool | `false` | ours: remove the file `/etc/yum.repos.d/<name>.repo` instead |
//!
//! One of `content` and `rpm-url` is required (unless `absent`); with both, `content` is used
//! and `rpm-url` ignored with a warning, as the original did.
//!
//! With `content`, "already fine" means the file has exactly this content and mode 0644;
//! `--test` shows a unified diff of the file. The file is written atomically (dnf never reads
//! half a file), and content that is not a repository file is refused when the recipe is
//! validated, because a broken `.repo` file stops every dnf command on the machine.
//!
//! With `rpm-url`, "already fine" means the package the file holds is installed at the file's
//! version or newer (the original ran `rpm -U --force` every round); otherwise `rpm -U FILE`
//! installs or upgrades it, and `--test` shows `create epel-release (install 9-7.el9 from
//! https://…/epel-release-latest-9.noarch.rpm)`.
//!
//! When the repository changes, the next `linux.yum.package` state of the round refreshes the
//! package metadata again.
//!
//! ```yaml
//! - id: mongodb-repo
//!   module: linux.yum.repo
//!   parameter:
//!     name: mongodb
//!     content: |
//!       [mongodb]
//!       name=MongoDB Repository
//!       baseurl=https://repo.mongodb.org/yum/redhat/9/mongodb-org/7.0/x86_64/
//!       gpgcheck=1
//!       enabled=1
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::plan_config_file;
use crate::ctx::Owner;
use crate::fetch;
use crate::process::Tail;
use crate::providers::yum;
use crate::{fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// Where dnf and yum read repository files.
pub const REPOS_DIR: &str = "/etc/yum.repos.d";

/// The largest repository package downloaded.
const MAX_RPM: u64 = 1 << 30;

/// Mode of a repository file.
pub const REPO_MODE: u32 = 0o644;

/// A validated `linux.yum.repo`.
#[derive(Debug, Clone)]
pub struct YumRepo {
    /// `/etc/yum.repos.d/<name>.repo`.
    pub path: PathBuf,
    pub source: Source,
}

/// Where the repository comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The repository file with this content.
    Content(String),
    /// A repository package, installed from this `.rpm` file (a local path or a URL).
    Rpm(fetch::Source),
    /// No repository file.
    Absent,
}

impl YumRepo {
    pub fn from_params(state: &State) -> Result<(YumRepo, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let name_pos = p.node("name").and_then(|n| n.pos);
        let name = p.required_string("name", "give the repository's name, e.g. `name: epel`");
        if let Some(name) = &name {
            let valid = !name.is_empty()
                && name != "."
                && name != ".."
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                p.report(
                    Kind::BadValue,
                    "name",
                    name_pos,
                    format!("`{name}` cannot name a file in {REPOS_DIR}"),
                    Some("use letters, digits, `_`, `-` and `.` only, without `/`".into()),
                );
            }
        }
        let absent = p.bool("absent").unwrap_or(false);
        let content_pos = p.node("content").and_then(|n| n.pos);
        let content = p.string("content").filter(|c| !c.trim().is_empty());
        let url_pos = p.node("rpm-url").and_then(|n| n.pos);
        let url = p.string("rpm-url").map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        let mut warnings = Vec::new();
        let source = match (absent, &content, &url) {
            (true, _, _) => Some(Source::Absent),
            (false, Some(content), url) => {
                check_content(&mut p, content_pos, content);
                if url.is_some() {
                    warnings.push(
                        Diagnostic::warning(Kind::IgnoredKey, "`rpm-url` is ignored: `content` is given")
                            .state(state.state_ref())
                            .param("rpm-url")
                            .at(url_pos)
                            .with_hint("give one of `content` and `rpm-url`"),
                    );
                }
                Some(Source::Content(content.clone()))
            }
            (false, None, Some(url)) => rpm_file(&mut p, url_pos, url).map(Source::Rpm),
            (false, None, None) => {
                p.report(
                    Kind::MissingParameter,
                    "content",
                    None,
                    "give `content` (the repository file) or `rpm-url` (a repository package)",
                    Some("e.g. `content: \"[myrepo]\\nname=My repo\\nbaseurl=https://repo.example.com/el9/\\ngpgcheck=1\\n\"`".into()),
                );
                None
            }
        };
        warnings.extend(p.finish(&["name", "content", "rpm-url", "absent"], &[])?);
        let name = name.expect("finish fails when `name` is missing");
        let source = source.expect("finish fails when neither `content` nor a valid `rpm-url` is given");
        let path = Path::new(REPOS_DIR).join(format!("{name}.repo"));
        Ok((YumRepo { path, source }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        match &self.source {
            Source::Rpm(source) => {
                let file = source.local(ctx, None, MAX_RPM).await?;
                let (package, evr, now) = rpm_state(ctx, &file).await?;
                let mut plan = Plan::default();
                match now {
                    Some(now) if yum::compare_evr(&now, &evr).is_ge() => {}
                    Some(now) => plan.changes.push(Change::new(
                        Action::Update,
                        package,
                        format!("upgrade {now} -> {evr} from {source}"),
                    )),
                    None => {
                        plan.changes.push(Change::new(Action::Create, package, format!("install {evr} from {source}")))
                    }
                }
                Ok(plan)
            }
            Source::Content(content) => self.check_file(ctx, Some(content)),
            Source::Absent => self.check_file(ctx, None),
        }
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome: Outcome = plan.into();
        match &self.source {
            Source::Rpm(source) => {
                // The copy `check` downloaded (or revalidated) in this round.
                let file = source.local(ctx, None, MAX_RPM).await?;
                let output = yum::rpm(ctx, &["-U".to_string(), file.display().to_string()]).await?;
                let (package, evr, now) = rpm_state(ctx, &file).await?;
                if !now.as_ref().is_some_and(|now| yum::compare_evr(now, &evr).is_ge()) {
                    return Err(StateError::Package {
                        package,
                        problem: format!("is not installed at {evr} after `rpm -U` of {source}"),
                    });
                }
                let max = ctx.round.max_output_bytes;
                outcome.stdout = Some(Tail::from_bytes(output.stdout.bytes, max));
                outcome.stderr = Some(Tail::from_bytes(output.stderr.bytes, max));
            }
            Source::Absent => match fs::remove_file(&self.path) {
                Ok(()) => {
                    let dir = fsutil::parent_of(&self.path);
                    fsutil::sync_dir(dir).map_err(StateError::io("syncing", dir))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::io("removing", &self.path)(e)),
            },
            Source::Content(content) => {
                let dir = fsutil::parent_of(&self.path);
                if !dir.is_dir() {
                    super::linux_file::create_parents(dir)?;
                }
                fsutil::write_atomic(&self.path, content.as_bytes(), REPO_MODE, Owner::default())
                    .map_err(StateError::io("writing", &self.path))?;
            }
        }
        // The metadata no longer matches the repositories: the next package state refreshes it.
        ctx.round.forget_prefix(yum::REFRESH_KEY);
        Ok(outcome)
    }

    /// The plan for the repository file: `content`, or no file.
    fn check_file(&self, ctx: &Ctx, content: Option<&String>) -> Result<Plan, StateError> {
        plan_config_file(ctx, &self.path, content.map(String::as_str), REPO_MODE)
    }
}

/// The package an `.rpm` file holds, its version, and the version installed (if any).
async fn rpm_state(ctx: &Ctx, file: &Path) -> Result<(String, yum::Evr, Option<yum::Evr>), StateError> {
    let (package, evr) = yum::rpm_identity(ctx, file).await?;
    let now = yum::installed(ctx, &[package.as_str()]).await?.remove(&package);
    Ok((package, evr, now))
}

/// Reads `rpm-url`: a local path, a `file://` or an `http(s)://` URL of an `.rpm`.
fn rpm_file(p: &mut ParamReader<'_>, pos: Option<opsagent_recipe::Pos>, url: &str) -> Option<fetch::Source> {
    let source = fetch::Source::read(p, "rpm-url", pos, url, "/srv/epel-release.noarch.rpm")?;
    if !source.file_name().ends_with(".rpm") {
        p.report(
            Kind::BadValue,
            "rpm-url",
            pos,
            format!("`{source}` is not an `.rpm` file"),
            Some("give the path or URL of the repository package, ending in `.rpm`".into()),
        );
        return None;
    }
    Some(source)
}

/// Refuses content that is not a repository file: dnf would then refuse to run at all.
fn check_content(p: &mut ParamReader<'_>, pos: Option<opsagent_recipe::Pos>, content: &str) {
    let mut in_section = false;
    let mut sections = 0;
    for (number, raw) in content.lines().enumerate() {
        let line = raw.trim();
        let problem = if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            None
        } else if let Some(id) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = true;
            sections += 1;
            let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
            (!valid).then(|| format!("line {} (`{line}`): `{id}` is not a repository id", number + 1))
        } else if !in_section {
            Some(format!("line {} (`{line}`) comes before the first `[id]` section", number + 1))
        } else if raw.starts_with([' ', '\t']) {
            // A continuation of the previous value (e.g. several `baseurl`s).
            None
        } else {
            match line.split_once('=') {
                Some((key, _)) if !key.trim().is_empty() && !key.trim().contains(char::is_whitespace) => None,
                _ => Some(format!("line {} (`{line}`) is not a `key=value` line", number + 1)),
            }
        };
        if let Some(problem) = problem {
            p.report(
                Kind::BadValue,
                "content",
                pos,
                problem,
                Some("write the repository as `[id]` then `key=value` lines, e.g. `[myrepo]`, `name=My repo`, `baseurl=https://repo.example.com/el9/`".into()),
            );
            return;
        }
    }
    if sections == 0 {
        p.report(
            Kind::BadValue,
            "content",
            pos,
            "no `[id]` section: the content declares no repository",
            Some("write the repository as `[id]` then `key=value` lines, e.g. `[myrepo]`, `name=My repo`, `baseurl=https://repo.example.com/el9/`".into()),
        );
    }
}

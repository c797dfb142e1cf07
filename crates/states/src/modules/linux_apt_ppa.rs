//! `linux.apt.ppa` — a Launchpad PPA (Personal Package Archive) as an apt source, kept only when it verifies.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `name` | `owner/archive` | required | e.g. `chromium-team/stable`; a leading `ppa:` is accepted |
//! | `username` | string | — | for a private PPA, with `password` |
//! | `password` | string | — | for a private PPA; kept in `/etc/apt/auth.conf.d` (mode 0600), never shown |
//! | `dist` | Ubuntu series | this machine's `UBUNTU_CODENAME` | ours: e.g. `jammy`; needed where `/etc/os-release` names no Ubuntu series |
//! | `key-file` | absolute path | — | ours: the PPA's signing key, used as `signed-by`; without it the key must already be trusted by apt |
//!
//! The source goes to `/etc/apt/sources.list.d/<owner>-ubuntu-<archive>-<dist>.list` (the name
//! `add-apt-repository` uses): `deb https://ppa.launchpadcontent.net/<owner>/<archive>/ubuntu <dist>
//! main` (`private-ppa.launchpadcontent.net` with credentials). "Already fine" means the files
//! have exactly this content and mode. `--test` shows the diff of the sources file (the
//! credentials file only as a change). After writing, the PPA alone is fetched (`apt-get update`
//! of just this source); if that fails (no network, no key, a wrong series), the files are put back
//! as they were and the state fails with apt's reason, so that a PPA that does not verify never
//! breaks the machine's other apt commands. Unlike the original, no key is fetched from a key
//! server: give `key-file`, or install the key in an earlier state.
//!
//! ```yaml
//! - id: chromium-ppa
//!   module: linux.apt.ppa
//!   parameter: { name: chromium-team/stable, key-file: /usr/share/keyrings/chromium-team.gpg }
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Diagnostic, Kind, ParamReader, State};

use super::linux_file::check_absolute;
use crate::ctx::Owner;
use crate::providers::apt;
use crate::{diff, fsutil, Action, Change, Ctx, Outcome, Plan, StateError};

/// Where apt reads credentials for sources.
pub const AUTH_DIR: &str = "/etc/apt/auth.conf.d";

/// A validated `linux.apt.ppa`.
#[derive(Debug, Clone)]
pub struct AptPpa {
    pub owner: String,
    pub archive: String,
    pub credentials: Option<(String, String)>,
    pub dist: Option<String>,
    pub key_file: Option<PathBuf>,
}

/// One file the state manages.
struct Managed {
    path: PathBuf,
    content: String,
    mode: u32,
    /// Never shown (it holds a password).
    secret: bool,
}

impl AptPpa {
    pub fn from_params(state: &State) -> Result<(AptPpa, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let name_pos = p.node("name").and_then(|n| n.pos);
        let name = p.required_string("name", "give the PPA as `owner/archive`, e.g. `name: chromium-team/stable`");
        let mut parts = None;
        if let Some(name) = &name {
            let bare = name.trim().strip_prefix("ppa:").unwrap_or(name.trim());
            match bare.split_once('/') {
                Some((owner, archive)) if is_launchpad_name(owner) && is_launchpad_name(archive) => {
                    parts = Some((owner.to_string(), archive.to_string()));
                }
                _ => p.report(
                    Kind::BadValue,
                    "name",
                    name_pos,
                    format!("`{name}` is not a PPA name"),
                    Some("write it as `owner/archive` in lowercase, e.g. `chromium-team/stable`".into()),
                ),
            }
        }
        let username = p.string("username").filter(|u| !u.is_empty());
        let password = p.string("password").filter(|u| !u.is_empty());
        let credentials = match (username, password) {
            (Some(u), Some(pw)) => Some((u, pw)),
            (None, None) => None,
            (u, _) => {
                let (given, missing) = if u.is_some() { ("username", "password") } else { ("password", "username") };
                p.report(
                    Kind::MissingParameter,
                    missing,
                    None,
                    format!("`{given}` is given without `{missing}`"),
                    Some("a private PPA needs both `username` and `password`".into()),
                );
                None
            }
        };
        let dist_pos = p.node("dist").and_then(|n| n.pos);
        let dist = p.string("dist").filter(|d| !d.is_empty());
        if let Some(dist) = &dist {
            if !dist.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                p.report(
                    Kind::BadValue,
                    "dist",
                    dist_pos,
                    format!("`{dist}` is not an Ubuntu series"),
                    Some("give the series' code name, e.g. `jammy`".into()),
                );
            }
        }
        let key_pos = p.node("key-file").and_then(|n| n.pos);
        let key_file = p
            .string("key-file")
            .filter(|k| !k.is_empty())
            .and_then(|k| check_absolute(&mut p, "key-file", key_pos, &k));
        let warnings = p.finish(&["name", "username", "password", "dist", "key-file"], &[])?;
        let (owner, archive) = parts.expect("finish fails when the name is missing or invalid");
        Ok((AptPpa { owner, archive, credentials, dist, key_file }, warnings))
    }

    pub fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let mut plan = Plan::default();
        for file in self.files()? {
            let shown = file.path.display().to_string();
            let meta = match fs::symlink_metadata(&file.path) {
                Ok(meta) => Some(meta),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(StateError::io("reading", &file.path)(e)),
            };
            let hidden = file.secret || ctx.sensitive;
            let Some(meta) = meta else {
                let detail = if file.secret {
                    format!("credentials, mode {:04o}", file.mode)
                } else {
                    format!("{} bytes, mode {:04o}", file.content.len(), file.mode)
                };
                plan.changes.push(Change::new(Action::Create, &shown, detail));
                if !hidden {
                    plan.diff = Some(diff::unified(&shown, b"", file.content.as_bytes()));
                }
                continue;
            };
            if !meta.is_file() {
                return Err(StateError::Conflict {
                    path: file.path.clone(),
                    problem: "exists and is not a regular file; remove it".into(),
                });
            }
            let current = fs::read(&file.path).map_err(StateError::io("reading", &file.path))?;
            if current != file.content.as_bytes() {
                let detail = if file.secret { "credentials".to_string() } else { "content".to_string() };
                plan.changes.push(Change::new(Action::Update, &shown, detail));
                if !hidden {
                    plan.diff = Some(diff::unified(&shown, &current, file.content.as_bytes()));
                }
            } else if fsutil::mode_of(&meta) != file.mode {
                let mode = fsutil::mode_of(&meta);
                plan.changes.push(Change::new(Action::Chmod, &shown, format!("{mode:04o} -> {:04o}", file.mode)));
            }
        }
        Ok(plan)
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let files = self.files()?;
        // What was there before, to put back if the PPA does not verify.
        let mut previous = Vec::new();
        for file in &files {
            previous.push(match fs::read(&file.path) {
                Ok(bytes) => Some((bytes, fs::metadata(&file.path).map(|m| fsutil::mode_of(&m)).unwrap_or(file.mode))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(StateError::io("reading", &file.path)(e)),
            });
        }
        for file in &files {
            write(&file.path, file.content.as_bytes(), file.mode)?;
        }
        let sources = &files[0].path;
        match apt::update_source(ctx, sources).await {
            Ok(output) => Ok(Outcome { stdout: Some(output.stdout), stderr: Some(output.stderr), ..plan.into() }),
            Err(e) => {
                for (file, before) in files.iter().zip(previous) {
                    match before {
                        Some((bytes, mode)) => write(&file.path, &bytes, mode)?,
                        None => fs::remove_file(&file.path).map_err(StateError::io("removing", &file.path))?,
                    }
                }
                Err(e)
            }
        }
    }

    /// The files this PPA needs: the sources file first, then the credentials, if any.
    fn files(&self) -> Result<Vec<Managed>, StateError> {
        let dist = match &self.dist {
            Some(dist) => dist.clone(),
            None => ubuntu_series()?,
        };
        let (owner, archive) = (&self.owner, &self.archive);
        let host =
            if self.credentials.is_some() { "private-ppa.launchpadcontent.net" } else { "ppa.launchpadcontent.net" };
        let options = match &self.key_file {
            Some(key) => {
                if let Err(e) = fs::metadata(key) {
                    return Err(StateError::io("reading the key file", key)(e));
                }
                format!("[signed-by={}] ", key.display())
            }
            None => String::new(),
        };
        let mut files = vec![Managed {
            path: Path::new(super::linux_apt_repo::SOURCES_DIR).join(format!("{owner}-ubuntu-{archive}-{dist}.list")),
            content: format!("deb {options}https://{host}/{owner}/{archive}/ubuntu {dist} main\n"),
            mode: super::linux_apt_repo::SOURCES_MODE,
            secret: false,
        }];
        if let Some((user, password)) = &self.credentials {
            files.push(Managed {
                path: Path::new(AUTH_DIR).join(format!("{owner}-ubuntu-{archive}.conf")),
                content: format!("machine {host}/{owner}/{archive}/ubuntu login {user} password {password}\n"),
                mode: 0o600,
                secret: true,
            });
        }
        Ok(files)
    }
}

/// This machine's Ubuntu series, from `/etc/os-release`.
fn ubuntu_series() -> Result<String, StateError> {
    let path = Path::new("/etc/os-release");
    let text = fs::read_to_string(path).map_err(StateError::io("reading", path))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    let series = field("UBUNTU_CODENAME")
        .or_else(|| (field("ID").as_deref() == Some("ubuntu")).then(|| field("VERSION_CODENAME")).flatten());
    series.ok_or_else(|| StateError::Conflict {
        path: path.to_path_buf(),
        problem:
            "names no Ubuntu series, and PPAs hold packages built for Ubuntu; give `dist` (e.g. `jammy`) to use one \
                  anyway"
                .into(),
    })
}

fn write(path: &Path, content: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = fsutil::parent_of(path);
    if !dir.is_dir() {
        super::linux_file::create_parents(dir)?;
    }
    fsutil::write_atomic(path, content, mode, Owner::default()).map_err(StateError::io("writing", path))
}

/// Launchpad names: lowercase letters, digits, `+`, `-`, `.`, starting with a letter or digit.
fn is_launchpad_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

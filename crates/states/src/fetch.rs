//! Remote sources: a module parameter that names a local file, a `file://` URL or an `http(s)://`
//! URL ([`Source`]), and the agent's download cache that turns a URL into a local file.
//!
//! A URL is downloaded into `<state dir>/downloads/<hash of the URL>` (written under a temporary
//! name, verified, then renamed: a failed or partial download never replaces a good copy). Each
//! round revalidates the copy with the server at most once (`If-None-Match` / `If-Modified-Since`,
//! so an unchanged file is not sent again); `check` and `apply` of a round share that one request.
//! With an expected checksum, a copy that already matches it is used without asking the server at
//! all, and a download that does not match fails the state and is thrown away.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opsagent_recipe::{Kind, ParamReader, Pos};
use sha2::Digest;

use crate::checksum::{digest_file, Algo, Checksum};
use crate::ctx::Owner;
use crate::http::{self, Fetched, Get};
use crate::{fsutil, Ctx, StateError};

/// Where a module reads a file from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    /// An `http://` or `https://` URL.
    Remote(String),
}

/// A remote file in the download cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub size: u64,
}

impl Source {
    /// Reads `text` (the value of parameter `name`): an absolute path, a `file:///` URL or an
    /// `http(s)://` URL. Reports anything else. `example` completes the hint (`/srv/app.tar.gz`).
    pub fn read(p: &mut ParamReader<'_>, name: &str, pos: Option<Pos>, text: &str, example: &str) -> Option<Source> {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match http::parse_url(text) {
                Ok(_) => Some(Source::Remote(text.to_string())),
                Err(e) => {
                    p.report(
                        Kind::BadValue,
                        name,
                        pos,
                        e.0,
                        Some(format!("give a URL such as `https://host{example}`")),
                    );
                    None
                }
            };
        }
        let path = match text.strip_prefix("file://") {
            Some(rest) if rest.starts_with('/') => rest,
            Some(_) | None if text.contains("://") => {
                p.report(
                    Kind::BadValue,
                    name,
                    pos,
                    format!("`{}` is neither a local path nor an http(s) URL", http::redact(text)),
                    Some(format!("give an absolute path (`{example}`), `file://{example}` or an `https://` URL")),
                );
                return None;
            }
            _ => text,
        };
        crate::modules::linux_file::check_absolute(p, name, pos, path).map(Source::Local)
    }

    /// The last component of the path or URL (without a query), to tell a file's type by.
    pub fn file_name(&self) -> String {
        match self {
            Source::Local(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            Source::Remote(url) => {
                let path = url.split(['?', '#']).next().unwrap_or(url);
                path.rsplit('/').next().unwrap_or("").to_string()
            }
        }
    }

    /// The local file to read: the path itself, or the cached download of the URL.
    pub async fn local(&self, ctx: &Ctx, expected: Option<&Checksum>, max_bytes: u64) -> Result<PathBuf, StateError> {
        match self {
            Source::Local(path) => Ok(path.clone()),
            Source::Remote(url) => Ok(fetch(ctx, url, expected, max_bytes).await?.path),
        }
    }
}

impl std::fmt::Display for Source {
    /// The path, or the URL without its query string (a signed URL's signature stays out of reports).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(path) => write!(f, "{}", path.display()),
            Source::Remote(url) => f.write_str(&http::redact(url)),
        }
    }
}

/// What the cache remembers of a download, beside the file.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Meta {
    url_sha256: String,
    sha256: String,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
}

static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cached copy of `url`, downloaded or revalidated at most once per round.
pub async fn fetch(
    ctx: &Ctx,
    url: &str,
    expected: Option<&Checksum>,
    max_bytes: u64,
) -> Result<Downloaded, StateError> {
    let shown = http::redact(url);
    let failed = |problem: String| StateError::Download { url: shown.clone(), problem };
    let dir = ctx.round.state_dir.join("downloads");
    let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    // The URL's file name is kept at the end: tools tell a file's type by it (`apt-get install x.deb`).
    let name: String = Source::Remote(url.to_string())
        .file_name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._+-~".contains(c) { c } else { '_' })
        .take(100)
        .collect();
    let body = dir.join(format!("{}-{}", &key[..32], name.trim_start_matches('.')));
    let meta_file = dir.join(format!("{}.json", &key[..32]));
    let meta: Option<Meta> = fs::read(&meta_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        .filter(|m| m.url_sha256 == key && body.exists());

    if let Some(hit) = ctx.round.fetched(url) {
        verify(&hit, expected).map_err(failed)?;
        return Ok(hit);
    }
    // A copy that already has the expected checksum is the file wanted: no need to ask the server.
    if let (Some(meta), Some(expected)) = (&meta, expected) {
        if matches_checksum(&body, meta, expected)? {
            let hit = Downloaded { path: body, sha256: meta.sha256.clone(), size: meta.size };
            ctx.round.remember_fetch(url, &hit);
            return Ok(hit);
        }
    }

    fs::create_dir_all(&dir).map_err(StateError::io("creating", &dir))?;
    let tls = ctx.round.tls().map_err(|e| failed(e.0))?;
    let part = dir.join(format!(
        ".{}.part-{}-{}",
        &key[..32],
        std::process::id(),
        PART_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let agent = format!("opsagent/{}", env!("CARGO_PKG_VERSION"));
    let get = Get {
        url,
        tls,
        max_bytes,
        if_none_match: meta.as_ref().and_then(|m| m.etag.as_deref()),
        if_modified_since: meta.as_ref().and_then(|m| m.last_modified.as_deref()),
        agent: &agent,
    };
    let result = tokio::select! {
        r = tokio::time::timeout(ctx.timeout, http::get_to_file(&get, &part)) => match r {
            Ok(r) => r.map_err(|e| failed(e.0)),
            Err(_) => Err(failed(format!("the download took longer than the state's timeout ({:?})", ctx.timeout))),
        },
        _ = ctx.cancel.cancelled() => Err(StateError::Cancelled),
    };
    let fetched = match result {
        Ok(fetched) => fetched,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
    };
    let hit = match fetched {
        Fetched::NotModified => {
            let _ = fs::remove_file(&part);
            let Some(meta) = meta else {
                return Err(failed("the server answered 304 Not Modified to an unconditional request".into()));
            };
            Downloaded { path: body, sha256: meta.sha256, size: meta.size }
        }
        Fetched::Body { sha256, size, etag, last_modified } => {
            let got = Downloaded { path: part.clone(), sha256: sha256.clone(), size };
            if let Err(problem) = verify(&got, expected) {
                let _ = fs::remove_file(&part);
                return Err(failed(problem));
            }
            fs::rename(&part, &body).map_err(StateError::io("renaming", &part))?;
            let meta = Meta { url_sha256: key.clone(), sha256: sha256.clone(), size, etag, last_modified };
            let text = serde_json::to_vec(&meta).expect("serializable");
            fsutil::write_atomic(&meta_file, &text, 0o600, Owner::default())
                .map_err(StateError::io("writing", &meta_file))?;
            Downloaded { path: body, sha256, size }
        }
    };
    verify(&hit, expected).map_err(failed)?;
    ctx.round.remember_fetch(url, &hit);
    Ok(hit)
}

/// Whether the cached copy has the expected checksum (SHA-256 from the cache's record, others read).
fn matches_checksum(body: &Path, meta: &Meta, expected: &Checksum) -> Result<bool, StateError> {
    if expected.algo == Algo::Sha256 {
        return Ok(meta.sha256 == expected.hex);
    }
    Ok(digest_file(body, expected.algo)? == expected.hex)
}

fn verify(got: &Downloaded, expected: Option<&Checksum>) -> Result<(), String> {
    let Some(expected) = expected else { return Ok(()) };
    let actual = if expected.algo == Algo::Sha256 {
        got.sha256.clone()
    } else {
        digest_file(&got.path, expected.algo).map_err(|e| e.to_string())?
    };
    if actual != expected.hex {
        return Err(format!(
            "the file downloaded has {}:{actual}, not the {expected} the recipe names; it was not used",
            expected.algo.name()
        ));
    }
    Ok(())
}

/// The TLS configuration of downloads, built once per round.
pub(crate) fn tls_for(ca_files: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, http::HttpError> {
    http::tls_config(ca_files).map(Arc::new)
}

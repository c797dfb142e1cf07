//! Downloads a release binary with the states' small HTTP client (`opsagent_states::http`),
//! TLS verified exactly like the hub connection (public roots plus `ca_file`), streamed to a file
//! while its sha256 is computed.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use opsagent_states::http;

/// The largest binary the agent downloads.
pub const MAX_BINARY: u64 = 512 << 20;

/// Resolves the order's `url` against the agent's `hub_url`: a path (`/releases/…`) goes to the hub
/// the agent talks to, over `https` for `wss` and `http` for `ws`.
pub fn resolve(url: &str, hub_url: &str) -> anyhow::Result<String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(url.to_string());
    }
    if !url.starts_with('/') {
        bail!("`{url}` is neither an http(s) URL nor a path on the hub");
    }
    let (scheme, rest) = hub_url.split_once("://").context("the hub URL has no scheme")?;
    let authority = rest.split('/').next().unwrap_or("");
    let scheme = if scheme == "wss" { "https" } else { "http" };
    Ok(format!("{scheme}://{authority}{url}"))
}

/// Downloads `url` into `dest` (created, fsynced); returns its sha256 (lowercase hex) and size.
/// The client is the states' (`opsagent_states::http`): TLS verified like the hub connection.
pub async fn download(
    url: &str,
    tls: impl FnOnce() -> anyhow::Result<Arc<rustls::ClientConfig>>,
    dest: &Path,
) -> anyhow::Result<(String, u64)> {
    let agent = format!("opsagent/{}", crate::version::version());
    let get = http::Get {
        url,
        tls: tls()?,
        max_bytes: MAX_BINARY,
        if_none_match: None,
        if_modified_since: None,
        agent: &agent,
    };
    match http::get_to_file(&get, dest).await? {
        http::Fetched::Body { sha256, size, .. } => Ok((sha256, size)),
        http::Fetched::NotModified => bail!("the server answered 304 Not Modified to an unconditional request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_hub() {
        let r = |u, h| resolve(u, h).unwrap();
        assert_eq!(
            r("/releases/1/opsagent", "wss://hub.example.com/agent/"),
            "https://hub.example.com/releases/1/opsagent"
        );
        assert_eq!(
            r("/releases/1/opsagent", "ws://127.0.0.1:7700/agent/"),
            "http://127.0.0.1:7700/releases/1/opsagent"
        );
        assert_eq!(r("https://cdn.example.com/x", "ws://127.0.0.1:1/agent/"), "https://cdn.example.com/x");
        assert!(resolve("ftp://x", "ws://h/").is_err());
    }
}

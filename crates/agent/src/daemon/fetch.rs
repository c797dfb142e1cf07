//! Downloads a release binary: one HTTP/1.1 GET over TCP, or TLS verified exactly like the hub
//! connection (public roots plus `ca_file`), streamed to a file while its sha256 is computed.
//!
//! Hand-written on purpose: the agent already links rustls, tokio-rustls and httparse (through the
//! WebSocket client), so this costs no new crate, where an HTTP client library would add its own
//! stack. It only needs what the hub does: a `200` with a `Content-Length` (no redirects, no
//! chunked encoding, no compression).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// The largest binary the agent downloads.
pub const MAX_BINARY: u64 = 512 << 20;
const READ_TIMEOUT: Duration = Duration::from_secs(60);

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
pub async fn download(
    url: &str,
    tls: impl FnOnce() -> anyhow::Result<Arc<rustls::ClientConfig>>,
    dest: &Path,
) -> anyhow::Result<(String, u64)> {
    let (https, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => bail!("`{url}`: only http and https are supported"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_authority(authority, if https { 443 } else { 80 })?;
    let tcp = timeout(READ_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .with_context(|| format!("connecting to {authority} timed out"))?
        .with_context(|| format!("connecting to {authority}"))?;
    if https {
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("`{host}` is not a valid TLS server name"))?;
        let connector = tokio_rustls::TlsConnector::from(tls()?);
        let stream = timeout(READ_TIMEOUT, connector.connect(name, tcp))
            .await
            .context("the TLS handshake timed out")?
            .with_context(|| format!("TLS with {authority}"))?;
        get(stream, authority, path, dest).await
    } else {
        get(tcp, authority, path, dest).await
    }
}

fn split_authority(authority: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').context("unclosed `[` in the URL's host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().context("bad port")?,
            None => default_port,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), port.parse().context("bad port")?)),
        None => Ok((authority.to_string(), default_port)),
    }
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    authority: &str,
    path: &str,
    dest: &Path,
) -> anyhow::Result<(String, u64)> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: opsagent/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        crate::version::version()
    );
    stream.write_all(request.as_bytes()).await.context("sending the request")?;
    // The head, up to 16 KiB.
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_len = loop {
        let n = timeout(READ_TIMEOUT, stream.read(&mut chunk)).await.context("the server stopped answering")??;
        if n == 0 {
            bail!("the server closed the connection before answering");
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buffer.len() > 16 * 1024 {
            bail!("the server's answer has no end of headers");
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(&buffer[..head_len]).context("the server's answer is not HTTP")?;
    let status = response.code.unwrap_or(0);
    if status != 200 {
        bail!("the server answered {status} {}", response.reason.unwrap_or(""));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if header("transfer-encoding").is_some() {
        bail!("the server sent a transfer encoding; a release download needs a `Content-Length`");
    }
    let length: u64 =
        header("content-length").and_then(|l| l.parse().ok()).context("the server sent no `Content-Length`")?;
    if length > MAX_BINARY {
        bail!("the release is {length} bytes, more than the limit of {MAX_BINARY}");
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(dest)
            .with_context(|| format!("creating {}", dest.display()))?
    };
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut write = |bytes: &[u8], received: &mut u64| -> anyhow::Result<()> {
        let room = (length - *received) as usize;
        let bytes = &bytes[..bytes.len().min(room)];
        hasher.update(bytes);
        file.write_all(bytes).with_context(|| format!("writing {}", dest.display()))?;
        *received += bytes.len() as u64;
        Ok(())
    };
    write(&buffer[head_len..], &mut received)?;
    while received < length {
        let n = timeout(READ_TIMEOUT, stream.read(&mut chunk)).await.context("the download stalled")??;
        if n == 0 {
            bail!("the download ended after {received} of {length} bytes");
        }
        write(&chunk[..n], &mut received)?;
    }
    file.sync_all().with_context(|| format!("syncing {}", dest.display()))?;
    Ok((hex::encode(hasher.finalize()), received))
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
        assert_eq!(split_authority("[::1]:80", 1).unwrap(), ("::1".to_string(), 80));
        assert_eq!(split_authority("h", 443).unwrap(), ("h".to_string(), 443));
    }
}

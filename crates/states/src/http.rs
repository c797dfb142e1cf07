//! A small HTTP/1.1 GET client: plain TCP, or TLS always verified (public roots, the system's CA
//! bundle, `SSL_CERT_FILE` and the agent's `ca_file`), streamed to a file while its sha256 is
//! computed. It follows redirects (never from https down to http), reads `Content-Length`,
//! chunked and close-delimited bodies, and sends conditional requests (`If-None-Match`,
//! `If-Modified-Since`) so that a cached download is revalidated without being sent again.
//!
//! Hand-written on purpose: the agent already links rustls, tokio-rustls and httparse (through its
//! WebSocket client), so downloads cost no new crate, where an HTTP client library would bring its
//! own stack. Proxies come from the environment as curl reads it (`https_proxy`, `http_proxy`,
//! `no_proxy`; https through a `CONNECT` tunnel, so TLS stays end to end). What it leaves out:
//! compression, HTTP/2, credentials in the URL.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::timeout;

/// How long a connection, a TLS handshake or one read may take before the download fails.
const STALL: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;
const MAX_HEAD: usize = 16 * 1024;

/// Why a download failed, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

fn fail<T>(message: impl Into<String>) -> Result<T, HttpError> {
    Err(HttpError(message.into()))
}

/// One GET request.
#[derive(Debug, Clone)]
pub struct Get<'a> {
    pub url: &'a str,
    pub tls: Arc<rustls::ClientConfig>,
    /// A larger body fails the download.
    pub max_bytes: u64,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    /// Sent as `User-Agent`.
    pub agent: &'a str,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// `304 Not Modified`: the copy the conditions came from is current; nothing was written.
    NotModified,
    /// The body, written to the destination file.
    Body { sha256: String, size: u64, etag: Option<String>, last_modified: Option<String> },
}

/// The client TLS configuration for downloads: webpki's public roots, the system's CA bundle (when
/// there is one), `$SSL_CERT_FILE`, and `extra` files (PEM). Certificates are always verified.
pub fn tls_config(extra: &[PathBuf]) -> Result<rustls::ClientConfig, HttpError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut files: Vec<PathBuf> =
        ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"].iter().map(PathBuf::from).collect();
    files.extend(std::env::var_os("SSL_CERT_FILE").map(PathBuf::from));
    for (i, file) in files.iter().chain(extra).enumerate() {
        let optional = i < 2;
        let certs = match rustls_pki_types::CertificateDer::pem_file_iter(file) {
            Ok(certs) => certs,
            Err(_) if optional => continue,
            Err(e) => return fail(format!("reading the CA file {}: {e}", file.display())),
        };
        for cert in certs {
            match cert {
                Ok(cert) => {
                    // A bundle may hold certificates rustls cannot use; skip those, as curl does.
                    let _ = roots.add(cert);
                }
                Err(e) if optional => {
                    let _ = e;
                    break;
                }
                Err(e) => return fail(format!("reading the CA file {}: {e}", file.display())),
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A URL as shown in messages: the query string (a signed URL's signature) is hidden.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// Downloads `get.url` into `dest` (created 0600, written, fsynced), following redirects.
/// On a `304` nothing is written. On failure `dest` may hold a partial body: callers write to a
/// temporary name and rename on success.
pub async fn get_to_file(get: &Get<'_>, dest: &Path) -> Result<Fetched, HttpError> {
    let mut url = get.url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        match get_once(get, &url, dest).await? {
            Step::Done(fetched) => return Ok(fetched),
            Step::Redirect(location) => {
                let next = join(&url, &location)?;
                if url.starts_with("https://") && !next.starts_with("https://") {
                    return fail(format!("{} redirects to {}, which is not https", redact(&url), redact(&next)));
                }
                url = next;
            }
        }
    }
    fail(format!("{} redirects more than {MAX_REDIRECTS} times", redact(get.url)))
}

enum Step {
    Done(Fetched),
    Redirect(String),
}

/// The parts of an http(s) URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    pub https: bool,
    pub authority: &'a str,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: &'a str,
}

/// Splits an `http://` or `https://` URL.
pub fn parse_url(url: &str) -> Result<Parts<'_>, HttpError> {
    let (https, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
        _ => return fail(format!("`{}` is not an http:// or https:// URL", redact(url))),
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.is_empty() {
        return fail(format!("`{}` has no host", redact(url)));
    }
    if authority.contains('@') {
        return fail(format!("`{}`: credentials in the URL are not supported", redact(url)));
    }
    let target = if target.is_empty() { "/" } else { target };
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or_else(|| HttpError("unclosed `[` in the URL's host".into()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| HttpError(format!("bad port `{p}`")))?,
            None => default_port,
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, p)) => (host.to_string(), p.parse().map_err(|_| HttpError(format!("bad port `{p}`")))?),
            None => (authority.to_string(), default_port),
        }
    };
    Ok(Parts { https, authority, host, port, target: if target.starts_with('/') { target } else { "/" } })
}

/// Resolves a `Location` against the URL it came from.
fn join(base: &str, location: &str) -> Result<String, HttpError> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let parts = parse_url(base)?;
    let scheme = if parts.https { "https" } else { "http" };
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{}{location}", parts.authority));
    }
    let path = parts.target.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Ok(format!("{scheme}://{}{dir}{location}", parts.authority))
}

async fn get_once(get: &Get<'_>, url: &str, dest: &Path) -> Result<Step, HttpError> {
    let parts = parse_url(url)?;
    let shown = redact(url);
    let proxy = proxy_for(&parts)?;
    let (connect_to, connect_port) = match &proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (parts.host.as_str(), parts.port),
    };
    let via = proxy.as_ref().map(|p| format!(" through the proxy {}:{}", p.host, p.port)).unwrap_or_default();
    let mut tcp = timeout(STALL, tokio::net::TcpStream::connect((connect_to, connect_port)))
        .await
        .map_err(|_| HttpError(format!("connecting to {}{via} timed out", parts.authority)))?
        .map_err(|e| HttpError(format!("connecting to {}{via}: {e}", parts.authority)))?;
    if parts.https {
        if let Some(proxy) = &proxy {
            tunnel(&mut tcp, proxy, &parts).await?;
        }
        let name = rustls_pki_types::ServerName::try_from(parts.host.clone())
            .map_err(|_| HttpError(format!("`{}` is not a valid TLS server name", parts.host)))?;
        let connector = tokio_rustls::TlsConnector::from(get.tls.clone());
        let stream = timeout(STALL, connector.connect(name, tcp))
            .await
            .map_err(|_| HttpError(format!("the TLS handshake with {} timed out", parts.authority)))?
            .map_err(|e| HttpError(format!("TLS with {}: {e}", parts.authority)))?;
        exchange(get, &parts, &shown, None, stream, dest).await
    } else {
        // Through a proxy, plain HTTP asks for the whole URL (absolute form).
        let forward = proxy.as_ref().map(|p| (url.split('#').next().unwrap_or(url), p.authorization.as_deref()));
        exchange(get, &parts, &shown, forward, tcp, dest).await
    }
}

/// A TCP connection to the host of `url` (`http(s)://`, or `ws(s)://` for the hub), through a
/// `CONNECT` tunnel when the environment names a proxy for it (`wss` as `https`, `ws` as `http`):
/// the caller speaks TLS and its protocol over it end to end.
pub async fn connect(url: &str) -> Result<tokio::net::TcpStream, HttpError> {
    let http_url = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("wss") => format!("https://{rest}"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("ws") => format!("http://{rest}"),
        _ => url.to_string(),
    };
    let parts = parse_url(&http_url)?;
    let proxy = proxy_for(&parts)?;
    let (host, port) = match &proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (parts.host.as_str(), parts.port),
    };
    let via = proxy.as_ref().map(|p| format!(" through the proxy {}:{}", p.host, p.port)).unwrap_or_default();
    let mut tcp = timeout(STALL, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| HttpError(format!("connecting to {}{via} timed out", parts.authority)))?
        .map_err(|e| HttpError(format!("connecting to {}{via}: {e}", parts.authority)))?;
    if let Some(proxy) = &proxy {
        tunnel(&mut tcp, proxy, &parts).await?;
    }
    Ok(tcp)
}

/// An HTTP proxy from the environment.
#[derive(Debug, PartialEq, Eq)]
struct Proxy {
    host: String,
    port: u16,
    /// `Proxy-Authorization` for credentials in the proxy URL.
    authorization: Option<String>,
}

/// The proxy for `parts`, as curl reads the environment: `https_proxy`/`HTTPS_PROXY` for https,
/// `http_proxy` for http (not `HTTP_PROXY`, which CGI environments can set from a request header),
/// and `no_proxy`/`NO_PROXY` (comma-separated hosts or domain suffixes, `*` for all).
fn proxy_for(parts: &Parts<'_>) -> Result<Option<Proxy>, HttpError> {
    let var = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok()).filter(|v| !v.trim().is_empty());
    let setting = if parts.https { var(&["https_proxy", "HTTPS_PROXY"]) } else { var(&["http_proxy"]) };
    let Some(setting) = setting else { return Ok(None) };
    if let Some(no_proxy) = var(&["no_proxy", "NO_PROXY"]) {
        let host = parts.host.to_ascii_lowercase();
        let skip = no_proxy
            .split(',')
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .any(|e| e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}")))));
        if skip {
            return Ok(None);
        }
    }
    let text = setting.trim();
    let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
    let Some(rest) = with_scheme.strip_prefix("http://") else {
        return Err(HttpError(format!("the proxy `{}` is not an http:// proxy", redact_credentials(text))));
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (credentials, address) = match authority.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, authority),
    };
    let address = format!("http://{address}/");
    let proxy = parse_url(&address)
        .map_err(|_| HttpError(format!("the proxy `{}` is not host:port", redact_credentials(text))))?;
    Ok(Some(Proxy {
        host: proxy.host,
        port: proxy.port,
        authorization: credentials.map(|c| format!("Basic {}", base64(c.as_bytes()))),
    }))
}

/// A proxy setting as shown in messages: its credentials hidden.
fn redact_credentials(proxy: &str) -> String {
    match proxy.rsplit_once('@') {
        Some((before, after)) => {
            let scheme = before.split_once("://").map(|(s, _)| format!("{s}://")).unwrap_or_default();
            format!("{scheme}…@{after}")
        }
        None => proxy.to_string(),
    }
}

/// Asks the proxy for a tunnel to the URL's host (`CONNECT`); on success `tcp` carries it.
async fn tunnel(tcp: &mut tokio::net::TcpStream, proxy: &Proxy, parts: &Parts<'_>) -> Result<(), HttpError> {
    let target = format!(
        "{}:{}",
        if parts.host.contains(':') { format!("[{}]", parts.host) } else { parts.host.clone() },
        parts.port
    );
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    let failed = |e: std::io::Error| HttpError(format!("the proxy {}:{}: {e}", proxy.host, proxy.port));
    tcp.write_all(request.as_bytes()).await.map_err(failed)?;
    // Read the proxy's answer byte by byte: nothing of the tunnel's own traffic may be consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(STALL, tcp.read(&mut byte))
            .await
            .map_err(|_| HttpError(format!("the proxy {}:{} stopped answering", proxy.host, proxy.port)))?
            .map_err(failed)?;
        if n == 0 || head.len() > MAX_HEAD {
            return Err(HttpError(format!("the proxy {}:{} closed the tunnel request", proxy.host, proxy.port)));
        }
        head.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let _ = response.parse(&head);
    match response.code {
        Some(200..=299) => Ok(()),
        Some(code) => Err(HttpError(format!(
            "the proxy {}:{} refused the tunnel to {target}: {code} {}",
            proxy.host,
            proxy.port,
            response.reason.unwrap_or("")
        ))),
        None => Err(HttpError(format!("the proxy {}:{} did not answer in HTTP", proxy.host, proxy.port))),
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends the GET and reads the answer. `forward` is set when a proxy is asked for a plain-HTTP URL:
/// the whole URL is the request target, with the proxy's credentials.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    get: &Get<'_>,
    parts: &Parts<'_>,
    shown: &str,
    forward: Option<(&str, Option<&str>)>,
    mut stream: S,
    dest: &Path,
) -> Result<Step, HttpError> {
    let target = forward.map_or(parts.target, |(url, _)| url);
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        parts.authority, get.agent
    );
    if let Some((_, Some(auth))) = forward {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    if let Some(etag) = get.if_none_match {
        request.push_str(&format!("If-None-Match: {etag}\r\n"));
    }
    if let Some(date) = get.if_modified_since {
        request.push_str(&format!("If-Modified-Since: {date}\r\n"));
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| HttpError(format!("{shown}: {e}"));
    stream.write_all(request.as_bytes()).await.map_err(io)?;

    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut head = Vec::with_capacity(1024);
    loop {
        let before = head.len();
        let n = timeout(STALL, reader.read_until(b'\n', &mut head))
            .await
            .map_err(|_| HttpError(format!("{shown}: the server stopped answering")))?
            .map_err(io)?;
        if n == 0 {
            return fail(format!("{shown}: the server closed the connection before answering"));
        }
        if head.len() > MAX_HEAD {
            return fail(format!("{shown}: the server's answer has no end of headers"));
        }
        if head[before..] == *b"\r\n" || head[before..] == *b"\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(&head).map_err(|e| HttpError(format!("{shown}: the server's answer is not HTTP ({e})")))?;
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    match status {
        200 => {}
        304 => return Ok(Step::Done(Fetched::NotModified)),
        301 | 302 | 303 | 307 | 308 => {
            return match header("location") {
                Some(location) => Ok(Step::Redirect(location)),
                None => fail(format!("{shown}: the server answered {status} without a `Location`")),
            }
        }
        _ => return fail(format!("{shown}: the server answered {status} {}", response.reason.unwrap_or(""))),
    }
    let etag = header("etag");
    let last_modified = header("last-modified");
    let chunked = header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length: Option<u64> = if chunked { None } else { header("content-length").and_then(|l| l.parse().ok()) };
    if length.is_some_and(|l| l > get.max_bytes) {
        return fail(format!("{shown} is {} bytes, more than the limit of {}", length.unwrap_or(0), get.max_bytes));
    }

    let mut sink = Sink::create(dest, get.max_bytes, shown)?;
    let mut buf = vec![0u8; 64 * 1024];
    if chunked {
        loop {
            let mut line = String::new();
            read_line(&mut reader, &mut line, shown).await?;
            let size = line.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| HttpError(format!("{shown}: bad chunk size `{}`", line.trim())))?;
            if size == 0 {
                break;
            }
            let mut left = size;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = read_some(&mut reader, &mut buf[..want], shown).await?;
                if n == 0 {
                    return fail(format!("{shown}: the download ended inside a chunk"));
                }
                sink.write(&buf[..n])?;
                left -= n as u64;
            }
            line.clear();
            read_line(&mut reader, &mut line, shown).await?;
        }
    } else {
        loop {
            let want = match length {
                Some(l) => buf.len().min((l - sink.size) as usize),
                None => buf.len(),
            };
            if want == 0 {
                break;
            }
            let n = read_some(&mut reader, &mut buf[..want], shown).await?;
            if n == 0 {
                if let Some(l) = length {
                    return fail(format!("{shown}: the download ended after {} of {l} bytes", sink.size));
                }
                break;
            }
            sink.write(&buf[..n])?;
        }
    }
    let (sha256, size) = sink.finish()?;
    Ok(Step::Done(Fetched::Body { sha256, size, etag, last_modified }))
}

async fn read_some<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8], shown: &str) -> Result<usize, HttpError> {
    timeout(STALL, reader.read(buf))
        .await
        .map_err(|_| HttpError(format!("{shown}: the download stalled")))?
        .map_err(|e| HttpError(format!("{shown}: {e}")))
}

async fn read_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    line: &mut String,
    shown: &str,
) -> Result<(), HttpError> {
    let n = timeout(STALL, reader.read_line(line))
        .await
        .map_err(|_| HttpError(format!("{shown}: the download stalled")))?
        .map_err(|e| HttpError(format!("{shown}: {e}")))?;
    if n == 0 {
        return fail(format!("{shown}: the download ended inside its chunked body"));
    }
    Ok(())
}

/// The destination file, with the running digest and the size limit.
struct Sink<'a> {
    file: std::fs::File,
    path: &'a Path,
    hasher: Sha256,
    size: u64,
    max: u64,
    shown: &'a str,
}

impl<'a> Sink<'a> {
    fn create(path: &'a Path, max: u64, shown: &'a str) -> Result<Sink<'a>, HttpError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| HttpError(format!("creating {}: {e}", path.display())))?;
        Ok(Sink { file, path, hasher: Sha256::new(), size: 0, max, shown })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        self.size += bytes.len() as u64;
        if self.size > self.max {
            return fail(format!("{} is more than the limit of {} bytes", self.shown, self.max));
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(|e| HttpError(format!("writing {}: {e}", self.path.display())))
    }

    fn finish(self) -> Result<(String, u64), HttpError> {
        self.file.sync_all().map_err(|e| HttpError(format!("syncing {}: {e}", self.path.display())))?;
        Ok((hex::encode(self.hasher.finalize()), self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_join() {
        let p = parse_url("https://h.example.com:8443/a/b.tgz?sig=1").unwrap();
        assert_eq!((p.https, p.host.as_str(), p.port, p.target), (true, "h.example.com", 8443, "/a/b.tgz?sig=1"));
        let p = parse_url("http://[::1]/x").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 80));
        assert_eq!(parse_url("http://h").unwrap().target, "/");
        assert!(parse_url("ftp://h/x").is_err());
        assert!(parse_url("https://user:pw@h/x").is_err());
        assert_eq!(join("http://h:1/a/b", "/c").unwrap(), "http://h:1/c");
        assert_eq!(join("http://h:1/a/b", "c").unwrap(), "http://h:1/a/c");
        assert_eq!(join("https://h/a/b", "//g/x").unwrap(), "https://g/x");
        assert_eq!(join("https://h/a/b", "http://g/x").unwrap(), "http://g/x");
        assert_eq!(redact("https://h/x?X-Amz-Signature=s"), "https://h/x?…");
    }

    #[test]
    fn proxy_credentials_are_encoded_and_hidden() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        assert_eq!(redact_credentials("http://me:secret@proxy:3128"), "http://…@proxy:3128");
        assert_eq!(redact_credentials("proxy:3128"), "proxy:3128");
    }
}

//! A small HTTP/1.1 file server on 127.0.0.1 for the download tests, plain or TLS (with a CA made
//! by the test), that records every request. Files answer with an `ETag` and honour
//! `If-None-Match`; `/redirect/NAME` answers 302 to `/NAME`; a file can be served chunked, or cut
//! off half-way.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a file is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    Length,
    Chunked,
    /// Announces the whole length, sends half, closes.
    CutOff,
}

#[derive(Default)]
struct Files {
    files: HashMap<String, (Vec<u8>, Send)>,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub status: u16,
    pub if_none_match: Option<String>,
}

pub struct Server {
    pub port: u16,
    pub https: bool,
    files: Arc<Mutex<Files>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM path, TLS config).
pub fn make_tls(dir: &Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "opsagent-test downloads CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let ca_path = dir.join("downloads-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    (ca_path, Arc::new(config))
}

impl Server {
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server =
            Server { port, https: tls.is_some(), files: Arc::default(), hits: Arc::default(), stop: Arc::default() };
        let (files, hits, stop) = (server.files.clone(), server.hits.clone(), server.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let (files, hits, tls) = (files.clone(), hits.clone(), tls.clone());
                        std::thread::spawn(move || match tls {
                            Some(config) => {
                                let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                                let mut tls = rustls::StreamOwned::new(conn, stream);
                                serve(&mut tls, &files, &hits);
                                tls.conn.send_close_notify();
                                let _ = tls.flush();
                            }
                            None => {
                                let mut stream = stream;
                                serve(&mut stream, &files, &hits)
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}/{path}", if self.https { "https" } else { "http" }, self.port)
    }

    pub fn put(&self, name: &str, body: &[u8], send: Send) {
        self.files.lock().unwrap().files.insert(name.to_string(), (body.to_vec(), send));
    }

    /// The requests since the last call.
    pub fn take_hits(&self) -> Vec<Hit> {
        std::mem::take(&mut *self.hits.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn etag(body: &[u8]) -> String {
    use sha2::Digest;
    format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body))[..16])
}

fn serve<S: Read + Write>(stream: &mut S, files: &Mutex<Files>, hits: &Mutex<Vec<Hit>>) {
    let mut reader = BufReader::new(&mut *stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("if-none-match") {
                if_none_match = Some(value.trim().to_string());
            }
        }
    }
    drop(reader);
    let path = request_line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let file = files.lock().unwrap().files.get(path.split('?').next().unwrap()).cloned();
    let status = if let Some(to) = path.strip_prefix("redirect/") {
        let _ =
            write!(stream, "HTTP/1.1 302 Found\r\nLocation: /{to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        302
    } else if let Some((body, send)) = file {
        let tag = etag(&body);
        if if_none_match.as_deref() == Some(tag.as_str()) {
            let _ = write!(stream, "HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nConnection: close\r\n\r\n");
            304
        } else {
            match send {
                Send::Length | Send::CutOff => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {tag}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let sent = if send == Send::CutOff { &body[..body.len() / 2] } else { &body[..] };
                    let _ = stream.write_all(sent);
                }
                Send::Chunked => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: {tag}\r\nConnection: close\r\n\r\n"
                    );
                    for chunk in body.chunks(1000) {
                        let _ = write!(stream, "{:x};ext=1\r\n", chunk.len());
                        let _ = stream.write_all(chunk);
                        let _ = stream.write_all(b"\r\n");
                    }
                    let _ = stream.write_all(b"0\r\n\r\n");
                }
            }
            200
        }
    } else {
        let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        404
    };
    let _ = stream.flush();
    hits.lock().unwrap().push(Hit { path, status, if_none_match });
}

/// A request line a proxy saw, with its `Proxy-Authorization`.
pub type Seen = (String, Option<String>);

/// A forward HTTP proxy on 127.0.0.1: `CONNECT` tunnels and absolute-form GETs, each request line
/// recorded with its `Proxy-Authorization`; `refuse` makes it answer 407 to everything.
pub struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub refuse: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            refuse: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, refuse, stop) = (proxy.seen.clone(), proxy.refuse.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let (seen, refuse) = (seen.clone(), refuse.clone());
                        std::thread::spawn(move || forward(stream, &seen, refuse.load(Ordering::Relaxed)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request lines since the last call, with their `Proxy-Authorization`.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward(mut client: std::net::TcpStream, seen: &Mutex<Vec<Seen>>, refuse: bool) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                auth = Some(value.trim().to_string());
                continue;
            }
        }
        headers.push(line);
    }
    seen.lock().unwrap().push((request_line.trim().to_string(), auth));
    if refuse {
        let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method == "CONNECT" {
        let Ok(upstream) = std::net::TcpStream::connect(target) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
        let mut client_write = client.try_clone().unwrap();
        let to_server = std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut up_write);
            let _ = up_write.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
        let _ = to_server.join();
    } else {
        // `GET http://host:port/path`: ask the origin for `/path`.
        let rest = target.strip_prefix("http://").unwrap_or(target);
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let Ok(mut upstream) = std::net::TcpStream::connect(authority) else { return };
        let _ = write!(upstream, "{method} {} HTTP/1.1\r\n", if path.is_empty() { "/" } else { path });
        for h in &headers {
            let _ = upstream.write_all(h.as_bytes());
        }
        let _ = upstream.write_all(b"\r\n");
        let _ = std::io::copy(&mut upstream, &mut client);
    }
}

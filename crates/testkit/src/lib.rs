//! The end-to-end test kit: starts the real `opsagent-hub` and `opsagent` binaries (as built by
//! `cargo test --workspace`) on loopback, in temp dirs, and drives the hub through its own CLI.
//! Nothing is mocked. Everything it starts is killed when dropped.
//!
//! Start with [`Hub::start`], [`Hub::add_instance`] and [`Agent::start`]; poll with [`wait_until`].

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The directory holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/<test> → target/debug; target/release/<bench> → target/release
    let dir = exe.parent().expect("the binary's directory");
    if dir.ends_with("deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn agent_bin() -> PathBuf {
    bin_dir().join("opsagent")
}

pub fn hub_bin() -> PathBuf {
    bin_dir().join("opsagent-hub")
}

/// Polls `predicate` every 20 ms until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if predicate() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The outcome of a CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// A running hub (`opsagent-hub serve`) with its data dir.
pub struct Hub {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Certificate chain, key, and the CA the CLI trusts.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    log: PathBuf,
    /// Extra environment of the hub process.
    env: Vec<(String, String)>,
}

impl Hub {
    /// Starts a hub on a free loopback port, with its data in `dir`.
    pub fn start(dir: &Path) -> Hub {
        Hub::start_with_env(dir, &[])
    }

    /// Like [`Hub::start`], with extra environment variables for the hub process.
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Hub {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
        let mut hub = Hub {
            child: None,
            addr,
            data_dir: dir.join("hub-data"),
            tls: None,
            log: dir.join("hub.log"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        hub.spawn();
        hub
    }

    /// Starts a hub serving TLS with the given certificate chain and key (PEM files); the CLI
    /// trusts `ca`.
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path, ca: &Path) -> Hub {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
        let mut hub = Hub {
            child: None,
            addr,
            data_dir: dir.join("hub-data"),
            tls: Some((cert.to_path_buf(), key.to_path_buf(), ca.to_path_buf())),
            log: dir.join("hub.log"),
            env: Vec::new(),
        };
        hub.spawn();
        hub
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("hub log");
        let mut cmd = Command::new(hub_bin());
        cmd.arg("serve").arg("--listen").arg(self.addr.to_string()).arg("--data-dir").arg(&self.data_dir);
        if let Some((cert, key, _)) = &self.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let child = cmd
            .env("OPSAGENT_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("OPSAGENT_HUB_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("hub log"))
            .stderr(log)
            .spawn_retrying()
            .expect("start opsagent-hub");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(20), || self.cli(&["app", "list"]).code == 0);
        assert!(up, "the hub did not come up; its log:\n{}", self.log_text());
    }

    /// The hub's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn http_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/agent/", self.addr)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api-token")).unwrap_or_default().trim().to_string()
    }

    /// Runs `opsagent-hub --hub URL --token T ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(hub_bin());
        cmd.arg("--hub").arg(self.http_url()).arg("--token").arg(self.token()).args(args).env("NO_COLOR", "1");
        if let Some((_, _, ca)) = &self.tls {
            cmd.env("OPSAGENT_HUB_CA_CERT", ca);
        }
        Run::from(cmd.output().expect("run opsagent-hub"))
    }

    /// Like [`Hub::cli`] with `--json`, asserting success.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.cli(&all);
        assert_eq!(run.code, 0, "opsagent-hub {args:?} failed:\n{}\n{}", run.stdout, run.stderr);
        run.json()
    }

    /// Creates an app.
    pub fn create_app(&self, app: &str) {
        self.json(&["app", "create", app]);
    }

    /// Adds an instance; returns its agent config snippet (TOML).
    pub fn add_instance(&self, app: &str, instance: &str) -> String {
        self.json(&["instance", "add", app, instance])["config"].as_str().expect("config snippet").to_string()
    }

    /// Pushes a recipe file; returns the version the hub assigned.
    pub fn push(&self, app: &str, recipe: &Path) -> u64 {
        self.json(&["recipe", "push", app, recipe.to_str().expect("utf-8 path")])["recipe_version"]
            .as_u64()
            .expect("recipe_version")
    }

    pub fn status(&self, app: &str) -> Value {
        self.json(&["status", app])
    }

    /// How many instances of `app` are connected now.
    pub fn connected_count(&self, app: &str) -> usize {
        self.status(app)["instances"]
            .as_array()
            .map(|list| list.iter().filter(|i| i["connected"] == true).count())
            .unwrap_or(0)
    }

    /// The status of one instance (`instances[]` entry).
    pub fn instance_status(&self, app: &str, instance: &str) -> Value {
        let status = self.status(app);
        status["instances"]
            .as_array()
            .and_then(|list| list.iter().find(|i| i["instance_id"] == instance).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident and peak memory of the hub process, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        memory_kib(self.child.as_ref()?.id())
    }

    /// Kills the hub at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the hub again on the same address and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running agent (`opsagent run`).
pub struct Agent {
    child: Option<Child>,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    /// Extra environment of the agent process.
    env: Vec<(String, String)>,
}

impl Agent {
    /// Writes `config_snippet` plus test settings into `dir` and starts the agent there.
    pub fn start(dir: &Path, config_snippet: &str, extra: &str) -> Agent {
        Agent::start_with_env(dir, config_snippet, extra, &[])
    }

    /// Like [`Agent::start`], with extra environment variables for the agent process.
    pub fn start_with_env(dir: &Path, config_snippet: &str, extra: &str, env: &[(&str, &str)]) -> Agent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let state_dir = dir.join("state");
        let config = dir.join("opsagent.conf");
        let text = format!("{config_snippet}\nstate_dir = \"{}\"\n{extra}\n", state_dir.display());
        std::fs::write(&config, text).expect("agent config");
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut agent = Agent { child: None, config, state_dir, log: dir.join("agent.log"), env };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("agent log");
        let child = Command::new(agent_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("OPSAGENT_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("agent log"))
            .stderr(log)
            .spawn_retrying()
            .expect("start opsagent");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident and peak memory of the agent process, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        memory_kib(self.pid()?)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the agent at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent with SIGTERM and waits for it; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        child.wait().ok().and_then(|s| s.code())
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scratch directory named `opsagent-test-*`, removed on drop.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("opsagent-test-").tempdir().expect("temp dir")
}

/// A plain-HTTP GET of the hub's API (loopback, no TLS), returning the JSON body.
pub fn api_get(hub: &Hub, path: &str) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(hub.addr).expect("connect to the hub");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        hub.addr,
        hub.token()
    );
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}\n{body}");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Writes a recipe file in `dir`; `@` in `text` stands for `dir`.
pub fn recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text.replace('@', &dir.display().to_string())).expect("write the recipe");
    path
}

/// Settings that make agents quick in tests: short round interval, no splay, fast reconnects.
pub const FAST_AGENT: &str = "round_interval_secs = 1\nsplay_secs = 0\nreconnect_max_secs = 2\nkill_grace_secs = 1";

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A real, runnable build of the agent that reports `version`: a copy of the built binary
/// (without debug info, to keep downloads quick) whose version slot (`OPSAGENT-VERSION-SLOT:`,
/// see `crates/agent/src/version.rs`) is patched. Written to `dir/opsagent-<version>`.
pub fn agent_with_version(dir: &Path, version: &str) -> PathBuf {
    const PREFIX: &[u8] = b"OPSAGENT-VERSION-SLOT:";
    const SLOT_LEN: usize = 64;
    assert!(PREFIX.len() + version.len() < SLOT_LEN, "version too long for the slot");
    let out = dir.join(format!("opsagent-{version}"));
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(agent_bin())
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(agent_bin(), &out).expect("copy the agent binary");
    }
    let mut bytes = std::fs::read(&out).expect("read the agent binary");
    let built = [PREFIX, env!("CARGO_PKG_VERSION").as_bytes(), b"\0"].concat();
    let hits: Vec<usize> =
        bytes.windows(built.len()).enumerate().filter(|(_, w)| *w == built.as_slice()).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "the version slot should appear once in the agent binary");
    let mut slot = [0u8; SLOT_LEN];
    slot[..PREFIX.len()].copy_from_slice(PREFIX);
    slot[PREFIX.len()..PREFIX.len() + version.len()].copy_from_slice(version.as_bytes());
    bytes[hits[0]..hits[0] + SLOT_LEN].copy_from_slice(&slot);
    std::fs::write(&out, bytes).expect("write the patched agent");
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    out
}

impl Hub {
    /// `opsagent-hub keygen --out DIR`; returns the public key (hex).
    pub fn keygen(&self, out: &Path) -> String {
        let run = self.cli(&["keygen", "--out", out.to_str().expect("utf-8 path")]);
        assert_eq!(run.code, 0, "keygen failed:\n{}", run.stderr);
        run.stdout.trim().to_string()
    }

    /// `opsagent-hub release add` into this hub's data dir; returns the manifest.
    pub fn release_add(&self, version: &str, binary: &Path, key: &Path) -> Value {
        let data_dir = self.data_dir.to_str().expect("utf-8 path").to_string();
        self.json(&[
            "--data-dir",
            &data_dir,
            "release",
            "add",
            "--version",
            version,
            "--binary",
            binary.to_str().expect("utf-8 path"),
            "--signing-key",
            key.to_str().expect("utf-8 path"),
        ])
    }

    /// Stops the hub's process (SIGKILL) without forgetting how to start it again.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a stopped hub again on the same address and data dir.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

/// An agent installed the way the userdata script installs it, under a scratch root:
/// `<root>/opt/madeira/versions/<v>/opsagent`, `current`, `<root>/etc/opsagent.conf` (with
/// `install_root = <root>`) and the state dir `<root>/var/lib/madeira`, started from `current`.
pub struct Installed {
    pub root: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    child: Option<Child>,
}

impl Installed {
    /// Installs `binary` as `version` under `root` with `config_snippet` plus `extra` settings.
    pub fn install(root: &Path, binary: &Path, version: &str, config_snippet: &str, extra: &str) -> Installed {
        let versions = root.join("opt/madeira/versions").join(version);
        std::fs::create_dir_all(&versions).expect("versions dir");
        std::fs::copy(binary, versions.join("opsagent")).expect("install the agent");
        for link in ["current", "stable"] {
            std::os::unix::fs::symlink(Path::new("versions").join(version), root.join("opt/madeira").join(link))
                .expect("current and stable symlinks");
        }
        let state_dir = root.join("var/lib/madeira");
        std::fs::create_dir_all(&state_dir).expect("state dir");
        std::fs::create_dir_all(root.join("etc")).expect("etc");
        let config = root.join("etc/opsagent.conf");
        let text = format!(
            "{config_snippet}\nstate_dir = \"{}\"\ninstall_root = \"{}\"\n{extra}\n",
            state_dir.display(),
            root.display()
        );
        std::fs::write(&config, text).expect("agent config");
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        Installed { root: root.to_path_buf(), config, state_dir, child: None }
    }

    /// Starts `current/opsagent run`, with `env` added (e.g. `OPSAGENT_TEST_KILL_AT`); logs go to
    /// `<state dir>/opsagent.log`, as with the watchdog.
    pub fn start(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("opsagent.log"))
            .expect("agent log");
        let child = Command::new(self.root.join("opt/madeira/current/opsagent"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .envs(env.iter().copied())
            .env("OPSAGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("agent log"))
            .stderr(log)
            .spawn_retrying()
            .expect("start the installed agent");
        self.child = Some(child);
    }

    /// Runs `stable/opsagent watchdog` once, as cron would.
    pub fn watchdog(&mut self) -> Run {
        // Reap our own child if it died, so that it is not left a zombie.
        if let Some(child) = &mut self.child {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
            }
        }
        let output = Command::new(self.root.join("opt/madeira/stable/opsagent"))
            .arg("watchdog")
            .arg("--config")
            .arg(&self.config)
            .env_remove("OPSAGENT_TEST_KILL_AT")
            .output()
            .expect("run the watchdog");
        Run::from(output)
    }

    /// Runs `current/opsagent status --config …` (with `--json` if asked).
    pub fn status(&self, json: bool) -> Run {
        let mut cmd = Command::new(self.root.join("opt/madeira/current/opsagent"));
        cmd.arg("status").arg("--config").arg(&self.config);
        if json {
            cmd.arg("--json");
        }
        Run::from(cmd.output().expect("run opsagent status"))
    }

    /// The pid in the pidfile, if that process runs an `opsagent` binary.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.state_dir.join("opsagent.pid")).ok()?.trim().parse().ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        exe.file_name()?.to_string_lossy().starts_with("opsagent").then_some(pid)
    }

    /// The version `current` points at.
    pub fn current_version(&self) -> Option<String> {
        let target = std::fs::read_link(self.root.join("opt/madeira/current")).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// `<state dir>/upgrade.json`, or `Null`.
    pub fn upgrade_state(&self) -> Value {
        std::fs::read_to_string(self.state_dir.join("upgrade.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("opsagent.log")).unwrap_or_default()
    }

    /// Kills the agent (whichever process the pidfile names, and our own child).
    pub fn kill(&mut self) {
        if let Some(pid) = self.running_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The agent's per-instance hash (FNV-1a of the instance id), which splays its first connection
/// over `hash % 2000` ms.
pub fn instance_hash(instance_id: &str) -> u64 {
    instance_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `Command::spawn`, retried while the program is "Text file busy" (ETXTBSY): a test that has just
/// written a binary (an installed or patched agent) can race another thread's fork, whose child
/// holds the written file open until it execs.
pub trait SpawnRetrying {
    fn spawn_retrying(&mut self) -> std::io::Result<Child>;
}

impl SpawnRetrying for Command {
    fn spawn_retrying(&mut self) -> std::io::Result<Child> {
        let mut tries = 0;
        loop {
            match self.spawn() {
                Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }
}

/// A plain-HTTP POST to the hub (loopback, no TLS) with extra headers and a raw body; returns the
/// status code and the body. No token unless `headers` carries one.
pub fn http_post(hub: &Hub, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(hub.addr).expect("connect to the hub");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        hub.addr,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send the request");
    stream.write_all(body).expect("send the body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (code, body)
}

impl Hub {
    /// The operator token, for raw API calls.
    pub fn api_token(&self) -> String {
        self.token()
    }
}

//! `linux.docker.running` — a Docker container running with the wanted image and settings, recreated when they differ.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `container` | string | required | the container's name; with `count`, the containers are `NAME_1` … `NAME_N` |
//! | `image` | string | required | e.g. `namespace/app`; a `:tag` may be written here instead of in `tag` |
//! | `tag` | string | `latest` | |
//! | `command` | list of strings | the image's `CMD` | the command and its arguments, e.g. `[/usr/sbin/apache2, -D, FOREGROUND]` |
//! | `environment` | dict: name → value | — | added to the image's environment; values are passed to docker in its environment, not on its command line, and reports name the variables only |
//! | `volumes` | dict: host path → container path | — | bind mounts; end the container path with `:ro` for read-only |
//! | `devices` | dict: host device → container device | — | end with `:r`, `:rw`, `:rwm`… to limit the permissions (default `rwm`) |
//! | `mem_limit` | size | — | `512m`, `1g`, `65536k`, or bytes |
//! | `cpu_shares` | whole number | — | relative CPU weight (`--cpu-shares`) |
//! | `port_bindings` | dict: container port → host port | — | `5000/tcp: 127.0.0.1:5000`, `6000/udp: 6000` (all addresses), `80: 8080` (tcp); with `count`, the host port grows by one per container |
//! | `count` | whole number ≥ 1 | — | run that many containers, `NAME_1` … `NAME_N` |
//! | `force` | bool | `false` | recreate the containers on every round, as in the original |
//! | `files` | dict: container path → host path | — | more bind mounts (read-write), the original's "persistent files" |
//! | `watch` | list of absolute paths | — | when one of these files changes, running containers are restarted |
//! | `username`, `password` | strings | — | registry credentials, used when `docker run` must pull the image first |
//! | `email` | string | — | accepted for compatibility and ignored |
//!
//! "Already fine" means each container exists, runs, and `docker container inspect` shows the
//! wanted settings: the id of the local image `image:tag`, the command (the image's own when none
//! is given), the environment (the image's plus `environment`), the bind mounts, the devices, the
//! port bindings, the memory limit and the CPU shares. A container that differs is removed and run
//! again (`docker rm -f`, `docker run -d`), and the report says what differed, e.g. `update
//! container web (recreate: image sha256:0a1b… -> sha256:2c3d…; environment: GREETING)`. A stopped
//! container that is otherwise right is started (`start container web`); a missing one is created
//! (`create container web (run example/app:latest)`). A changed watched file restarts a running
//! container (fingerprints under `<state dir>/watch/<state id>.json`, saved only after success;
//! a file never fingerprinted counts as changed, so a container that already ran before the
//! state first ran is restarted once; the original ignored first sightings, which left the
//! fingerprint unsaved as long as nothing else changed). After `apply`, each container it
//! created, started or restarted must still run one second later, else the state fails with its exit status and the last lines of its log. The
//! containers use the daemon's default network. `--test` lists the same changes.
//!
//! ```yaml
//! - id: web
//!   module: linux.docker.running
//!   parameter:
//!     container: web
//!     image: example/app
//!     tag: "1.4"
//!     environment: { GREETING: hello }
//!     volumes: { /srv/web/data: /data }
//!     port_bindings: { 80/tcp: "127.0.0.1:8080" }
//!     mem_limit: 256m
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;

use opsagent_recipe::{Diagnostic, Kind, ParamReader, Pos, State};

use super::linux_file::check_absolute;
use crate::providers::docker::{self, Container, Credentials, Image, ImageRef};
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.docker.running`.
#[derive(Debug, Clone)]
pub struct Running {
    pub state_id: String,
    pub container: String,
    pub image: ImageRef,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    /// `host:container[:ro]` bind mounts, in recipe order (volumes, then files).
    pub binds: Vec<String>,
    /// `host:container:permissions`.
    pub devices: Vec<String>,
    pub memory: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub ports: Vec<PortBinding>,
    pub count: Option<u32>,
    pub force: bool,
    pub watch: Vec<PathBuf>,
    pub credentials: Option<Credentials>,
}

/// One `port_bindings` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    /// `80/tcp`.
    pub container_port: String,
    /// Empty for all addresses.
    pub host_ip: String,
    pub host_port: u16,
}

/// The parameter names shared with `linux.docker.deploy`.
pub(crate) const PARAMS: &[&str] = &[
    "container",
    "image",
    "tag",
    "command",
    "environment",
    "volumes",
    "devices",
    "mem_limit",
    "cpu_shares",
    "port_bindings",
    "count",
    "force",
    "username",
    "password",
    "email",
];

impl Running {
    pub fn from_params(state: &State) -> Result<(Running, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let running = Running::read(&mut p, state);
        let files = read_dict(&mut p, "files");
        let files_pos = p.node("files").and_then(|n| n.pos);
        let mut file_binds = Vec::new();
        for (target, host) in files {
            let param = format!("files.{target}");
            let target = check_absolute(&mut p, &param, files_pos, &target);
            let host = check_absolute(&mut p, &param, files_pos, &host);
            if let (Some(target), Some(host)) = (target, host) {
                file_binds.push(format!("{}:{}", host.display(), target.display()));
            }
        }
        let watch_pos = p.node("watch").and_then(|n| n.pos);
        let watch: Vec<PathBuf> = p
            .string_list("watch")
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, w)| check_absolute(&mut p, &format!("watch[{i}]"), watch_pos, w))
            .collect();
        let mut known = PARAMS.to_vec();
        known.extend(["files", "watch"]);
        let warnings = p.finish(&known, &["email"])?;
        let mut running = running.expect("finish fails when `container` or `image` is missing or invalid");
        running.binds.extend(file_binds);
        running.watch = watch;
        Ok((running, warnings))
    }

    /// Reads the parameters shared with `linux.docker.deploy`.
    pub(crate) fn read(p: &mut ParamReader<'_>, state: &State) -> Option<Running> {
        let name_pos = p.node("container").and_then(|n| n.pos);
        let container = p.required_string("container", "name the container, e.g. `container: web`");
        let container_ok =
            container.as_deref().is_some_and(|c| docker::check_container_name(p, "container", name_pos, c));
        let image = docker::read_image_ref(p, "image", "tag", "namespace/app");
        let command = if p.has("command") { p.string_list("command") } else { None };
        let environment = read_environment(p);
        let binds = read_volumes(p);
        let devices = read_devices(p);
        let memory = read_memory(p);
        let cpu_pos = p.node("cpu_shares").and_then(|n| n.pos);
        let cpu_shares = match p.string("cpu_shares").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if n > 0 => Some(i64::from(n)),
                _ => {
                    p.report(
                        Kind::BadValue,
                        "cpu_shares",
                        cpu_pos,
                        format!("`{text}` is not a number of CPU shares"),
                        Some("give a relative weight, e.g. `cpu_shares: 512` (1024 is the default weight)".into()),
                    );
                    None
                }
            },
        };
        let ports = read_ports(p);
        let count_pos = p.node("count").and_then(|n| n.pos);
        let count = match p.string("count").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => Some(n),
                _ => {
                    p.report(
                        Kind::BadValue,
                        "count",
                        count_pos,
                        format!("`{text}` is not a number of containers"),
                        Some("give a whole number from 1 to 100, e.g. `count: 3`".into()),
                    );
                    None
                }
            },
        };
        if let Some(n) = count {
            for port in &ports {
                if u32::from(port.host_port) + n - 1 > u32::from(u16::MAX) {
                    p.report(
                        Kind::BadValue,
                        &format!("port_bindings.{}", port.container_port),
                        None,
                        format!("host port {} plus {} containers passes 65535", port.host_port, n),
                        None,
                    );
                }
            }
        }
        let force = p.bool("force").unwrap_or(false);
        let credentials = docker::read_credentials(p);
        if !container_ok {
            return None;
        }
        Some(Running {
            state_id: state.id.clone(),
            container: container?,
            image: image?,
            command,
            environment,
            binds,
            devices,
            memory,
            cpu_shares,
            ports,
            count,
            force,
            watch: Vec::new(),
            credentials,
        })
    }

    /// The containers' names: `NAME`, or `NAME_1` … `NAME_N` with `count`.
    pub fn names(&self) -> Vec<String> {
        match self.count {
            None => vec![self.container.clone()],
            Some(n) => (1..=n).map(|i| format!("{}_{i}", self.container)).collect(),
        }
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let changed = crate::watch::changed_files(ctx, &self.state_id, &self.watch)?;
        Ok(Plan { changes: self.plan(ctx, None, !changed.is_empty()).await?, diff: None })
    }

    /// The changes for every container. `new_image_id` is the id the image will have after an
    /// earlier pull of the same state (`linux.docker.deploy`); `restart` asks for a restart of
    /// running containers (a watched or mounted file changed).
    pub(crate) async fn plan(
        &self,
        ctx: &Ctx,
        new_image_id: Option<&str>,
        restart: bool,
    ) -> Result<Vec<Change>, StateError> {
        let full = self.image.full();
        let image = docker::image(ctx, &full).await?;
        let mut changes = Vec::new();
        for (i, name) in self.names().into_iter().enumerate() {
            let target = format!("container {name}");
            let Some(current) = docker::container(ctx, &name).await? else {
                changes.push(Change::new(Action::Create, target, format!("run {full}")));
                continue;
            };
            let mut differences = match &image {
                Some(image) => self.differences(&current, image, new_image_id, i as u32),
                None => vec![format!("image {full} is not here yet")],
            };
            if self.force {
                differences.insert(0, "force".into());
            }
            if !differences.is_empty() {
                changes.push(Change::new(Action::Update, target, format!("recreate: {}", differences.join("; "))));
            } else if !current.running {
                changes.push(Change::new(Action::Start, target, format!("was {}", current.status)));
            } else if restart {
                changes.push(Change::new(Action::Restart, target, "a watched file changed"));
            }
        }
        Ok(changes)
    }

    /// What differs between container number `index` as it is and as wanted.
    fn differences(&self, current: &Container, image: &Image, new_image_id: Option<&str>, index: u32) -> Vec<String> {
        let mut out = Vec::new();
        let image_id = new_image_id.unwrap_or(&image.id);
        let image_changed = current.image_id != image_id;
        if image_changed {
            out.push(format!("image {} -> {}", docker::short(&current.image_id), docker::short(image_id)));
        }
        let command = self.command.as_ref().unwrap_or(&image.cmd);
        if &current.cmd != command {
            out.push(format!("command {} -> {}", shell_words(&current.cmd), shell_words(command)));
        }
        let mut wanted_env = docker::env_map(&image.env);
        wanted_env.extend(self.environment.iter().cloned());
        let current_env = docker::env_map(&current.env);
        // With another image, its own variables change with it: only the state's are named.
        let keys: BTreeSet<&String> = if image_changed {
            self.environment.iter().map(|(k, _)| k).collect()
        } else {
            wanted_env.keys().chain(current_env.keys()).collect()
        };
        let env_diff: Vec<&str> =
            keys.into_iter().filter(|k| wanted_env.get(*k) != current_env.get(*k)).map(|k| k.as_str()).collect();
        if !env_diff.is_empty() {
            out.push(format!("environment: {}", env_diff.join(", ")));
        }
        let mut binds = self.binds.clone();
        binds.sort();
        if current.binds != binds {
            out.push(format!("volumes {} -> {}", list(&current.binds), list(&binds)));
        }
        let mut devices = self.devices.clone();
        devices.sort();
        if current.devices != devices {
            out.push(format!("devices {} -> {}", list(&current.devices), list(&devices)));
        }
        let ports = self.port_map(index);
        if current.ports != ports {
            let show = |v: &[(String, String)]| list(&v.iter().map(|(c, h)| format!("{c}={h}")).collect::<Vec<_>>());
            out.push(format!("port_bindings {} -> {}", show(&current.ports), show(&ports)));
        }
        let memory = self.memory.unwrap_or(0);
        if current.memory != memory {
            out.push(format!("mem_limit {} -> {}", current.memory, memory));
        }
        let cpu = self.cpu_shares.unwrap_or(0);
        if current.cpu_shares != cpu {
            out.push(format!("cpu_shares {} -> {}", current.cpu_shares, cpu));
        }
        out
    }

    /// The port bindings of container number `index`, as `inspect` shows them, sorted.
    fn port_map(&self, index: u32) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .ports
            .iter()
            .map(|p| (p.container_port.clone(), format!("{}:{}", p.host_ip, u32::from(p.host_port) + index)))
            .collect();
        out.sort();
        out
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        let mut outcome = Outcome { changes: plan.changes.clone(), ..Outcome::default() };
        let mut output = String::new();
        for change in &plan.changes {
            output.push_str(&self.apply_change(ctx, change).await?);
        }
        crate::watch::save(ctx, &self.state_id, &self.watch)?;
        if !output.is_empty() {
            outcome.stdout = Some(crate::Tail::from_bytes(output.into_bytes(), ctx.round.max_output_bytes));
        }
        Ok(outcome)
    }

    /// Carries out one change on a container (ignoring changes that are not about containers);
    /// returns docker's output.
    pub(crate) async fn apply_change(&self, ctx: &Ctx, change: &Change) -> Result<String, StateError> {
        let Some(name) = change.target.strip_prefix("container ") else {
            return Ok(String::new());
        };
        let index = self.names().iter().position(|n| n == name).unwrap_or(0) as u32;
        let out = match change.action {
            Action::Create => self.run(ctx, name, index).await?,
            Action::Update => {
                docker::remove_container(ctx, name).await?;
                self.run(ctx, name, index).await?
            }
            Action::Start => docker::docker(ctx, &["start", name]).await?,
            Action::Restart => docker::docker(ctx, &["restart", name]).await?,
            _ => return Ok(String::new()),
        };
        self.verify_running(ctx, name).await?;
        Ok(String::from_utf8_lossy(&out.stdout.bytes).into_owned())
    }

    async fn run(&self, ctx: &Ctx, name: &str, index: u32) -> Result<crate::process::Output, StateError> {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
        for (key, _) in &self.environment {
            args.extend(["-e".into(), key.clone()]);
        }
        for bind in &self.binds {
            args.extend(["-v".into(), bind.clone()]);
        }
        for device in &self.devices {
            args.extend(["--device".into(), device.clone()]);
        }
        if let Some(memory) = self.memory {
            args.extend(["--memory".into(), memory.to_string()]);
        }
        if let Some(shares) = self.cpu_shares {
            args.extend(["--cpu-shares".into(), shares.to_string()]);
        }
        for p in &self.ports {
            let host_port = u32::from(p.host_port) + index;
            let publish = if p.host_ip.is_empty() {
                format!("{host_port}:{}", p.container_port)
            } else {
                format!("{}:{host_port}:{}", p.host_ip, p.container_port)
            };
            args.extend(["-p".into(), publish]);
        }
        args.push(self.image.full());
        if let Some(command) = &self.command {
            args.extend(command.iter().cloned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let registry = self.image.registry();
        let auth = self.credentials.as_ref().map(|c| (registry.as_str(), c));
        docker::docker_with(ctx, &args, auth, &self.environment).await
    }

    /// Fails when container `name` is not running, or stops within [`SETTLE`] of being started,
    /// with its exit status and last log lines.
    async fn verify_running(&self, ctx: &Ctx, name: &str) -> Result<(), StateError> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        let current = loop {
            let current = docker::container(ctx, name).await?;
            let running = current.as_ref().is_some_and(|c| c.running);
            if !running || tokio::time::Instant::now() >= deadline {
                break current;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        match current {
            Some(c) if c.running => Ok(()),
            Some(c) => {
                let logs = docker::docker(ctx, &["logs", "--tail", "20", name]).await;
                let (stdout, stderr) = match logs {
                    Ok(out) => (out.stdout, out.stderr),
                    Err(_) => Default::default(),
                };
                Err(docker::failed(
                    "run",
                    format!(
                        "container `{name}` is not running ({}, exit status {}); its last log lines are below",
                        c.status, c.exit_code
                    ),
                    (stdout, stderr),
                ))
            }
            None => Err(docker::failed(
                "run",
                format!("container `{name}` is gone right after it was started"),
                Default::default(),
            )),
        }
    }
}

/// How long a container must keep running after it was started for the state to succeed: a
/// command that fails at once is a failed state, not a converged one.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

fn shell_words(words: &[String]) -> String {
    format!("[{}]", words.join(" "))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// A dict parameter as (key, value) pairs; a missing value is empty.
pub(crate) fn read_dict(p: &mut ParamReader<'_>, name: &str) -> Vec<(String, String)> {
    p.dict(name)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.key.trim().to_string(), e.value.unwrap_or_default()))
        .collect()
}

fn read_environment(p: &mut ParamReader<'_>) -> Vec<(String, String)> {
    let pos = p.node("environment").and_then(|n| n.pos);
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in read_dict(p, "environment") {
        let ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            p.report(
                Kind::BadValue,
                &format!("environment.{key}"),
                pos,
                format!("`{key}` is not an environment variable name"),
                Some("names are letters, digits and `_`, e.g. `APP_MODE`".into()),
            );
            continue;
        }
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    }
    out
}

fn read_volumes(p: &mut ParamReader<'_>) -> Vec<String> {
    let pos = p.node("volumes").and_then(|n| n.pos);
    let mut out = Vec::new();
    for (host, target) in read_dict(p, "volumes") {
        let param = format!("volumes.{host}");
        let (target, mode) = match target.rsplit_once(':') {
            Some((t, m)) if m == "ro" || m == "rw" => (t.to_string(), m),
            _ => (target.clone(), "rw"),
        };
        let host = check_absolute(p, &param, pos, &host);
        let target = if target.is_empty() {
            p.report(
                Kind::BadValue,
                &param,
                pos,
                "no container path is given",
                Some("map a host path to a container path, e.g. `/srv/data: /data` or `/srv/conf: /conf:ro`".into()),
            );
            None
        } else {
            check_absolute(p, &param, pos, &target)
        };
        if let (Some(host), Some(target)) = (host, target) {
            let ro = if mode == "ro" { ":ro" } else { "" };
            out.push(format!("{}:{}{ro}", host.display(), target.display()));
        }
    }
    out
}

fn read_devices(p: &mut ParamReader<'_>) -> Vec<String> {
    let pos = p.node("devices").and_then(|n| n.pos);
    let mut out = Vec::new();
    for (host, target) in read_dict(p, "devices") {
        let param = format!("devices.{host}");
        let (target, perms) = match target.rsplit_once(':') {
            Some((t, m)) if !m.is_empty() && m.chars().all(|c| "rwm".contains(c)) => (t.to_string(), m.to_string()),
            _ => (if target.is_empty() { host.clone() } else { target.clone() }, "rwm".to_string()),
        };
        let host = check_absolute(p, &param, pos, &host);
        let target = check_absolute(p, &param, pos, &target);
        if let (Some(host), Some(target)) = (host, target) {
            out.push(format!("{}:{}:{perms}", host.display(), target.display()));
        }
    }
    out
}

fn read_memory(p: &mut ParamReader<'_>) -> Option<i64> {
    let pos = p.node("mem_limit").and_then(|n| n.pos);
    let text = p.string("mem_limit").map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty() && s != "0")?;
    let parsed = parse_size(&text);
    if parsed.is_none() {
        report_bad(p, "mem_limit", pos, &text);
    }
    parsed
}

fn report_bad(p: &mut ParamReader<'_>, param: &str, pos: Option<Pos>, text: &str) {
    p.report(
        Kind::BadValue,
        param,
        pos,
        format!("`{text}` is not a memory size"),
        Some("write a number with a unit b, k, m, g or t, e.g. `512m`".into()),
    );
}

/// `512m` → bytes (units b, k, m, g, t, powers of 1024; an optional `b` after the unit).
fn parse_size(text: &str) -> Option<i64> {
    let text = text.strip_suffix('b').filter(|t| t.ends_with(['k', 'm', 'g', 't'])).unwrap_or(text);
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "b"),
    };
    let shift = match unit {
        "b" | "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    let n: i64 = digits.parse().ok()?;
    n.checked_mul(1i64 << shift).filter(|n| *n > 0)
}

fn read_ports(p: &mut ParamReader<'_>) -> Vec<PortBinding> {
    let pos = p.node("port_bindings").and_then(|n| n.pos);
    let mut out: Vec<PortBinding> = Vec::new();
    for (key, value) in read_dict(p, "port_bindings") {
        let param = format!("port_bindings.{key}");
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let port_ok = port.parse::<u16>().is_ok_and(|n| n > 0) && ["tcp", "udp", "sctp"].contains(&proto);
        if !port_ok {
            p.report(
                Kind::BadValue,
                &param,
                pos,
                format!("`{key}` is not a container port"),
                Some("write the port and protocol, e.g. `80/tcp`, `53/udp` or `80`".into()),
            );
            continue;
        }
        let value = value.trim();
        let (ip, host_port) = match value.rsplit_once(':') {
            Some((ip, port)) => (ip.trim_start_matches('[').trim_end_matches(']'), port),
            None => ("", value),
        };
        let ip_ok = ip.is_empty() || ip.parse::<std::net::IpAddr>().is_ok();
        match host_port.parse::<u16>() {
            Ok(n) if n > 0 && ip_ok => out.push(PortBinding {
                container_port: format!("{port}/{proto}"),
                host_ip: if ip == "0.0.0.0" { String::new() } else { ip.to_string() },
                host_port: n,
            }),
            _ => p.report(
                Kind::BadValue,
                &param,
                pos,
                format!("`{value}` is not a host port"),
                Some("write `[address:]port`, e.g. `127.0.0.1:8080` or `8080`".into()),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("64mb"), Some(64 << 20));
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("12x"), None);
        assert_eq!(parse_size("m"), None);
    }
}

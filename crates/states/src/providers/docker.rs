//! The `docker` command-line client behind the `linux.docker.*` modules: image and container
//! inspection (`--format '{{json .}}'`, parsed with serde_json), pull, build, run, push, through
//! [`crate::process::run_spec`]. No HTTP client of our own: the agent stays small, and the CLI
//! honours the machine's `DOCKER_HOST`, contexts and daemon settings as an operator's shell does.
//!
//! Registry credentials (`username`/`password`) never go on a command line and are never stored
//! in the machine's `~/.docker/config.json`: each command that needs them gets a private
//! `DOCKER_CONFIG` directory (mode 0700 under the state directory) holding only those
//! credentials, removed when the command ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opsagent_recipe::{Kind, ParamReader, Pos};
use serde_json::Value;

use crate::ctx::Owner;
use crate::process::{run_spec, Output, Spec, Tail};
use crate::{fsutil, Ctx, StateError};

/// How to get the `docker` client, for [`StateError::MissingTool`].
pub const INSTALL_HINT: &str =
    "install Docker (Debian's `docker.io` package: an earlier `linux.apt.package` state can) and start its daemon";

/// An image reference split into its parts: `[registry/]name[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `namespace/name` as written (with the registry host when one is given).
    pub repository: String,
    pub tag: String,
}

impl ImageRef {
    /// `repository:tag`.
    pub fn full(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The registry host the repository lives on (`docker.io` when none is written).
    pub fn registry(&self) -> String {
        match self.repository.split_once('/') {
            Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
            _ => "docker.io".to_string(),
        }
    }
}

/// Reads an image reference from `repo_param` (which may carry a `:tag`) and `tag_param`
/// (default `latest`, as in the original).
pub fn read_image_ref(p: &mut ParamReader<'_>, repo_param: &str, tag_param: &str, example: &str) -> Option<ImageRef> {
    let repo_pos = p.node(repo_param).and_then(|n| n.pos);
    let repo = p.required_string(repo_param, &format!("name the image, e.g. `{repo_param}: {example}`"));
    let tag_pos = p.node(tag_param).and_then(|n| n.pos);
    let tag = p.string(tag_param).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let repo = repo?.trim().to_string();
    if repo.contains('@') {
        p.report(
            Kind::BadValue,
            repo_param,
            repo_pos,
            format!("`{repo}`: images pinned by digest are not supported"),
            Some(format!("name the image and give its tag in `{tag_param}`")),
        );
        return None;
    }
    // A `:` after the last `/` is a tag (before it, it is a registry port).
    let last = repo.rsplit('/').next().unwrap_or_default();
    let (repository, written_tag) = match last.split_once(':') {
        Some((_, t)) => (repo[..repo.len() - t.len() - 1].to_string(), Some(t.to_string())),
        None => (repo.clone(), None),
    };
    if repository.is_empty() || !repository.split('/').all(is_path_component_or_host) {
        p.report(
            Kind::BadValue,
            repo_param,
            repo_pos,
            format!("`{repo}` is not an image name"),
            Some(format!("image names are lowercase, e.g. `{example}` or `registry.example.com:5000/{example}`")),
        );
        return None;
    }
    let tag = match (written_tag, tag) {
        (Some(a), Some(b)) if a != b => {
            p.report(
                Kind::BadValue,
                tag_param,
                tag_pos,
                format!("`{repo_param}` says tag `{a}` and `{tag_param}` says `{b}`"),
                Some("give the tag in one place".into()),
            );
            return None;
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => "latest".to_string(),
    };
    if tag.len() > 128 || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        p.report(
            Kind::BadValue,
            tag_param,
            tag_pos,
            format!("`{tag}` is not an image tag"),
            Some("tags are letters, digits, `.`, `_` and `-`, e.g. `latest` or `1.2`".into()),
        );
        return None;
    }
    Some(ImageRef { repository, tag })
}

fn is_path_component_or_host(part: &str) -> bool {
    !part.is_empty()
        && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-:".contains(c))
        && !part.starts_with(['.', '-', '_'])
}

/// Reads a container name parameter (docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
pub fn check_container_name(p: &mut ParamReader<'_>, param: &str, pos: Option<Pos>, name: &str) -> bool {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        p.report(
            Kind::BadValue,
            param,
            pos,
            format!("`{name}` is not a container name"),
            Some("container names are letters, digits, `_`, `.` and `-`, starting with a letter or digit".into()),
        );
    }
    ok
}

/// Registry credentials of a state.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// Reads `username` and `password` (the modules list `email` as ignored: docker dropped
/// `login --email` long ago).
pub fn read_credentials(p: &mut ParamReader<'_>) -> Option<Credentials> {
    let pos = p.node("username").and_then(|n| n.pos);
    let username = p.string("username").filter(|u| !u.is_empty());
    let password = p.string("password").filter(|u| !u.is_empty());
    match (username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (Some(_), None) => {
            p.report(
                Kind::MissingParameter,
                "password",
                pos,
                "`username` is given without `password`",
                Some("give both, or neither for a public registry".into()),
            );
            None
        }
        (None, Some(_)) => {
            p.report(
                Kind::MissingParameter,
                "username",
                pos,
                "`password` is given without `username`",
                Some("give both, or neither for a public registry".into()),
            );
            None
        }
        (None, None) => None,
    }
}

/// Reads a list of container names (`containers`, `dep_containers`).
pub fn read_containers(p: &mut ParamReader<'_>, param: &str) -> Vec<String> {
    let pos = p.node(param).and_then(|n| n.pos);
    let names = p.string_list(param).unwrap_or_default();
    let names: Vec<String> = names.into_iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    for (i, name) in names.iter().enumerate() {
        check_container_name(p, &format!("{param}[{i}]"), pos, name);
    }
    names
}

/// What `docker image inspect` says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:…` (the digest of the image's configuration).
    pub id: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
}

/// What `docker container inspect` says about a container, in the shape the modules compare.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    pub image_id: String,
    pub running: bool,
    pub status: String,
    pub exit_code: i64,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// `port/proto` → `ip:port` (ip empty for all addresses), sorted.
    pub ports: Vec<(String, String)>,
    pub memory: i64,
    pub cpu_shares: i64,
    /// `host:container:permissions`, sorted.
    pub devices: Vec<String>,
}

/// Runs `docker ARGS`; daemon and tool errors become one-line [`StateError`]s.
pub async fn docker(ctx: &Ctx, args: &[&str]) -> Result<Output, StateError> {
    docker_with(ctx, args, None, &[]).await
}

/// Like [`docker`], with registry credentials for `registry` and added environment variables
/// (values given as `docker run -e NAME` take them from there, off the command line).
pub async fn docker_with(
    ctx: &Ctx,
    args: &[&str],
    auth: Option<(&str, &Credentials)>,
    env: &[(String, String)],
) -> Result<Output, StateError> {
    let config_dir = match auth {
        Some((registry, creds)) => Some(AuthDir::new(ctx, registry, creds)?),
        None => None,
    };
    let mut spec = Spec {
        program: "docker".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: env.to_vec(),
        ..Spec::default()
    };
    if let Some(dir) = &config_dir {
        spec.env.push(("DOCKER_CONFIG".into(), dir.0.display().to_string()));
    }
    let result = run_spec(ctx, &spec, INSTALL_HINT).await;
    drop(config_dir);
    result.map_err(|e| one_line(args, e))
}

/// Turns a failed docker command into a one-line error: an unreachable daemon is named with its
/// address; anything else keeps docker's last error line (the full output stays attached).
fn one_line(args: &[&str], error: StateError) -> StateError {
    let StateError::Command { termination, stdout, stderr } = error else {
        return error;
    };
    let text = String::from_utf8_lossy(&stderr.bytes).into_owned();
    if let Some(rest) = text.split("Cannot connect to the Docker daemon at ").nth(1) {
        let at = rest.split(". Is the docker daemon running").next().unwrap_or(rest).trim().to_string();
        return StateError::NotRunning {
            what: "the Docker daemon".into(),
            at,
            hint: "start it (e.g. `service docker start`) or point `DOCKER_HOST` at a running one".into(),
        };
    }
    let message = text
        .lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("DEPRECATED")
                && !l.starts_with("Install the buildx")
                && !l.starts_with("https://docs.docker.com")
        })
        .map(|l| l.trim_start_matches("Error response from daemon: ").to_string())
        .unwrap_or_else(|| format!("it {termination}"));
    let op = args.iter().take_while(|a| !a.starts_with('-')).take(2).copied().collect::<Vec<_>>().join(" ");
    failed(&op, message, (stdout, stderr))
}

/// A failed docker operation: ``"`docker OP` failed: MESSAGE"``, with docker's output kept.
pub fn failed(op: &str, message: impl Into<String>, output: (Tail, Tail)) -> StateError {
    StateError::ToolFailed {
        command: format!("docker {op}"),
        problem: format!("failed: {}", message.into()),
        stdout: output.0,
        stderr: output.1,
    }
}

/// The message of a docker failure made by [`failed`].
fn message_of(error: &StateError) -> Option<&str> {
    match error {
        StateError::ToolFailed { command, problem, .. } if command.starts_with("docker ") => {
            problem.strip_prefix("failed: ")
        }
        _ => None,
    }
}

fn is_not_found(error: &StateError) -> bool {
    message_of(error).is_some_and(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("no such image") || m.contains("no such container") || m.contains("no such object")
    })
}

fn json_lines(out: &Output) -> Result<Value, StateError> {
    let text = String::from_utf8_lossy(&out.stdout.bytes);
    serde_json::from_str(text.trim())
        .map_err(|e| failed("inspect", format!("unreadable answer ({e})"), (out.stdout.clone(), Tail::default())))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The local image `reference`, or `None` when there is none.
pub async fn image(ctx: &Ctx, reference: &str) -> Result<Option<Image>, StateError> {
    let out = match docker(ctx, &["image", "inspect", "--format", "{{json .}}", reference]).await {
        Ok(out) => out,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let v = json_lines(&out)?;
    Ok(Some(Image {
        id: v["Id"].as_str().unwrap_or_default().to_string(),
        cmd: strings(&v["Config"]["Cmd"]),
        env: strings(&v["Config"]["Env"]),
    }))
}

/// The container `name`, or `None` when there is none.
pub async fn container(ctx: &Ctx, name: &str) -> Result<Option<Container>, StateError> {
    let out = match docker(ctx, &["container", "inspect", "--format", "{{json .}}", name]).await {
        Ok(out) => out,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let v = json_lines(&out)?;
    let host = &v["HostConfig"];
    let mut binds = strings(&host["Binds"]);
    binds.sort();
    let mut ports = Vec::new();
    if let Some(map) = host["PortBindings"].as_object() {
        for (port, bindings) in map {
            for b in bindings.as_array().into_iter().flatten() {
                let ip = b["HostIp"].as_str().unwrap_or_default();
                let host_port = b["HostPort"].as_str().unwrap_or_default();
                ports.push((port.clone(), format!("{ip}:{host_port}")));
            }
        }
    }
    ports.sort();
    let mut devices: Vec<String> = host["Devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{}:{}:{}",
                d["PathOnHost"].as_str().unwrap_or_default(),
                d["PathInContainer"].as_str().unwrap_or_default(),
                d["CgroupPermissions"].as_str().unwrap_or_default()
            )
        })
        .collect();
    devices.sort();
    Ok(Some(Container {
        image_id: v["Image"].as_str().unwrap_or_default().to_string(),
        running: v["State"]["Running"].as_bool().unwrap_or(false),
        status: v["State"]["Status"].as_str().unwrap_or_default().to_string(),
        exit_code: v["State"]["ExitCode"].as_i64().unwrap_or(0),
        cmd: strings(&v["Config"]["Cmd"]),
        env: strings(&v["Config"]["Env"]),
        binds,
        ports,
        memory: host["Memory"].as_i64().unwrap_or(0),
        cpu_shares: host["CpuShares"].as_i64().unwrap_or(0),
        devices,
    }))
}

/// Removes container `name` (stopping it first). A container that is already gone is fine.
pub async fn remove_container(ctx: &Ctx, name: &str) -> Result<bool, StateError> {
    match docker(ctx, &["rm", "-f", name]).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The image id (`sha256:…` of its configuration) that the registry serves for `reference` on
/// this machine's platform, or `None` when the registry has no such tag. Read-only: it asks
/// the registry for the manifest (`docker manifest inspect`), it pulls nothing.
pub async fn registry_image_id(
    ctx: &Ctx,
    reference: &ImageRef,
    creds: Option<&Credentials>,
) -> Result<Option<String>, StateError> {
    let registry = reference.registry();
    let insecure = registry_is_insecure(ctx, &registry).await?;
    let auth = creds.map(|c| (registry.as_str(), c));
    let mut target = reference.full();
    for _ in 0..2 {
        let mut args = vec!["manifest", "inspect"];
        if insecure {
            args.push("--insecure");
        }
        args.push(&target);
        let out = match docker_with(ctx, &args, auth, &[]).await {
            Ok(out) => out,
            Err(e)
                if message_of(&e)
                    .is_some_and(|m| m.starts_with("no such manifest") || m.contains("manifest unknown")) =>
            {
                return Ok(None)
            }
            Err(StateError::ToolFailed { problem, stdout, stderr, .. }) => {
                let message = problem.strip_prefix("failed: ").unwrap_or(&problem);
                return Err(failed(
                    "manifest inspect",
                    format!("cannot ask registry `{registry}` about `{}`: {message}", reference.full()),
                    (stdout, stderr),
                ));
            }
            Err(e) => return Err(e),
        };
        let v = json_lines(&out)?;
        if let Some(id) = v["config"]["digest"].as_str() {
            return Ok(Some(id.to_string()));
        }
        // A manifest list (several platforms): follow this machine's entry.
        let arch = platform_arch();
        let entry = v["manifests"].as_array().into_iter().flatten().find(|m| {
            m["platform"]["os"].as_str() == Some("linux") && m["platform"]["architecture"].as_str() == Some(arch)
        });
        let Some(digest) = entry.and_then(|m| m["digest"].as_str()) else {
            return Err(failed(
                "manifest inspect",
                format!("registry `{registry}` has `{}` but not for linux/{arch}", reference.full()),
                (out.stdout, out.stderr),
            ));
        };
        target = format!("{}@{digest}", reference.repository);
    }
    Ok(None)
}

fn platform_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// Whether the daemon talks plain HTTP (or unverified TLS) to `registry`, as its
/// `insecure-registries` setting says (loopback addresses are insecure by default); the client
/// must then do the same for `docker manifest inspect`.
async fn registry_is_insecure(ctx: &Ctx, registry: &str) -> Result<bool, StateError> {
    let out = docker(ctx, &["info", "--format", "{{json .RegistryConfig}}"]).await?;
    let v = json_lines(&out)?;
    if let Some(secure) = v["IndexConfigs"][registry]["Secure"].as_bool() {
        return Ok(!secure);
    }
    let host = registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<std::net::IpAddr> =
        if host == "localhost" { Some(std::net::Ipv4Addr::LOCALHOST.into()) } else { host.parse().ok() };
    let Some(ip) = ip else { return Ok(false) };
    Ok(strings(&v["InsecureRegistryCIDRs"]).iter().any(|cidr| cidr_contains(cidr, ip)))
}

fn cidr_contains(cidr: &str, ip: std::net::IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else { return false };
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A private `DOCKER_CONFIG` directory holding one registry's credentials; removed on drop.
struct AuthDir(PathBuf);

impl AuthDir {
    fn new(ctx: &Ctx, registry: &str, creds: &Credentials) -> Result<AuthDir, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StateError::Io {
            op: "getting random bytes for",
            path: ctx.round.state_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let base = ctx.round.state_dir.join("docker-auth");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(StateError::io("creating", &base))?;
        let dir = base.join(hex::encode(random));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(StateError::io("creating", &dir))?;
        let guard = AuthDir(dir);
        let key =
            if registry == "docker.io" { "https://index.docker.io/v1/".to_string() } else { registry.to_string() };
        let auth = crate::http::base64(format!("{}:{}", creds.username, creds.password).as_bytes());
        let config = serde_json::json!({ "auths": { key: { "auth": auth } } }).to_string();
        let file = guard.0.join("config.json");
        fsutil::write_atomic(&file, config.as_bytes(), 0o600, Owner::default())
            .map_err(StateError::io("writing", &file))?;
        Ok(guard)
    }
}

impl Drop for AuthDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pulls `reference` (with `creds` for its registry, if given).
pub async fn pull(ctx: &Ctx, reference: &ImageRef, creds: Option<&Credentials>) -> Result<Output, StateError> {
    let registry = reference.registry();
    docker_with(ctx, &["pull", &reference.full()], creds.map(|c| (registry.as_str(), c)), &[]).await
}

/// A short image id for reports (`sha256:0123456789ab`).
pub fn short(id: &str) -> String {
    match id.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", &hex[..hex.len().min(12)]),
        None => id.chars().take(19).collect(),
    }
}

/// Splits `KEY=VALUE` environment entries into a map (later entries win).
pub fn env_map(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect()
}

/// The state directory's folder for files a `linux.docker.deploy` state mounts into `container`.
pub fn files_dir(state_dir: &Path, container: &str) -> PathBuf {
    state_dir.join("docker-config").join(container)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_cidrs() {
        let r = |s: &str| ImageRef { repository: s.into(), tag: "latest".into() }.registry();
        assert_eq!(r("nginx"), "docker.io");
        assert_eq!(r("library/nginx"), "docker.io");
        assert_eq!(r("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(r("localhost/app"), "localhost");
        assert!(cidr_contains("127.0.0.0/8", "127.0.0.1".parse().unwrap()));
        assert!(!cidr_contains("127.0.0.0/8", "10.0.0.1".parse().unwrap()));
    }
}

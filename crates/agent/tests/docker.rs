//! `linux.docker.*` end to end, through the real `opsagent apply`, the real `docker` client and a
//! real Docker engine: each test starts its own `dockerd` (Debian's `docker.io`) with its data,
//! exec root, socket, pidfile and config under a temp dir, and no network changes to the host
//! (`--iptables=false --ip-masq=false --ip-forward=false --bridge=none`), its containers under a
//! cgroup of its own (removed at the end); the agent reaches it
//! through `DOCKER_HOST`. Images are built here `FROM scratch` with Debian's static busybox;
//! pulls and pushes go to a private registry (Debian's `docker-registry`) on 127.0.0.1 serving
//! from the temp dir. The `Engine` guard removes the containers, stops the registries and the
//! daemon, removes its cgroup and what it made outside the temp dir (`/etc/docker/key.json`,
//! `/run/docker`, `/run/containerd`, when they were not there before), unmounts what is left and
//! deletes the temp dir, also when a test fails.
//!
//! Where no engine can run (no `dockerd`, or it fails to start), the tests that need one print
//! `skipped: <reason>` with dockerd's own last log line; the error tests run without one.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::Run;

const AUTH_USER: &str = "opsagent-test";
const AUTH_PASSWORD: &str = "opsagent-test-s3cret";

/// What dockerd and containerd make outside their roots (dockerd 20.10 has no flag for its trust
/// key's path): removed after the test when the test made them, children before parents.
const HOST_PATHS: &[&str] =
    &["/etc/docker/key.json", "/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd"];

/// One engine at a time: each test starts its own and they would compete for the two cores.
static ENGINE: Mutex<()> = Mutex::new(());

struct Engine {
    dir: tempfile::TempDir,
    dockerd: Option<Child>,
    registry: Option<Child>,
    /// `127.0.0.1:PORT` of the registry.
    registry_addr: String,
    /// `127.0.0.1:PORT` of a second registry that wants `AUTH_USER`/`AUTH_PASSWORD` (htpasswd).
    auth_registry_addr: String,
    auth_registry: Option<Child>,
    /// The `HOST_PATHS` that were not there before the test (removed by `Drop`; directories only
    /// when empty).
    made_paths: Vec<&'static str>,
    _turn: MutexGuard<'static, ()>,
}

impl Engine {
    /// Starts dockerd and the registry, and builds the base image `opsagent-test-base`; `Err` says
    /// why this machine cannot.
    fn start() -> Result<Engine, String> {
        let turn = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
        for tool in ["dockerd", "docker", "docker-registry", "htpasswd"] {
            if !on_path(tool) {
                return Err(format!(
                    "`{tool}` is not installed (Debian packages docker.io, docker-registry, apache2-utils)"
                ));
            }
        }
        if !Path::new("/bin/busybox").exists() {
            return Err("/bin/busybox is missing (Debian package busybox-static)".into());
        }
        let dir = tempfile::Builder::new().prefix("opsagent-test-docker-").tempdir().expect("temp dir");
        let mut engine = Engine {
            dir,
            dockerd: None,
            registry: None,
            registry_addr: String::new(),
            auth_registry_addr: String::new(),
            auth_registry: None,
            made_paths: HOST_PATHS.iter().copied().filter(|p| !Path::new(p).exists()).collect(),
            _turn: turn,
        };
        let mut last_error = String::new();
        for driver in ["overlay2", "vfs"] {
            match engine.start_dockerd(driver) {
                Ok(()) => {
                    last_error.clear();
                    break;
                }
                Err(e) => last_error = format!("dockerd ({driver}) did not start: {e}"),
            }
        }
        if !last_error.is_empty() {
            return Err(last_error);
        }
        let (addr, child) = engine.start_registry("registry", false)?;
        (engine.registry_addr, engine.registry) = (addr, Some(child));
        let (addr, child) = engine.start_registry("auth-registry", true)?;
        (engine.auth_registry_addr, engine.auth_registry) = (addr, Some(child));
        let ctx = engine.path("base");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nENV BASE=1\nCMD [\"/bin/busybox\", \"sleep\", \"3600\"]\n",
        )
        .unwrap();
        engine.docker_ok(&["build", "-q", "-t", "opsagent-test-base", &ctx.display().to_string()]);
        Ok(engine)
    }

    fn start_dockerd(&mut self, driver: &str) -> Result<(), String> {
        let root = self.path(driver);
        for sub in ["data", "exec"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(self.path("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(self.path("dockerd.log")).unwrap();
        let mut child = Command::new("dockerd")
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            .arg("--config-file")
            .arg(self.path("daemon.json"))
            .arg("-H")
            .arg(self.host())
            .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"])
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            .args(["--storage-driver", driver])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let up = common::wait_until(Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
                || self.docker(&["version", "--format", "{{.Server.Version}}"]).status.success()
        });
        if up && matches!(child.try_wait(), Ok(None)) {
            self.dockerd = Some(child);
            return Ok(());
        }
        stop(&mut child, Duration::from_secs(10));
        let log = std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default();
        let last = log.lines().rfind(|l| l.contains("level=error") || l.contains("failed"));
        Err(last.or(log.lines().last()).unwrap_or("no log").to_string())
    }

    /// A registry serving from `<temp>/NAME` on a free loopback port; with `auth`, it wants
    /// `AUTH_USER`/`AUTH_PASSWORD` (an htpasswd file made with `htpasswd -B`).
    fn start_registry(&self, name: &str, auth: bool) -> Result<(String, Child), String> {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nlog:\n  level: warn\n",
            self.path(name).display(),
        );
        if auth {
            let out = Command::new("htpasswd")
                .args(["-nbB", AUTH_USER, AUTH_PASSWORD])
                .output()
                .map_err(|e| format!("`htpasswd` (Debian package apache2-utils): {e}"))?;
            std::fs::write(self.path(&format!("{name}.htpasswd")), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: opsagent-test\n    path: {}\n",
                self.path(&format!("{name}.htpasswd")).display()
            ));
        }
        let file = self.path(&format!("{name}.yml"));
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("docker-registry: {e}"))?;
        if !common::wait_until(Duration::from_secs(20), || TcpStream::connect(&addr).is_ok()) {
            stop(&mut child, Duration::from_secs(5));
            return Err(format!(
                "the registry did not listen on {addr}: {}",
                std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
            ));
        }
        Ok((addr, child))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The cgroup the containers go under (removed by `Drop`), named after the temp dir.
    fn cgroup_parent(&self) -> String {
        format!("/{}", self.dir.path().file_name().unwrap().to_string_lossy())
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker").args(args).env("DOCKER_HOST", self.host()).output().expect("run docker")
    }

    /// Runs docker, fails the test when it fails; its stdout, trimmed.
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker inspect --format TEMPLATE NAME`.
    fn inspect(&self, name: &str, template: &str) -> String {
        self.docker_ok(&["inspect", "--format", template, name])
    }

    fn exists(&self, name: &str) -> bool {
        self.docker(&["inspect", name]).status.success()
    }

    /// Builds `tag` from the base image with one more `ENV` line (a distinct image per `marker`).
    fn build_variant(&self, tag: &str, marker: &str) -> String {
        let ctx = self.path(&format!("variant-{marker}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), format!("FROM opsagent-test-base\nENV MARKER={marker}\n")).unwrap();
        self.docker_ok(&["build", "-q", "-t", tag, &ctx.display().to_string()])
    }

    fn apply(&self, recipe: &str, extra: &[&str]) -> Run {
        self.apply_env(recipe, extra, &[])
    }

    fn apply_env(&self, recipe: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let host = self.host();
        let mut all = vec![("DOCKER_HOST", host.as_str())];
        all.extend_from_slice(env);
        apply_with(&self.path("recipe.yaml"), &self.path("state"), recipe, extra, &all)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.dockerd.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        for registry in [self.registry.take(), self.auth_registry.take()].into_iter().flatten() {
            let mut registry = registry;
            stop(&mut registry, Duration::from_secs(10));
        }
        if let Some(mut dockerd) = self.dockerd.take() {
            stop(&mut dockerd, Duration::from_secs(30));
        }
        // The (empty) cgroups the containers were under, in each hierarchy.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.cgroup_parent()[1..]));
        }
        for path in &self.made_paths {
            if Path::new(path).is_dir() {
                let _ = std::fs::remove_dir(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
        // Whatever the daemon left mounted under the temp dir (it unmounts on a clean stop).
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> =
            mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)).collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; reaped.
fn stop(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if !common::wait_until(grace, || matches!(child.try_wait(), Ok(Some(_)))) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn on_path(tool: &str) -> bool {
    std::env::var("PATH").unwrap_or_default().split(':').any(|d| Path::new(d).join(tool).is_file())
}

fn apply_with(file: &Path, state: &Path, recipe: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    std::fs::write(file, recipe).unwrap();
    let mut cmd = Command::new(common::bin());
    cmd.arg("apply").arg(file).args(extra).arg("--state-dir").arg(state).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run opsagent"))
}

macro_rules! engine_or_skip {
    () => {
        match Engine::start() {
            Ok(engine) => engine,
            Err(reason) => {
                let _ = writeln!(std::io::stderr(), "skipped: {reason}");
                return;
            }
        }
    };
}

/// The `changes` of state `id` in a JSON report, as `action target (detail)` lines.
fn changes(run: &Run, id: &str) -> Vec<String> {
    let json = run.json();
    let state = json["states"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
    state["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} ({})",
                c["action"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect()
}

fn comment(run: &Run, index: usize) -> String {
    run.json()["states"][index]["comment"].as_str().unwrap_or_default().to_string()
}

/// `--test` then `apply` of a one-state recipe: the plan is exactly what apply then reports;
/// then a second apply changes nothing.
fn converge(e: &Engine, recipe: &str, want: &[String]) -> Run {
    let test = e.apply(recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(&changes(&test, "s"), want, "--test plan");
    let run = e.apply(recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(&changes(&run, "s"), want, "what apply did");
    let again = e.apply(recipe, &["--json", "--retries", "0"]);
    assert_eq!(again.statuses(), ["s=ok"], "{}{}", again.stdout, again.stderr);
    run
}

fn short(id: &str) -> String {
    format!("sha256:{}", &id.trim_start_matches("sha256:")[..12])
}

#[test]
fn pushed_and_pulled_through_a_local_registry() {
    let e = engine_or_skip!();
    let repo = format!("{}/opsagent-test-app", e.registry_addr);
    let v1 = e.build_variant(&format!("{repo}:v1"), "one");

    let push = format!(
        "states:\n  - id: s\n    module: linux.docker.pushed\n    parameter: {{repository: {repo}, tag: v1}}\n"
    );
    converge(&e, &push, &[format!("create {repo}:v1 (push {})", short(&v1))]);

    // Pulled: the image gone locally comes back; a container of it is left alone while the
    // registry has nothing new.
    e.docker_ok(&["rmi", &format!("{repo}:v1")]);
    let pull = format!(
        "states:\n  - id: s\n    module: linux.docker.pulled\n    parameter: {{repo: \"{repo}:v1\", containers: [opsagent-test-user]}}\n"
    );
    converge(&e, &pull, &[format!("create {repo}:v1 (pull {})", short(&v1))]);
    assert_eq!(e.inspect(&format!("{repo}:v1"), "{{.Id}}"), v1);
    e.docker_ok(&["run", "-d", "--name", "opsagent-test-user", &format!("{repo}:v1")]);
    assert_eq!(e.apply(&pull, &["--json"]).statuses(), ["s=ok"]);

    // The registry gets a newer v1: the pull replaces the local one and removes the container.
    let v2 = e.build_variant(&format!("{repo}:v1"), "two");
    e.docker_ok(&["push", &format!("{repo}:v1")]);
    e.docker_ok(&["tag", &v1, &format!("{repo}:v1")]);
    converge(
        &e,
        &pull,
        &[
            format!("update {repo}:v1 (pull {} -> {})", short(&v1), short(&v2)),
            "remove container opsagent-test-user (its image was replaced; its linux.docker.running state recreates it)"
                .to_string(),
        ],
    );
    assert_eq!(e.inspect(&format!("{repo}:v1"), "{{.Id}}"), v2);
    assert!(!e.exists("opsagent-test-user"));

    // Pushing a newer local image over the registry's.
    let v3 = e.build_variant(&format!("{repo}:v1"), "three");
    converge(&e, &push, &[format!("update {repo}:v1 (push {} -> {})", short(&v2), short(&v3))]);

    // A container committed and pushed: every round (its content cannot be compared without a
    // commit), and the dependent containers go.
    e.docker_ok(&["run", "-d", "--name", "opsagent-test-src", "opsagent-test-base"]);
    e.docker_ok(&["exec", "opsagent-test-src", "/bin/busybox", "touch", "/made-here"]);
    let commit = format!(
        "states:\n  - id: s\n    module: linux.docker.pushed\n    parameter: {{repository: {repo}, tag: c1, container: \
         opsagent-test-src, message: snapshot, author: opsagent, dep_containers: [opsagent-test-dep1]}}\n"
    );
    for round in 0..2 {
        e.docker_ok(&["run", "-d", "--name", "opsagent-test-dep1", "opsagent-test-base"]);
        let want = [
            format!("update {repo}:c1 (commit container opsagent-test-src and push)"),
            "remove container opsagent-test-dep1 (a new image was pushed; its linux.docker.running state recreates it)"
                .to_string(),
        ];
        let test = e.apply(&commit, &["--test", "--json"]);
        assert_eq!(changes(&test, "s"), want, "round {round}: {}", test.stderr);
        let run = e.apply(&commit, &["--json", "--retries", "0"]);
        assert_eq!(changes(&run, "s"), want, "round {round}: {}", run.stderr);
        assert!(!e.exists("opsagent-test-dep1"));
    }
    assert_eq!(e.inspect(&format!("{repo}:c1"), "{{.Comment}} {{.Author}}"), "snapshot opsagent");
    e.docker_ok(&["rmi", &format!("{repo}:c1")]);
    let pulled_back =
        format!("states:\n  - id: s\n    module: linux.docker.pulled\n    parameter: {{repo: {repo}, tag: c1}}\n");
    assert_eq!(e.apply(&pulled_back, &["--json"]).statuses(), ["s=changed"]);
    e.docker_ok(&["run", "--rm", &format!("{repo}:c1"), "/bin/busybox", "test", "-e", "/made-here"]);

    // A tag the registry does not have.
    let missing =
        format!("states:\n  - id: s\n    module: linux.docker.pulled\n    parameter: {{repo: {repo}, tag: nope}}\n");
    let run = e.apply(&missing, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        comment(&run, 0),
        format!("`docker pull` failed: registry `{}` has no image `{repo}:nope`", e.registry_addr)
    );
}

#[test]
fn registry_credentials_are_used_and_never_stored() {
    let e = engine_or_skip!();
    let repo = format!("{}/opsagent-test-private", e.auth_registry_addr);
    let home = e.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = [("HOME", home.to_str().unwrap())];
    let v1 = e.build_variant(&format!("{repo}:v1"), "p1");
    let state = |module: &str, repo_param: &str, password: &str| {
        format!(
            "states:\n  - id: s\n    module: linux.docker.{module}\n    parameter: {{{repo_param}: {repo}, tag: v1, \
             username: {AUTH_USER}, password: {password}, email: me@example.com}}\n"
        )
    };
    let mut runs = Vec::new();
    let push = state("pushed", "repository", AUTH_PASSWORD);
    let test = e.apply_env(&push, &["--test", "--json"], &env);
    assert_eq!(changes(&test, "s"), [format!("create {repo}:v1 (push {})", short(&v1))], "{}", test.stderr);
    let run = e.apply_env(&push, &["--json", "--retries", "0"], &env);
    assert_eq!(changes(&run, "s"), [format!("create {repo}:v1 (push {})", short(&v1))], "{}", run.stderr);
    runs.push(run);
    runs.push(e.apply_env(&push, &["--json"], &env));
    assert_eq!(runs[1].statuses(), ["s=ok"]);

    e.docker_ok(&["rmi", &format!("{repo}:v1")]);
    let pull = state("pulled", "repo", AUTH_PASSWORD);
    let run = e.apply_env(&pull, &["--json", "--retries", "0"], &env);
    assert_eq!(changes(&run, "s"), [format!("create {repo}:v1 (pull {})", short(&v1))], "{}", run.stderr);
    runs.push(run);
    runs.push(e.apply_env(&pull, &["--json"], &env));
    assert_eq!(runs[3].statuses(), ["s=ok"]);

    // Without credentials the registry cannot be asked; with a wrong password docker's client
    // cannot tell a refusal from a missing tag, and the push itself is refused.
    let anonymous =
        format!("states:\n  - id: s\n    module: linux.docker.pulled\n    parameter: {{repo: {repo}, tag: v1}}\n");
    let run = e.apply_env(&anonymous, &["--json", "--retries", "0"], &env);
    assert_eq!(run.code, 1);
    let message = comment(&run, 0);
    assert!(
        message.starts_with(&format!(
            "`docker manifest inspect` failed: cannot ask registry `{}` about `{repo}:v1`: ",
            e.auth_registry_addr
        )) && message.contains("no basic auth credentials"),
        "{message}"
    );
    e.build_variant(&format!("{repo}:v1"), "p2");
    let run = e.apply_env(&state("pushed", "repository", "wrong-password"), &["--json", "--retries", "0"], &env);
    assert_eq!(run.code, 1);
    assert!(comment(&run, 0).contains("unauthorized: authentication required"), "{}", comment(&run, 0));
    runs.push(run);

    for run in &runs {
        assert!(!run.stdout.contains(AUTH_PASSWORD) && !run.stderr.contains(AUTH_PASSWORD), "{}", run.stdout);
    }
    assert!(!home.join(".docker").exists(), "docker login state was written to the home directory");
    let auth_dirs: Vec<_> = std::fs::read_dir(e.path("state/docker-auth")).unwrap().collect();
    assert!(auth_dirs.is_empty(), "credential directories left behind: {auth_dirs:?}");
}

#[test]
fn built_rebuilds_when_the_dockerfile_changes() {
    let e = engine_or_skip!();
    let ctx = e.path("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM opsagent-test-base\nENV APP=1\n").unwrap();
    let recipe = format!(
        "states:\n  - id: s\n    module: linux.docker.built\n    parameter: {{tag: opsagent-test-built, path: {}, containers: [opsagent-test-b]}}\n",
        ctx.display()
    );
    let run = converge(&e, &recipe, &[format!("create opsagent-test-built:latest (build from {})", ctx.display())]);
    let stdout = run.json()["states"][0]["stdout"].as_str().unwrap_or_default().to_string();
    assert!(stdout.contains("Successfully tagged opsagent-test-built:latest"), "{stdout}");
    let first = e.inspect("opsagent-test-built", "{{.Id}}");

    e.docker_ok(&["run", "-d", "--name", "opsagent-test-b", "opsagent-test-built"]);
    std::fs::write(ctx.join("Dockerfile"), "FROM opsagent-test-base\nENV APP=2\n").unwrap();
    converge(
        &e,
        &recipe,
        &[
            "update opsagent-test-built:latest (rebuild: Dockerfile changed)".to_string(),
            "remove container opsagent-test-b (its image was rebuilt; its linux.docker.running state recreates it)"
                .to_string(),
        ],
    );
    assert_ne!(e.inspect("opsagent-test-built", "{{.Id}}"), first);
    assert!(!e.exists("opsagent-test-b"));

    let forced = recipe.replace("containers: [opsagent-test-b]", "force: true");
    let run = e.apply(&forced, &["--json"]);
    assert_eq!(changes(&run, "s"), ["update opsagent-test-built:latest (rebuild: force)"]);

    let nowhere = recipe.replace(&ctx.display().to_string(), &e.path("nowhere").display().to_string());
    let run = e.apply(&nowhere, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        comment(&run, 0),
        format!(
            "`{}` does not exist; `path` must be a directory holding a `Dockerfile`",
            e.path("nowhere/Dockerfile").display()
        )
    );
}

#[test]
fn running_converges_and_recreates_what_differs() {
    let e = engine_or_skip!();
    let data = e.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello"), "hi\n").unwrap();
    let recipe = |env: &str, extra: &str| {
        format!(
            "states:\n  - id: s\n    module: linux.docker.running\n    parameter:\n      container: opsagent-test-web\n      \
             image: opsagent-test-base\n      count: 2\n      command: [/bin/busybox, sleep, \"1000\"]\n      \
             environment: [{{key: GREETING, value: {env}}}]\n      volumes: {{{}: \"/data:ro\"}}\n      \
             port_bindings: {{\"80/tcp\": \"127.0.0.1:18780\", \"90/udp\": \"18790\"}}\n      mem_limit: 64m\n      \
             cpu_shares: \"512\"\n      devices: {{/dev/null: \"/dev/xnull:r\"}}\n{extra}",
            data.display()
        )
    };
    converge(
        &e,
        &recipe("hello", ""),
        &[
            "create container opsagent-test-web_1 (run opsagent-test-base:latest)".to_string(),
            "create container opsagent-test-web_2 (run opsagent-test-base:latest)".to_string(),
        ],
    );
    let web2 = "opsagent-test-web_2";
    assert_eq!(e.inspect(web2, "{{.State.Running}}"), "true");
    assert_eq!(e.inspect(web2, "{{json .Config.Cmd}}"), r#"["/bin/busybox","sleep","1000"]"#);
    assert!(e.inspect(web2, "{{json .Config.Env}}").contains("\"GREETING=hello\""));
    assert_eq!(e.inspect(web2, "{{json .HostConfig.Binds}}"), format!("[\"{}:/data:ro\"]", data.display()));
    assert_eq!(
        e.inspect(web2, "{{json .HostConfig.PortBindings}}"),
        r#"{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18781"}],"90/udp":[{"HostIp":"","HostPort":"18791"}]}"#
    );
    assert_eq!(e.inspect(web2, "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}"), "67108864 512");
    assert_eq!(
        e.inspect(web2, "{{json .HostConfig.Devices}}"),
        r#"[{"PathOnHost":"/dev/null","PathInContainer":"/dev/xnull","CgroupPermissions":"r"}]"#
    );
    assert_eq!(e.docker_ok(&["exec", web2, "/bin/busybox", "cat", "/data/hello"]), "hi");

    // A changed variable recreates both, naming the variable (not its value).
    let run = converge(
        &e,
        &recipe("bye", ""),
        &[
            "update container opsagent-test-web_1 (recreate: environment: GREETING)".to_string(),
            "update container opsagent-test-web_2 (recreate: environment: GREETING)".to_string(),
        ],
    );
    assert!(!run.stdout.contains("bye"), "{}", run.stdout);
    assert!(e.inspect(web2, "{{json .Config.Env}}").contains("\"GREETING=bye\""));

    // Stopped → started; a container made by hand with other settings → recreated, saying how.
    e.docker_ok(&["stop", "-t", "1", "opsagent-test-web_1"]);
    e.docker_ok(&["rm", "-f", web2]);
    e.docker_ok(&["run", "-d", "--name", web2, "-e", "GREETING=bye", "opsagent-test-base"]);
    let run = converge(
        &e,
        &recipe("bye", ""),
        &[
            "start container opsagent-test-web_1 (was exited)".to_string(),
            format!(
                "update container opsagent-test-web_2 (recreate: command [/bin/busybox sleep 3600] -> [/bin/busybox sleep \
                 1000]; volumes none -> {}:/data:ro; devices none -> /dev/null:/dev/xnull:r; port_bindings none -> 80/tcp=127.0.0.1:18781, 90/udp=:18791; \
                 mem_limit 0 -> 67108864; cpu_shares 0 -> 512)",
                data.display()
            ),
        ],
    );
    drop(run);

    // A new image under the tag recreates the containers.
    let old = e.inspect("opsagent-test-base", "{{.Id}}");
    let new = e.build_variant("opsagent-test-base", "new");
    let run = e.apply(&recipe("bye", ""), &["--json"]);
    assert_eq!(
        changes(&run, "s")[0],
        format!("update container opsagent-test-web_1 (recreate: image {} -> {})", short(&old), short(&new))
    );

    // force recreates every round.
    let forced = recipe("bye", "      force: true\n");
    for _ in 0..2 {
        let run = e.apply(&forced, &["--json"]);
        assert_eq!(changes(&run, "s")[0], "update container opsagent-test-web_1 (recreate: force)");
    }

    // A watched file that changes restarts the running container.
    let watched = e.path("watched.conf");
    std::fs::write(&watched, "a\n").unwrap();
    let watching = format!(
        "states:\n  - id: s\n    module: linux.docker.running\n    parameter: {{container: opsagent-test-w, image: \
         opsagent-test-base, watch: [{}]}}\n",
        watched.display()
    );
    converge(&e, &watching, &["create container opsagent-test-w (run opsagent-test-base:latest)".to_string()]);
    let started = e.inspect("opsagent-test-w", "{{.State.StartedAt}}");
    std::fs::write(&watched, "b\n").unwrap();
    converge(&e, &watching, &["restart container opsagent-test-w (a watched file changed)".to_string()]);
    assert_ne!(e.inspect("opsagent-test-w", "{{.State.StartedAt}}"), started);

    // A command that exits at once fails the state with its status and log.
    let failing =
        "states:\n  - id: s\n    module: linux.docker.running\n    parameter: {container: opsagent-test-fail, \
                   image: opsagent-test-base, command: [/bin/busybox, sh, -c, \"echo boom >&2; exit 3\"]}\n";
    let run = e.apply(failing, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let state = &run.json()["states"][0];
    assert_eq!(
        state["comment"],
        "`docker run` failed: container `opsagent-test-fail` is not running (exited, exit status 3); its last log lines \
         are below"
    );
    assert!(state["stderr"].as_str().unwrap_or_default().contains("boom"), "{state}");
}

#[test]
fn deploy_pulls_writes_files_and_restarts_on_change() {
    let e = engine_or_skip!();
    let repo = format!("{}/opsagent-test-deploy", e.registry_addr);
    let v1 = e.build_variant(&format!("{repo}:latest"), "d1");
    e.docker_ok(&["push", &format!("{repo}:latest")]);
    e.docker_ok(&["rmi", &format!("{repo}:latest")]);
    let recipe = |content: &str| {
        format!(
            "states:\n  - id: s\n    module: linux.docker.deploy\n    parameter:\n      container: opsagent-test-dep\n      \
             image: {repo}\n      environment: {{MODE: test}}\n      files: {{/etc/app.conf: \"{content}\"}}\n"
        )
    };
    let host_file = e.path("state/docker-config/opsagent-test-dep/etc-app.conf");
    let run = converge(
        &e,
        &recipe("one"),
        &[
            format!("create {repo}:latest (pull {})", short(&v1)),
            format!("create {} (3 bytes, mounted at /etc/app.conf)", host_file.display()),
            format!("create container opsagent-test-dep (run {repo}:latest)"),
        ],
    );
    assert!(run.json()["states"][0]["diff"].as_str().unwrap_or_default().contains("+one"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "one");
    assert_eq!(e.docker_ok(&["exec", "opsagent-test-dep", "/bin/busybox", "cat", "/etc/app.conf"]), "one");

    // New content: written, and the container restarted so that it sees it.
    converge(
        &e,
        &recipe("two"),
        &[
            format!("update {} (3 bytes, mounted at /etc/app.conf)", host_file.display()),
            "restart container opsagent-test-dep (a watched file changed)".to_string(),
        ],
    );
    assert_eq!(e.docker_ok(&["exec", "opsagent-test-dep", "/bin/busybox", "cat", "/etc/app.conf"]), "two");

    // A new image in the registry: --test already shows the recreation it causes.
    let v2 = e.build_variant(&format!("{repo}:latest"), "d2");
    e.docker_ok(&["push", &format!("{repo}:latest")]);
    e.docker_ok(&["tag", &v1, &format!("{repo}:latest")]);
    converge(
        &e,
        &recipe("two"),
        &[
            format!("update {repo}:latest (pull {} -> {})", short(&v1), short(&v2)),
            format!("update container opsagent-test-dep (recreate: image {} -> {})", short(&v1), short(&v2)),
        ],
    );
    assert_eq!(e.inspect("opsagent-test-dep", "{{.Image}}"), v2);
}

#[test]
fn a_missing_docker_or_a_stopped_daemon_is_one_clear_error() {
    let dir = tempfile::Builder::new().prefix("opsagent-test-docker-").tempdir().unwrap();
    let recipe =
        "states:\n  - id: s\n    module: linux.docker.running\n    parameter: {container: opsagent-test-x, image: \
                  opsagent-test-base}\n";
    let empty = dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let file = dir.path().join("r.yaml");
    let state = dir.path().join("state");
    for extra in [&["--json", "--retries", "0"][..], &["--json", "--test"][..]] {
        let run = apply_with(&file, &state, recipe, extra, &[("PATH", &empty.display().to_string())]);
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(
            comment(&run, 0),
            "`docker` is not installed on this machine; install Docker (Debian's `docker.io` package: an earlier \
             `linux.apt.package` state can) and start its daemon"
        );
    }
    if !on_path("docker") {
        let _ = writeln!(std::io::stderr(), "skipped: the stopped-daemon half needs a `docker` client on PATH");
        return;
    }
    let socket = format!("unix://{}/no-daemon.sock", dir.path().display());
    for extra in [&["--json", "--retries", "0"][..], &["--json", "--test"][..]] {
        let run = apply_with(&file, &state, recipe, extra, &[("DOCKER_HOST", &socket)]);
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(
            comment(&run, 0),
            format!(
                "the Docker daemon is not running at {socket}; start it (e.g. `service docker start`) or point \
                 `DOCKER_HOST` at a running one"
            )
        );
    }
}

#[test]
fn bad_parameters_are_refused_by_validate() {
    let dir = tempfile::Builder::new().prefix("opsagent-test-docker-").tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "states:
  - id: p
    module: linux.docker.pulled
    parameter: {repo: \"Bad Name\", username: me, email: me@example.com}
  - id: b
    module: linux.docker.built
    parameter: {tag: app, path: relative/dir, forse: true}
  - id: r
    module: linux.docker.running
    parameter:
      container: \"no spaces\"
      image: \"app:1\"
      tag: \"2\"
      mem_limit: lots
      cpu_shares: 0-3
      count: \"0\"
      port_bindings: {\"80/tcpx\": \"8080\", \"81\": \"nope\"}
      volumes: {relative: /data, /srv: \"\"}
      environment: {\"BAD-NAME\": x}
  - id: u
    module: linux.docker.pushed
    parameter: {tag: v1}
  - id: d
    module: linux.docker.deploy
    parameter: {container: c, image: app, files: {etc/app.conf: x}}
",
    )
    .unwrap();
    let run = Run::from(Command::new(common::bin()).arg("validate").arg(&file).env("NO_COLOR", "1").output().unwrap());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "state 1 `p` (linux.docker.pulled): parameter `repo`: `Bad Name` is not an image name",
        "state 1 `p` (linux.docker.pulled): parameter `password`: `username` is given without `password`",
        "state 1 `p` (linux.docker.pulled): parameter `email`: parameter `email` is accepted for compatibility and ignored",
        "state 2 `b` (linux.docker.built): parameter `path`: `relative/dir` is not an absolute path",
        "state 2 `b` (linux.docker.built): parameter `forse`: unknown parameter `forse`",
        "state 3 `r` (linux.docker.running): parameter `container`: `no spaces` is not a container name",
        "parameter `tag`: `image` says tag `1` and `tag` says `2`",
        "parameter `mem_limit`: `lots` is not a memory size",
        "parameter `cpu_shares`: `0-3` is not a number of CPU shares",
        "parameter `count`: `0` is not a number of containers",
        "parameter `port_bindings.80/tcpx`: `80/tcpx` is not a container port",
        "parameter `port_bindings.81`: `nope` is not a host port",
        "parameter `volumes.relative`: `relative` is not an absolute path",
        "parameter `volumes./srv`: no container path is given",
        "parameter `environment.BAD-NAME`: `BAD-NAME` is not an environment variable name",
        "state 4 `u` (linux.docker.pushed): parameter `repository`: required parameter `repository` is missing",
        "state 5 `d` (linux.docker.deploy): parameter `files.etc/app.conf`: `etc/app.conf` is not an absolute path",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
}

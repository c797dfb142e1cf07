//! The userdata script of `opsagent-hub userdata`, run for real (with `dash`) into scratch roots
//! against a hub on loopback: it installs the layout, the config, the SysV service and the cron
//! watchdog, starts the agent, and running it twice leaves one agent and one cron entry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use opsagent_testkit::{agent_with_version, recipe, scratch, wait_until, Hub, Run};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Kills the agent a scratch root's pidfile names, when the test ends.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        for pid in agents_under(&self.0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The pids of processes running a binary under `root`.
fn agents_under(root: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            if exe.starts_with(root) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn run_script(script: &Path, root: &Path, args: &[&str]) -> Run {
    let output = Command::new("dash").arg(script).args(args).env("OPSAGENT_ROOT", root).output().expect("run dash");
    Run::from(output)
}

fn syntax_ok(script: &Path) {
    for shell in ["sh", "dash"] {
        let run = Run::from(Command::new(shell).arg("-n").arg(script).output().expect("run the shell"));
        assert_eq!(run.code, 0, "{shell} -n: {}", run.stderr);
    }
}

#[test]
fn the_userdata_script_installs_a_working_agent_and_running_it_twice_changes_nothing() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    let public_key = hub.keygen(&dir.path().join("keys"));
    let binary = agent_with_version(dir.path(), VERSION);
    hub.release_add(VERSION, &binary, &dir.path().join("keys/release.key"));

    let made = hub.cli(&["userdata", "--app", "app", "--instance", "vm-1"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let script = dir.path().join("userdata.sh");
    std::fs::write(&script, &made.stdout).unwrap();
    syntax_ok(&script);

    let root = dir.path().join("root");
    let _guard = Root(root.clone());
    for attempt in 1..=2 {
        let run = run_script(&script, &root, &[]);
        assert_eq!(run.code, 0, "run {attempt}: {}\n{}", run.stdout, run.stderr);
        // Give a second agent, if the script started one, the time to show up.
        let one = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(root.join("var/lib/madeira/opsagent.pid")).is_ok() && agents_under(&root).len() == 1
        });
        assert!(one, "run {attempt}: agents under the root: {:?}", agents_under(&root));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agents_under(&root).len(), 1, "one agent after two runs");

    // The layout.
    let madeira = root.join("opt/madeira");
    assert!(madeira.join(format!("versions/{VERSION}/opsagent")).is_file());
    for link in ["current", "stable"] {
        assert_eq!(std::fs::read_link(madeira.join(link)).unwrap(), Path::new("versions").join(VERSION));
    }
    let conf = root.join("etc/opsagent.conf");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains(&format!("update_public_key = \"{public_key}\"")), "{text}");
    assert!(text.contains("instance_id = \"vm-1\""), "{text}");
    assert!(root.join("var/lib/madeira").is_dir());
    let cron = std::fs::read_to_string(root.join("etc/cron.d/opsagent")).unwrap();
    let entries: Vec<&str> = cron.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(entries.len(), 1, "{cron}");
    assert!(entries[0].starts_with("* * * * * root ") && entries[0].contains("stable/opsagent watchdog"), "{cron}");
    let init = root.join("etc/init.d/opsagent");
    let status = Run::from(Command::new(&init).arg("status").output().unwrap());
    assert_eq!(status.code, 0, "{}", status.stdout);

    // The installed agent connects and runs a round.
    let file =
        recipe(dir.path(), "r.yaml", "states:\n  - {id: hello, module: linux.cmd, parameter: {cmd: \"echo hi\"}}\n");
    hub.push("app", &file);
    let ran = wait_until(Duration::from_secs(30), || {
        let i = hub.instance_status("app", "vm-1");
        i["connected"] == true
            && i["agent_version"] == VERSION
            && i["states"].as_array().is_some_and(|s| s.iter().any(|s| s["id"] == "hello" && s["status"] == "changed"))
    });
    assert!(
        ran,
        "{}\nagent log:\n{}",
        hub.status("app"),
        std::fs::read_to_string(root.join("var/lib/madeira/opsagent.log")).unwrap_or_default()
    );

    // The watchdog, as cron runs it, finds all well and does nothing.
    let pid = agents_under(&root);
    let watchdog = Run::from(
        Command::new(madeira.join("stable/opsagent")).args(["watchdog", "--config"]).arg(&conf).output().unwrap(),
    );
    assert_eq!(watchdog.code, 0, "{}", watchdog.stderr);
    assert_eq!(agents_under(&root), pid);
    // Killed, the agent is started again by the watchdog (run again, as cron would, until it is:
    // a process that is still exiting may hold the state directory's lock for a moment).
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid[0]), nix::sys::signal::Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || agents_under(&root).is_empty()));
    let watchdog = || {
        let run = Run::from(
            Command::new(madeira.join("stable/opsagent")).args(["watchdog", "--config"]).arg(&conf).output().unwrap(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    };
    let back = wait_until(Duration::from_secs(20), || {
        if agents_under(&root).is_empty() {
            watchdog();
            std::thread::sleep(Duration::from_millis(300));
        }
        agents_under(&root).len() == 1 && hub.instance_status("app", "vm-1")["connected"] == true
    });
    assert!(
        back,
        "agents: {:?}\n{}\nagent log:\n{}",
        agents_under(&root),
        hub.status("app"),
        std::fs::read_to_string(root.join("var/lib/madeira/opsagent.log")).unwrap_or_default()
    );
}

#[test]
fn without_an_instance_the_script_takes_the_identity_from_its_arguments() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    hub.keygen(&dir.path().join("keys"));
    let binary = agent_with_version(dir.path(), VERSION);
    hub.release_add(VERSION, &binary, &dir.path().join("keys/release.key"));
    let made = hub.cli(&["userdata", "--app", "app"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let script = dir.path().join("userdata.sh");
    std::fs::write(&script, &made.stdout).unwrap();
    syntax_ok(&script);

    let root = dir.path().join("root");
    let _guard = Root(root.clone());
    let run = run_script(&script, &root, &[]);
    assert_eq!(run.code, 2, "no identity: {}", run.stderr);
    assert!(run.stderr.contains("INSTANCE_ID SECRET"), "{}", run.stderr);

    let snippet = hub.add_instance("app", "bare-1");
    let secret = snippet.lines().find_map(|l| l.strip_prefix("secret = ")).unwrap().trim_matches('"').to_string();
    let run = run_script(&script, &root, &["bare-1", &secret]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let connected = wait_until(Duration::from_secs(30), || hub.instance_status("app", "bare-1")["connected"] == true);
    assert!(connected, "{}", std::fs::read_to_string(root.join("var/lib/madeira/opsagent.log")).unwrap_or_default());

    // A binary that does not match the sha256 is refused before anything runs it.
    let other = dir.path().join("root-2");
    let _guard2 = Root(other.clone());
    let tampered: String = made
        .stdout
        .lines()
        .map(|l| if l.starts_with("SHA256=") { format!("SHA256='{}'\n", "0".repeat(64)) } else { format!("{l}\n") })
        .collect();
    let script2 = dir.path().join("userdata-2.sh");
    std::fs::write(&script2, tampered).unwrap();
    let run = run_script(&script2, &other, &["bare-1", &secret]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("sha256 mismatch"), "{}", run.stderr);
    assert!(agents_under(&other).is_empty());
    assert!(!other.join(format!("opt/madeira/versions/{VERSION}/opsagent")).exists());
}

#[test]
fn without_curl_the_script_downloads_with_wget() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    hub.keygen(&dir.path().join("keys"));
    let binary = agent_with_version(dir.path(), VERSION);
    hub.release_add(VERSION, &binary, &dir.path().join("keys/release.key"));
    let made = hub.cli(&["userdata", "--app", "app", "--instance", "vm-w"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let script = dir.path().join("userdata.sh");
    std::fs::write(&script, &made.stdout).unwrap();

    // A PATH holding the tools the script uses, wget but no curl.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tools = ["wget", "sha256sum", "cut", "mkdir", "chmod", "mv", "rm", "ln", "cat", "setsid", "readlink", "sleep"];
    for tool in tools {
        let found =
            ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists());
        let Some(found) = found else { panic!("`{tool}` is not installed") };
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let root = dir.path().join("root");
    let _guard = Root(root.clone());
    let run = Run::from(
        Command::new("/usr/bin/dash").arg(&script).env("OPSAGENT_ROOT", &root).env("PATH", &bin).output().unwrap(),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let connected = wait_until(Duration::from_secs(30), || hub.instance_status("app", "vm-w")["connected"] == true);
    assert!(connected, "{}", std::fs::read_to_string(root.join("var/lib/madeira/opsagent.log")).unwrap_or_default());
}

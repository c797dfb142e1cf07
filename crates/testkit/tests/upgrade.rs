//! Agent self-upgrades end to end: a real hub, agents installed in scratch roots as the userdata
//! script lays them out, and two real builds of the agent (the built binary, 0.1.0, and a copy
//! whose version slot says 0.2.0), signed with a key made by `opsagent-hub keygen`.

use std::path::PathBuf;
use std::time::Duration;

use opsagent_testkit::{agent_with_version, instance_hash, recipe, scratch, wait_until, Hub, Installed, FAST_AGENT};
use serde_json::Value;

const OLD: &str = env!("CARGO_PKG_VERSION");
const NEW: &str = "0.2.0";

struct Setup {
    dir: tempfile::TempDir,
    hub: Hub,
    key: PathBuf,
    public_key: String,
}

fn setup() -> Setup {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    let keys = dir.path().join("keys");
    let public_key = hub.keygen(&keys);
    Setup { key: keys.join("release.key"), public_key, hub, dir }
}

impl Setup {
    /// An instance installed at 0.1.0 under its own scratch root, not started.
    fn install(&self, instance: &str, confirm_secs: u64) -> Installed {
        self.install_in("app", instance, confirm_secs)
    }

    fn install_in(&self, app: &str, instance: &str, confirm_secs: u64) -> Installed {
        let snippet = self.hub.add_instance(app, instance);
        let extra = format!(
            "{FAST_AGENT}\nupdate_public_key = \"{}\"\nupgrade_confirm_secs = {confirm_secs}\n",
            self.public_key
        );
        let root = self.dir.path().join(format!("root-{instance}"));
        Installed::install(&root, &opsagent_testkit::agent_bin(), OLD, &snippet, &extra)
    }

    fn new_build(&self) -> PathBuf {
        agent_with_version(self.dir.path(), NEW)
    }

    fn instance(&self, instance: &str) -> Value {
        self.hub.instance_status("app", instance)
    }

    fn upgrade(&self, version: &str) {
        self.hub.json(&["upgrade", "app", "--version", version]);
    }
}

fn phase(instance: &Value) -> String {
    instance["upgrade"]["phase"].as_str().unwrap_or("").to_string()
}

fn connected_on(instance: &Value, version: &str) -> bool {
    instance["connected"] == true && instance["agent_version"] == version
}

fn explain(setup: &Setup, agent: &Installed, instance: &str) -> String {
    format!(
        "hub status: {}\nupgrade.json: {}\nagent log:\n{}\nhub log:\n{}",
        setup.instance(instance),
        agent.upgrade_state(),
        agent.log_text(),
        setup.hub.log_text()
    )
}

#[test]
fn the_upgrade_waits_for_the_round_to_end_then_confirms_on_the_new_version() {
    let s = setup();
    let mut agent = s.install("web-1", 60);
    agent.start(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || connected_on(&s.instance("web-1"), OLD)),
        "{}",
        explain(&s, &agent, "web-1")
    );
    let new = s.new_build();
    s.hub.release_add(NEW, &new, &s.key);

    let file =
        recipe(s.dir.path(), "r.yaml", "states:\n  - {id: nap, module: linux.cmd, parameter: {cmd: \"sleep 3\"}}\n");
    s.hub.push("app", &file);
    let running = wait_until(Duration::from_secs(20), || s.instance("web-1")["round_result"] == "running");
    assert!(running, "{}", explain(&s, &agent, "web-1"));
    // `opsagent status` on the instance tells the same.
    let shown = wait_until(Duration::from_secs(10), || {
        let status = agent.status(false);
        status.code == 0
            && status.stdout.contains(&format!("agent     {OLD} (pid"))
            && status.stdout.contains("connected since")
            && status.stdout.contains("running, state `nap` (1/1)")
    });
    assert!(shown, "{}", agent.status(false).stdout);
    s.upgrade(NEW);

    let upgraded = wait_until(Duration::from_secs(60), || {
        let i = s.instance("web-1");
        connected_on(&i, NEW) && phase(&i) == "confirmed"
    });
    assert!(upgraded, "{}", explain(&s, &agent, "web-1"));
    assert_eq!(agent.current_version().as_deref(), Some(NEW));
    assert!(agent.root.join(format!("opt/madeira/versions/{OLD}/opsagent")).exists(), "the previous version is kept");
    assert_eq!(agent.upgrade_state()["phase"], "confirmed");
    let status = agent.status(true).json();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["status"]["version"], NEW, "{status}");
    assert_eq!(status["installed_version"], NEW, "{status}");
    assert_eq!(status["upgrade"]["phase"], "confirmed", "{status}");
    let version =
        std::process::Command::new(agent.root.join("opt/madeira/current/opsagent")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with(&format!("opsagent {NEW} (")));

    // The round that was running when the order came finished first: its command was not
    // interrupted; the release was downloaded meanwhile and installed only after the round's end.
    let log = agent.log_text();
    let ordered = log.find("installing it when the round ends").expect("the order was deferred");
    let download = log.find("phase=downloading").expect("the download started");
    let round_end = log[ordered..].find("INFO round ends").map(|i| i + ordered).expect("the round ended");
    let installed = log.find("phase=installed").expect("the release was installed");
    assert!(ordered < download && download < round_end && round_end < installed, "{log}");
    let logs = s.hub.json(&["logs", "app", "--instance", "web-1", "--limit", "100"]);
    let naps: Vec<&Value> = logs["logs"].as_array().unwrap().iter().filter(|l| l["id"] == "nap").collect();
    assert!(!naps.is_empty() && naps.iter().all(|l| l["status"] == "changed"), "{logs}");
    // The pid stayed the same across the re-exec: the service manager sees one process.
    assert!(agent.running_pid().is_some());
}

#[test]
fn an_agent_blocked_in_a_wait_upgrades_at_once_and_the_wait_resumes_on_the_new_version() {
    let s = setup();
    let mut agent = s.install("web-1", 60);
    agent.start(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || connected_on(&s.instance("web-1"), OLD)),
        "{}",
        explain(&s, &agent, "web-1")
    );
    s.hub.release_add(NEW, &s.new_build(), &s.key);
    let file = recipe(
        s.dir.path(),
        "r.yaml",
        "states:\n  - {id: gate, module: meta.wait, parameter: {}}\n  - {id: after, module: linux.cmd, parameter: {cmd: \"echo after\"}}\n",
    );
    s.hub.push("app", &file);
    let waiting = wait_until(Duration::from_secs(20), || agent.status(false).stdout.contains("state `gate` (1/2)"));
    assert!(waiting, "{}", agent.status(false).stdout);
    s.upgrade(NEW);
    let upgraded = wait_until(Duration::from_secs(60), || {
        let i = s.instance("web-1");
        connected_on(&i, NEW) && phase(&i) == "confirmed"
    });
    assert!(upgraded, "{}", explain(&s, &agent, "web-1"));
    // The new version waits again (the round starts over), and the release lets it go on.
    assert!(wait_until(Duration::from_secs(20), || agent.status(false).stdout.contains("state `gate` (1/2)")));
    s.hub.json(&["done", "app", "web-1", "gate"]);
    let done = wait_until(Duration::from_secs(30), || {
        s.instance("web-1")["states"]
            .as_array()
            .is_some_and(|st| st.iter().any(|x| x["id"] == "after" && x["status"] == "changed"))
    });
    assert!(done, "{}", explain(&s, &agent, "web-1"));
}

#[test]
fn a_bad_signature_and_a_wrong_sha256_are_refused_and_nothing_is_installed() {
    let s = setup();
    let mut agent = s.install("web-1", 60);
    agent.start(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || connected_on(&s.instance("web-1"), OLD)),
        "{}",
        explain(&s, &agent, "web-1")
    );
    let new = s.new_build();

    // Signed with a key the agent does not trust.
    let rogue = s.dir.path().join("rogue");
    s.hub.keygen(&rogue);
    s.hub.release_add(NEW, &new, &rogue.join("release.key"));
    s.upgrade(NEW);
    let refused = wait_until(Duration::from_secs(30), || phase(&s.instance("web-1")) == "refused");
    assert!(refused, "{}", explain(&s, &agent, "web-1"));
    let reason = s.instance("web-1")["upgrade"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("bad signature"), "{reason}");
    assert!(!agent.root.join(format!("opt/madeira/versions/{NEW}")).exists(), "nothing installed");
    assert_eq!(agent.current_version().as_deref(), Some(OLD));

    // Signed by the right key, but the binary on the hub was tampered with afterwards.
    s.hub.release_add("0.3.0", &new, &s.key);
    let served = s.hub.data_dir.join("releases/0.3.0/opsagent");
    let mut bytes = std::fs::read(&served).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&served, bytes).unwrap();
    s.upgrade("0.3.0");
    let refused = wait_until(Duration::from_secs(30), || {
        let i = s.instance("web-1");
        phase(&i) == "refused" && i["upgrade"]["version"] == "0.3.0"
    });
    assert!(refused, "{}", explain(&s, &agent, "web-1"));
    let reason = s.instance("web-1")["upgrade"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("sha256 mismatch"), "{reason}");
    assert!(!agent.root.join("opt/madeira/versions/0.3.0").exists(), "nothing installed");
    assert_eq!(agent.current_version().as_deref(), Some(OLD));
    assert!(connected_on(&s.instance("web-1"), OLD), "{}", explain(&s, &agent, "web-1"));

    // A downgrade needs the explicit flag. The hub refuses the order at once, since web-1 runs a
    // newer version…
    s.hub.release_add("0.0.9", &agent_with_version(s.dir.path(), "0.0.9"), &s.key);
    let order = s.hub.cli(&["upgrade", "app", "--version", "0.0.9"]);
    assert_ne!(order.code, 0, "{order:?}");
    assert!(order.stderr.contains("`web-1` runs 0.1.0") && order.stderr.contains("--allow-downgrade"), "{order:?}");
    assert_eq!(s.hub.status("app")["target_version"], "0.3.0", "nothing was ordered");
    // …and an agent the hub did not know to run a newer version (it connects after the order)
    // refuses it itself.
    s.hub.create_app("late");
    let mut late = s.install_in("late", "late-1", 60);
    s.hub.json(&["upgrade", "late", "--version", "0.0.9"]);
    late.start(&[]);
    let refused = wait_until(Duration::from_secs(30), || {
        let i = s.hub.instance_status("late", "late-1");
        phase(&i) == "refused" && i["upgrade"]["version"] == "0.0.9"
    });
    assert!(refused, "{}\nagent log:\n{}", s.hub.instance_status("late", "late-1"), late.log_text());
    let reason = s.hub.instance_status("late", "late-1")["upgrade"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("--allow-downgrade"), "{reason}");
    assert_eq!(late.current_version().as_deref(), Some(OLD));
    // Ordered again with the flag, the same release is installed.
    s.hub.json(&["upgrade", "app", "--version", "0.0.9", "--allow-downgrade"]);
    let downgraded = wait_until(Duration::from_secs(60), || {
        let i = s.instance("web-1");
        connected_on(&i, "0.0.9") && phase(&i) == "confirmed"
    });
    assert!(downgraded, "{}", explain(&s, &agent, "web-1"));
}

#[test]
fn a_version_that_cannot_start_is_rolled_back_by_the_watchdog() {
    let s = setup();
    let mut agent = s.install("web-1", 5);
    agent.start(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || connected_on(&s.instance("web-1"), OLD)),
        "{}",
        explain(&s, &agent, "web-1")
    );
    let broken = s.dir.path().join("broken");
    std::fs::write(&broken, "#!/bin/sh\necho 'this version cannot start' >&2\nexit 1\n").unwrap();
    s.hub.release_add(NEW, &broken, &s.key);
    s.upgrade(NEW);
    // The new "version" exits at once; cron's watchdog (run here every 200 ms) puts the old back.
    let back = wait_until(Duration::from_secs(30), || {
        agent.watchdog();
        let i = s.instance("web-1");
        connected_on(&i, OLD) && phase(&i) == "rolled_back"
    });
    assert!(back, "{}", explain(&s, &agent, "web-1"));
    let reason = s.instance("web-1")["upgrade"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("stopped before it reached the hub"), "{reason}");
    let status = agent.status(false);
    assert!(status.stdout.contains(&format!("upgrade   {OLD} → {NEW}: rolled_back")), "{}", status.stdout);
    assert_eq!(agent.current_version().as_deref(), Some(OLD));
    // The hub offers the same release again at every handshake; the agent does not retry it.
    assert_eq!(agent.watchdog().code, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(connected_on(&s.instance("web-1"), OLD));
}

#[test]
fn a_version_that_cannot_reach_the_hub_rolls_itself_back_within_its_deadline() {
    let mut s = setup();
    // An instance whose first connection is splayed by at least 1.5 s, so that the hub can be
    // stopped between the download and the new version's first connection.
    let name = (0..1000).map(|i| format!("web-{i}")).find(|n| instance_hash(n) % 2000 > 1500).unwrap();
    let mut agent = s.install(&name, 4);
    agent.start(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || connected_on(&s.instance(&name), OLD)),
        "{}",
        explain(&s, &agent, &name)
    );
    s.hub.release_add(NEW, &s.new_build(), &s.key);
    s.upgrade(NEW);
    let installed = wait_until(Duration::from_secs(60), || agent.upgrade_state()["phase"] == "installed");
    assert!(installed, "{}", explain(&s, &agent, &name));
    s.hub.stop();
    // Within the deadline (4 s) plus a restart, the old version runs again, on its own.
    let back = wait_until(Duration::from_secs(15), || {
        agent.upgrade_state()["phase"] == "rolled_back" && agent.current_version().as_deref() == Some(OLD)
    });
    assert!(back, "{}", explain(&s, &agent, &name));
    s.hub.start_again();
    let told = wait_until(Duration::from_secs(30), || {
        let i = s.instance(&name);
        connected_on(&i, OLD) && phase(&i) == "rolled_back"
    });
    assert!(told, "{}", explain(&s, &agent, &name));
    let reason = s.instance(&name)["upgrade"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("did not reach the hub within 4 s"), "{reason}");
}

#[test]
fn an_agent_killed_at_any_step_of_its_upgrade_comes_back_working_after_the_watchdog() {
    let s = setup();
    s.hub.release_add(NEW, &s.new_build(), &s.key);
    let steps = ["downloading", "downloaded", "verified", "installed", "swapped", "restarted"];
    let mut agents: Vec<(String, Installed)> = Vec::new();
    for step in steps {
        let name = format!("kill-{step}");
        let mut agent = s.install(&name, 10);
        agent.start(&[("OPSAGENT_TEST_KILL_AT", step)]);
        agents.push((name, agent));
    }
    s.upgrade(NEW);
    // Each agent dies at its step.
    for (name, agent) in &agents {
        let died =
            wait_until(Duration::from_secs(60), || agent.running_pid().is_none() && !agent.upgrade_state().is_null());
        assert!(died, "{name} did not die:\n{}", explain(&s, agent, name));
    }
    // Cron's watchdog brings every one back, on the old or the new version, and the hub knows which.
    for (name, agent) in &mut agents {
        let settled = wait_until(Duration::from_secs(90), || {
            agent.watchdog();
            let i = s.instance(name);
            let version = i["agent_version"].as_str().unwrap_or("").to_string();
            i["connected"] == true
                && agent.running_pid().is_some()
                && agent.current_version().as_deref() == Some(version.as_str())
                && matches!(phase(&i).as_str(), "confirmed" | "rolled_back")
                && (version == NEW) == (phase(&i) == "confirmed")
        });
        assert!(settled, "{name}:\n{}", explain(&s, agent, name));
        // A healthy agent: the watchdog does nothing.
        let pid = agent.running_pid();
        assert_eq!(agent.watchdog().code, 0);
        assert_eq!(agent.running_pid(), pid);
    }
    // Killed before `current` moved, the agent retries the download and ends on the new version.
    for (name, _) in &agents[..3] {
        assert_eq!(s.instance(name)["agent_version"], NEW, "{name}");
    }
}

//! The modules that wrap other tools, end to end through the real `opsagent apply`:
//! `linux.puppet.apply` with Debian's real `puppet` (converge, a second run that changes nothing,
//! `--test` predicted by `puppet apply --noop`, failing manifests), `linux.puppet.agent` against a
//! server that is not there (loopback, a closed port), and — Chef and Mesos not being installable
//! on this machine — the missing-tool errors of `linux.chef.*` and `linux.mesos.*` and the
//! parameter errors of all of them. Their command lines and configuration files are unit-tested
//! beside their code (`crates/states/src/providers/{puppet,chef,mesos}.rs`).
//!
//! Puppet keeps its run state in the test's scratch directory (`vardir`, `ssldir`, `publicdir` in `arguments`),
//! so the machine's `/var/cache/puppet` is left alone.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Run, Scratch};

fn have(program: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().is_ok_and(|o| o.status.success())
}

/// `skipped: …` on stderr when puppet is missing (CI installs Debian's `puppet`).
fn puppet_or_skip() -> bool {
    if have("puppet") {
        return true;
    }
    eprintln!("skipped: `puppet` is not installed (Debian: apt-get install --no-install-recommends puppet)");
    false
}

/// A `linux.puppet.apply` recipe for `manifest`, keeping puppet's files in the scratch dir.
fn puppet_recipe(s: &Scratch, manifest: &str) -> std::path::PathBuf {
    s.recipe(
        "recipe.yaml",
        &format!(
            "states:
  - id: site
    module: linux.puppet.apply
    parameter:
      manifests: [\"@/{manifest}\"]
      arguments: {{ vardir: \"@/puppet-var\", ssldir: \"@/puppet-ssl\", publicdir: \"@/puppet-public\" }}
"
        ),
    )
}

fn state(run: &Run) -> serde_json::Value {
    run.json()["states"][0].clone()
}

fn changes(run: &Run) -> Vec<String> {
    state(run)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["action"].as_str().unwrap(), c["target"].as_str().unwrap()))
        .collect()
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

#[test]
fn puppet_apply_converges_predicts_with_noop_and_then_is_ok() {
    if !puppet_or_skip() {
        return;
    }
    let s = Scratch::new();
    let target = s.path("managed/motd");
    std::fs::create_dir(s.path("managed")).unwrap();
    std::fs::write(
        s.path("site.pp"),
        format!(
            "file {{ '{}': ensure => file, content => \"managed by puppet\\n\", mode => '0640' }}\n",
            target.display()
        ),
    )
    .unwrap();
    let recipe = puppet_recipe(&s, "site.pp");
    let resource = format!("update /Stage[main]/Main/File[{}]/ensure", target.display());
    let run_line = format!("run puppet apply {}", s.path("site.pp").display());

    // --test: puppet's dry run predicts the file, and nothing is written.
    let test = s.apply(&recipe, &["--test", "--json"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(test.statuses(), ["site=changed"]);
    assert_eq!(changes(&test), [run_line.clone(), resource.clone()]);
    assert!(text(&state(&test)["changes"][1]["detail"]).contains("should be 'file'"), "{}", test.stdout);
    assert!(!target.exists(), "--test wrote the file");

    // apply: puppet changes exactly what it predicted.
    let first = s.apply(&recipe, &["--json"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(first.statuses(), ["site=changed"]);
    assert_eq!(changes(&first), [run_line, resource]);
    assert!(text(&state(&first)["stdout"]).contains("defined content as"), "{}", first.stdout);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "managed by puppet\n");

    // converged: ok, not changed, and --test agrees.
    let before = common::snapshot(&s.path("managed"));
    let second = s.apply(&recipe, &["--json"]);
    assert_eq!(second.statuses(), ["site=ok"], "{}{}", second.stdout, second.stderr);
    assert!(changes(&second).is_empty());
    assert_eq!(common::snapshot(&s.path("managed")), before);
    let test = s.apply(&recipe, &["--test", "--json"]);
    assert_eq!(test.statuses(), ["site=ok"], "{}{}", test.stdout, test.stderr);

    // drift is repaired.
    std::fs::write(&target, "edited by hand\n").unwrap();
    let repaired = s.apply(&recipe, &["--json"]);
    assert_eq!(repaired.statuses(), ["site=changed"], "{}{}", repaired.stdout, repaired.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "managed by puppet\n");
}

#[test]
fn a_sensitive_puppet_state_hides_resources_and_output_and_the_version_is_checked() {
    if !puppet_or_skip() {
        return;
    }
    let s = Scratch::new();
    let target = s.path("secret.conf");
    std::fs::write(
        s.path("site.pp"),
        format!("file {{ '{}': ensure => file, content => \"password=hunter2\\n\" }}\n", target.display()),
    )
    .unwrap();
    let recipe = s.recipe(
        "recipe.yaml",
        "states:
  - id: secret
    module: linux.puppet.apply
    sensitive: true
    parameter:
      manifests: [\"@/site.pp\"]
      arguments: { vardir: \"@/puppet-var\", ssldir: \"@/puppet-ssl\", publicdir: \"@/puppet-public\" }
      version: \"7\"
",
    );
    let run = s.apply(&recipe, &["--json"]);
    assert_eq!(run.statuses(), ["secret=changed"], "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), [format!("run puppet apply {}", s.path("site.pp").display())]);
    let st = state(&run);
    assert_eq!(text(&st["stdout"]), "(hidden: sensitive state)", "{st}");
    assert!(!run.stdout.contains("secret.conf/ensure") && !run.stdout.contains("hunter2"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "password=hunter2\n");

    // A version other than the installed one fails before puppet runs, saying both.
    let other = std::fs::read_to_string(&recipe).unwrap().replace("version: \"7\"", "version: \"3.7.3\"");
    std::fs::write(&recipe, other).unwrap();
    std::fs::remove_file(&target).unwrap();
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.statuses(), ["secret=failed"], "{}{}", run.stdout, run.stderr);
    let comment = text(&state(&run)["comment"]);
    assert!(comment.starts_with("package `puppet` is version 7."), "{comment}");
    assert!(comment.contains("the recipe asks for 3.7.3"), "{comment}");
    assert!(!target.exists());
}

#[test]
fn failing_manifests_fail_with_puppets_error_in_the_tail() {
    if !puppet_or_skip() {
        return;
    }
    let s = Scratch::new();
    // A syntax error: puppet cannot even compile it (exit 1), so its dry run already fails.
    std::fs::write(s.path("syntax.pp"), "file { 'oops' ensure => file }\n").unwrap();
    let run = s.apply(&puppet_recipe(&s, "syntax.pp"), &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.statuses(), ["site=failed"]);
    let st = state(&run);
    assert!(text(&st["comment"]).contains("could not run (exit status 1)"), "{st}");
    assert!(text(&st["stderr"]).contains("Syntax error at 'ensure'"), "{st}");

    // A resource that fails (its directory is missing): the dry run predicts it, the real run
    // fails it (exit 4); nothing is left behind.
    let target = s.path("missing-dir/file");
    std::fs::write(
        s.path("fails.pp"),
        format!("file {{ '{}': ensure => file, content => \"x\" }}\n", target.display()),
    )
    .unwrap();
    let recipe = puppet_recipe(&s, "fails.pp");
    let test = s.apply(&recipe, &["--test", "--json"]);
    assert_eq!(test.statuses(), ["site=changed"], "{}{}", test.stdout, test.stderr);
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.statuses(), ["site=failed"]);
    let st = state(&run);
    assert!(text(&st["comment"]).contains("failed to apply some resources (exit status 4)"), "{st}");
    assert!(text(&st["stderr"]).contains("Could not set 'file' on ensure"), "{st}");
    assert!(!target.exists());

    // A manifest that is not there: one line naming it, from puppet.
    let run = s.apply(&puppet_recipe(&s, "absent.pp"), &["--retries", "0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Could not find file"), "{}", run.stdout);
}

#[test]
fn puppet_agent_without_its_server_fails_clearly() {
    if !puppet_or_skip() {
        return;
    }
    let s = Scratch::new();
    // Port 1 on loopback: nothing listens, so the connection is refused at once.
    let recipe = s.recipe(
        "agent.yaml",
        "states:
  - id: agent
    module: linux.puppet.agent
    parameter:
      server: 127.0.0.1
      arguments: { serverport: \"1\", vardir: \"@/puppet-var\", ssldir: \"@/puppet-ssl\", publicdir: \"@/puppet-public\" }
",
    );
    for extra in [&["--test"][..], &[]] {
        let run = s.apply(&recipe, &[extra, &["--json", "--retries", "0"]].concat());
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(run.statuses(), ["agent=failed"]);
        let st = state(&run);
        assert!(text(&st["comment"]).starts_with("`puppet agent --server=127.0.0.1 --noop` could not run"), "{st}");
        assert!(text(&st["stderr"]).contains("Connection refused"), "{st}");
    }
}

/// Runs `opsagent apply` with a `PATH` where none of the wrapped tools is.
fn apply_without_tools(s: &Scratch, recipe: &Path) -> Run {
    let empty = s.path("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(common::bin())
        .arg("apply")
        .arg(recipe)
        .args(["--json", "--retries", "0", "--keep-going", "--state-dir"])
        .arg(s.path("state"))
        .env("PATH", &empty)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn missing_tools_are_named_in_one_line() {
    let s = Scratch::new();
    std::fs::write(s.path("site.pp"), "notice('hi')\n").unwrap();
    let recipe = s.recipe(
        "recipe.yaml",
        "states:
  - id: pa
    module: linux.puppet.apply
    parameter: { manifests: [\"@/site.pp\"] }
  - id: pr
    module: linux.puppet.run
    parameter: {}
  - id: cc
    module: linux.chef.client
    parameter: { server: \"https://127.0.0.1:1/organizations/x\" }
  - id: cs
    module: linux.chef.solo
    parameter: { config: /etc/chef/solo.rb }
",
    );
    let run = apply_without_tools(&s, &recipe);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let states = run.json()["states"].as_array().unwrap().clone();
    assert_eq!(states.len(), 4);
    let mut comments = Vec::new();
    for st in &states {
        assert_eq!(st["status"], "failed", "{st}");
        assert!(st["stdout"].is_null() && st["stderr"].is_null(), "{st}");
        let comment = text(&st["comment"]);
        assert!(!comment.contains('\n'), "{comment}");
        comments.push(comment);
    }
    for (comment, tool) in comments.iter().zip(["puppet", "puppet", "chef-client", "chef-solo"]) {
        assert!(comment.starts_with(&format!("`{tool}` is not installed on this machine")), "{comment}");
    }
}

#[test]
fn mesos_without_mesos_fails_naming_it_and_changes_nothing() {
    // The services are looked up in the init system (`/etc/init.d`, or systemd's units).
    if ["/etc/init.d/mesos-master", "/etc/init.d/mesos-slave", "/lib/systemd/system/mesos-master.service"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        eprintln!("skipped: Mesos is installed on this machine; this test shows its absence");
        return;
    }
    let s = Scratch::new();
    let recipe = s.recipe(
        "recipe.yaml",
        "states:
  - id: mm
    module: linux.mesos.master
    parameter:
      cluster_name: opsagent-test
      server_id: \"1\"
      masters_addresses: [{key: 127.0.0.1, value: opsagent-test-master}]
      master_ip: 127.0.0.1
      framework: [marathon]
  - id: ms
    module: linux.mesos.slave
    parameter: { masters_addresses: {127.0.0.1: \"\"}, attributes: {rack: r1}, slave_ip: 127.0.0.1 }
",
    );
    let hosts = std::fs::read("/etc/hosts").unwrap_or_default();
    for extra in [&["--test"][..], &[]] {
        let out = Command::new(common::bin())
            .arg("apply")
            .arg(&recipe)
            .args(extra)
            .args(["--json", "--retries", "0", "--keep-going", "--state-dir"])
            .arg(s.path("state"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let run = Run::from(out);
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(run.statuses(), ["mm=failed", "ms=failed"]);
        let states = run.json()["states"].as_array().unwrap().clone();
        for (st, tool) in states.iter().zip(["mesos-master", "mesos-slave"]) {
            let comment = text(&st["comment"]);
            assert!(comment.starts_with(&format!("`{tool}` is not installed on this machine")), "{comment}");
            assert!(!comment.contains('\n'), "{comment}");
        }
    }
    assert_eq!(std::fs::read("/etc/hosts").unwrap_or_default(), hosts, "/etc/hosts was changed");
    for dir in ["/etc/mesos", "/etc/mesos-master", "/etc/mesos-slave", "/etc/marathon"] {
        assert!(!Path::new(dir).exists(), "{dir} was created");
    }
}

#[test]
fn bad_parameters_are_refused_by_validate() {
    let s = Scratch::new();
    let file = s.recipe(
        "bad.yaml",
        "states:
  - id: pa
    module: linux.puppet.apply
    parameter: { arguments: { noop: \"\" } }
  - id: pa2
    module: linux.puppet.apply
    parameter: { manifests: [site.pp], arguments: { \"bad key\": x }, verison: \"7\" }
  - id: ag
    module: linux.puppet.agent
    parameter: { arguments: { server: other } }
  - id: ag2
    module: linux.puppet.agent
    parameter: { server: \"https://puppet\" }
  - id: cc
    module: linux.chef.client
    parameter: { server: chef.example.com, client_key: client.pem, arguments: { why-run: \"\", config: /x } }
  - id: cs
    module: linux.chef.solo
    parameter: { override_runlist: \"recipe[a], recipe[b]\", recipe_url: \"ftp://x\", arguments: { no-color: \"\" } }
  - id: mm
    module: linux.mesos.master
    parameter: { server_id: \"300\", masters_addresses: {\"bad host\": x}, master_ip: \"10.0.0\", framework: [chronos] }
  - id: ms
    module: linux.mesos.slave
    parameter: { attributes: {rack: \"\"}, slave_ip: here }
",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&file).env("NO_COLOR", "1").output().unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "state 1 `pa` (linux.puppet.apply): parameter `manifests`: required parameter `manifests` is missing",
        "state 1 `pa` (linux.puppet.apply): parameter `arguments.noop`: option `--noop` is set by opsagent itself",
        "run `opsagent apply --test` for a dry run",
        "state 2 `pa2` (linux.puppet.apply): parameter `manifests[0]`: `site.pp` is not an absolute path",
        "parameter `arguments.bad key`: `bad key` is not an option name",
        "parameter `verison`: unknown parameter `verison`",
        "did you mean `version`",
        "state 3 `ag` (linux.puppet.agent): parameter `server`: required parameter `server` is missing",
        "state 3 `ag` (linux.puppet.agent): parameter `arguments.server`: option `--server` is set by opsagent itself",
        "state 4 `ag2` (linux.puppet.agent): parameter `server`: `https://puppet` is not a host name",
        "state 5 `cc` (linux.chef.client): parameter `server`: `chef.example.com` is not an http(s) URL",
        "state 5 `cc` (linux.chef.client): parameter `client_key`: `client.pem` is not an absolute path",
        "parameter `arguments.why-run`: option `--why-run` is set by opsagent itself",
        "parameter `arguments.config`: option `--config` is set by opsagent itself",
        "give the configuration file in the `config` parameter",
        "state 6 `cs` (linux.chef.solo): parameter `override_runlist`: `recipe[a], recipe[b]` is not a run list",
        "state 6 `cs` (linux.chef.solo): parameter `recipe_url`: `ftp://x` is not an http(s) URL or an absolute path",
        "state 6 `cs` (linux.chef.solo): parameter `arguments.no-color`: option `--no-color` is set by opsagent itself",
        "state 7 `mm` (linux.mesos.master): parameter `cluster_name`: required parameter `cluster_name` is missing",
        "state 7 `mm` (linux.mesos.master): parameter `server_id`: `300` is not a ZooKeeper id",
        "state 7 `mm` (linux.mesos.master): parameter `masters_addresses.bad host`: `bad host` is not an address",
        "state 7 `mm` (linux.mesos.master): parameter `master_ip`: `10.0.0` is not an IP address",
        "state 7 `mm` (linux.mesos.master): parameter `framework[0]`: `chronos` is not a framework this module installs",
        "state 8 `ms` (linux.mesos.slave): parameter `masters_addresses`: required parameter `masters_addresses` is missing",
        "state 8 `ms` (linux.mesos.slave): parameter `attributes.rack`: attribute `rack` needs a value without `;`",
        "state 8 `ms` (linux.mesos.slave): parameter `slave_ip`: `here` is not an IP address",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

//! The operator CLI, run as the real binary against an in-process hub: output, `--json` and
//! exit codes (0 ok, 1 negative answer, 2 bad input, 3 environment).

use std::process::Output;

use serde_json::Value;

use crate::common::{start, TOKEN};

/// Runs `opsagent-hub ARGS` against `hub_url` with the test token.
async fn run(hub_url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent-hub"));
    command
        .args(["--hub", hub_url, "--token", token])
        .args(args)
        .env_remove("OPSAGENT_HUB_URL")
        .env_remove("OPSAGENT_HUB_TOKEN")
        .env("NO_COLOR", "1");
    tokio::task::spawn_blocking(move || command.output().expect("running opsagent-hub")).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[tokio::test]
async fn operator_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(&dir.path().join("data")).await;
    let url = hub.url();

    let out = run(&url, TOKEN, &["app", "create", "demo"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "created app `demo`\n");
    let out = run(&url, TOKEN, &["app", "create", "demo"]).await;
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("error: app `demo` exists already"));
    let out = run(&url, TOKEN, &["app", "create", "bad id"]).await;
    assert_eq!(code(&out), 2);
    let out = run(&url, TOKEN, &["app", "list"]).await;
    assert_eq!(text(&out.stdout), "demo\n");

    let out = run(&url, TOKEN, &["instance", "add", "demo", "web-1"]).await;
    assert_eq!(code(&out), 0);
    let config = text(&out.stdout);
    assert!(config.starts_with(&format!("hub_url = \"{}\"", hub.agent_url())), "{config}");
    assert!(config.contains("secret = \""));
    assert!(text(&out.stderr).contains("shown only now"));

    // A recipe with an unquoted octal mode and the YAML form goes as the wire form.
    let recipe = dir.path().join("recipe.yaml");
    std::fs::write(
        &recipe,
        "version: 9\nretries: 2\nstates:\n  - id: conf\n    module: linux.file\n    timeout: 30\n    parameter:\n      path: /tmp/opsagent-test-cli/app.conf\n      mode: 0644\n      content: \"x\\n\"\n  - id: wait\n    module: meta.wait\n    parameter: {}\n",
    )
    .unwrap();
    let out = run(&url, TOKEN, &["recipe", "push", "demo", recipe.to_str().unwrap()]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pushed recipe version 1 to app `demo`"), "{}", text(&out.stderr));
    let out = run(&url, TOKEN, &["recipe", "push", "demo", recipe.to_str().unwrap()]).await;
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).contains("unchanged"), "{}", text(&out.stderr));
    let out = run(&url, TOKEN, &["recipe", "show", "demo"]).await;
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["recipe_version"], 1);
    assert_eq!(shown["retries"], 2);
    assert_eq!(shown["state"][0]["parameter"]["mode"], "0644");
    assert_eq!(shown["state"][0]["timeout"], 30);

    let out = run(&url, TOKEN, &["done", "demo", "web-1", "wait"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("released `wait` (recipe version 1) on web-1"));
    let out = run(&url, TOKEN, &["done", "demo", "web-1", "nope"]).await;
    assert_eq!(code(&out), 1);

    let out = run(&url, TOKEN, &["status", "demo"]).await;
    assert_eq!(code(&out), 0);
    let table = text(&out.stdout);
    assert!(table.contains("INSTANCE") && table.contains("web-1"), "{table}");
    let out = run(&url, TOKEN, &["--json", "status", "demo"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["instances"][0]["instance_id"], "web-1");
    let out = run(&url, TOKEN, &["logs", "demo", "--instance", "web-1"]).await;
    assert_eq!(code(&out), 0);

    // Wrong token: bad input. Unreachable hub: environment.
    let out = run(&url, "wrong", &["app", "list"]).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("hint:"));
    let out = run("http://127.0.0.1:9", TOKEN, &["app", "list"]).await;
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the hub"));
    hub.shutdown().await;
}

#[tokio::test]
async fn an_invalid_recipe_is_reported_locally_and_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("bad.yaml");
    std::fs::write(
        &recipe,
        "states:\n  - id: conf\n    module: linux.file\n    parameter:\n      path: relative\n      mode: rwx\n",
    )
    .unwrap();
    // No hub at all: the exit code is 2 (bad input), not 3 (unreachable).
    let out = run("http://127.0.0.1:9", TOKEN, &["recipe", "push", "demo", recipe.to_str().unwrap()]).await;
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("error: {}:", recipe.display())), "{stderr}");
    assert!(stderr.contains("parameter `mode`"), "{stderr}");
    assert!(stderr.contains("nothing pushed"), "{stderr}");
    let out = run("http://127.0.0.1:9", TOKEN, &["recipe", "push", "demo", "/nonexistent.yaml"]).await;
    assert_eq!(code(&out), 2);
}

#[tokio::test]
async fn serve_refuses_a_public_plain_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent-hub"));
    command.args(["serve", "--listen", "0.0.0.0:0", "--data-dir"]).arg(dir.path());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("--insecure-plain-ws"), "{}", text(&out.stderr));
}

/// A hub binary run at `trace` level never logs an instance secret, the API token or an HMAC;
/// SIGTERM stops it cleanly.
#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log_path = dir.path().join("hub.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent-hub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--api-token-file"])
        .arg(&token_file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("OPSAGENT_LOG", "trace")
        .env_remove("OPSAGENT_HUB_TOKEN")
        .stderr(log)
        .spawn()
        .unwrap();
    // The bound address, from the start line.
    let mut url = None;
    crate::common::wait_until("the hub says where it listens", || {
        let found = BufReader::new(std::fs::File::open(&log_path).unwrap())
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split("listening on ").nth(1).and_then(|r| r.split(' ').next()).map(str::to_string));
        url = found.map(|addr| format!("http://{addr}"));
        std::future::ready(url.is_some())
    })
    .await;
    let url = url.unwrap();
    assert_eq!(code(&run(&url, TOKEN, &["app", "create", "demo"]).await), 0);
    let out = run(&url, TOKEN, &["--json", "instance", "add", "demo", "web-1"]).await;
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = added["secret"].as_str().unwrap().to_string();
    let agent_url = added["config"].as_str().unwrap().split('"').nth(1).unwrap().to_string();
    let (socket, _) = tokio_tungstenite::connect_async(agent_url).await.unwrap();
    let mut agent = crate::common::Agent::after_connect(socket).await;
    let hmac = opsagent_proto::handshake_hmac(&secret, &agent.nonce, "demo", "web-1");
    agent.handshake("demo", "web-1", &secret, None).await;
    assert_eq!(agent.recv().await["code"], "Welcome");
    assert_eq!(agent.report(crate::common::state_log(1, 1, "a", "meta.comment", "ok")).await["code"], "Ack");
    drop(agent);
    // A wrong token and a wrong HMAC are not logged either.
    assert_eq!(code(&run(&url, "wrong-token-value", &["app", "list"]).await), 2);
    // SIGTERM stops it cleanly.
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("agent connected"), "{text}");
    assert!(text.contains("hub stopped"), "{text}");
    for (what, needle) in
        [("secret", secret.as_str()), ("token", TOKEN), ("hmac", hmac.as_str()), ("wrong token", "wrong-token-value")]
    {
        assert!(!text.contains(needle), "the {what} is in the log");
    }
}

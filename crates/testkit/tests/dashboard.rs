//! The hub's web dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver by fantoccini, against a real hub and real agents on
//! loopback. The tests also take the screenshots under `docs/screenshots/`.
//!
//! Needs `cargo build -p opsagent-hub -p opsagent` first (as `cargo test --workspace` does).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use opsagent_testkit::{
    agent_bin, agent_with_version, free_port, recipe, scratch, wait_until, Agent, Hub, Installed, FAST_AGENT,
};
use serde_json::{json, Value};

/// One browser at a time: the machine is small, and timings should not include a second one.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DEADLINE: Duration = Duration::from_secs(60);

/// Like `FAST_AGENT`, but a converged agent stays converged for the test's duration (a new recipe
/// still preempts at once).
const SLOW_ROUNDS: &str = "round_interval_secs = 600\nsplay_secs = 0\nreconnect_max_secs = 2\nkill_grace_secs = 1";

/// `chromedriver` on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
    profile: PathBuf,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        // Its own process group: dropping the driver ends the browsers it started too, even when a
        // test panics before closing its session.
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian package `chromium-driver`)");
        let up = wait_until(Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "chromedriver did not listen on port {port}");
        let profile = tempfile::Builder::new().prefix("opsagent-test-chromium-").tempdir().expect("profile dir");
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: profile.path().to_path_buf(),
            _profile: profile,
        }
    }

    async fn browser(&self, width: u32, height: u32) -> Client {
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await.expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let gone = wait_until(Duration::from_secs(5), || {
            let _ = self.child.try_wait();
            killpg(group, None).is_err()
        });
        if !gone {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn token(hub: &Hub) -> String {
    std::fs::read_to_string(hub.data_dir.join("api-token")).expect("the API token").trim().to_string()
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write the screenshot");
}

/// Runs `script` (a function body) until it returns something truthy; returns that value.
async fn until_js(client: &Client, what: &str, script: &str) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < DEADLINE {
        last = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        let truthy = !matches!(last, Value::Null | Value::Bool(false)) && last != json!("") && last != json!(0);
        if truthy {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; last value: {last}");
}

async fn sign_in(client: &Client, hub: &Hub, path: &str) {
    client.goto(&format!("{}{path}", hub.http_url())).await.expect("open a page");
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), "/signin", "a page without a session goes to the sign-in form");
    client.find(Locator::Css("#token")).await.expect("token field").send_keys(&token(hub)).await.expect("type");
    client.find(Locator::Css(".signin-form button")).await.expect("button").click().await.expect("submit");
    until_js(client, "the page after sign-in", "return document.querySelector('main[data-live]') !== null").await;
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), path, "sign-in goes back to the page asked for");
    assert!(!url.as_str().contains(&token(hub)), "the token never appears in a URL");
}

/// The health shown on an instance page (`running`, `waiting`, …).
const HEALTH: &str = "const b = document.querySelector('section.summary .head .badge'); \
     return b ? b.className.replace('badge h-', '') : null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_browser() {
    let _one = BROWSER.lock().await;
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("web");
    let web1 = hub.add_instance("web", "web-1");
    let web2 = hub.add_instance("web", "web-2");
    std::fs::create_dir_all(dir.path().join("web")).expect("dir");
    let v1 = recipe(
        dir.path(),
        "v1.yaml",
        r#"states:
  - {id: config, module: linux.file, parameter: {path: "@/web/app.conf", content: "listen = 8080\nworkers = 4\n"}}
  - {id: warm-up, module: linux.cmd, parameter: {cmd: "sleep 2; echo warmed up"}}
  - {id: gate, module: meta.wait, parameter: {}}
  - {id: after-gate, module: linux.file, parameter: {path: "@/web/released", content: "yes\n"}}
"#,
    );
    assert_eq!(hub.push("web", &v1), 1);

    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;

    // Sign-in (screenshot of the form first).
    client.goto(&format!("{}/signin", hub.http_url())).await.expect("sign-in page");
    screenshot(&client, "signin").await;
    sign_in(&client, &hub, "/apps/web/instances/web-1").await;

    // The round goes running → waiting, live: the page is never reloaded.
    client.execute("window.__noReload = true; return true;", vec![]).await.expect("mark the page");
    let _agent1 = Agent::start(&dir.path().join("agent-1"), &web1, SLOW_ROUNDS);
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let health = client.execute(HEALTH, vec![]).await.expect("health");
        if let Some(h) = health.as_str() {
            if seen.last().map(String::as_str) != Some(h) {
                seen.push(h.to_string());
            }
            if h == "waiting" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let reloaded = client.execute("return window.__noReload !== true;", vec![]).await.expect("marker");
    assert_eq!(reloaded, json!(false), "the page was reloaded");
    assert!(seen.contains(&"running".into()) && seen.last() == Some(&"waiting".into()), "health seen: {seen:?}");
    let warm_up = until_js(
        &client,
        "warm-up reported",
        "const s = document.querySelector('li.state[data-state=\"warm-up\"]'); return s && s.dataset.status;",
    )
    .await;
    assert_eq!(warm_up, json!("changed"));

    // Release the wait with its button: the agent moves on and the round converges, live.
    find(&client, "button[data-release=\"gate\"]").await.click().await.expect("click");
    until_js(&client, "the page after release", "return document.readyState === 'complete' && !window.__noReload;")
        .await;
    client.execute("window.__noReload = true; return true;", vec![]).await.expect("mark the page");
    until_js(&client, "converged", "return document.querySelector('section.summary .badge.h-converged') !== null;")
        .await;
    let after = client
        .execute("return document.querySelector('li.state[data-state=\"after-gate\"]').dataset.status;", vec![])
        .await
        .expect("after-gate");
    assert!(after == json!("changed") || after == json!("ok"), "after-gate: {after}");
    assert_eq!(client.execute("return window.__noReload === true;", vec![]).await.expect("marker"), json!(true));
    assert!(dir.path().join("web/released").exists(), "the agent ran the state after the wait");
    // Open the file's diff for the screenshot (the first round's report has it).
    client
        .execute(
            "for (const d of document.querySelectorAll('li.state details')) { d.open = true; } return true;",
            vec![],
        )
        .await
        .expect("open details");
    client.set_window_size(1280, 1500).await.expect("resize");
    screenshot(&client, "instance").await;
    client.set_window_size(1280, 900).await.expect("resize");

    // web-2 connects and stops at the wait (nobody releases it there).
    let _agent2 = Agent::start(&dir.path().join("agent-2"), &web2, SLOW_ROUNDS);
    client.goto(&format!("{}/apps/web", hub.http_url())).await.expect("app page");
    until_js(
        &client,
        "web-2 waiting in the grid",
        "const c = document.querySelector('li.inst[data-instance=\"web-2\"]'); return c && c.dataset.health === 'waiting';",
    )
    .await;
    screenshot(&client, "app").await;

    // An invalid recipe: the error shows next to the state it is about; nothing is pushed.
    client.goto(&format!("{}/apps/web/recipes", hub.http_url())).await.expect("recipes page");
    let invalid = "states:\n  - {id: config, module: linux.file, parameter: {path: /tmp/x, content: hi}}\n  - id: bad-mode\n    module: linux.file\n    parameter: {path: /tmp/y, mode: rwx}\n  - {id: greet, module: linux.cmd, parameter: {cmd: echo hi}}\n";
    push_text(&client, invalid).await;
    let error = until_js(
        &client,
        "the diagnostic",
        "const d = document.querySelector('[data-marker=\"diagnostics\"] li.state[data-state=\"bad-mode\"] li.diag.error'); return d && d.textContent;",
    )
    .await;
    assert!(error.as_str().is_some_and(|e| e.contains("mode") && e.contains("rwx")), "diagnostic: {error}");
    let others = client
        .execute("return document.querySelectorAll('[data-marker=\"diagnostics\"] li.diag.error').length;", vec![])
        .await
        .expect("count");
    assert_eq!(others, json!(1), "only the bad state has an error");
    screenshot(&client, "recipe-invalid").await;
    assert_eq!(hub.status("web")["recipe_version"], json!(1), "an invalid recipe is not pushed");

    // A valid one: the agents preempt their rounds (web-2's wait is `interrupted`) and run v2.
    let v2 = std::fs::read_to_string(&v1)
        .expect("v1")
        .replace("listen = 8080", "listen = 9090")
        .replace("sleep 2; echo warmed up", "echo warm")
        .replace("  - {id: gate, module: meta.wait, parameter: {}}\n", "");
    push_text(&client, &v2).await;
    until_js(&client, "the push notice", "const n = document.querySelector('p.notice'); return n && n.textContent;")
        .await;
    let notice = client.find(Locator::Css("p.notice")).await.expect("notice").text().await.expect("text");
    assert!(notice.contains("pushed recipe version 2"), "notice: {notice}");
    client.goto(&format!("{}/apps/web/instances/web-2", hub.http_url())).await.expect("web-2");
    until_js(
        &client,
        "web-2's interrupted wait",
        "return document.querySelector('li.state[data-status=\"interrupted\"][data-state=\"gate\"]') !== null;",
    )
    .await;
    until_js(&client, "web-2 converged on v2", "return document.querySelector('section.summary .badge.h-converged') !== null && document.querySelector('[data-marker=\"current-round\"] h2').textContent.includes('recipe v2');").await;

    // The diff between the two versions.
    client.goto(&format!("{}/apps/web/recipes?from=1&to=2", hub.http_url())).await.expect("diff");
    let diff =
        client.find(Locator::Css("pre[data-marker=\"recipe-diff\"]")).await.expect("diff").text().await.expect("text");
    assert!(diff.contains("-") && diff.contains("listen = 9090"), "diff:\n{diff}");
    screenshot(&client, "recipe-diff").await;

    // A failing state: its error, with the state id and module, and its output tail.
    hub.create_app("batch");
    let job = hub.add_instance("batch", "job-1");
    let failing = recipe(
        dir.path(),
        "batch.yaml",
        "states:\n  - {id: fetch, module: linux.cmd, retries: 0, parameter: {cmd: \"echo fetching; echo 'no route to host' >&2; exit 3\"}}\n  - {id: load, module: linux.cmd, parameter: {cmd: \"true\"}}\n",
    );
    hub.push("batch", &failing);
    let _job = Agent::start(&dir.path().join("job-1"), &job, SLOW_ROUNDS);
    client.goto(&format!("{}/apps/batch/instances/job-1", hub.http_url())).await.expect("job page");
    let error = until_js(
        &client,
        "the failed state's error",
        "const e = document.querySelector('li.state[data-state=\"fetch\"][data-status=\"failed\"] p.error'); return e && e.textContent;",
    )
    .await;
    assert!(error.as_str().is_some_and(|e| e.contains("fetch") && e.contains("linux.cmd")), "error: {error}");
    until_js(&client, "failing", "return document.querySelector('section.summary .badge.h-failing') !== null;").await;
    client
        .execute(
            "for (const d of document.querySelectorAll('li.state details')) { d.open = true; } return true;",
            vec![],
        )
        .await
        .expect("open details");
    let stderr = find(&client, "li.state[data-state=\"fetch\"]").await.text().await.expect("text");
    assert!(stderr.contains("no route to host"), "{stderr}");
    screenshot(&client, "instance-failed").await;
    client.goto(&hub.http_url()).await.expect("apps page");
    until_js(
        &client,
        "the apps overview",
        "return document.querySelector('li.app[data-app=\"batch\"] li.count.h-failing .n').textContent === '1';",
    )
    .await;
    screenshot(&client, "apps").await;

    // A phone-sized screen.
    client.set_window_size(390, 844).await.expect("resize");
    client.goto(&format!("{}/apps/web", hub.http_url())).await.expect("app page");
    until_js(&client, "the grid", "return document.querySelectorAll('li.inst').length === 2;").await;
    let overflow = client
        .execute("return document.documentElement.scrollWidth > window.innerWidth + 1;", vec![])
        .await
        .expect("overflow");
    assert_eq!(overflow, json!(false), "the app page scrolls sideways on a phone");
    screenshot(&client, "phone-app").await;
    client.goto(&format!("{}/apps/web/instances/web-1", hub.http_url())).await.expect("instance page");
    screenshot(&client, "phone-instance").await;

    // Sign out: the pages want a session again.
    client.find(Locator::Css("form.signout button")).await.expect("sign out").click().await.expect("click");
    until_js(&client, "the sign-in form", "return location.pathname === '/signin';").await;
    client.goto(&format!("{}/apps/web", hub.http_url())).await.expect("app page");
    assert_eq!(client.current_url().await.expect("url").path(), "/signin");
    client.close().await.expect("close the browser");
}

/// The agent version the build reports, and the one a patched copy reports.
const OLD: &str = env!("CARGO_PKG_VERSION");
const NEW: &str = "0.2.0";

/// The upgrade cell of an instance on the releases page: `[phase, agent version]`.
fn upgrade_row(instance: &str) -> String {
    format!(
        "const r = document.querySelector('tr[data-instance=\"{instance}\"]'); \
         return r ? [r.dataset.phase || '', r.dataset.agentVersion || ''] : null;"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_page_orders_an_upgrade() {
    let _one = BROWSER.lock().await;
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("web");
    let keys = dir.path().join("keys");
    let public_key = hub.keygen(&keys);
    let key = keys.join("release.key");
    hub.release_add(OLD, &agent_bin(), &key);
    hub.release_add(NEW, &agent_with_version(dir.path(), NEW), &key);
    // web-1 runs an installed agent at OLD; web-2 never connects.
    let snippet = hub.add_instance("web", "web-1");
    hub.add_instance("web", "web-2");
    let extra = format!("{SLOW_ROUNDS}\nupdate_public_key = \"{public_key}\"\nupgrade_confirm_secs = 60\n");
    let mut agent = Installed::install(&dir.path().join("root-web-1"), &agent_bin(), OLD, &snippet, &extra);
    agent.start(&[]);
    let connected = wait_until(DEADLINE, || {
        let i = hub.instance_status("web", "web-1");
        i["connected"] == true && i["agent_version"] == OLD
    });
    assert!(connected, "web-1 did not connect:\n{}", agent.log_text());

    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    // Reached from the app page's navigation.
    sign_in(&client, &hub, "/apps/web").await;
    find(&client, "nav.app-nav a[data-tab=\"releases and upgrades\"]").await.click().await.expect("click");
    until_js(
        &client,
        "the releases page",
        "return location.pathname === '/apps/web/releases' && document.readyState === 'complete';",
    )
    .await;
    let row = until_js(&client, "web-1 on the old version", &upgrade_row("web-1")).await;
    assert_eq!(row, json!(["", OLD]));
    let releases = client
        .execute("return Array.from(document.querySelectorAll('tr[data-release]'), r => r.dataset.release);", vec![])
        .await
        .expect("releases");
    assert_eq!(releases, json!([NEW, OLD]), "newest first");

    // Order NEW with the form's button.
    client
        .execute(
            &format!("document.getElementById('version').value = '{NEW}'; window.__beforeOrder = true; return true;"),
            vec![],
        )
        .await
        .expect("choose the version");
    find(&client, "#upgrade-form button[type=submit]").await.click().await.expect("click");
    let notice = until_js(
        &client,
        "the order's notice",
        "const n = !window.__beforeOrder && document.querySelector('p.notice'); return n && n.textContent;",
    )
    .await;
    assert!(
        notice.as_str().is_some_and(|n| n.contains(&format!("ordered agent {NEW}")) && n.contains("sent to 1")),
        "{notice}"
    );

    // The phases arrive live (the page is not reloaded) until web-1 confirms on NEW.
    client.execute("window.__noReload = true; return true;", vec![]).await.expect("mark the page");
    let mut seen: Vec<String> = Vec::new();
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < Duration::from_secs(90) {
        last = client.execute(&upgrade_row("web-1"), vec![]).await.unwrap_or(Value::Null);
        if let Some(phase) = last[0].as_str().filter(|p| !p.is_empty()) {
            if seen.last().map(String::as_str) != Some(phase) {
                seen.push(phase.to_string());
            }
        }
        if last == json!(["confirmed", NEW]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, json!(["confirmed", NEW]), "phases seen: {seen:?}\nagent log:\n{}", agent.log_text());
    assert_eq!(client.execute("return window.__noReload === true;", vec![]).await.expect("marker"), json!(true));
    let badge = find(&client, "tr[data-instance=\"web-1\"] .badge").await.text().await.expect("text");
    assert_eq!(badge, "✔ confirmed", "a symbol and a word");
    let cell = find(&client, "tr[data-instance=\"web-1\"] td[data-label=\"latest upgrade\"]")
        .await
        .text()
        .await
        .expect("text");
    assert!(cell.contains(&format!("{OLD} → {NEW}")), "{cell}");
    let target = find(&client, "[data-marker=\"target\"]").await.text().await.expect("text");
    assert!(target.contains(NEW) && target.contains("1 of 2"), "{target}");
    println!("phases seen on the page: {seen:?}");
    client.set_window_size(1280, 1100).await.expect("resize");
    screenshot(&client, "releases").await;

    // On a phone-sized screen: no sideways scrolling, before and after a refused order.
    client.set_window_size(390, 844).await.expect("resize");
    client.goto(&format!("{}/apps/web/releases", hub.http_url())).await.expect("releases page");
    until_js(&client, "the page", "return document.querySelector('tr[data-instance=\"web-1\"]') !== null;").await;
    let overflow = client
        .execute("return document.documentElement.scrollWidth > window.innerWidth + 1;", vec![])
        .await
        .expect("overflow");
    assert_eq!(overflow, json!(false), "the releases page scrolls sideways on a phone");
    // A downgrade without the box: refused, with the reason above the form (with it ticked the
    // order would go through; not done: the agent would downgrade).
    client
        .execute(
            &format!("document.getElementById('version').value = '{OLD}'; window.__beforeOrder = true; return true;"),
            vec![],
        )
        .await
        .expect("choose the version");
    find(&client, "#upgrade-form button[type=submit]").await.click().await.expect("click");
    let error = until_js(
        &client,
        "the refusal",
        "const e = !window.__beforeOrder && document.querySelector('[data-marker=\"order-error\"]'); return e && e.textContent;",
    )
    .await;
    let error = error.as_str().unwrap_or("").to_string();
    assert!(
        error.contains(&format!("`web-1` runs {NEW}"))
            && error.contains("tick \"allow a downgrade\" to order it anyway"),
        "{error}"
    );
    let kept = client.execute("return document.getElementById('version').value;", vec![]).await.expect("kept");
    assert_eq!(kept, json!(OLD), "the form keeps the choice");
    let overflow = client
        .execute("return document.documentElement.scrollWidth > window.innerWidth + 1;", vec![])
        .await
        .expect("overflow");
    assert_eq!(overflow, json!(false), "the refusal makes the page scroll sideways on a phone");
    screenshot(&client, "phone-releases").await;
    // A signed-in page's POST without the CSRF token is refused.
    let status = client
        .execute_async(
            &format!("const done = arguments[arguments.length - 1]; \
             fetch('/apps/web/releases', {{ method: 'POST', body: new URLSearchParams({{ version: '{OLD}', allow_downgrade: 'on' }}) }}) \
               .then(r => done(r.status), e => done(String(e)));"),
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(status, json!(403));
    assert_eq!(hub.status("web")["target_version"], json!(NEW), "nothing else was ordered");

    client.close().await.expect("close the browser");
    assert_eq!(agent.current_version().as_deref(), Some(NEW));
}

/// An element that must be there (the page's source in the panic message otherwise).
async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => panic!("no `{css}` ({e}) in:\n{}", client.source().await.unwrap_or_default()),
    }
}

/// Fills the recipe textarea and submits the push form.
async fn push_text(client: &Client, text: &str) {
    client
        .execute(
            "document.getElementById('recipe').value = arguments[0]; window.__beforePush = true; return true;",
            vec![json!(text)],
        )
        .await
        .expect("fill the recipe");
    client.find(Locator::Css("#push-form button[type=submit]")).await.expect("push").click().await.expect("click");
    until_js(
        client,
        "the answer to the push",
        "return !window.__beforePush && document.readyState === 'complete' && document.querySelector('#push-form') !== null;",
    )
    .await;
}

/// Raw HTTP on loopback: (status line + headers, body).
fn http(hub: &Hub, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(hub.addr).expect("connect to the hub");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn request(hub: &Hub, method: &str, path: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        hub.addr,
        body.len()
    )
}

#[test]
fn requests_without_a_session_are_refused() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("web");
    let origin = format!("Origin: http://{}\r\n", hub.addr);

    for path in ["/", "/apps/web", "/apps/web/recipes", "/apps/web/releases", "/apps/web/instances/x"] {
        let (head, _) = http(&hub, &request(&hub, "GET", path, "", ""));
        assert!(head.starts_with("HTTP/1.1 303"), "GET {path}: {head}");
        assert!(head.contains("location: /signin?next="), "GET {path}: {head}");
    }
    let (head, _) = http(&hub, &request(&hub, "GET", "/events?app=web", "", ""));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http(&hub, &request(&hub, "POST", "/apps/web/recipes", &origin, "csrf=x&recipe=states%3A+%5B%5D"));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http(&hub, &request(&hub, "POST", "/apps/web/releases", &origin, "csrf=x&version=0.1.0"));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http(&hub, &request(&hub, "GET", "/api/v1/apps", "", ""));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    // A wrong token; the right one from another origin; the right one from here.
    let (head, _) = http(&hub, &request(&hub, "POST", "/signin", &origin, "token=nope&next=%2F"));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let form = format!("token={}&next=%2F", token(&hub));
    let (head, _) = http(&hub, &request(&hub, "POST", "/signin", "Origin: http://evil.example\r\n", &form));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = http(&hub, &request(&hub, "POST", "/signin", &origin, &form));
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie_line = head.lines().find(|l| l.starts_with("set-cookie:")).expect("a session cookie").to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie_line.contains(flag), "{cookie_line}");
    }
    assert!(!head.contains(&token(&hub)), "the token is not echoed: {head}");
    let session = cookie_line.trim_start_matches("set-cookie: ").split(';').next().expect("cookie").to_string();
    let cookie = format!("Cookie: {session}\r\n");

    // With the session: pages open; an action needs the form's CSRF token and this origin.
    let (head, body) = http(&hub, &request(&hub, "GET", "/apps/web/recipes", &cookie, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let csrf = body.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("a CSRF token");
    let push = |csrf: &str| format!("csrf={csrf}&recipe=states%3A%0A++-+%7Bid%3A+c%2C+module%3A+meta.comment%7D%0A");
    let (head, _) =
        http(&hub, &request(&hub, "POST", "/apps/web/recipes", &format!("{cookie}{origin}"), &push("wrong")));
    assert!(head.starts_with("HTTP/1.1 403"), "wrong CSRF token: {head}");
    let evil = format!("{cookie}Origin: http://evil.example\r\n");
    let (head, _) = http(&hub, &request(&hub, "POST", "/apps/web/recipes", &evil, &push(csrf)));
    assert!(head.starts_with("HTTP/1.1 403"), "other origin: {head}");
    let (head, _) = http(&hub, &request(&hub, "POST", "/apps/web/recipes", &cookie, &push(csrf)));
    assert!(head.starts_with("HTTP/1.1 403"), "no origin: {head}");
    assert!(hub.status("web")["recipe_version"].is_null(), "nothing was pushed");
    let (head, _) = http(&hub, &request(&hub, "POST", "/apps/web/recipes", &format!("{cookie}{origin}"), &push(csrf)));
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    assert_eq!(hub.status("web")["recipe_version"], json!(1));
    // The upgrade form too: without its CSRF token, or with a wrong one, nothing is ordered.
    for form in ["version=0.1.0", "csrf=wrong&version=0.1.0"] {
        let (head, body) = http(&hub, &request(&hub, "POST", "/apps/web/releases", &format!("{cookie}{origin}"), form));
        assert!(head.starts_with("HTTP/1.1 403") && body.contains("CSRF"), "{form}: {head}\n{body}");
    }
    // With it, a version the hub has no release of is refused on the page.
    let (head, body) = http(
        &hub,
        &request(
            &hub,
            "POST",
            "/apps/web/releases",
            &format!("{cookie}{origin}"),
            &format!("csrf={csrf}&version=9.9.9"),
        ),
    );
    assert!(
        head.starts_with("HTTP/1.1 404") && body.contains("there is no release 9.9.9 on this hub"),
        "{head}\n{body}"
    );
    assert!(hub.status("web")["target_version"].is_null(), "nothing was ordered");

    // A forged cookie is no session.
    let forged = "Cookie: opsagent_session=0000\r\n";
    let (head, _) = http(&hub, &request(&hub, "GET", "/apps/web", forged, ""));
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
}

/// Creates an instance through the API (no agent).
fn api_add_instance(hub: &Hub, app: &str, id: &str) {
    let body = json!({ "id": id }).to_string();
    let request = format!(
        "POST /api/v1/apps/{app}/instances HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        hub.addr,
        token(hub),
        body.len()
    );
    let (head, _) = http(hub, &request);
    assert!(head.starts_with("HTTP/1.1 201"), "add {id}: {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_instances() {
    let _one = BROWSER.lock().await;
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("fleet");
    let file = recipe(
        dir.path(),
        "fleet.yaml",
        r#"states:
  - {id: config, module: linux.file, parameter: {path: "@/fleet.conf", content: "fleet\n"}}
  - {id: check, module: linux.cmd, parameter: {cmd: "true"}}
  - {id: note, module: meta.comment}
"#,
    );
    hub.push("fleet", &file);
    let mut agents = Vec::new();
    for n in 1..=3 {
        let id = format!("fleet-{n:04}");
        let config = hub.add_instance("fleet", &id);
        agents.push(Agent::start(&dir.path().join(&id), &config, FAST_AGENT));
    }
    for n in 4..=1000 {
        api_add_instance(&hub, "fleet", &format!("fleet-{n:04}"));
    }
    let converged = wait_until(DEADLINE, || {
        let status = hub.status("fleet");
        status["instances"]
            .as_array()
            .is_some_and(|l| l.iter().filter(|i| i["round_result"] == "succeeded").count() == 3)
    });
    assert!(converged, "the three agents did not converge");

    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    sign_in(&client, &hub, "/").await;
    client.goto(&format!("{}/apps/fleet", hub.http_url())).await.expect("app page");
    until_js(
        &client,
        "the grid of 1,000",
        "return document.readyState === 'complete' && document.querySelectorAll('li.inst').length === 1000;",
    )
    .await;
    let timing = client
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return { response: n.responseEnd - n.startTime, dom: n.domContentLoadedEventEnd - n.startTime, \
                      load: n.loadEventEnd - n.startTime, bytes: n.transferSize };",
            vec![],
        )
        .await
        .expect("navigation timing");
    // Live updates keep arriving (three agents in 1 s rounds): after the catch-up refresh that
    // follows the event stream's opening, measure re-renders and how long the main thread is
    // blocked meanwhile.
    let first_refresh_ms =
        until_js(&client, "the first live refresh", "return document.querySelector('main').dataset.refreshMs;").await;
    let first_refresh_ms = first_refresh_ms.as_str().unwrap_or("?").to_string();
    let before = client
        .execute("return Number(document.querySelector('main').dataset.refreshed || 0);", vec![])
        .await
        .expect("refreshed");
    let lag = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; let max = 0; let last = performance.now(); \
             const end = last + 5000; \
             (function tick() { const now = performance.now(); max = Math.max(max, now - last); last = now; \
               if (now < end) { setTimeout(tick, 10); } else { done(max); } })();",
            vec![],
        )
        .await
        .expect("event loop lag");
    let refreshed = client
        .execute("const m = document.querySelector('main'); return [Number(m.dataset.refreshed || 0), Number(m.dataset.refreshMs || 0)];", vec![])
        .await
        .expect("refreshed");
    assert!(refreshed[0].as_f64() > before.as_f64(), "the grid did not update live");
    let cards = client.execute("return document.querySelectorAll('li.inst').length;", vec![]).await.expect("cards");
    assert_eq!(cards, json!(1000));
    // Still responsive: a click on an instance opens its page.
    let start = Instant::now();
    // Clicked from inside the page: live updates re-render cards, so a WebDriver element handle found a
    // moment earlier may already be stale.
    client
        .execute("document.querySelector('li.inst[data-instance=\"fleet-0002\"] a.name').click();", vec![])
        .await
        .expect("click");
    until_js(
        &client,
        "the instance page",
        "return location.pathname.endsWith('/fleet-0002') && document.readyState === 'complete';",
    )
    .await;
    let click_ms = start.elapsed().as_millis();
    println!(
        "1,000 instances: response {:.0} ms, DOMContentLoaded {:.0} ms, load {:.0} ms, {} bytes; \
         first (whole-page) live refresh {first_refresh_ms} ms; live patch {} ms; longest main-thread gap over 5 s of live updates {:.0} ms; click to instance page {click_ms} ms",
        timing["response"].as_f64().unwrap_or(0.0),
        timing["dom"].as_f64().unwrap_or(0.0),
        timing["load"].as_f64().unwrap_or(0.0),
        timing["bytes"],
        refreshed[1],
        lag.as_f64().unwrap_or(0.0),
    );
    client.goto(&format!("{}/apps/fleet", hub.http_url())).await.expect("app page");
    screenshot(&client, "app-1000").await;
    client.close().await.expect("close the browser");
}

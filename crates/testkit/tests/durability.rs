//! Nothing is lost: hub and agent crashes, agents without a hub, many agents reconnecting.

use std::collections::BTreeSet;
use std::time::Duration;

use opsagent_testkit::{api_get, recipe, scratch, wait_until, Agent, Hub, FAST_AGENT};

/// The seqs the hub stored for an instance.
fn seqs(hub: &Hub, app: &str, instance: &str) -> Vec<u64> {
    let v = api_get(hub, &format!("/api/v1/apps/{app}/instances/{instance}/seqs"));
    let list = v.get("seqs").unwrap_or(&v);
    list.as_array().expect("a list of seqs").iter().map(|s| s.as_u64().expect("a seq")).collect()
}

fn pending_reports(agent: &Agent) -> usize {
    std::fs::read_dir(agent.state_dir.join("outbox"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

fn round_of(hub: &Hub, app: &str, instance: &str) -> u64 {
    hub.instance_status(app, instance)["round"].as_u64().unwrap_or(0)
}

#[test]
fn crashes_of_hub_and_agent_lose_and_duplicate_nothing() {
    let dir = scratch();
    let mut hub = Hub::start(dir.path());
    hub.create_app("app");
    let mut a = Agent::start(&dir.path().join("a"), &hub.add_instance("app", "a"), FAST_AGENT);
    let mut b = Agent::start(&dir.path().join("b"), &hub.add_instance("app", "b"), FAST_AGENT);
    let file = recipe(
        dir.path(),
        "r.yaml",
        r#"states:
  - {id: one, module: linux.file, parameter: {path: "@/one", content: "1"}}
  - {id: two, module: linux.cmd, parameter: {cmd: "echo two"}}
  - {id: three, module: meta.comment}
"#,
    );
    hub.push("app", &file);
    assert!(wait_until(Duration::from_secs(30), || round_of(&hub, "app", "a") >= 2 && round_of(&hub, "app", "b") >= 2));

    // The hub dies in the middle of rounds and comes back.
    hub.kill();
    std::thread::sleep(Duration::from_millis(1500)); // agents keep running rounds meanwhile
    hub.restart();
    // An agent dies and comes back.
    a.kill();
    a.restart();
    let before = (round_of(&hub, "app", "a"), round_of(&hub, "app", "b"));
    assert!(
        wait_until(Duration::from_secs(30), || round_of(&hub, "app", "a") > before.0 + 1
            && round_of(&hub, "app", "b") > before.1 + 1),
        "agents did not go on: {}\n{}",
        hub.status("app"),
        a.log_text()
    );

    // Stop the agents cleanly once their outboxes are flushed, then count.
    for agent in [&mut a, &mut b] {
        assert!(wait_until(Duration::from_secs(20), || pending_reports(agent) == 0));
        agent.stop();
    }
    for instance in ["a", "b"] {
        let seqs = seqs(&hub, "app", instance);
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), seqs.len(), "{instance}: a seq stored twice");
        let max = *unique.iter().next_back().expect("some reports");
        assert_eq!(unique, (1..=max).collect::<BTreeSet<u64>>(), "{instance}: a report is missing");
    }
}

#[test]
fn an_agent_without_its_hub_runs_the_cached_recipe_and_reports_later() {
    let dir = scratch();
    let mut hub = Hub::start(dir.path());
    hub.create_app("app");
    let config = hub.add_instance("app", "solo");
    let mut agent = Agent::start(
        &dir.path().join("solo"),
        &config,
        "round_interval_secs = 600\nsplay_secs = 0\nreconnect_max_secs = 1",
    );
    let file = recipe(
        dir.path(),
        "r.yaml",
        "states:\n  - {id: f, module: linux.file, parameter: {path: \"@/managed\", content: cached}}\n",
    );
    hub.push("app", &file);
    assert!(wait_until(Duration::from_secs(20), || dir.path().join("managed").exists()));
    assert!(wait_until(Duration::from_secs(20), || pending_reports(&agent) == 0));
    agent.stop();

    hub.kill();
    std::fs::remove_file(dir.path().join("managed")).unwrap();
    agent.restart();
    // No hub: the cached recipe runs and repairs the file.
    assert!(wait_until(Duration::from_secs(20), || dir.path().join("managed").exists()), "{}", agent.log_text());
    assert!(pending_reports(&agent) > 0, "the reports wait in the outbox");
    let round = agent_round(&agent);
    hub.restart();
    assert!(wait_until(Duration::from_secs(20), || pending_reports(&agent) == 0), "{}", agent.log_text());
    assert!(round_of(&hub, "app", "solo") >= round);
}

fn agent_round(agent: &Agent) -> u64 {
    std::fs::read_to_string(agent.state_dir.join("round")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn a_hundred_agents_do_not_reconnect_in_one_burst() {
    let dir = scratch();
    let mut hub = Hub::start(dir.path());
    hub.create_app("fleet");
    let extra = "round_interval_secs = 600\nsplay_secs = 0\nreconnect_max_secs = 8";
    let agents: Vec<Agent> = (0..100)
        .map(|i| {
            let name = format!("n{i:03}");
            Agent::start(&dir.path().join(&name), &hub.add_instance("fleet", &name), extra)
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || hub.connected_count("fleet") == 100),
        "{}",
        hub.connected_count("fleet")
    );

    let killed_at = std::time::SystemTime::now();
    hub.kill();
    hub.restart();
    assert!(wait_until(Duration::from_secs(60), || hub.connected_count("fleet") == 100));

    // When did each agent first try again after the hub went away? Its log says so: the first
    // "connecting to the hub" line after the kill. (When the connection *succeeds* depends on when
    // the restarted hub is ready, so the attempts are what shows a herd.)
    let mut times: Vec<f64> = agents
        .iter()
        .filter_map(|a| {
            let log = a.log_text();
            log.lines().filter(|l| l.contains("connecting to the hub")).find_map(|line| {
                let t = humantime_parse(line.split_whitespace().next()?)?;
                t.duration_since(killed_at).ok().map(|d| d.as_secs_f64())
            })
        })
        .collect();
    assert_eq!(times.len(), 100, "every agent reconnected");
    times.sort_by(f64::total_cmp);
    let spread = times[99] - times[0];
    let busiest = times.iter().map(|t| times.iter().filter(|u| **u >= *t && **u < t + 0.1).count()).max().unwrap_or(0);
    eprintln!("first reconnection attempts spread over {spread:.2}s, busiest 100 ms window {busiest} agents");
    assert!(spread > 0.5, "reconnection attempts spread over only {spread:.2}s");
    assert!(busiest <= 30, "{busiest} agents tried to reconnect within 100 ms");
}

/// Parses tracing's default timestamp (`2026-11-25T16:20:01.123456Z`).
fn humantime_parse(stamp: &str) -> Option<std::time::SystemTime> {
    let stamp = stamp.trim_start_matches("\u{1b}[2m").trim_end_matches("\u{1b}[0m");
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, s) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?, t.next()?.parse::<f64>().ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_secs_f64(s))
}

#[test]
fn a_hung_hub_is_detected_and_the_connection_replaced() {
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("app");
    let agent = Agent::start(
        &dir.path().join("a"),
        &hub.add_instance("app", "a"),
        "heartbeat_secs = 1\nsplay_secs = 0\nreconnect_max_secs = 1",
    );
    let connections = |agent: &Agent| agent.log_text().matches("connected to the hub").count();
    assert!(wait_until(Duration::from_secs(20), || connections(&agent) == 1), "{}", agent.log_text());
    let pid = nix::unistd::Pid::from_raw(hub.pid().expect("hub pid") as i32);
    // The hub hangs: its socket stays open but it answers nothing.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let detected = wait_until(Duration::from_secs(15), || agent.log_text().contains("no sign of life from the hub"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(detected, "{}", agent.log_text());
    assert!(
        wait_until(Duration::from_secs(20), || connections(&agent) >= 2),
        "the agent did not reconnect: {}",
        agent.log_text()
    );
}

//! `fleet-bench`: one hub and many agents on loopback. Measures the idle agent's memory, then the
//! time from `recipe push` until every agent has reported the whole round, and the hub's memory.
//!
//! `cargo build --release --workspace && target/release/fleet-bench --agents 1000`

use std::time::{Duration, Instant};

use opsagent_testkit::{recipe, scratch, wait_until, Agent, Hub};

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents_n: usize = args
        .iter()
        .position(|a| a == "--agents")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let dir = scratch();
    let hub = Hub::start(dir.path());
    hub.create_app("fleet");
    eprintln!("[bench] adding {agents_n} instances");
    let configs: Vec<(String, String)> = (0..agents_n)
        .map(|i| {
            let name = format!("n{i:04}");
            let config = hub.add_instance("fleet", &name);
            (name, config)
        })
        .collect();
    eprintln!("[bench] starting {agents_n} agents");
    let agents: Vec<Agent> = configs
        .iter()
        .map(|(name, config)| {
            Agent::start(&dir.path().join(name), config, "round_interval_secs = 3600\nsplay_secs = 0")
        })
        .collect();
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(300), || hub.connected_count("fleet") == agents_n),
        "only {} connected",
        hub.connected_count("fleet")
    );
    eprintln!("[bench] all connected after {:.1}s", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(3));
    let mut idle_rss: Vec<f64> =
        agents.iter().filter_map(|a| a.memory_kib()).map(|(rss, _)| rss as f64 / 1024.0).collect();
    let idle_median = median(&mut idle_rss);
    let idle_max = idle_rss.last().copied().unwrap_or(0.0);
    let hub_idle = hub.memory_kib().map(|(rss, _)| rss as f64 / 1024.0).unwrap_or(0.0);

    let file = recipe(
        dir.path(),
        "r.yaml",
        r#"states:
  - {id: note, module: meta.comment, parameter: {comment: fleet}}
  - {id: conf, module: linux.file, parameter: {path: "@/fleet.conf", content: "x = 1\n"}}
  - {id: check, module: linux.cmd, parameter: {cmd: "true"}}
"#,
    );
    let pushed = Instant::now();
    let version = hub.push("fleet", &file);
    let all_done = |hub: &Hub| {
        let status = hub.status("fleet");
        status["instances"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|i| {
                        i["recipe_version"] == version
                            && i["states"].as_array().is_some_and(|s| {
                                s.len() == 3
                                    && s.iter().all(|s| {
                                        s["recipe_version"] == version
                                            && matches!(s["status"].as_str(), Some("ok" | "changed" | "skipped"))
                                    })
                            })
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(600), || all_done(&hub) == agents_n), "only {} finished", all_done(&hub));
    let round_time = pushed.elapsed();
    let (hub_rss, hub_peak) = hub.memory_kib().map(|(r, p)| (r as f64 / 1024.0, p as f64 / 1024.0)).unwrap_or_default();
    let mut busy_rss: Vec<f64> =
        agents.iter().filter_map(|a| a.memory_kib()).map(|(_, peak)| peak as f64 / 1024.0).collect();
    let busy_median = median(&mut busy_rss);

    println!("## Fleet benchmark: 1 hub, {agents_n} agents on loopback (SQLite)\n");
    println!("| measure | value |\n|---|---:|");
    println!("| idle agent RSS, median | {idle_median:.1} MiB |");
    println!("| idle agent RSS, max | {idle_max:.1} MiB |");
    println!("| agent peak RSS after the round, median | {busy_median:.1} MiB |");
    println!("| `recipe push` → every agent reported the whole round (3 states) | {:.2} s |", round_time.as_secs_f64());
    println!("| hub RSS, idle with {agents_n} connections | {hub_idle:.1} MiB |");
    println!("| hub RSS after the round / peak | {hub_rss:.1} / {hub_peak:.1} MiB |");
    drop(agents);
}

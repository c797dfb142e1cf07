//! `OPSAGENT_LOG_FORMAT=json`: the hub and the agent daemon write one JSON object a line, for log
//! shippers.

use std::time::Duration;

use opsagent_testkit::{recipe, scratch, wait_until, Agent, Hub, FAST_AGENT};

#[test]
fn hub_and_agent_logs_are_json_lines_when_asked() {
    let json = [("OPSAGENT_LOG_FORMAT", "json")];
    let dir = scratch();
    let hub = Hub::start_with_env(dir.path(), &json);
    hub.create_app("shop");
    let config = hub.add_instance("shop", "web-1");
    let agent = Agent::start_with_env(&dir.path().join("web-1"), &config, &format!("{FAST_AGENT}\n"), &json);
    let file =
        recipe(dir.path(), "r.yaml", "states:\n  - {id: hello, module: linux.cmd, parameter: {cmd: \"true\"}}\n");
    hub.push("shop", &file);
    let ran = wait_until(Duration::from_secs(30), || agent.log_text().contains("round"));
    assert!(ran, "agent log:\n{}", agent.log_text());

    for (who, text) in [("hub", hub.log_text()), ("agent", agent.log_text())] {
        // (The testkit sends stdout to the same file: the hub's banner is not a log line.)
        for line in text.lines() {
            assert!(!line.contains(" INFO ") && !line.contains(" WARN "), "{who}: a text log line: {line}");
        }
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
        assert!(lines.len() >= 2, "{who} logged too little:\n{text}");
        for line in &lines {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{who}: not a JSON line ({e}): {line}"));
            assert!(value["timestamp"].is_string() && value["level"].is_string(), "{who}: {line}");
            assert!(value["fields"]["message"].is_string(), "{who}: {line}");
        }
    }
    assert!(agent.log_text().contains("\"instance_id\"") || hub.log_text().contains("\"instance_id\""));
}

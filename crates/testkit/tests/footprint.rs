//! The agent ships to every instance: it must not link the hub's dependencies.

#[test]
fn the_agent_links_no_hub_dependency() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "opsagent", "-e", "normal,build", "--prefix", "none", "--format", "{p}"])
        .current_dir(&root)
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8_lossy(&output.stdout);
    for banned in ["sqlx", "axum", "opsagent-hub", "reqwest", "hyper "] {
        assert!(!tree.lines().any(|l| l.starts_with(banned)), "the agent depends on {banned}:\n{tree}");
    }
    assert!(
        tree.lines().any(|l| l.starts_with("tokio-tungstenite")),
        "cargo tree printed something unexpected:\n{tree}"
    );
}

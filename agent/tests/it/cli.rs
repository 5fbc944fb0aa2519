//! The command line: `agent validate` reports every problem at once and exits 64.

use crate::support::agent_command;

#[test]
fn validate_names_every_wrong_key_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        r#"
memory_limit_mib = 0
unknown_top = true
[sources.stdin]
colour = "blue"
[sinks.cloudwatch_logs]
log_group = "/ok"
retention_days = 45
"#,
    )
    .unwrap();
    let output = agent_command()
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "unknown_top: unknown key",
        "sources.stdin.colour: unknown key",
        "memory_limit_mib:",
        "sinks.cloudwatch_logs.retention_days:",
    ] {
        assert!(stderr.contains(key), "{key} not reported: {stderr}");
    }
}

#[test]
fn the_example_config_validates() {
    let output = agent_command()
        .env("AGENT_LOG_GROUP", "/ecs/api")
        .args(["validate", "--config"])
        .arg(crate::support::repo_root().join("agent/agent.example.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn missing_variable_in_config_is_named() {
    let output = agent_command()
        .args(["validate", "--config"])
        .arg(crate::support::repo_root().join("agent/agent.example.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("environment variable AGENT_LOG_GROUP is not set")
    );
}

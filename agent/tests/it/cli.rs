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

#[tokio::test(flavor = "multi_thread")]
async fn probe_prints_a_line_per_check_and_fails_on_the_first_failure() {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/api/health/redis",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://127.0.0.1:{port}");
    let run = move |urls: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let mut command = agent_command();
            command.arg("probe").args(["--timeout", "1"]);
            for url in urls {
                command.args(["--url", &url]);
            }
            command.output().unwrap()
        })
    };
    let ok = run(vec![format!("{base}/health")]).await.unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok    200"));

    let failed = run(vec![
        format!("{base}/health"),
        format!("{base}/api/health/redis"),
        format!("{base}/never"),
    ])
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let text = String::from_utf8_lossy(&failed.stdout);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "stops at the first failure: {text}");
    assert!(
        lines[1].starts_with("FAIL  503") && lines[1].ends_with("(status 503)"),
        "{text}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = run(vec![format!("http://127.0.0.1:{closed}/health")])
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stdout).starts_with("FAIL  ---"));
}

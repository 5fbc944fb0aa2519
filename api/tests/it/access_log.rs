//! The access log of the real binary: one JSON event per request, the sidecar's input.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{
    FAKE_JWT_SECRET, FAKE_OPENAI_KEY, Services, api_command, app_env, eventually, free_port,
    http_get,
};

#[tokio::test]
async fn one_json_event_per_request_with_the_contract_fields() {
    let mut services = Services::start(&["postgres", "redis"]);
    let port = free_port();
    let mut env = app_env(&services);
    env.insert("PORT".into(), port.to_string());
    let child = api_command(&env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start api serve");
    let up = eventually(Duration::from_secs(10), || async move {
        http_get(port, "/health", &[]).await.is_ok()
    })
    .await;
    assert!(up, "api did not start listening");

    let health = http_get(port, "/health", &[("x-request-id", "req-health-1")])
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.headers["x-request-id"], "req-health-1");
    let db = http_get(port, "/api/health/db", &[]).await.unwrap();
    assert_eq!(db.status, 200, "{:?}", String::from_utf8_lossy(&db.body));
    let unknown = http_get(port, "/api/users/12345?token=abc", &[])
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    services.stop("redis");
    let redis = http_get(
        port,
        "/api/health/redis",
        &[("x-request-id", "req-redis-down")],
    )
    .await
    .unwrap();
    assert_eq!(redis.status, 503);

    // SIGTERM: graceful stop, exit 0.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "exit after SIGTERM: {:?}",
        output.status
    );

    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
        })
        .collect();
    let access: Vec<_> = events.iter().filter(|e| e["target"] == "access").collect();
    // The readiness polls also count: every request, and only requests, yields one event.
    let polls = access.len() - 4;
    assert!(access[..polls].iter().all(|e| e["route"] == "/health"));
    let requests = &access[polls..];
    let routes: Vec<_> = requests
        .iter()
        .map(|e| e["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        [
            "/health",
            "/api/health/db",
            "unmatched",
            "/api/health/redis"
        ]
    );
    let statuses: Vec<_> = requests
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 404, 503]);
    for event in requests {
        assert_eq!(event["method"], "GET");
        assert!(event["latency_ms"].is_f64(), "{event}");
        assert!(event["bytes"].as_u64().unwrap() > 0, "{event}");
        assert!(
            event["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        assert!(humantime::parse_rfc3339(event["timestamp"].as_str().unwrap()).is_ok());
    }
    assert_eq!(requests[0]["request_id"], "req-health-1");
    assert_eq!(requests[0]["level"], "info");
    assert_eq!(requests[3]["level"], "error");
    assert_eq!(requests[3]["error_kind"], "redis_unavailable");
    assert_eq!(requests[3]["request_id"], "req-redis-down");
    assert!(
        !stdout.contains("12345") && !stdout.contains("token=abc"),
        "raw path leaked into the log"
    );

    assert!(events.iter().any(|e| e["message"] == "listening"));
    assert!(events.iter().any(|e| e["message"] == "stopped"));
    let database_url = services.var("DATABASE_URL");
    for secret in [
        FAKE_OPENAI_KEY,
        FAKE_JWT_SECRET,
        "r8_fake_replicate_key_7f3a",
        "suno_fake_key_91bc",
        database_url,
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "secret leaked: {secret}"
        );
    }
}

//! What FireLens and CloudWatch-agent users ask for (issue 16), black-box with the real
//! binary: filters, templated log group and stream names, and groups created as Terraform
//! would create them.

use std::time::Duration;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn filters_drop_keep_and_sample_and_count_what_they_drop() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let mut options = Options::new(endpoint);
    options.extra = r#"
[[pipeline.filters]]
action = "drop"
field = "path"
regex = "^/health"
[[pipeline.filters]]
action = "sample"
levels = ["debug", "error"]
rate = 0.25
"#
    .into();
    let mut lines = Vec::new();
    for i in 0..40 {
        lines.push(format!(r#"{{"level":"debug","msg":"debug {i}"}}"#));
    }
    for i in 0..10 {
        lines.push(format!(
            r#"{{"level":"info","path":"/health","msg":"probe {i}"}}"#
        ));
        lines.push(format!(
            r#"{{"level":"info","path":"/api","msg":"api {i}"}}"#
        ));
        lines.push(format!(r#"{{"level":"error","msg":"error {i}"}}"#));
    }
    lines.push("a plain line /health".into());
    let mut agent = Agent::start(&options);
    agent.write_lines(&lines);
    // 10 of 40 debug lines, 10 api, 10 errors (never sampled), 1 plain.
    let expected = 10 + 10 + 10 + 1;
    assert!(
        eventually(Duration::from_secs(20), || async {
            fake.count() >= expected
        })
        .await,
        "{:?}",
        fake.messages()
    );
    let filtered = agent
        .metric(r#"agent_events_dropped_total{reason="filtered"}"#)
        .await;
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let messages = fake.messages();
    assert_eq!(messages.len(), expected, "{messages:#?}");
    assert_eq!(filtered, Some((lines.len() - expected) as f64));
    let count = |needle: &str| messages.iter().filter(|m| m.contains(needle)).count();
    assert_eq!(count("\"debug "), 10);
    assert_eq!(count("probe"), 0);
    assert_eq!(count("api "), 10);
    assert_eq!(count("error "), 10);
    assert_eq!(count("a plain line"), 1, "not JSON: no field to match");
}

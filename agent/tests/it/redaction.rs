//! Secrets in odd places (issue 14, item 1), black-box: lines carrying a secret in a JSON
//! string value, nested JSON text, a query string, URL userinfo, a form body or an array go
//! through the real binary; none of them may reach CloudWatch Logs with the secret.

use std::time::Duration;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options};

const SECRET: &str = "hunter2blackboxQ7";

#[tokio::test(flavor = "multi_thread")]
async fn secrets_inside_json_strings_never_reach_cloudwatch() {
    let (fake, endpoint, _server) = FakeCwl::start().await;
    let lines: Vec<String> = [
        r#"{"level":"info","msg":"GET /login?password=%S%&next=/"}"#,
        r#"{"level":"info","body":"{\"password\":\"%S%\"}"}"#,
        r#"{"level":"info","body":"user=bob&passwd=%S%"}"#,
        r#"{"level":"info","url":"https://svc:%S%@example.com/x"}"#,
        r#"{"level":"info","msg":"Authorization: Bearer %S%"}"#,
        r#"{"level":"info","argv":["app","--password","%S%"]}"#,
        r#"{"level":"info","headers":[{"name":"Cookie","value":"sid=%S%"}]}"#,
        r#"{"level":"error","body":"{\"inner\":\"{\\\"api_key\\\":\\\"%S%\\\"}\"}"}"#,
        "plain line DATABASE_URL=postgres://app:%S%@db:5432/app",
        r#"{"level":"info","msg":"ordinary line, https://example.com/ok"}"#,
    ]
    .iter()
    .map(|line| line.replace("%S%", SECRET))
    .collect();
    let mut agent = Agent::start(&Options::new(endpoint));
    agent.write_lines(&lines);
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let messages = fake.messages();
    assert_eq!(
        messages.len(),
        lines.len(),
        "every line is shipped: {messages:?}"
    );
    for message in &messages {
        assert!(!message.contains(SECRET), "secret shipped: {message}");
    }
    let redacted = messages.iter().filter(|m| m.contains("[REDACTED]")).count();
    assert_eq!(redacted, lines.len() - 1, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("https://example.com/ok"))
    );
    assert!(!logs.contains(SECRET), "the agent's own logs: {logs}");
}

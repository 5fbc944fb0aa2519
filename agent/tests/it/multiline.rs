//! Multiline stack traces (issue 16, item 1), black-box: traces from three runtimes written
//! to the real binary's stdin one line at a time reach CloudWatch Logs (the emulator) as one
//! event per trace: one ended by the next ordinary line, one by `flush_ms`, one by EOF.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};

use crate::support::{Agent, Moto, Options, eventually};

const JAVA: &str = include_str!("../fixtures/multiline/java_caused_by.txt");
const PYTHON: &str = include_str!("../fixtures/multiline/python_chained_cause.txt");
const GO: &str = include_str!("../fixtures/multiline/go_panic_goroutines.txt");

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// Every message of the agent's one stream, read back with GetLogEvents.
async fn read_back(endpoint: &str) -> Vec<String> {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    let client = aws_sdk_cloudwatchlogs::Client::from_conf(config);
    let streams = client
        .describe_log_streams()
        .log_group_name("/test/agent")
        .send()
        .await
        .unwrap();
    let [stream] = streams.log_streams() else {
        panic!("one stream: {streams:?}");
    };
    let mut messages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_log_events()
            .log_group_name("/test/agent")
            .log_stream_name(stream.log_stream_name().unwrap())
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        messages.extend(
            page.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_owned)),
        );
        if page.events().is_empty() || page.next_forward_token() == token.as_deref() {
            return messages;
        }
        token = page.next_forward_token().map(str::to_owned);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_traces_from_stdin_reach_cloudwatch_as_one_event_each() {
    let moto = Moto::start();
    let mut options = Options::new(moto.endpoint.clone());
    options.extra = "[pipeline.multiline]\nflush_ms = 300\n".into();
    let mut agent = Agent::start(&options);
    let json = r#"{"level":"error","msg":"request failed: java.lang.IllegalStateException: boom"}"#;
    let mut input = vec![json.to_owned()];
    input.extend(lines(JAVA));
    input.push("worker: retrying in 5s".into());
    input.extend(lines(PYTHON));
    agent.write_lines(&input);
    // The Python trace has no line after it: flush_ms ships it while stdin stays open.
    let joined = r#"agent_multiline_traces_joined_total{source="stdin"}"#;
    assert!(
        eventually(Duration::from_secs(10), || async {
            agent.metric(joined).await == Some(2.0)
        })
        .await,
        "two traces joined before EOF"
    );
    // The Go dump is the process's last output: held at EOF, sent before the agent exits.
    agent.write_lines(&lines(GO));
    agent.close_stdin();
    let (code, logs, _) = tokio::task::spawn_blocking(move || agent.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let mut got = read_back(&moto.endpoint).await;
    let mut expected: Vec<String> = [json, JAVA, "worker: retrying in 5s", PYTHON, GO]
        .iter()
        .map(|s| s.trim_end().to_owned())
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "one event per trace, every line once");
}

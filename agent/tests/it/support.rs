//! Helpers: run the `agent` binary with a generated config, read its metrics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The AWS emulator, started with the project's script on a free loopback port and
/// stopped when dropped.
pub(crate) struct Moto {
    dir: tempfile::TempDir,
    /// Every service but CloudWatch (metrics): Logs, Secrets Manager, SNS, ...
    pub(crate) endpoint: String,
    /// CloudWatch (metrics): `scripts/cwfront.py`, which translates the SDK's rpc-v2-cbor
    /// calls into the JSON protocol the emulator speaks.
    pub(crate) cloudwatch_endpoint: String,
}

impl Moto {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(repo_root().join("scripts/services.sh"))
            .arg("start")
            .arg(dir.path())
            .arg("moto")
            .output()
            .expect("services.sh");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let variable = |name: &str| {
            let value = env
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {env}"))
                .to_owned();
            assert!(value.starts_with("http://127.0.0.1:"), "{name}={value}");
            value
        };
        Self {
            endpoint: variable("AWS_ENDPOINT_URL"),
            cloudwatch_endpoint: variable("AWS_ENDPOINT_URL_CLOUDWATCH"),
            dir,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/services.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A running agent with its config in a temp dir.
pub(crate) struct Agent {
    pub(crate) child: Child,
    /// The agent's stderr (its JSON logs), drained continuously so the pipe never fills.
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
    pub(crate) admin_port: u16,
    _dir: tempfile::TempDir,
}

/// Options of the generated config.
pub(crate) struct Options {
    pub(crate) endpoint: String,
    pub(crate) memory_limit_mib: u64,
    pub(crate) shutdown_grace_secs: u64,
    pub(crate) extra: String,
    /// The `[metrics]` table; by default nothing is published (no traffic leaves loopback).
    pub(crate) metrics: String,
    /// Root keys placed before every table.
    pub(crate) prelude: String,
    /// The sink's `log_group` and `log_stream` templates.
    pub(crate) log_group: String,
    pub(crate) log_stream: String,
    /// Environment variables of the agent beyond the test credentials.
    pub(crate) env: Vec<(String, String)>,
}

impl Options {
    pub(crate) fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            memory_limit_mib: 64,
            shutdown_grace_secs: 10,
            extra: String::new(),
            metrics: "[metrics]\npublish = \"none\"\n".into(),
            prelude: String::new(),
            log_group: "/test/agent".into(),
            log_stream: "{container}/{task_id}".into(),
            env: Vec::new(),
        }
    }
}

impl Agent {
    /// Starts `agent run` reading stdin.
    pub(crate) fn start(options: &Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin_port = free_port();
        let config = format!(
            r#"
{prelude}
memory_limit_mib = {memory}
shutdown_grace_secs = {grace}
log_level = "debug"
[admin]
address = "127.0.0.1:{admin_port}"
[sources.stdin]
[sinks.cloudwatch_logs]
log_group = "{log_group}"
log_stream = "{log_stream}"
endpoint = "{endpoint}"
region = "us-east-1"
batch_timeout_ms = 200
max_backoff_ms = 400
request_timeout_ms = 2000
{extra}
{metrics}
"#,
            prelude = options.prelude,
            memory = options.memory_limit_mib,
            grace = options.shutdown_grace_secs,
            endpoint = options.endpoint,
            extra = options.extra,
            metrics = options.metrics,
            log_group = options.log_group,
            log_stream = options.log_stream,
        );
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = agent_command()
            .args(["run", "--config"])
            .arg(&path)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let sink = logs.clone();
        let log_reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Self {
            child,
            logs,
            log_reader: Some(log_reader),
            admin_port,
            _dir: dir,
        }
    }

    /// Writes lines to the agent's stdin (blocking: the pipe applies back-pressure).
    pub(crate) fn write_lines(&mut self, lines: &[String]) {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        for line in lines {
            stdin.write_all(line.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
        stdin.flush().unwrap();
    }

    pub(crate) fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit (bounded); returns the exit code and the agent's stderr (its logs).
    pub(crate) fn wait(mut self, timeout: Duration) -> (Option<i32>, String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = start.elapsed();
                if let Some(reader) = self.log_reader.take() {
                    let _ = reader.join();
                }
                let logs = self.logs.lock().unwrap().clone();
                return (status.code(), logs, took);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("agent did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One sample of `/metrics`, by its full name with labels (e.g. `agent_retries_total{reason="throttled"}`).
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let text = http_get(self.admin_port, "/metrics").await.ok()?.1;
        text.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub(crate) fn agent_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agent"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// `GET path` → (status, body).
pub(crate) async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` until true or `timeout`.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` numbered JSON access-log lines of about 280 bytes, timestamped now.
pub(crate) fn numbered_lines(from: usize, n: usize) -> Vec<String> {
    let now = now_epoch_ms();
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"timestamp":{now},"level":"info","target":"access","message":"request","method":"GET","route":"/api/users/{{id}}","status":200,"latency_ms":1.25,"request_id":"req-{i:08}","bytes":512,"seq":{i}}}"#
            )
        })
        .collect()
}

fn now_epoch_ms() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ms.to_string()
}

/// The `seq` of each received line, checked to be exactly 0..n once each.
pub(crate) fn assert_exactly_once(messages: &[String], n: usize) {
    let mut seen = vec![0u32; n];
    for message in messages {
        let value: serde_json::Value =
            serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {message}"));
        let seq = value["seq"].as_u64().unwrap() as usize;
        assert!(seq < n, "unexpected seq {seq}");
        seen[seq] += 1;
    }
    let missing: Vec<_> = seen
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == 0)
        .map(|(i, _)| i)
        .take(5)
        .collect();
    let duplicated: Vec<_> = seen
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 1)
        .map(|(i, _)| i)
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && duplicated.is_empty(),
        "missing {missing:?}, duplicated {duplicated:?} (of {n})"
    );
}

/// The `undelivered` count of the agent's final log line.
pub(crate) fn undelivered(logs: &str) -> Option<u64> {
    logs.lines()
        .filter(|line| line.contains("\"undelivered\""))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|line| line["undelivered"].as_u64())
}

/// A CloudWatch Logs client of the emulator at `endpoint`, signed with `credentials`.
pub(crate) fn logs_client_as(
    endpoint: &str,
    credentials: aws_sdk_cloudwatchlogs::config::Credentials,
) -> aws_sdk_cloudwatchlogs::Client {
    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Region};
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

/// A CloudWatch Logs client of the emulator at `endpoint`, with the test credentials.
pub(crate) fn logs_client(endpoint: &str) -> aws_sdk_cloudwatchlogs::Client {
    let credentials =
        aws_sdk_cloudwatchlogs::config::Credentials::new("testing", "testing", None, None, "test");
    logs_client_as(endpoint, credentials)
}

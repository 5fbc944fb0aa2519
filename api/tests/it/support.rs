//! Test helpers: private services through `scripts/services.sh`, the `api` binary, and a
//! minimal HTTP/1.1 client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Services started for one test under a temp dir; stopped on drop.
pub(crate) struct Services {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Services {
    pub(crate) fn start(names: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("api-it-")
            .tempdir()
            .expect("temp dir");
        let mut services = Self {
            dir,
            env: HashMap::new(),
        };
        services.run("start", names);
        services
    }

    fn run(&mut self, action: &str, names: &[&str]) {
        let output = Command::new(repo_root().join("scripts/services.sh"))
            .arg(action)
            .arg(self.dir.path())
            .args(names)
            .output()
            .expect("run scripts/services.sh");
        assert!(
            output.status.success(),
            "services.sh {action} {names:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if action == "start" {
            let text = std::fs::read_to_string(self.dir.path().join("env")).expect("env file");
            self.env = parse_env(&text);
        }
    }

    pub(crate) fn stop(&mut self, name: &str) {
        self.run("stop", &[name]);
    }

    /// Starts `name` again on the same port with the same data.
    pub(crate) fn restart(&mut self, name: &str) {
        self.run("start", &[name]);
    }

    pub(crate) fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} not set by services.sh"))
    }

    pub(crate) fn env(&self) -> &HashMap<String, String> {
        &self.env
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/services.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Variables a complete `api serve` configuration needs, with recognisable fake secrets.
pub(crate) fn app_env(services: &Services) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("OPENAI_API_KEY", FAKE_OPENAI_KEY),
        ("REPLICATE_API_KEY", "r8_fake_replicate_key_7f3a"),
        ("SUNO_API_KEY", "suno_fake_key_91bc"),
        ("JWT_SECRET", FAKE_JWT_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for key in ["DATABASE_URL", "REDIS_URL"] {
        if let Some(value) = services.env().get(key) {
            env.insert(key.to_owned(), value.clone());
        }
    }
    env
}

pub(crate) const FAKE_OPENAI_KEY: &str = "sk-fake-openai-key-5e1d2c";
pub(crate) const FAKE_JWT_SECRET: &str = "fake-jwt-secret-0123456789abcdef-XYZ";

/// The `api` binary with a clean environment plus `env`.
pub(crate) fn api_command(env: &HashMap<String, String>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    command
}

pub(crate) fn api(env: &HashMap<String, String>, args: &[&str]) -> Output {
    api_command(env).args(args).output().expect("run api")
}

pub(crate) fn stdout_json(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

/// `GET path` (plus extra header lines) over a fresh connection with `Connection: close`.
pub(crate) async fn http_get(
    port: u16,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Polls `check` until it returns true or `timeout` passes; never a fixed sleep.
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

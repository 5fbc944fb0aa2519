//! Configuration: TOML → `${VAR}` interpolation → deserialize → validate (pure) → build.
//!
//! Every problem is reported at once with its key path (unknown keys included: they are
//! collected in one pass instead of failing on the first), and the binary exits 64.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::pipeline::redact::DEFAULT_KEYS;

/// Retention periods CloudWatch Logs accepts (PutRetentionPolicy).
pub const VALID_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Largest single event CloudWatch Logs accepts (message bytes; the batch counts +26).
pub const CLOUDWATCH_MAX_EVENT_BYTES: usize = 1_048_576 - 26;

/// The whole agent configuration (`agent.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Hard ceiling, in MiB, on the bytes of accepted events held in memory before
    /// CloudWatch Logs confirms them. When reached, inputs are slowed, never dropped.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// The agent's own log level: error, warn, info, debug or trace.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Seconds to flush after SIGTERM before giving up (keep below the ECS stop timeout).
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// The admin HTTP server (`/health`, `/ready`, `/metrics`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Inputs; each is on when its table is present.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Parsing and redaction.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Outputs.
    pub sinks: SinksConfig,
    /// Request metrics from access-log events (and OTLP).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Health probes of the application.
    #[serde(default)]
    pub uptime: UptimeConfig,
    /// A write-ahead buffer on disk between the pipeline and CloudWatch Logs; off (memory
    /// only) unless the table is present.
    #[serde(default)]
    pub disk_buffer: Option<DiskBufferConfig>,
}

/// `[disk_buffer]`: accepted events are written to checksummed segment files before they
/// count as accepted, and removed once CloudWatch Logs has stored them, so they survive a
/// crash (`kill -9`), an OOM kill or an outage longer than the memory ceiling allows.
#[derive(Debug, Clone, Deserialize)]
pub struct DiskBufferConfig {
    /// Directory of the segments (created when missing; one agent per directory).
    pub path: std::path::PathBuf,
    /// Most bytes of undelivered events on disk; when reached, inputs are slowed
    /// (default 1024).
    #[serde(default = "default_disk_max_size_mib")]
    pub max_size_mib: u64,
    /// Size at which a segment file is closed and the next one started (default 8).
    #[serde(default = "default_disk_segment_size_mib")]
    pub segment_size_mib: u64,
    /// `batch` (default): fsync each group of writes before acknowledging them, which
    /// survives power loss; `never`: leave it to the kernel, which survives the agent's
    /// crash but not the host's.
    #[serde(default = "default_fsync")]
    pub fsync: String,
}

fn default_disk_max_size_mib() -> u64 {
    1024
}
fn default_disk_segment_size_mib() -> u64 {
    8
}
fn default_fsync() -> String {
    "batch".into()
}

/// Request metrics: extraction, aggregation and publication.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsConfig {
    /// On by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Aggregation period in seconds: 60, or 10/20/30 for high-resolution metrics.
    #[serde(default = "default_period_secs")]
    pub period_secs: u64,
    /// Distinct routes kept; the rest are folded into `route="other"`.
    #[serde(default = "default_max_routes")]
    pub max_routes: usize,
    /// CloudWatch namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Per-request dimensions: any of Route, Method, StatusClass.
    #[serde(default = "default_dimensions")]
    pub dimensions: Vec<String>,
    /// Fixed dimensions added to every metric (e.g. Service, Environment).
    #[serde(default)]
    pub static_dimensions: std::collections::BTreeMap<String, String>,
    /// Where metrics go: `cloudwatch` (PutMetricData), `emf` (Embedded Metric Format events
    /// in the log group's `emf-metrics` stream) or `none` (Prometheus only).
    #[serde(default = "default_publish")]
    pub publish: String,
    /// AWS region for CloudWatch; default from the environment.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override for CloudWatch; default from the environment.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Field names of the access-log event.
    #[serde(default)]
    pub access_log: AccessLogFields,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            period_secs: default_period_secs(),
            max_routes: default_max_routes(),
            namespace: default_namespace(),
            dimensions: default_dimensions(),
            static_dimensions: std::collections::BTreeMap::new(),
            publish: default_publish(),
            region: None,
            endpoint: None,
            access_log: AccessLogFields::default(),
        }
    }
}

fn default_period_secs() -> u64 {
    60
}
fn default_max_routes() -> usize {
    50
}
fn default_namespace() -> String {
    "ServiceObservability".into()
}
fn default_dimensions() -> Vec<String> {
    vec!["Route".into(), "Method".into()]
}
fn default_publish() -> String {
    "cloudwatch".into()
}

/// Field names of the API's access-log event.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessLogFields {
    /// Take request timings from access-log events (on by default; turn off when the
    /// timings come from OTLP instead, or each request would count twice).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Route template field.
    #[serde(default = "default_route_field")]
    pub route: String,
    /// HTTP method field.
    #[serde(default = "default_method_field")]
    pub method: String,
    /// Status code field.
    #[serde(default = "default_status_field")]
    pub status: String,
    /// Latency (milliseconds) field.
    #[serde(default = "default_latency_field")]
    pub latency_ms: String,
}

impl Default for AccessLogFields {
    fn default() -> Self {
        Self {
            enabled: true,
            route: default_route_field(),
            method: default_method_field(),
            status: default_status_field(),
            latency_ms: default_latency_field(),
        }
    }
}

fn default_route_field() -> String {
    "route".into()
}
fn default_method_field() -> String {
    "method".into()
}
fn default_status_field() -> String {
    "status".into()
}
fn default_latency_field() -> String {
    "latency_ms".into()
}

/// Health probes: each URL is fetched every interval; `HealthCheck` is 1 when it answers
/// 2xx in time, else 0. A `Heartbeat` of 1 is published every period while the agent runs.
#[derive(Debug, Clone, Deserialize)]
pub struct UptimeConfig {
    /// URLs to probe (plain http, e.g. http://127.0.0.1:8080/health); empty = no probes.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Seconds between probes.
    #[serde(default = "default_probe_interval")]
    pub interval_secs: u64,
    /// Timeout of one probe in ms.
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
}

impl Default for UptimeConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            interval_secs: default_probe_interval(),
            timeout_ms: default_probe_timeout(),
        }
    }
}

fn default_probe_interval() -> u64 {
    15
}
fn default_probe_timeout() -> u64 {
    3000
}

fn default_memory_limit_mib() -> u64 {
    64
}
fn default_log_level() -> String {
    "info".into()
}
fn default_shutdown_grace_secs() -> u64 {
    25
}

/// The admin HTTP server.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
    /// Listen address (default 127.0.0.1:9880).
    #[serde(default = "default_admin_address")]
    pub address: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: default_admin_address(),
        }
    }
}

fn default_admin_address() -> String {
    "127.0.0.1:9880".into()
}

/// Inputs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourcesConfig {
    /// Fluent Forward (what ECS FireLens speaks).
    pub forward: Option<ForwardConfig>,
    /// Line-delimited standard input.
    pub stdin: Option<StdinConfig>,
    /// Tailed files.
    pub file: Option<FileConfig>,
    /// `POST /v1/logs` with NDJSON.
    pub http: Option<HttpConfig>,
    /// OTLP receiver (gRPC 4317, HTTP 4318): traces and metrics become request timings,
    /// log records join the log pipeline.
    pub otlp: Option<crate::sources::otlp::OtlpConfig>,
}

/// Fluent Forward server.
#[derive(Debug, Clone, Deserialize)]
pub struct ForwardConfig {
    /// TCP listen address; empty to disable TCP (default 127.0.0.1:24224).
    #[serde(default = "default_forward_address")]
    pub address: String,
    /// Unix socket path (FireLens mounts /var/run/fluent.sock); unset to disable.
    #[serde(default)]
    pub unix_path: Option<PathBuf>,
    /// Largest reassembled partial message, in bytes; the rest is cut with a marker.
    #[serde(default = "default_max_partial_bytes")]
    pub max_partial_bytes: usize,
    /// Largest frame accepted, in bytes; a larger one closes that connection.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Most simultaneous connections; more are refused.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time the rest of a frame gets to arrive once its first bytes have (waits summed over
    /// its reads), and a peer gets to take its acks, in ms (default 30000): slow-loris
    /// connections are cut off after it.
    #[serde(default = "default_frame_timeout_ms")]
    pub frame_timeout_ms: u64,
}

fn default_frame_timeout_ms() -> u64 {
    30_000
}
fn default_forward_address() -> String {
    "127.0.0.1:24224".into()
}
fn default_max_partial_bytes() -> usize {
    1024 * 1024
}
fn default_max_frame_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_connections() -> usize {
    256
}

/// Standard input.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StdinConfig {}

/// Where a newly discovered file starts being read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// From its first byte.
    Beginning,
    /// From its current end (only new lines).
    #[default]
    End,
}

/// File tail.
#[derive(Debug, Clone, Deserialize)]
pub struct FileConfig {
    /// Glob patterns of files to follow.
    pub include: Vec<String>,
    /// Where read offsets are remembered across restarts.
    pub checkpoint_path: PathBuf,
    /// Where files seen for the first time start (beginning or end; default end).
    #[serde(default)]
    pub start_at: StartAt,
    /// How often to look for new data, rotations and new files, in ms.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    250
}

/// HTTP NDJSON input.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Listen address (default 127.0.0.1:8687).
    #[serde(default = "default_http_address")]
    pub address: String,
    /// Largest request body (after decompression), in bytes; larger gets 413.
    #[serde(default = "default_http_max_body")]
    pub max_body_bytes: usize,
    /// Most simultaneous connections; more get a 503 and are closed (default 256).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time from a request's first byte until its headers have arrived, and again until
    /// its body has, in ms (default 10000): slow senders are cut off (408).
    #[serde(default = "default_http_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Time a keep-alive connection may stay open with no request, in ms (default 120000,
    /// above the 90 s common clients keep idle connections).
    #[serde(default = "default_http_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

fn default_http_request_timeout_ms() -> u64 {
    10_000
}
fn default_http_idle_timeout_ms() -> u64 {
    120_000
}

fn default_http_address() -> String {
    "127.0.0.1:8687".into()
}
fn default_http_max_body() -> usize {
    4 * 1024 * 1024
}

/// Parsing and redaction.
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineConfig {
    /// JSON key holding the event time (RFC 3339 or epoch ms).
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// JSON key holding the level.
    #[serde(default = "default_level_field")]
    pub level_field: String,
    /// Secret removal.
    #[serde(default)]
    pub redaction: RedactionConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            timestamp_field: default_timestamp_field(),
            level_field: default_level_field(),
            redaction: RedactionConfig::default(),
        }
    }
}

fn default_timestamp_field() -> String {
    "timestamp".into()
}
fn default_level_field() -> String {
    "level".into()
}

/// Secret removal.
#[derive(Debug, Clone, Deserialize)]
pub struct RedactionConfig {
    /// On by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Key words whose values are replaced (case-insensitive substring, `-`/`_` ignored).
    #[serde(default = "default_redaction_keys")]
    pub keys: Vec<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: default_redaction_keys(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_redaction_keys() -> Vec<String> {
    DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect()
}

/// Outputs.
#[derive(Debug, Clone, Deserialize)]
pub struct SinksConfig {
    /// CloudWatch Logs.
    pub cloudwatch_logs: CloudWatchLogsConfig,
    /// Error events to Sentry; off unless the table is present.
    #[serde(default)]
    pub sentry: Option<crate::sinks::sentry::SentryConfig>,
}

/// The CloudWatch Logs sink.
#[derive(Debug, Clone, Deserialize)]
pub struct CloudWatchLogsConfig {
    /// Log group; created when missing.
    pub log_group: String,
    /// Stream name template over `{container}`, `{task_id}`, `{cluster}`, `{family}`,
    /// `{az}`, `{hostname}` (default `{container}/{task_id}`).
    #[serde(default = "default_log_stream")]
    pub log_stream: String,
    /// Retention applied to the group at start (default 30; one of CloudWatch's values).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// AWS region; default from the environment.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (tests, VPC endpoints); default from the environment.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A partial batch is sent after this many ms.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// PutLogEvents calls in flight at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Longest event in bytes; longer ones are truncated with a marker (default 256 KiB,
    /// accepted in every region; at most 1 MiB − 26).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Container name used in the stream name when the input does not say.
    #[serde(default = "default_container")]
    pub default_container: String,
    /// Timeout of one PutLogEvents call, in ms.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Longest wait between retries, in ms.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_log_stream() -> String {
    "{container}/{task_id}".into()
}
fn default_retention_days() -> u32 {
    30
}
fn default_batch_timeout_ms() -> u64 {
    1000
}
fn default_max_in_flight() -> usize {
    4
}
fn default_max_event_bytes() -> usize {
    256 * 1024
}
fn default_container() -> String {
    "app".into()
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_max_backoff_ms() -> u64 {
    10_000
}

/// Every problem found, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

/// Reads the environment; the process environment in production, a map in tests.
pub trait Env {
    /// The value of `key`, if set.
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. Unset variables without
/// a default are errors (named with their line).
pub fn interpolate(text: &str, env: &dyn Env) -> Result<String, Vec<String>> {
    interpolate_noting(text, env, &mut Vec::new())
}

/// [`interpolate`], also collecting the values read from the environment into `values`
/// (so errors about the result can mask them: they may be secrets such as a DSN).
fn interpolate_noting(
    text: &str,
    env: &dyn Env,
    values: &mut Vec<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (number, line) in text.split_inclusive('\n').enumerate() {
        // Comments are left alone: the example documents `${VAR}` in them.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push(format!("line {}: unterminated ${{", number + 1));
                    out.push_str(&rest[at..]);
                    rest = "";
                    continue;
                };
                let expr = &body[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (expr, None),
                };
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                match (valid, env.var(name).filter(|v| !v.is_empty()), default) {
                    (false, _, _) => errors.push(format!(
                        "line {}: invalid variable name in ${{{expr}}}",
                        number + 1
                    )),
                    (true, Some(value), _) => {
                        out.push_str(&value);
                        values.push(value);
                    }
                    (true, None, Some(default)) => out.push_str(default),
                    (true, None, None) => errors.push(format!(
                        "line {}: environment variable {name} is not set",
                        number + 1
                    )),
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

impl Config {
    /// Parses and validates a configuration text.
    pub fn parse(text: &str, env: &dyn Env) -> Result<Self, ConfigErrors> {
        let mut values = Vec::new();
        let text = interpolate_noting(text, env, &mut values).map_err(ConfigErrors)?;
        Self::parse_interpolated(&text).map_err(|ConfigErrors(errors)| {
            // TOML errors quote the offending line and serde errors the offending value:
            // never echo what came from the environment.
            let mask = |mut error: String| {
                for value in values.iter().filter(|v| v.len() >= 4) {
                    error = error.replace(value.as_str(), "[value from the environment]");
                }
                error
            };
            ConfigErrors(errors.into_iter().map(mask).collect())
        })
    }

    fn parse_interpolated(text: &str) -> Result<Self, ConfigErrors> {
        let deserializer =
            toml::de::Deserializer::parse(text).map_err(|e| ConfigErrors(vec![one_line(&e)]))?;
        let mut unknown = BTreeSet::new();
        let parsed: Result<Config, _> = serde_ignored::deserialize(deserializer, |path| {
            // Option fields show up as a `?` segment; users never write it.
            unknown.insert(
                path.to_string()
                    .replace(".?.", ".")
                    .trim_end_matches(".?")
                    .to_owned(),
            );
        });
        let mut errors: Vec<String> = unknown
            .into_iter()
            .map(|path| format!("{path}: unknown key"))
            .collect();
        match parsed {
            Ok(config) => {
                errors.extend(config.validate());
                if errors.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigErrors(errors))
                }
            }
            Err(error) => {
                errors.push(one_line(&error));
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Checks every rule that types cannot express. Pure.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                errors.push(message);
            }
        };
        check(
            (4..=65_536).contains(&self.memory_limit_mib),
            "memory_limit_mib: must be between 4 and 65536".into(),
        );
        check(
            matches!(
                self.log_level.as_str(),
                "error" | "warn" | "info" | "debug" | "trace"
            ),
            "log_level: must be one of error, warn, info, debug, trace".into(),
        );
        check(
            (1..=115).contains(&self.shutdown_grace_secs),
            "shutdown_grace_secs: must be 1..=115 (ECS allows at most 120 s)".into(),
        );
        check(
            self.admin.address.parse::<SocketAddr>().is_ok(),
            "admin.address: must be IP:port".into(),
        );
        let s = &self.sources;
        check(
            s.forward.is_some()
                || s.stdin.is_some()
                || s.file.is_some()
                || s.http.is_some()
                || s.otlp.is_some(),
            "sources: at least one of forward, stdin, file, http, otlp must be configured".into(),
        );
        if let Some(http) = &s.http {
            check(
                (1..=65_536).contains(&http.max_connections),
                "sources.http.max_connections: must be 1..=65536".into(),
            );
            check(
                (100..=600_000).contains(&http.request_timeout_ms),
                "sources.http.request_timeout_ms: must be 100..=600000".into(),
            );
            check(
                (100..=3_600_000).contains(&http.idle_timeout_ms),
                "sources.http.idle_timeout_ms: must be 100..=3600000".into(),
            );
        }
        if let Some(forward) = &s.forward {
            check(
                (100..=600_000).contains(&forward.frame_timeout_ms),
                "sources.forward.frame_timeout_ms: must be 100..=600000".into(),
            );
            check(
                forward.address.is_empty() || forward.address.parse::<SocketAddr>().is_ok(),
                "sources.forward.address: must be IP:port or empty".into(),
            );
            check(
                !forward.address.is_empty() || forward.unix_path.is_some(),
                "sources.forward: needs an address or a unix_path".into(),
            );
            check(
                forward.max_partial_bytes >= 1024,
                "sources.forward.max_partial_bytes: must be at least 1024".into(),
            );
            check(
                forward.max_frame_bytes >= 64 * 1024,
                "sources.forward.max_frame_bytes: must be at least 65536".into(),
            );
            check(
                forward.max_connections >= 1,
                "sources.forward.max_connections: must be at least 1".into(),
            );
        }
        if let Some(file) = &s.file {
            check(
                !file.include.is_empty(),
                "sources.file.include: must list at least one glob".into(),
            );
            for (i, pattern) in file.include.iter().enumerate() {
                check(
                    glob::Pattern::new(pattern).is_ok(),
                    format!("sources.file.include[{i}]: invalid glob"),
                );
            }
            check(
                (10..=60_000).contains(&file.poll_interval_ms),
                "sources.file.poll_interval_ms: must be 10..=60000".into(),
            );
        }
        let memory = self.memory_limit_mib.saturating_mul(1024 * 1024) as usize;
        if let Some(http) = &s.http {
            check(
                http.address.parse::<SocketAddr>().is_ok(),
                "sources.http.address: must be IP:port".into(),
            );
            check(
                http.max_body_bytes >= 1024 && http.max_body_bytes <= memory / 4,
                "sources.http.max_body_bytes: must be at least 1024 and at most a quarter of memory_limit_mib".into(),
            );
        }
        check(
            !self.pipeline.timestamp_field.is_empty(),
            "pipeline.timestamp_field: must not be empty".into(),
        );
        check(
            !self.pipeline.level_field.is_empty(),
            "pipeline.level_field: must not be empty".into(),
        );
        let cw = &self.sinks.cloudwatch_logs;
        check(
            !cw.log_group.is_empty()
                && cw.log_group.len() <= 512
                && cw
                    .log_group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-/.#".contains(&b)),
            "sinks.cloudwatch_logs.log_group: 1-512 characters of [A-Za-z0-9_-/.#]".into(),
        );
        check(
            !cw.log_stream.is_empty(),
            "sinks.cloudwatch_logs.log_stream: must not be empty".into(),
        );
        check(
            VALID_RETENTION_DAYS.contains(&cw.retention_days),
            format!(
                "sinks.cloudwatch_logs.retention_days: must be one of {VALID_RETENTION_DAYS:?}"
            ),
        );
        check(
            (10..=60_000).contains(&cw.batch_timeout_ms),
            "sinks.cloudwatch_logs.batch_timeout_ms: must be 10..=60000".into(),
        );
        check(
            (1..=64).contains(&cw.max_in_flight),
            "sinks.cloudwatch_logs.max_in_flight: must be 1..=64".into(),
        );
        check(
            (1024..=CLOUDWATCH_MAX_EVENT_BYTES).contains(&cw.max_event_bytes),
            format!(
                "sinks.cloudwatch_logs.max_event_bytes: must be 1024..={CLOUDWATCH_MAX_EVENT_BYTES}"
            ),
        );
        check(
            cw.max_event_bytes + 64 <= memory / 4,
            "sinks.cloudwatch_logs.max_event_bytes: must fit in a quarter of memory_limit_mib"
                .into(),
        );
        check(
            (100..=120_000).contains(&cw.request_timeout_ms),
            "sinks.cloudwatch_logs.request_timeout_ms: must be 100..=120000".into(),
        );
        check(
            (10..=300_000).contains(&cw.max_backoff_ms),
            "sinks.cloudwatch_logs.max_backoff_ms: must be 10..=300000".into(),
        );
        let m = &self.metrics;
        check(
            matches!(m.period_secs, 10 | 20 | 30)
                || (m.period_secs >= 60
                    && m.period_secs.is_multiple_of(60)
                    && m.period_secs <= 3600),
            "metrics.period_secs: must be 10, 20, 30 or a multiple of 60 up to 3600".into(),
        );
        check(
            (1..=1000).contains(&m.max_routes),
            "metrics.max_routes: must be 1..=1000".into(),
        );
        check(
            !m.namespace.is_empty()
                && m.namespace.len() <= 255
                && !m.namespace.starts_with("AWS/")
                && m.namespace.is_ascii(),
            "metrics.namespace: 1-255 ASCII characters, not starting with AWS/".into(),
        );
        for (i, dimension) in m.dimensions.iter().enumerate() {
            check(
                matches!(dimension.as_str(), "Route" | "Method" | "StatusClass"),
                format!("metrics.dimensions[{i}]: must be Route, Method or StatusClass"),
            );
        }
        check(
            m.dimensions.len() + m.static_dimensions.len() <= 9,
            "metrics: at most 9 dimensions in all (EMF's limit, kept for both outputs)".into(),
        );
        for (name, value) in &m.static_dimensions {
            check(
                !value.is_empty()
                    && value.len() <= 1024
                    && value.is_ascii()
                    && !name.is_empty()
                    && name.len() <= 255,
                format!(
                    "metrics.static_dimensions.{name}: name and value must be 1-255 / 1-1024 ASCII characters"
                ),
            );
        }
        check(
            matches!(m.publish.as_str(), "cloudwatch" | "emf" | "none"),
            "metrics.publish: must be cloudwatch, emf or none".into(),
        );
        let u = &self.uptime;
        for (i, url) in u.urls.iter().enumerate() {
            check(
                url.starts_with("http://") && url.len() > 7,
                format!("uptime.urls[{i}]: must be an http:// URL"),
            );
        }
        check(
            (1..=3600).contains(&u.interval_secs),
            "uptime.interval_secs: must be 1..=3600".into(),
        );
        check(
            (50..=60_000).contains(&u.timeout_ms) && u.timeout_ms < u.interval_secs * 1000,
            "uptime.timeout_ms: must be 50..=60000 and below the interval".into(),
        );
        if let Some(disk) = &self.disk_buffer {
            check(
                !disk.path.as_os_str().is_empty(),
                "disk_buffer.path: must not be empty".into(),
            );
            check(
                (1..=1024).contains(&disk.segment_size_mib),
                "disk_buffer.segment_size_mib: must be 1..=1024".into(),
            );
            check(
                disk.max_size_mib >= 2 * disk.segment_size_mib && disk.max_size_mib <= 1 << 20,
                "disk_buffer.max_size_mib: must be at least twice segment_size_mib (and at most 1048576)".into(),
            );
            check(
                matches!(disk.fsync.as_str(), "batch" | "never"),
                "disk_buffer.fsync: must be batch or never".into(),
            );
        }
        if let Some(otlp) = &self.sources.otlp {
            errors.extend(otlp.validate("sources.otlp"));
        }
        if let Some(sentry) = &self.sinks.sentry {
            errors.extend(sentry.validate("sinks.sentry"));
        }
        if let Some(otlp) = &self.sources.otlp
            && otlp.request_timings != "none"
            && self.metrics.enabled
            && self.metrics.access_log.enabled
        {
            errors.push(format!(
                    "sources.otlp.request_timings: \"{}\" and metrics.access_log would count each request twice; \
                     set one of them off (request_timings = \"none\" or metrics.access_log.enabled = false)",
                    otlp.request_timings
                ));
        }
        errors
    }

    /// The memory ceiling in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        (self.memory_limit_mib * 1024 * 1024) as usize
    }
}

fn one_line(error: &dyn fmt::Display) -> String {
    error
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const MINIMAL: &str = r#"
[sources.stdin]
[sinks.cloudwatch_logs]
log_group = "/ecs/api"
"#;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = Config::parse(MINIMAL, &env(&[])).unwrap();
        let cw = &config.sinks.cloudwatch_logs;
        assert_eq!(cw.retention_days, 30);
        assert_eq!(cw.log_stream, "{container}/{task_id}");
        assert_eq!(cw.batch_timeout_ms, 1000);
        assert_eq!(config.admin.address, "127.0.0.1:9880");
        assert_eq!(config.shutdown_grace_secs, 25);
        assert!(config.pipeline.redaction.enabled);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../agent.example.toml");
        let config = Config::parse(text, &env(&[("AGENT_LOG_GROUP", "/ecs/api")])).unwrap();
        assert_eq!(config.sinks.cloudwatch_logs.log_group, "/ecs/api");
    }

    #[test]
    fn the_example_with_every_commented_table_enabled_is_valid() {
        // Every `# [table]` and `# key = value` line uncommented: a key documented there
        // but misspelt, misplaced or mistyped would fail here. Two documented pairs are
        // alternatives and cannot be on together: the Sentry DSN from Secrets Manager, and
        // OTLP timings alongside access-log timings.
        let text: String = include_str!("../agent.example.toml")
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if !rest.contains("dsn_secret_id")
                        && (rest.starts_with('[')
                            || rest.split_once(" = ").is_some_and(|(k, _)| {
                                k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            })) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect::<String>()
            .replace(
                "request_timings = \"metrics\"",
                "request_timings = \"none\"",
            );
        assert!(text.contains("\n[disk_buffer]\n") && text.contains("\n[sources.http]\n"));
        let env = env(&[
            ("AGENT_LOG_GROUP", "/ecs/api"),
            ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/42"),
            ("APP_ENV", "prod"),
            ("APP_VERSION", "1.2.3"),
        ]);
        let config = Config::parse(&text, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.disk_buffer.is_some() && config.sinks.sentry.is_some());
        assert!(config.sources.http.is_some() && config.sources.otlp.is_some());
    }

    #[test]
    fn values_from_the_environment_never_appear_in_errors() {
        let secret = "https://f00dfeedcafe4242@o1.ingest.sentry.io/42";
        let vars = env(&[("SENTRY_DSN", secret), ("MEM", "not-a-number")]);
        // Unquoted: a TOML syntax error that quotes the line; and a type error on a value.
        for text in [
            "[sources.stdin]\n[sinks.cloudwatch_logs]\nlog_group = \"g\"\n[sinks.sentry]\ndsn = ${SENTRY_DSN}\n",
            "memory_limit_mib = \"${SENTRY_DSN}\"\n[sources.stdin]\n[sinks.cloudwatch_logs]\nlog_group = \"g\"\n",
        ] {
            let errors = Config::parse(text, &vars).unwrap_err().to_string();
            assert!(!errors.contains("f00dfeedcafe4242"), "{errors}");
            assert!(
                errors.contains("[value from the environment]") || errors.contains("line"),
                "{errors}"
            );
        }
    }

    #[test]
    fn interpolation_with_defaults_and_errors() {
        let vars = env(&[("GROUP", "/ecs/x"), ("EMPTY", "")]);
        assert_eq!(
            interpolate("a=${GROUP} b=${NOPE:-d} c=$$ d=${EMPTY:-e}", &vars).unwrap(),
            "a=/ecs/x b=d c=$ d=e"
        );
        assert_eq!(
            interpolate("# ${NOT_SET}\n", &vars).unwrap(),
            "# ${NOT_SET}\n"
        );
        let errors = interpolate("x\ny=${MISSING}\nz=${bad name}", &vars).unwrap_err();
        assert_eq!(
            errors,
            [
                "line 2: environment variable MISSING is not set",
                "line 3: invalid variable name in ${bad name}"
            ]
        );
    }

    #[test]
    fn validate_rejects_every_unknown_key_at_once() {
        let text = format!(
            "bogus = 1\n{MINIMAL}\nretention = 30\n[admin]\naddres = \"x\"\n[sinks.cloudwatch_logs.extra]\nk = 1\n"
        );
        let errors = Config::parse(&text, &env(&[])).unwrap_err().0;
        assert_eq!(
            errors,
            [
                "admin.addres: unknown key",
                "bogus: unknown key",
                "sinks.cloudwatch_logs.extra: unknown key",
                "sinks.cloudwatch_logs.retention: unknown key"
            ]
        );
    }

    #[test]
    fn validate_rejects_bad_values_with_their_paths() {
        let text = r#"
memory_limit_mib = 1
log_level = "loud"
[admin]
address = "nowhere"
[sources.http]
address = "127.0.0.1:1"
max_body_bytes = 10
[sinks.cloudwatch_logs]
log_group = "bad group!"
retention_days = 31
max_in_flight = 0
"#;
        let errors = Config::parse(text, &env(&[])).unwrap_err().0;
        let paths: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "memory_limit_mib",
                "log_level",
                "admin.address",
                "sources.http.max_body_bytes",
                "sinks.cloudwatch_logs.log_group",
                "sinks.cloudwatch_logs.retention_days",
                "sinks.cloudwatch_logs.max_in_flight",
                "sinks.cloudwatch_logs.max_event_bytes",
            ]
        );
    }

    #[test]
    fn validate_rejects_counting_requests_twice() {
        let both = format!("{MINIMAL}\n[sources.otlp]\n");
        let errors = Config::parse(&both, &env(&[])).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("sources.otlp.request_timings:"),
            "{errors:?}"
        );
        for fix in [
            "[sources.otlp]\nrequest_timings = \"none\"\n",
            "[sources.otlp]\n[metrics.access_log]\nenabled = false\n",
        ] {
            assert!(
                Config::parse(&format!("{MINIMAL}\n{fix}"), &env(&[])).is_ok(),
                "{fix}"
            );
        }
    }

    #[test]
    fn validate_rejects_no_sources_and_wrong_types() {
        let errors = Config::parse("[sinks.cloudwatch_logs]\nlog_group = \"g\"\n", &env(&[]))
            .unwrap_err()
            .0;
        assert_eq!(
            errors,
            ["sources: at least one of forward, stdin, file, http, otlp must be configured"]
        );
        let errors = Config::parse(
            &format!("{MINIMAL}\nmemory_limit_mib = \"lots\"\n"),
            &env(&[]),
        )
        .unwrap_err()
        .0;
        assert!(errors[0].contains("memory_limit_mib"), "{errors:?}");
        assert!(Config::parse("[[[", &env(&[])).is_err());
    }
}

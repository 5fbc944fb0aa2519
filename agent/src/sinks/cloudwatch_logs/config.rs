//! `[sinks.cloudwatch_logs]`: group, stream template, batching and timeouts, and the
//! validation that holds them to CloudWatch Logs' limits.

use serde::Deserialize;

use crate::aws::AwsKeys;

/// Retention periods CloudWatch Logs accepts (PutRetentionPolicy).
pub const VALID_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Largest single event CloudWatch Logs accepts (message bytes; the batch counts +26).
pub const CLOUDWATCH_MAX_EVENT_BYTES: usize = 1_048_576 - 26;

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
    /// IAM role this sink's calls assume (cross-account delivery), on top of the default
    /// credentials (the task role); unset: the default credentials sign.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `sts:ExternalId` the role's trust policy asks for (only with `role_arn`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Session name of the assumed role (only with `role_arn`; default `agent`).
    #[serde(default)]
    pub session_name: Option<String>,
    /// FIPS endpoints (`logs-fips.<region>.amazonaws.com`); default from
    /// `AWS_USE_FIPS_ENDPOINT`. Not with `endpoint`.
    #[serde(default)]
    pub use_fips: Option<bool>,
    /// Dual-stack (IPv4 + IPv6) endpoints (`logs.<region>.api.aws`); default from
    /// `AWS_USE_DUALSTACK_ENDPOINT`. Not with `endpoint`.
    #[serde(default)]
    pub use_dualstack: Option<bool>,
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

impl CloudWatchLogsConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message;
    /// an event must fit in a quarter of the memory ceiling (`memory_bytes`).
    pub fn validate(&self, path: &str, memory_bytes: usize) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                errors.push(format!("{path}{message}"));
            }
        };
        check(
            !self.log_group.is_empty()
                && self.log_group.len() <= 512
                && self
                    .log_group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-/.#".contains(&b)),
            ".log_group: 1-512 characters of [A-Za-z0-9_-/.#]".into(),
        );
        check(
            !self.log_stream.is_empty(),
            ".log_stream: must not be empty".into(),
        );
        check(
            VALID_RETENTION_DAYS.contains(&self.retention_days),
            format!(".retention_days: must be one of {VALID_RETENTION_DAYS:?}"),
        );
        check(
            (10..=60_000).contains(&self.batch_timeout_ms),
            ".batch_timeout_ms: must be 10..=60000".into(),
        );
        check(
            (1..=64).contains(&self.max_in_flight),
            ".max_in_flight: must be 1..=64".into(),
        );
        check(
            (1024..=CLOUDWATCH_MAX_EVENT_BYTES).contains(&self.max_event_bytes),
            format!(".max_event_bytes: must be 1024..={CLOUDWATCH_MAX_EVENT_BYTES}"),
        );
        check(
            self.max_event_bytes + 64 <= memory_bytes / 4,
            ".max_event_bytes: must fit in a quarter of memory_limit_mib".into(),
        );
        check(
            (100..=120_000).contains(&self.request_timeout_ms),
            ".request_timeout_ms: must be 100..=120000".into(),
        );
        check(
            (10..=300_000).contains(&self.max_backoff_ms),
            ".max_backoff_ms: must be 10..=300000".into(),
        );
        errors.extend(self.aws().validate(path));
        errors
    }

    /// Where this sink's client calls and as whom.
    pub fn aws(&self) -> AwsKeys<'_> {
        AwsKeys {
            region: self.region.as_deref(),
            endpoint: self.endpoint.as_deref(),
            use_fips: self.use_fips,
            use_dualstack: self.use_dualstack,
            role_arn: self.role_arn.as_deref(),
            external_id: self.external_id.as_deref(),
            session_name: self.session_name.as_deref(),
        }
    }
}

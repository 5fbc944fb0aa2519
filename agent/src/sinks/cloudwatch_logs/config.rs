//! `[sinks.cloudwatch_logs]`: group, stream template, batching and timeouts, and the
//! validation that holds them to CloudWatch Logs' limits.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::template::{NameKind, Template};
use crate::aws::AwsKeys;
use crate::choice::choice;

choice! {
    /// Whether the agent applies `retention_days` to a group it did not create.
    #[derive(Default)]
    pub enum RetentionPolicy {
        /// At every start and on every group first seen: the agent owns the retention.
        #[default]
        Enforce = "enforce",
        /// Only on groups the agent creates: a retention Terraform set is left alone.
        CreateOnly = "create-only",
    }
}

choice! {
    /// CloudWatch Logs' class of a created group.
    pub enum LogGroupClass {
        /// All features.
        Standard = "STANDARD",
        /// Cheaper ingestion, fewer features (no metric filters, no Live Tail).
        InfrequentAccess = "INFREQUENT_ACCESS",
    }
}

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
    /// Log group name template (see `template.rs`: `{family}`, `{field.service|shared}`,
    /// ...); created when missing.
    pub log_group: String,
    /// Stream name template over `{container}`, `{task_id}`, `{cluster}`, `{family}`,
    /// `{az}`, `{hostname}` and `{field.PATH|DEFAULT}` (default `{container}/{task_id}`).
    #[serde(default = "default_log_stream")]
    pub log_stream: String,
    /// Retention of the groups (default 30; one of CloudWatch's values).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// `enforce` (default) or `create-only`.
    #[serde(default)]
    pub retention_policy: RetentionPolicy,
    /// KMS key ARN that encrypts the groups the agent creates.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Tags of the groups the agent creates.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Class of the groups the agent creates (CloudWatch's default, STANDARD, when unset).
    #[serde(default)]
    pub log_group_class: Option<LogGroupClass>,
    /// Distinct group names a templated `log_group` may produce; events that would make
    /// more go to the fallback group (every field at its default).
    #[serde(default = "default_max_log_groups")]
    pub max_log_groups: usize,
    /// Distinct (group, stream) names, likewise.
    #[serde(default = "default_max_log_streams")]
    pub max_log_streams: usize,
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
fn default_max_log_groups() -> usize {
    16
}
fn default_max_log_streams() -> usize {
    512
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
        match Template::parse(&self.log_group, NameKind::Group) {
            Ok(group) => check(
                self.log_group.len() <= 512
                    && group
                        .text_parts()
                        .all(|text| text.chars().all(|c| NameKind::Group.allows(c))),
                ".log_group: 1-512 characters of [A-Za-z0-9_-/.#] around its placeholders".into(),
            ),
            Err(error) => check(false, format!(".log_group: {error}")),
        }
        match Template::parse(&self.log_stream, NameKind::Stream) {
            Ok(stream) => check(
                stream
                    .text_parts()
                    .all(|text| text.chars().all(|c| NameKind::Stream.allows(c))),
                ".log_stream: `:` and `*` are not allowed in stream names".into(),
            ),
            Err(error) => check(false, format!(".log_stream: {error}")),
        }
        check(
            VALID_RETENTION_DAYS.contains(&self.retention_days),
            format!(".retention_days: must be one of {VALID_RETENTION_DAYS:?}"),
        );
        check(
            self.retention_policy.is_valid(),
            ".retention_policy: must be \"enforce\" or \"create-only\"".into(),
        );
        check(
            self.log_group_class.is_none_or(LogGroupClass::is_valid),
            ".log_group_class: must be \"STANDARD\" or \"INFREQUENT_ACCESS\"".into(),
        );
        check(
            self.kms_key_id.as_deref().is_none_or(is_kms_key_arn),
            ".kms_key_id: must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)".into(),
        );
        check(self.tags.len() <= 50, ".tags: at most 50 tags".into());
        for (key, value) in &self.tags {
            check(
                valid_tag_text(key, 1, 128) && !key.starts_with("aws:"),
                format!(
                    ".tags: key {key:?} must be 1-128 letters, digits, spaces or _.:/=+-@ and not start with aws:"
                ),
            );
            check(
                valid_tag_text(value, 0, 256),
                format!(".tags.{key}: the value must be 0-256 letters, digits, spaces or _.:/=+-@"),
            );
        }
        check(
            (1..=1000).contains(&self.max_log_groups),
            ".max_log_groups: must be 1..=1000".into(),
        );
        check(
            (1..=100_000).contains(&self.max_log_streams),
            ".max_log_streams: must be 1..=100000".into(),
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

/// `arn:<partition>:kms:<region>:<account>:key/<id>` (or `:alias/<name>`, which CreateLogGroup
/// refuses: only key ARNs pass).
fn is_kms_key_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "kms", region, account, resource]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("key/").is_some_and(|id| !id.is_empty())
    )
}

/// CloudWatch Logs' tag rule: `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, `min..=max` characters.
fn valid_tag_text(text: &str, min: usize, max: usize) -> bool {
    let chars = text.chars().count();
    (min..=max).contains(&chars)
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

//! `[sinks.sentry]`: the keys, their defaults, the pure validation, and the DSN (whose key is
//! never printed: not by `Debug`, not in an error).

use std::fmt;

use serde::Deserialize;

use crate::pipeline::event::Level;

/// `[sinks.sentry]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SentryConfig {
    /// The DSN (`https://<key>@<host>/<project>`); usually `${SENTRY_DSN}`. Set this or
    /// `dsn_secret_id`, not both.
    #[serde(default)]
    pub dsn: Option<Redacted>,
    /// Secrets Manager secret (id or ARN) holding the DSN: either the DSN itself or a JSON
    /// object with the DSN under `dsn_secret_key` (the API's `APP_SECRETS_ID` secret fits).
    #[serde(default)]
    pub dsn_secret_id: Option<String>,
    /// Key of the DSN when the secret is a JSON object (default `SENTRY_DSN`).
    #[serde(default = "default_dsn_secret_key")]
    pub dsn_secret_key: String,
    /// AWS region of Secrets Manager; default from the environment.
    #[serde(default)]
    pub secrets_manager_region: Option<String>,
    /// Endpoint override of Secrets Manager (tests, VPC endpoints); default from the
    /// environment.
    #[serde(default)]
    pub secrets_manager_endpoint: Option<String>,
    /// Sentry's `environment` (e.g. `${APP_ENV}`); unset leaves it to Sentry.
    #[serde(default)]
    pub environment: Option<String>,
    /// Sentry's `release`: the application's version (e.g. `api@${APP_VERSION}`).
    #[serde(default)]
    pub release: Option<String>,
    /// The `service` tag when the line carries no `service` field.
    #[serde(default)]
    pub service: Option<String>,
    /// Lowest level that becomes a Sentry event: `warn`, `error` (default) or `fatal`.
    #[serde(default = "default_min_level")]
    pub min_level: MinLevel,
    /// Fields whose values group errors into one Sentry issue and one de-duplication
    /// window (absent fields are skipped; when none is present, the logger and message).
    #[serde(default = "default_fingerprint_fields")]
    pub fingerprint_fields: Vec<String>,
    /// Seconds during which repeats of a fingerprint are counted, not sent; one follow-up
    /// event then carries the count (`extra.suppressed_count`). 0 sends every error.
    #[serde(default = "default_dedup_window_secs")]
    pub dedup_window_secs: u64,
    /// Fingerprints remembered for de-duplication (default 1000, at most 10000); the oldest
    /// window closes early beyond. Each open window keeps one sample line of at most 8 KiB,
    /// so this bounds that memory (8 MiB at the default, in the worst case).
    #[serde(default = "default_max_fingerprints")]
    pub max_fingerprints: usize,
    /// Breadcrumbs per event: the last log events of the same request before the error.
    /// 0 turns breadcrumbs off.
    #[serde(default = "default_breadcrumbs")]
    pub breadcrumbs: usize,
    /// Longest breadcrumb kept, in bytes (the line is clipped).
    #[serde(default = "default_breadcrumb_max_bytes")]
    pub breadcrumb_max_bytes: usize,
    /// Request ids whose breadcrumbs are kept; the oldest request is forgotten beyond.
    #[serde(default = "default_breadcrumb_max_requests")]
    pub breadcrumb_max_requests: usize,
    /// Ceiling on the bytes of all kept breadcrumbs (the oldest requests go first).
    #[serde(default = "default_breadcrumb_max_total_bytes")]
    pub breadcrumb_max_total_bytes: usize,
    /// Field holding the request id (breadcrumbs and the `request_id` tag).
    #[serde(default = "default_request_id_field")]
    pub request_id_field: String,
    /// Fields holding the event's message, first present wins (else the whole line).
    #[serde(default = "default_message_fields")]
    pub message_fields: Vec<String>,
    /// Fields holding the logger name (else the container name).
    #[serde(default = "default_logger_fields")]
    pub logger_fields: Vec<String>,
    /// Fields holding the error kind: the exception's `type`.
    #[serde(default = "default_error_kind_fields")]
    pub error_kind_fields: Vec<String>,
    /// Fields holding the error message: the exception's `value`.
    #[serde(default = "default_error_message_fields")]
    pub error_message_fields: Vec<String>,
    /// Fields holding a stack trace (text, one frame a line): the exception's frames.
    #[serde(default = "default_stack_fields")]
    pub stack_fields: Vec<String>,
    /// Fields copied into tags (besides `cluster`, from the ECS task metadata).
    #[serde(default = "default_tag_fields")]
    pub tag_fields: Vec<String>,
    /// Error events waiting to be sent; when full, the oldest is dropped and counted.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Ceiling on the bytes of the waiting events (lines and breadcrumbs); beyond it the
    /// oldest is dropped and counted.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// Timeout of one request to Sentry (connect included), in ms.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Retries after a network error or a 5xx, with backoff (rate limits are never retried).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Longest wait between retries, in ms.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// At shutdown, time allowed to send what is queued, in ms.
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
}

/// A string that `Debug` never shows (the DSN carries the project's key).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Redacted(String);

impl Redacted {
    /// Wraps a sensitive value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

fn default_dsn_secret_key() -> String {
    "SENTRY_DSN".into()
}
fn default_min_level() -> MinLevel {
    MinLevel::Error
}

crate::choice::choice! {
    /// The lowest level that becomes a Sentry event.
    pub enum MinLevel {
        /// warn and above.
        Warn = "warn",
        /// error and fatal.
        Error = "error",
        /// fatal only.
        Fatal = "fatal",
    }
}
fn default_fingerprint_fields() -> Vec<String> {
    strings(&["error_kind", "exception.type", "route", "http.route"])
}
fn default_dedup_window_secs() -> u64 {
    60
}
fn default_max_fingerprints() -> usize {
    1000
}
fn default_breadcrumbs() -> usize {
    20
}
fn default_breadcrumb_max_bytes() -> usize {
    1024
}
fn default_breadcrumb_max_requests() -> usize {
    1000
}
fn default_breadcrumb_max_total_bytes() -> usize {
    2 * 1024 * 1024
}
fn default_request_id_field() -> String {
    "request_id".into()
}
fn default_message_fields() -> Vec<String> {
    strings(&["message", "msg"])
}
fn default_logger_fields() -> Vec<String> {
    strings(&["logger", "target"])
}
fn default_error_kind_fields() -> Vec<String> {
    strings(&["error_kind", "exception.type", "error.kind", "error_type"])
}
fn default_error_message_fields() -> Vec<String> {
    strings(&[
        "error",
        "exception.message",
        "error.message",
        "error_message",
    ])
}
fn default_stack_fields() -> Vec<String> {
    strings(&[
        "stack",
        "stacktrace",
        "backtrace",
        "exception.stacktrace",
        "error.stack",
    ])
}
fn default_tag_fields() -> Vec<String> {
    strings(&[
        "route",
        "method",
        "status",
        "request_id",
        "service",
        "http.route",
    ])
}
fn default_queue_capacity() -> usize {
    100
}
fn default_queue_max_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_request_timeout_ms() -> u64 {
    5000
}
fn default_max_retries() -> u32 {
    3
}
fn default_max_backoff_ms() -> u64 {
    10_000
}
fn default_flush_timeout_ms() -> u64 {
    5000
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

impl Default for SentryConfig {
    fn default() -> Self {
        Self {
            dsn: None,
            dsn_secret_id: None,
            dsn_secret_key: default_dsn_secret_key(),
            secrets_manager_region: None,
            secrets_manager_endpoint: None,
            environment: None,
            release: None,
            service: None,
            min_level: default_min_level(),
            fingerprint_fields: default_fingerprint_fields(),
            dedup_window_secs: default_dedup_window_secs(),
            max_fingerprints: default_max_fingerprints(),
            breadcrumbs: default_breadcrumbs(),
            breadcrumb_max_bytes: default_breadcrumb_max_bytes(),
            breadcrumb_max_requests: default_breadcrumb_max_requests(),
            breadcrumb_max_total_bytes: default_breadcrumb_max_total_bytes(),
            request_id_field: default_request_id_field(),
            message_fields: default_message_fields(),
            logger_fields: default_logger_fields(),
            error_kind_fields: default_error_kind_fields(),
            error_message_fields: default_error_message_fields(),
            stack_fields: default_stack_fields(),
            tag_fields: default_tag_fields(),
            queue_capacity: default_queue_capacity(),
            queue_max_bytes: default_queue_max_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            max_retries: default_max_retries(),
            max_backoff_ms: default_max_backoff_ms(),
            flush_timeout_ms: default_flush_timeout_ms(),
        }
    }
}

impl SentryConfig {
    /// Every problem, each prefixed with `path` (`sinks.sentry`). Pure; never echoes the DSN.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                errors.push(if key.is_empty() {
                    format!("{path}: {message}")
                } else {
                    format!("{path}.{key}: {message}")
                });
            }
        };
        match (&self.dsn, &self.dsn_secret_id) {
            (Some(_), Some(_)) => check(false, "", "set dsn or dsn_secret_id, not both"),
            (None, None) => check(false, "", "set dsn or dsn_secret_id"),
            (Some(dsn), None) => {
                if let Err(error) = Dsn::parse(dsn.expose()) {
                    check(false, "dsn", &error.to_string());
                }
            }
            (None, Some(id)) => check(!id.trim().is_empty(), "dsn_secret_id", "must not be empty"),
        }
        check(
            !self.dsn_secret_key.is_empty(),
            "dsn_secret_key",
            "must not be empty",
        );
        check(
            self.min_level().is_some(),
            "min_level",
            "must be warn, error or fatal",
        );
        if let Some(environment) = &self.environment {
            check(
                valid_environment(environment),
                "environment",
                "1-64 characters, no newline or '/', not \"None\" (Sentry's rules)",
            );
        }
        if let Some(release) = &self.release {
            check(
                valid_release(release),
                "release",
                "1-200 characters, no whitespace control characters or '/', not \".\", \"..\" or \"latest\" (Sentry's rules)",
            );
        }
        for (key, fields) in [
            ("fingerprint_fields", &self.fingerprint_fields),
            ("message_fields", &self.message_fields),
            ("logger_fields", &self.logger_fields),
            ("error_kind_fields", &self.error_kind_fields),
            ("error_message_fields", &self.error_message_fields),
            ("stack_fields", &self.stack_fields),
            ("tag_fields", &self.tag_fields),
        ] {
            check(
                fields.iter().all(|f| !f.is_empty()),
                key,
                "field names must not be empty",
            );
        }
        check(
            !self.fingerprint_fields.is_empty(),
            "fingerprint_fields",
            "must list at least one field",
        );
        check(
            self.tag_fields.iter().all(|f| f.len() <= MAX_TAG_KEY_CHARS),
            "tag_fields",
            "tag names are at most 32 characters (Sentry's rule)",
        );
        check(
            !self.request_id_field.is_empty(),
            "request_id_field",
            "must not be empty",
        );
        check(
            self.dedup_window_secs <= 86_400,
            "dedup_window_secs",
            "must be 0..=86400",
        );
        check(
            (1..=10_000).contains(&self.max_fingerprints),
            "max_fingerprints",
            "must be 1..=10000",
        );
        check(self.breadcrumbs <= 100, "breadcrumbs", "must be 0..=100");
        check(
            (64..=16_384).contains(&self.breadcrumb_max_bytes),
            "breadcrumb_max_bytes",
            "must be 64..=16384",
        );
        check(
            (1..=100_000).contains(&self.breadcrumb_max_requests),
            "breadcrumb_max_requests",
            "must be 1..=100000",
        );
        check(
            self.breadcrumb_max_total_bytes >= self.breadcrumb_max_bytes
                && self.breadcrumb_max_total_bytes <= 64 * 1024 * 1024,
            "breadcrumb_max_total_bytes",
            "must be at least breadcrumb_max_bytes and at most 67108864",
        );
        check(
            (1..=10_000).contains(&self.queue_capacity),
            "queue_capacity",
            "must be 1..=10000",
        );
        check(
            (65_536..=268_435_456).contains(&self.queue_max_bytes),
            "queue_max_bytes",
            "must be 65536..=268435456",
        );
        check(
            (100..=60_000).contains(&self.request_timeout_ms),
            "request_timeout_ms",
            "must be 100..=60000",
        );
        check(self.max_retries <= 10, "max_retries", "must be 0..=10");
        check(
            (10..=300_000).contains(&self.max_backoff_ms),
            "max_backoff_ms",
            "must be 10..=300000",
        );
        check(
            (100..=60_000).contains(&self.flush_timeout_ms),
            "flush_timeout_ms",
            "must be 100..=60000",
        );
        errors
    }

    /// `min_level` as a level; `None` when it is not one of warn, error, fatal.
    pub fn min_level(&self) -> Option<Level> {
        match self.min_level {
            MinLevel::Warn => Some(Level::Warn),
            MinLevel::Error => Some(Level::Error),
            MinLevel::Fatal => Some(Level::Fatal),
            MinLevel::Invalid => None,
        }
    }
}

/// Sentry's longest tag key.
pub(crate) const MAX_TAG_KEY_CHARS: usize = 32;

fn valid_environment(value: &str) -> bool {
    (1..=64).contains(&value.chars().count())
        && value != "None"
        && !value.contains(['\n', '\r', '/'])
}

fn valid_release(value: &str) -> bool {
    (1..=200).contains(&value.chars().count())
        && !matches!(value, "." | ".." | "latest")
        && !value.contains(['\n', '\r', '\t', '\x0b', '\x0c', '/'])
}

/// Whether events go over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://` (local receivers and tests only).
    Http,
    /// `https://`.
    Https,
}

/// A parsed DSN: `{scheme}://{public_key}@{host}{path}/{project_id}`, held as Sentry's own
/// [`sentry_types::Dsn`] (the legacy `:secret` dropped before it gets there). `Debug` hides
/// the key, which `sentry_types::Dsn`'s own `Debug` would print.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    inner: sentry_types::Dsn,
}

/// What is wrong with a DSN; the messages never contain any part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Neither `https://` nor `http://`.
    #[error("not a DSN: must start with https:// (or http://)")]
    Scheme,
    /// No `key@` before the host.
    #[error(
        "not a DSN: the public key (https://<key>@host/project) is missing or not alphanumeric"
    )]
    Key,
    /// Empty host, or characters a host cannot have.
    #[error("not a DSN: the host is missing or invalid")]
    Host,
    /// No project id at the end of the path.
    #[error("not a DSN: the project id (https://key@host/<project>) is missing or invalid")]
    Project,
}

impl Dsn {
    /// Parses `text`. Errors never contain the input.
    pub fn parse(text: &str) -> Result<Self, DsnError> {
        let text = text.trim();
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(DsnError::Scheme);
        };
        let (userinfo, location) = rest.rsplit_once('@').ok_or(DsnError::Key)?;
        // `key:secret` is the legacy form; the secret is no longer used.
        let public_key = userinfo.split(':').next().unwrap_or_default();
        if public_key.is_empty() || !public_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(DsnError::Key);
        }
        let location = location.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = match location.find('/') {
            Some(at) => location.split_at(at),
            None => (location, ""),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        {
            return Err(DsnError::Host);
        }
        let path = path.trim_end_matches('/');
        let (prefix, project_id) = path.rsplit_once('/').ok_or(DsnError::Project)?;
        if project_id.is_empty()
            || !project_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || prefix.contains(char::is_whitespace)
        {
            return Err(DsnError::Project);
        }
        let scheme = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        // Our checks passed: what sentry-types still refuses is a host `url` cannot parse
        // (its errors are mapped, never shown, as they might quote the input).
        let inner = format!("{scheme}://{public_key}@{host}{prefix}/{project_id}")
            .parse::<sentry_types::Dsn>()
            .map_err(|error| match error {
                sentry_types::ParseDsnError::InvalidScheme => DsnError::Scheme,
                sentry_types::ParseDsnError::NoUsername => DsnError::Key,
                sentry_types::ParseDsnError::NoProjectId
                | sentry_types::ParseDsnError::InvalidProjectId(_) => DsnError::Project,
                sentry_types::ParseDsnError::InvalidUrl => DsnError::Host,
            })?;
        Ok(Self { inner })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        match self.inner.scheme() {
            sentry_types::Scheme::Http => Scheme::Http,
            sentry_types::Scheme::Https => Scheme::Https,
        }
    }

    /// Where envelopes go: `{scheme}://{host}{path}/api/{project_id}/envelope/` (no key in
    /// it, so the URL may be logged).
    pub fn envelope_url(&self) -> String {
        self.inner.envelope_api_url().to_string()
    }

    /// The `X-Sentry-Auth` credentials: key, protocol version and client, without a
    /// `sentry_timestamp` (the header is built once and reused).
    pub fn auth(&self) -> sentry_types::Auth {
        let client = format!("agent/{}", crate::VERSION);
        let version = sentry_types::protocol::LATEST.to_string();
        sentry_types::Auth::from_pairs([
            ("sentry_key", self.inner.public_key()),
            ("sentry_version", version.as_str()),
            ("sentry_client", client.as_str()),
        ])
        .expect("sentry_key and sentry_version are present")
    }

    /// The `X-Sentry-Auth` header value. Holds the key: send it, never log it.
    pub fn auth_header(&self) -> String {
        self.auth().to_string()
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dsn")
            .field("url", &self.envelope_url())
            .field("public_key", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SentryConfig {
        SentryConfig {
            dsn: Some(Redacted::new("https://abc123@o1.ingest.sentry.io/42")),
            ..SentryConfig::default()
        }
    }

    #[test]
    fn parses_dsns_and_builds_the_envelope_url_without_the_key() {
        let dsn = Dsn::parse("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(
            dsn.envelope_url(),
            "https://o1.ingest.sentry.io/api/42/envelope/"
        );
        assert_eq!(dsn.scheme(), Scheme::Https);
        let auth: sentry_types::Auth = dsn.auth_header().parse().unwrap();
        assert_eq!(auth.public_key(), "abc123");
        assert_eq!(auth.version(), 7);
        assert!(auth.client_agent().unwrap().starts_with("agent/"));
        assert_eq!((auth.secret_key(), auth.timestamp()), (None, None));
        let with_path = Dsn::parse("http://k:legacysecret@127.0.0.1:9000/sentry/7/").unwrap();
        assert_eq!(
            with_path.envelope_url(),
            "http://127.0.0.1:9000/sentry/api/7/envelope/"
        );
        assert!(!format!("{dsn:?}").contains("abc123"));
        assert!(!format!("{with_path:?}").contains("legacysecret"));
        assert!(!with_path.auth_header().contains("legacysecret"));
    }

    #[test]
    fn dsn_errors_never_echo_the_input() {
        for (text, error) in [
            ("ftp://key@host/1", DsnError::Scheme),
            ("https://host/1", DsnError::Key),
            ("https://@host/1", DsnError::Key),
            ("https://secretkey@/1", DsnError::Host),
            ("https://secretkey@host", DsnError::Project),
            ("https://secretkey@host/", DsnError::Project),
            ("https://secretkey@ho st/1", DsnError::Host),
        ] {
            assert_eq!(Dsn::parse(text), Err(error), "{text}");
            assert!(!error.to_string().contains("secretkey"));
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(valid().validate("sinks.sentry"), Vec::<String>::new());
        let from_secret = SentryConfig {
            dsn_secret_id: Some("prod/api".into()),
            ..SentryConfig::default()
        };
        assert!(from_secret.validate("sinks.sentry").is_empty());
        assert_eq!(valid().min_level(), Some(Level::Error));
    }

    #[test]
    fn validate_rejects_a_missing_or_doubled_dsn() {
        let none = SentryConfig::default();
        assert_eq!(
            none.validate("sinks.sentry"),
            ["sinks.sentry: set dsn or dsn_secret_id"]
        );
        let both = SentryConfig {
            dsn_secret_id: Some("x".into()),
            ..valid()
        };
        assert_eq!(
            both.validate("sinks.sentry"),
            ["sinks.sentry: set dsn or dsn_secret_id, not both"]
        );
    }

    #[test]
    fn validate_rejects_a_bad_dsn_without_printing_it() {
        let config = SentryConfig {
            dsn: Some(Redacted::new("https://hunter2secret.example.com/1")),
            ..SentryConfig::default()
        };
        let errors = config.validate("sinks.sentry");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("sinks.sentry.dsn: "), "{errors:?}");
        assert!(!errors[0].contains("hunter2"), "{errors:?}");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn validate_rejects_every_bad_key_at_once() {
        let config = SentryConfig {
            min_level: MinLevel::Invalid,
            environment: Some("prod/eu".into()),
            release: Some("latest".into()),
            fingerprint_fields: Vec::new(),
            tag_fields: vec!["x".repeat(33)],
            request_id_field: String::new(),
            dedup_window_secs: 100_000,
            max_fingerprints: 0,
            breadcrumbs: 101,
            breadcrumb_max_bytes: 10,
            breadcrumb_max_requests: 0,
            breadcrumb_max_total_bytes: 1,
            queue_capacity: 0,
            queue_max_bytes: 1,
            request_timeout_ms: 1,
            max_retries: 11,
            max_backoff_ms: 1,
            flush_timeout_ms: 1,
            dsn_secret_key: String::new(),
            ..valid()
        };
        let errors = config.validate("sinks.sentry");
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "sinks.sentry.dsn_secret_key",
                "sinks.sentry.min_level",
                "sinks.sentry.environment",
                "sinks.sentry.release",
                "sinks.sentry.fingerprint_fields",
                "sinks.sentry.tag_fields",
                "sinks.sentry.request_id_field",
                "sinks.sentry.dedup_window_secs",
                "sinks.sentry.max_fingerprints",
                "sinks.sentry.breadcrumbs",
                "sinks.sentry.breadcrumb_max_bytes",
                "sinks.sentry.breadcrumb_max_requests",
                "sinks.sentry.breadcrumb_max_total_bytes",
                "sinks.sentry.queue_capacity",
                "sinks.sentry.queue_max_bytes",
                "sinks.sentry.request_timeout_ms",
                "sinks.sentry.max_retries",
                "sinks.sentry.max_backoff_ms",
                "sinks.sentry.flush_timeout_ms",
            ]
        );
    }
}

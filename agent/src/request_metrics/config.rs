//! `[metrics]`: request-metric extraction, aggregation and publication, and its validation.

use serde::Deserialize;

use crate::aws::AwsKeys;

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
    pub publish: Publish,
    /// AWS region for CloudWatch; default from the environment.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override for CloudWatch; default from the environment.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Field names of the access-log event.
    #[serde(default)]
    pub access_log: AccessLogFields,
    /// Registered HTTP methods; any other method is labelled `_OTHER` (OpenTelemetry's
    /// convention), so invented methods cannot create series.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// IAM role PutMetricData assumes (cross-account delivery), on top of the default
    /// credentials (the task role); unset: the default credentials sign. (With `publish =
    /// "emf"` the documents go through the CloudWatch Logs sink, as its `role_arn` says.)
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `sts:ExternalId` the role's trust policy asks for (only with `role_arn`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Session name of the assumed role (only with `role_arn`; default `agent`).
    #[serde(default)]
    pub session_name: Option<String>,
    /// FIPS endpoints (`monitoring-fips.<region>.amazonaws.com`); default from
    /// `AWS_USE_FIPS_ENDPOINT`. Not with `endpoint`.
    #[serde(default)]
    pub use_fips: Option<bool>,
    /// Dual-stack (IPv4 + IPv6) endpoints (`monitoring.<region>.api.aws`); default from
    /// `AWS_USE_DUALSTACK_ENDPOINT`. Not with `endpoint`.
    #[serde(default)]
    pub use_dualstack: Option<bool>,
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
            methods: default_methods(),
            role_arn: None,
            external_id: None,
            session_name: None,
            use_fips: None,
            use_dualstack: None,
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
fn default_methods() -> Vec<String> {
    super::DEFAULT_METHODS.map(str::to_owned).to_vec()
}
fn default_publish() -> Publish {
    Publish::Cloudwatch
}

crate::choice::choice! {
    /// Where request metrics are published.
    pub enum Publish {
        /// PutMetricData.
        Cloudwatch = "cloudwatch",
        /// Embedded Metric Format documents in the log group.
        Emf = "emf",
        /// Nowhere (Prometheus only).
        None = "none",
    }
}

fn default_true() -> bool {
    true
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

impl MetricsConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                errors.push(format!("{path}{message}"));
            }
        };
        check(
            matches!(self.period_secs, 10 | 20 | 30)
                || (self.period_secs >= 60
                    && self.period_secs.is_multiple_of(60)
                    && self.period_secs <= 3600),
            ".period_secs: must be 10, 20, 30 or a multiple of 60 up to 3600".into(),
        );
        check(
            (1..=1000).contains(&self.max_routes),
            ".max_routes: must be 1..=1000".into(),
        );
        check(
            !self.namespace.is_empty()
                && self.namespace.len() <= 255
                && !self.namespace.starts_with("AWS/")
                && self.namespace.is_ascii(),
            ".namespace: 1-255 ASCII characters, not starting with AWS/".into(),
        );
        for (i, dimension) in self.dimensions.iter().enumerate() {
            check(
                matches!(dimension.as_str(), "Route" | "Method" | "StatusClass"),
                format!(".dimensions[{i}]: must be Route, Method or StatusClass"),
            );
        }
        check(
            self.dimensions.len() + self.static_dimensions.len() <= 9,
            ": at most 9 dimensions in all (EMF's limit, kept for both outputs)".into(),
        );
        for (name, value) in &self.static_dimensions {
            check(
                !value.is_empty()
                    && value.len() <= 1024
                    && value.is_ascii()
                    && !name.is_empty()
                    && name.len() <= 255,
                format!(
                    ".static_dimensions.{name}: name and value must be 1-255 / 1-1024 ASCII characters"
                ),
            );
        }
        check(
            (1..=32).contains(&self.methods.len()),
            ".methods: 1 to 32 methods".into(),
        );
        for (i, method) in self.methods.iter().enumerate() {
            check(
                (1..=16).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_alphabetic()),
                format!(".methods[{i}]: 1-16 ASCII letters"),
            );
        }
        check(
            self.publish.is_valid(),
            ".publish: must be cloudwatch, emf or none".into(),
        );
        errors.extend(self.aws().validate(path));
        errors
    }

    /// Where the PutMetricData client calls and as whom.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_bad_methods() {
        let mut config = MetricsConfig::default();
        assert!(config.validate("metrics").is_empty());
        config.methods = vec!["GET".into(), "BR EW".into(), String::new()];
        assert_eq!(
            config.validate("metrics"),
            [
                "metrics.methods[1]: 1-16 ASCII letters",
                "metrics.methods[2]: 1-16 ASCII letters"
            ]
        );
        config.methods.clear();
        assert_eq!(
            config.validate("metrics"),
            ["metrics.methods: 1 to 32 methods"]
        );
    }
}

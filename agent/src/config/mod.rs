//! Configuration: TOML → `${VAR}` interpolation → deserialize → validate (pure) → build.
//!
//! Every problem is reported at once with its key path (unknown keys included: they are
//! collected in one pass instead of failing on the first), and the binary exits 64.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

// Each component's table lives beside the component; re-exported here for callers that
// think of "the configuration" as one thing.
pub use crate::admin::AdminConfig;
pub use crate::buffer::config::{DiskBufferConfig, Fsync};
pub use crate::pipeline::config::{PipelineConfig, RedactionConfig};
pub use crate::request_metrics::config::{AccessLogFields, MetricsConfig, Publish};
pub use crate::sinks::SinksConfig;
pub use crate::sinks::cloudwatch_logs::{
    CLOUDWATCH_MAX_EVENT_BYTES, CloudWatchLogsConfig, VALID_RETENTION_DAYS,
};
pub use crate::sources::SourcesConfig;
pub use crate::sources::file::{FileConfig, StartAt};
pub use crate::sources::forward::ForwardConfig;
pub use crate::sources::http::HttpConfig;
pub use crate::sources::stdin::StdinConfig;
pub use crate::uptime::UptimeConfig;

/// The whole agent configuration (`agent.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Hard ceiling, in MiB, on the bytes of accepted events held in memory before
    /// CloudWatch Logs confirms them. When reached, inputs are slowed, never dropped.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// The agent's own log level: error, warn, info, debug or trace.
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    /// Seconds to flush after SIGTERM before giving up (keep below the ECS stop timeout).
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Seconds the inputs keep accepting after SIGTERM, for the application's own last
    /// lines (its shutdown logs reach FireLens after the sidecar's SIGTERM); within the
    /// grace period. Default a third of `shutdown_grace_secs`.
    #[serde(default)]
    pub input_linger_secs: Option<f64>,
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

/// Chosen so the sidecar fits a 64 MiB container hard limit at full W1 speed (measured
/// peak RSS 33-57 MiB at 16 on every input; see README, Performance: sizing).
fn default_memory_limit_mib() -> u64 {
    16
}
fn default_log_level() -> LogLevel {
    LogLevel::Info
}

crate::choice::choice! {
    /// The agent's own log level.
    pub enum LogLevel {
        /// Data loss or operator action.
        Error = "error",
        /// Degraded, recovering.
        Warn = "warn",
        /// Lifecycle.
        Info = "info",
        /// Per-call detail.
        Debug = "debug",
        /// Everything.
        Trace = "trace",
    }
}
fn default_shutdown_grace_secs() -> u64 {
    25
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

    /// Checks every rule that types cannot express, each component's under its key path.
    /// Pure.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(4..=65_536).contains(&self.memory_limit_mib) {
            errors.push("memory_limit_mib: must be between 4 and 65536".into());
        }
        if !self.log_level.is_valid() {
            errors.push("log_level: must be one of error, warn, info, debug, trace".into());
        }
        if !(1..=115).contains(&self.shutdown_grace_secs) {
            errors.push("shutdown_grace_secs: must be 1..=115 (ECS allows at most 120 s)".into());
        }
        if let Some(linger) = self.input_linger_secs
            && !(linger >= 0.0 && linger < self.shutdown_grace_secs as f64)
        {
            errors
                .push("input_linger_secs: must be 0 or more and below shutdown_grace_secs".into());
        }
        let memory = self.memory_limit_mib.saturating_mul(1024 * 1024) as usize;
        errors.extend(self.admin.validate("admin"));
        errors.extend(self.sources.validate("sources", memory));
        errors.extend(self.pipeline.validate("pipeline"));
        let logs = &self.sinks.cloudwatch_logs;
        errors.extend(logs.validate("sinks.cloudwatch_logs", memory));
        if self.metrics.enabled
            && self.metrics.publish == Publish::Emf
            && logs.log_group.contains('{')
        {
            errors.push(
                "metrics.publish: \"emf\" writes to sinks.cloudwatch_logs.log_group, which must then be a plain name (no placeholders)".into(),
            );
        }
        errors.extend(self.metrics.validate("metrics"));
        errors.extend(self.uptime.validate("uptime"));
        if let Some(disk) = &self.disk_buffer {
            errors.extend(disk.validate("disk_buffer"));
        }
        if let Some(sentry) = &self.sinks.sentry {
            errors.extend(sentry.validate("sinks.sentry"));
        }
        if let Some(otlp) = &self.sources.otlp
            && otlp.request_timings != crate::sources::otlp::RequestTimings::None
            && self.metrics.enabled
            && self.metrics.access_log.enabled
        {
            errors.push(format!(
                "sources.otlp.request_timings: \"{}\" and metrics.access_log would count each request twice; \
                 set one of them off (request_timings = \"none\" or metrics.access_log.enabled = false)",
                otlp.request_timings.as_str()
            ));
        }
        errors
    }

    /// How long inputs keep accepting after SIGTERM.
    pub fn input_linger(&self) -> std::time::Duration {
        let grace = std::time::Duration::from_secs(self.shutdown_grace_secs);
        self.input_linger_secs
            .map_or(grace / 3, std::time::Duration::from_secs_f64)
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
mod tests;

//! The observability sidecar.
//!
//! Architecture: sources (FireLens Fluent Forward, stdin, file tail, HTTP, OTLP) feed a
//! bounded pipeline (parse once, enrich with ECS metadata, redact) whose sinks ship to
//! CloudWatch Logs, CloudWatch Metrics, Prometheus and Sentry. This crate is a skeleton
//! until the log pipeline lands.

/// The agent's version, as reported by `agent --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

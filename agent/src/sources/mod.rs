//! Inputs. Each runs until its shutdown token fires (or its input ends), handing lines to
//! the pipeline through an `EventSender` and waiting when the pipeline is full.

pub mod file;
pub mod forward;
pub mod http;
mod http_config;
pub mod otlp;
pub mod stdin;

use serde::Deserialize;

/// Inputs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourcesConfig {
    /// Fluent Forward (what ECS FireLens speaks).
    pub forward: Option<forward::ForwardConfig>,
    /// Line-delimited standard input.
    pub stdin: Option<stdin::StdinConfig>,
    /// Tailed files.
    pub file: Option<file::FileConfig>,
    /// `POST /v1/logs` with NDJSON.
    pub http: Option<http::HttpConfig>,
    /// OTLP receiver (gRPC 4317, HTTP 4318): traces and metrics become request timings,
    /// log records join the log pipeline.
    pub otlp: Option<otlp::OtlpConfig>,
}

impl SourcesConfig {
    /// Every rule types cannot express, each source's under its own key path; HTTP bodies
    /// must fit in a quarter of the memory ceiling (`memory_bytes`).
    pub fn validate(&self, path: &str, memory_bytes: usize) -> Vec<String> {
        let mut errors = Vec::new();
        if self.forward.is_none()
            && self.stdin.is_none()
            && self.file.is_none()
            && self.http.is_none()
            && self.otlp.is_none()
        {
            errors.push(format!(
                "{path}: at least one of forward, stdin, file, http, otlp must be configured"
            ));
        }
        if let Some(http) = &self.http {
            errors.extend(http.validate(&format!("{path}.http"), memory_bytes));
        }
        if let Some(forward) = &self.forward {
            errors.extend(forward.validate(&format!("{path}.forward")));
        }
        if let Some(file) = &self.file {
            errors.extend(file.validate(&format!("{path}.file")));
        }
        if let Some(otlp) = &self.otlp {
            errors.extend(otlp.validate(&format!("{path}.otlp")));
        }
        errors
    }
}

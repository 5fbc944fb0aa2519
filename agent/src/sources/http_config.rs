//! `[sources.http]`: the NDJSON endpoint's settings and their validation.

use std::net::SocketAddr;

use serde::Deserialize;

use super::forward::config::default_max_connections;

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

impl HttpConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message;
    /// a body must fit in a quarter of the memory ceiling (`memory_bytes`).
    pub fn validate(&self, path: &str, memory_bytes: usize) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: &str| {
            if !ok {
                errors.push(format!("{path}{message}"));
            }
        };
        check(
            (1..=65_536).contains(&self.max_connections),
            ".max_connections: must be 1..=65536",
        );
        check(
            (100..=600_000).contains(&self.request_timeout_ms),
            ".request_timeout_ms: must be 100..=600000",
        );
        check(
            (100..=3_600_000).contains(&self.idle_timeout_ms),
            ".idle_timeout_ms: must be 100..=3600000",
        );
        check(
            self.address.parse::<SocketAddr>().is_ok(),
            ".address: must be IP:port",
        );
        check(
            self.max_body_bytes >= 1024 && self.max_body_bytes <= memory_bytes / 4,
            ".max_body_bytes: must be at least 1024 and at most a quarter of memory_limit_mib",
        );
        errors
    }
}

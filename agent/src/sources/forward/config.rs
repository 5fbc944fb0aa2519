//! `[sources.forward]`: the Fluent Forward server's settings and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// A split line still incomplete this long after its first part is shipped as it is
    /// (marked as cut, counted as `partial_timeout`), in ms (default 5000).
    #[serde(default = "default_partial_timeout_ms")]
    pub partial_timeout_ms: u64,
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

fn default_partial_timeout_ms() -> u64 {
    5_000
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
pub(crate) fn default_max_connections() -> usize {
    256
}

impl ForwardConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: &str| {
            if !ok {
                errors.push(format!("{path}{message}"));
            }
        };
        check(
            (100..=600_000).contains(&self.frame_timeout_ms),
            ".frame_timeout_ms: must be 100..=600000",
        );
        check(
            self.address.is_empty() || self.address.parse::<SocketAddr>().is_ok(),
            ".address: must be IP:port or empty",
        );
        check(
            !self.address.is_empty() || self.unix_path.is_some(),
            ": needs an address or a unix_path",
        );
        check(
            self.max_partial_bytes >= 1024,
            ".max_partial_bytes: must be at least 1024",
        );
        check(
            (10..=600_000).contains(&self.partial_timeout_ms),
            ".partial_timeout_ms: must be 10..=600000",
        );
        check(
            self.max_frame_bytes >= 64 * 1024,
            ".max_frame_bytes: must be at least 65536",
        );
        check(
            self.max_connections >= 1,
            ".max_connections: must be at least 1",
        );
        errors
    }
}

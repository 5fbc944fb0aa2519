//! `[disk_buffer]`: where and how big, and its validation.

use serde::Deserialize;

/// `[disk_buffer]`: accepted events are written to checksummed segment files before they
/// count as accepted, and removed once CloudWatch Logs has stored them, so they survive a
/// crash (`kill -9`), an OOM kill or an outage longer than the memory ceiling allows.
#[derive(Debug, Clone, Deserialize)]
pub struct DiskBufferConfig {
    /// Directory of the segments (created when missing; one agent per directory).
    pub path: std::path::PathBuf,
    /// Most bytes of undelivered events on disk; when reached, inputs are slowed
    /// (default 1024).
    #[serde(default = "default_disk_max_size_mib")]
    pub max_size_mib: u64,
    /// Size at which a segment file is closed and the next one started (default 8).
    #[serde(default = "default_disk_segment_size_mib")]
    pub segment_size_mib: u64,
    /// `batch` (default): fsync each group of writes before acknowledging them, which
    /// survives power loss; `never`: leave it to the kernel, which survives the agent's
    /// crash but not the host's.
    #[serde(default = "default_fsync")]
    pub fsync: Fsync,
}

fn default_disk_max_size_mib() -> u64 {
    1024
}
fn default_disk_segment_size_mib() -> u64 {
    8
}
fn default_fsync() -> Fsync {
    Fsync::Batch
}

crate::choice::choice! {
    /// When appends reach the disk.
    pub enum Fsync {
        /// fsync each group of writes before acknowledging it.
        Batch = "batch",
        /// Leave it to the kernel.
        Never = "never",
    }
}

impl DiskBufferConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(format!("{path}.path: must not be empty"));
        }
        if !(1..=1024).contains(&self.segment_size_mib) {
            errors.push(format!("{path}.segment_size_mib: must be 1..=1024"));
        }
        if self.max_size_mib < 2 * self.segment_size_mib || self.max_size_mib > 1 << 20 {
            errors.push(format!(
                "{path}.max_size_mib: must be at least twice segment_size_mib (and at most 1048576)"
            ));
        }
        if !self.fsync.is_valid() {
            errors.push(format!("{path}.fsync: must be batch or never"));
        }
        errors
    }
}

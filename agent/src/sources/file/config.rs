//! `[sources.file]`: which files to follow and how, and its validation.

use std::path::PathBuf;

use serde::Deserialize;

/// Where a newly discovered file starts being read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// From its first byte.
    Beginning,
    /// From its current end (only new lines).
    #[default]
    End,
}

/// File tail.
#[derive(Debug, Clone, Deserialize)]
pub struct FileConfig {
    /// Glob patterns of files to follow.
    pub include: Vec<String>,
    /// Where read offsets are remembered across restarts.
    pub checkpoint_path: PathBuf,
    /// Where files seen for the first time start (beginning or end; default end).
    #[serde(default)]
    pub start_at: StartAt,
    /// How often to look for new data, rotations and new files, in ms.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    250
}

impl FileConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.include.is_empty() {
            errors.push(format!("{path}.include: must list at least one glob"));
        }
        for (i, pattern) in self.include.iter().enumerate() {
            if glob::Pattern::new(pattern).is_err() {
                errors.push(format!("{path}.include[{i}]: invalid glob"));
            }
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            errors.push(format!("{path}.poll_interval_ms: must be 10..=60000"));
        }
        errors
    }
}

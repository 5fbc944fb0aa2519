//! `[pipeline]`: parsing and redaction settings, and their validation.

use serde::Deserialize;

use super::filter::FilterConfig;
use super::multiline::MultilineConfig;
use super::redact::DEFAULT_KEYS;

/// Parsing and redaction.
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineConfig {
    /// JSON key holding the event time (RFC 3339 or epoch ms).
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// JSON key holding the level.
    #[serde(default = "default_level_field")]
    pub level_field: String,
    /// Stack traces joined into one event (off unless `[pipeline.multiline]` is present).
    #[serde(default)]
    pub multiline: MultilineConfig,
    /// Secret removal.
    #[serde(default)]
    pub redaction: RedactionConfig,
    /// `[[pipeline.filters]]`: drop, keep or sample events, in order.
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            timestamp_field: default_timestamp_field(),
            level_field: default_level_field(),
            multiline: MultilineConfig::default(),
            redaction: RedactionConfig::default(),
            filters: Vec::new(),
        }
    }
}

fn default_timestamp_field() -> String {
    "timestamp".into()
}
fn default_level_field() -> String {
    "level".into()
}

/// Secret removal.
#[derive(Debug, Clone, Deserialize)]
pub struct RedactionConfig {
    /// On by default.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Key words whose values are replaced (case-insensitive substring, `-`/`_` ignored).
    #[serde(default = "default_redaction_keys")]
    pub keys: Vec<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: default_redaction_keys(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_redaction_keys() -> Vec<String> {
    DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect()
}

impl PipelineConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.timestamp_field.is_empty() {
            errors.push(format!("{path}.timestamp_field: must not be empty"));
        }
        if self.level_field.is_empty() {
            errors.push(format!("{path}.level_field: must not be empty"));
        }
        errors.extend(self.multiline.validate(&format!("{path}.multiline")));
        for (i, filter) in self.filters.iter().enumerate() {
            errors.extend(filter.validate(&format!("{path}.filters[{i}]")));
        }
        errors
    }
}

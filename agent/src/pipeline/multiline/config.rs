//! `[pipeline.multiline]`: which stack traces are joined and the limits of one joined event,
//! and their validation.

use serde::Deserialize;

crate::choice::choice! {
    /// A built-in rule.
    pub enum BuiltinRule {
        /// Java, Kotlin, Scala: exception line, `\tat` frames, `Caused by:`, `... N more`.
        Java = "java",
        /// Python tracebacks, chained exceptions and exception groups.
        Python = "python",
        /// Go panics and goroutine dumps.
        Go = "go",
        /// Node.js / JavaScript `Error:` and `    at` frames.
        Node = "node",
        /// Ruby `file.rb:N:in 'x': msg (Class)` and `\tfrom` frames.
        Ruby = "ruby",
    }
}

impl BuiltinRule {
    /// Every built-in rule, in the default order.
    pub const ALL: [Self; 5] = [Self::Java, Self::Python, Self::Go, Self::Node, Self::Ruby];
}

/// A rule of your own, as Fluent Bit writes them: a line matching `start` begins a trace, and
/// each following line matching `continue` belongs to it.
#[derive(Debug, Clone, Deserialize)]
pub struct CustomRule {
    /// A name for it (in errors and the docs of your configuration).
    pub name: String,
    /// Regex (Rust `regex` syntax) of a line that starts a trace.
    pub start: String,
    /// Regex of a line that continues it.
    #[serde(rename = "continue")]
    pub continue_: String,
}

/// Joining stack traces written one line per event into one event per trace.
#[derive(Debug, Clone, Deserialize)]
pub struct MultilineConfig {
    /// On when the `[pipeline.multiline]` table is present; `enabled = false` turns it off
    /// and keeps the settings.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Built-in rules, tried in this order: `java`, `python`, `go`, `node`, `ruby` (default:
    /// all five).
    #[serde(default = "default_rules")]
    pub rules: Vec<BuiltinRule>,
    /// Rules of your own (`{ name, start, continue }`), tried before the built-in ones.
    #[serde(default)]
    pub custom: Vec<CustomRule>,
    /// A trace with no new line for this long is complete, in ms (default 1000).
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Most lines in one joined event; a longer trace is cut (marked, counted) and goes on
    /// in the next event (default 500).
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// Most bytes in one joined event, likewise (default 262144, the CloudWatch Logs sink's
    /// default `max_event_bytes`).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

impl Default for MultilineConfig {
    /// Off: the table is absent.
    fn default() -> Self {
        Self {
            enabled: false,
            rules: default_rules(),
            custom: Vec::new(),
            flush_ms: default_flush_ms(),
            max_lines: default_max_lines(),
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_enabled() -> bool {
    true
}
fn default_rules() -> Vec<BuiltinRule> {
    BuiltinRule::ALL.to_vec()
}
fn default_flush_ms() -> u64 {
    1_000
}
fn default_max_lines() -> usize {
    500
}
fn default_max_bytes() -> usize {
    256 * 1024
}

/// The largest `max_bytes`: the inputs cut a line at 1 MiB, so a joined event never needs
/// more, and a line of that size is never held.
pub const MAX_MAX_BYTES: usize = 1024 * 1024;

impl MultilineConfig {
    /// Every rule types cannot express, with `path` (the table's key path) in each message.
    /// Custom patterns are compiled here (pure: no I/O).
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                errors.push(format!("{path}.{message}"));
            }
        };
        check(
            (10..=60_000).contains(&self.flush_ms),
            "flush_ms: must be 10..=60000".into(),
        );
        check(
            (2..=10_000).contains(&self.max_lines),
            "max_lines: must be 2..=10000".into(),
        );
        check(
            (1024..=MAX_MAX_BYTES).contains(&self.max_bytes),
            format!("max_bytes: must be 1024..={MAX_MAX_BYTES}"),
        );
        for (i, rule) in self.rules.iter().enumerate() {
            check(
                rule.is_valid(),
                format!("rules[{i}]: must be one of java, python, go, node, ruby"),
            );
        }
        check(
            !self.rules.is_empty() || !self.custom.is_empty(),
            "rules: empty, and no custom rule: nothing would be joined".into(),
        );
        for (i, rule) in self.custom.iter().enumerate() {
            check(
                !rule.name.trim().is_empty(),
                format!("custom[{i}].name: must not be empty"),
            );
            let twice = self.custom[..i].iter().any(|r| r.name == rule.name);
            check(
                !twice,
                format!("custom[{i}].name: {:?} is used twice", rule.name),
            );
        }
        if let Err(regex_errors) = super::rules::Rules::new(&[], &self.custom) {
            errors.extend(regex_errors.into_iter().map(|e| format!("{path}.{e}")));
        }
        errors
    }
}

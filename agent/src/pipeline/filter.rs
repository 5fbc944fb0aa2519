//! `[[pipeline.filters]]`: drop or keep events by level or by a regex on a field (or the
//! whole line), and keep a fraction of some events. Rules apply in order; an event any rule
//! rejects is dropped and counted as `agent_events_dropped_total{reason="filtered"}`.
//! Request timings are read before filtering, so filtered access-log lines still count in
//! the request metrics.
//!
//! Sampling is exact, not random: a rate of 0.1 keeps the 10th, 20th, … matching event, so
//! a test (or a reader of the bill) can predict it. Errors and fatals are never sampled away
//! unless the rule says `sample_errors = true`.

use std::sync::atomic::{AtomicU64, Ordering};

use regex::Regex;
use serde::Deserialize;

use super::event::{Event, Level};
use super::fields::{FieldPath, Fields};
use crate::choice::choice;

choice! {
    /// What a rule does with the events it matches.
    pub enum FilterAction {
        /// Drops them.
        Drop = "drop",
        /// Keeps only them: everything else is dropped.
        Keep = "keep",
        /// Keeps a fraction (`rate`) of them.
        Sample = "sample",
    }
}

/// One `[[pipeline.filters]]` rule. An event matches when its level is one of `levels` (if
/// given) and `regex` finds a match in `field` (or in the whole line, if no field is given).
#[derive(Debug, Clone, Deserialize)]
pub struct FilterConfig {
    /// `drop`, `keep` or `sample`.
    pub action: FilterAction,
    /// Levels that match (`trace`, `debug`, `info`, `warn`, `error`, `fatal`).
    #[serde(default)]
    pub levels: Vec<String>,
    /// Dotted path of a JSON field the regex is tested against.
    #[serde(default)]
    pub field: Option<String>,
    /// Regex (Rust syntax) a match needs.
    #[serde(default)]
    pub regex: Option<String>,
    /// With `sample`: the fraction kept, 0.0-1.0.
    #[serde(default)]
    pub rate: Option<f64>,
    /// With `sample`: also sample errors and fatals (by default they are always kept).
    #[serde(default)]
    pub sample_errors: bool,
}

/// Compiled regexes are capped at this size (a config typo must not eat the budget).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl FilterConfig {
    /// Every problem of rule `path` (e.g. `pipeline.filters[0]`).
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: &str| {
            if !ok {
                errors.push(format!("{path}{message}"));
            }
        };
        check(
            self.action.is_valid(),
            ".action: must be \"drop\", \"keep\" or \"sample\"",
        );
        check(
            !self.levels.is_empty() || self.regex.is_some(),
            ": needs `levels` or `regex` (a rule that matches everything is a mistake)",
        );
        for level in &self.levels {
            check(
                level_of(level).is_some(),
                ".levels: each one of trace, debug, info, warn, error, fatal",
            );
        }
        if let Some(regex) = &self.regex {
            check(
                compile(regex).is_ok(),
                ".regex: not a valid regular expression (or larger than 1 MiB compiled)",
            );
        }
        if let Some(field) = &self.field {
            check(
                FieldPath::parse(field).is_some(),
                ".field: a dotted path with no empty part",
            );
            check(self.regex.is_some(), ".field: needs `regex`");
        }
        let sample = self.action == FilterAction::Sample;
        check(
            !sample || self.rate.is_some_and(|r| (0.0..=1.0).contains(&r)),
            ".rate: `sample` needs a rate between 0.0 and 1.0",
        );
        check(
            sample || (self.rate.is_none() && !self.sample_errors),
            ": `rate` and `sample_errors` go with action = \"sample\" only",
        );
        errors
    }
}

/// Exact level names only: a filter is a contract, not a guess.
fn level_of(name: &str) -> Option<Level> {
    Level::parse(name).filter(|level| level.as_str() == name)
}

fn compile(regex: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(regex)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// The compiled rules.
#[derive(Debug)]
pub struct Filters {
    rules: Vec<Rule>,
    /// Some rule reads a field: the line's object is parsed once per event for them.
    reads_fields: bool,
}

#[derive(Debug)]
struct Rule {
    action: FilterAction,
    /// Bit `Level as u8` set for each level that matches; 0 = any level.
    levels: u8,
    field: Option<FieldPath>,
    regex: Option<Regex>,
    rate: f64,
    sample_errors: bool,
    /// Matching events seen (sampling).
    seen: AtomicU64,
}

impl Filters {
    /// Compiles validated rules (an invalid part is ignored; validation reported it).
    pub fn new(configs: &[FilterConfig]) -> Self {
        let rules: Vec<Rule> = configs.iter().map(Rule::new).collect();
        let reads_fields = rules.iter().any(|r| r.field.is_some());
        Self {
            rules,
            reads_fields,
        }
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `event` passes every rule.
    pub fn admits(&self, event: &Event) -> bool {
        let fields = if self.reads_fields {
            Fields::of(&event.message)
        } else {
            Fields::default()
        };
        self.rules.iter().all(|rule| {
            let matched = rule.matches(event, &fields);
            match rule.action {
                FilterAction::Drop => !matched,
                FilterAction::Keep | FilterAction::Invalid => matched,
                FilterAction::Sample => !matched || rule.sampled(event.level),
            }
        })
    }
}

impl Rule {
    fn new(config: &FilterConfig) -> Self {
        Self {
            action: config.action,
            levels: config
                .levels
                .iter()
                .filter_map(|l| level_of(l))
                .fold(0, |bits, level| bits | 1 << level as u8),
            field: config.field.as_deref().and_then(FieldPath::parse),
            regex: config.regex.as_deref().and_then(|r| compile(r).ok()),
            rate: config.rate.unwrap_or(1.0),
            sample_errors: config.sample_errors,
            seen: AtomicU64::new(0),
        }
    }

    fn matches(&self, event: &Event, fields: &Fields<'_>) -> bool {
        if self.levels != 0 && event.level.is_none_or(|l| self.levels & 1 << l as u8 == 0) {
            return false;
        }
        let Some(regex) = &self.regex else {
            return true;
        };
        match &self.field {
            Some(path) => fields.get(path).is_some_and(|value| regex.is_match(&value)),
            None => regex.is_match(&event.message),
        }
    }

    /// Whether the next matching event is one of the kept fraction.
    fn sampled(&self, level: Option<Level>) -> bool {
        if !self.sample_errors && level >= Some(Level::Error) {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        // Kept when ⌊(n+1)·rate⌋ steps up: exactly ⌊N·rate⌋ of the first N.
        ((n + 1) as f64 * self.rate).floor() > (n as f64 * self.rate).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Filters {
        #[derive(Deserialize)]
        struct Table {
            filters: Vec<FilterConfig>,
        }
        let table: Table = toml::from_str(toml_text).unwrap();
        for (i, rule) in table.filters.iter().enumerate() {
            let errors = rule.validate(&format!("filters[{i}]"));
            assert!(errors.is_empty(), "{errors:?}");
        }
        Filters::new(&table.filters)
    }

    fn event(level: Option<Level>, message: &str) -> Event {
        Event {
            time_ms: 0,
            message: message.into(),
            level,
            container: None,
            request_id: None,
            ack: None,
        }
    }

    #[test]
    fn drop_by_level_and_by_field_regex() {
        let filters = rules(
            r#"
            [[filters]]
            action = "drop"
            levels = ["debug", "trace"]
            [[filters]]
            action = "drop"
            field = "http.path"
            regex = "^/health"
            "#,
        );
        assert!(!filters.admits(&event(Some(Level::Debug), "{}")));
        assert!(!filters.admits(&event(Some(Level::Trace), "x")));
        assert!(filters.admits(&event(Some(Level::Info), "x")));
        assert!(filters.admits(&event(None, "x")), "no level: not matched");
        let health = r#"{"http":{"path":"/health/db"}}"#;
        assert!(!filters.admits(&event(Some(Level::Info), health)));
        let api = r#"{"http":{"path":"/api/users"},"note":"/health"}"#;
        assert!(
            filters.admits(&event(Some(Level::Info), api)),
            "other field"
        );
        assert!(
            filters.admits(&event(None, "/health as plain text")),
            "not JSON"
        );
    }

    #[test]
    fn keep_drops_everything_else_and_regex_alone_reads_the_line() {
        let filters = rules(
            r#"
            [[filters]]
            action = "keep"
            regex = "(?i)payment"
            "#,
        );
        assert!(filters.admits(&event(None, "PAYMENT failed")));
        assert!(filters.admits(&event(Some(Level::Info), r#"{"msg":"payment ok"}"#)));
        assert!(!filters.admits(&event(Some(Level::Error), "disk full")));
    }

    #[test]
    fn sampling_keeps_the_exact_fraction_and_never_samples_errors_by_default() {
        let filters = rules(
            r#"
            [[filters]]
            action = "sample"
            levels = ["debug", "error"]
            rate = 0.1
            "#,
        );
        let kept = (0..1000)
            .filter(|_| filters.admits(&event(Some(Level::Debug), "d")))
            .count();
        assert_eq!(kept, 100);
        assert!((0..50).all(|_| filters.admits(&event(Some(Level::Error), "e"))));
        assert!((0..50).all(|_| filters.admits(&event(Some(Level::Info), "i"))));

        let all = rules(
            r#"
            [[filters]]
            action = "sample"
            levels = ["error"]
            rate = 0.5
            sample_errors = true
            "#,
        );
        let kept = (0..100)
            .filter(|_| all.admits(&event(Some(Level::Error), "e")))
            .count();
        assert_eq!(kept, 50);
    }

    #[test]
    fn validation_names_every_problem() {
        let config: FilterConfig = toml::from_str(
            r#"
            action = "shred"
            levels = ["verbose"]
            field = "a..b"
            rate = 2.0
            sample_errors = true
            "#,
        )
        .unwrap();
        let errors = config.validate("pipeline.filters[3]").join("\n");
        for expected in [
            "pipeline.filters[3].action",
            "pipeline.filters[3].levels",
            "pipeline.filters[3].field: a dotted path",
            "pipeline.filters[3].field: needs `regex`",
            "pipeline.filters[3]: `rate` and `sample_errors`",
        ] {
            assert!(errors.contains(expected), "{expected} in:\n{errors}");
        }
        let config: FilterConfig =
            toml::from_str("action = \"sample\"\nregex = \"(\"\nrate = 0.5").unwrap();
        let errors = config.validate("f").join("\n");
        assert!(errors.contains("f.regex: not a valid"), "{errors}");
        let config: FilterConfig = toml::from_str("action = \"drop\"").unwrap();
        assert!(config.validate("f")[0].contains("needs `levels` or `regex`"));
        let config: FilterConfig =
            toml::from_str("action = \"sample\"\nlevels=[\"debug\"]").unwrap();
        assert!(config.validate("f")[0].contains("f.rate"));
    }
}

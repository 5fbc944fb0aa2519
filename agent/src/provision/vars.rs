//! Placeholders: `${Name}` in any string of a definition, filled from the vars file (a flat
//! JSON object of strings, e.g. `provision/dev.json`) and `--var Name=value` flags, which
//! win. A value may refer to other variables (`"Cluster": "${Project}-${Environment}"`).
//!
//! All-capital names (`${LAST}`, `${MAX}`, `${DATAPOINT_COUNT}`, ...) and `${PROP('...')}`
//! are CloudWatch's own dynamic labels and are left alone, which is why variable names must
//! contain a lower-case letter.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{Location, MARKER, Problem};

/// How many rounds of variables referring to variables are resolved.
const MAX_DEPTH: usize = 8;

/// Variables `plan` and `apply` find out themselves when neither the vars file nor `--var`
/// gives them: the account (STS GetCallerIdentity) and the Region (the client's).
pub const DISCOVERABLE: [&str; 2] = ["AccountId", "Region"];

/// What happens to [`DISCOVERABLE`] variables that the vars file and `--var` leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Discovery {
    /// Every placeholder must be filled.
    #[default]
    Strict,
    /// Offline (`validate`): they may stay unfilled; `plan` and `apply` will find them.
    Deferred,
    /// Found values (name, value), used where the vars give none; the rest is strict.
    Found(Vec<(String, String)>),
}

/// The variables of one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    values: BTreeMap<String, String>,
    /// Where they came from, for problem reports.
    source: String,
    /// Placeholders that may stay unfilled ([`Discovery::Deferred`]).
    deferred: &'static [&'static str],
}

impl Vars {
    /// Reads `file` (if any), sets `Environment` from `env` (if any), then applies
    /// `overrides` (`KEY=VALUE`); problems go to `problems`.
    pub fn load(
        file: Option<&Path>,
        env: Option<&str>,
        overrides: &[String],
        problems: &mut Vec<Problem>,
    ) -> Self {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            let name = path.display().to_string();
            match std::fs::read_to_string(path) {
                Err(error) => problems.push(Problem {
                    file: name,
                    location: Location::File,
                    message: format!("cannot read the vars file: {error}"),
                }),
                Ok(text) => {
                    if let Some(value) = super::parse(&name, &text, problems) {
                        read_object(&name, value, &mut values, problems);
                    }
                }
            }
        }
        if let Some(env) = env {
            values.insert("Environment".to_owned(), env.to_owned());
        }
        for item in overrides {
            match item.split_once('=') {
                Some((key, value)) if is_name(key) => {
                    values.insert(key.to_owned(), value.to_owned());
                }
                _ => problems.push(Problem {
                    file: "--var".to_owned(),
                    location: Location::File,
                    message: format!(
                        "{item:?} is not KEY=VALUE with a KEY of letters, digits and _ \
                         (at least one lower-case)"
                    ),
                }),
            }
        }
        let source = file.map_or_else(|| "--var".to_owned(), |p| p.display().to_string());
        let mut vars = Self {
            values,
            source,
            deferred: &[],
        };
        vars.resolve();
        vars
    }

    /// Applies `discovery`: found values fill what the vars leave out; deferred names may
    /// stay unfilled.
    pub fn discover(mut self, discovery: &Discovery) -> Self {
        match discovery {
            Discovery::Strict => {}
            Discovery::Deferred => self.deferred = &DISCOVERABLE,
            Discovery::Found(found) => {
                for (name, value) in found {
                    self.values
                        .entry(name.clone())
                        .or_insert_with(|| value.clone());
                }
                self.resolve();
            }
        }
        self
    }

    /// A vars set from pairs (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut vars = Self {
            values: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            source: "vars".to_owned(),
            deferred: &[],
        };
        vars.resolve();
        vars
    }

    /// A variable's value (after resolving references to other variables).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Resolves values that refer to other variables; what cannot be resolved stays as
    /// `${Name}` and is reported where it is used.
    fn resolve(&mut self) {
        for _ in 0..MAX_DEPTH {
            let snapshot = self.values.clone();
            let mut changed = false;
            for value in self.values.values_mut() {
                let filled = substitute(value, &snapshot);
                if filled != *value {
                    *value = filled;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// `<Project>-<Environment>-agent-`, the prefix of every managed name.
    pub fn prefix(&self, problems: &mut Vec<Problem>) -> Option<String> {
        let mut part = |key: &str, valid: fn(&str) -> bool, rule: &str| match self.get(key) {
            Some(value) if valid(value) => Some(value.to_owned()),
            Some(value) => {
                problems.push(Problem {
                    file: self.source.clone(),
                    location: Location::Path(super::validate::child("$", key)),
                    message: format!("{value:?}: {rule}"),
                });
                None
            }
            None => {
                problems.push(Problem {
                    file: self.source.clone(),
                    location: Location::Path(super::validate::child("$", key)),
                    message: format!(
                        "not set (the vars file or --var {key}=...): every name starts with \
                         <Project>-<Environment>-{MARKER}-"
                    ),
                });
                None
            }
        };
        let project = part(
            "Project",
            |v| {
                let mut chars = v.chars();
                chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && (2..=16).contains(&v.len())
                    && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !v.split('-').any(|segment| segment == MARKER)
            },
            // With no `agent` segment in the project and no dash in the environment, the
            // first `-agent-` of a name ends its prefix: no other project or environment's
            // prefix can start with ours, so `--prune` never reaches another stack.
            "2-16 lower-case letters, digits or dashes, starting with a letter, with no \"agent\" \
             segment (Terraform's project)",
        );
        let environment = part(
            "Environment",
            |v| {
                !v.is_empty()
                    && v.len() <= 32
                    && v != MARKER
                    && v.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            },
            "1-32 lower-case letters or digits (no dashes), not \"agent\"",
        );
        Some(format!("{}-{}-{MARKER}-", project?, environment?))
    }

    /// Fills every placeholder in the strings of `value`; reports the ones that stay
    /// unfilled with their JSON path.
    pub fn fill(&self, value: &mut Value, file: &str, problems: &mut Vec<Problem>) {
        self.fill_at(value, "$", file, problems);
    }

    fn fill_at(&self, value: &mut Value, path: &str, file: &str, problems: &mut Vec<Problem>) {
        match value {
            Value::String(text) => {
                let filled = substitute(text, &self.values);
                for name in placeholders(&filled)
                    .into_iter()
                    .filter(|name| !self.deferred.contains(name))
                {
                    problems.push(Problem {
                        file: file.to_owned(),
                        location: Location::Path(path.to_owned()),
                        message: format!(
                            "unfilled placeholder ${{{name}}} (set it in the vars file or with \
                             --var {name}=...)"
                        ),
                    });
                }
                *text = filled;
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.fill_at(item, &format!("{path}[{i}]"), file, problems);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.fill_at(item, &super::validate::child(path, key), file, problems);
                }
            }
            _ => {}
        }
    }
}

fn read_object(
    file: &str,
    value: Value,
    values: &mut BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    let Value::Object(map) = value else {
        problems.push(Problem {
            file: file.to_owned(),
            location: Location::Path("$".to_owned()),
            message: "a vars file is a JSON object of strings".to_owned(),
        });
        return;
    };
    for (key, value) in map {
        let location = Location::Path(super::validate::child("$", &key));
        match value {
            Value::String(text) if is_name(&key) => {
                values.insert(key, text);
            }
            Value::String(_) => problems.push(Problem {
                file: file.to_owned(),
                location,
                message: "a variable name is letters, digits and _, with at least one \
                          lower-case letter (all-capital names are CloudWatch's labels)"
                    .to_owned(),
            }),
            _ => problems.push(Problem {
                file: file.to_owned(),
                location,
                message: "must be a string".to_owned(),
            }),
        }
    }
}

/// A variable name: `[A-Za-z_][A-Za-z0-9_]*` with a lower-case letter.
fn is_name(name: &str) -> bool {
    is_identifier(name) && name.chars().any(|c| c.is_ascii_lowercase())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Each `${Name}` of `text` as (start, end, name), CloudWatch's dynamic labels excluded.
fn spans(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(offset) = text[from..].find("${") {
        let start = from + offset;
        let rest = &text[start + 2..];
        match rest.find('}') {
            Some(len) if is_name(&rest[..len]) => {
                out.push((start, start + 2 + len + 1, &rest[..len]));
                from = start + 2 + len + 1;
            }
            _ => from = start + 2,
        }
    }
    out
}

/// The placeholder names left in `text`.
pub(super) fn placeholders(text: &str) -> Vec<&str> {
    spans(text).into_iter().map(|(_, _, name)| name).collect()
}

/// `text` with every known `${Name}` replaced (one pass: inserted text is not rescanned).
fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, name) in spans(text) {
        if let Some(value) = values.get(name) {
            out.push_str(&text[last..start]);
            out.push_str(value);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

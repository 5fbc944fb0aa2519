//! What exists (read under the managed prefix only) against what the files define: a change
//! per resource. The comparison is pure; only [`fetch`] calls CloudWatch.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::{AlarmSpec, Api, Definitions, ProvisionError};

/// Changed paths listed per dashboard before "and N more".
const MAX_LISTED_PATHS: usize = 6;

/// What CloudWatch holds under the managed prefix.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Dashboard name → body (read only for the dashboards the files define).
    pub dashboards: BTreeMap<String, Option<String>>,
    /// Alarm name → its definition as CloudWatch describes it.
    pub alarms: BTreeMap<String, AlarmSpec>,
}

/// Reads what exists under `definitions.prefix`.
pub async fn fetch(api: &mut Api, definitions: &Definitions) -> Result<Current, ProvisionError> {
    let prefix = definitions.prefix.as_str();
    let mut current = Current::default();
    // The prefix filter is CloudWatch's; checking it again here keeps "nothing outside the
    // prefix is ever touched" true whatever the service answers.
    for name in api.list_dashboards(prefix).await? {
        if !name.starts_with(prefix) {
            continue;
        }
        let body = if definitions.dashboards.iter().any(|d| d.name == name) {
            api.get_dashboard(&name).await?
        } else {
            None
        };
        current.dashboards.insert(name, body);
    }
    for alarm in api.describe_alarms(prefix).await? {
        let spec = AlarmSpec::from_sdk(&alarm);
        if spec.alarm_name.starts_with(prefix) {
            current.alarms.insert(spec.alarm_name.clone(), spec);
        }
    }
    Ok(current)
}

/// Dashboard or alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CloudWatch dashboard.
    Dashboard,
    /// A metric alarm.
    Alarm,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Dashboard => "dashboard",
            Self::Alarm => "alarm",
        })
    }
}

/// What happens to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Defined, absent.
    Create,
    /// Defined and present, different: the changed keys (alarm fields, dashboard paths).
    Update(Vec<String>),
    /// Defined and present, the same.
    Unchanged,
    /// Present, managed, no longer defined, and `--prune` given.
    Delete,
    /// Present, managed, no longer defined, kept (no `--prune`).
    Orphan,
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dashboard or alarm.
    pub kind: Kind,
    /// Full name.
    pub name: String,
    /// What happens.
    pub action: Action,
}

/// Every change, dashboards first, each kind in file order then the undefined ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The managed prefix.
    pub prefix: String,
    /// One entry per resource.
    pub changes: Vec<Change>,
}

impl Plan {
    /// Whether applying would call anything but reads.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| {
            matches!(
                c.action,
                Action::Create | Action::Update(_) | Action::Delete
            )
        })
    }

    /// How many changes match `pick`.
    pub fn count(&self, pick: impl Fn(&Action) -> bool) -> usize {
        self.changes.iter().filter(|c| pick(&c.action)).count()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Plan for {}*:", self.prefix)?;
        for change in &self.changes {
            let (mark, verb) = match &change.action {
                Action::Create => ("+", "create"),
                Action::Update(_) => ("~", "update"),
                Action::Unchanged => (" ", "unchanged"),
                Action::Delete => ("-", "delete"),
                Action::Orphan => ("?", "undefined"),
            };
            write!(f, "  {mark} {verb:<9} {:<9} {}", change.kind, change.name)?;
            match &change.action {
                Action::Update(keys) => writeln!(f, "  ({})", keys.join(", "))?,
                Action::Orphan => writeln!(f, "  (no file defines it; --prune deletes it)")?,
                _ => writeln!(f)?,
            }
        }
        let orphans = self.count(|a| *a == Action::Orphan);
        write!(
            f,
            "Plan: {} to create, {} to update, {} to delete, {} unchanged",
            self.count(|a| *a == Action::Create),
            self.count(|a| matches!(a, Action::Update(_))),
            self.count(|a| *a == Action::Delete),
            self.count(|a| *a == Action::Unchanged),
        )?;
        if orphans > 0 {
            write!(f, ", {orphans} undefined kept (without --prune)")?;
        }
        writeln!(f, ".")
    }
}

/// Compares the definitions with what exists.
pub fn plan(definitions: &Definitions, current: &Current, prune: bool) -> Plan {
    let undefined = if prune {
        Action::Delete
    } else {
        Action::Orphan
    };
    let mut changes = Vec::new();
    for dashboard in &definitions.dashboards {
        let action = match current.dashboards.get(&dashboard.name) {
            None | Some(None) => Action::Create,
            Some(Some(body)) => match serde_json::from_str::<Value>(body) {
                Ok(existing) if existing == dashboard.body => Action::Unchanged,
                Ok(existing) => Action::Update(changed_paths(&dashboard.body, &existing)),
                Err(_) => Action::Update(vec!["(the stored body is not JSON)".to_owned()]),
            },
        };
        changes.push(Change {
            kind: Kind::Dashboard,
            name: dashboard.name.clone(),
            action,
        });
    }
    for name in current.dashboards.keys() {
        if !definitions.dashboards.iter().any(|d| &d.name == name) {
            changes.push(Change {
                kind: Kind::Dashboard,
                name: name.clone(),
                action: undefined.clone(),
            });
        }
    }
    for alarm in &definitions.alarms {
        let action = match current.alarms.get(&alarm.spec.alarm_name) {
            None => Action::Create,
            Some(existing) => {
                let changed = alarm.spec.changed_fields(existing);
                if changed.is_empty() {
                    Action::Unchanged
                } else {
                    Action::Update(changed)
                }
            }
        };
        changes.push(Change {
            kind: Kind::Alarm,
            name: alarm.spec.alarm_name.clone(),
            action,
        });
    }
    for name in current.alarms.keys() {
        if !definitions
            .alarms
            .iter()
            .any(|a| &a.spec.alarm_name == name)
        {
            changes.push(Change {
                kind: Kind::Alarm,
                name: name.clone(),
                action: undefined.clone(),
            });
        }
    }
    // Whatever the inputs, nothing outside the prefix is planned.
    changes.retain(|c| c.name.starts_with(&definitions.prefix));
    Plan {
        prefix: definitions.prefix.clone(),
        changes,
    }
}

/// The paths at which two dashboard bodies differ (at most a few, then a count).
pub(super) fn changed_paths(ours: &Value, theirs: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    diff(ours, theirs, String::new(), &mut paths);
    if paths.len() > MAX_LISTED_PATHS {
        let more = paths.len() - MAX_LISTED_PATHS;
        paths.truncate(MAX_LISTED_PATHS);
        paths.push(format!("and {more} more"));
    }
    paths
}

fn diff(ours: &Value, theirs: &Value, path: String, out: &mut Vec<String>) {
    if ours == theirs {
        return;
    }
    let at = |suffix: &str| -> String {
        if path.is_empty() {
            suffix.trim_start_matches('.').to_owned()
        } else {
            format!("{path}{suffix}")
        }
    };
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = at(&format!(".{key}"));
                match b.get(key) {
                    Some(other) => diff(value, other, child, out),
                    None => out.push(child),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(at(&format!(".{key}")));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, at(&format!("[{i}]")), out);
            }
            for i in a.len().min(b.len())..a.len().max(b.len()) {
                out.push(at(&format!("[{i}]")));
            }
        }
        _ => out.push(if path.is_empty() {
            "(body)".to_owned()
        } else {
            path
        }),
    }
}

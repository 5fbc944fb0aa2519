//! Carries out a plan: puts what is new or changed, then deletes what `--prune` planned, one
//! call at a time (the pacing and retries live in `api`). Stops at the first failure; what
//! was done before it is reported, and running apply again finishes the job.

use std::fmt;
use std::io::Write;

use super::{Action, Api, Definitions, Kind, Plan, ProvisionError};

/// What an apply changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Resources created.
    pub created: usize,
    /// Resources replaced with their new definition.
    pub updated: usize,
    /// Resources deleted (`--prune`).
    pub deleted: usize,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Apply complete: {} created, {} updated, {} deleted.",
            self.created, self.updated, self.deleted
        )
    }
}

/// Applies `plan` (made from `definitions`), writing a line per call to `out`.
pub async fn apply(
    api: &mut Api,
    definitions: &Definitions,
    plan: &Plan,
    out: &mut dyn Write,
) -> Result<Applied, ProvisionError> {
    let mut applied = Applied::default();
    let mut delete_dashboards = Vec::new();
    let mut delete_alarms = Vec::new();
    for change in &plan.changes {
        let (verb, counter) = match change.action {
            Action::Create => ("created", &mut applied.created),
            Action::Update(_) => ("updated", &mut applied.updated),
            Action::Delete => {
                match change.kind {
                    Kind::Dashboard => delete_dashboards.push(change.name.clone()),
                    Kind::Alarm => delete_alarms.push(change.name.clone()),
                }
                continue;
            }
            Action::Unchanged | Action::Orphan => continue,
        };
        match change.kind {
            Kind::Dashboard => {
                let Some(dashboard) = definitions
                    .dashboards
                    .iter()
                    .find(|d| d.name == change.name)
                else {
                    continue;
                };
                let body = dashboard.body.to_string();
                for message in api.put_dashboard(&dashboard.name, &body).await? {
                    let _ = writeln!(out, "  warning: dashboard {}: {message}", dashboard.name);
                }
            }
            Kind::Alarm => {
                let Some(alarm) = definitions
                    .alarms
                    .iter()
                    .find(|a| a.spec.alarm_name == change.name)
                else {
                    continue;
                };
                api.put_alarm(&alarm.spec).await?;
            }
        }
        *counter += 1;
        let _ = writeln!(out, "{verb} {} {}", change.kind, change.name);
    }
    // Defence in depth: a delete only ever names a resource under the managed prefix.
    delete_dashboards.retain(|n| n.starts_with(&definitions.prefix));
    delete_alarms.retain(|n| n.starts_with(&definitions.prefix));
    if !delete_dashboards.is_empty() {
        api.delete_dashboards(&delete_dashboards).await?;
        for name in &delete_dashboards {
            let _ = writeln!(out, "deleted dashboard {name}");
        }
        applied.deleted += delete_dashboards.len();
    }
    if !delete_alarms.is_empty() {
        api.delete_alarms(&delete_alarms).await?;
        for name in &delete_alarms {
            let _ = writeln!(out, "deleted alarm {name}");
        }
        applied.deleted += delete_alarms.len();
    }
    Ok(applied)
}

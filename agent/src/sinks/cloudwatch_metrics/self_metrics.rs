//! The sidecar's own health as datums, built like the request datums (pure): counters are the
//! deltas of [`Metrics::snapshot`](crate::metrics::Metrics::snapshot) since the previous
//! period, gauges their value now.
//!
//! Totals go out every period, zero included: a zero is data, so an alarm can tell "nothing
//! dropped" from "no sidecar". The breakdowns by `Reason` or `Outcome` only go out when
//! non-zero, which keeps the number of billed metrics small.

use super::request_builder::{Datum, Shape, Unit, names};
use crate::metrics::{DropReason, RetryReason, SentryOutcome, Snapshot};

/// Point-in-time values that are not counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Bytes of accepted, undelivered events (the memory budget in use), when known.
    pub buffered_bytes: Option<u64>,
    /// Resident set size of the process, when known (Linux).
    pub resident_bytes: Option<u64>,
}

/// A labelled counter: its total, and a datum per label that moved.
struct Breakdown<'a> {
    name: &'static str,
    dimension: &'static str,
    labels: Vec<&'static str>,
    /// Per label: whether it counts in the undimensioned total.
    in_total: Vec<bool>,
    now: &'a [u64],
    before: &'a [u64],
}

/// Every self-metric datum of the period that ended at `timestamp_ms`.
pub fn build(
    previous: &Snapshot,
    current: &Snapshot,
    gauges: Gauges,
    shape: &Shape,
    timestamp_ms: i64,
) -> Vec<Datum> {
    let statics: Vec<(String, String)> = shape
        .static_dimensions
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let datum = |name, unit, dimensions: Vec<(String, String)>, value: u64| Datum {
        name,
        unit,
        dimensions,
        values: vec![(value as f64, 1.0)],
        timestamp_ms,
        storage_resolution: shape.storage_resolution,
    };
    let delta = |now: u64, before: u64| now.saturating_sub(before);
    let sum_delta = |now: &[u64], before: &[u64]| -> u64 {
        now.iter().zip(before).map(|(n, b)| delta(*n, *b)).sum()
    };

    let mut out = vec![
        datum(
            names::EVENTS_IN,
            Unit::Count,
            statics.clone(),
            sum_delta(&current.received_events, &previous.received_events),
        ),
        datum(
            names::EVENTS_OUT,
            Unit::Count,
            statics.clone(),
            delta(current.sent_events, previous.sent_events),
        ),
    ];
    let breakdowns = [
        Breakdown {
            name: names::EVENTS_DROPPED,
            dimension: names::dimensions::REASON,
            labels: DropReason::ALL.iter().map(|r| r.as_str()).collect(),
            // Filtered events are on the dashboard but not in the total the alarm watches.
            in_total: DropReason::ALL.iter().map(|r| r.is_loss()).collect(),
            now: &current.dropped,
            before: &previous.dropped,
        },
        Breakdown {
            name: names::RETRIES,
            dimension: names::dimensions::REASON,
            labels: RetryReason::ALL.iter().map(|r| r.as_str()).collect(),
            in_total: vec![true; RetryReason::ALL.len()],
            now: &current.retries,
            before: &previous.retries,
        },
        Breakdown {
            name: names::SENTRY_EVENTS,
            dimension: names::dimensions::OUTCOME,
            labels: SentryOutcome::ALL.iter().map(|o| o.as_str()).collect(),
            in_total: vec![true; SentryOutcome::ALL.len()],
            now: &current.sentry,
            before: &previous.sentry,
        },
    ];
    for Breakdown {
        name,
        dimension,
        labels,
        in_total,
        now,
        before,
    } in breakdowns
    {
        let total = (now.iter().zip(before).zip(&in_total))
            .filter(|(_, counted)| **counted)
            .map(|((n, b), _)| delta(*n, *b))
            .sum();
        out.push(datum(name, Unit::Count, statics.clone(), total));
        for (label, (n, b)) in labels.iter().zip(now.iter().zip(before)) {
            let value = delta(*n, *b);
            if value > 0 {
                let mut dims = statics.clone();
                dims.push((dimension.to_owned(), (*label).to_owned()));
                out.push(datum(name, Unit::Count, dims, value));
            }
        }
    }
    if let Some(bytes) = gauges.buffered_bytes {
        out.push(datum(
            names::BUFFERED_BYTES,
            Unit::Bytes,
            statics.clone(),
            bytes,
        ));
    }
    if let Some(bytes) = gauges.resident_bytes {
        out.push(datum(names::RESIDENT_MEMORY, Unit::Bytes, statics, bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::emf;
    use super::*;

    fn shape() -> Shape {
        Shape {
            dimensions: vec![],
            static_dimensions: [
                ("Environment".to_owned(), "dev".to_owned()),
                ("Service".to_owned(), "api".to_owned()),
            ]
            .into(),
            storage_resolution: 60,
        }
    }

    fn value(datums: &[Datum], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        datums
            .iter()
            .find(|d| {
                d.name == name
                    && match label {
                        Some((k, v)) => d.dimensions.contains(&(k.to_owned(), v.to_owned())),
                        None => d.dimensions.len() == 2,
                    }
            })
            .map(|d| d.values[0].0)
    }

    #[test]
    fn counters_are_published_as_deltas_with_breakdowns_when_non_zero() {
        let previous = Snapshot {
            received_events: [10, 0, 0, 5, 0],
            sent_events: 12,
            dropped: [1, 0, 0, 0, 0, 10],
            retries: [0; 6],
            sentry: [3, 0, 0, 0, 0, 0],
        };
        let current = Snapshot {
            received_events: [30, 0, 0, 7, 0],
            sent_events: 30,
            dropped: [4, 0, 2, 0, 0, 17],
            retries: [0, 0, 1, 0, 0, 0],
            sentry: [3, 0, 0, 0, 0, 0],
        };
        let gauges = Gauges {
            buffered_bytes: Some(4096),
            resident_bytes: Some(20 << 20),
        };
        let datums = build(&previous, &current, gauges, &shape(), 1_000);

        assert_eq!(value(&datums, names::EVENTS_IN, None), Some(22.0));
        assert_eq!(value(&datums, names::EVENTS_OUT, None), Some(18.0));
        assert_eq!(
            value(&datums, names::EVENTS_DROPPED, None),
            Some(5.0),
            "filtered events are not losses: not in the total the alarm watches"
        );
        assert_eq!(
            value(&datums, names::EVENTS_DROPPED, Some(("Reason", "filtered"))),
            Some(7.0)
        );
        assert_eq!(
            value(&datums, names::EVENTS_DROPPED, Some(("Reason", "too_old"))),
            Some(3.0)
        );
        assert_eq!(
            value(&datums, names::EVENTS_DROPPED, Some(("Reason", "rejected"))),
            Some(2.0)
        );
        assert_eq!(
            value(&datums, names::EVENTS_DROPPED, Some(("Reason", "too_new"))),
            None,
            "no breakdown datum for a zero delta"
        );
        assert_eq!(value(&datums, names::RETRIES, None), Some(1.0));
        assert_eq!(
            value(&datums, names::RETRIES, Some(("Reason", "timeout"))),
            Some(1.0)
        );
        assert_eq!(
            value(&datums, names::SENTRY_EVENTS, None),
            Some(0.0),
            "totals go out even when zero"
        );
        assert_eq!(value(&datums, names::BUFFERED_BYTES, None), Some(4096.0));
        assert_eq!(
            value(&datums, names::RESIDENT_MEMORY, None),
            Some(20.0 * 1024.0 * 1024.0)
        );
        for datum in &datums {
            assert!(
                names::ALL.contains(&datum.name),
                "{} not in the catalog",
                datum.name
            );
            assert_eq!(datum.timestamp_ms, 1_000);
            assert_eq!(
                datum.dimensions[..2],
                shape().static_dimensions.into_iter().collect::<Vec<_>>()[..]
            );
            let unit =
                if datum.name == names::BUFFERED_BYTES || datum.name == names::RESIDENT_MEMORY {
                    Unit::Bytes
                } else {
                    Unit::Count
                };
            assert_eq!(datum.unit, unit, "{}", datum.name);
        }
    }

    #[test]
    fn a_counter_reset_is_not_a_negative_delta() {
        let previous = Snapshot {
            sent_events: 100,
            ..Snapshot::default()
        };
        let datums = build(
            &previous,
            &Snapshot::default(),
            Gauges::default(),
            &shape(),
            1,
        );
        assert_eq!(value(&datums, names::EVENTS_OUT, None), Some(0.0));
        assert!(
            datums
                .iter()
                .all(|d| d.name != names::BUFFERED_BYTES && d.name != names::RESIDENT_MEMORY),
            "unknown gauges are left out"
        );
    }

    #[test]
    fn self_metrics_as_emf_follow_the_spec() {
        let current = Snapshot {
            received_events: [5, 0, 0, 0, 0],
            dropped: [0, 0, 0, 1, 0, 0],
            sentry: [2, 0, 1, 0, 0, 0],
            ..Snapshot::default()
        };
        let gauges = Gauges {
            buffered_bytes: Some(10),
            resident_bytes: Some(10),
        };
        let datums = build(
            &Snapshot::default(),
            &current,
            gauges,
            &shape(),
            1_700_000_000_000,
        );
        let documents = emf::documents(&datums, "Test/Sidecar");
        assert!(!documents.is_empty());
        let mut seen = Vec::new();
        for document in &documents {
            emf::check_against_spec(document).unwrap_or_else(|e| panic!("{e}: {document}"));
            let value: serde_json::Value = serde_json::from_str(document).unwrap();
            for metric in value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
            {
                seen.push(metric["Name"].as_str().unwrap().to_owned());
            }
        }
        for name in [
            names::EVENTS_IN,
            names::EVENTS_OUT,
            names::EVENTS_DROPPED,
            names::RETRIES,
            names::SENTRY_EVENTS,
            names::BUFFERED_BYTES,
            names::RESIDENT_MEMORY,
        ] {
            assert!(
                seen.iter().any(|s| s == name),
                "{name} missing from {seen:?}"
            );
        }
    }
}

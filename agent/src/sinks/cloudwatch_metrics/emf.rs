//! Embedded Metric Format: the same datums as PutMetricData, as JSON log events that
//! CloudWatch Logs turns into metrics (sent with `x-amzn-logs-format: json/emf`).
//!
//! Spec limits kept here: ≤ 100 metrics per directive, ≤ 100 values per metric array,
//! ≤ 9 dimension keys per set (the older limit; config validation enforces it). A
//! distribution (latency, or any metric with counts) is written as CloudWatch's histogram
//! value `{"Values": [...], "Counts": [...], "Max", "Min", "Count", "Sum"}` (what the
//! OpenTelemetry collector's EMF exporter sends), at most 100 pairs per document: its size
//! depends on the number of distinct buckets, never on the number of requests. Documents
//! are then grouped into PutLogEvents calls within that API's limits ([`batches`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::request_builder::{Datum, Unit};

/// Values per metric array.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// Metrics per directive.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Dimension keys per dimension set.
pub const MAX_DIMENSION_KEYS: usize = 9;
/// Events per PutLogEvents call.
pub const MAX_EVENTS_PER_CALL: usize = 10_000;
/// Bytes per PutLogEvents call, counted as Σ(message bytes + [`EVENT_OVERHEAD`]).
pub const MAX_CALL_BYTES: usize = 1_048_576;
/// What PutLogEvents adds to each event's size.
pub const EVENT_OVERHEAD: usize = 26;

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Count => "Count",
        Unit::Milliseconds => "Milliseconds",
        Unit::None => "None",
        Unit::Bytes => "Bytes",
    }
}

/// Per dimension set: metric name → (unit, (value, count) pairs, latest timestamp).
type Groups = BTreeMap<Vec<(String, String)>, BTreeMap<&'static str, (Unit, Vec<(f64, f64)>, i64)>>;

/// A metric's value in a document: a plain number for one value seen once, else the
/// histogram form with its pairs, count, sum, min and max.
fn metric_value(pairs: &[(f64, f64)]) -> Value {
    if let [(value, count)] = pairs
        && *count == 1.0
    {
        return json!(value);
    }
    let count: f64 = pairs.iter().map(|(_, n)| n).sum();
    let sum: f64 = pairs.iter().map(|(v, n)| v * n).sum();
    let min = pairs.iter().map(|(v, _)| *v).fold(f64::INFINITY, f64::min);
    let max = pairs
        .iter()
        .map(|(v, _)| *v)
        .fold(f64::NEG_INFINITY, f64::max);
    json!({
        "Values": pairs.iter().map(|(v, _)| v).collect::<Vec<_>>(),
        "Counts": pairs.iter().map(|(_, n)| n).collect::<Vec<_>>(),
        "Max": max,
        "Min": min,
        "Count": count,
        "Sum": sum,
    })
}

/// One JSON document per dimension set and slice of 100 (value, count) pairs.
pub fn documents(datums: &[Datum], namespace: &str) -> Vec<String> {
    let mut groups: Groups = BTreeMap::new();
    for datum in datums {
        let entry = groups.entry(datum.dimensions.clone()).or_default();
        let (_, pairs, timestamp) =
            entry
                .entry(datum.name)
                .or_insert((datum.unit, Vec::new(), datum.timestamp_ms));
        *timestamp = (*timestamp).max(datum.timestamp_ms);
        pairs.extend(
            datum
                .values
                .iter()
                .filter(|(v, n)| v.is_finite() && n.is_finite() && *n > 0.0),
        );
    }
    let mut out = Vec::new();
    for (dimensions, metrics) in groups {
        let keys: Vec<&str> = dimensions
            .iter()
            .map(|(k, _)| k.as_str())
            .take(MAX_DIMENSION_KEYS)
            .collect();
        // Document i carries the i-th slice of 100 pairs of every metric that has one.
        let slices = metrics
            .values()
            .map(|(_, pairs, _)| pairs.len().div_ceil(MAX_VALUES_PER_METRIC))
            .max()
            .unwrap_or(0);
        for slice in 0..slices {
            let mut root = Map::new();
            for (key, value) in &dimensions {
                root.insert(key.clone(), Value::String(value.clone()));
            }
            let mut definitions = Vec::new();
            let mut timestamp = 0;
            for (name, (unit, pairs, ts)) in &metrics {
                let Some(part) = pairs.chunks(MAX_VALUES_PER_METRIC).nth(slice) else {
                    continue;
                };
                if definitions.len() == MAX_METRICS_PER_DIRECTIVE {
                    break;
                }
                timestamp = timestamp.max(*ts);
                definitions.push(json!({ "Name": name, "Unit": unit_name(*unit) }));
                root.insert((*name).to_owned(), metric_value(part));
            }
            root.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{ "Namespace": namespace, "Dimensions": [keys], "Metrics": definitions }],
                }),
            );
            out.push(Value::Object(root).to_string());
        }
    }
    out
}

/// Groups documents into PutLogEvents calls: ≤ [`MAX_EVENTS_PER_CALL`] events and
/// ≤ [`MAX_CALL_BYTES`] bytes (each event counted with its [`EVENT_OVERHEAD`]), in order.
pub fn batches(documents: Vec<String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for document in documents {
        let size = document.len() + EVENT_OVERHEAD;
        match out.last_mut() {
            Some(batch) if batch.len() < MAX_EVENTS_PER_CALL && bytes + size <= MAX_CALL_BYTES => {
                bytes += size;
                batch.push(document);
            }
            _ => {
                bytes = size;
                out.push(vec![document]);
            }
        }
    }
    out
}

/// Checks a document against the EMF specification's structural rules.
pub fn check_against_spec(document: &str) -> Result<(), String> {
    let root: Value = serde_json::from_str(document).map_err(|e| e.to_string())?;
    let aws = root.get("_aws").ok_or("no _aws")?;
    aws["Timestamp"]
        .as_i64()
        .filter(|t| *t > 0)
        .ok_or("Timestamp must be a positive integer (ms)")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .ok_or("CloudWatchMetrics must be an array")?;
    for directive in directives {
        let namespace = directive["Namespace"]
            .as_str()
            .ok_or("Namespace must be a string")?;
        if namespace.is_empty() || namespace.len() > 1024 {
            return Err("Namespace length".into());
        }
        for set in directive["Dimensions"]
            .as_array()
            .ok_or("Dimensions must be an array")?
        {
            let set = set.as_array().ok_or("a dimension set must be an array")?;
            if set.len() > MAX_DIMENSION_KEYS {
                return Err("more than 9 dimension keys".into());
            }
            for key in set {
                let key = key.as_str().ok_or("dimension keys are strings")?;
                root.get(key)
                    .and_then(Value::as_str)
                    .ok_or(format!("dimension {key} must be a string at the root"))?;
            }
        }
        let metrics = directive["Metrics"]
            .as_array()
            .ok_or("Metrics must be an array")?;
        if metrics.len() > MAX_METRICS_PER_DIRECTIVE {
            return Err("more than 100 metrics".into());
        }
        for metric in metrics {
            let name = metric["Name"]
                .as_str()
                .ok_or("metric Name must be a string")?;
            let value = root
                .get(name)
                .ok_or(format!("metric {name} has no value at the root"))?;
            let numbers = |v: &Value| {
                v.as_array().is_some_and(|items| {
                    items.len() <= MAX_VALUES_PER_METRIC
                        && items.iter().all(|v| v.as_f64().is_some_and(f64::is_finite))
                })
            };
            let finite = |v: &Value| v.as_f64().is_some_and(f64::is_finite);
            let ok = match value {
                Value::Number(_) => finite(value),
                Value::Array(_) => numbers(value),
                Value::Object(histogram) => {
                    let values = &histogram.get("Values").cloned().unwrap_or_default();
                    let counts = &histogram.get("Counts").cloned().unwrap_or_default();
                    numbers(values)
                        && numbers(counts)
                        && values.as_array().map(Vec::len) == counts.as_array().map(Vec::len)
                        && ["Max", "Min", "Count", "Sum"]
                            .iter()
                            .all(|k| histogram.get(*k).is_some_and(finite))
                        && histogram.len() == 6
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "metric {name} must be a number, an array of at most 100 numbers or \
                     {{Values, Counts (at most 100 each), Max, Min, Count, Sum}}"
                ));
            }
            if let Some(unit) = metric.get("Unit") {
                let unit = unit.as_str().ok_or("Unit must be a string")?;
                if ![
                    "Count",
                    "Milliseconds",
                    "None",
                    "Seconds",
                    "Bytes",
                    "Percent",
                ]
                .contains(&unit)
                {
                    return Err(format!("unexpected unit {unit}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::request_builder::names;
    use super::*;

    fn datum(name: &'static str, unit: Unit, values: Vec<(f64, f64)>) -> Datum {
        Datum {
            name,
            unit,
            dimensions: vec![
                ("Service".into(), "api".into()),
                ("Route".into(), "/x".into()),
            ],
            values,
            timestamp_ms: 1_700_000_000_000,
            storage_resolution: 60,
        }
    }

    /// Σ counts of `name` over the documents (a plain number counts once).
    fn total_count(docs: &[String], name: &str) -> f64 {
        docs.iter()
            .map(|doc| {
                let value: Value = serde_json::from_str(doc).unwrap();
                match &value[name] {
                    Value::Object(h) => h["Counts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_f64().unwrap())
                        .sum(),
                    Value::Null => 0.0,
                    _ => 1.0,
                }
            })
            .sum()
    }

    #[test]
    fn documents_follow_the_spec_and_carry_every_value() {
        // 250 distinct latencies seen 10 times each: 2,500 requests in three documents.
        let latency: Vec<(f64, f64)> = (1..=250).map(|i| (i as f64, 10.0)).collect();
        let datums = vec![
            datum(names::REQUEST_COUNT, Unit::Count, vec![(2500.0, 1.0)]),
            datum(names::ERROR_COUNT, Unit::Count, vec![(3.0, 1.0)]),
            datum(names::LATENCY, Unit::Milliseconds, latency),
        ];
        let docs = documents(&datums, "Test/Api");
        assert_eq!(docs.len(), 3, "250 pairs need three documents of ≤ 100");
        for doc in &docs {
            check_against_spec(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
            let value: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(value["Service"], "api");
        }
        assert_eq!(total_count(&docs, "Latency"), 2500.0);
        let first: Value = serde_json::from_str(&docs[0]).unwrap();
        let latency = &first["Latency"];
        assert_eq!(
            (latency["Min"].as_f64(), latency["Max"].as_f64()),
            (Some(1.0), Some(100.0))
        );
        assert_eq!(latency["Count"], 1000.0);
        assert_eq!(latency["Sum"], 10.0 * 5050.0);
        let first: Value = serde_json::from_str(&docs[0]).unwrap();
        assert_eq!(first["RequestCount"], 2500.0);
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service", "Route"]])
        );
    }

    #[test]
    fn a_million_requests_and_a_1e12_histogram_stay_small_and_within_the_limits() {
        // Regression: each latency was repeated by its count (1M requests → 1M numbers, and
        // an OTLP count of 1e12 allocated without bound), and every document went in one
        // PutLogEvents call however large.
        use super::super::request_builder::{Period, Shape, build};
        use crate::request_metrics::{Aggregator, RequestTiming};
        let mut aggregator = Aggregator::new(50);
        for i in 0..1_000_000u64 {
            aggregator.record(RequestTiming {
                route: format!("/r{}", i % 40),
                method: if i % 3 == 0 { "GET" } else { "POST" }.into(),
                status: if i % 50 == 0 { 500 } else { 200 },
                latency_ms: 0.01 + (i % 100_000) as f64 * 0.37,
                count: 1,
            });
        }
        aggregator.record(RequestTiming {
            route: "/otlp".into(),
            method: "GET".into(),
            status: 200,
            latency_ms: 12.0,
            count: 1_000_000_000_000,
        });
        let period = Period {
            requests: aggregator.take_period(),
            heartbeat: false,
            ..Period::default()
        };
        let shape = Shape {
            dimensions: vec!["Route".into(), "Method".into()],
            static_dimensions: [("Service".to_owned(), "api".to_owned())].into(),
            storage_resolution: 60,
        };
        let datums = build(&period, &shape, 1_700_000_000_000);
        let docs = documents(&datums, "Test/Api");
        let bytes: usize = docs.iter().map(String::len).sum();
        assert!(bytes < 16 << 20, "{bytes} bytes of documents");
        for doc in &docs {
            check_against_spec(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        }
        let rollup: Vec<String> = docs
            .iter()
            .filter(|d| !d.contains("\"Route\""))
            .cloned()
            .collect();
        let expected = 1_000_000.0 + crate::request_metrics::MAX_TIMING_COUNT as f64;
        assert_eq!(total_count(&rollup, "Latency"), expected);
        let calls = batches(docs.clone());
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), docs.len());
        for call in &calls {
            assert!(call.len() <= MAX_EVENTS_PER_CALL);
            let size: usize = call.iter().map(|d| d.len() + EVENT_OVERHEAD).sum();
            assert!(size <= MAX_CALL_BYTES, "{size}");
        }
        // Measured: 409 documents, 0.95 MB, one call (bounded by buckets, not requests).
        assert!(
            docs.len() < 1_000 && bytes < 2 << 20,
            "{} docs, {bytes} B",
            docs.len()
        );
    }

    #[test]
    fn batches_respect_the_event_and_byte_limits() {
        let small = vec!["x".repeat(10); 25_000];
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10_000, 10_000, 5_000]);
        let big = vec!["y".repeat(300_000); 7];
        let sizes: Vec<usize> = batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
    }

    #[test]
    fn the_checker_rejects_broken_documents() {
        for bad in [
            r#"{"x":1}"#,
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Route"]],"Metrics":[{"Name":"M"}]}]},"M":1}"#,
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":"1"}"#,
        ] {
            assert!(check_against_spec(bad).is_err(), "{bad}");
        }
    }
}

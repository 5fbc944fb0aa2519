//! Embedded Metric Format: the same datums as PutMetricData, as JSON log events that
//! CloudWatch Logs turns into metrics (sent with `x-amzn-logs-format: json/emf`).
//!
//! Spec limits kept here: ≤ 100 metrics per directive, ≤ 100 values per metric array,
//! ≤ 9 dimension keys per set (the older limit; config validation enforces it). EMF has no
//! value counts, so a latency distribution is written as its (bucket-representative) values
//! repeated by count, 100 per document.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::request_builder::{Datum, Unit};

/// Values per metric array.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// Metrics per directive.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Dimension keys per dimension set.
pub const MAX_DIMENSION_KEYS: usize = 9;

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Count => "Count",
        Unit::Milliseconds => "Milliseconds",
        Unit::None => "None",
        Unit::Bytes => "Bytes",
    }
}

/// Per dimension set: metric name → (unit, values expanded by count, latest timestamp).
type Groups = BTreeMap<Vec<(String, String)>, BTreeMap<&'static str, (Unit, Vec<f64>, i64)>>;

/// One JSON document per dimension set and slice of values.
pub fn documents(datums: &[Datum], namespace: &str) -> Vec<String> {
    // Group by dimension set; each metric's values expanded by count.
    let mut groups: Groups = BTreeMap::new();
    for datum in datums {
        let entry = groups.entry(datum.dimensions.clone()).or_default();
        let (_, values, timestamp) =
            entry
                .entry(datum.name)
                .or_insert((datum.unit, Vec::new(), datum.timestamp_ms));
        *timestamp = (*timestamp).max(datum.timestamp_ms);
        for (value, count) in &datum.values {
            // Counts of 1 for the single-value metrics; the repetition is bounded by the
            // period's request count for latencies.
            for _ in 0..(*count as u64).max(1) {
                values.push(*value);
            }
        }
    }
    let mut out = Vec::new();
    for (dimensions, metrics) in groups {
        let keys: Vec<&str> = dimensions
            .iter()
            .map(|(k, _)| k.as_str())
            .take(MAX_DIMENSION_KEYS)
            .collect();
        // Document i carries the i-th slice of 100 values of every metric that has one.
        let slices = metrics
            .values()
            .map(|(_, values, _)| values.len().div_ceil(MAX_VALUES_PER_METRIC))
            .max()
            .unwrap_or(0);
        for slice in 0..slices {
            let mut root = Map::new();
            for (key, value) in &dimensions {
                root.insert(key.clone(), Value::String(value.clone()));
            }
            let mut definitions = Vec::new();
            let mut timestamp = 0;
            for (name, (unit, values, ts)) in &metrics {
                let part = values.chunks(MAX_VALUES_PER_METRIC).nth(slice);
                let Some(part) = part else { continue };
                if definitions.len() == MAX_METRICS_PER_DIRECTIVE {
                    break;
                }
                timestamp = timestamp.max(*ts);
                definitions.push(json!({ "Name": name, "Unit": unit_name(*unit) }));
                let value = if part.len() == 1 {
                    json!(part[0])
                } else {
                    json!(part)
                };
                root.insert((*name).to_owned(), value);
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
            let ok = match value {
                Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
                Value::Array(items) => {
                    items.len() <= MAX_VALUES_PER_METRIC
                        && items.iter().all(|v| v.as_f64().is_some_and(f64::is_finite))
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "metric {name} must be a number or an array of at most 100 numbers"
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

    #[test]
    fn documents_follow_the_spec_and_carry_every_value() {
        let latency: Vec<(f64, f64)> = (1..=30).map(|i| (i as f64, 10.0)).collect(); // 300 requests
        let datums = vec![
            datum(names::REQUEST_COUNT, Unit::Count, vec![(300.0, 1.0)]),
            datum(names::ERROR_COUNT, Unit::Count, vec![(3.0, 1.0)]),
            datum(names::LATENCY, Unit::Milliseconds, latency),
        ];
        let docs = documents(&datums, "Test/Api");
        assert_eq!(
            docs.len(),
            3,
            "300 latency values need three documents of 100"
        );
        let mut latencies = 0;
        for doc in &docs {
            check_against_spec(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
            let value: Value = serde_json::from_str(doc).unwrap();
            latencies += value["Latency"].as_array().map_or(1, Vec::len);
            assert_eq!(value["Service"], "api");
        }
        assert_eq!(latencies, 300);
        let first: Value = serde_json::from_str(&docs[0]).unwrap();
        assert_eq!(first["RequestCount"], 300.0);
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service", "Route"]])
        );
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

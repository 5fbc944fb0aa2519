//! Pure construction of PutMetricData datums from a period's aggregates, within the API's
//! limits (named here): ≤ 1,000 datums per call, ≤ 150 distinct values per datum, ≤ 30
//! dimensions, no NaN or infinity, magnitudes within 8.5e-109..2^360 (or zero): one value
//! CloudWatch refuses fails the whole call, so [`sanitize`] fixes them before any call.

use std::collections::{BTreeMap, HashMap};

use crate::request_metrics::histogram::LogHistogram;
use crate::request_metrics::{Series, TimingKey};
use crate::uptime::ProbeResult;

/// Datums per PutMetricData call.
pub const MAX_DATUMS_PER_CALL: usize = 1_000;
/// Distinct values per datum (`Values`/`Counts`).
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Largest magnitude CloudWatch accepts (2^360); larger values are clamped to it.
pub const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833_2e108;
/// Smallest non-zero magnitude CloudWatch accepts (about 8.5e-109); smaller values become 0.
pub const MIN_MAGNITUDE: f64 = 8.5e-109;

/// Metric names, one table for the emitters and for `agent provision validate`, which
/// rejects a dashboard or alarm charting a name of the sidecar's namespace that is not here.
pub use crate::metrics::names::cloudwatch as names;

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Count
    Count,
    /// Milliseconds
    Milliseconds,
    /// None
    None,
    /// Bytes
    Bytes,
}

/// One datum, independent of the SDK (the service converts it).
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// Metric name (from [`names`]).
    pub name: &'static str,
    /// Unit.
    pub unit: Unit,
    /// (name, value) pairs, static dimensions first.
    pub dimensions: Vec<(String, String)>,
    /// Distinct values with their counts (≤ [`MAX_VALUES_PER_DATUM`]).
    pub values: Vec<(f64, f64)>,
    /// Period end, ms since the epoch.
    pub timestamp_ms: i64,
    /// 1 for high resolution (periods under 60 s), else 60.
    pub storage_resolution: i32,
}

/// What one period produced.
#[derive(Debug, Default)]
pub struct Period {
    /// Request aggregates by key.
    pub requests: HashMap<TimingKey, Series>,
    /// Probe results by endpoint.
    pub probes: BTreeMap<String, Vec<ProbeResult>>,
    /// Whether to publish the heartbeat.
    pub heartbeat: bool,
}

/// How to shape the datums.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Per-request dimensions kept: any of Route, Method, StatusClass.
    pub dimensions: Vec<String>,
    /// Fixed dimensions on every datum.
    pub static_dimensions: BTreeMap<String, String>,
    /// 1 (high resolution) or 60.
    pub storage_resolution: i32,
}

/// Builds every datum of a period. Series are merged over the dimensions not kept.
pub fn build(period: &Period, shape: &Shape, timestamp_ms: i64) -> Vec<Datum> {
    let statics: Vec<(String, String)> = shape
        .static_dimensions
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut grouped: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for (key, series) in &period.requests {
        let mut dims = statics.clone();
        for dimension in &shape.dimensions {
            let value = match dimension.as_str() {
                "Route" => key.route.clone(),
                "Method" => key.method.clone(),
                "StatusClass" => key.status_class.to_owned(),
                _ => continue,
            };
            dims.push((dimension.clone(), value));
        }
        let merged = grouped.entry(dims).or_default();
        merged.count += series.count;
        merged.errors += series.errors;
        merged.latency.merge(&series.latency);
    }
    // The service-wide series (static dimensions only), unless the kept dimensions are
    // already just those: alarms need one series and cannot SEARCH over routes.
    if !grouped.is_empty() && !grouped.contains_key(&statics) {
        let mut total = Series::default();
        for series in grouped.values() {
            total.count += series.count;
            total.errors += series.errors;
            total.latency.merge(&series.latency);
        }
        grouped.insert(statics.clone(), total);
    }
    let datum = |name, unit, dimensions: Vec<(String, String)>, values: Vec<(f64, f64)>| Datum {
        name,
        unit,
        dimensions,
        values,
        timestamp_ms,
        storage_resolution: shape.storage_resolution,
    };
    let mut out = Vec::new();
    for (dims, series) in grouped {
        out.push(datum(
            names::REQUEST_COUNT,
            Unit::Count,
            dims.clone(),
            vec![(series.count as f64, 1.0)],
        ));
        out.push(datum(
            names::ERROR_COUNT,
            Unit::Count,
            dims.clone(),
            vec![(series.errors as f64, 1.0)],
        ));
        for chunk in latency_values(&series.latency).chunks(MAX_VALUES_PER_DATUM) {
            out.push(datum(
                names::LATENCY,
                Unit::Milliseconds,
                dims.clone(),
                chunk.to_vec(),
            ));
        }
    }
    for (endpoint, results) in &period.probes {
        let mut dims = statics.clone();
        dims.push((names::dimensions::ENDPOINT.into(), endpoint.clone()));
        let healthy = results.iter().filter(|r| r.healthy).count() as f64;
        let failed = results.len() as f64 - healthy;
        let values: Vec<(f64, f64)> = [(1.0, healthy), (0.0, failed)]
            .into_iter()
            .filter(|(_, n)| *n > 0.0)
            .collect();
        if !values.is_empty() {
            out.push(datum(names::HEALTH_CHECK, Unit::None, dims.clone(), values));
        }
        let mut latency = LogHistogram::default();
        for result in results {
            latency.record(result.latency_ms);
        }
        for chunk in latency_values(&latency).chunks(MAX_VALUES_PER_DATUM) {
            out.push(datum(
                names::PROBE_LATENCY,
                Unit::Milliseconds,
                dims.clone(),
                chunk.to_vec(),
            ));
        }
    }
    if period.heartbeat {
        out.push(datum(
            names::HEARTBEAT,
            Unit::Count,
            statics,
            vec![(1.0, 1.0)],
        ));
    }
    out
}

fn latency_values(histogram: &LogHistogram) -> Vec<(f64, f64)> {
    histogram
        .values_and_counts()
        .into_iter()
        .filter(|(v, n)| v.is_finite() && *n > 0)
        .map(|(v, n)| (v, n as f64))
        .collect()
}

/// Makes every value and count one CloudWatch accepts: NaN values and non-positive or NaN
/// counts are dropped, infinities and magnitudes beyond [`MAX_MAGNITUDE`] clamped, tiny
/// non-zero values zeroed; a datum left with no value is dropped. Returns how many values
/// were changed or dropped (for `agent_metric_values_clamped_total`).
pub fn sanitize(datums: &mut Vec<Datum>) -> u64 {
    let mut fixed = 0u64;
    for datum in datums.iter_mut() {
        datum.values.retain_mut(|(value, count)| {
            if value.is_nan() || count.is_nan() || *count <= 0.0 {
                fixed += 1;
                return false;
            }
            let clean = if value.abs() > MAX_MAGNITUDE {
                MAX_MAGNITUDE.copysign(*value)
            } else if *value != 0.0 && value.abs() < MIN_MAGNITUDE {
                0.0
            } else {
                *value
            };
            let clean_count = count.min(MAX_MAGNITUDE);
            if clean.to_bits() != value.to_bits() || clean_count != *count {
                fixed += 1;
                (*value, *count) = (clean, clean_count);
            }
            true
        });
    }
    datums.retain(|d| !d.values.is_empty());
    fixed
}

/// Splits datums into calls of at most [`MAX_DATUMS_PER_CALL`].
pub fn calls(datums: Vec<Datum>) -> Vec<Vec<Datum>> {
    let mut out = Vec::new();
    let mut iter = datums.into_iter().peekable();
    while iter.peek().is_some() {
        out.push(iter.by_ref().take(MAX_DATUMS_PER_CALL).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_metrics::{Aggregator, RequestTiming};

    fn shape(dimensions: &[&str]) -> Shape {
        Shape {
            dimensions: dimensions.iter().map(|d| (*d).to_owned()).collect(),
            static_dimensions: [("Service".to_owned(), "api".to_owned())].into(),
            storage_resolution: 60,
        }
    }

    fn period() -> Period {
        let mut aggregator = Aggregator::new(50);
        for i in 0..1000 {
            let status = if i % 10 == 0 { 500 } else { 200 };
            let route = if i % 2 == 0 { "/a" } else { "/b" };
            aggregator.record(RequestTiming {
                route: route.into(),
                method: "GET".into(),
                status,
                latency_ms: 1.0 + i as f64,
                count: 1,
            });
        }
        Period {
            requests: aggregator.take_period(),
            probes: BTreeMap::new(),
            heartbeat: true,
        }
    }

    fn has_route(datum: &Datum) -> bool {
        datum.dimensions.iter().any(|(k, _)| k == "Route")
    }

    #[test]
    fn counts_latencies_and_heartbeat_within_limits() {
        let datums = build(&period(), &shape(&["Route"]), 1_000);
        for per_route in [true, false] {
            let count: f64 = datums
                .iter()
                .filter(|d| d.name == names::REQUEST_COUNT && has_route(d) == per_route)
                .map(|d| d.values[0].0)
                .sum();
            let errors: f64 = datums
                .iter()
                .filter(|d| d.name == names::ERROR_COUNT && has_route(d) == per_route)
                .map(|d| d.values[0].0)
                .sum();
            let latency_count: f64 = datums
                .iter()
                .filter(|d| d.name == names::LATENCY && has_route(d) == per_route)
                .flat_map(|d| d.values.iter().map(|(_, n)| n))
                .sum();
            assert_eq!(
                (count, errors, latency_count),
                (1000.0, 100.0, 1000.0),
                "per route: {per_route}"
            );
        }
        for datum in &datums {
            assert!(datum.values.len() <= MAX_VALUES_PER_DATUM);
            assert!(
                datum
                    .values
                    .iter()
                    .all(|(v, n)| v.is_finite() && n.is_finite())
            );
            assert!(datum.dimensions.len() <= 30);
            assert_eq!(
                datum.dimensions[0],
                ("Service".to_owned(), "api".to_owned())
            );
        }
        // 500 distinct latencies per route need several Latency datums of ≤ 150 values.
        assert!(datums.iter().filter(|d| d.name == names::LATENCY).count() > 2);
        assert_eq!(
            datums.iter().filter(|d| d.name == names::HEARTBEAT).count(),
            1
        );
    }

    #[test]
    fn dropping_a_dimension_merges_series() {
        let by_route = build(&period(), &shape(&["Route", "StatusClass"]), 0);
        let merged = build(&period(), &shape(&[]), 0);
        assert_eq!(
            by_route
                .iter()
                .filter(|d| d.name == names::REQUEST_COUNT)
                .count(),
            4,
            "/a 2xx, /a 5xx (every tenth request is even), /b 2xx and the service-wide series"
        );
        let rollup: Vec<_> = by_route
            .iter()
            .filter(|d| d.name == names::REQUEST_COUNT && !has_route(d))
            .collect();
        assert_eq!(rollup.len(), 1);
        assert_eq!(rollup[0].dimensions, [("Service".into(), "api".into())]);
        assert_eq!(rollup[0].values, [(1000.0, 1.0)]);
        let counts: Vec<_> = merged
            .iter()
            .filter(|d| d.name == names::REQUEST_COUNT)
            .map(|d| d.values[0].0)
            .collect();
        assert_eq!(
            counts,
            [1000.0],
            "no second series when nothing was dropped"
        );
    }

    #[test]
    fn no_requests_no_request_datums() {
        let period = Period {
            heartbeat: true,
            ..Period::default()
        };
        let datums = build(&period, &shape(&["Route"]), 0);
        let emitted: Vec<_> = datums.iter().map(|d| d.name).collect();
        assert_eq!(emitted, [names::HEARTBEAT]);
    }

    #[test]
    fn probes_become_health_checks_per_endpoint() {
        let ok = ProbeResult {
            healthy: true,
            status: Some(200),
            latency_ms: 2.0,
            error: None,
        };
        let bad = ProbeResult {
            healthy: false,
            status: Some(503),
            latency_ms: 4.0,
            error: Some("status 503".into()),
        };
        let period = Period {
            requests: HashMap::new(),
            probes: [
                ("/health".to_owned(), vec![ok.clone(), ok]),
                ("/api/health/redis".to_owned(), vec![bad]),
            ]
            .into(),
            heartbeat: false,
        };
        let datums = build(&period, &shape(&[]), 0);
        let health: Vec<_> = datums
            .iter()
            .filter(|d| d.name == names::HEALTH_CHECK)
            .collect();
        assert_eq!(health.len(), 2);
        let redis = health
            .iter()
            .find(|d| {
                d.dimensions
                    .contains(&("Endpoint".into(), "/api/health/redis".into()))
            })
            .unwrap();
        assert_eq!(redis.values, [(0.0, 1.0)]);
    }

    #[test]
    fn values_cloudwatch_refuses_are_clamped_and_one_bad_datum_keeps_the_others() {
        let datum = |values: Vec<(f64, f64)>| Datum {
            name: names::LATENCY,
            unit: Unit::Milliseconds,
            dimensions: vec![],
            values,
            timestamp_ms: 0,
            storage_resolution: 60,
        };
        let mut datums = vec![
            datum(vec![(1e308, 1.0), (f64::INFINITY, 1.0), (-1e200, 2.0)]),
            datum(vec![(1e-200, 3.0), (5.0, 1.0), (7.0, 1e300)]),
            datum(vec![(f64::NAN, 1.0), (3.0, 0.0), (4.0, f64::NAN)]),
            datum(vec![(2.0, 1.0)]),
        ];
        assert_eq!(sanitize(&mut datums), 8);
        assert_eq!(datums.len(), 3, "the all-bad datum goes, the others stay");
        assert_eq!(
            datums[0].values,
            [
                (MAX_MAGNITUDE, 1.0),
                (MAX_MAGNITUDE, 1.0),
                (-MAX_MAGNITUDE, 2.0)
            ]
        );
        assert_eq!(
            datums[1].values,
            [(0.0, 3.0), (5.0, 1.0), (7.0, MAX_MAGNITUDE)]
        );
        assert_eq!(datums[2].values, [(2.0, 1.0)]);
        for d in &datums {
            for (v, n) in &d.values {
                assert!(v.is_finite() && v.abs() <= 2f64.powi(360));
                assert!(*v == 0.0 || v.abs() >= MIN_MAGNITUDE);
                assert!(n.is_finite() && *n > 0.0);
            }
        }
        assert_eq!(MAX_MAGNITUDE, 2f64.powi(360));
    }

    #[test]
    fn calls_hold_at_most_1000_datums() {
        let datum = Datum {
            name: names::HEARTBEAT,
            unit: Unit::Count,
            dimensions: vec![],
            values: vec![(1.0, 1.0)],
            timestamp_ms: 0,
            storage_resolution: 60,
        };
        let sizes: Vec<_> = calls(vec![datum; 2_500]).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }
}

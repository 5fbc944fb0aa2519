//! Conversion rules, then both transports end to end on loopback.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message as _;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::convert::*;
use super::*;
use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::event::{Level, RawLine};
use crate::pipeline::parse::{ParseFields, parse_rfc3339_ms};
use crate::pipeline::{Batch, Processor};
use crate::request_metrics::{RequestTiming, TimingKey};

// ---------------------------------------------------------------------------------------
// Builders

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(value: &str) -> Value {
    Value::StringValue(value.into())
}

const T0: u64 = 1_544_712_660_000_000_000;

fn span(kind: SpanKind, name: &str, attributes: Vec<KeyValue>, duration_ns: u64) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + duration_ns,
        attributes,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", text("shop"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn timing(route: &str, method: &str, status: u16, latency_ms: f64, count: u64) -> RequestTiming {
    RequestTiming {
        route: route.into(),
        method: method.into(),
        status,
        latency_ms,
        count,
    }
}

fn point(start: u64, time: u64, buckets: &[u64], sum: f64) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: vec![
            kv("http.route", text("/orders/{id}")),
            kv("http.request.method", text("POST")),
            kv("http.response.status_code", Value::IntValue(201)),
        ],
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: buckets.iter().sum(),
        sum: Some(sum),
        bucket_counts: buckets.to_vec(),
        explicit_bounds: vec![0.01, 0.1, 1.0],
        max: Some(3.0),
        ..Default::default()
    }
}

fn metrics(
    name: &str,
    unit: &str,
    temporality: AggregationTemporality,
    points: Vec<HistogramDataPoint>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", text("shop"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: unit.into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: temporality as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text("shop")),
                    kv("container.name", text("web")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn line_json(line: &RawLine) -> Json {
    serde_json::from_slice(&line.bytes).unwrap()
}

// ---------------------------------------------------------------------------------------
// Traces

#[test]
fn server_spans_give_timings_with_every_attribute_spelling() {
    let stable = span(
        SpanKind::Server,
        "GET /users/{id}",
        vec![
            kv("http.route", text("/users/{id}")),
            kv("http.request.method", text("GET")),
            kv("http.response.status_code", Value::IntValue(200)),
        ],
        12_500_000,
    );
    // Legacy names, status as a string, route only in the span name.
    let legacy = span(
        SpanKind::Server,
        "DELETE /carts/{cart}",
        vec![
            kv("http.method", text("DELETE")),
            kv("http.status_code", text("404")),
        ],
        3_000_000,
    );
    let (timings, summary) = span_timings(&traces(vec![stable, legacy]));
    assert_eq!(
        timings,
        [
            timing("/users/{id}", "GET", 200, 12.5, 1),
            timing("/carts/{cart}", "DELETE", 404, 3.0, 1)
        ]
    );
    assert_eq!(
        summary,
        SpanSummary {
            recorded: 2,
            not_server: 0,
            skipped: 0
        }
    );
}

#[test]
fn client_and_internal_spans_are_ignored_and_counted() {
    let attributes = || {
        vec![
            kv("http.request.method", text("GET")),
            kv("http.response.status_code", Value::IntValue(200)),
        ]
    };
    let (timings, summary) = span_timings(&traces(vec![
        span(SpanKind::Client, "GET", attributes(), 1_000_000),
        span(SpanKind::Internal, "render", vec![], 1_000_000),
    ]));
    assert!(timings.is_empty());
    assert_eq!(
        summary,
        SpanSummary {
            recorded: 0,
            not_server: 2,
            skipped: 0
        }
    );
}

#[test]
fn a_raw_path_never_becomes_the_route() {
    let only_path = span(
        SpanKind::Server,
        "GET",
        vec![
            kv("url.path", text("/users/12345")),
            kv("http.target", text("/users/12345?x=1")),
        ],
        1_000_000,
    );
    let (timings, _) = span_timings(&traces(vec![only_path]));
    assert_eq!(timings, [timing(UNKNOWN_ROUTE, "GET", 0, 1.0, 1)]);
}

#[test]
fn non_http_server_spans_and_spans_ending_before_they_start_are_skipped() {
    let grpc = span(
        SpanKind::Server,
        "shop.Cart/Add",
        vec![kv("rpc.system", text("grpc"))],
        1_000_000,
    );
    let mut backwards = span(SpanKind::Server, "GET /a", vec![], 0);
    backwards.end_time_unix_nano = T0 - 1;
    let (timings, summary) = span_timings(&traces(vec![grpc, backwards]));
    assert!(timings.is_empty());
    assert_eq!(summary.skipped, 2);
}

// ---------------------------------------------------------------------------------------
// Metrics

#[test]
fn delta_histogram_buckets_become_weighted_timings_at_their_midpoints() {
    let mut state = CumulativeHistograms::new(0, 10);
    // Bounds 10 ms, 100 ms, 1 s; the overflow bucket is placed at `max` (3 s).
    let request = metrics(
        DURATION_METRIC,
        "s",
        AggregationTemporality::Delta,
        vec![point(T0, T0 + 1, &[2, 0, 3, 1], 4.0)],
    );
    let (timings, summary) = histogram_timings(&request, &mut state);
    assert_eq!(
        timings,
        [
            timing("/orders/{id}", "POST", 201, 5.0, 2),
            timing("/orders/{id}", "POST", 201, 550.0, 3),
            timing("/orders/{id}", "POST", 201, 3000.0, 1),
        ]
    );
    assert_eq!(
        (summary.points, summary.requests, summary.skipped),
        (1, 6, 0)
    );
    assert!(state.is_empty(), "delta points keep no state");
}

#[test]
fn a_histogram_without_buckets_records_its_mean_and_ms_units_are_kept() {
    let mut no_buckets = point(T0, T0 + 1, &[], 0.9);
    no_buckets.count = 3;
    no_buckets.explicit_bounds.clear();
    let request = metrics(
        DURATION_METRIC,
        "ms",
        AggregationTemporality::Delta,
        vec![no_buckets],
    );
    let (timings, _) = histogram_timings(&request, &mut CumulativeHistograms::new(0, 10));
    assert_eq!(timings.len(), 1);
    assert_eq!((timings[0].count, timings[0].status), (3, 201));
    assert!((timings[0].latency_ms - 0.3).abs() < 1e-9);
}

#[test]
fn other_metrics_and_units_are_ignored() {
    let mut state = CumulativeHistograms::new(0, 10);
    let other = metrics(
        "http.client.request.duration",
        "s",
        AggregationTemporality::Delta,
        vec![point(T0, T0 + 1, &[1, 0, 0, 0], 0.0)],
    );
    assert!(histogram_timings(&other, &mut state).0.is_empty());
    let minutes = metrics(
        DURATION_METRIC,
        "min",
        AggregationTemporality::Delta,
        vec![point(T0, T0 + 1, &[1, 0, 0, 0], 0.0)],
    );
    let (timings, summary) = histogram_timings(&minutes, &mut state);
    assert!(timings.is_empty());
    assert_eq!(summary.skipped, 1);
}

#[test]
fn cumulative_histograms_record_only_the_difference_between_exports() {
    let started = T0;
    let mut state = CumulativeHistograms::new(started, 10);
    let export = |buckets: &[u64], time: u64| {
        metrics(
            DURATION_METRIC,
            "s",
            AggregationTemporality::Cumulative,
            vec![point(started + 5, time, buckets, 1.0)],
        )
    };
    // A series that started after the receiver: its first point is all new requests.
    let (first, _) = histogram_timings(&export(&[1, 2, 0, 0], T0 + 10), &mut state);
    assert_eq!(
        first,
        [
            timing("/orders/{id}", "POST", 201, 5.0, 1),
            timing("/orders/{id}", "POST", 201, 55.0, 2)
        ]
    );
    let (second, summary) = histogram_timings(&export(&[1, 5, 1, 0], T0 + 20), &mut state);
    assert_eq!(
        second,
        [
            timing("/orders/{id}", "POST", 201, 55.0, 3),
            timing("/orders/{id}", "POST", 201, 550.0, 1)
        ]
    );
    assert_eq!(summary.requests, 4);
    // The same export again (a retry) adds nothing.
    let (retry, summary) = histogram_timings(&export(&[1, 5, 1, 0], T0 + 20), &mut state);
    assert!(retry.is_empty());
    assert_eq!(summary.skipped, 1);
    assert_eq!(state.len(), 1);
}

#[test]
fn a_cumulative_series_older_than_the_receiver_starts_as_a_baseline() {
    let mut state = CumulativeHistograms::new(T0 + 1_000, 10);
    let export = |buckets: &[u64], time: u64| {
        metrics(
            DURATION_METRIC,
            "s",
            AggregationTemporality::Cumulative,
            vec![point(T0, time, buckets, 1.0)],
        )
    };
    let (first, summary) = histogram_timings(&export(&[100, 100, 0, 0], T0 + 2_000), &mut state);
    assert!(
        first.is_empty(),
        "requests from before the receiver started are not replayed"
    );
    assert_eq!(summary.baselines, 1);
    let (second, _) = histogram_timings(&export(&[101, 100, 0, 0], T0 + 3_000), &mut state);
    assert_eq!(second, [timing("/orders/{id}", "POST", 201, 5.0, 1)]);
}

#[test]
fn cumulative_state_is_bounded_and_evicts_the_least_recently_seen() {
    let mut state = CumulativeHistograms::new(0, 2);
    for (i, start) in [T0, T0 + 1, T0 + 2, T0].into_iter().enumerate() {
        let request = metrics(
            DURATION_METRIC,
            "s",
            AggregationTemporality::Cumulative,
            vec![point(start, T0 + 10 + i as u64, &[1, 0, 0, 0], 0.0)],
        );
        histogram_timings(&request, &mut state);
        assert!(state.len() <= 2);
    }
    // Kept: the series started at T0 + 2 only adds its difference (3 - 1)…
    let again = |start: u64| {
        metrics(
            DURATION_METRIC,
            "s",
            AggregationTemporality::Cumulative,
            vec![point(start, T0 + 99, &[3, 0, 0, 0], 0.0)],
        )
    };
    assert_eq!(histogram_timings(&again(T0 + 2), &mut state).0[0].count, 2);
    // …while the one started at T0 + 1 was evicted, so it is a first sighting again
    // (recorded whole: it started after the receiver's start time of 0).
    assert_eq!(histogram_timings(&again(T0 + 1), &mut state).0[0].count, 3);
    assert_eq!(state.len(), 2);
}

// ---------------------------------------------------------------------------------------
// Logs

#[test]
fn log_records_become_json_lines_with_levels_ids_attributes_and_service() {
    let record = LogRecord {
        time_unix_nano: 1_544_712_660_300_000_000,
        severity_number: 10,
        severity_text: "Information".into(),
        trace_id: vec![0x5b; 16],
        span_id: vec![0xee; 8],
        body: Some(AnyValue {
            value: Some(text("order placed")),
        }),
        attributes: vec![
            kv("order.id", Value::IntValue(42)),
            kv("paid", Value::BoolValue(true)),
            kv(
                "items",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(text("a")),
                    }],
                }),
            ),
            kv("message", text("must not overwrite the body")),
        ],
        ..Default::default()
    };
    let lines = log_lines(&log_request(vec![record]));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].time_ms, Some(1_544_712_660_300));
    assert_eq!(lines[0].container.as_deref(), Some("web"));
    let text = String::from_utf8(lines[0].bytes.clone()).unwrap();
    assert_eq!(
        text,
        r#"{"timestamp":"2018-12-13T14:51:00.300Z","level":"info","message":"order placed","service":"shop","trace_id":"5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b","span_id":"eeeeeeeeeeeeeeee","order.id":42,"paid":true,"items":["a"]}"#
    );
}

#[test]
fn severity_numbers_map_to_levels_when_there_is_no_text() {
    for (number, level) in [
        (1, "trace"),
        (8, "debug"),
        (9, "info"),
        (16, "warn"),
        (17, "error"),
        (24, "fatal"),
    ] {
        assert_eq!(
            severity_level("", number).as_deref(),
            Some(level),
            "severity {number}"
        );
    }
    assert_eq!(severity_level("", 0), None);
    assert_eq!(
        severity_level(" WARNING ", 17).as_deref(),
        Some("warn"),
        "text the pipeline reads wins, in its canonical spelling"
    );
    assert_eq!(severity_level("Information", 10).as_deref(), Some("info"));
    assert_eq!(severity_level("Custom", 0).as_deref(), Some("custom"));
    for level in ["trace", "debug", "info", "warn", "error", "fatal"] {
        assert!(Level::parse(level).is_some(), "the pipeline reads {level}");
    }
}

#[test]
fn structured_bodies_are_serialized_and_missing_fields_left_out() {
    let map = KeyValueList {
        values: vec![
            kv("user", text("ann")),
            kv("bytes", Value::BytesValue(b"Man".to_vec())),
        ],
    };
    let record = LogRecord {
        observed_time_unix_nano: 1_000_000_001,
        severity_number: 18,
        body: Some(AnyValue {
            value: Some(Value::KvlistValue(map)),
        }),
        ..Default::default()
    };
    let line = log_line(&record, None, None);
    let json = line_json(&line);
    assert_eq!(
        json["timestamp"], "1970-01-01T00:00:01.000000001Z",
        "observed time when there is no time"
    );
    assert_eq!(json["level"], "error");
    assert_eq!(json["message"], r#"{"user":"ann","bytes":"TWFu"}"#);
    assert!(json.get("trace_id").is_none() && json.get("service").is_none());
    assert_eq!((line.time_ms, line.container), (Some(1000), None));
    let bare = line_json(&log_line(&LogRecord::default(), None, None));
    assert_eq!(bare, serde_json::json!({ "message": "" }));
}

#[test]
fn timestamps_are_rfc3339_that_the_pipeline_reads_back() {
    for nanos in [
        0,
        1_544_712_660_300_000_000,
        951_782_400_123_456_000,
        4_102_444_799_999_000_000,
    ] {
        let text = rfc3339(nanos);
        assert_eq!(
            parse_rfc3339_ms(&text),
            Some((nanos / 1_000_000) as i64),
            "{text}"
        );
    }
    assert_eq!(
        rfc3339(951_782_400_123_456_000),
        "2000-02-29T00:00:00.123456Z"
    );
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
}

#[test]
fn attribute_values_become_json() {
    let bytes = |b: &[u8]| {
        any_value_json(&AnyValue {
            value: Some(Value::BytesValue(b.to_vec())),
        })
    };
    assert_eq!(
        (bytes(b"M"), bytes(b"Ma"), bytes(b"Man")),
        (Json::from("TQ=="), Json::from("TWE="), Json::from("TWFu"))
    );
    assert_eq!(
        any_value_json(&AnyValue {
            value: Some(Value::DoubleValue(f64::NAN))
        }),
        Json::from("NaN")
    );
    assert_eq!(any_value_json(&AnyValue { value: None }), Json::Null);
}

// ---------------------------------------------------------------------------------------
// OTLP/JSON as the spec writes it (lowerCamelCase, hex ids, 64-bit integers as strings)

const TRACES_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
 "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},"spans":[{
  "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173",
  "name":"GET /orders/{id}","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712660250000000","kind":2,
  "attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},
   {"key":"http.response.status_code","value":{"intValue":"200"}},{"key":"url.path","value":{"stringValue":"/orders/42"}}],
  "status":{},"unknownField":true}]}]}]}"#;

const METRICS_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[]},"scopeMetrics":[{"scope":{"name":"x"},
 "metrics":[{"name":"http.server.request.duration","unit":"s","histogram":{"aggregationTemporality":1,"dataPoints":[{
  "startTimeUnixNano":"1544712660000000000","timeUnixNano":"1544712670000000000","count":"3","sum":0.35,
  "bucketCounts":["1","1","1"],"explicitBounds":[0.01,0.1],"max":0.3,
  "attributes":[{"key":"http.route","value":{"stringValue":"/a"}},{"key":"http.request.method","value":{"stringValue":"GET"}},
   {"key":"http.response.status_code","value":{"intValue":500}}]}]}}]}]}]}"#;

const LOGS_JSON: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
 "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},"logRecords":[{
  "timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information",
  "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","body":{"stringValue":"Example log record"},
  "attributes":[{"key":"string.attribute","value":{"stringValue":"some string"}},{"key":"int.attribute","value":{"intValue":"10"}},
   {"key":"double.attribute","value":{"doubleValue":637.704}},
   {"key":"map.attribute","value":{"kvlistValue":{"values":[{"key":"some.map.key","value":{"stringValue":"some value"}}]}}}]},
  {"observedTimeUnixNano":"1544712661000000000","severityNumber":17,"body":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":false}}]}}}]}]}]}"#;

#[test]
fn spec_json_decodes_into_the_same_model() {
    let trace: ExportTraceServiceRequest = serde_json::from_str(TRACES_JSON).unwrap();
    let span = &trace.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id[..2], [0x5b, 0x8e]);
    assert_eq!(
        span_timings(&trace).0,
        [timing("/orders/{id}", "GET", 200, 250.0, 1)]
    );

    let metrics: ExportMetricsServiceRequest = serde_json::from_str(METRICS_JSON).unwrap();
    let (timings, _) = histogram_timings(&metrics, &mut CumulativeHistograms::new(0, 10));
    assert_eq!(
        timings
            .iter()
            .map(|t| (t.latency_ms, t.count))
            .collect::<Vec<_>>(),
        [(5.0, 1), (55.0, 1), (300.0, 1)]
    );
    assert_eq!(timings[0].status, 500);

    let logs: ExportLogsServiceRequest = serde_json::from_str(LOGS_JSON).unwrap();
    let lines = log_lines(&logs);
    let first = line_json(&lines[0]);
    assert_eq!(first["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(first["int.attribute"], 10);
    assert_eq!(
        first["map.attribute"],
        serde_json::json!({ "some.map.key": "some value" })
    );
    assert_eq!(first["service"], "my.service");
    assert_eq!(line_json(&lines[1])["message"], r#"{"k":false}"#);
}

// ---------------------------------------------------------------------------------------
// End to end

struct Harness {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    rx: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    async fn start(grpc: bool, max_body: usize) -> Self {
        let processor = Processor::new(
            ParseFields {
                timestamp: "timestamp".into(),
                level: "level".into(),
                timing: None,
            },
            None,
            64 * 1024,
        );
        let metrics = Arc::new(Metrics::default());
        let (senders, rx) =
            crate::pipeline::channel(processor, MemoryBudget::new(1 << 20), metrics.clone());
        let recorder = Recorder::new(100);
        let receiver = Receiver::new(
            recorder.clone(),
            RequestTimings::Traces,
            senders.for_source(SourceKind::Otlp),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = if grpc {
            tokio::spawn(serve_grpc(listener, receiver, max_body, shutdown.clone()))
        } else {
            tokio::spawn(serve_http(listener, receiver, max_body, shutdown.clone()))
        };
        Self {
            addr,
            metrics,
            recorder,
            rx,
            shutdown,
            server,
        }
    }

    fn period(&self) -> HashMap<TimingKey, u64> {
        let period = self
            .recorder
            .with(|aggregator| aggregator.take_period())
            .unwrap();
        period
            .into_iter()
            .map(|(key, series)| (key, series.count))
            .collect()
    }

    async fn next_events(&mut self) -> Vec<crate::pipeline::event::Event> {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("a batch")
            .expect("open")
            .events
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
    }
}

fn key(route: &str, method: &str, status_class: &'static str) -> TimingKey {
    TimingKey {
        route: route.into(),
        method: method.into(),
        status_class,
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 client (one request per connection), so the test needs no client
/// crate. Reads until the server closes; a reset after the response (the server refusing
/// the rest of an oversized body) still yields what arrived.
async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n @ 1..) = stream.read(&mut buffer).await {
        response.extend_from_slice(&buffer[..n]);
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = response[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
    out
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn server_span_request() -> ExportTraceServiceRequest {
    traces(vec![
        span(
            SpanKind::Server,
            "GET /users/{id}",
            vec![
                kv("http.route", text("/users/{id}")),
                kv("http.request.method", text("GET")),
                kv("http.response.status_code", Value::IntValue(200)),
            ],
            7_000_000,
        ),
        span(
            SpanKind::Client,
            "GET",
            vec![kv("http.request.method", text("GET"))],
            1_000_000,
        ),
    ])
}

#[tokio::test]
async fn http_protobuf_traces_are_recorded_and_answered_with_a_protobuf_response() {
    let harness = Harness::start(false, 1 << 20).await;
    let reply = post(
        harness.addr,
        "/v1/traces",
        &[PROTOBUF],
        &server_span_request().encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/x-protobuf");
    assert_eq!(
        ExportTraceServiceResponse::decode(&reply.body[..]).unwrap(),
        ExportTraceServiceResponse::default()
    );
    assert_eq!(
        harness.period(),
        HashMap::from([(key("/users/{id}", "GET", "2xx"), 1)])
    );
    harness.stop().await;
}

#[tokio::test]
async fn http_json_logs_reach_the_pipeline_before_the_answer() {
    let mut harness = Harness::start(false, 1 << 20).await;
    let reply = post(
        harness.addr,
        "/v1/logs",
        &[("content-type", "application/json; charset=utf-8")],
        LOGS_JSON.as_bytes(),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"{}"[..]));
    assert_eq!(reply.headers["content-type"], "application/json");
    let events = harness.next_events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].time_ms, events[0].level),
        (1_544_712_660_300, Some(Level::Info))
    );
    assert_eq!(
        (events[1].time_ms, events[1].level),
        (1_544_712_661_000, Some(Level::Error))
    );
    let first: Json = serde_json::from_str(&events[0].message).unwrap();
    assert_eq!(
        (first["message"].as_str(), first["service"].as_str()),
        (Some("Example log record"), Some("my.service"))
    );
    harness.stop().await;
}

#[tokio::test]
async fn http_json_metrics_and_gzip_bodies_are_accepted() {
    let harness = Harness::start(false, 1 << 20).await;
    let reply = post(
        harness.addr,
        "/v1/metrics",
        &[JSON, ("content-encoding", "gzip")],
        &gzip(METRICS_JSON.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = post(
        harness.addr,
        "/v1/traces",
        &[PROTOBUF, ("Content-Encoding", "GZIP")],
        &gzip(&server_span_request().encode_to_vec()),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        harness.period(),
        // The harness takes timings from traces only: the histogram is accepted (200) but
        // not counted, so a request reported both ways is counted once.
        HashMap::from([(key("/users/{id}", "GET", "2xx"), 1)])
    );
    harness.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_and_the_server_keeps_serving() {
    let harness = Harness::start(false, 1 << 20).await;
    let reply = post(harness.addr, "/v1/traces", &[PROTOBUF], b"\xff\xff\xff\xff").await;
    assert_eq!(reply.status, 400);
    let status = RpcStatus::decode(&reply.body[..]).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status.message.starts_with("invalid OTLP protobuf"),
        "{}",
        status.message
    );
    let reply = post(harness.addr, "/v1/logs", &[JSON], br#"{"resourceLogs": 7}"#).await;
    assert_eq!(reply.status, 400);
    let body: Json = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], 3);
    let reply = post(
        harness.addr,
        "/v1/logs",
        &[JSON, ("content-encoding", "gzip")],
        b"not gzip",
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = post(
        harness.addr,
        "/v1/traces",
        &[PROTOBUF],
        &server_span_request().encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, 200, "still serving");
    assert_eq!(harness.period().len(), 1);
    harness.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_before_and_after_decompression() {
    let max = 16 * 1024;
    let harness = Harness::start(false, max).await;
    let reply = post(harness.addr, "/v1/logs", &[PROTOBUF], &vec![0u8; max + 1]).await;
    assert_eq!(reply.status, 413);
    let bomb = gzip(&vec![b' '; max + 1]);
    assert!(bomb.len() < max);
    let reply = post(
        harness.addr,
        "/v1/logs",
        &[JSON, ("content-encoding", "gzip")],
        &bomb,
    )
    .await;
    assert_eq!(reply.status, 413);
    harness.stop().await;
}

#[tokio::test]
async fn unsupported_content_types_and_encodings_get_415() {
    let harness = Harness::start(false, 1 << 20).await;
    assert_eq!(
        post(
            harness.addr,
            "/v1/traces",
            &[("content-type", "text/plain")],
            b"x"
        )
        .await
        .status,
        415
    );
    assert_eq!(
        post(harness.addr, "/v1/traces", &[], b"x").await.status,
        415
    );
    assert_eq!(
        post(
            harness.addr,
            "/v1/traces",
            &[JSON, ("content-encoding", "br")],
            b"{}"
        )
        .await
        .status,
        415
    );
    harness.stop().await;
}

#[tokio::test]
async fn grpc_exports_spans_and_logs() {
    let mut harness = Harness::start(true, 1 << 20).await;
    let endpoint = format!("http://{}", harness.addr);
    let mut traces_client = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let response = traces_client.export(server_span_request()).await.unwrap();
    assert_eq!(response.into_inner(), ExportTraceServiceResponse::default());
    assert_eq!(
        harness.period(),
        HashMap::from([(key("/users/{id}", "GET", "2xx"), 1)])
    );

    let mut logs_client = LogsServiceClient::connect(endpoint)
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let record = LogRecord {
        time_unix_nano: T0,
        severity_number: 13,
        body: Some(AnyValue {
            value: Some(text("hi")),
        }),
        ..Default::default()
    };
    logs_client.export(log_request(vec![record])).await.unwrap();
    let events = harness.next_events().await;
    assert_eq!(
        (events[0].time_ms, events[0].level),
        ((T0 / 1_000_000) as i64, Some(Level::Warn))
    );
    assert_eq!(events[0].container.as_deref(), Some("web"));
    drop((traces_client, logs_client));
    harness.stop().await;
}

#[tokio::test]
async fn grpc_rejects_messages_over_the_limit() {
    let harness = Harness::start(true, 1024).await;
    let mut client = LogsServiceClient::connect(format!("http://{}", harness.addr))
        .await
        .unwrap();
    let big = LogRecord {
        body: Some(AnyValue {
            value: Some(text(&"x".repeat(2048))),
        }),
        ..Default::default()
    };
    let status = client.export(log_request(vec![big])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    drop(client);
    harness.stop().await;
}

/// An export request of `n` empty log records, written by hand (2 bytes each on the wire;
/// materialising them to encode would take what the receiver refuses to).
fn empty_records(n: usize) -> Vec<u8> {
    let delimited = |field: u8, body: &[u8]| {
        let mut out = vec![field << 3 | 2];
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    };
    delimited(1, &delimited(2, &[0x12, 0x00].repeat(n)))
}

/// Sends raw bytes as a gRPC message (the generated clients take decoded requests).
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        ExportLogsServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// `message` to the logs service's Export, gzipped or not: the answer's status code.
async fn grpc_raw_logs(addr: SocketAddr, message: Vec<u8>, gzip: bool) -> tonic::Code {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    let answer = grpc
        .unary(
            tonic::Request::new(message),
            path.parse().unwrap(),
            RawCodec,
        )
        .await;
    answer.map_or_else(|status| status.code(), |_| tonic::Code::Ok)
}

/// `agent_input_errors_total{kind, source="otlp"}` as /metrics shows it.
fn refusals(harness: &Harness, kind: &str) -> u64 {
    let rendered = harness.metrics.render(MemoryBudget::new(1).usage());
    let series = format!("agent_input_errors_total{{kind=\"{kind}\",source=\"otlp\"}} ");
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn http_protobuf_that_would_expand_is_refused_before_decoding() {
    let mut harness = Harness::start(false, 8 << 20).await;
    // 2M empty records: 4 MB on the wire (4 KB gzipped), ~400 MB as prost's structs.
    let body = empty_records(2_000_000);
    let reply = post(harness.addr, "/v1/logs", &[PROTOBUF], &body).await;
    assert_eq!(reply.status, 413);
    let status = RpcStatus::decode(&reply.body[..]).unwrap();
    assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED");
    assert!(status.message.contains("log records"), "{}", status.message);
    let gzipped = gzip(&body);
    assert!(gzipped.len() < 64 * 1024);
    let headers = [PROTOBUF, ("content-encoding", "gzip")];
    let reply = post(harness.addr, "/v1/logs", &headers, &gzipped).await;
    assert_eq!(reply.status, 413, "counted on the inflated bytes");
    assert_eq!(refusals(&harness, "too_large"), 2);

    let reply = post(harness.addr, "/v1/traces", &[PROTOBUF], b"\x0a\x05\x12").await;
    assert_eq!(reply.status, 400);
    assert_eq!(refusals(&harness, "invalid_protobuf"), 1);
    // Within the limit (a quarter of the 1 MiB budget): decoded and accepted.
    let reply = post(harness.addr, "/v1/logs", &[PROTOBUF], &empty_records(100)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(harness.next_events().await.len(), 100);
    harness.stop().await;
}

#[tokio::test]
async fn grpc_messages_that_would_expand_are_refused_before_decoding() {
    let mut harness = Harness::start(true, 8 << 20).await;
    let body = empty_records(2_000_000);
    for gzip in [false, true] {
        let code = grpc_raw_logs(harness.addr, body.clone(), gzip).await;
        assert_eq!(code, tonic::Code::ResourceExhausted, "gzip: {gzip}");
    }
    assert_eq!(refusals(&harness, "too_large"), 2);
    let code = grpc_raw_logs(harness.addr, b"\x0a\x05\x12".to_vec(), false).await;
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert_eq!(refusals(&harness, "invalid_protobuf"), 1);
    let code = grpc_raw_logs(harness.addr, empty_records(100), true).await;
    assert_eq!(code, tonic::Code::Ok);
    assert_eq!(harness.next_events().await.len(), 100);
    harness.stop().await;
}

// ---------------------------------------------------------------------------------------
// Config and `run`

#[test]
fn config_defaults_and_validation() {
    let config: OtlpConfig = toml::from_str("").unwrap();
    assert_eq!(
        (config.http_address.as_str(), config.grpc_address.as_str()),
        ("127.0.0.1:4318", "127.0.0.1:4317")
    );
    assert_eq!(config.max_body_bytes, 4 * 1024 * 1024);
    assert!(config.validate("sources.otlp").is_empty());
    assert_eq!(config.request_timings, RequestTimings::Metrics);
    let bad = OtlpConfig {
        http_address: "nowhere".into(),
        grpc_address: String::new(),
        max_body_bytes: 0,
        request_timings: RequestTimings::Invalid,
    };
    assert_eq!(
        bad.validate("sources.otlp"),
        [
            "sources.otlp.http_address: must be IP:port, or empty to disable",
            "sources.otlp.request_timings: must be metrics, traces or none",
            "sources.otlp.max_body_bytes: must be between 1024 and 67108864"
        ]
    );
}

#[tokio::test]
async fn run_with_both_transports_off_returns_at_once() {
    let processor = Processor::new(
        ParseFields {
            timestamp: "t".into(),
            level: "l".into(),
            timing: None,
        },
        None,
        1024,
    );
    let (senders, _rx) = crate::pipeline::channel(
        processor,
        MemoryBudget::new(1 << 16),
        Arc::new(Metrics::default()),
    );
    let config = OtlpConfig {
        http_address: String::new(),
        grpc_address: String::new(),
        ..OtlpConfig::default()
    };
    let run = run(
        config,
        senders.for_source(SourceKind::Otlp),
        Recorder::new(10),
        CancellationToken::new(),
    );
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn bucket_counts_past_u64_make_a_point_unusable_and_totals_saturate() {
    // Found by fuzzing (agent/fuzz/regressions/otlp_protobuf): the bucket sum overflowed.
    let mut state = CumulativeHistograms::new(0, 10);
    let mut overflowing = point(T0, T0 + 1, &[0, 0, 0, 0], 1.0);
    overflowing.bucket_counts = vec![u64::MAX, 1, 0, 0];
    overflowing.count = u64::MAX;
    let good = point(T0, T0 + 1, &[0, 2, 0, 0], 0.1);
    let request = metrics(
        DURATION_METRIC,
        "s",
        AggregationTemporality::Delta,
        vec![overflowing, good],
    );
    let (timings, summary) = histogram_timings(&request, &mut state);
    assert_eq!(timings.iter().map(|t| t.count).collect::<Vec<_>>(), [2]);
    assert_eq!(
        (summary.points, summary.requests, summary.skipped),
        (2, 2, 1)
    );

    // Each point valid on its own, together more requests than a u64 holds.
    let mut huge = point(T0, T0 + 1, &[0, 0, 0, 0], 1.0);
    huge.bucket_counts = vec![u64::MAX, 0, 0, 0];
    huge.count = u64::MAX;
    let request = metrics(
        DURATION_METRIC,
        "s",
        AggregationTemporality::Delta,
        vec![huge.clone(), huge],
    );
    let (timings, summary) = histogram_timings(&request, &mut state);
    assert_eq!(timings.len(), 2);
    assert_eq!(summary.requests, u64::MAX);
}

/// Redaction of what OTLP log records become (issue 14, item 1): bodies and attributes.
#[test]
fn otlp_log_bodies_and_attributes_are_redacted_after_conversion() {
    const S: &str = "hunter2secretXYZ";
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    let text = |s: String| AnyValue {
        value: Some(Any::StringValue(s)),
    };
    let kv = |key: &str, value: AnyValue| KeyValue {
        key: key.into(),
        value: Some(value),
        ..KeyValue::default()
    };
    let r = crate::pipeline::redact::Redactor::new(
        &crate::pipeline::redact::DEFAULT_KEYS
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    );
    let bodies = [
        AnyValue {
            value: Some(Any::KvlistValue(KeyValueList {
                values: vec![
                    kv("password", text(S.into())),
                    kv("user", text("bob".into())),
                ],
            })),
        },
        text(format!("GET /cb?access_token={S}")),
        text(format!(r#"{{"client_secret":"{S}"}}"#)),
    ];
    for body in bodies {
        let record = LogRecord {
            body: Some(body),
            attributes: vec![
                kv("http.request.header.cookie", text(S.into())),
                kv("url.full", text(format!("https://u:{S}@h/x"))),
                kv("db.statement", text(format!("SET password = '{S}'"))),
            ],
            ..LogRecord::default()
        };
        let line = log_line(&record, Some("api"), None);
        let mut out = String::from_utf8(line.bytes).unwrap();
        assert!(r.redact(&mut out, true));
        assert!(!out.contains(S), "{out}");
        assert!(out.contains(r#""service":"api""#), "{out}");
    }
}

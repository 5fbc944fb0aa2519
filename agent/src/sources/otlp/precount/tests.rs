//! The walk against prost: nested counts on requests prost encodes, exact estimates, unknown
//! fields and groups skipped, packed and unpacked scalars, truncated and malformed input,
//! nesting limits, and on mutated bytes: what prost decodes, the walk accepts and counts.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as SpanEvent, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;

use super::*;

const NO_LIMIT: u64 = u64::MAX;

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..KeyValue::default()
    }
}

/// Two attributes, one a map of two more (four `KeyValue`s).
fn nested_attributes() -> Vec<KeyValue> {
    let map = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("a", text("1")), kv("b", text("2"))],
        })),
    };
    vec![kv("http.route", text("/x")), kv("map", Some(map))]
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", text("api"))],
        ..Resource::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        attributes: vec![kv("scope.attr", text("v"))],
        ..InstrumentationScope::default()
    })
}

/// 2 resources × 2 scopes × 3 records; each record 4 attributes, each resource and scope 1.
fn logs() -> ExportLogsServiceRequest {
    let record = LogRecord {
        time_unix_nano: 1,
        severity_text: "ERROR".into(),
        body: text("boom"),
        attributes: nested_attributes(),
        trace_id: vec![1; 16],
        ..LogRecord::default()
    };
    let scope_logs = ScopeLogs {
        scope: scope(),
        log_records: vec![record; 3],
        ..ScopeLogs::default()
    };
    let resource_logs = ResourceLogs {
        resource: resource(),
        scope_logs: vec![scope_logs; 2],
        ..ResourceLogs::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![resource_logs; 2],
    }
}

/// 1 resource × 2 spans, each with 4 attributes, 2 events (1 attribute each), 1 link (1).
fn traces() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /x".into(),
        attributes: nested_attributes(),
        events: vec![
            SpanEvent {
                name: "e".into(),
                attributes: vec![kv("k", text("v"))],
                ..SpanEvent::default()
            };
            2
        ],
        links: vec![Link {
            trace_id: vec![3; 16],
            attributes: vec![kv("k", text("v"))],
            ..Link::default()
        }],
        status: Some(Status {
            message: "ok".into(),
            code: 1,
        }),
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![span; 2],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn metric(data: Data) -> Metric {
    Metric {
        name: "m".into(),
        data: Some(data),
        ..Metric::default()
    }
}

/// One metric of each kind: gauge 2 points, sum 1, histogram 1, exponential 1, summary 1;
/// every point 1 attribute, the gauge's points an exemplar with 1 more.
fn metrics() -> ExportMetricsServiceRequest {
    let attributes = vec![kv("k", text("v"))];
    let number = NumberDataPoint {
        attributes: attributes.clone(),
        exemplars: vec![Exemplar {
            filtered_attributes: vec![kv("e", text("x"))],
            ..Exemplar::default()
        }],
        ..NumberDataPoint::default()
    };
    let histogram = HistogramDataPoint {
        attributes: attributes.clone(),
        bucket_counts: vec![1, 2, 3],
        explicit_bounds: vec![1.0, 2.0],
        ..HistogramDataPoint::default()
    };
    let exponential = ExponentialHistogramDataPoint {
        attributes: attributes.clone(),
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1, 300, 0],
        }),
        ..ExponentialHistogramDataPoint::default()
    };
    let summary = SummaryDataPoint {
        attributes,
        quantile_values: vec![ValueAtQuantile::default(); 2],
        ..SummaryDataPoint::default()
    };
    let metrics = vec![
        metric(Data::Gauge(Gauge {
            data_points: vec![number.clone(); 2],
        })),
        metric(Data::Sum(Sum {
            data_points: vec![number],
            ..Sum::default()
        })),
        metric(Data::Histogram(Histogram {
            data_points: vec![histogram],
            ..Histogram::default()
        })),
        metric(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![exponential],
            ..ExponentialHistogram::default()
        })),
        metric(Data::Summary(Summary {
            data_points: vec![summary],
        })),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn counts(signal: Signal, bytes: &[u8]) -> Counts {
    precount(signal, bytes, NO_LIMIT).expect("a valid request")
}

#[test]
fn nested_records_spans_points_and_attributes_are_counted() {
    let logs = counts(Signal::Logs, &logs().encode_to_vec());
    // 12 records × 4 + 2 resources + 4 scopes.
    assert_eq!((logs.log_records, logs.attributes), (12, 12 * 4 + 2 + 4));
    let spans = counts(Signal::Traces, &traces().encode_to_vec());
    assert_eq!(
        (spans.spans, spans.span_events, spans.span_links),
        (2, 4, 2)
    );
    // 2 × (4 + 2 events + 1 link) + resource + scope.
    assert_eq!(spans.attributes, 2 * 7 + 2);
    let points = counts(Signal::Metrics, &metrics().encode_to_vec());
    assert_eq!(points.data_points, 6);
    // 6 points + 3 exemplars (the gauge's 2 points and the sum's) + resource + scope.
    assert_eq!(points.attributes, 6 + 3 + 2);
    assert_eq!((logs.spans, logs.data_points, spans.log_records), (0, 0, 0));
}

#[test]
fn the_estimate_is_the_structs_and_texts_prost_allocates() {
    let record = LogRecord {
        severity_text: "ERROR".into(),
        trace_id: vec![7; 16],
        span_id: vec![7; 8],
        event_name: "e".into(),
        body: text("hello"),
        attributes: vec![kv("key", text("value"))],
        ..LogRecord::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                schema_url: "u".into(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let structs = size_of::<ResourceLogs>() + size_of::<ScopeLogs>() + size_of::<LogRecord>();
    let texts = [
        "u",
        "ERROR",
        "0123456789abcdef",
        "01234567",
        "e",
        "hello",
        "key",
        "value",
    ];
    let expected = structs
        + size_of::<KeyValue>()
        + texts
            .iter()
            .map(|t| t.len() + ALLOC_OVERHEAD as usize)
            .sum::<usize>();
    let got = counts(Signal::Logs, &request.encode_to_vec());
    assert_eq!(got.bytes, expected as u64);
}

#[test]
fn packed_and_unpacked_scalars_count_8_bytes_an_element() {
    let histogram = |buckets: Vec<u64>| {
        let point = HistogramDataPoint {
            bucket_counts: buckets,
            ..HistogramDataPoint::default()
        };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![metric(Data::Histogram(Histogram {
                        data_points: vec![point],
                        ..Histogram::default()
                    }))],
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        };
        counts(Signal::Metrics, &request.encode_to_vec()).bytes
    };
    assert_eq!(histogram(vec![0; 1000]) - histogram(vec![]), 8000);

    // Exponential buckets are varints: 1,000 zeros are 1,000 bytes on the wire, 8,000 decoded.
    let packed = Buckets {
        offset: 0,
        bucket_counts: vec![0; 1000],
    }
    .encode_to_vec();
    assert!(packed.len() < 1010);
    let mut walk = Walk {
        counts: Counts::default(),
        limit: NO_LIMIT,
    };
    walk.message(&schema::BUCKETS, &packed, 0).unwrap();
    assert_eq!(walk.counts.bytes, 8000);
    // The same elements one field each (unpacked, as old encoders may send them).
    let unpacked: Vec<u8> = (0..1000).flat_map(|_| [2 << 3, 0]).collect();
    assert_eq!(
        Buckets::decode(&unpacked[..]).unwrap().bucket_counts.len(),
        1000
    );
    let mut walk = Walk {
        counts: Counts::default(),
        limit: NO_LIMIT,
    };
    walk.message(&schema::BUCKETS, &unpacked, 0).unwrap();
    assert_eq!(walk.counts.bytes, 8000);
}

/// A field key (a varint: two bytes from field 16 on).
fn field_key(field: u32, wire_type: u32) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(field << 3 | wire_type), &mut out);
    out
}

/// `field` as a length-delimited field holding `body`.
fn delimited(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = field_key(field, 2);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// Unknown fields (20 to 24, one-byte and two-byte keys) of every wire type, a group
/// among them.
fn unknown_fields() -> Vec<u8> {
    [
        field_key(13, 0),
        vec![0x96, 0x01], // varint
        field_key(20, 1),
        vec![1, 2, 3, 4, 5, 6, 7, 8],               // fixed64
        delimited(14, b"\x12\x00\x12\x00\x12\x00"), // bytes that look like records
        field_key(21, 5),
        vec![1, 2, 3, 4], // fixed32
        field_key(22, 3),
        vec![8, 1], // group { 1: 1 }
        field_key(22, 4),
    ]
    .concat()
}

#[test]
fn unknown_fields_are_skipped_at_every_level() {
    let record = [unknown_fields(), delimited(12, b"name")].concat();
    let scope_logs = [delimited(2, &record), unknown_fields(), delimited(2, b"")].concat();
    let resource_logs = [unknown_fields(), delimited(2, &scope_logs)].concat();
    let request = [delimited(1, &resource_logs), unknown_fields()].concat();
    let decoded = ExportLogsServiceRequest::decode(&request[..]).expect("prost skips them too");
    let records = &decoded.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].event_name, "name");
    let got = counts(Signal::Logs, &request);
    assert_eq!((got.log_records, got.attributes), (2, 0));
}

#[test]
fn malformed_input_is_refused_where_prost_fails_too() {
    let cases: [(&str, Vec<u8>); 8] = [
        ("truncated varint", vec![0x0a, 0x80]),
        ("length past the end", vec![0x0a, 0x05, 0x12]),
        ("field number 0", vec![0x02, 0x00]),
        ("wire type 7", vec![0x0f]),
        ("stray end group", vec![0x0c]),
        ("group without its end", vec![(9 << 3) | 3, 8, 1]),
        (
            "group ended by another field",
            vec![(9 << 3) | 3, (8 << 3) | 4],
        ),
        (
            "11-byte varint",
            [vec![0x08], vec![0xff; 10], vec![0x01]].concat(),
        ),
    ];
    for (name, bytes) in cases {
        let refusal = precount(Signal::Logs, &bytes, NO_LIMIT).unwrap_err();
        assert!(
            matches!(refusal, Refusal::Malformed(_)),
            "{name}: {refusal}"
        );
        assert!(refusal.to_string().starts_with("invalid OTLP protobuf"));
        assert!(
            ExportLogsServiceRequest::decode(&bytes[..]).is_err(),
            "{name}"
        );
    }
    // Inside a record: a record whose attribute runs past the record's end.
    let record = delimited(2, &[0x32, 0x09, 0x0a]); // attributes: 9 bytes announced, 1 there
    let request = delimited(1, &delimited(2, &record));
    assert!(matches!(
        precount(Signal::Logs, &request, NO_LIMIT),
        Err(Refusal::Malformed(_))
    ));
    assert!(ExportLogsServiceRequest::decode(&request[..]).is_err());
}

#[test]
fn every_truncation_of_a_valid_request_is_decoded_by_neither_or_counted() {
    let full = traces().encode_to_vec();
    for end in 0..full.len() {
        let cut = &full[..end];
        let walked = precount(Signal::Traces, cut, NO_LIMIT);
        // A cut between fields still decodes (fewer spans); one inside a field decodes in
        // neither (or, inside a string, the walk passes and prost refuses its UTF-8).
        if let Ok(decoded) = ExportTraceServiceRequest::decode(cut) {
            let walked = walked.expect("what prost decodes, the walk accepts");
            assert_eq!(walked.spans, actual_spans(&decoded) as u64);
        }
    }
}

fn actual_spans(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// An attribute value `depth` arrays deep.
fn nested_value(depth: usize) -> AnyValue {
    (0..depth).fold(AnyValue::default(), |inner, _| AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: vec![inner],
        })),
    })
}

#[test]
fn nesting_is_bounded_above_prosts_own_limit() {
    let request = |depth| {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(nested_value(depth)),
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec()
    };
    let shallow = request(40);
    assert!(ExportLogsServiceRequest::decode(&shallow[..]).is_ok());
    assert_eq!(counts(Signal::Logs, &shallow).log_records, 1);
    let deep = request(200);
    assert!(ExportLogsServiceRequest::decode(&deep[..]).is_err());
    assert_eq!(
        precount(Signal::Logs, &deep, NO_LIMIT),
        Err(Refusal::Malformed("messages nested too deep"))
    );
}

#[test]
fn two_million_empty_records_are_refused_without_walking_them_all() {
    // 2 bytes each on the wire (`0x12 0x00`); ~4 MB in all.
    let records: Vec<u8> = [0x12, 0x00].repeat(2_000_000);
    let request = delimited(1, &delimited(2, &records));
    let refusal = precount(Signal::Logs, &request, 4 << 20).unwrap_err();
    let Refusal::TooLarge { limit, counts } = refusal else {
        panic!("{refusal}");
    };
    assert_eq!(limit, 4 << 20);
    let per_record = size_of::<LogRecord>() as u64;
    let holders = (size_of::<ResourceLogs>() + size_of::<ScopeLogs>()) as u64;
    assert_eq!(counts.log_records, ((4 << 20) - holders) / per_record + 1);
    let all = precount(Signal::Logs, &request, NO_LIMIT).unwrap();
    assert_eq!(all.log_records, 2_000_000);
    assert!(all.bytes >= 2_000_000 * per_record, "{}", all.bytes);
}

#[test]
fn the_tables_match_prosts_field_numbers() {
    // A request with every allocating field of a log record set: each counted in the
    // estimate once (a wrong field number would be skipped and miss its bytes).
    let full = counts(Signal::Logs, &logs().encode_to_vec());
    let record = &logs().resource_logs[0].scope_logs[0].log_records[0];
    for strip in 0..4 {
        let mut request = logs();
        let target = &mut request.resource_logs[0].scope_logs[0].log_records[0];
        match strip {
            0 => target.severity_text.clear(),
            1 => target.body = None,
            2 => target.attributes.clear(),
            _ => target.trace_id.clear(),
        }
        let less = counts(Signal::Logs, &request.encode_to_vec());
        assert!(
            less.bytes < full.bytes,
            "field {strip} of {record:?} is not counted"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random edits of valid requests: whatever prost decodes, the walk accepts, with at
    /// least the records, spans and points prost holds (more only when a field prost
    /// replaces is repeated); whatever the walk calls malformed, prost refuses.
    #[test]
    fn the_walk_agrees_with_prost_on_mutated_bytes(
        which in 0..3usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let (signal, mut bytes) = match which {
            0 => (Signal::Logs, logs().encode_to_vec()),
            1 => (Signal::Traces, traces().encode_to_vec()),
            _ => (Signal::Metrics, metrics().encode_to_vec()),
        };
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
            if bytes.is_empty() {
                break;
            }
        }
        check_against_prost(signal, &bytes);
    }
}

/// Log records, spans and data points of a decoded request.
fn actual(signal: Signal, bytes: &[u8]) -> Result<[u64; 3], prost::DecodeError> {
    Ok(match signal {
        Signal::Logs => {
            let request = ExportLogsServiceRequest::decode(bytes)?;
            let records = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
            [records.map(|s| s.log_records.len() as u64).sum(), 0, 0]
        }
        Signal::Traces => [
            0,
            actual_spans(&ExportTraceServiceRequest::decode(bytes)?) as u64,
            0,
        ],
        Signal::Metrics => {
            let request = ExportMetricsServiceRequest::decode(bytes)?;
            let metrics = request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics);
            let points = metrics.map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
                None => 0,
            });
            [0, 0, points.map(|n| n as u64).sum()]
        }
    })
}

fn check_against_prost(signal: Signal, bytes: &[u8]) {
    let walked = precount(signal, bytes, NO_LIMIT);
    match (&walked, actual(signal, bytes)) {
        (Ok(counts), Ok(items)) => {
            let walked = [counts.log_records, counts.spans, counts.data_points];
            assert!(
                walked.iter().zip(&items).all(|(w, a)| w >= a),
                "walked {walked:?}, decoded {items:?}"
            );
        }
        (Err(refusal), Ok(_)) => panic!("prost decodes what the walk refused: {refusal}"),
        (Err(Refusal::Malformed(_)), Err(_)) | (Ok(_), Err(_)) => {}
        (Err(refusal), Err(_)) => panic!("unexpected {refusal}"),
    }
}

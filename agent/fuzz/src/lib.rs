//! The checks behind each fuzz target, one public function per target taking the raw
//! input. They panic on a broken invariant, which libFuzzer reports as a crash. The
//! agent's integration tests include this file too (`tests/it/hostile.rs`) and run every
//! seed and regression input through it on stable, in the normal `cargo test`.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, OnceLock};

use agent::config::{Config, interpolate};
use agent::metrics::{Metrics, SourceKind};
use agent::pipeline::budget::MemoryBudget;
use agent::pipeline::parse::{ParseFields, TimingFieldNames, parse};
use agent::pipeline::redact::{DEFAULT_KEYS, Redactor};
use agent::pipeline::{Processor, TRUNCATION_MARKER, channel};
use agent::sources::forward::decode::{
    Body, DecodeError, Decoder, FrameScanner, MAX_TIME_MS, encode_ack,
};
use agent::sources::http::{ndjson_lines, router};
use agent::sources::otlp::convert::{
    CumulativeHistograms, DURATION_METRIC, histogram_timings, log_lines, span_timings,
};
use agent::sources::otlp::precount::{Counts, Refusal, Signal, precount};
use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message as _;
use tower::ServiceExt as _;

/// A target's checks over one input; a broken invariant panics.
pub type Check = fn(&[u8]);

/// The targets, by name (the names of `fuzz_targets/*.rs`, `corpus/*` and `regressions/*`).
pub const TARGETS: [(&str, Check); 6] = [
    ("forward_decode", forward_decode),
    ("ndjson", ndjson),
    ("http_ingest", http_ingest),
    ("otlp_protobuf", otlp_protobuf),
    ("otlp_json", otlp_json),
    ("config", config),
];

// ---- forward_decode -----------------------------------------------------------------------

const MAX_FRAME: usize = 1 << 20;

fn same_outcome(a: &Result<Option<usize>, DecodeError>, b: &Result<Option<usize>, DecodeError>) {
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "whole vs trickled scan"),
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "whole vs trickled scan"),
        (a, b) => panic!("whole scan {a:?}, trickled scan {b:?}"),
    }
}

/// Fluent Forward bytes as a client would send them: frames are cut with `FrameScanner`
/// (the whole buffer at once and one byte at a time must agree), then decoded. Checks: no
/// panic, times within bounds, records without `log` become valid JSON objects, and the
/// ack encodes the frame's chunk.
pub fn forward_decode(data: &[u8]) {
    let mut whole = FrameScanner::new();
    let mut trickle = FrameScanner::new();
    let mut decoder = Decoder::new(MAX_FRAME);
    let mut rest = data;
    while !rest.is_empty() {
        let at_once = whole.scan(rest, MAX_FRAME);
        let mut by_byte = Ok(None);
        for end in 1..=rest.len() {
            by_byte = trickle.scan(&rest[..end], MAX_FRAME);
            if !matches!(by_byte, Ok(None)) {
                break;
            }
        }
        same_outcome(&at_once, &by_byte);
        let Ok(Some(len)) = at_once else { return };
        assert!(len > 0 && len <= rest.len() && len <= MAX_FRAME);
        let frame = &rest[..len];
        let decoded = decoder.decode(frame, |record| {
            if let Some(time) = record.time_ms {
                assert!(time.abs() < MAX_TIME_MS, "time {time}");
            }
            if let Body::Json(json) = &record.body {
                let value: serde_json::Value = serde_json::from_slice(json)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(json)));
                assert!(value.is_object());
            }
        });
        if let Ok(Some(chunk)) = decoded {
            let mut ack = Vec::new();
            encode_ack(chunk, &mut ack);
            let mut reader = &ack[..];
            assert_eq!(rmp::decode::read_map_len(&mut reader).unwrap(), 1);
            let mut key = [0u8; 8];
            assert_eq!(rmp::decode::read_str(&mut reader, &mut key).unwrap(), "ack");
            let len = rmp::decode::read_str_len(&mut reader).unwrap() as usize;
            assert_eq!(len, chunk.len());
            assert_eq!(reader, chunk);
        }
        rest = &rest[len..];
    }
}

// ---- ndjson -------------------------------------------------------------------------------

const EVENT_LIMITS: [usize; 4] = [0, 64, 300, 256 * 1024];

fn fields() -> ParseFields {
    ParseFields {
        timestamp: "timestamp".into(),
        level: "level".into(),
        timing: Some(TimingFieldNames {
            route: "route".into(),
            method: "method".into(),
            status: "status".into(),
            latency_ms: "latency_ms".into(),
        }),
    }
}

/// A processor per event limit, and the redactor they use.
fn processors() -> &'static (Vec<Processor>, Redactor) {
    static PROCESSORS: OnceLock<(Vec<Processor>, Redactor)> = OnceLock::new();
    PROCESSORS.get_or_init(|| {
        let keys: Vec<String> = DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect();
        let redactor = Redactor::new(&keys);
        let processors = EVENT_LIMITS
            .iter()
            .map(|&max| Processor::new(fields(), Some(redactor.clone()), max))
            .collect();
        (processors, redactor)
    })
}

/// NDJSON bodies and lines: the HTTP source's line splitting, the one-pass JSON parse and
/// `Processor::process` (redaction on, a small event limit so truncation happens). The
/// first byte picks the event limit. Checks: no panic, lines never hold a newline, parsed
/// times stay bounded, every JSON object serde_json accepts is recognised as JSON, and an
/// event is its line (lossy UTF-8, without a final `\r`) redacted, then cut to the limit
/// on a character boundary with the marker when longer.
pub fn ndjson(data: &[u8]) {
    let Some((&knob, body)) = data.split_first() else {
        return;
    };
    let index = usize::from(knob) % EVENT_LIMITS.len();
    let (processors, redactor) = processors();
    let processor = &processors[index];
    let max = EVENT_LIMITS[index].max(TRUNCATION_MARKER.len() + 4);
    let fields = fields();
    let metrics = Metrics::default();
    for line in ndjson_lines(body) {
        assert!(!line.bytes.contains(&b'\n'));
        assert!(!line.bytes.iter().all(u8::is_ascii_whitespace));
        if let Ok(text) = std::str::from_utf8(&line.bytes) {
            let parsed = parse(text, &fields);
            if let Some(time) = parsed.time_ms {
                assert!(time.unsigned_abs() < 1_000_000_000_000_000, "time {time}");
            }
            if serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object()) {
                assert!(parsed.is_json, "a JSON object not recognised: {text}");
            }
        }
        let bytes = line.bytes.strip_suffix(b"\r").unwrap_or(&line.bytes);
        let mut expected = String::from_utf8_lossy(bytes).into_owned();
        let is_json = parse(&expected, &fields).is_json;
        redactor.redact(&mut expected, is_json);
        let event = processor.process(line, 0, &metrics);
        let message = event.message;
        assert!(message.len() <= max, "{} > {max}", message.len());
        if expected.len() > max {
            let kept = message
                .strip_suffix(TRUNCATION_MARKER)
                .unwrap_or_else(|| panic!("cut without the marker: {message:?}"));
            assert!(expected.starts_with(kept) && kept.len() + 4 > max - TRUNCATION_MARKER.len());
        } else {
            assert_eq!(message, expected);
        }
    }
}

// ---- http_ingest --------------------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// `POST /v1/logs` through the real router (size limit, gzip, NDJSON split, the
/// pipeline's all-or-nothing `try_send`). The first byte picks gzip and the body limit.
/// Checks: no panic, only the documented statuses, and a 200 accepted exactly its lines.
/// Not callable from inside a Tokio runtime (it runs its own).
pub fn http_ingest(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let gzip = flags & 1 == 1;
    let max_body = 16 + usize::from(flags >> 1) * 64;
    let fields = ParseFields {
        timestamp: "timestamp".into(),
        level: "level".into(),
        timing: None,
    };
    let processor = Processor::new(fields, None, 1024);
    let (senders, mut rx) = channel(
        processor,
        MemoryBudget::new(1 << 20),
        Arc::new(Metrics::default()),
    );
    let app = router(senders.for_source(SourceKind::Http), max_body);
    let mut request = Request::post("/v1/logs");
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    let request = request.body(HttpBody::from(body.to_vec())).unwrap();
    let status = runtime().block_on(async { app.oneshot(request).await.unwrap().status() });
    let mut received = 0;
    while let Ok(batch) = rx.try_recv() {
        received += batch.events.len();
    }
    match status {
        StatusCode::OK => {
            assert!(body.len() <= max_body);
            let expected = if gzip {
                let mut decoded = Vec::new();
                flate2::read::MultiGzDecoder::new(body)
                    .read_to_end(&mut decoded)
                    .expect("gzip the source accepted");
                ndjson_lines(&decoded).len()
            } else {
                ndjson_lines(body).len()
            };
            assert_eq!(received, expected);
        }
        StatusCode::BAD_REQUEST => assert!(gzip && received == 0),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::SERVICE_UNAVAILABLE => {
            assert_eq!(received, 0)
        }
        other => panic!("unexpected status {other}"),
    }
}

// ---- otlp_protobuf, otlp_json ---------------------------------------------------------

/// OTLP/HTTP and gRPC protobuf bodies: each input is pre-counted and decoded as all three
/// export requests (traces, metrics, logs) and whatever decodes is converted. The
/// pre-count (which runs before prost in the receiver) must accept whatever prost decodes,
/// with at least its records, spans and points, and call malformed only what prost refuses.
pub fn otlp_protobuf(data: &[u8]) {
    let traces = ExportTraceServiceRequest::decode(data);
    let spans = traces.as_ref().ok().map(|request| {
        let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
        scopes.map(|s| s.spans.len() as u64).sum::<u64>()
    });
    agrees_with_prost(Signal::Traces, data, spans, |c| c.spans);
    if let Ok(request) = traces {
        otlp_traces(&request);
    }
    let metrics = ExportMetricsServiceRequest::decode(data);
    let points = metrics.as_ref().ok().map(|request| {
        let metrics = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics);
        let metrics = metrics.flat_map(|s| &s.metrics);
        metrics.map(|m| data_points(m.data.as_ref())).sum::<u64>()
    });
    agrees_with_prost(Signal::Metrics, data, points, |c| c.data_points);
    if let Ok(request) = metrics {
        otlp_metrics(&request);
    }
    let logs = ExportLogsServiceRequest::decode(data);
    let records = logs.as_ref().ok().map(|request| {
        let scopes = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
        scopes.map(|s| s.log_records.len() as u64).sum::<u64>()
    });
    agrees_with_prost(Signal::Logs, data, records, |c| c.log_records);
    if let Ok(request) = logs {
        otlp_logs(&request);
    }
}

fn data_points(data: Option<&Data>) -> u64 {
    (match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

/// The pre-count of `data` against prost's decoding (`decoded`: the items it holds).
fn agrees_with_prost(signal: Signal, data: &[u8], decoded: Option<u64>, items: fn(&Counts) -> u64) {
    match (precount(signal, data, u64::MAX), decoded) {
        (Ok(counts), Some(decoded)) => assert!(items(&counts) >= decoded, "{counts:?} < {decoded}"),
        (Err(refusal), Some(_)) => panic!("prost decodes what the pre-count refused: {refusal}"),
        (Ok(_) | Err(Refusal::Malformed(_)), None) => {}
        (Err(refusal), None) => panic!("unexpected refusal {refusal}"),
    }
}

/// OTLP/HTTP JSON bodies, decoded as the receiver does (serde_json), as all three export
/// requests; whatever decodes is converted.
pub fn otlp_json(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) {
        otlp_traces(&request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportMetricsServiceRequest>(data) {
        otlp_metrics(&request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportLogsServiceRequest>(data) {
        otlp_logs(&request);
    }
}

/// Span timings: one per recorded span, with a usable latency.
fn otlp_traces(request: &ExportTraceServiceRequest) {
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum::<u64>();
    let (timings, summary) = span_timings(request);
    assert_eq!(summary.recorded, timings.len() as u64);
    assert_eq!(
        summary.recorded + summary.not_server + summary.skipped,
        spans
    );
    for timing in &timings {
        assert!(timing.latency_ms.is_finite() && timing.latency_ms >= 0.0);
        assert_eq!(timing.count, 1);
    }
}

/// Histogram timings, twice through the same cumulative state (the second pass is a
/// retried export): every duration point is accounted for once per pass, and the
/// requests reported are the timings' counts.
fn otlp_metrics(request: &ExportMetricsServiceRequest) {
    let points = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == DURATION_METRIC)
        .map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.len() as u64,
            _ => 0,
        })
        .sum::<u64>();
    let mut cumulative = CumulativeHistograms::new(1_000, 8);
    for _ in 0..2 {
        let (timings, summary) = histogram_timings(request, &mut cumulative);
        assert_eq!(summary.points, points);
        let counted = timings
            .iter()
            .fold(0u64, |sum, timing| sum.saturating_add(timing.count));
        assert_eq!(summary.requests, counted);
        assert!(timings.iter().all(|t| t.count > 0));
        assert!(cumulative.len() <= 8);
    }
}

/// Log lines: JSON objects the pipeline recognises, with the record's time.
fn otlp_logs(request: &ExportLogsServiceRequest) {
    let fields = ParseFields {
        timestamp: "timestamp".into(),
        level: "level".into(),
        timing: None,
    };
    for line in log_lines(request) {
        let text = std::str::from_utf8(&line.bytes).expect("log lines are UTF-8");
        let value: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(value.is_object() && value["message"].is_string(), "{text}");
        let parsed = parse(text, &fields);
        assert!(parsed.is_json, "{text}");
        if let Some(time) = line.time_ms {
            assert!(time >= 0);
            assert_eq!(parsed.time_ms, Some(time), "{text}");
        }
    }
}

// ---- config -------------------------------------------------------------------------------

/// The configuration loader: `${VAR}` interpolation against a map environment, TOML,
/// unknown keys, validation. The input is `ENV\0TOML`, ENV being `NAME=value` lines
/// (without a NUL all of it is TOML, with an empty environment). Checks: no panic, text
/// without `$` interpolates to itself, an error names at least one problem, a
/// configuration that loads validates clean.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (env_text, toml) = text.split_once('\0').unwrap_or(("", text));
    let env: HashMap<String, String> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    if !toml.contains('$') {
        assert_eq!(interpolate(toml, &env).as_deref(), Ok(toml));
    }
    match Config::parse(toml, &env) {
        Ok(config) => {
            assert_eq!(config.validate(), Vec::<String>::new());
            let _ = config.memory_limit_bytes();
        }
        Err(errors) => assert!(!errors.0.is_empty()),
    }
}

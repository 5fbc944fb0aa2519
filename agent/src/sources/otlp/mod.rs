//! OTLP receiver: OpenTelemetry SDKs export here over OTLP/HTTP (protobuf or JSON, optionally
//! gzip) and OTLP/gRPC. HTTP SERVER spans and `http.server.request.duration` histograms
//! become request timings; log records become JSON lines in the log pipeline. A request is
//! answered only once its logs are accepted (back-pressure reaches the exporter). OTLP/HTTP
//! connections get the HTTP input's guard (connection cap, slow-loris deadlines). Protobuf
//! requests, on both transports, are pre-counted before prost decodes them (`precount`):
//! one that would take more than a quarter of the memory budget once decoded is refused
//! (413 / RESOURCE_EXHAUSTED), as is malformed wire data (400 / INVALID_ARGUMENT).

pub mod convert;
mod grpc;
mod grpc_listener;
pub mod precount;
mod schema;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::convert::{CumulativeHistograms, MAX_CUMULATIVE_SERIES};
use self::grpc::serve_grpc;
use self::precount::{Counts, Refusal, Signal, precount};
use crate::metrics::SourceKind;
use crate::pipeline::event::RawLine;
use crate::pipeline::{Closed, EventSender};
use crate::request_metrics::Recorder;
use crate::sources::http::{ConnectionLimits, GuardedListener, REQUEST_TIMEOUT};

/// OTLP receiver.
#[derive(Debug, Clone, Deserialize)]
pub struct OtlpConfig {
    /// OTLP/HTTP listen address (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`); empty to
    /// disable (default 127.0.0.1:4318).
    #[serde(default = "default_http_address")]
    pub http_address: String,
    /// OTLP/gRPC listen address; empty to disable (default 127.0.0.1:4317). Plain text:
    /// keep it on loopback.
    #[serde(default = "default_grpc_address")]
    pub grpc_address: String,
    /// Largest request body or gRPC message, in bytes, after decompression; larger gets 413
    /// (gRPC: OUT_OF_RANGE, tonic's answer) (default 4 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Which OTLP signal yields request timings: `metrics` (the
    /// `http.server.request.duration` histogram; independent of trace sampling; the default),
    /// `traces` (SERVER spans) or `none`. One only: the API sends both, and counting both
    /// would count every request twice.
    #[serde(default = "default_request_timings")]
    pub request_timings: RequestTimings,
}

fn default_request_timings() -> RequestTimings {
    RequestTimings::Metrics
}

crate::choice::choice! {
    /// Which OTLP signal request timings are read from.
    pub enum RequestTimings {
        /// `http.server.request.duration` histograms.
        Metrics = "metrics",
        /// Server spans.
        Traces = "traces",
        /// Neither (access-log events give them, or nothing does).
        None = "none",
    }
}

fn default_http_address() -> String {
    "127.0.0.1:4318".into()
}
fn default_grpc_address() -> String {
    "127.0.0.1:4317".into()
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            http_address: default_http_address(),
            grpc_address: default_grpc_address(),
            max_body_bytes: default_max_body_bytes(),
            request_timings: default_request_timings(),
        }
    }
}

impl OtlpConfig {
    /// Every problem, each prefixed with `path` (e.g. `sources.otlp`). Pure.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        for (key, address) in [
            ("http_address", &self.http_address),
            ("grpc_address", &self.grpc_address),
        ] {
            if !address.is_empty() && address.parse::<SocketAddr>().is_err() {
                errors.push(format!(
                    "{path}.{key}: must be IP:port, or empty to disable"
                ));
            }
        }
        if !self.request_timings.is_valid() {
            errors.push(format!(
                "{path}.request_timings: must be metrics, traces or none"
            ));
        }
        if self.http_address.is_empty() && self.grpc_address.is_empty() {
            errors.push(format!(
                "{path}: http_address and grpc_address are both empty"
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            errors.push(format!(
                "{path}.max_body_bytes: must be between 1024 and 67108864"
            ));
        }
        errors
    }
}

/// Serves OTLP/HTTP and OTLP/gRPC (each unless its address is empty) until `shutdown` fires.
pub async fn run(
    config: OtlpConfig,
    logs: EventSender,
    timings: Recorder,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let receiver = Receiver::new(timings, config.request_timings, logs);
    let max_body = config.max_body_bytes;
    let http = async {
        if config.http_address.is_empty() {
            return Ok(());
        }
        let listener = TcpListener::bind(&config.http_address)
            .await
            .with_context(|| format!("binding OTLP/HTTP to {}", config.http_address))?;
        tracing::info!(address = %config.http_address, "otlp http receiver listening");
        serve_http(listener, receiver.clone(), max_body, shutdown.clone()).await
    };
    let grpc = async {
        if config.grpc_address.is_empty() {
            return Ok(());
        }
        let listener = TcpListener::bind(&config.grpc_address)
            .await
            .with_context(|| format!("binding OTLP/gRPC to {}", config.grpc_address))?;
        tracing::info!(address = %config.grpc_address, "otlp grpc receiver listening");
        serve_grpc(listener, receiver.clone(), max_body, shutdown.clone()).await
    };
    tokio::try_join!(
        http.instrument(tracing::info_span!("source", kind = "otlp_http")),
        grpc.instrument(tracing::info_span!("source", kind = "otlp_grpc")),
    )?;
    Ok(())
}

/// What each log record's line costs before the pipeline takes it: the `RawLine`, its
/// shortest JSON (`{"message":""}`) and the allocation's overhead.
const LINE_COST: u64 = (std::mem::size_of::<RawLine>() + 16 + 16) as u64;

/// What both transports do with a decoded export.
#[derive(Debug, Clone)]
struct Receiver {
    timings: Recorder,
    /// See [`OtlpConfig::request_timings`].
    timings_from: RequestTimings,
    logs: EventSender,
    cumulative: Arc<Mutex<CumulativeHistograms>>,
}

impl Receiver {
    fn new(timings: Recorder, timings_from: RequestTimings, logs: EventSender) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            timings,
            timings_from,
            logs,
            cumulative: Arc::new(Mutex::new(CumulativeHistograms::new(
                now,
                MAX_CUMULATIVE_SERIES,
            ))),
        }
    }

    /// The most a request may take once decoded (log records: with the lines they become):
    /// a quarter of the memory budget, as for the HTTP input's requests.
    fn decode_limit(&self) -> u64 {
        self.logs.max_batch_cost() as u64
    }

    /// The pre-count of a protobuf export (`precount.rs`), before prost sees it: a request
    /// that is malformed, or would take more than [`Self::decode_limit`] decoded, is
    /// refused (and counted) without being decoded.
    fn admit(&self, signal: Signal, message: &[u8]) -> Result<Counts, Refusal> {
        let limit = self.decode_limit();
        let admitted = precount(signal, message, limit).and_then(|counts| {
            let lines = counts.log_records.saturating_mul(LINE_COST);
            if counts.bytes.saturating_add(lines) > limit {
                return Err(Refusal::TooLarge { limit, counts });
            }
            Ok(counts)
        });
        if let Err(refusal) = &admitted {
            let metrics = self.logs.metrics();
            metrics.input_error(SourceKind::Otlp, refusal.kind());
            tracing::debug!(error = %refusal, "OTLP export refused before decoding");
        }
        admitted
    }

    fn traces(&self, request: &ExportTraceServiceRequest) {
        let (timings, summary) = convert::span_timings(request);
        if self.timings_from == RequestTimings::Traces {
            self.timings.record_all(timings);
        }
        tracing::debug!(
            recorded = summary.recorded,
            not_server = summary.not_server,
            skipped = summary.skipped,
            "otlp spans"
        );
    }

    fn metrics(&self, request: &ExportMetricsServiceRequest) {
        let (timings, summary) = {
            // A panic elsewhere leaves the map usable: at worst one series is re-baselined.
            let mut cumulative = self
                .cumulative
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            convert::histogram_timings(request, &mut cumulative)
        };
        if self.timings_from == RequestTimings::Metrics {
            self.timings.record_all(timings);
        }
        tracing::debug!(
            points = summary.points,
            requests = summary.requests,
            baselines = summary.baselines,
            skipped = summary.skipped,
            "otlp duration histograms"
        );
    }

    /// Returns once the pipeline has accepted every record (waiting while it is full).
    async fn logs(&self, request: &ExportLogsServiceRequest) -> Result<(), Closed> {
        let lines = convert::log_lines(request);
        tracing::debug!(records = lines.len(), "otlp logs");
        if lines.is_empty() {
            Ok(())
        } else {
            self.logs.send(lines).await
        }
    }
}

// ---------------------------------------------------------------------------------------
// OTLP/HTTP

#[derive(Debug, Clone)]
struct HttpState {
    receiver: Receiver,
    max_body: usize,
}

/// The OTLP/HTTP router (separate from `serve_http` for tests).
fn router(receiver: Receiver, max_body: usize) -> Router {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/metrics", post(export_metrics))
        .route("/v1/logs", post(export_logs))
        .with_state(HttpState { receiver, max_body })
}

/// Behind the HTTP input's [`GuardedListener`]: the same connection limit and slow-loris
/// deadlines (bodies get [`REQUEST_TIMEOUT`] in `read_body`).
async fn serve_http(
    listener: TcpListener,
    receiver: Receiver,
    max_body: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let counter = receiver.logs.clone();
    let listener = GuardedListener::new(
        listener,
        ConnectionLimits::default(),
        counter,
        SourceKind::Otlp,
    );
    axum::serve(listener, router(receiver, max_body))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// The two OTLP/HTTP payload encodings; the response uses the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    /// `body` decoded, or the status and message to answer instead: a protobuf body is
    /// decoded only once the receiver's pre-count admits it (malformed: 400; too large once
    /// decoded: 413).
    fn decode<T>(
        self,
        body: &[u8],
        receiver: &Receiver,
        signal: Signal,
    ) -> Result<T, (StatusCode, String)>
    where
        T: prost::Message + Default + serde::de::DeserializeOwned,
    {
        let invalid = |message| (StatusCode::BAD_REQUEST, message);
        match self {
            Self::Protobuf => {
                if let Err(refusal) = receiver.admit(signal, body) {
                    let status = match refusal {
                        Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
                        Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    };
                    return Err((status, refusal.to_string()));
                }
                T::decode(body).map_err(|e| invalid(format!("invalid OTLP protobuf: {e}")))
            }
            Self::Json => {
                serde_json::from_slice(body).map_err(|e| invalid(format!("invalid OTLP JSON: {e}")))
            }
        }
    }

    fn success<T: prost::Message + Default>(self) -> Response {
        let body = match self {
            Self::Protobuf => T::default().encode_to_vec(),
            // The JSON form of an empty Export*ServiceResponse.
            Self::Json => b"{}".to_vec(),
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, self.content_type())],
            body,
        )
            .into_response()
    }

    /// An error answer: OTLP/HTTP wants a `google.rpc.Status` in the request's encoding.
    fn failure(self, status: StatusCode, message: &str) -> Response {
        let code = match status {
            StatusCode::REQUEST_TIMEOUT => 4,      // DEADLINE_EXCEEDED
            StatusCode::PAYLOAD_TOO_LARGE => 8,    // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
            _ => 3,                                // INVALID_ARGUMENT
        };
        let body = match self {
            Self::Protobuf => RpcStatus {
                code,
                message: message.to_owned(),
            }
            .encode_to_vec(),
            Self::Json => serde_json::json!({ "code": code, "message": message })
                .to_string()
                .into_bytes(),
        };
        let mut response =
            (status, [(header::CONTENT_TYPE, self.content_type())], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// `google.rpc.Status` without `details` (all an OTLP error body needs).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Content type, encoding, size and time checks shared by the three signals: the
/// decompressed body, or the response to send instead. A body still arriving after
/// [`REQUEST_TIMEOUT`] gets 408 (counted as `request_timeout`).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    state: &HttpState,
) -> Result<(Encoding, Bytes), Response> {
    let max_body = state.max_body;
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let media_type = header_text(header::CONTENT_TYPE)
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match media_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            let message = "content type must be application/x-protobuf or application/json";
            return Err(Encoding::Json.failure(StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
        }
    };
    let gzip = match header_text(header::CONTENT_ENCODING)
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => false,
        "gzip" => true,
        _ => {
            let response = encoding.failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content encoding must be gzip or none",
            );
            return Err(response);
        }
    };
    // Reading fails past the limit (or when the client goes away, when no one reads this).
    let body =
        match tokio::time::timeout(REQUEST_TIMEOUT, axum::body::to_bytes(body, max_body)).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                return Err(encoding.failure(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
            }
            Err(_) => {
                let metrics = state.receiver.logs.metrics();
                metrics.input_error(SourceKind::Otlp, "request_timeout");
                return Err(encoding.failure(StatusCode::REQUEST_TIMEOUT, "body too slow"));
            }
        };
    if !gzip {
        return Ok((encoding, body));
    }
    let mut decoded = Vec::new();
    let mut reader = std::io::Read::take(
        flate2::read::MultiGzDecoder::new(&body[..]),
        max_body as u64 + 1,
    );
    match std::io::Read::read_to_end(&mut reader, &mut decoded) {
        Ok(_) if decoded.len() > max_body => {
            Err(encoding.failure(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))
        }
        Ok(_) => Ok((encoding, Bytes::from(decoded))),
        Err(_) => Err(encoding.failure(StatusCode::BAD_REQUEST, "invalid gzip body")),
    }
}

async fn export_traces(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let (encoding, body) = match read_body(&headers, body, &state).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    match encoding.decode::<ExportTraceServiceRequest>(&body, &state.receiver, Signal::Traces) {
        Ok(request) => {
            state.receiver.traces(&request);
            encoding.success::<ExportTraceServiceResponse>()
        }
        Err((status, message)) => encoding.failure(status, &message),
    }
}

async fn export_metrics(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (encoding, body) = match read_body(&headers, body, &state).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    match encoding.decode::<ExportMetricsServiceRequest>(&body, &state.receiver, Signal::Metrics) {
        Ok(request) => {
            state.receiver.metrics(&request);
            encoding.success::<ExportMetricsServiceResponse>()
        }
        Err((status, message)) => encoding.failure(status, &message),
    }
}

async fn export_logs(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let (encoding, body) = match read_body(&headers, body, &state).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let request =
        match encoding.decode::<ExportLogsServiceRequest>(&body, &state.receiver, Signal::Logs) {
            Ok(request) => request,
            Err((status, message)) => return encoding.failure(status, &message),
        };
    drop(body);
    match state.receiver.logs(&request).await {
        Ok(()) => encoding.success::<ExportLogsServiceResponse>(),
        Err(Closed) => encoding.failure(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

//! OpenTelemetry export to the sidecar: one SERVER span per request and the
//! `http.server.request.duration` histogram, over OTLP/HTTP (protobuf), on only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! [`init`] validates the variables ([`OtelConfig::from_env`], pure), then builds a tracer
//! provider with a batch span processor and a meter provider with a periodic reader
//! ([`OtelConfig::build`]). Both export from the SDK's own threads; their HTTP requests run
//! on the application's Tokio runtime ([`ExportClient`]), so a request never waits for the
//! network and a failed export only costs a rate-limited warning. The returned [`OtelGuard`]
//! gives the `tracing` layer (for `telemetry::init_with`) and the [`OtelHandles`] of the
//! per-request middleware [`layer`] (for `with_layers_and_otel`), and flushes both providers
//! on drop within [`SHUTDOWN_TIMEOUT`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use tokio::runtime::Handle;
use tracing::{Instrument as _, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::access_log::{REQUEST_ID_HEADER, UNMATCHED_ROUTE};
use crate::config::Env;

/// Base URL of the OTLP/HTTP receiver; `/v1/traces` and `/v1/metrics` are appended.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Overrides [`DEFAULT_SERVICE_NAME`].
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// Milliseconds between metric exports.
pub const METRIC_INTERVAL_VAR: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// Spans per export request (default [`DEFAULT_SPAN_BATCH_SIZE`]).
pub const SPAN_BATCH_SIZE_VAR: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// `otlp` (default) or `none`: whether spans are made and exported.
pub const TRACES_EXPORTER_VAR: &str = "OTEL_TRACES_EXPORTER";
/// `otlp` (default) or `none`: whether the duration histogram is recorded and exported.
pub const METRICS_EXPORTER_VAR: &str = "OTEL_METRICS_EXPORTER";
/// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "api";
/// The OpenTelemetry default metric export interval.
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(10);
/// Spans per export, below the SDK's 512: an export is a burst of CPU (encoding here,
/// decoding in the sidecar, on the same cores) that requests wait behind, so small batches
/// keep it short. Measured on a shared 2-core machine, GET /health over one connection, API
/// and sidecar on the same cores: p99 ≈ +450–550 µs with 512, ≈ +50–100 µs with 64 (noisy);
/// at saturation 64 costs more CPU (more requests to the sidecar).
pub const DEFAULT_SPAN_BATCH_SIZE: usize = 64;
/// Longest the final flush may delay the exit: with the 20 s server grace, still well under
/// ECS's 30 s stop timeout.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of one export request (the receiver is the sidecar, on loopback).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning about failed exports per this interval.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The semantic-conventions histogram of server request durations, in seconds.
pub const REQUEST_DURATION: &str = "http.server.request.duration";
/// Attribute: the route template (`/api/users/{id}`), never the raw path.
pub const HTTP_ROUTE: &str = "http.route";
/// Attribute: the request method, `_OTHER` for methods outside the standard ones.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// Attribute: the response status code (an integer).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The method label of non-standard methods, so clients cannot inflate the label set.
pub const OTHER_METHOD: &str = "_OTHER";

/// The semantic conventions' advice, refined below 5 ms where the health checks live.
const DURATION_BOUNDARIES: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
];

/// What was wrong with the OpenTelemetry variables, or what failed while building.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// Variables that are set but wrong, each with what was expected (never the value).
    #[error("invalid OpenTelemetry configuration: {}", describe(.0))]
    Invalid(Vec<(&'static str, &'static str)>),
    /// The OTLP exporter of `signal` could not be built.
    #[error("cannot build the OTLP {signal} exporter")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// What the exporter builder said.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

impl OtelError {
    /// A stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "otel_config_invalid",
            Self::Exporter { .. } => "otel_exporter_build",
        }
    }
}

fn describe(invalid: &[(&'static str, &'static str)]) -> String {
    let parts: Vec<String> = invalid
        .iter()
        .map(|(name, expected)| format!("{name} ({expected})"))
        .collect();
    parts.join(", ")
}

/// The validated OpenTelemetry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelConfig {
    /// The receiver's base URL, without a trailing `/`.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// `deployment.environment` (`APP_ENV`, default `dev`).
    pub environment: String,
    /// Time between metric exports.
    pub metric_interval: Duration,
    /// Most spans per export request.
    pub span_batch_size: usize,
    /// Make and export SERVER spans.
    pub traces: bool,
    /// Record and export the duration histogram.
    pub metrics: bool,
}

impl OtelConfig {
    /// `None` when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset, or both signals are `none` (export
    /// off); every invalid variable otherwise. Pure: reads `env` only.
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, OtelError> {
        let Some(endpoint) = env.var(ENDPOINT_VAR) else {
            return Ok(None);
        };
        let mut invalid = Vec::new();
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let valid_endpoint = endpoint.parse::<Uri>().is_ok_and(|uri| {
            uri.scheme_str() == Some("http") && uri.host().is_some_and(|h| !h.is_empty())
        });
        if !valid_endpoint {
            invalid.push((
                ENDPOINT_VAR,
                "an http:// URL such as http://127.0.0.1:4318 (no TLS)",
            ));
        }
        let metric_interval = match env.var(METRIC_INTERVAL_VAR) {
            None => DEFAULT_METRIC_INTERVAL,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    invalid.push((METRIC_INTERVAL_VAR, "a positive number of milliseconds"));
                    DEFAULT_METRIC_INTERVAL
                }
            },
        };
        let span_batch_size = match env.var(SPAN_BATCH_SIZE_VAR) {
            None => DEFAULT_SPAN_BATCH_SIZE,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(size) if size > 0 => size,
                _ => {
                    invalid.push((SPAN_BATCH_SIZE_VAR, "a positive number of spans"));
                    DEFAULT_SPAN_BATCH_SIZE
                }
            },
        };
        let mut enabled = |name: &'static str| match env.var(name).as_deref() {
            None | Some("otlp") => true,
            Some("none") => false,
            Some(_) => {
                invalid.push((name, "otlp or none"));
                false
            }
        };
        let traces = enabled(TRACES_EXPORTER_VAR);
        let metrics = enabled(METRICS_EXPORTER_VAR);
        if !invalid.is_empty() {
            return Err(OtelError::Invalid(invalid));
        }
        if !traces && !metrics {
            return Ok(None);
        }
        Ok(Some(Self {
            endpoint,
            service_name: env
                .var(SERVICE_NAME_VAR)
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            environment: env.var("APP_ENV").unwrap_or_else(|| "dev".to_owned()),
            metric_interval,
            span_batch_size,
            traces,
            metrics,
        }))
    }

    /// Builds both providers; their HTTP requests will run on `runtime`, which must outlive
    /// the guard's drop (drop it before the runtime, outside `block_on`).
    pub fn build(&self, runtime: &Handle) -> Result<OtelGuard, OtelError> {
        let client: Arc<dyn HttpClient> = Arc::new(ExportClient::new(runtime.clone()));
        // Both exporters first: a failure then leaves no provider thread behind.
        let span_exporter = self
            .traces
            .then(|| {
                SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(format!("{}/v1/traces", self.endpoint))
                    .with_timeout(EXPORT_TIMEOUT)
                    .with_shared_http_client(client.clone())
                    .build()
                    .map_err(|source| OtelError::Exporter {
                        signal: "traces",
                        source,
                    })
            })
            .transpose()?;
        let metric_exporter = self
            .metrics
            .then(|| {
                MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(format!("{}/v1/metrics", self.endpoint))
                    .with_timeout(EXPORT_TIMEOUT)
                    .with_shared_http_client(client.clone())
                    .build()
                    .map_err(|source| OtelError::Exporter {
                        signal: "metrics",
                        source,
                    })
            })
            .transpose()?;

        let resource = Resource::builder_empty()
            .with_service_name(self.service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("deployment.environment", self.environment.clone()),
                // The current semantic-conventions name of the same thing.
                KeyValue::new("deployment.environment.name", self.environment.clone()),
            ])
            .build();
        let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer_provider = span_exporter.map(|exporter| {
            SdkTracerProvider::builder()
                .with_span_processor(
                    BatchSpanProcessor::builder(exporter)
                        .with_batch_config(
                            // The other OTEL_BSP_* variables (queue size, delay) still apply.
                            BatchConfigBuilder::default()
                                .with_max_export_batch_size(self.span_batch_size)
                                .build(),
                        )
                        .build(),
                )
                .with_resource(resource.clone())
                .build()
        });
        let meter_provider = metric_exporter.map(|exporter| {
            SdkMeterProvider::builder()
                .with_reader(
                    PeriodicReader::builder(exporter)
                        .with_interval(self.metric_interval)
                        .build(),
                )
                .with_resource(resource)
                .build()
        });
        let tracer = tracer_provider
            .as_ref()
            .map(|provider| provider.tracer_with_scope(scope.clone()));
        let request_duration = meter_provider.as_ref().map(|provider| {
            provider
                .meter_with_scope(scope)
                .f64_histogram(REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build()
        });
        Ok(OtelGuard {
            tracer_provider,
            meter_provider,
            handles: OtelHandles {
                spans: tracer.is_some(),
                request_duration,
            },
            tracer,
        })
    }
}

/// Reads the configuration from `env` and builds the providers: `Ok(None)` when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is unset. Call it before `telemetry::init_with` (which
/// takes [`OtelGuard::tracing_layer`]) and log the error, if any, after.
pub fn init(env: &dyn Env, runtime: &Handle) -> Result<Option<OtelGuard>, OtelError> {
    OtelConfig::from_env(env)?
        .map(|config| config.build(runtime))
        .transpose()
}

/// Keeps the providers; flushes and shuts both down on drop, waiting at most
/// [`SHUTDOWN_TIMEOUT`].
#[derive(Debug)]
pub struct OtelGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    tracer: Option<SdkTracer>,
    handles: OtelHandles,
}

impl OtelGuard {
    /// The `tracing` → OpenTelemetry layer (`None` when traces are off). It sees spans at
    /// INFO or above only: events stay
    /// in the JSON log (not copied into spans), and the TRACE spans of dependencies never
    /// become exported spans. Location, thread, target and busy/idle attributes are off
    /// (cost, and nothing the sidecar reads).
    pub fn tracing_layer<S>(&self) -> Option<impl Layer<S> + Send + Sync + 'static>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
    {
        let tracer = self.tracer.clone()?;
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Spans link to their parents through the tracing registry; no thread-local
            // OpenTelemetry context is switched on every poll.
            .with_context_activation(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && *meta.level() <= tracing::Level::INFO
            }));
        Some(layer)
    }

    /// What the per-request middleware records into.
    pub fn handles(&self) -> OtelHandles {
        self.handles.clone()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        // Each shutdown runs on its own thread so that neither a hung receiver nor the SDK's
        // own (longer) timeouts can hold the exit beyond SHUTDOWN_TIMEOUT.
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let (done, finished) = mpsc::channel();
        let mut started = 0;
        if let Some(provider) = self.tracer_provider.clone() {
            started += spawn_shutdown("traces", done.clone(), move || {
                provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            });
        }
        if let Some(provider) = self.meter_provider.clone() {
            started += spawn_shutdown("metrics", done, move || {
                provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            });
        }
        for _ in 0..started {
            match finished.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((_, Ok(()))) => {}
                Ok((signal, Err(error))) => {
                    tracing::warn!(target: "otel", signal, error = %error, "OpenTelemetry flush failed");
                }
                Err(_) => {
                    tracing::warn!(
                        target: "otel",
                        timeout_ms = SHUTDOWN_TIMEOUT.as_millis() as u64,
                        "OpenTelemetry flush abandoned at the deadline"
                    );
                    return;
                }
            }
        }
    }
}

type ShutdownResult = (&'static str, opentelemetry_sdk::error::OTelSdkResult);

fn spawn_shutdown(
    signal: &'static str,
    done: mpsc::Sender<ShutdownResult>,
    shutdown: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) -> usize {
    let spawned = std::thread::Builder::new()
        .name(format!("otel-shutdown-{signal}"))
        .spawn(move || {
            let _ = done.send((signal, shutdown()));
        });
    usize::from(spawned.is_ok())
}

/// The OTLP HTTP client: hyper (no TLS), driven by the application's runtime because the
/// SDK's export threads have none. Failures are logged at most once per
/// [`WARNING_INTERVAL`], with the number left unlogged.
#[derive(Debug)]
pub struct ExportClient {
    http: HyperClient,
    runtime: Handle,
    warnings: Mutex<WarningState>,
}

#[derive(Debug, Default)]
struct WarningState {
    last: Option<Instant>,
    suppressed: u64,
}

impl ExportClient {
    /// A client whose requests run on `runtime`.
    pub fn new(runtime: Handle) -> Self {
        Self {
            http: HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
            runtime,
            warnings: Mutex::new(WarningState::default()),
        }
    }

    fn warn(&self, path: &str, error: &dyn fmt::Display) {
        let now = Instant::now();
        let suppressed = {
            let mut state = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
            if state
                .last
                .is_some_and(|last| now.duration_since(last) < WARNING_INTERVAL)
            {
                state.suppressed += 1;
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        tracing::warn!(
            target: "otel",
            path,
            error = %error,
            suppressed,
            "OpenTelemetry export failed; further failures are logged at most once a minute"
        );
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, HttpError> {
        let path = request.uri().path().to_owned();
        let http = self.http.clone();
        let result = match self
            .runtime
            .spawn(async move { http.send_bytes(request).await })
            .await
        {
            Ok(result) => result,
            // The runtime is shutting down.
            Err(error) => Err(Box::new(error) as HttpError),
        };
        match &result {
            Ok(response) if !response.status().is_success() => {
                self.warn(&path, &format_args!("HTTP status {}", response.status()));
            }
            Ok(_) => {}
            Err(error) => self.warn(&path, error),
        }
        result
    }
}

/// The instruments the per-request middleware records into.
#[derive(Debug, Clone)]
pub struct OtelHandles {
    spans: bool,
    request_duration: Option<Histogram<f64>>,
}

/// The middleware: one SERVER span per request and one `http.server.request.duration`
/// sample (recorded whether or not the span is sampled), each unless its signal is off. Install it outside the access-log
/// layer, so it sees the final status (timeouts included) and the response's request id.
pub async fn layer(State(handles): State<OtelHandles>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map(MatchedPath::as_str);
    let span = if handles.spans {
        tracing::info_span!(
            "request",
            otel.name = %SpanName { method, route },
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.route = route.unwrap_or(UNMATCHED_ROUTE),
            http.request.method = method,
            http.response.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let response = next.run(request).instrument(span.clone()).await;

    let status = i64::from(response.status().as_u16());
    if handles.spans {
        span.record(HTTP_RESPONSE_STATUS_CODE, status);
        if let Some(id) = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
        {
            span.record("request_id", id);
        }
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
    drop(span); // ends the span before the histogram sample, so both measure the same thing
    if let Some(histogram) = &handles.request_duration {
        let route: Value = match route {
            Some(route) => route.to_owned().into(),
            None => UNMATCHED_ROUTE.into(),
        };
        histogram.record(
            start.elapsed().as_secs_f64(),
            &[
                KeyValue::new(HTTP_ROUTE, route),
                KeyValue::new(HTTP_REQUEST_METHOD, method),
                KeyValue::new(HTTP_RESPONSE_STATUS_CODE, status),
            ],
        );
    }
    response
}

/// The standard method names as `&'static str` (no allocation), `_OTHER` for the rest.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "PATCH" => "PATCH",
        _ => OTHER_METHOD,
    }
}

/// The semantic conventions' server span name: `{method} {route}`, `{method}` alone when no
/// route matched (never the raw path), and `HTTP` in place of `_OTHER`.
struct SpanName<'a> {
    method: &'static str,
    route: Option<&'a str>,
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = if self.method == OTHER_METHOD {
            "HTTP"
        } else {
            self.method
        };
        match self.route {
            Some(route) => write!(f, "{method} {route}"),
            None => f.write_str(method),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        let vars = env(&[(METRIC_INTERVAL_VAR, "500"), ("APP_ENV", "prod")]);
        assert_eq!(OtelConfig::from_env(&vars).unwrap(), None);
        assert_eq!(
            OtelConfig::from_env(&env(&[(ENDPOINT_VAR, "")])).unwrap(),
            None
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let config = OtelConfig::from_env(&env(&[(ENDPOINT_VAR, "http://127.0.0.1:4318/")]))
            .unwrap()
            .unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:4318");
        assert_eq!(config.service_name, "api");
        assert_eq!(config.environment, "dev");
        assert_eq!(config.metric_interval, DEFAULT_METRIC_INTERVAL);
        assert!(config.traces && config.metrics);
        assert_eq!(config.span_batch_size, DEFAULT_SPAN_BATCH_SIZE);

        let vars = env(&[
            (ENDPOINT_VAR, "http://sidecar:4318/otlp"),
            (SERVICE_NAME_VAR, "api-canary"),
            (METRIC_INTERVAL_VAR, "500"),
            ("APP_ENV", "staging"),
            (TRACES_EXPORTER_VAR, "none"),
            (METRICS_EXPORTER_VAR, "otlp"),
            (SPAN_BATCH_SIZE_VAR, "512"),
        ]);
        let config = OtelConfig::from_env(&vars).unwrap().unwrap();
        assert_eq!(config.endpoint, "http://sidecar:4318/otlp");
        assert_eq!(config.service_name, "api-canary");
        assert_eq!(config.environment, "staging");
        assert_eq!(config.metric_interval, Duration::from_millis(500));
        assert!(!config.traces && config.metrics);
        assert_eq!(config.span_batch_size, 512);

        let vars = env(&[
            (ENDPOINT_VAR, "http://127.0.0.1:4318"),
            (TRACES_EXPORTER_VAR, "none"),
            (METRICS_EXPORTER_VAR, "none"),
        ]);
        assert_eq!(OtelConfig::from_env(&vars).unwrap(), None, "both off");
    }

    #[test]
    fn validate_rejects_every_bad_variable_at_once() {
        let vars = env(&[
            (ENDPOINT_VAR, "https://collector.example:4318"),
            (METRIC_INTERVAL_VAR, "0"),
            (TRACES_EXPORTER_VAR, "jaeger"),
            (SPAN_BATCH_SIZE_VAR, "-1"),
        ]);
        let Err(OtelError::Invalid(invalid)) = OtelConfig::from_env(&vars) else {
            panic!("accepted");
        };
        let names: Vec<_> = invalid.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                ENDPOINT_VAR,
                METRIC_INTERVAL_VAR,
                SPAN_BATCH_SIZE_VAR,
                TRACES_EXPORTER_VAR
            ]
        );
        for endpoint in ["127.0.0.1:4318", "not a url", "http://"] {
            let vars = env(&[(ENDPOINT_VAR, endpoint)]);
            assert!(OtelConfig::from_env(&vars).is_err(), "{endpoint}");
        }
        let vars = env(&[(ENDPOINT_VAR, "http://x:1"), (METRIC_INTERVAL_VAR, "10s")]);
        let error = OtelConfig::from_env(&vars).unwrap_err();
        assert_eq!(error.kind(), "otel_config_invalid");
        assert!(!error.to_string().contains("10s"), "values never appear");
    }

    #[test]
    fn methods_are_bounded_and_span_names_never_hold_the_path() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
        let name = |method, route| SpanName { method, route }.to_string();
        assert_eq!(name("GET", Some("/api/users/{id}")), "GET /api/users/{id}");
        assert_eq!(name("GET", None), "GET");
        assert_eq!(name(OTHER_METHOD, Some("/health")), "HTTP /health");
    }
}

//! `POST /v1/logs`: NDJSON (optionally gzip) in, one event per line. 200 only once every
//! line is accepted; 413 over the size cap; 503 with `Retry-After` when the pipeline is full.

use std::io::Read;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::metrics::SourceKind;
use crate::pipeline::event::RawLine;
use crate::pipeline::{EventSender, TrySendError};

#[derive(Debug, Clone)]
struct HttpState {
    out: EventSender,
    max_body: usize,
}

/// The router (separate from `run` for tests).
pub fn router(out: EventSender, max_body: usize) -> Router {
    Router::new()
        .route("/v1/logs", post(ingest))
        // Compressed bodies are checked again after decompression.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(HttpState { out, max_body })
}

/// Serves until `shutdown` fires.
pub async fn run(
    config: HttpConfig,
    out: EventSender,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.address).await?;
    tracing::info!(address = %config.address, "http source listening");
    axum::serve(listener, router(out, config.max_body_bytes))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

fn reply(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"error\":\"{message}\"}}"),
    )
        .into_response()
}

async fn ingest(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = if gzip {
        let mut decoded = Vec::new();
        let limit = state.max_body as u64 + 1;
        match flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut decoded)
        {
            Ok(_) if decoded.len() > state.max_body => {
                state
                    .out
                    .metrics()
                    .input_error(SourceKind::Http, "too_large");
                return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            }
            Ok(_) => Bytes::from(decoded),
            Err(_) => {
                state
                    .out
                    .metrics()
                    .input_error(SourceKind::Http, "bad_gzip");
                return reply(StatusCode::BAD_REQUEST, "invalid gzip body");
            }
        }
    } else {
        body
    };
    let lines: Vec<RawLine> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(RawLine::new)
        .collect();
    let count = lines.len();
    match state.out.try_send(lines) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"accepted\":{count}}}"),
        )
            .into_response(),
        Err(TrySendError::Full) => {
            state
                .out
                .metrics()
                .input_error(SourceKind::Http, "pipeline_full");
            let mut response = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "pipeline full, retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        Err(TrySendError::TooLarge) => reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "more than the buffer can ever hold",
        ),
        Err(TrySendError::Closed) => reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::{Metrics, SourceKind};
    use crate::pipeline::budget::MemoryBudget;
    use crate::pipeline::parse::ParseFields;
    use crate::pipeline::{Batch, Processor};

    fn setup(budget_bytes: usize, max_body: usize) -> (Router, tokio::sync::mpsc::Receiver<Batch>) {
        let (router, rx, _) = setup_with_metrics(budget_bytes, max_body);
        (router, rx)
    }

    fn setup_with_metrics(
        budget_bytes: usize,
        max_body: usize,
    ) -> (Router, tokio::sync::mpsc::Receiver<Batch>, Arc<Metrics>) {
        let processor = Processor::new(
            ParseFields {
                timestamp: "timestamp".into(),
                level: "level".into(),
                timing: None,
            },
            None,
            1024,
        );
        let metrics = Arc::new(Metrics::default());
        let (senders, rx) =
            crate::pipeline::channel(processor, MemoryBudget::new(budget_bytes), metrics.clone());
        (
            router(senders.for_source(SourceKind::Http), max_body),
            rx,
            metrics,
        )
    }

    fn post(body: impl Into<Body>, gzip: bool) -> Request<Body> {
        let mut request = Request::post("/v1/logs").header("content-type", "application/x-ndjson");
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        request.body(body.into()).unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn ndjson_lines_are_accepted_before_200() {
        let (app, mut rx) = setup(1 << 20, 1 << 16);
        let response = app
            .oneshot(post("{\"a\":1}\nplain\n\n{\"b\":2}", false))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, r#"{"accepted":3}"#);
        let batch = rx.try_recv().expect("queued before the answer");
        let messages: Vec<_> = batch.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["{\"a\":1}", "plain", "{\"b\":2}"]);
    }

    #[tokio::test]
    async fn gzip_bodies_are_decoded() {
        let (app, mut rx) = setup(1 << 20, 1 << 16);
        let response = app.oneshot(post(gzip(b"one\ntwo\n"), true)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(rx.try_recv().unwrap().events.len(), 2);
    }

    #[tokio::test]
    async fn oversize_bodies_get_413_compressed_or_not() {
        let (app, mut rx) = setup(1 << 20, 1024);
        let big = vec![b'x'; 2048];
        let response = app.clone().oneshot(post(big.clone(), false)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // 2 KiB of x compresses to a few bytes: the limit applies after decompression too.
        let response = app.oneshot(post(gzip(&big), true)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            rx.try_recv().is_err(),
            "nothing is accepted from a rejected body"
        );
    }

    #[tokio::test]
    async fn full_pipeline_gets_503_with_retry_after() {
        // Each request costs 150 + 64 bytes of a 1000-byte budget: four fit, the fifth not.
        let (app, mut rx, metrics) = setup_with_metrics(1000, 4096);
        for _ in 0..4 {
            let response = app
                .clone()
                .oneshot(post("x".repeat(150), false))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let fifth = app
            .clone()
            .oneshot(post("x".repeat(150), false))
            .await
            .unwrap();
        assert_eq!(fifth.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(fifth.headers()[header::RETRY_AFTER], "1");
        let rendered = metrics.render(&MemoryBudget::new(1));
        assert!(
            rendered
                .contains("agent_input_errors_total{source=\"http\",kind=\"pipeline_full\"} 1\n"),
            "{rendered}"
        );
        for _ in 0..4 {
            assert_eq!(rx.try_recv().unwrap().events.len(), 1);
        }
        assert!(
            rx.try_recv().is_err(),
            "the refused request left nothing behind"
        );
    }

    #[tokio::test]
    async fn a_request_that_could_never_fit_gets_413_not_503() {
        // 1000 one-byte lines cost 1000 × (1 + overhead) bytes: more than this whole budget.
        let (app, _rx) = setup(10_000, 4096);
        let response = app.oneshot(post("x\n".repeat(1000), false)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn bad_gzip_is_a_400() {
        let (app, _rx) = setup(1 << 20, 4096);
        let response = app.oneshot(post("not gzip at all", true)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}

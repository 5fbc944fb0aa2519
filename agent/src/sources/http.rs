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
                return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            }
            Ok(_) => Bytes::from(decoded),
            Err(_) => return reply(StatusCode::BAD_REQUEST, "invalid gzip body"),
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
            let mut response = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "pipeline full, retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        Err(TrySendError::Closed) => reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

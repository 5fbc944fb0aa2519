//! `POST /v1/logs`: NDJSON (optionally gzip) in, one event per line. 200 only once every
//! line is accepted; 413 over the size cap; 503 with `Retry-After` when the pipeline is full.
//!
//! hyper, as `axum::serve` runs it, has no timeouts, so a client trickling a byte at a time
//! (slow-loris) would hold its connection forever. Connections therefore go through a
//! [`GuardedListener`]: at most [`MAX_CONNECTIONS`] at once (more get an immediate 503 and
//! are closed), a request's headers must arrive within [`REQUEST_TIMEOUT`] of its first
//! byte and its body within as long again (else the connection is closed, or 408), and a
//! keep-alive connection idle for [`IDLE_TIMEOUT`] is closed.

use std::future::Future as _;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

pub use super::http_config::HttpConfig;
use crate::metrics::SourceKind;
use crate::pipeline::event::{EVENT_OVERHEAD, RawLine};
use crate::pipeline::{EventSender, TrySendError};

/// Most simultaneous connections (until `[sources.http]` has a `max_connections` key).
pub const MAX_CONNECTIONS: usize = 256;

/// Time a request's headers get from its first byte, and its body from the end of the
/// headers. Loopback clients send megabytes in milliseconds; only a slow-loris needs more.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive connection with no request in progress is closed after this long: longer
/// than HTTP clients keep idle pooled connections (90 s for hyper and Go), so that the
/// client, not the agent, closes first and never sends on a connection being closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The answer to a connection over [`MAX_CONNECTIONS`], written before closing it.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: application/json\r\ncontent-length: 32\r\nconnection: close\r\n\r\n\
{\"error\":\"too many connections\"}";

#[derive(Debug, Clone)]
struct HttpState {
    out: EventSender,
    max_body: usize,
    body_timeout: Duration,
}

/// The router (separate from `run` for tests), with [`REQUEST_TIMEOUT`] for bodies.
pub fn router(out: EventSender, max_body: usize) -> Router {
    router_with(out, max_body, REQUEST_TIMEOUT)
}

fn router_with(out: EventSender, max_body: usize, body_timeout: Duration) -> Router {
    Router::new()
        .route("/v1/logs", post(ingest))
        // Compressed bodies are checked again after decompression.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(HttpState {
            out,
            max_body,
            body_timeout,
        })
}

/// Serves until `shutdown` fires.
pub async fn run(
    config: HttpConfig,
    out: EventSender,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.address).await?;
    tracing::info!(address = %config.address, "http source listening");
    let limits = ConnectionLimits {
        max_connections: config.max_connections,
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        idle_timeout: Duration::from_millis(config.idle_timeout_ms),
    };
    let router = router_with(out.clone(), config.max_body_bytes, limits.request_timeout);
    let listener = GuardedListener::new(listener, limits, out, SourceKind::Http);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// The lines of an NDJSON body: split on `\n`, blank lines (ASCII whitespace only)
/// skipped. A `\r` before the `\n` is left for the pipeline, which drops it.
pub fn ndjson_lines(body: &[u8]) -> Vec<RawLine> {
    body.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(RawLine::new)
        .collect()
}

fn reply(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"error\":\"{message}\"}}"),
    )
        .into_response()
}

async fn ingest(State(state): State<HttpState>, request: Request) -> Response {
    let metrics = state.out.metrics();
    let gzip = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    // Reading the body honours `DefaultBodyLimit`; the headers' deadline is the listener's.
    let read = tokio::time::timeout(state.body_timeout, Bytes::from_request(request, &state));
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics.input_error(SourceKind::Http, "too_large");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        // The client went away mid-body: nobody reads the answer.
        Ok(Err(rejection)) => return rejection.into_response(),
        Err(_) => {
            metrics.input_error(SourceKind::Http, "request_timeout");
            return reply(StatusCode::REQUEST_TIMEOUT, "body too slow");
        }
    };
    let body = if gzip {
        let mut decoded = Vec::new();
        let limit = state.max_body as u64 + 1;
        match flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut decoded)
        {
            Ok(_) if decoded.len() > state.max_body => {
                metrics.input_error(SourceKind::Http, "too_large");
                return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            }
            Ok(_) => Bytes::from(decoded),
            Err(_) => {
                metrics.input_error(SourceKind::Http, "bad_gzip");
                return reply(StatusCode::BAD_REQUEST, "invalid gzip body");
            }
        }
    } else {
        body
    };
    // What the lines would cost once materialised, counted before they are: 4 KB of
    // gzipped `a\n` × 2M would otherwise allocate ~300 MB on the way to the 413.
    let most_lines = memchr::memchr_iter(b'\n', &body).count() + 1;
    if body.len() + most_lines * EVENT_OVERHEAD > state.out.max_batch_cost() {
        metrics.input_error(SourceKind::Http, "too_large");
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "more than the buffer can ever hold",
        );
    }
    let lines = ndjson_lines(&body);
    drop(body);
    let count = lines.len();
    match state.out.try_send(lines).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"accepted\":{count}}}"),
        )
            .into_response(),
        Err(TrySendError::Full) => {
            metrics.input_error(SourceKind::Http, "pipeline_full");
            let mut response = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "pipeline full, retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        Err(TrySendError::TooLarge) => {
            metrics.input_error(SourceKind::Http, "too_large");
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "more than the buffer can ever hold",
            )
        }
        Err(TrySendError::Closed) => reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

/// Connection limits of an HTTP input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most simultaneous connections; more get a 503 and are closed (counted as
    /// `connection_refused`).
    pub max_connections: usize,
    /// Time from a request's first byte until its headers have arrived (the listener
    /// closes the connection), and from then until its body has (the router answers 408);
    /// both are counted as `request_timeout`.
    pub request_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            request_timeout: REQUEST_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// A TCP listener for `axum::serve` that enforces [`ConnectionLimits`] (hyper, as axum runs
/// it, has no timeouts of its own), counting what it refuses or cuts off in
/// `agent_input_errors_total` under `source`.
#[derive(Debug)]
pub struct GuardedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
    counter: EventSender,
    source: SourceKind,
}

impl GuardedListener {
    /// Wraps `listener`; `counter` is only used for its metrics.
    pub fn new(
        listener: TcpListener,
        limits: ConnectionLimits,
        counter: EventSender,
        source: SourceKind,
    ) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(
                limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            limits,
            counter,
            source,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, std::net::SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    tracing::warn!(%error, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max_connections = self.limits.max_connections, "refusing an http connection: too many open");
                self.counter
                    .metrics()
                    .input_error(self.source, "connection_refused");
                // Best effort, never waiting: the client learns why, then the socket closes.
                let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let io = GuardedIo {
                stream,
                _slot: slot,
                deadline: Box::pin(tokio::time::sleep(self.limits.idle_timeout)),
                phase: Phase::Idle,
                expired: false,
                limits: self.limits,
                counter: self.counter.clone(),
                source: self.source,
            };
            return (io, peer);
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection under [`ConnectionLimits`]: it holds one of the listener's slots, and its
/// reads fail with `TimedOut` when a request's headers (from its first byte to the blank
/// line) or the idle time between requests exceed their limits; hyper then closes it.
/// Once the headers are in, reads have no deadline here: the handler times the body, and
/// hyper keeps reading (to notice a client that hangs up) while the handler works.
#[derive(Debug)]
pub struct GuardedIo {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    phase: Phase,
    expired: bool,
    limits: ConnectionLimits,
    counter: EventSender,
    source: SourceKind,
}

/// Where a connection is in its request/response cycle, as its bytes show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress: the idle deadline applies.
    Idle,
    /// Reading a request's headers: the request deadline applies. `newline` is set when
    /// the last byte other than `\r` was `\n` (so the next `\n` ends the headers).
    Head { newline: bool },
    /// The headers are in; the response is not written yet.
    Body,
}

impl GuardedIo {
    /// A response is being written: the request is over, the idle clock starts.
    fn wrote(&mut self) {
        self.phase = Phase::Idle;
        let idle = Instant::now() + self.limits.idle_timeout;
        self.deadline.as_mut().reset(idle);
    }

    /// Follows the request through newly read bytes.
    fn read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            // The first byte of a request: the headers' clock starts.
            self.phase = Phase::Head { newline: false };
            let deadline = Instant::now() + self.limits.request_timeout;
            self.deadline.as_mut().reset(deadline);
        }
        let Phase::Head { mut newline } = self.phase else {
            return;
        };
        for &byte in bytes {
            match byte {
                b'\n' if newline => {
                    self.phase = Phase::Body;
                    return;
                }
                b'\n' => newline = true,
                b'\r' => {}
                _ => newline = false,
            }
        }
        self.phase = Phase::Head { newline };
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if this.phase == Phase::Body || this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.expired = true;
                if matches!(this.phase, Phase::Head { .. }) {
                    tracing::warn!(
                        timeout = ?this.limits.request_timeout,
                        "closing an http connection: its request headers did not arrive in time"
                    );
                    this.counter
                        .metrics()
                        .input_error(this.source, "request_timeout");
                }
                Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::Metrics;
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
        let (app, mut rx, metrics) = setup_with_metrics(1 << 20, 1024);
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
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            rendered.contains("agent_input_errors_total{kind=\"too_large\",source=\"http\"} 2\n"),
            "both refusals are counted: {rendered}"
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
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            rendered
                .contains("agent_input_errors_total{kind=\"pipeline_full\",source=\"http\"} 1\n"),
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

    // ---- Connection limits ------------------------------------------------------------

    const DEADLINE: Duration = Duration::from_secs(5);

    /// Serves the router behind a [`GuardedListener`] on a free port.
    async fn serve_guarded(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        Arc<Metrics>,
        tokio::sync::mpsc::Receiver<Batch>,
    ) {
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
            crate::pipeline::channel(processor, MemoryBudget::new(1 << 20), metrics.clone());
        let out = senders.for_source(SourceKind::Http);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = router_with(out.clone(), 4096, limits.request_timeout);
        let listener = GuardedListener::new(listener, limits, out, SourceKind::Http);
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, metrics, rx)
    }

    /// One `POST /v1/logs` on a keep-alive connection; the status.
    async fn post_on(stream: &mut TcpStream, body: &str) -> u16 {
        let request = format!(
            "POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::timeout(DEADLINE, read_status(stream))
            .await
            .expect("an answer in time")
    }

    /// Reads one response (headers, then `content-length` bytes); its status, 0 at EOF.
    async fn read_status(stream: &mut TcpStream) -> u16 {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                return 0;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    async fn closed(stream: &mut TcpStream) {
        let mut sink = [0u8; 64];
        loop {
            let read = tokio::time::timeout(DEADLINE, stream.read(&mut sink))
                .await
                .expect("closed in time");
            if matches!(read, Ok(0) | Err(_)) {
                return;
            }
        }
    }

    fn limits(max_connections: usize, request_ms: u64, idle_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            request_timeout: Duration::from_millis(request_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    #[tokio::test]
    async fn a_request_trickled_a_byte_at_a_time_is_cut_off_and_counted() {
        let (address, metrics, mut rx) = serve_guarded(limits(8, 300, 5_000)).await;
        let mut slow = TcpStream::connect(address).await.unwrap();
        let request = b"POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nslow!";
        let started = std::time::Instant::now();
        let trickle = tokio::spawn(async move {
            for byte in request {
                if slow.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            slow
        });
        // Another client is served meanwhile.
        let mut other = TcpStream::connect(address).await.unwrap();
        assert_eq!(post_on(&mut other, "fast").await, 200);
        let mut slow = trickle.await.unwrap();
        closed(&mut slow).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            rendered
                .contains("agent_input_errors_total{kind=\"request_timeout\",source=\"http\"} 1\n"),
            "{rendered}"
        );
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.events[0].message, "fast");
        assert!(rx.try_recv().is_err(), "nothing of the cut request");
    }

    #[tokio::test]
    async fn a_body_trickled_after_quick_headers_gets_408_and_is_counted() {
        let (address, metrics, mut rx) = serve_guarded(limits(8, 300, 5_000)).await;
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: 40\r\n\r\n")
            .await
            .unwrap();
        let (mut reader, mut writer) = slow.into_split();
        let trickle = tokio::spawn(async move {
            for _ in 0..40 {
                if writer.write_all(b"b").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, reader.read_to_end(&mut answer))
            .await
            .expect("answered and closed in time")
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        trickle.abort();
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            rendered
                .contains("agent_input_errors_total{kind=\"request_timeout\",source=\"http\"} 1\n"),
            "{rendered}"
        );
        assert!(rx.try_recv().is_err(), "nothing of the cut request");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_without_counting_an_error() {
        let (address, metrics, _rx) = serve_guarded(limits(8, 5_000, 200)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        assert_eq!(post_on(&mut client, "one").await, 200);
        // Slower than a request may be, but idle between requests: still fine at 100 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(post_on(&mut client, "two").await, 200);
        closed(&mut client).await;
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(!rendered.contains("kind=\"request_timeout\""), "{rendered}");
    }

    #[tokio::test]
    async fn connections_over_the_limit_get_503_and_are_counted() {
        let (address, metrics, _rx) = serve_guarded(limits(2, 5_000, 5_000)).await;
        let mut first = TcpStream::connect(address).await.unwrap();
        assert_eq!(post_on(&mut first, "1").await, 200);
        let mut second = TcpStream::connect(address).await.unwrap();
        assert_eq!(post_on(&mut second, "2").await, 200);
        let mut third = TcpStream::connect(address).await.unwrap();
        let status = tokio::time::timeout(DEADLINE, read_status(&mut third))
            .await
            .unwrap();
        assert_eq!(status, 503);
        closed(&mut third).await;
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            rendered.contains(
                "agent_input_errors_total{kind=\"connection_refused\",source=\"http\"} 1\n"
            ),
            "{rendered}"
        );
        assert_eq!(post_on(&mut first, "still served").await, 200);
        // A slot comes back once its connection is gone.
        drop(second);
        let mut served = false;
        for _ in 0..100 {
            let mut next = TcpStream::connect(address).await.unwrap();
            let request = "POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx";
            let _ = next.write_all(request.as_bytes()).await;
            if read_status(&mut next).await == 200 {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "the freed slot was not reused");
    }
}

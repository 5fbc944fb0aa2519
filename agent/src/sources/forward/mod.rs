//! Fluent Forward server, as ECS FireLens speaks it: TCP and/or a Unix socket.
//!
//! Each connection reads into one buffer, cuts complete frames out of it
//! ([`decode::FrameScanner`]), turns their records into lines ([`decode::Decoder`]),
//! reassembles the lines the container runtime split (`partial_*` fields), and hands every
//! line buffered so far to the pipeline in one [`EventSender::send`]. `{"ack": chunk}` is
//! written only after that call returned, i.e. once the lines are accepted; while it waits
//! (memory ceiling reached) the connection reads nothing, so back-pressure reaches the
//! sender through TCP instead of growing our memory. A bad frame closes its connection only.

pub mod config;
pub mod decode;
#[cfg(test)]
mod tests;
mod traces;

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::config::ForwardConfig;
use self::decode::{Body, DecodeError, Decoder, FrameScanner, Partial, Record};
use self::traces::Traces;
use crate::metrics::SourceKind;
use crate::pipeline::event::RawLine;
use crate::pipeline::{EventSender, TRUNCATION_MARKER};

/// Time the rest of a frame gets to arrive once its first bytes have: waiting for the socket
/// is summed over the frame's reads, so a sender trickling a byte at a time (slow-loris) is
/// closed as surely as a silent one. Time spent waiting for the pipeline does not count. A
/// connection that does not take its acks for this long is closed too. A connection
/// between frames may stay idle indefinitely, as FireLens keeps its connection open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most split lines one connection may be reassembling at once; beyond it the oldest is
/// shipped with what it has.
pub const MAX_OPEN_PARTIALS: usize = 64;

/// Bytes asked of the socket per read.
const READ_BYTES: usize = 64 * 1024;

/// Largest buffer growth done ahead of the bytes a frame header announces: a header alone
/// must not make every connection allocate a whole `max_frame_bytes`.
const MAX_RESERVE_AHEAD: usize = 1024 * 1024;

/// A batch is handed over once it holds this many line bytes, even if more frames wait.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// ... or this many lines.
const MAX_BATCH_LINES: usize = 8192;

/// Frames decoded between two yields to the runtime.
const YIELD_EVERY_FRAMES: usize = 16;

/// Memory a decoded record takes besides its bytes: the line, its allocation, and the
/// batch vector's growth. With the frame's bytes it is held to `max_frame_bytes`, so one
/// connection holds at most about twice that (the inflated payload and its records).
const RECORD_OVERHEAD: usize = 128;

/// Per-connection limits, from [`ForwardConfig`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame_bytes: usize,
    max_partial_bytes: usize,
    partial_timeout: Duration,
    idle_timeout: Duration,
}

impl Limits {
    fn new(config: &ForwardConfig) -> Self {
        Self {
            max_frame_bytes: config.max_frame_bytes,
            max_partial_bytes: config.max_partial_bytes,
            partial_timeout: Duration::from_millis(config.partial_timeout_ms),
            idle_timeout: Duration::from_millis(config.frame_timeout_ms),
        }
    }
}

/// Serves Fluent Forward on `config.address` (TCP, unless empty) and `config.unix_path`
/// until `shutdown` is cancelled. Then it stops accepting, lets each connection finish the
/// frames it has received (acking those accepted), and returns.
pub async fn run(
    config: ForwardConfig,
    out: EventSender,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tcp = if config.address.is_empty() {
        None
    } else {
        let listener = TcpListener::bind(&config.address)
            .await
            .with_context(|| format!("cannot listen for Fluent Forward on {}", config.address))?;
        tracing::info!(address = %config.address, "fluent forward listening on TCP");
        Some(listener)
    };
    let unix = match &config.unix_path {
        Some(path) => {
            let listener = bind_unix(path)?;
            tracing::info!(path = %path.display(), "fluent forward listening on a Unix socket");
            Some(listener)
        }
        None => None,
    };
    if tcp.is_none() && unix.is_none() {
        tracing::warn!("fluent forward has neither a TCP address nor a Unix socket; not started");
        return Ok(());
    }
    serve(
        tcp,
        unix,
        Limits::new(&config),
        config.max_connections,
        out,
        shutdown,
    )
    .await;
    if let Some(path) = &config.unix_path {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Binds the Unix socket: replaces a stale socket file (refusing one a live server still
/// answers on, or a path that is not a socket), and lets every local user write to it
/// (the application containers run as other users).
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!("{} is in use by another server", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!("{} exists and is not a socket", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect {}", path.display()));
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot open {} to other users", path.display()))?;
    Ok(listener)
}

/// Accepts on both listeners until shutdown, then waits for the connections to finish.
async fn serve(
    tcp: Option<TcpListener>,
    unix: Option<UnixListener>,
    limits: Limits,
    max_connections: usize,
    out: EventSender,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = done {
                    tracing::error!(%error, "a forward connection task failed");
                }
                continue;
            }
            accepted = accept_tcp(tcp.as_ref()) => accepted.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                (Stream::Tcp(stream), peer.to_string())
            }),
            accepted = accept_unix(unix.as_ref()) => accepted.map(|(stream, _)| (Stream::Unix(stream), "unix".to_owned())),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually out of file descriptors: wait instead of spinning.
                tracing::warn!(%error, "fluent forward accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "refusing a fluent forward connection: too many open");
            out.metrics()
                .input_error(SourceKind::Forward, "connection_refused");
            continue;
        };
        let connection = Connection::new(limits, out.clone());
        let counter = out.clone();
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("forward_connection", %peer);
        connections.spawn(
            async move {
                let result = match stream {
                    Stream::Tcp(stream) => connection.serve(stream, shutdown).await,
                    Stream::Unix(stream) => connection.serve(stream, shutdown).await,
                };
                match result {
                    Ok(()) => tracing::debug!("fluent forward connection closed"),
                    Err(error) => {
                        tracing::warn!(%error, kind = error.kind(), "closed a fluent forward connection");
                        counter.metrics().input_error(SourceKind::Forward, error.kind());
                    }
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
    // Stop accepting; each connection sees the same token and winds down.
    drop((tcp, unix));
    while let Some(done) = connections.join_next().await {
        if let Err(error) = done {
            tracing::error!(%error, "a forward connection task failed");
        }
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept_tcp(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_unix(
    listener: Option<&UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0:?} in the middle of a frame")]
    Idle(Duration),
    #[error("a frame still incomplete after {0:?} of waiting for its bytes")]
    FrameTimeout(Duration),
    #[error("the peer did not take its acks for {0:?}")]
    AckTimeout(Duration),
    #[error("the connection ended in the middle of a frame")]
    TruncatedFrame,
    #[error("the pipeline is closed")]
    PipelineClosed,
}

impl ConnectionError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Decode(error) => error.kind(),
            Self::Io(_) => "io",
            Self::Idle(_) => "idle",
            Self::FrameTimeout(_) => "frame_timeout",
            Self::AckTimeout(_) => "ack_timeout",
            Self::TruncatedFrame => "truncated_frame",
            Self::PipelineClosed => "pipeline_closed",
        }
    }
}

/// One client connection's state.
#[derive(Debug)]
struct Connection {
    limits: Limits,
    out: EventSender,
    scanner: FrameScanner,
    decoder: Decoder,
    lines: Lines,
    /// Stack traces being joined (with `[pipeline.multiline]`).
    traces: Option<Traces>,
    /// Time spent waiting for the bytes of the frame in progress.
    frame_waited: Duration,
}

impl Connection {
    fn new(limits: Limits, out: EventSender) -> Self {
        Self {
            limits,
            scanner: FrameScanner::new(),
            decoder: Decoder::new(limits.max_frame_bytes),
            lines: Lines::new(limits.max_partial_bytes, limits.partial_timeout),
            traces: out.joiner().map(Traces::new),
            out,
            frame_waited: Duration::ZERO,
        }
    }

    /// Serves until EOF, shutdown or an error. Lines already decoded (split lines still
    /// being reassembled included) are delivered whatever ended the connection.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        mut self,
        mut stream: S,
        shutdown: CancellationToken,
    ) -> Result<(), ConnectionError> {
        let result = self.read_frames(&mut stream, &shutdown).await;
        if matches!(result, Err(ConnectionError::PipelineClosed)) {
            return result;
        }
        self.lines.partials.drain(&mut self.lines.assembled);
        self.lines.commit();
        let delivered = self.deliver(&mut stream, true).await;
        let _ = stream.shutdown().await;
        result.and(delivered)
    }

    async fn read_frames<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectionError> {
        let mut buffer = BytesMut::with_capacity(READ_BYTES);
        loop {
            if let Err(error) = self.decode_buffered(&mut buffer, stream).await {
                // Frames before the bad one were good: deliver and ack them first.
                self.deliver(stream, false).await?;
                return Err(error);
            }
            self.deliver(stream, false).await?;
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let ahead = self
                .scanner
                .wanted()
                .saturating_sub(buffer.len())
                .min(MAX_RESERVE_AHEAD);
            if buffer.capacity() - buffer.len() < ahead.max(READ_BYTES / 4) {
                buffer.reserve(ahead.max(READ_BYTES));
            }
            if buffer.is_empty() && buffer.capacity() > MAX_RESERVE_AHEAD {
                // A large frame has passed: give its memory back.
                buffer = BytesMut::with_capacity(READ_BYTES);
            }
            let read = if buffer.is_empty() {
                self.frame_waited = Duration::ZERO;
                let expiry = earliest(
                    self.lines.partials.next_deadline(),
                    self.traces.as_ref().and_then(Traces::next_deadline),
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    read = stream.read_buf(&mut buffer) => read?,
                    () = sleep_until(expiry) => {
                        self.flush_expired_partials();
                        continue;
                    }
                }
            } else {
                let limit = self.limits.idle_timeout;
                let left = limit.saturating_sub(self.frame_waited);
                let started = tokio::time::Instant::now();
                tokio::select! {
                    // The incomplete frame is dropped unacked: the sender will resend it.
                    () = shutdown.cancelled() => return Ok(()),
                    read = tokio::time::timeout(left, stream.read_buf(&mut buffer)) => {
                        let trickled = !self.frame_waited.is_zero();
                        self.frame_waited += started.elapsed();
                        match read {
                            Ok(read) => read?,
                            Err(_) if trickled => return Err(ConnectionError::FrameTimeout(limit)),
                            Err(_) => return Err(ConnectionError::Idle(limit)),
                        }
                    }
                }
            };
            if read == 0 {
                return if buffer.is_empty() {
                    Ok(())
                } else {
                    Err(ConnectionError::TruncatedFrame)
                };
            }
        }
    }

    /// Ships the lines left incomplete past `partial_timeout_ms` (marked as cut, counted);
    /// the next delivery sends them and writes the acks they held.
    fn flush_expired_partials(&mut self) {
        let before = self.lines.partials.timed_out;
        let lines = &mut self.lines;
        lines
            .partials
            .ship_expired(tokio::time::Instant::now(), &mut lines.assembled);
        lines.commit();
        for _ in before..lines.partials.timed_out {
            self.out
                .metrics()
                .input_error(SourceKind::Forward, "partial_timeout");
        }
    }

    /// Decodes every complete frame in `buffer`, delivering when the batch is large.
    async fn decode_buffered<S: AsyncWrite + Unpin>(
        &mut self,
        buffer: &mut BytesMut,
        stream: &mut S,
    ) -> Result<(), ConnectionError> {
        let mut decoded = 0usize;
        while let Some(len) = self.scanner.scan(buffer, self.limits.max_frame_bytes)? {
            self.frame_waited = Duration::ZERO;
            let Self { decoder, lines, .. } = self;
            let mark = lines.mark();
            lines.partials.begin_frame();
            let limit = self.limits.max_frame_bytes;
            lines.frame_cost = 0;
            match decoder.decode_bounded(&buffer[..len], |record| lines.record(record, limit)) {
                Ok(chunk) => {
                    lines.commit();
                    if let Some(chunk) = chunk {
                        lines.partials.ack_frame(chunk, &mut lines.acks);
                    }
                }
                Err(error) => {
                    lines.rollback(mark);
                    return Err(error.into());
                }
            }
            buffer.advance(len);
            if self.lines.bytes >= MAX_BATCH_BYTES || self.lines.batch.len() >= MAX_BATCH_LINES {
                self.deliver(stream, false).await?;
            }
            decoded += 1;
            if decoded.is_multiple_of(YIELD_EVERY_FRAMES) {
                // A client with many buffered frames must not hold the worker the admin
                // server (and other connections) need.
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// Hands the batch to the pipeline (waiting while it is full), then writes the acks of
    /// the frames it came from. With multiline, stack traces are joined first, and the acks
    /// of frames whose lines are held in a trace wait for it; `close` ships every trace.
    async fn deliver<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        close: bool,
    ) -> Result<(), ConnectionError> {
        let mut batch = match self.lines.batch.is_empty() {
            true => Vec::new(),
            false => self.lines.take(),
        };
        let mut ready = self.lines.acks.len();
        if let Some(traces) = &mut self.traces {
            (batch, ready) = traces.join(batch, ready, close, self.out.metrics());
        }
        if !batch.is_empty() {
            self.out
                .send(batch)
                .await
                .map_err(|_| ConnectionError::PipelineClosed)?;
        }
        if ready > 0 {
            let timeout = self.limits.idle_timeout;
            tokio::time::timeout(timeout, stream.write_all(&self.lines.acks[..ready]))
                .await
                .map_err(|_| ConnectionError::AckTimeout(timeout))??;
            self.lines.acks.drain(..ready);
        }
        if let Some(traces) = &mut self.traces {
            traces.wrote(ready, self.lines.acks.len());
        }
        Ok(())
    }
}

/// Lines decoded but not yet handed to the pipeline.
#[derive(Debug)]
struct Lines {
    batch: Vec<RawLine>,
    /// Σ line bytes in `batch`.
    bytes: usize,
    /// Lines the reassembler completed (or evicted) during the current frame, with the acks
    /// they released. They are kept apart so that discarding a bad frame never discards
    /// them: their earlier parts may already have been acked.
    assembled: Shipped,
    /// Acks of decoded frames, written once their lines are accepted.
    acks: Vec<u8>,
    partials: Partials,
    /// What the records of the frame being decoded cost so far.
    frame_cost: usize,
    /// The last container name seen: records of one connection nearly always share it,
    /// so its `Arc` is reused rather than allocated per line.
    container: Option<Arc<str>>,
    /// The origins seen (`stdout`, `stderr`), likewise.
    origins: Vec<Arc<str>>,
}

impl Lines {
    fn new(max_partial_bytes: usize, partial_timeout: Duration) -> Self {
        Self {
            batch: Vec::new(),
            bytes: 0,
            assembled: Shipped::default(),
            acks: Vec::new(),
            frame_cost: 0,
            partials: Partials::new(max_partial_bytes, partial_timeout),
            container: None,
            origins: Vec::new(),
        }
    }

    /// Takes one decoded record. A frame's records may not cost more memory (their bytes
    /// plus [`RECORD_OVERHEAD`] each) than `limit` (`max_frame_bytes`): 2.3M empty records
    /// in a 23 KiB gzipped frame would otherwise take hundreds of MiB before any limit.
    fn record(&mut self, record: Record<'_>, limit: usize) -> Result<(), DecodeError> {
        let size = match &record.body {
            Body::Log(log) => log.len(),
            Body::Json(json) => json.len(),
        };
        self.frame_cost += size + RECORD_OVERHEAD;
        if self.frame_cost > limit {
            return Err(DecodeError::Oversize { limit });
        }
        let container = record.container.map(|name| self.container(name));
        let origin = record.origin.map(|name| self.origin(name));
        match (record.body, record.partial) {
            (Body::Log(log), Some(part)) => {
                let line = RawLine {
                    bytes: Vec::new(),
                    time_ms: record.time_ms,
                    container,
                    origin,
                };
                self.partials.push(part, log, line, &mut self.assembled);
            }
            (body, _) => {
                let bytes = body.into_vec();
                self.bytes += bytes.len();
                self.batch.push(RawLine {
                    bytes,
                    time_ms: record.time_ms,
                    container,
                    origin,
                });
            }
        }
        Ok(())
    }

    fn container(&mut self, name: &[u8]) -> Arc<str> {
        match &self.container {
            Some(cached) if cached.as_bytes() == name => cached.clone(),
            _ => {
                let fresh: Arc<str> = String::from_utf8_lossy(name).into();
                self.container = Some(fresh.clone());
                fresh
            }
        }
    }

    fn origin(&mut self, name: &[u8]) -> Arc<str> {
        if let Some(known) = self.origins.iter().find(|o| o.as_bytes() == name) {
            return known.clone();
        }
        let fresh: Arc<str> = String::from_utf8_lossy(name).into();
        // A handful is all FireLens sends; a sender inventing more gets fresh ones.
        if self.origins.len() < 4 {
            self.origins.push(fresh.clone());
        }
        fresh
    }

    fn mark(&self) -> (usize, usize) {
        (self.batch.len(), self.bytes)
    }

    /// Adds the lines the reassembler shipped during the frame to the batch, and the acks
    /// they released to those to write once the batch is accepted.
    fn commit(&mut self) {
        self.bytes += self
            .assembled
            .lines
            .iter()
            .map(|line| line.bytes.len())
            .sum::<usize>();
        self.batch.append(&mut self.assembled.lines);
        self.acks.append(&mut self.assembled.acks);
    }

    /// Forgets the lines a frame that turned out bad pushed since `mark`, except those the
    /// reassembler shipped.
    fn rollback(&mut self, (len, bytes): (usize, usize)) {
        self.batch.truncate(len);
        self.bytes = bytes;
        self.commit();
    }

    fn take(&mut self) -> Vec<RawLine> {
        let capacity = self.batch.len().min(MAX_BATCH_LINES);
        self.bytes = 0;
        std::mem::replace(&mut self.batch, Vec::with_capacity(capacity))
    }
}

/// The earlier of two optional deadlines.
fn earliest(
    a: Option<tokio::time::Instant>,
    b: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reassembles the lines Docker and containerd split into parts of 16 KiB.
///
/// Parts are joined in ordinal order (they may arrive out of order); a line is shipped when
/// its last part and as many parts as that part's ordinal have arrived. A line is capped at
/// `max_bytes` (then [`TRUNCATION_MARKER`] is appended and later parts are dropped, but the
/// line still ships). At most [`MAX_OPEN_PARTIALS`] lines and `4 × max_bytes` are held per
/// connection; beyond either the oldest ships as it is, as does a line left incomplete for
/// `timeout` and everything at close.
///
/// A frame's ack is held while a line it brought parts of is still open: the part lives
/// only in memory until its line ships (and is accepted), so acking it earlier would let a
/// crash lose it, disk buffer or not. In-order parts extend one range, so reassembly is
/// linear in the line's bytes whatever the number of parts.
#[derive(Debug)]
struct Partials {
    open: Vec<Assembly>,
    max_bytes: usize,
    held: usize,
    timeout: Duration,
    /// The frame being decoded (assemblies it touched carry its number).
    frame: u64,
    /// Acks waiting for open lines: chunk id and how many open lines hold it.
    pending: HashMap<u64, (Vec<u8>, usize)>,
    /// Lines shipped incomplete because `timeout` passed.
    timed_out: u64,
}

#[derive(Debug)]
struct Assembly {
    id: Vec<u8>,
    data: Vec<u8>,
    /// (first ordinal, last ordinal, bytes kept in `data`), sorted; consecutive parts
    /// extend the last range.
    parts: Vec<(u64, u64, usize)>,
    seen: u64,
    last: Option<u64>,
    truncated: bool,
    /// The first part's time, container and origin (its bytes are `data`).
    meta: RawLine,
    /// When its first part arrived.
    opened: tokio::time::Instant,
    /// The last frame that brought a part.
    frame: u64,
    /// Keys of the pending acks this line holds.
    acks: Vec<u64>,
}

impl Partials {
    fn new(max_bytes: usize, timeout: Duration) -> Self {
        Self {
            open: Vec::new(),
            max_bytes,
            held: 0,
            timeout,
            frame: 0,
            pending: HashMap::new(),
            timed_out: 0,
        }
    }

    /// Starts a new frame.
    fn begin_frame(&mut self) {
        self.frame += 1;
    }

    /// The ack of the frame just decoded: written at once (into `acks`) unless a line it
    /// brought parts of is still open, then held by those lines.
    fn ack_frame(&mut self, chunk: &[u8], acks: &mut Vec<u8>) {
        let key = self.frame;
        let mut holders = 0;
        for assembly in self.open.iter_mut().filter(|a| a.frame == key) {
            assembly.acks.push(key);
            holders += 1;
        }
        if holders == 0 {
            decode::encode_ack(chunk, acks);
        } else {
            self.pending.insert(key, (chunk.to_vec(), holders));
        }
    }

    /// Adds a part; `meta` carries the record's time, container and origin (no bytes).
    fn push(&mut self, part: Partial<'_>, log: &[u8], meta: RawLine, out: &mut Shipped) {
        let index = match self.open.iter().position(|open| open.id == part.id) {
            Some(index) => index,
            None => {
                if self.open.len() >= MAX_OPEN_PARTIALS {
                    self.ship(0, out);
                }
                self.open.push(Assembly {
                    id: part.id.to_vec(),
                    data: Vec::new(),
                    parts: Vec::new(),
                    seen: 0,
                    last: None,
                    truncated: false,
                    meta,
                    opened: tokio::time::Instant::now(),
                    frame: self.frame,
                    acks: Vec::new(),
                });
                self.open.len() - 1
            }
        };
        let assembly = &mut self.open[index];
        assembly.frame = self.frame;
        let before = assembly.data.len();
        assembly.add(part, log, self.max_bytes);
        self.held += assembly.data.len() - before;
        if assembly.is_complete() {
            self.ship(index, out);
        }
        while self.held > self.max_bytes.saturating_mul(4) && !self.open.is_empty() {
            self.ship(0, out);
        }
    }

    fn ship(&mut self, index: usize, out: &mut Shipped) {
        let mut assembly = self.open.remove(index);
        self.held -= assembly.data.len();
        for key in std::mem::take(&mut assembly.acks) {
            if let Some((chunk, holders)) = self.pending.get_mut(&key) {
                *holders -= 1;
                if *holders == 0 {
                    decode::encode_ack(chunk, &mut out.acks);
                    self.pending.remove(&key);
                }
            }
        }
        out.lines.push(assembly.into_line());
    }

    /// When the oldest open line times out, if any is open.
    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.open.iter().map(|a| a.opened + self.timeout).min()
    }

    /// Ships (as they are, marked) the lines open for longer than the timeout.
    fn ship_expired(&mut self, now: tokio::time::Instant, out: &mut Shipped) {
        while let Some(index) = self
            .open
            .iter()
            .position(|a| a.opened + self.timeout <= now)
        {
            self.open[index].truncated = true;
            self.timed_out += 1;
            self.ship(index, out);
        }
    }

    /// Ships every line still being reassembled, as it is.
    fn drain(&mut self, out: &mut Shipped) {
        while !self.open.is_empty() {
            self.ship(0, out);
        }
    }
}

/// What the reassembler hands on: completed (or cut) lines, and the acks they released.
#[derive(Debug, Default)]
struct Shipped {
    lines: Vec<RawLine>,
    /// Encoded acks, written once `lines` are accepted.
    acks: Vec<u8>,
}

impl Assembly {
    fn add(&mut self, part: Partial<'_>, log: &[u8], max: usize) {
        self.seen += 1;
        // Without an ordinal a part goes after those received so far.
        let ordinal = part
            .ordinal
            .unwrap_or_else(|| self.parts.last().map_or(0, |&(_, o, _)| o));
        if part.last {
            // A last part without an ordinal completes the line at once.
            self.last = Some(part.ordinal.unwrap_or(0));
        }
        let index = self
            .parts
            .partition_point(|&(first, _, _)| first <= ordinal);
        // In order (the usual case): the end of the data, found in O(1).
        let in_order = index == self.parts.len();
        let offset = if in_order {
            self.data.len()
        } else {
            self.parts[..index].iter().map(|&(_, _, len)| len).sum()
        };
        let keep = log.len().min(max.saturating_sub(offset));
        if keep < log.len() {
            self.truncated = true;
        }
        if keep == 0 {
            return;
        }
        if offset == self.data.len() {
            self.data.extend_from_slice(&log[..keep]);
        } else {
            self.data
                .splice(offset..offset, log[..keep].iter().copied());
        }
        match self.parts.last_mut() {
            Some((_, last, len)) if in_order && ordinal <= *last + 1 => {
                *last = ordinal.max(*last);
                *len += keep;
            }
            _ => self.parts.insert(index, (ordinal, ordinal, keep)),
        }
        if self.data.len() > max {
            // An earlier part arrived late and pushed later bytes past the cap.
            self.truncated = true;
            self.data.truncate(max);
            let mut kept = 0;
            self.parts.retain_mut(|(_, _, len)| {
                if kept >= max {
                    return false;
                }
                *len = (*len).min(max - kept);
                kept += *len;
                true
            });
        }
    }

    fn is_complete(&self) -> bool {
        self.last.is_some_and(|last| self.seen >= last)
    }

    fn into_line(mut self) -> RawLine {
        if self.truncated {
            self.data.extend_from_slice(TRUNCATION_MARKER.as_bytes());
        }
        RawLine {
            bytes: self.data,
            ..self.meta
        }
    }
}

//! Hostile input against the real binary (issue 9): every nasty case ends in a clean,
//! counted outcome, and the sidecar keeps serving the clients that behave.
//!
//! | case | stdin | HTTP | Fluent Forward |
//! |---|---|---|---|
//! | 5 MiB line | one event, truncated with the marker (`events_truncated`); the rest of the line skipped | 413 (`too_large`); a 1 MiB line under the cap is truncated | truncated with the marker |
//! | invalid UTF-8, NUL | shipped lossily (U+FFFD), NUL kept, `lines_invalid_utf8` | same | same |
//! | JSON 100k levels deep | shipped; no stack overflow; secrets still redacted | same | msgpack nested past 64 levels: frame refused (`too_deep`) |
//! | timestamp in year 9999 / before 1970 | dropped as `too_new` / `too_old` | — | seconds out of `i64` ms range: the received time is used |
//! | map of 1M entries | — | — | over `max_frame_bytes`: refused (`oversize`); within it: shipped truncated |
//! | slow-loris (a byte at a time) | — | cut after `request_timeout_ms` (10 s by default; `request_timeout`) | cut after `frame_timeout_ms` of waiting (30 s by default; `frame_timeout`) |
//! | more connections than the limit | — | 503 + close (`connection_refused`) | closed (`connection_refused`) |

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options, eventually, free_port};

/// The fuzz targets' checks (`agent/fuzz`), run here on stable over the committed inputs.
#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

const MIB: usize = 1024 * 1024;
/// `max_event_bytes` by default.
const MAX_EVENT_BYTES: usize = 256 * 1024;
const MARKER: &str = "...[truncated by agent]";
const DEADLINE: Duration = Duration::from_secs(20);

/// An agent with stdin, Fluent Forward and HTTP inputs, in front of the fake endpoint.
struct Harness {
    fake: FakeCwl,
    agent: Agent,
    forward: u16,
    http: u16,
    _server: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// `forward_keys` and `http_keys` go into the `[sources.forward]` / `[sources.http]`
    /// tables.
    async fn start(forward_keys: &str, http_keys: &str) -> Self {
        let fake = FakeCwl::default();
        let (addr, server) = fake.serve(0).await;
        let (forward, http) = (free_port(), free_port());
        let mut options = Options::new(format!("http://{addr}"));
        options.extra = format!(
            "[sources.forward]\naddress = \"127.0.0.1:{forward}\"\n{forward_keys}\n\
             [sources.http]\naddress = \"127.0.0.1:{http}\"\n{http_keys}\n"
        );
        let agent = Agent::start(&options);
        Self {
            fake,
            agent,
            forward,
            http,
            _server: server,
        }
    }

    /// A connection to `port`, once the agent listens there.
    async fn connect(&self, port: u16) -> TcpStream {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await {
                return stream;
            }
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        self.agent.metric(name).await.unwrap_or(0.0)
    }

    /// Waits until the metric `name` reaches `value`; fails with its last value if not.
    async fn expect_metric(&self, name: &str, value: f64) {
        let reached = eventually(DEADLINE, || async { self.metric(name).await >= value }).await;
        let now = self.metric(name).await;
        assert!(reached, "{name} is {now}, expected {value}");
        assert_eq!(now, value, "{name}");
    }

    /// Waits until a delivered message satisfies `check`; returns it.
    async fn delivered(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let found = eventually(DEADLINE, || async {
            self.fake.messages().iter().any(|m| check(m))
        })
        .await;
        assert!(found, "{what} was not delivered");
        self.fake.messages().into_iter().find(|m| check(m)).unwrap()
    }

    /// Writes `bytes` to the agent's stdin from a thread (the pipe blocks while the agent
    /// reads), keeping stdin open.
    async fn stdin(&mut self, bytes: Vec<u8>) {
        let mut stdin = self.agent.child.stdin.take().expect("stdin open");
        let stdin = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            stdin.write_all(&bytes).unwrap();
            stdin.flush().unwrap();
            stdin
        })
        .await
        .unwrap();
        self.agent.child.stdin = Some(stdin);
    }

    /// A normal line through each input is still delivered.
    async fn still_serves_everyone(&mut self, tag: &str) {
        self.stdin(format!("{tag} stdin\n").into_bytes()).await;
        let mut forward = self.connect(self.forward).await;
        send_frame(&mut forward, &format!("{tag} forward"), "ok").await;
        let mut http = self.connect(self.http).await;
        let (status, _) = post(&mut http, format!("{tag} http\n").as_bytes(), &[]).await;
        assert_eq!(status, 200);
        for source in ["stdin", "forward", "http"] {
            let line = format!("{tag} {source}");
            self.delivered(&line, |m| m == line).await;
        }
    }
}

// ---- Fluent Forward and HTTP clients --------------------------------------------------

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Message-mode frame `[tag, time, {"log": log}, {"chunk": chunk}]`.
fn message(time: i64, log: &[u8], chunk: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 4).unwrap();
    rmp::encode::write_str(&mut out, "app").unwrap();
    rmp::encode::write_sint(&mut out, time).unwrap();
    rmp::encode::write_map_len(&mut out, 1).unwrap();
    rmp::encode::write_str(&mut out, "log").unwrap();
    rmp::encode::write_str_len(&mut out, log.len() as u32).unwrap();
    out.extend_from_slice(log);
    rmp::encode::write_map_len(&mut out, 1).unwrap();
    rmp::encode::write_str(&mut out, "chunk").unwrap();
    rmp::encode::write_str(&mut out, chunk).unwrap();
    out
}

async fn read_ack(stream: &mut TcpStream, chunk: &str) {
    let mut expected = Vec::new();
    agent::sources::forward::decode::encode_ack(chunk.as_bytes(), &mut expected);
    let mut got = vec![0; expected.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut got))
        .await
        .expect("ack in time")
        .expect("ack");
    assert_eq!(got, expected, "ack of {chunk}");
}

/// Sends one line as a frame and waits for its ack (so it is accepted).
pub(crate) async fn send_frame(stream: &mut TcpStream, log: &str, chunk: &str) {
    stream
        .write_all(&message(now_secs(), log.as_bytes(), chunk))
        .await
        .unwrap();
    read_ack(stream, chunk).await;
}

/// Reads until the peer closes (EOF or reset); returns what it sent before.
async fn closed_by_peer<R: AsyncRead + Unpin>(stream: &mut R, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the agent should have closed the connection");
    received
}

/// One `POST /v1/logs` on a keep-alive connection → (status, body).
async fn post(stream: &mut TcpStream, body: &[u8], headers: &[&str]) -> (u16, String) {
    let mut request = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: agent\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // Written while the answer is read: a refused body may be answered before it is sent.
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let _ = tokio::time::timeout(DEADLINE, writer.write_all(&bytes)).await;
    };
    let read = tokio::time::timeout(DEADLINE, read_response(&mut reader));
    let ((), response) = tokio::join!(write, read);
    response.expect("response in time")
}

async fn read_response<R: AsyncRead + Unpin>(stream: &mut R) -> (u16, String) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return (0, String::from_utf8_lossy(&raw).into_owned());
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = stream.read_exact(&mut body).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---- The cases ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_5_mib_line_is_truncated_with_a_marker_or_refused_with_413_and_counted() {
    let mut h = Harness::start("", "").await;
    let mut forward = h.connect(h.forward).await;
    let mut http = h.connect(h.http).await;

    // stdin: one event of the line's first 1 MiB (the documented cap on an unfinished
    // line; the rest is skipped), cut to the event limit with the marker.
    let mut line = vec![b'a'; 5 * MIB];
    line.push(b'\n');
    h.stdin(line).await;
    // Forward: one record whose log is 5 MiB (within max_frame_bytes): cut with the marker.
    let frame = message(now_secs(), &vec![b'b'; 5 * MIB], "big");
    forward.write_all(&frame).await.unwrap();
    read_ack(&mut forward, "big").await;
    // HTTP: a 5 MiB body is over max_body_bytes (4 MiB): 413, nothing accepted, counted.
    let (status, body) = post(&mut http, &vec![b'c'; 5 * MIB], &[]).await;
    assert_eq!(status, 413, "{body}");
    h.expect_metric(
        "agent_input_errors_total{kind=\"too_large\",source=\"http\"}",
        1.0,
    )
    .await;
    // ... while a 1 MiB line under the cap is accepted and cut.
    let mut http = h.connect(h.http).await;
    let (status, _) = post(&mut http, &vec![b'd'; MIB], &[]).await;
    assert_eq!(status, 200);

    h.still_serves_everyone("after huge lines").await;
    let messages = h.fake.messages();
    let huge: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("aaa") || m.starts_with("bbb") || m.starts_with("ddd"))
        .collect();
    for message in &huge {
        assert!(message.len() <= MAX_EVENT_BYTES, "{}", message.len());
    }
    let cut = huge.iter().filter(|m| m.ends_with(MARKER)).count();
    let stdin_pieces = huge.iter().filter(|m| m.starts_with('a')).count();
    assert_eq!(stdin_pieces, 1, "one line, one event");
    assert!(
        huge.iter()
            .any(|m| m.starts_with('b') && m.ends_with(MARKER))
    );
    assert!(
        huge.iter()
            .any(|m| m.starts_with('d') && m.ends_with(MARKER))
    );
    assert!(
        !messages.iter().any(|m| m.starts_with("ccc")),
        "the 413 body leaked"
    );
    h.expect_metric("agent_events_truncated_total", cut as f64)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_and_nul_bytes_are_shipped_lossily_and_counted() {
    let mut h = Harness::start("", "").await;
    let line =
        |source: &str| [b"bad \xff\xfe utf8 \x00 nul ".as_slice(), source.as_bytes()].concat();
    let mut stdin = line("stdin");
    stdin.push(b'\n');
    h.stdin(stdin).await;
    let mut forward = h.connect(h.forward).await;
    forward
        .write_all(&message(now_secs(), &line("forward"), "u"))
        .await
        .unwrap();
    read_ack(&mut forward, "u").await;
    let mut http = h.connect(h.http).await;
    assert_eq!(post(&mut http, &line("http"), &[]).await.0, 200);

    for source in ["stdin", "forward", "http"] {
        let expected = format!("bad \u{fffd}\u{fffd} utf8 \0 nul {source}");
        h.delivered(&expected, |m| m == expected).await;
    }
    h.expect_metric("agent_lines_invalid_utf8_total", 3.0).await;
    h.still_serves_everyone("after invalid utf-8").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_nested_100k_levels_deep_is_shipped_and_still_redacted() {
    let mut h = Harness::start("", "").await;
    let depth = 100_000;
    let arrays = format!(
        "{{\"password\":\"hunter2\",\"level\":\"error\",\"deep\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let objects = format!(
        "{{\"token\":\"s3cr3t\",\"timestamp\":{}1{}}}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    let unbalanced = format!("{{\"secret\":\"xyzzy\",\"a\":{}", "[".repeat(depth));
    h.stdin(format!("{arrays}\n{objects}\n{unbalanced}\n").into_bytes())
        .await;
    let mut http = h.connect(h.http).await;
    assert_eq!(post(&mut http, arrays.as_bytes(), &[]).await.0, 200);
    let mut forward = h.connect(h.forward).await;
    forward
        .write_all(&message(now_secs(), objects.as_bytes(), "deep"))
        .await
        .unwrap();
    read_ack(&mut forward, "deep").await;

    let deep_lines = || h.fake.messages().into_iter().filter(|m| m.len() > depth);
    let found = eventually(DEADLINE, || async { deep_lines().count() >= 5 }).await;
    assert!(
        found,
        "{} of the 5 deep lines delivered",
        deep_lines().count()
    );
    for message in deep_lines() {
        for secret in ["hunter2", "s3cr3t", "xyzzy"] {
            assert!(!message.contains(secret), "{secret} leaked");
        }
        assert!(message.contains("[REDACTED]"));
    }

    // In msgpack, nesting past 64 levels refuses the frame (and closes its connection).
    let mut nested = Vec::new();
    rmp::encode::write_array_len(&mut nested, 3).unwrap();
    rmp::encode::write_str(&mut nested, "app").unwrap();
    rmp::encode::write_sint(&mut nested, now_secs()).unwrap();
    rmp::encode::write_map_len(&mut nested, 1).unwrap();
    rmp::encode::write_str(&mut nested, "deep").unwrap();
    nested.extend(std::iter::repeat_n(0x91, depth));
    nested.push(0xc0);
    let mut deep = h.connect(h.forward).await;
    deep.write_all(&nested).await.unwrap();
    closed_by_peer(&mut deep, DEADLINE).await;
    h.expect_metric(
        "agent_input_errors_total{kind=\"too_deep\",source=\"forward\"}",
        1.0,
    )
    .await;
    h.still_serves_everyone("after deep nesting").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_outside_cloudwatch_range_are_dropped_and_counted() {
    let mut h = Harness::start("", "").await;
    h.stdin(
        concat!(
            "{\"timestamp\":\"9999-12-31T23:59:59Z\",\"m\":\"year 9999\"}\n",
            "{\"timestamp\":-1,\"m\":\"before 1970\"}\n",
            "{\"timestamp\":\"0001-01-01T00:00:00Z\",\"m\":\"year 1\"}\n",
        )
        .as_bytes()
        .to_vec(),
    )
    .await;
    let mut forward = h.connect(h.forward).await;
    // A negative event time: before 1970, too old.
    forward
        .write_all(&message(-5, b"forward 1969", "old"))
        .await
        .unwrap();
    read_ack(&mut forward, "old").await;
    // Seconds whose milliseconds overflow i64: no usable time, the received time is used.
    forward
        .write_all(&message(i64::MIN, b"forward i64::MIN", "min"))
        .await
        .unwrap();
    read_ack(&mut forward, "min").await;
    forward
        .write_all(&message(i64::MAX, b"forward i64::MAX", "max"))
        .await
        .unwrap();
    read_ack(&mut forward, "max").await;

    h.expect_metric("agent_events_dropped_total{reason=\"too_new\"}", 1.0)
        .await;
    h.expect_metric("agent_events_dropped_total{reason=\"too_old\"}", 3.0)
        .await;
    for line in ["forward i64::MIN", "forward i64::MAX"] {
        h.delivered(line, |m| m == line).await;
    }
    let now_ms = now_secs() * 1000;
    for (_, time, message) in h.fake.recorded.lock().unwrap().events.iter() {
        if message.starts_with("forward i64") {
            assert!((time - now_ms).abs() < 600_000, "{message} at {time}");
        }
    }
    h.still_serves_everyone("after odd timestamps").await;
    let messages = h.fake.messages();
    for dropped in ["year 9999", "before 1970", "year 1", "forward 1969"] {
        assert!(
            !messages.iter().any(|m| m.contains(dropped)),
            "{dropped} sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn msgpack_maps_of_a_million_entries_meet_the_frame_limit() {
    let mut h = Harness::start("", "").await;
    let entries = 1_000_000;
    let record = |value: &[u8]| {
        let mut frame = Vec::new();
        rmp::encode::write_array_len(&mut frame, 3).unwrap();
        rmp::encode::write_str(&mut frame, "app").unwrap();
        rmp::encode::write_sint(&mut frame, now_secs()).unwrap();
        rmp::encode::write_map_len(&mut frame, entries).unwrap();
        for _ in 0..entries {
            frame.push(0xa1);
            frame.push(b'k');
            frame.extend_from_slice(value);
        }
        frame
    };

    // 1. A header claiming 2^32 - 1 entries: more than 16 MiB could ever hold, refused
    // before any of them is read.
    let mut claim = h.connect(h.forward).await;
    claim
        .write_all(&[
            0x93, 0xa3, b'a', b'p', b'p', 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff,
        ])
        .await
        .unwrap();
    closed_by_peer(&mut claim, DEADLINE).await;
    h.expect_metric(
        "agent_input_errors_total{kind=\"oversize\",source=\"forward\"}",
        1.0,
    )
    .await;

    // 2. A real 1M-entry map of 17 MB: over max_frame_bytes (16 MiB), refused.
    let big = h.connect(h.forward).await;
    // Each entry: a 1-byte key and a 15-byte value, with their headers 18 bytes.
    let frame = record(&[&[0xaf][..], &[b'v'; 15][..]].concat());
    assert!(frame.len() > 16 * MIB);
    let (mut reader, mut writer) = big.into_split();
    let writing = tokio::spawn(async move {
        // Fails once the agent hangs up, as it should.
        let _ = writer.write_all(&frame).await;
        writer
    });
    closed_by_peer(&mut reader, DEADLINE).await;
    drop(writing.await);
    h.expect_metric(
        "agent_input_errors_total{kind=\"oversize\",source=\"forward\"}",
        2.0,
    )
    .await;

    // 3. 1M entries in 3 MB: within the limits, shipped as JSON cut to the event limit.
    let mut big = h.connect(h.forward).await;
    let mut frame = record(&[0x01]);
    frame[0] = 0x94;
    rmp::encode::write_map_len(&mut frame, 1).unwrap();
    rmp::encode::write_str(&mut frame, "chunk").unwrap();
    rmp::encode::write_str(&mut frame, "map").unwrap();
    big.write_all(&frame).await.unwrap();
    read_ack(&mut big, "map").await;
    let json = h
        .delivered("the 1M-entry record", |m| m.starts_with("{\"k\":1,\"k\":1"))
        .await;
    assert!(json.ends_with(MARKER) && json.len() <= MAX_EVENT_BYTES);
    h.expect_metric("agent_events_truncated_total", 1.0).await;
    h.still_serves_everyone("after huge maps").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_loris_connections_are_cut_off_while_others_are_served() {
    // Short timeouts (configurable; the defaults are 30 s and 10 s) keep the test brief.
    let mut h = Harness::start("frame_timeout_ms = 4000", "request_timeout_ms = 3000").await;
    let started = Instant::now();
    // Forward: a frame trickled a byte every 200 ms (it would take 80 s to arrive).
    let trickled = message(now_secs(), &[b'f'; 400], "slow");
    let slow_forward = h.connect(h.forward).await;
    let (mut forward_reader, forward_writer) = slow_forward.into_split();
    let forward_trickle = tokio::spawn(trickle(forward_writer, trickled));
    // HTTP: a request trickled the same way.
    let mut request =
        b"POST /v1/logs HTTP/1.1\r\nHost: agent\r\ncontent-length: 400\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'h'; 400]);
    let slow_http = h.connect(h.http).await;
    let (mut http_reader, http_writer) = slow_http.into_split();
    let http_trickle = tokio::spawn(trickle(http_writer, request));

    // Meanwhile every input keeps serving, while both trickles go on.
    h.still_serves_everyone("during slow-loris").await;
    if started.elapsed() < Duration::from_millis(2_500) {
        assert!(!http_trickle.is_finished() && !forward_trickle.is_finished());
    }

    // HTTP gives a request `request_timeout_ms` from its first byte.
    let answer = closed_by_peer(&mut http_reader, Duration::from_secs(20)).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let http_cut = started.elapsed();
    assert!(http_cut >= Duration::from_millis(2_900), "{http_cut:?}");
    h.expect_metric(
        "agent_input_errors_total{kind=\"request_timeout\",source=\"http\"}",
        1.0,
    )
    .await;
    // Forward gives a frame `frame_timeout_ms` of waiting for its bytes.
    closed_by_peer(&mut forward_reader, Duration::from_secs(20)).await;
    let forward_cut = started.elapsed();
    assert!(
        forward_cut >= Duration::from_millis(3_900),
        "{forward_cut:?}"
    );
    h.expect_metric(
        "agent_input_errors_total{kind=\"frame_timeout\",source=\"forward\"}",
        1.0,
    )
    .await;
    forward_trickle.abort();
    http_trickle.abort();
    h.still_serves_everyone("after slow-loris").await;
    assert!(
        !h.fake
            .messages()
            .iter()
            .any(|m| m.starts_with("fff") || m.starts_with("hhh"))
    );
}

/// Writes `bytes` one at a time, 200 ms apart, until done or the peer is gone.
async fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>) {
    for byte in bytes {
        if writer.write_all(&[byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_are_refused_and_counted_while_the_others_are_served() {
    let mut h = Harness::start("max_connections = 4", "").await;

    // Forward: four connections, each proven served (acked), hold every slot.
    let mut held = Vec::new();
    for i in 0..4 {
        let mut stream = h.connect(h.forward).await;
        send_frame(&mut stream, &format!("held {i}"), &format!("h{i}")).await;
        held.push(stream);
    }
    let mut extra = h.connect(h.forward).await;
    let _ = extra
        .write_all(&message(now_secs(), b"over the limit", "x"))
        .await;
    assert!(
        closed_by_peer(&mut extra, DEADLINE).await.is_empty(),
        "no ack"
    );
    h.expect_metric(
        "agent_input_errors_total{kind=\"connection_refused\",source=\"forward\"}",
        1.0,
    )
    .await;
    send_frame(&mut held[0], "served while full", "s").await;
    h.delivered("a held connection's line", |m| m == "served while full")
        .await;

    // HTTP: 256 keep-alive connections (the limit), each proven served.
    let mut clients = Vec::new();
    for i in 0..256 {
        let mut stream = h.connect(h.http).await;
        let (status, _) = post(&mut stream, format!("http held {i}").as_bytes(), &[]).await;
        assert_eq!(status, 200, "connection {i}");
        clients.push(stream);
    }
    let mut extra = h.connect(h.http).await;
    let (status, body) = tokio::time::timeout(DEADLINE, read_response(&mut extra))
        .await
        .expect("an answer, not a wait");
    assert_eq!(
        (status, body.as_str()),
        (503, "{\"error\":\"too many connections\"}")
    );
    h.expect_metric(
        "agent_input_errors_total{kind=\"connection_refused\",source=\"http\"}",
        1.0,
    )
    .await;
    let (status, _) = post(&mut clients[7], b"http served while full", &[]).await;
    assert_eq!(status, 200);
    h.delivered("a held HTTP connection's line", |m| {
        m == "http served while full"
    })
    .await;

    // Slots come back as connections close (once the agent has seen them close).
    drop(held);
    drop(clients);
    let served = eventually(DEADLINE, || async {
        let mut forward = h.connect(h.forward).await;
        let frame = message(now_secs(), b"after the flood", "after");
        let mut expected = Vec::new();
        agent::sources::forward::decode::encode_ack(b"after", &mut expected);
        let mut got = vec![0; expected.len()];
        let forward_ok = forward.write_all(&frame).await.is_ok()
            && forward.read_exact(&mut got).await.is_ok()
            && got == expected;
        let mut http = h.connect(h.http).await;
        forward_ok && post(&mut http, b"after the flood", &[]).await.0 == 200
    })
    .await;
    assert!(served, "slots were not given back");
    h.still_serves_everyone("after the flood").await;
}

/// Every committed fuzz seed (`agent/fuzz/corpus/<target>/`) and every input a fuzz run
/// once failed on (`agent/fuzz/regressions/<target>/`) passes its target's checks.
#[test]
fn fuzz_seeds_and_regressions_pass_their_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = Vec::new();
    for (target, check) in fuzz_checks::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{} fails its checks", path.display());
                ran.push(target);
            }
        }
    }
    for (target, _) in fuzz_checks::TARGETS {
        assert!(ran.contains(&target), "no input for {target}");
    }
}

// ---- Regressions: arithmetic overflow found by the hostile-input work ------------------

#[test]
fn the_batch_span_rule_survives_extreme_event_times() {
    use agent::pipeline::event::RawLine;
    use agent::sinks::cloudwatch_logs::request_builder::Batcher;
    let processor = agent::pipeline::Processor::new(
        agent::pipeline::parse::ParseFields {
            timestamp: "timestamp".into(),
            level: "level".into(),
            timing: None,
        },
        None,
        1024,
    );
    let metrics = agent::metrics::Metrics::default();
    let event = |time_ms| {
        let line = RawLine {
            bytes: b"x".to_vec(),
            time_ms: Some(time_ms),
            container: None,
            origin: None,
        };
        processor.process(line, 0, &metrics)
    };
    let mut batcher = Batcher::default();
    assert!(batcher.push(event(i64::MIN)).is_none());
    // More than 24 h apart: the first batch must be closed, not the span overflow.
    let ready = batcher.push(event(1_700_000_000_000));
    assert_eq!(ready.map(|batch| batch.events.len()), Some(1));
}

#[test]
fn request_counts_saturate_instead_of_overflowing() {
    use agent::request_metrics::{Recorder, RequestTiming};
    let recorder = Recorder::new(10);
    let timing = |count| RequestTiming {
        route: "/x".into(),
        method: "GET".into(),
        status: 200,
        latency_ms: 1.0,
        count,
    };
    // Each is a valid OTLP histogram point's worth; together they would exceed a u64. A
    // count beyond what one period can hold is clamped (and counted), so the sum stays
    // exact and nothing downstream repeats or allocates by it.
    recorder.record(timing(u64::MAX));
    recorder.record(timing(1));
    let counted = recorder.with(|aggregator| {
        let sum = aggregator
            .take_period()
            .values()
            .map(|series| series.count)
            .sum::<u64>();
        (sum, aggregator.clamped)
    });
    assert_eq!(
        counted,
        Some((agent::request_metrics::MAX_TIMING_COUNT + 1, 1))
    );
}

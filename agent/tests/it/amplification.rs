//! Input that expands in memory (issue 14, item 5): tiny compressed payloads that decode
//! into millions of records are refused while decoding, before they are materialised. The
//! agent's peak RSS stays under its idle RSS + `memory_limit_mib` + the per-connection
//! allowance the README documents (the inflated frame and its records: 2 × `max_frame_bytes`
//! for Fluent Forward; `max_body_bytes` for HTTP; for OTLP, 2 × `max_body_bytes` (the body as
//! received and inflated) + a quarter of `memory_limit_mib` (what an admitted request
//! decodes into)).

use std::io::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fake_cwl::FakeCwl;
use crate::support::{Agent, Options, eventually, free_port, http_get};

const MIB: u64 = 1024 * 1024;

/// Peak RSS (VmHWM) of `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A CompressedPackedForward frame of `n` empty records `[time, {}]`.
fn empty_records_frame(n: usize) -> Vec<u8> {
    let mut entries = Vec::with_capacity(n * 7);
    for _ in 0..n {
        rmp::encode::write_array_len(&mut entries, 2).unwrap();
        rmp::encode::write_u32(&mut entries, 1_700_000_000).unwrap();
        rmp::encode::write_map_len(&mut entries, 0).unwrap();
    }
    let payload = gzip(&entries);
    let mut frame = Vec::new();
    rmp::encode::write_array_len(&mut frame, 3).unwrap();
    rmp::encode::write_str(&mut frame, "app").unwrap();
    rmp::encode::write_bin(&mut frame, &payload).unwrap();
    rmp::encode::write_map_len(&mut frame, 1).unwrap();
    rmp::encode::write_str(&mut frame, "compressed").unwrap();
    rmp::encode::write_str(&mut frame, "gzip").unwrap();
    frame
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_that_expand_are_refused_before_they_are_materialised() {
    let (_fake, endpoint, _server) = FakeCwl::start().await;
    let (forward, http) = (free_port(), free_port());
    let mut options = Options::new(endpoint);
    options.memory_limit_mib = 16;
    options.extra = format!(
        "[sources.forward]\naddress = \"127.0.0.1:{forward}\"\n[sources.http]\naddress = \"127.0.0.1:{http}\"\n"
    );
    let agent = Agent::start(&options);
    let admin = agent.admin_port;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            http_get(admin, "/ready").await.is_ok_and(|(s, _)| s == 200)
        })
        .await
    );
    let pid = agent.child.id();
    let idle = peak_rss(pid);

    // 2.3M empty records: ~23 KiB gzipped, 15 MiB inflated (under the 16 MiB frame cap).
    let frame = empty_records_frame(2_300_000);
    assert!(frame.len() < 64 * 1024, "{} bytes", frame.len());
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", forward))
        .await
        .unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is closed");
    let refused = eventually(Duration::from_secs(10), || async {
        agent
            .metric("agent_input_errors_total{kind=\"oversize\",source=\"forward\"}")
            .await
            == Some(1.0)
    })
    .await;
    assert!(refused, "the frame is refused as oversize");

    // HTTP: ~4 KB of gzipped `a\n` × 2M (4 MB, under the 4 MiB body cap).
    let body = gzip(&b"a\n".repeat(2_000_000));
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", http))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: agent\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let peak = peak_rss(pid);
    // The documented allowance: memory_limit_mib, plus 2 × max_frame_bytes (16 MiB) for the
    // one forward connection; the HTTP body (4 MiB) fits in what the frame left.
    let allowed = idle + 16 * MIB + 2 * 16 * MIB;
    assert!(
        peak < allowed,
        "peak RSS {} MiB, idle {} MiB, allowed {} MiB",
        peak / MIB,
        idle / MIB,
        allowed / MIB
    );
    drop(agent);
}

/// An OTLP logs export of `n` empty records, written by hand: 2 bytes each on the wire.
fn empty_log_records(n: usize) -> Vec<u8> {
    let delimited = |field: u8, body: &[u8]| {
        let mut out = vec![field << 3 | 2];
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    };
    delimited(1, &delimited(2, &[0x12, 0x00].repeat(n)))
}

/// Sends raw bytes as the gRPC message (the generated clients take decoded requests).
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
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
    type Item = ();
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        prost::bytes::Buf::advance(src, prost::bytes::Buf::remaining(src));
        Ok(Some(()))
    }
}

/// `message` to the OTLP/gRPC logs Export on `port`, gzipped or not: the answer's code.
async fn grpc_logs(port: u16, message: Vec<u8>, gzip: bool) -> tonic::Code {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
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

/// `body` to OTLP/HTTP `/v1/logs` on `port` as protobuf: the answer's first line.
async fn http_logs(port: u16, body: &[u8], gzip: bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let encoding = if gzip {
        "content-encoding: gzip\r\n"
    } else {
        ""
    };
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: agent\r\ncontent-type: application/x-protobuf\r\n{encoding}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_protobuf_that_expands_is_refused_before_prost_decodes_it() {
    let (_fake, endpoint, _server) = FakeCwl::start().await;
    let (http, grpc) = (free_port(), free_port());
    let mut options = Options::new(endpoint);
    options.memory_limit_mib = 16;
    options.extra = format!(
        "[sources.otlp]\nhttp_address = \"127.0.0.1:{http}\"\ngrpc_address = \"127.0.0.1:{grpc}\"\nrequest_timings = \"none\"\n"
    );
    let agent = Agent::start(&options);
    let admin = agent.admin_port;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            http_get(admin, "/ready").await.is_ok_and(|(s, _)| s == 200)
        })
        .await
    );
    let pid = agent.child.id();
    let idle = peak_rss(pid);

    // 2M empty log records: 4 MB (under the 4 MiB max_body_bytes), 4 KB gzipped; as prost's
    // structs ~400 MB.
    let body = empty_log_records(2_000_000);
    let gzipped = gzip(&body);
    assert!(gzipped.len() < 64 * 1024, "{} bytes", gzipped.len());
    assert!(
        http_logs(http, &body, false)
            .await
            .starts_with("HTTP/1.1 413")
    );
    assert!(
        http_logs(http, &gzipped, true)
            .await
            .starts_with("HTTP/1.1 413")
    );
    for gzip in [false, true] {
        let code = grpc_logs(grpc, body.clone(), gzip).await;
        assert_eq!(code, tonic::Code::ResourceExhausted, "gzip: {gzip}");
    }
    let counted = agent
        .metric("agent_input_errors_total{kind=\"too_large\",source=\"otlp\"}")
        .await;
    assert_eq!(counted, Some(4.0));
    // Malformed wire data: refused without decoding.
    let code = grpc_logs(grpc, b"\x0a\x05\x12".to_vec(), false).await;
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert!(
        http_logs(http, b"\x0a\x05\x12", false)
            .await
            .starts_with("HTTP/1.1 400")
    );

    let peak = peak_rss(pid);
    // The documented allowance for one OTLP request: 2 × max_body_bytes (4 MiB: the body as
    // received and inflated) + a quarter of memory_limit_mib (what an admitted request may
    // decode into), on top of memory_limit_mib.
    let allowed = idle + 16 * MIB + 2 * 4 * MIB + 16 * MIB / 4;
    assert!(
        peak < allowed,
        "peak RSS {} MiB, idle {} MiB, allowed {} MiB",
        peak / MIB,
        idle / MIB,
        allowed / MIB
    );
    drop(agent);
}

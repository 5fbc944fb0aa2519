//! Input that expands in memory (issue 14, item 5): tiny compressed payloads that decode
//! into millions of records are refused while decoding, before they are materialised. The
//! agent's peak RSS stays under its idle RSS + `memory_limit_mib` + the per-connection
//! allowance the README documents (the inflated frame and its records: 2 × `max_frame_bytes`
//! for Fluent Forward; `max_body_bytes` for HTTP).

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

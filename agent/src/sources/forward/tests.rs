//! Fluent Forward: fixtures built from the v1 spec for each mode, malformed input, split
//! lines, and the server end to end over TCP and a Unix socket.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::decode::{self, DecodeError, Decoder, FrameScanner, Record};
use super::*;
use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::parse::ParseFields;
use crate::pipeline::{Batch, Processor};

const MAX: usize = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(5);

// ---- MessagePack fixtures -------------------------------------------------------------

#[derive(Clone, Copy)]
enum Time {
    Int(u64),
    Event(u32, u32),
    Float(f64),
}

fn time(out: &mut Vec<u8>, time: Time) {
    match time {
        Time::Int(secs) => {
            rmp::encode::write_uint(out, secs).unwrap();
        }
        Time::Event(secs, nanos) => {
            rmp::encode::write_ext_meta(out, 8, 0).unwrap();
            out.extend_from_slice(&secs.to_be_bytes());
            out.extend_from_slice(&nanos.to_be_bytes());
        }
        Time::Float(secs) => rmp::encode::write_f64(out, secs).unwrap(),
    }
}

fn s(out: &mut Vec<u8>, text: &str) {
    rmp::encode::write_str(out, text).unwrap();
}

fn record(out: &mut Vec<u8>, fields: &[(&str, &str)]) {
    rmp::encode::write_map_len(out, fields.len() as u32).unwrap();
    for (key, value) in fields {
        s(out, key);
        s(out, value);
    }
}

fn option(out: &mut Vec<u8>, chunk: Option<&str>, compressed: Option<&str>) {
    let len = u32::from(chunk.is_some()) + u32::from(compressed.is_some());
    rmp::encode::write_map_len(out, len).unwrap();
    if let Some(chunk) = chunk {
        s(out, "chunk");
        s(out, chunk);
    }
    if let Some(compressed) = compressed {
        s(out, "compressed");
        s(out, compressed);
    }
}

/// Message mode: `[tag, time, record, option?]`.
fn message(t: Time, fields: &[(&str, &str)], chunk: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, if chunk.is_some() { 4 } else { 3 }).unwrap();
    s(&mut out, "app-firelens-1");
    time(&mut out, t);
    record(&mut out, fields);
    if chunk.is_some() {
        option(&mut out, chunk, None);
    }
    out
}

/// One `[time, record]` entry.
fn entry(t: Time, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 2).unwrap();
    time(&mut out, t);
    record(&mut out, fields);
    out
}

/// Forward mode: `[tag, [entry, ...], option?]`.
fn forward(entries: &[Vec<u8>], chunk: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, if chunk.is_some() { 3 } else { 2 }).unwrap();
    s(&mut out, "tag");
    rmp::encode::write_array_len(&mut out, entries.len() as u32).unwrap();
    for entry in entries {
        out.extend_from_slice(entry);
    }
    if chunk.is_some() {
        option(&mut out, chunk, None);
    }
    out
}

/// PackedForward (`compressed: None`) or CompressedPackedForward with the payload as given.
fn packed(payload: &[u8], as_str: bool, chunk: Option<&str>, compressed: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 3).unwrap();
    s(&mut out, "tag");
    if as_str {
        rmp::encode::write_str_len(&mut out, payload.len() as u32).unwrap();
    } else {
        rmp::encode::write_bin_len(&mut out, payload.len() as u32).unwrap();
    }
    out.extend_from_slice(payload);
    option(&mut out, chunk, compressed);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn log(line: &str) -> [(&'static str, &str); 3] {
    [
        ("container_id", "abc123"),
        ("container_name", "app"),
        ("log", line),
    ]
}

// ---- Decoding -------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Decoded {
    time_ms: Option<i64>,
    container: Option<String>,
    line: String,
    json: bool,
    partial: Option<(String, Option<u64>, bool)>,
}

fn owned(record: Record<'_>) -> Decoded {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let json = matches!(record.body, decode::Body::Json(_));
    Decoded {
        time_ms: record.time_ms,
        container: record.container.map(text),
        line: text(&record.body.into_vec()),
        json,
        partial: record.partial.map(|p| (text(p.id), p.ordinal, p.last)),
    }
}

/// Scans then decodes one whole frame, as a connection does.
fn decode_frame(frame: &[u8]) -> Result<(Vec<Decoded>, Option<Vec<u8>>), DecodeError> {
    let len = FrameScanner::new()
        .scan(frame, MAX)?
        .expect("a complete frame");
    assert_eq!(len, frame.len(), "the scanner must find the frame's end");
    let mut records = Vec::new();
    let chunk = Decoder::new(MAX).decode(frame, |record| records.push(owned(record)))?;
    Ok((records, chunk.map(<[u8]>::to_vec)))
}

fn lines(records: &[Decoded]) -> Vec<&str> {
    records.iter().map(|r| r.line.as_str()).collect()
}

#[test]
fn message_mode_with_integer_and_event_time() {
    let (records, chunk) =
        decode_frame(&message(Time::Int(1_700_000_000), &log("hello"), None)).unwrap();
    assert_eq!(chunk, None);
    assert_eq!(
        records,
        vec![Decoded {
            time_ms: Some(1_700_000_000_000),
            container: Some("app".into()),
            line: "hello".into(),
            json: false,
            partial: None,
        }]
    );
    let (records, chunk) = decode_frame(&message(
        Time::Event(1_700_000_000, 123_456_789),
        &log("x"),
        Some("c1"),
    ))
    .unwrap();
    assert_eq!(records[0].time_ms, Some(1_700_000_000_123));
    assert_eq!(chunk.as_deref(), Some(&b"c1"[..]));
    let (records, _) = decode_frame(&message(Time::Float(1.5), &log("f"), None)).unwrap();
    assert_eq!(records[0].time_ms, Some(1500));
}

#[test]
fn forward_mode_keeps_entry_order_and_times() {
    let entries = [
        entry(Time::Event(10, 5_000_000), &log("a")),
        entry(Time::Int(11), &log("b")),
    ];
    let (records, chunk) = decode_frame(&forward(&entries, Some("chunk-2"))).unwrap();
    assert_eq!(lines(&records), ["a", "b"]);
    assert_eq!(records[0].time_ms, Some(10_005));
    assert_eq!(records[1].time_ms, Some(11_000));
    assert_eq!(chunk.as_deref(), Some(&b"chunk-2"[..]));
}

#[test]
fn fluent_bit_2_metadata_entries_are_accepted() {
    // [[time, metadata], record]
    let mut e = Vec::new();
    rmp::encode::write_array_len(&mut e, 2).unwrap();
    rmp::encode::write_array_len(&mut e, 2).unwrap();
    time(&mut e, Time::Int(7));
    record(&mut e, &[("k", "v")]);
    record(&mut e, &log("meta"));
    let (records, _) = decode_frame(&forward(&[e], None)).unwrap();
    assert_eq!(
        (records[0].time_ms, records[0].line.as_str()),
        (Some(7000), "meta")
    );
}

#[test]
fn packed_forward_as_bin_and_as_str() {
    let payload: Vec<u8> = (0..3)
        .flat_map(|i| entry(Time::Int(i), &log(&format!("line {i}"))))
        .collect();
    for as_str in [false, true] {
        let (records, chunk) = decode_frame(&packed(&payload, as_str, Some("p"), None)).unwrap();
        assert_eq!(lines(&records), ["line 0", "line 1", "line 2"]);
        assert_eq!(chunk.as_deref(), Some(&b"p"[..]));
    }
    let (records, _) = decode_frame(&packed(&payload, false, None, Some("text"))).unwrap();
    assert_eq!(records.len(), 3);
}

#[test]
fn compressed_packed_forward_with_several_gzip_members() {
    let first: Vec<u8> = (0..2)
        .flat_map(|i| entry(Time::Event(1, 0), &log(&format!("a{i}"))))
        .collect();
    let second = entry(Time::Event(2, 0), &log("b"));
    let mut payload = gzip(&first);
    payload.extend_from_slice(&gzip(&second));
    let (records, chunk) = decode_frame(&packed(&payload, false, Some("z"), Some("gzip"))).unwrap();
    assert_eq!(lines(&records), ["a0", "a1", "b"]);
    assert_eq!(records[2].time_ms, Some(2000));
    assert_eq!(chunk.as_deref(), Some(&b"z"[..]));
}

#[test]
fn a_record_without_log_ships_as_json_without_partial_fields() {
    let mut r = Vec::new();
    rmp::encode::write_map_len(&mut r, 10).unwrap();
    for (k, v) in [
        ("container_name", "app"),
        ("msg", "hi \"there\""),
        ("partial_id", "x"),
    ] {
        s(&mut r, k);
        s(&mut r, v);
    }
    s(&mut r, "n");
    rmp::encode::write_sint(&mut r, -3).unwrap();
    s(&mut r, "f");
    rmp::encode::write_f64(&mut r, 1.5).unwrap();
    s(&mut r, "b");
    rmp::encode::write_bin(&mut r, &[0xff, b'a']).unwrap();
    s(&mut r, "nested");
    rmp::encode::write_map_len(&mut r, 1).unwrap();
    s(&mut r, "a");
    rmp::encode::write_array_len(&mut r, 3).unwrap();
    rmp::encode::write_uint(&mut r, 1).unwrap();
    rmp::encode::write_nil(&mut r).unwrap();
    rmp::encode::write_bool(&mut r, true).unwrap();
    s(&mut r, "t");
    time(&mut r, Time::Event(1_700_000_000, 500_000_000));
    s(&mut r, "e");
    rmp::encode::write_ext_meta(&mut r, 1, 5).unwrap();
    r.push(0);
    rmp::encode::write_uint(&mut r, 7).unwrap();
    s(&mut r, "int key");

    let mut frame = Vec::new();
    rmp::encode::write_array_len(&mut frame, 3).unwrap();
    s(&mut frame, "tag");
    time(&mut frame, Time::Int(1));
    frame.extend_from_slice(&r);
    let (records, _) = decode_frame(&frame).unwrap();
    assert!(records[0].json);
    assert_eq!(records[0].container.as_deref(), Some("app"));
    assert_eq!(
        records[0].line,
        "{\"container_name\":\"app\",\"msg\":\"hi \\\"there\\\"\",\"n\":-3,\"f\":1.5,\"b\":\"\u{fffd}a\",\
         \"nested\":{\"a\":[1,null,true]},\"t\":1700000000.5,\"e\":null,\"7\":\"int key\"}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&records[0].line).unwrap();
    assert_eq!(parsed["nested"]["a"][2], true);
}

#[test]
fn partial_fields_are_read_with_string_or_integer_ordinals() {
    let fields = [
        ("log", "part"),
        ("partial_message", "true"),
        ("partial_id", "p1"),
        ("partial_ordinal", "2"),
    ];
    let mut with_last = fields.to_vec();
    with_last.push(("partial_last", "false"));
    let (records, _) = decode_frame(&message(Time::Int(1), &with_last, None)).unwrap();
    assert_eq!(records[0].partial, Some(("p1".into(), Some(2), false)));

    let mut r = Vec::new();
    rmp::encode::write_map_len(&mut r, 5).unwrap();
    for (k, v) in [
        ("log", "end"),
        ("partial_message", "true"),
        ("partial_id", "p1"),
        ("partial_last", "true"),
    ] {
        s(&mut r, k);
        s(&mut r, v);
    }
    s(&mut r, "partial_ordinal");
    rmp::encode::write_uint(&mut r, 3).unwrap();
    let mut frame = Vec::new();
    rmp::encode::write_array_len(&mut frame, 3).unwrap();
    s(&mut frame, "tag");
    time(&mut frame, Time::Int(1));
    frame.extend_from_slice(&r);
    let (records, _) = decode_frame(&frame).unwrap();
    assert_eq!(records[0].partial, Some(("p1".into(), Some(3), true)));
}

#[test]
fn ack_is_the_msgpack_map_ack_to_chunk() {
    let mut out = Vec::new();
    decode::encode_ack(b"NzVkZjM=", &mut out);
    let mut expected = vec![0x81, 0xa3, b'a', b'c', b'k', 0xa8];
    expected.extend_from_slice(b"NzVkZjM=");
    assert_eq!(out, expected);
}

#[test]
fn the_scanner_resumes_across_reads_and_separates_frames() {
    let a = message(Time::Int(1), &log("first"), Some("1"));
    let b = packed(&entry(Time::Int(2), &log("second")), false, None, None);
    let stream: Vec<u8> = a.iter().chain(&b).copied().collect();
    let mut scanner = FrameScanner::new();
    for end in 0..a.len() {
        assert_eq!(
            scanner.scan(&stream[..end], MAX).unwrap(),
            None,
            "incomplete at {end}"
        );
    }
    assert_eq!(scanner.scan(&stream, MAX).unwrap(), Some(a.len()));
    assert_eq!(
        scanner.scan(&stream[a.len()..], MAX).unwrap(),
        Some(b.len())
    );
    // A bin header announces its size before its bytes arrive.
    scanner.scan(&b[..8], MAX).unwrap();
    assert!(scanner.wanted() >= b.len() - 20);
}

#[test]
fn malformed_frames_are_errors() {
    let decode_err = |frame: &[u8]| decode_frame(frame).unwrap_err().kind();
    // The tag is an integer.
    let mut frame = vec![0x93, 0x01];
    time(&mut frame, Time::Int(1));
    record(&mut frame, &log("x"));
    assert_eq!(decode_err(&frame), "wrong_type");
    // The record is not a map.
    let mut frame = vec![0x93];
    s(&mut frame, "tag");
    time(&mut frame, Time::Int(1));
    s(&mut frame, "not a map");
    assert_eq!(decode_err(&frame), "wrong_type");
    // The time is a string (with four elements this cannot be PackedForward).
    let mut frame = vec![0x94];
    s(&mut frame, "tag");
    s(&mut frame, "yesterday");
    record(&mut frame, &log("x"));
    option(&mut frame, None, None);
    assert_eq!(decode_err(&frame), "unknown_mode");
    // A forward entry that is not a pair.
    let mut bad = vec![0x93];
    time(&mut bad, Time::Int(1));
    record(&mut bad, &log("x"));
    bad.push(0xc0);
    assert_eq!(decode_err(&forward(&[bad], None)), "wrong_type");
    // An entry whose time is a string.
    let mut bad = vec![0x92];
    s(&mut bad, "noon");
    record(&mut bad, &log("x"));
    assert_eq!(decode_err(&forward(&[bad], None)), "wrong_type");
    // The option is not a map.
    let mut frame = forward(&[entry(Time::Int(1), &log("x"))], None);
    frame[0] = 0x93;
    s(&mut frame, "option");
    assert_eq!(decode_err(&frame), "wrong_type");
    // Unknown mode: the second element is a map.
    let mut frame = vec![0x92];
    s(&mut frame, "tag");
    record(&mut frame, &log("x"));
    assert_eq!(decode_err(&frame), "unknown_mode");
    // A packed payload whose last entry is cut short.
    let full = entry(Time::Int(1), &log("abcdef"));
    assert_eq!(
        decode_err(&packed(&full[..full.len() - 2], false, None, None)),
        "truncated"
    );
    // Not gzip, and an unknown compression.
    assert_eq!(
        decode_err(&packed(b"definitely not gzip", false, None, Some("gzip"))),
        "bad_gzip"
    );
    let mut cut = gzip(&full);
    cut.truncate(cut.len() - 4);
    assert_eq!(
        decode_err(&packed(&cut, false, None, Some("gzip"))),
        "bad_gzip"
    );
    assert_eq!(
        decode_err(&packed(&full, false, None, Some("zstd"))),
        "unsupported_compression"
    );
    // Not an array of 2 to 4 elements: refused from the first byte.
    assert_eq!(
        FrameScanner::new()
            .scan(b"{\"json\":1}", MAX)
            .unwrap_err()
            .kind(),
        "not_a_frame"
    );
    assert_eq!(
        FrameScanner::new().scan(&[0x95], MAX).unwrap_err().kind(),
        "not_a_frame"
    );
    assert_eq!(
        FrameScanner::new()
            .scan(&[0x93, 0xc1], MAX)
            .unwrap_err()
            .kind(),
        "invalid_marker"
    );
}

#[test]
fn oversize_frames_are_refused_from_their_headers() {
    // A 100 MiB bin announced in 10 bytes.
    let mut frame = vec![0x93];
    s(&mut frame, "tag");
    frame.extend_from_slice(&[0xc6, 0x06, 0x40, 0x00, 0x00]);
    assert_eq!(
        FrameScanner::new().scan(&frame, MAX).unwrap_err().kind(),
        "oversize"
    );
    // A map claiming 4 billion pairs.
    let mut frame = vec![0x93];
    s(&mut frame, "tag");
    time(&mut frame, Time::Int(1));
    frame.extend_from_slice(&[0xdf, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        FrameScanner::new().scan(&frame, MAX).unwrap_err().kind(),
        "oversize"
    );
    // Inside a packed payload the same claim is simply truncated.
    let mut payload = vec![0x92, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff];
    payload.extend_from_slice(&[0xc0; 16]);
    assert_eq!(
        decode_frame(&packed(&payload, false, None, None))
            .unwrap_err()
            .kind(),
        "truncated"
    );
    // A gzip bomb: small on the wire, larger than the limit inflated.
    let big = entry(Time::Int(1), &log(&"x".repeat(2 * MAX)));
    let frame = packed(&gzip(&big), false, None, Some("gzip"));
    assert!(frame.len() < MAX);
    assert_eq!(decode_frame(&frame).unwrap_err().kind(), "oversize");
}

#[test]
fn deep_nesting_is_refused_without_recursing() {
    let nested = |depth: usize| {
        let mut r = vec![0x81];
        s(&mut r, "deep");
        r.extend(std::iter::repeat_n(0x91, depth));
        r.push(0xc0);
        r
    };
    let mut frame = vec![0x93];
    s(&mut frame, "tag");
    time(&mut frame, Time::Int(1));
    frame.extend_from_slice(&nested(100_000));
    assert_eq!(
        FrameScanner::new().scan(&frame, MAX).unwrap_err().kind(),
        "too_deep"
    );
    // In a packed payload the scanner does not look inside: the JSON fallback refuses it.
    let mut payload = vec![0x92, 0x01];
    payload.extend_from_slice(&nested(100_000));
    assert_eq!(
        decode_frame(&packed(&payload, false, None, None))
            .unwrap_err()
            .kind(),
        "too_deep"
    );
    // With a `log` the deep field is only skipped (iteratively), so the line ships.
    let mut payload = vec![0x92, 0x01, 0x82];
    s(&mut payload, "log");
    s(&mut payload, "ok");
    payload.extend_from_slice(&nested(100_000)[1..]);
    let (records, _) = decode_frame(&packed(&payload, false, None, None)).unwrap();
    assert_eq!(lines(&records), ["ok"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        scan_and_decode(&bytes);
    }

    #[test]
    fn corrupted_frames_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let payload: Vec<u8> = (0..3).flat_map(|i| entry(Time::Event(i, 0), &log("line"))).collect();
        for mut frame in [
            message(Time::Int(1), &log("hello"), Some("c")),
            forward(&[entry(Time::Int(1), &[("msg", "no log")])], Some("c")),
            packed(&payload, false, Some("c"), None),
            packed(&gzip(&payload), false, Some("c"), Some("gzip")),
        ] {
            for &(at, byte) in &flips {
                let at = at % frame.len();
                frame[at] = byte;
            }
            scan_and_decode(&frame);
        }
    }
}

fn scan_and_decode(bytes: &[u8]) {
    let mut scanner = FrameScanner::new();
    let mut decoder = Decoder::new(4096);
    let mut rest = bytes;
    while let Ok(Some(len)) = scanner.scan(rest, 4096) {
        let _ = decoder.decode(&rest[..len], |record| drop(owned(record)));
        rest = &rest[len..];
    }
}

// ---- Split lines ----------------------------------------------------------------------

fn part(p: &mut Partials, id: &str, ordinal: u64, last: bool, text: &str, out: &mut Shipped) {
    let partial = decode::Partial {
        id: id.as_bytes(),
        ordinal: Some(ordinal),
        last,
    };
    let meta = RawLine {
        time_ms: Some(ordinal as i64),
        ..RawLine::new(Vec::new())
    };
    p.push(partial, text.as_bytes(), meta, out);
}

/// The reassembler with the default timeout.
fn partials(max: usize) -> Partials {
    Partials::new(max, Duration::from_secs(5))
}

fn texts(lines: &[RawLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

#[test]
fn split_lines_join_in_ordinal_order() {
    let mut p = partials(MAX);
    let mut out = Shipped::default();
    part(&mut p, "a", 1, false, "one ", &mut out);
    part(&mut p, "b", 2, false, "B2", &mut out);
    part(&mut p, "a", 2, false, "two ", &mut out);
    part(&mut p, "b", 1, false, "B1", &mut out);
    assert!(out.lines.is_empty());
    part(&mut p, "a", 3, true, "three", &mut out);
    assert_eq!(texts(&out.lines), ["one two three"]);
    assert_eq!(out.lines[0].time_ms, Some(1), "the first part's time");
    // The last part may arrive before a missing one: the line waits for it.
    part(&mut p, "b", 4, true, "B4", &mut out);
    assert_eq!(out.lines.len(), 1);
    part(&mut p, "b", 3, false, "B3", &mut out);
    assert_eq!(texts(&out.lines[1..]), ["B1B2B3B4"]);
    assert!(p.open.is_empty());
    assert_eq!(p.held, 0);
}

#[test]
fn split_lines_are_capped_with_a_marker() {
    let mut p = partials(5);
    let mut out = Shipped::default();
    part(&mut p, "a", 1, false, "abc", &mut out);
    part(&mut p, "a", 2, false, "def", &mut out);
    part(&mut p, "a", 3, false, "ghi", &mut out);
    assert_eq!(p.held, 5, "parts past the cap are dropped, not held");
    part(&mut p, "a", 4, true, "jkl", &mut out);
    assert_eq!(texts(&out.lines), [format!("abcde{TRUNCATION_MARKER}")]);
    // Out of order: a late earlier part still wins its place.
    part(&mut p, "b", 2, false, "def", &mut out);
    part(&mut p, "b", 3, false, "ghi", &mut out);
    part(&mut p, "b", 1, false, "abc", &mut out);
    part(&mut p, "b", 4, true, "jkl", &mut out);
    assert_eq!(
        texts(&out.lines[1..]),
        [format!("abcde{TRUNCATION_MARKER}")]
    );
}

#[test]
fn open_split_lines_are_bounded_and_shipped_at_close() {
    let mut p = partials(MAX);
    let mut out = Shipped::default();
    for id in 0..MAX_OPEN_PARTIALS {
        part(
            &mut p,
            &format!("id{id}"),
            1,
            false,
            &format!("line{id}"),
            &mut out,
        );
    }
    assert!(out.lines.is_empty());
    part(&mut p, "one more", 1, false, "x", &mut out);
    assert_eq!(texts(&out.lines), ["line0"], "the oldest ships as it is");
    p.drain(&mut out);
    assert_eq!(out.lines.len(), MAX_OPEN_PARTIALS + 1);
    assert_eq!(p.held, 0);
}

#[test]
fn in_order_parts_extend_one_range_so_reassembly_is_linear() {
    // Regression: every part re-summed the lengths of all parts before it (quadratic: 80k
    // parts cost 0.77 CPU-s; 1M would pin a core for minutes).
    let mut p = partials(usize::MAX);
    let mut out = Shipped::default();
    let n = 200_000u64;
    for ordinal in 1..n {
        part(&mut p, "big", ordinal, false, "x", &mut out);
    }
    assert_eq!(
        p.open[0].parts.len(),
        1,
        "one range, whatever the number of parts"
    );
    part(&mut p, "big", n, true, "y", &mut out);
    let line = &out.lines[0].bytes;
    assert_eq!(line.len(), n as usize);
    assert!(line.ends_with(b"xy"));
}

#[test]
fn an_ack_is_held_by_the_open_lines_its_frame_fed() {
    let mut p = partials(MAX);
    let mut out = Shipped::default();
    let mut acks = Vec::new();
    p.begin_frame();
    part(&mut p, "a", 1, false, "one ", &mut out);
    p.ack_frame(b"c1", &mut acks);
    assert!(acks.is_empty(), "the part is only in memory: no ack yet");
    p.begin_frame();
    p.ack_frame(b"c2", &mut acks);
    assert_eq!(
        acks,
        ack("c2"),
        "a frame that fed no open line is acked at once"
    );
    p.begin_frame();
    part(&mut p, "a", 2, true, "two", &mut out);
    p.ack_frame(b"c3", &mut acks);
    assert_eq!(texts(&out.lines), ["one two"]);
    assert_eq!(out.acks, ack("c1"), "released with the line");
    assert!(p.pending.is_empty());
}

// ---- Connections ----------------------------------------------------------------------

fn pipeline(budget: usize) -> (EventSender, mpsc::Receiver<Batch>, MemoryBudget) {
    let fields = ParseFields {
        timestamp: "timestamp".into(),
        level: "level".into(),
        timing: None,
    };
    let processor = Processor::new(fields, None, 256 * 1024);
    let budget = MemoryBudget::new(budget);
    let (senders, rx) =
        crate::pipeline::channel(processor, budget.clone(), Arc::new(Metrics::default()));
    (senders.for_source(SourceKind::Forward), rx, budget)
}

fn limits(idle_timeout: Duration) -> Limits {
    Limits {
        max_frame_bytes: MAX,
        max_partial_bytes: MAX,
        partial_timeout: Duration::from_secs(5),
        idle_timeout,
    }
}

fn ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::new();
    decode::encode_ack(chunk.as_bytes(), &mut out);
    out
}

async fn read_ack<R: AsyncRead + Unpin>(reader: &mut R, chunk: &str) {
    let expected = ack(chunk);
    let mut got = vec![0; expected.len()];
    tokio::time::timeout(DEADLINE, reader.read_exact(&mut got))
        .await
        .expect("ack in time")
        .unwrap();
    assert_eq!(got, expected);
}

/// Receives batches until `count` events arrived; returns their messages.
async fn receive(rx: &mut mpsc::Receiver<Batch>, count: usize) -> Vec<String> {
    let mut messages = Vec::new();
    while messages.len() < count {
        let batch = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("lines in time")
            .unwrap();
        messages.extend(batch.events.into_iter().map(|e| e.message));
    }
    messages
}

/// Reads until EOF (or a reset): the server closed the connection.
async fn assert_closed<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut sink = vec![0; 64];
    loop {
        match tokio::time::timeout(DEADLINE, reader.read(&mut sink))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn tcp_end_to_end_acks_after_the_lines_are_queued() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        Some(listener),
        None,
        limits(IDLE_TIMEOUT),
        8,
        out,
        shutdown.clone(),
    ));

    let mut client = TcpStream::connect(address).await.unwrap();
    // Several frames in one write, one of them split across two writes.
    let mut bytes = message(Time::Event(1_700_000_000, 0), &log("m1"), None);
    bytes.extend(forward(
        &[
            entry(Time::Int(1_700_000_001), &log("f1")),
            entry(Time::Int(1), &log("f2")),
        ],
        None,
    ));
    let last = packed(
        &entry(Time::Int(1), &log("p1")),
        false,
        Some("Y2h1bmsx"),
        None,
    );
    bytes.extend_from_slice(&last[..5]);
    client.write_all(&bytes).await.unwrap();
    client.write_all(&last[5..]).await.unwrap();
    read_ack(&mut client, "Y2h1bmsx").await;
    // The ack came after send() returned, so every line is already queued.
    let mut messages = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        messages.extend(
            batch
                .events
                .into_iter()
                .map(|e| (e.message, e.time_ms, e.container)),
        );
    }
    let app = Some(Arc::from("app"));
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert_eq!(
        messages[0],
        ("m1".to_owned(), 1_700_000_000_000, app.clone())
    );
    assert_eq!(messages[1], ("f1".to_owned(), 1_700_000_001_000, app));
    assert_eq!(
        messages.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["m1", "f1", "f2", "p1"]
    );

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("stops in time")
        .unwrap();
    assert_closed(&mut client).await;
}

#[tokio::test]
async fn unix_socket_end_to_end_replaces_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a stale file
    let (out, mut rx, _budget) = pipeline(MAX);
    let config = ForwardConfig {
        address: String::new(),
        unix_path: Some(path.clone()),
        max_partial_bytes: MAX,
        max_frame_bytes: MAX,
        max_connections: 4,
        frame_timeout_ms: 30_000,
        partial_timeout_ms: 5_000,
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run(config, out, shutdown.clone()));
    let mut client = loop {
        if let Ok(client) = tokio::net::UnixStream::connect(&path).await {
            break client;
        }
        assert!(!server.is_finished(), "run ended early: {:?}", server.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o666,
        "other containers' users must be able to write"
    );

    client
        .write_all(&message(Time::Int(1), &log("over unix"), Some("u1")))
        .await
        .unwrap();
    read_ack(&mut client, "u1").await;
    assert_eq!(rx.try_recv().unwrap().events[0].message, "over unix");

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("stops in time")
        .unwrap()
        .unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[tokio::test]
async fn a_full_pipeline_withholds_the_ack_until_memory_is_released() {
    // Room for one 10-byte line, not two.
    let line_cost = 10 + crate::pipeline::event::EVENT_OVERHEAD;
    let (out, mut rx, budget) = pipeline(line_cost + line_cost / 2);
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let shutdown = CancellationToken::new();
    let connection =
        tokio::spawn(Connection::new(limits(IDLE_TIMEOUT), out).serve(server, shutdown.clone()));

    client
        .write_all(&message(Time::Int(1), &log("0123456789"), Some("one")))
        .await
        .unwrap();
    read_ack(&mut client, "one").await;
    client
        .write_all(&message(Time::Int(1), &log("abcdefghij"), Some("two")))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), client.read(&mut byte)).await;
    assert!(early.is_err(), "no ack while the pipeline is full");

    let batch = rx.recv().await.unwrap();
    assert_eq!(batch.events[0].message, "0123456789");
    budget.release(batch.cost());
    read_ack(&mut client, "two").await;
    assert_eq!(receive(&mut rx, 1).await, ["abcdefghij"]);
    drop(client);
    tokio::time::timeout(DEADLINE, connection)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Serves one in-memory connection; returns the client end and the connection's task.
fn connect(
    limits: Limits,
    out: EventSender,
    shutdown: &CancellationToken,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<Result<(), ConnectionError>>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    (
        client,
        tokio::spawn(Connection::new(limits, out).serve(server, shutdown.clone())),
    )
}

async fn finished(
    task: tokio::task::JoinHandle<Result<(), ConnectionError>>,
) -> Result<(), ConnectionError> {
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the connection ends in time")
        .unwrap()
}

#[tokio::test]
async fn docker_split_lines_arrive_as_one_line() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &CancellationToken::new());
    let piece = |ordinal: &str, last: &str, text: &'static str| {
        [
            ("container_name", "app"),
            ("log", text),
            ("partial_message", "true"),
            ("partial_id", "5a1d"),
            ("partial_ordinal", ordinal),
            ("partial_last", last),
        ]
        .map(|(k, v)| (k, v.to_owned()))
    };
    let frame = |fields: [(&'static str, String); 6], chunk: &str| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        message(Time::Int(5), &fields, Some(chunk))
    };
    client
        .write_all(&frame(piece("2", "false", "-middle-"), "c2"))
        .await
        .unwrap();
    client
        .write_all(&frame(piece("1", "false", "start"), "c1"))
        .await
        .unwrap();
    client
        .write_all(&message(Time::Int(6), &log("unrelated"), None))
        .await
        .unwrap();
    client
        .write_all(&frame(piece("3", "true", "end"), "c3"))
        .await
        .unwrap();
    for chunk in ["c2", "c1", "c3"] {
        read_ack(&mut client, chunk).await;
    }
    assert_eq!(receive(&mut rx, 2).await, ["unrelated", "start-middle-end"]);
    drop(client);
    finished(task).await.unwrap();
}

#[tokio::test]
async fn a_split_lines_acks_wait_for_the_line_and_a_stale_line_ships_after_the_timeout() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let mut limits = limits(IDLE_TIMEOUT);
    limits.partial_timeout = Duration::from_millis(300);
    let (mut client, task) = connect(limits, out, &CancellationToken::new());
    let fields = [
        ("log", "head"),
        ("partial_message", "true"),
        ("partial_id", "x"),
        ("partial_ordinal", "1"),
    ];
    client
        .write_all(&message(Time::Int(1), &fields, Some("c1")))
        .await
        .unwrap();
    let mut early = vec![0; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), client.read(&mut early))
            .await
            .is_err(),
        "no ack while the part is only in memory"
    );
    // Never completed: after the timeout the line ships as it is, marked, and the ack
    // follows its acceptance.
    read_ack(&mut client, "c1").await;
    assert_eq!(
        receive(&mut rx, 1).await,
        [format!("head{TRUNCATION_MARKER}")]
    );
    drop(client);
    finished(task).await.unwrap();
}

#[tokio::test]
async fn a_half_reassembled_line_ships_when_the_connection_ends() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &CancellationToken::new());
    let fields = [
        ("log", "head"),
        ("partial_message", "true"),
        ("partial_id", "x"),
        ("partial_ordinal", "1"),
    ];
    client
        .write_all(&message(Time::Int(1), &fields, None))
        .await
        .unwrap();
    drop(client);
    finished(task).await.unwrap();
    assert_eq!(receive(&mut rx, 1).await, ["head"]);
}

#[tokio::test]
async fn a_bad_frame_closes_only_its_connection_after_the_good_ones() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        Some(listener),
        None,
        limits(IDLE_TIMEOUT),
        8,
        out,
        shutdown.clone(),
    ));

    let mut good = TcpStream::connect(address).await.unwrap();
    let mut bad = TcpStream::connect(address).await.unwrap();
    let mut bytes = message(Time::Int(1), &log("before the garbage"), Some("ok"));
    bytes.extend_from_slice(&[0x93, 0xa3, b't', b'a', b'g', 0xc1, 0xff, 0x00]);
    bad.write_all(&bytes).await.unwrap();
    read_ack(&mut bad, "ok").await;
    assert_closed(&mut bad).await;
    assert_eq!(receive(&mut rx, 1).await, ["before the garbage"]);

    let mut gzip_bad = TcpStream::connect(address).await.unwrap();
    gzip_bad
        .write_all(&packed(
            b"\x1f\x8bnot really",
            false,
            Some("g"),
            Some("gzip"),
        ))
        .await
        .unwrap();
    assert_closed(&mut gzip_bad).await;

    good.write_all(&message(Time::Int(1), &log("still fine"), Some("fine")))
        .await
        .unwrap();
    read_ack(&mut good, "fine").await;
    assert_eq!(receive(&mut rx, 1).await, ["still fine"]);
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let (out, _rx, _budget) = pipeline(MAX);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        Some(listener),
        None,
        limits(IDLE_TIMEOUT),
        1,
        out,
        shutdown.clone(),
    ));

    let mut first = TcpStream::connect(address).await.unwrap();
    first
        .write_all(&message(Time::Int(1), &log("a"), Some("1")))
        .await
        .unwrap();
    read_ack(&mut first, "1").await;
    let mut second = TcpStream::connect(address).await.unwrap();
    assert_closed(&mut second).await;
    first
        .write_all(&message(Time::Int(1), &log("b"), Some("2")))
        .await
        .unwrap();
    read_ack(&mut first, "2").await;
    drop(first);
    // The slot is freed once the first connection ends.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let third = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        let mut third = TcpStream::connect(address).await.unwrap();
        let mut got = vec![0; ack("3").len()];
        if third
            .write_all(&message(Time::Int(1), &log("c"), Some("3")))
            .await
            .is_ok()
            && tokio::time::timeout(DEADLINE, third.read_exact(&mut got))
                .await
                .unwrap()
                .is_ok()
        {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(third, ack("3"));
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_stalled_partial_frame_times_out_but_an_idle_connection_stays() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let idle = Duration::from_millis(100);
    let (mut client, task) = connect(limits(idle), out.clone(), &CancellationToken::new());
    client
        .write_all(&message(Time::Int(1), &log("a"), Some("1")))
        .await
        .unwrap();
    read_ack(&mut client, "1").await;
    tokio::time::sleep(idle * 3).await;
    client
        .write_all(&message(Time::Int(1), &log("b"), Some("2")))
        .await
        .unwrap();
    read_ack(&mut client, "2").await;
    assert_eq!(receive(&mut rx, 2).await, ["a", "b"]);

    let frame = message(Time::Int(1), &log("never finished"), Some("3"));
    client.write_all(&frame[..frame.len() - 3]).await.unwrap();
    let error = finished(task).await.unwrap_err();
    assert_eq!(error.kind(), "idle");
    assert_closed(&mut client).await;
}

#[tokio::test]
async fn oversize_and_truncated_frames_close_the_connection() {
    let (out, _rx, _budget) = pipeline(MAX);
    let small = Limits {
        max_frame_bytes: 64,
        ..limits(IDLE_TIMEOUT)
    };
    let (mut client, task) = connect(small, out.clone(), &CancellationToken::new());
    client
        .write_all(&message(Time::Int(1), &log(&"x".repeat(100)), None))
        .await
        .unwrap();
    assert_eq!(finished(task).await.unwrap_err().kind(), "oversize");

    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &CancellationToken::new());
    client
        .write_all(&message(Time::Int(1), &log("cut"), None)[..10])
        .await
        .unwrap();
    drop(client);
    assert_eq!(finished(task).await.unwrap_err().kind(), "truncated_frame");
}

#[tokio::test]
async fn shutdown_finishes_buffered_frames_then_closes() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let shutdown = CancellationToken::new();
    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &shutdown);
    client
        .write_all(&message(Time::Int(1), &log("in flight"), Some("last")))
        .await
        .unwrap();
    read_ack(&mut client, "last").await;
    shutdown.cancel();
    finished(task).await.unwrap();
    assert_closed(&mut client).await;
    assert_eq!(receive(&mut rx, 1).await, ["in flight"]);
}

#[tokio::test]
async fn a_bad_frame_ships_none_of_its_lines_but_keeps_completed_split_lines() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &CancellationToken::new());
    let split = |ordinal: &'static str, last: &'static str, text: &'static str| {
        [
            ("log", text),
            ("partial_message", "true"),
            ("partial_id", "p"),
            ("partial_ordinal", ordinal),
            ("partial_last", last),
        ]
    };
    client
        .write_all(&message(
            Time::Int(1),
            &split("1", "false", "first half, "),
            Some("1"),
        ))
        .await
        .unwrap();
    let mut early = vec![0; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), client.read(&mut early))
            .await
            .is_err(),
        "the first half is only in memory: its frame is not acked yet"
    );
    let mut not_a_pair = vec![0x91];
    time(&mut not_a_pair, Time::Int(1));
    let entries = [
        entry(Time::Int(1), &split("2", "true", "second half")),
        entry(Time::Int(1), &log("in the bad frame")),
        not_a_pair,
    ];
    client
        .write_all(&forward(&entries, Some("2")))
        .await
        .unwrap();
    assert_eq!(finished(task).await.unwrap_err().kind(), "wrong_type");
    assert_eq!(receive(&mut rx, 1).await, ["first half, second half"]);
    assert!(
        rx.try_recv().is_err(),
        "the bad frame's own lines are not shipped"
    );
    // The completed line released the first frame's ack; the bad frame gets none.
    read_ack(&mut client, "1").await;
    assert_closed(&mut client).await;
}

// ---- Hostile input (issue 9) ----------------------------------------------------------

/// `[tag, time, {"log": "t"}]` with the time value as `write_time` encodes it.
fn message_timed(write_time: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_array_len(&mut out, 3).unwrap();
    s(&mut out, "tag");
    write_time(&mut out);
    record(&mut out, &[("log", "t")]);
    out
}

#[test]
fn times_too_far_from_the_epoch_are_no_time() {
    let at = |write_time: fn(&mut Vec<u8>)| {
        decode_frame(&message_timed(write_time)).unwrap().0[0].time_ms
    };
    // In range, negative included: kept (the sink counts them as too old).
    assert_eq!(at(|o| drop(rmp::encode::write_sint(o, -5))), Some(-5_000));
    assert_eq!(
        at(|o| drop(rmp::encode::write_uint(o, 999_999_999_999))),
        Some(999_999_999_999_000)
    );
    // Milliseconds at or past 10^15 (or past i64): the received time will be used.
    assert_eq!(
        at(|o| drop(rmp::encode::write_uint(o, 1_000_000_000_000))),
        None
    );
    assert_eq!(at(|o| drop(rmp::encode::write_sint(o, i64::MIN))), None);
    assert_eq!(at(|o| drop(rmp::encode::write_uint(o, u64::MAX))), None);
    assert_eq!(at(|o| drop(rmp::encode::write_f64(o, -1e300))), None);
    assert_eq!(at(|o| drop(rmp::encode::write_f64(o, f64::MAX))), None);
}

#[tokio::test]
async fn a_frame_trickled_a_byte_at_a_time_times_out_as_a_whole() {
    let (out, mut rx, _budget) = pipeline(MAX);
    let limit = Duration::from_millis(300);
    let (mut client, task) = connect(limits(limit), out, &CancellationToken::new());
    // Each byte comes well within the limit, but the frame would need 40 × 50 ms.
    let frame = message(Time::Int(1), &log(&"x".repeat(40)), Some("slow"));
    let writer = tokio::spawn(async move {
        for byte in frame {
            if client.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
    });
    let started = std::time::Instant::now();
    let error = finished(task).await.unwrap_err();
    assert_eq!(error.kind(), "frame_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut client = writer.await.unwrap();
    assert_closed(&mut client).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing of the cut frame is shipped"
    );
}

#[tokio::test]
async fn waiting_for_the_pipeline_does_not_count_against_a_frame() {
    // Room for one line: the second line waits for the pipeline while the third frame's
    // first bytes are already buffered. That wait is the agent's, not the sender's.
    let line_cost = 10 + crate::pipeline::event::EVENT_OVERHEAD;
    let (out, mut rx, budget) = pipeline(line_cost + line_cost / 2);
    let limit = Duration::from_millis(200);
    let (mut client, task) = connect(limits(limit), out, &CancellationToken::new());
    let mut bytes = message(Time::Int(1), &log("0123456789"), Some("1"));
    bytes.extend(message(Time::Int(1), &log("abcdefghij"), Some("2")));
    let third = message(Time::Int(1), &log("ABCDEFGHIJ"), Some("3"));
    bytes.extend_from_slice(&third[..5]);
    client.write_all(&bytes).await.unwrap();
    tokio::time::sleep(limit * 3).await;
    let first = rx.recv().await.unwrap();
    budget.release(first.cost());
    read_ack(&mut client, "1").await;
    read_ack(&mut client, "2").await;
    client.write_all(&third[5..]).await.unwrap();
    let second = rx.recv().await.unwrap();
    budget.release(second.cost());
    read_ack(&mut client, "3").await;
    assert_eq!(receive(&mut rx, 1).await, ["ABCDEFGHIJ"]);
    drop(client);
    finished(task).await.unwrap();
}

// ---- Stack traces ---------------------------------------------------------------------

/// A forward sender whose pipeline joins stack traces after `flush_ms`.
fn multiline_pipeline(flush_ms: u64) -> (EventSender, mpsc::Receiver<Batch>) {
    use crate::pipeline::multiline::{Multiline, MultilineConfig};
    let fields = ParseFields {
        timestamp: "timestamp".into(),
        level: "level".into(),
        timing: None,
    };
    let config = MultilineConfig {
        enabled: true,
        flush_ms,
        ..MultilineConfig::default()
    };
    let processor = Processor::new(fields, None, 256 * 1024)
        .with_multiline(Arc::new(Multiline::new(&config).unwrap()));
    let budget = MemoryBudget::new(MAX);
    let (senders, rx) = crate::pipeline::channel(processor, budget, Arc::new(Metrics::default()));
    (senders.for_source(SourceKind::Forward), rx)
}

/// A FireLens record of `container`'s `origin` output.
fn firelens(container: &str, origin: &str, line: &str, chunk: &str) -> Vec<u8> {
    let fields = [
        ("container_name", container),
        ("source", origin),
        ("log", line),
    ];
    message(Time::Int(7), &fields, Some(chunk))
}

async fn assert_no_ack_for<R: AsyncRead + Unpin>(reader: &mut R, wait: Duration, why: &str) {
    let mut early = vec![0; 1];
    assert!(
        tokio::time::timeout(wait, reader.read(&mut early))
            .await
            .is_err(),
        "{why}"
    );
}

#[tokio::test]
async fn a_trace_is_joined_per_container_and_origin_and_its_frames_acks_wait_for_it() {
    let (out, mut rx) = multiline_pipeline(400);
    let metrics_out = out.clone();
    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &CancellationToken::new());
    let frames = [
        firelens(
            "api",
            "stderr",
            "java.lang.IllegalStateException: boom",
            "c1",
        ),
        firelens("api", "stdout", "GET /api/users/42 200", "c2"),
        firelens("web", "stderr", "\tat App.main(App.java:9)", "c3"),
        firelens("api", "stderr", "\tat App.main(App.java:3)", "c4"),
    ];
    for frame in &frames {
        client.write_all(frame).await.unwrap();
    }
    // Ordinary lines pass at once, the trace waits for flush_ms, and so do the acks of the
    // frames that came with its lines.
    assert_eq!(
        receive(&mut rx, 2).await,
        ["GET /api/users/42 200", "\tat App.main(App.java:9)"]
    );
    assert_no_ack_for(
        &mut client,
        Duration::from_millis(150),
        "no ack while a line is held",
    )
    .await;
    for chunk in ["c1", "c2", "c3", "c4"] {
        read_ack(&mut client, chunk).await;
    }
    assert_eq!(
        receive(&mut rx, 1).await,
        ["java.lang.IllegalStateException: boom\n\tat App.main(App.java:3)"]
    );
    let text = metrics_out
        .metrics()
        .render(crate::metrics::BufferUsage::default());
    assert!(text.contains("agent_multiline_traces_joined_total{source=\"forward\"} 1\n"));
    drop(client);
    finished(task).await.unwrap();
}

#[tokio::test]
async fn a_trace_held_at_shutdown_is_sent_and_then_acked() {
    let (out, mut rx) = multiline_pipeline(60_000);
    let shutdown = CancellationToken::new();
    let (mut client, task) = connect(limits(IDLE_TIMEOUT), out, &shutdown);
    client
        .write_all(&firelens(
            "api",
            "stderr",
            "Traceback (most recent call last):",
            "c1",
        ))
        .await
        .unwrap();
    client
        .write_all(&firelens(
            "api",
            "stderr",
            "  File \"app.py\", line 1, in <module>",
            "c2",
        ))
        .await
        .unwrap();
    assert_no_ack_for(&mut client, Duration::from_millis(150), "held, not acked").await;
    shutdown.cancel();
    read_ack(&mut client, "c1").await;
    read_ack(&mut client, "c2").await;
    assert_eq!(
        receive(&mut rx, 1).await,
        ["Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>"]
    );
    finished(task).await.unwrap();
}

//! The PutLogEvents request body, written once per batch (awsJson1.1:
//! `{"logGroupName":…,"logStreamName":…,"logEvents":[{"timestamp":…,"message":…},…]}`).
//!
//! The SDK would escape every message byte by byte (17% of the agent's CPU on W1) and, since
//! it consumes its input, each attempt would send a copy of every message. Here the body is
//! escaped once, copying the runs between the bytes that need escaping, and every attempt
//! sends the same `Bytes`; the SDK still signs it (SigV4), resolves the endpoint and applies
//! the timeouts.

use bytes::Bytes;

use crate::pipeline::event::Event;

/// Bytes of the body besides the escaped messages: the envelope, and per event the
/// `{"timestamp":…,"message":""}` around each message.
const PER_EVENT_BYTES: usize = 48;

/// The body of one PutLogEvents call.
pub fn put_log_events_body(group: &str, stream: &str, events: &[Event]) -> Bytes {
    let messages: usize = events.iter().map(|e| e.message.len()).sum();
    // JSON messages grow by about a tenth when their quotes are escaped: room for an
    // eighth more, so a typical body is written without reallocating (and copying) it.
    let mut out = Vec::with_capacity(
        64 + group.len() + stream.len() + messages + messages / 8 + events.len() * PER_EVENT_BYTES,
    );
    out.extend_from_slice(b"{\"logGroupName\":");
    write_json_string(&mut out, group);
    out.extend_from_slice(b",\"logStreamName\":");
    write_json_string(&mut out, stream);
    out.extend_from_slice(b",\"logEvents\":[");
    let mut digits = itoa::Buffer::new();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"timestamp\":");
        out.extend_from_slice(digits.format(event.time_ms).as_bytes());
        out.extend_from_slice(b",\"message\":");
        write_json_string(&mut out, &event.message);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// What each byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, else `\` and
/// that letter (serde_json's choice of escapes, so bodies compare byte for byte).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` as a quoted JSON string.
pub fn write_json_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    let mut start = 0;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    // Eight bytes at a time: the mask marks exactly the bytes to escape, so a word is
    // handled in one step, clean or not, and only its marked bytes are visited.
    for word in words.by_ref() {
        let mut mask = escape_mask(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        while mask != 0 {
            let i = at + (mask.trailing_zeros() / 8) as usize;
            out.extend_from_slice(&bytes[start..i]);
            push_escape(out, bytes[i], ESCAPE[bytes[i] as usize]);
            start = i + 1;
            mask &= mask - 1;
        }
        at += 8;
    }
    for (i, &byte) in words.remainder().iter().enumerate() {
        let escape = ESCAPE[byte as usize];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..at + i]);
            push_escape(out, byte, escape);
            start = at + i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes the escape of `byte` (`escape` is its [`ESCAPE`] entry, not 0).
fn push_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if escape == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(byte >> 4) as usize],
            HEX[(byte & 0xf) as usize],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

/// The high bit of each byte of `word` that is a control byte (< 0x20), `"` or `\\`, and
/// no other bit (exact SWAR: adding 0x7f to the low seven bits of a byte carries into its
/// high bit unless they were all zero, so no borrow leaks from one byte into the next).
fn escape_mask(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let zero = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
    // Below 0x20: the low seven bits plus 0x60 stay under 0x80 and the high bit is clear.
    let control = !(((word & LOW7) + ONES * 0x60) | word) & HIGH;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(time_ms: i64, message: &str) -> Event {
        Event {
            time_ms,
            message: message.into(),
            level: None,
            container: None,
            request_id: None,
            ack: None,
        }
    }

    #[test]
    fn the_body_is_the_json_the_sdk_would_send() {
        let events = [event(1, "plain"), event(-2, "q\"b\\s\u{1}\n\té💥")];
        let body = put_log_events_body("/g", "s/1", &events);
        let expected = serde_json::json!({
            "logGroupName": "/g",
            "logStreamName": "s/1",
            "logEvents": [
                {"timestamp": 1, "message": "plain"},
                {"timestamp": -2, "message": "q\"b\\s\u{1}\n\té💥"},
            ],
        });
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    proptest! {
        #[test]
        fn strings_escape_exactly_as_serde_json(text in ".*", bytes in proptest::collection::vec(0u8..0x80, 0..64)) {
            let ascii = String::from_utf8(bytes).unwrap();
            for text in [text, ascii] {
                let mut out = Vec::new();
                write_json_string(&mut out, &text);
                prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&text).unwrap());
            }
        }
    }
}

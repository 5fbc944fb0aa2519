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
    let longest = events.iter().map(|e| e.message.len()).max().unwrap_or(0);
    // JSON messages grow by about a tenth when their quotes are escaped: room for an
    // eighth more, and for the escaper's working room after the last one, so a typical
    // body is written without reallocating (and copying) it.
    let mut out = Vec::with_capacity(
        64 + 2 * (group.len() + stream.len())
            + messages
            + messages / 8
            + 2 * longest
            + events.len() * PER_EVENT_BYTES,
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

/// Bytes handled at once.
const WORD: usize = 8;

/// Appends `text` as a quoted JSON string.
///
/// Whole words are stored and the write position advanced by what counts, so a clean word
/// is one eight-byte store and an escape costs a few stores, never a call to copy a short
/// run. The room for that is made first: two bytes per input byte (a quote or backslash
/// doubles), the quotes and a word of slack; a control byte (six) grows it as it comes.
pub fn write_json_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut o = out.len();
    out.resize(o + 2 * bytes.len() + 2 + WORD, 0);
    out[o] = b'"';
    o += 1;
    let mut words = bytes.chunks_exact(WORD);
    for word in words.by_ref() {
        let value = u64::from_le_bytes(word.try_into().expect("a word"));
        out[o..o + WORD].copy_from_slice(word);
        let mut mask = escape_mask(value);
        if mask == 0 {
            o += WORD;
            continue;
        }
        // Bytes before `next` are in place; the rest of the word is stored from `o` on.
        let mut next = 0;
        while mask != 0 {
            let k = (mask.trailing_zeros() / 8) as usize;
            o += k - next;
            let byte = (value >> (8 * k)) as u8;
            if byte >= 0x20 {
                // `"` or `\\` (the only marked bytes that are not control bytes): no table.
                out[o] = b'\\';
                out[o + 1] = byte;
                o += 2;
            } else {
                o = write_escape(out, o, byte);
            }
            next = k + 1;
            let rest = value.checked_shr(8 * next as u32).unwrap_or(0);
            out[o..o + WORD].copy_from_slice(&rest.to_le_bytes());
            mask &= mask - 1;
        }
        o += WORD - next;
    }
    for &byte in words.remainder() {
        if ESCAPE[byte as usize] == 0 {
            out[o] = byte;
            o += 1;
        } else {
            o = write_escape(out, o, byte);
        }
    }
    out[o] = b'"';
    out.truncate(o + 1);
}

/// Writes the escape of `byte` at `o`; returns the position after it.
fn write_escape(out: &mut Vec<u8>, o: usize, byte: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let escape = ESCAPE[byte as usize];
    if escape == b'u' {
        // Six bytes where two were planned.
        out.resize(out.len() + 4, 0);
        out[o..o + 6].copy_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(byte >> 4) as usize],
            HEX[(byte & 0xf) as usize],
        ]);
        o + 6
    } else {
        out[o] = b'\\';
        out[o + 1] = escape;
        o + 2
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

    #[test]
    fn every_escape_at_every_place_of_a_word() {
        for len in 0..24 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é'] {
                    for dense in [false, true] {
                        let text: String = (0..len)
                            .map(|i| {
                                if i == at || (dense && i % 3 == 0) {
                                    special
                                } else {
                                    'a'
                                }
                            })
                            .collect();
                        let mut out = b"prefix".to_vec();
                        write_json_string(&mut out, &text);
                        let expected = format!("prefix{}", serde_json::to_string(&text).unwrap());
                        assert_eq!(String::from_utf8(out).unwrap(), expected);
                    }
                }
            }
        }
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

//! The on-disk record: `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`.
//!
//! The payload is one accepted batch: `[event count: u32]`, then per event
//! `[time_ms: i64][level: u8][container: u16 len + bytes][request id: u16 len + bytes]
//! [message: u32 len + bytes]`, all little-endian. Decoding checks every length against the
//! payload, so a damaged record is refused, never trusted.

use std::sync::Arc;

use crate::pipeline::event::{Event, Level};

/// Bytes before the payload.
pub const HEADER_LEN: usize = 8;

/// Largest payload a reader believes: a longer length field means a damaged record.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 20;

/// Smallest payload: the event count.
pub const MIN_PAYLOAD_BYTES: usize = 4;

/// Bytes `events` take on disk, header included.
pub fn encoded_len(events: &[Event]) -> usize {
    HEADER_LEN
        + 4
        + events
            .iter()
            .map(|e| {
                8 + 1
                    + 2
                    + short(e.container.as_deref()).len()
                    + 2
                    + short(e.request_id.as_deref()).len()
                    + 4
                    + e.message.len()
            })
            .sum::<usize>()
}

/// Appends one record holding `events` to `out`.
pub fn encode(events: &[Event], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for event in events {
        out.extend_from_slice(&event.time_ms.to_le_bytes());
        out.push(event.level.map_or(0, level_code));
        for text in [
            short(event.container.as_deref()),
            short(event.request_id.as_deref()),
        ] {
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&(event.message.len() as u32).to_le_bytes());
        out.extend_from_slice(event.message.as_bytes());
    }
    let payload = &out[start + HEADER_LEN..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

/// Reads a record header: the payload length and its checksum.
pub fn header(bytes: &[u8; HEADER_LEN]) -> (usize, u32) {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (len, crc)
}

/// Whether `payload` matches the checksum from its header.
pub fn checksum_ok(payload: &[u8], crc: u32) -> bool {
    crc32fast::hash(payload) == crc
}

/// The number of events a payload says it holds (its first four bytes).
pub fn event_count(payload: &[u8]) -> u64 {
    payload
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
}

/// The events of a checksummed payload; `None` when a length runs past the end or a text is
/// not UTF-8 (a damaged record that happened to pass the checksum, or a foreign file).
pub fn decode(payload: &[u8]) -> Option<Vec<Event>> {
    let mut input = Cursor(payload);
    let count = input.u32()? as usize;
    // Each event takes at least 17 bytes: refuse counts the payload cannot hold.
    if count > payload.len() / 17 {
        return None;
    }
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let time_ms = i64::from_le_bytes(input.take(8)?.try_into().ok()?);
        let level = level_from_code(input.take(1)?[0]);
        let container = input.text_u16()?;
        let request_id = input.text_u16()?;
        let len = input.u32()? as usize;
        let message = std::str::from_utf8(input.take(len)?).ok()?.to_owned();
        events.push(Event {
            time_ms,
            message,
            level,
            container: (!container.is_empty()).then(|| Arc::from(container)),
            request_id: (!request_id.is_empty()).then(|| Box::from(request_id)),
            ack: None,
        });
    }
    input.0.is_empty().then_some(events)
}

/// The first offset in `bytes` where a whole record starts: a plausible length that fits,
/// a matching CRC-32 and a payload that decodes. Used to resynchronise after damage.
pub fn find_record(bytes: &[u8]) -> Option<usize> {
    let last = bytes.len().checked_sub(HEADER_LEN + MIN_PAYLOAD_BYTES)?;
    (0..=last).find(|&at| {
        let (len, crc) = header(bytes[at..at + HEADER_LEN].try_into().unwrap_or(&[0; 8]));
        let start = at + HEADER_LEN;
        (MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&len)
            && len <= bytes.len() - start
            && checksum_ok(&bytes[start..start + len], crc)
            && decode(&bytes[start..start + len]).is_some()
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn text_u16(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// Container names and request ids longer than a u16 length are not kept (neither is
/// meaningful at that size).
fn short(text: Option<&str>) -> &str {
    text.filter(|t| t.len() <= usize::from(u16::MAX))
        .unwrap_or("")
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::Trace => 1,
        Level::Debug => 2,
        Level::Info => 3,
        Level::Warn => 4,
        Level::Error => 5,
        Level::Fatal => 6,
    }
}

fn level_from_code(code: u8) -> Option<Level> {
    Some(match code {
        1 => Level::Trace,
        2 => Level::Debug,
        3 => Level::Info,
        4 => Level::Warn,
        5 => Level::Error,
        6 => Level::Fatal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        vec![
            Event {
                time_ms: -5,
                message: "plain é".into(),
                level: None,
                container: None,
                request_id: None,
                ack: None,
            },
            Event {
                time_ms: 1_700_000_000_000,
                message: r#"{"level":"error"}"#.into(),
                level: Some(Level::Error),
                container: Some(Arc::from("api")),
                request_id: Some(Box::from("r-1")),
                ack: None,
            },
        ]
    }

    #[test]
    fn round_trip() {
        let events = events();
        let mut out = Vec::new();
        encode(&events, &mut out);
        assert_eq!(out.len(), encoded_len(&events));
        let (len, crc) = header(out[..HEADER_LEN].try_into().unwrap());
        let payload = &out[HEADER_LEN..];
        assert_eq!(len, payload.len());
        assert!(checksum_ok(payload, crc));
        assert_eq!(event_count(payload), 2);
        assert_eq!(decode(payload).unwrap(), events);
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum_and_cut_payloads_do_not_decode() {
        let mut out = Vec::new();
        encode(&events(), &mut out);
        let (_, crc) = header(out[..HEADER_LEN].try_into().unwrap());
        for i in HEADER_LEN..out.len() {
            let mut damaged = out.clone();
            damaged[i] ^= 0x10;
            assert!(!checksum_ok(&damaged[HEADER_LEN..], crc), "byte {i}");
        }
        for cut in 0..out.len() - HEADER_LEN {
            assert!(
                decode(&out[HEADER_LEN..HEADER_LEN + cut]).is_none(),
                "{cut}"
            );
        }
    }
}

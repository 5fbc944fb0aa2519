//! The envelope (<https://develop.sentry.dev/sdk/envelopes/>), framed by sentry-types'
//! `Envelope`: a header line (`event_id`, `sent_at`, `sdk`), then the event item's header
//! line with its exact `length`, and the payload. Gzipped for the wire.

use std::io::Write;
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;
use sentry_types::protocol::v7::{Envelope, EnvelopeHeaders};

use super::event::{EncodeError, SentryEvent, sdk_info};

/// `Content-Type` of an envelope.
pub(crate) const CONTENT_TYPE: &str = "application/x-sentry-envelope";

/// One event's envelope, `sent_at` in its header.
pub(crate) fn event_envelope(
    event: SentryEvent,
    sent_at: SystemTime,
) -> Result<Vec<u8>, EncodeError> {
    let headers = EnvelopeHeaders::new()
        .with_event_id(event.event_id)
        .with_sdk(sdk_info())
        .with_sent_at(sent_at);
    let mut envelope = Envelope::new().with_headers(headers);
    envelope.add_item(event);
    let mut out = Vec::with_capacity(1024);
    envelope
        .to_writer(&mut out)
        .map_err(|e| EncodeError::Invalid(e.to_string()))?;
    Ok(out)
}

/// `bytes` gzipped (the body is sent with `Content-Encoding: gzip`).
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::{Duration, UNIX_EPOCH};

    use sentry_types::protocol::v7::Uuid;

    use super::*;

    #[test]
    fn framing_has_exact_lengths_and_survives_gzip() {
        let id = Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap();
        let event = SentryEvent {
            event_id: id,
            message: Some("line\nbreak \u{e9}".into()),
            timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            ..SentryEvent::default()
        };
        let payload = serde_json::to_vec(&event).unwrap();
        let sent_at = UNIX_EPOCH + Duration::from_millis(1_704_164_645_678);
        let envelope = event_envelope(event, sent_at).unwrap();
        let text = std::str::from_utf8(&envelope).unwrap();
        let mut lines = text.splitn(3, '\n');
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        // The header's id is a hyphenated UUID, the event's the 32 hex digits: one id.
        let header_id: Uuid = header["event_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(header_id, id);
        assert_eq!(header["sent_at"], "2024-01-02T03:04:05.678Z");
        assert_eq!(header["sdk"]["name"], super::super::SDK_NAME);
        let item: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"], payload.len());
        let rest = lines.next().unwrap().as_bytes();
        assert_eq!(&rest[..payload.len()], &payload[..]);
        assert_eq!(&rest[payload.len()..], b"\n");
        let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(event["event_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(event["timestamp"], 1_700_000_000.123);

        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&envelope)[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, envelope);
    }
}

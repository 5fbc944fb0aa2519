//! The envelope framing (<https://develop.sentry.dev/sdk/envelopes/>): a header line, then
//! per item a header line with its exact `length` and the payload. Gzipped for the wire.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;

/// `Content-Type` of an envelope.
pub(crate) const CONTENT_TYPE: &str = "application/x-sentry-envelope";

/// One event envelope: `{"event_id","sent_at","sdk"}\n{"type":"event","length":N,..}\n<payload>\n`.
pub(crate) fn event_envelope(event_id: &str, sent_at: &str, payload: &[u8]) -> Vec<u8> {
    let header = json!({
        "event_id": event_id,
        "sent_at": sent_at,
        "sdk": { "name": super::event::SDK_NAME, "version": crate::VERSION },
    });
    let item = json!({
        "type": "event",
        "length": payload.len(),
        "content_type": "application/json",
    });
    let mut out = Vec::with_capacity(payload.len() + 256);
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &header);
    out.push(b'\n');
    let _ = serde_json::to_writer(&mut out, &item);
    out.push(b'\n');
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
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

    use super::*;

    #[test]
    fn framing_has_exact_lengths_and_survives_gzip() {
        let payload =
            br#"{"event_id":"0123456789abcdef0123456789abcdef","message":"line\nbreak \u00e9"}"#;
        let envelope = event_envelope(
            "0123456789abcdef0123456789abcdef",
            "2024-01-02T03:04:05.678Z",
            payload,
        );
        let text = std::str::from_utf8(&envelope).unwrap();
        let mut lines = text.splitn(3, '\n');
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["event_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(header["sent_at"], "2024-01-02T03:04:05.678Z");
        let item: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"], payload.len());
        let rest = lines.next().unwrap().as_bytes();
        assert_eq!(&rest[..payload.len()], payload);
        assert_eq!(&rest[payload.len()..], b"\n");

        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&envelope)[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, envelope);
    }
}

//! Counts what an OTLP protobuf export request would become before prost materialises it.
//! An empty `LogRecord` is 2 bytes on the wire and a ~200-byte struct once decoded, so a
//! 4 MB body of them is 2M records and ~400 MB: prost would allocate that before any limit
//! applied. The walk reads the wire format (varint keys, length-delimited fields) along
//! the request's schema (`schema.rs`), allocates nothing, and adds up what decoding would
//! hold: each element of a repeated message field (its struct), each string and bytes
//! field (its length), each repeated scalar (8 bytes). It stops as soon as that passes the
//! limit. Malformed wire data (truncated, a bad varint or wire type, field number 0, a
//! stray end-group, nesting past prost's own limit) is refused without decoding; whatever
//! prost decodes, the walk accepts and counts the same.

use super::schema::{self, Counted, Field, Schema};

/// Nesting deeper than this is refused. Above prost's own recursion limit (100), so the
/// walk never refuses what prost decodes; prost refuses the rest itself.
const MAX_DEPTH: u32 = 128;

/// What the allocator adds to each heap allocation (header and rounding), roughly.
const ALLOC_OVERHEAD: u64 = 16;

/// Bytes of a `String` / `Vec<u8>` held in a `Vec` (pointer, capacity, length).
const STRING_SIZE: u64 = 24;

/// Which export request a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `ExportLogsServiceRequest`.
    Logs,
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportMetricsServiceRequest`.
    Metrics,
}

impl Signal {
    fn schema(self) -> &'static Schema {
        match self {
            Self::Logs => &schema::EXPORT_LOGS,
            Self::Traces => &schema::EXPORT_TRACES,
            Self::Metrics => &schema::EXPORT_METRICS,
        }
    }
}

/// What a request holds, and what it would take once decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `LogRecord`s.
    pub log_records: u64,
    /// `Span`s.
    pub spans: u64,
    /// `Span.Event`s.
    pub span_events: u64,
    /// `Span.Link`s.
    pub span_links: u64,
    /// Data points of every metric kind.
    pub data_points: u64,
    /// `KeyValue`s anywhere (resource, scope, record, span, point, nested maps).
    pub attributes: u64,
    /// Estimated bytes of the decoded request: structs, strings, repeated scalars, plus
    /// [`ALLOC_OVERHEAD`] per heap allocation (a `Vec`'s spare capacity is not counted).
    pub bytes: u64,
}

/// Why a request is refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not valid protobuf (prost would fail on it too).
    #[error("invalid OTLP protobuf: {0}")]
    Malformed(&'static str),
    /// Decoded, it would take more than `limit` bytes (`counts` so far: the walk stops there).
    #[error(
        "decoded, the request would take more than {limit} bytes ({} log records, {} spans, \
         {} data points, {} attributes counted by then)",
        counts.log_records, counts.spans, counts.data_points, counts.attributes
    )]
    TooLarge {
        /// The limit passed.
        limit: u64,
        /// What was counted up to there.
        counts: Counts,
    },
}

impl Refusal {
    /// The metric label (`agent_input_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "invalid_protobuf",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// Walks `message` as `signal`'s export request. `Ok` with its counts when decoding it
/// would take at most `limit` bytes.
pub fn precount(signal: Signal, message: &[u8], limit: u64) -> Result<Counts, Refusal> {
    let mut walk = Walk {
        counts: Counts::default(),
        limit,
    };
    walk.message(signal.schema(), message, 0)?;
    Ok(walk.counts)
}

/// One varint off the front of `buf` (at most 10 bytes, the 10th at most 1, as prost reads).
fn varint(buf: &mut &[u8]) -> Result<u64, Refusal> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            break;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(Refusal::Malformed(if buf.len() < 10 {
        "truncated varint"
    } else {
        "invalid varint"
    }))
}

/// The next `len` bytes of `buf`.
fn take<'a>(buf: &mut &'a [u8], len: u64) -> Result<&'a [u8], Refusal> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > buf.len() {
        return Err(Refusal::Malformed("field runs past the end of its message"));
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// A field key: its number and wire type, checked as prost checks them.
fn key(buf: &mut &[u8]) -> Result<(u64, u8), Refusal> {
    let key = varint(buf)?;
    if key > u64::from(u32::MAX) {
        return Err(Refusal::Malformed("invalid field key"));
    }
    if key >> 3 == 0 {
        return Err(Refusal::Malformed("field number 0"));
    }
    Ok((key >> 3, (key & 7) as u8))
}

#[derive(Debug)]
struct Walk {
    counts: Counts,
    limit: u64,
}

impl Walk {
    fn add(&mut self, bytes: u64) -> Result<(), Refusal> {
        self.counts.bytes = self.counts.bytes.saturating_add(bytes);
        if self.counts.bytes > self.limit {
            return Err(Refusal::TooLarge {
                limit: self.limit,
                counts: self.counts,
            });
        }
        Ok(())
    }

    /// Every field of one message of type `schema`.
    fn message(&mut self, schema: &Schema, mut buf: &[u8], depth: u32) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::Malformed("messages nested too deep"));
        }
        while !buf.is_empty() {
            let (number, wire_type) = key(&mut buf)?;
            let field = schema.field(number);
            match wire_type {
                0 => {
                    varint(&mut buf)?;
                    self.unpacked_scalar(field)?;
                }
                1 => {
                    take(&mut buf, 8)?;
                    self.unpacked_scalar(field)?;
                }
                2 => {
                    let len = varint(&mut buf)?;
                    let body = take(&mut buf, len)?;
                    if let Some(field) = field {
                        self.delimited(field, body, depth)?;
                    }
                }
                3 => skip_group(number, &mut buf, depth + 1)?,
                5 => {
                    take(&mut buf, 4)?;
                }
                4 => return Err(Refusal::Malformed("end of a group that was not started")),
                _ => return Err(Refusal::Malformed("invalid wire type")),
            }
        }
        Ok(())
    }

    /// A repeated scalar sent one element per field (not packed): 8 bytes each.
    fn unpacked_scalar(&mut self, field: Option<Field>) -> Result<(), Refusal> {
        match field {
            Some(Field::Fixed64s | Field::Varints) => self.add(8),
            _ => Ok(()),
        }
    }

    /// A length-delimited field this schema knows.
    fn delimited(&mut self, field: Field, body: &[u8], depth: u32) -> Result<(), Refusal> {
        match field {
            Field::Repeated(inner) => {
                self.count(inner.counted);
                self.add(inner.size as u64)?;
                self.message(inner, body, depth + 1)
            }
            Field::Single(inner) => self.message(inner, body, depth + 1),
            Field::Text if body.is_empty() => Ok(()),
            Field::Text => self.add(body.len() as u64 + ALLOC_OVERHEAD),
            Field::RepeatedText => self.add(STRING_SIZE + body.len() as u64 + ALLOC_OVERHEAD),
            // Packed: 8 bytes on the wire per element.
            Field::Fixed64s => self.add(body.len() as u64),
            // Packed varints: one element per byte below 0x80 (its last).
            Field::Varints => {
                let elements = body.iter().filter(|b| **b < 0x80).count() as u64;
                self.add(elements * 8)
            }
        }
    }

    fn count(&mut self, counted: Counted) {
        let counts = &mut self.counts;
        match counted {
            Counted::LogRecord => counts.log_records += 1,
            Counted::Span => counts.spans += 1,
            Counted::SpanEvent => counts.span_events += 1,
            Counted::SpanLink => counts.span_links += 1,
            Counted::DataPoint => counts.data_points += 1,
            Counted::Attribute => counts.attributes += 1,
            Counted::Other => {}
        }
    }
}

/// Skips a (deprecated) group up to its end-group key with the same number, as prost does
/// for an unknown field: its content allocates nothing.
fn skip_group(number: u64, buf: &mut &[u8], depth: u32) -> Result<(), Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal::Malformed("groups nested too deep"));
    }
    loop {
        if buf.is_empty() {
            return Err(Refusal::Malformed("group without its end"));
        }
        let (inner, wire_type) = key(buf)?;
        match wire_type {
            0 => {
                varint(buf)?;
            }
            1 => {
                take(buf, 8)?;
            }
            2 => {
                let len = varint(buf)?;
                take(buf, len)?;
            }
            3 => skip_group(inner, buf, depth + 1)?,
            4 if inner == number => return Ok(()),
            4 => return Err(Refusal::Malformed("group ended by another field's end")),
            5 => {
                take(buf, 4)?;
            }
            _ => return Err(Refusal::Malformed("invalid wire type")),
        }
    }
}

#[cfg(test)]
mod tests;

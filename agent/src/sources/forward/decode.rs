//! Fluent Forward frames → records: a pure MessagePack decoder, no I/O.
//!
//! Two steps, so that a frame spanning many reads is never decoded twice:
//! [`FrameScanner`] finds where a frame ends in a growing buffer (resumably, skipping string
//! payloads without touching them) and rejects oversize or too-deep frames from their
//! headers, before their bytes are buffered; [`Decoder::decode`] then walks the complete
//! frame and hands each [`Record`] to a callback, borrowing from the frame (or from the
//! inflated payload of a compressed one) so that records cost no allocation of their own.
//!
//! The four modes of the Forward Protocol Specification v1 are accepted: Message
//! `[tag, time, record, option?]`, Forward `[tag, [[time, record], ...], option?]`,
//! PackedForward `[tag, bin|str of concatenated entries, option?]`, and
//! CompressedPackedForward (the same with option `compressed: "gzip"`, one or more gzip
//! members).

use std::io::Read;

use flate2::read::MultiGzDecoder;
use rmp::Marker;

/// Deepest nesting accepted in a frame (the frame's own array counts as one level).
pub const MAX_DEPTH: usize = 64;

/// Event times at or beyond this many ms from the epoch (about 31,700 years either way)
/// are ignored. Bounding them keeps every later time computation far from `i64` overflow.
pub const MAX_TIME_MS: i64 = 1_000_000_000_000_000;

/// Inflate buffers larger than this are freed after their frame instead of kept for reuse.
const KEEP_INFLATE_BYTES: usize = 1024 * 1024;

/// Why a frame was rejected. Any of these closes the connection that sent it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A value ends past the end of the frame or of the packed payload.
    #[error("truncated MessagePack value")]
    Truncated,
    /// The reserved marker 0xc1.
    #[error("invalid MessagePack marker")]
    InvalidMarker,
    /// The frame (or its inflated payload) would exceed the limit.
    #[error("frame larger than {limit} bytes")]
    Oversize {
        /// The configured `max_frame_bytes`.
        limit: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The frame is not an array of 2 to 4 elements.
    #[error("not a forward frame (expected an array of 2 to 4 elements)")]
    NotAFrame,
    /// A value of the wrong type.
    #[error("expected {expected}")]
    Type {
        /// What the protocol wants there.
        expected: &'static str,
    },
    /// The element shapes match none of the four modes.
    #[error("unknown forward mode")]
    UnknownMode,
    /// `compressed` names something other than `gzip` or `text`.
    #[error("unsupported compression")]
    UnsupportedCompression,
    /// The gzip payload does not inflate.
    #[error("invalid gzip payload: {0}")]
    Gzip(#[source] std::io::Error),
}

impl DecodeError {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::InvalidMarker => "invalid_marker",
            Self::Oversize { .. } => "oversize",
            Self::TooDeep => "too_deep",
            Self::NotAFrame => "not_a_frame",
            Self::Type { .. } => "wrong_type",
            Self::UnknownMode => "unknown_mode",
            Self::UnsupportedCompression => "unsupported_compression",
            Self::Gzip(_) => "bad_gzip",
        }
    }
}

fn expected(what: &'static str) -> DecodeError {
    DecodeError::Type { expected: what }
}

/// One MessagePack header. Payload lengths and element counts are not yet validated.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Head {
    Nil,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(usize),
    Bin(usize),
    Ext(i8, usize),
    Array(usize),
    Map(usize),
}

/// Parses the header at the start of `buf` and returns it with its size in bytes;
/// `Ok(None)` when `buf` ends inside it.
fn head(buf: &[u8]) -> Result<Option<(Head, usize)>, DecodeError> {
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    let marker = Marker::from_u8(byte);
    // Width of the big-endian field (value or length) that follows the marker.
    let width = match marker {
        Marker::U8 | Marker::I8 | Marker::Str8 | Marker::Bin8 | Marker::Ext8 => 1,
        Marker::U16 | Marker::I16 | Marker::Str16 | Marker::Bin16 | Marker::Ext16 => 2,
        Marker::Array16 | Marker::Map16 => 2,
        Marker::U32 | Marker::I32 | Marker::F32 | Marker::Str32 | Marker::Bin32 => 4,
        Marker::Ext32 | Marker::Array32 | Marker::Map32 => 4,
        Marker::U64 | Marker::I64 | Marker::F64 => 8,
        _ => 0,
    };
    let Some(field) = buf.get(1..1 + width) else {
        return Ok(None);
    };
    let n = field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let len = 1 + width;
    // Lengths come from at most 32 bits, so they fit usize on every supported target.
    let size = n as usize;
    let ext_type = |at: usize| buf.get(at).map(|&t| t as i8);
    let parsed = match marker {
        Marker::FixPos(v) => (Head::UInt(v.into()), 1),
        Marker::FixNeg(v) => (Head::Int(v.into()), 1),
        Marker::Null => (Head::Nil, 1),
        Marker::True => (Head::Bool(true), 1),
        Marker::False => (Head::Bool(false), 1),
        Marker::Reserved => return Err(DecodeError::InvalidMarker),
        Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => (Head::UInt(n), len),
        Marker::I8 => (Head::Int(i64::from(n as u8 as i8)), len),
        Marker::I16 => (Head::Int(i64::from(n as u16 as i16)), len),
        Marker::I32 => (Head::Int(i64::from(n as u32 as i32)), len),
        Marker::I64 => (Head::Int(n as i64), len),
        Marker::F32 => (Head::Float(f64::from(f32::from_bits(n as u32))), len),
        Marker::F64 => (Head::Float(f64::from_bits(n)), len),
        Marker::FixStr(l) => (Head::Str(l.into()), 1),
        Marker::Str8 | Marker::Str16 | Marker::Str32 => (Head::Str(size), len),
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => (Head::Bin(size), len),
        Marker::FixArray(l) => (Head::Array(l.into()), 1),
        Marker::Array16 | Marker::Array32 => (Head::Array(size), len),
        Marker::FixMap(l) => (Head::Map(l.into()), 1),
        Marker::Map16 | Marker::Map32 => (Head::Map(size), len),
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16 => {
            let payload = match marker {
                Marker::FixExt1 => 1,
                Marker::FixExt2 => 2,
                Marker::FixExt4 => 4,
                Marker::FixExt8 => 8,
                _ => 16,
            };
            let Some(ty) = ext_type(1) else {
                return Ok(None);
            };
            (Head::Ext(ty, payload), 2)
        }
        Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
            let Some(ty) = ext_type(len) else {
                return Ok(None);
            };
            (Head::Ext(ty, size), len + 1)
        }
    };
    Ok(Some(parsed))
}

/// Finds the end of the frame at the start of a buffer that grows between calls.
///
/// The scan resumes where the previous call stopped, so a frame arriving in many reads is
/// walked once. It keeps a stack of the element counts still expected per open container
/// (at most [`MAX_DEPTH`] entries) instead of recursing.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Offset of the next value to scan.
    pos: usize,
    /// Values still expected by each open container, outermost first.
    open: Vec<usize>,
    /// Smallest frame length known to be needed, from the headers seen so far.
    wanted: usize,
}

impl FrameScanner {
    /// A scanner at the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// The length of the complete frame at the start of `buf`, or `None` when more bytes
    /// are needed. `buf` must start with the same bytes as in the previous call (it may
    /// only have grown); after `Some`, the scanner is ready for the next frame.
    pub fn scan(&mut self, buf: &[u8], max_frame: usize) -> Result<Option<usize>, DecodeError> {
        loop {
            let Some((head, head_len)) = head(buf.get(self.pos..).unwrap_or_default())? else {
                self.wanted = self.wanted.max(self.pos + 1);
                return Ok(None);
            };
            if self.pos == 0 && !matches!(head, Head::Array(2..=4)) {
                return Err(DecodeError::NotAFrame);
            }
            let mut end = self.pos + head_len;
            let children = match head {
                Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => {
                    end = end.saturating_add(n);
                    0
                }
                Head::Array(n) => n,
                Head::Map(n) => n.saturating_mul(2),
                _ => 0,
            };
            // Every child takes at least one byte: a count that cannot fit is refused now.
            if end > max_frame || children > max_frame - end {
                return Err(DecodeError::Oversize { limit: max_frame });
            }
            if end > buf.len() {
                self.wanted = self.wanted.max(end);
                return Ok(None);
            }
            self.pos = end;
            if children > 0 {
                if self.open.len() >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                self.open.push(children);
                continue;
            }
            // A value ended: close every container it completes.
            loop {
                match self.open.last_mut() {
                    None => {
                        let len = self.pos;
                        self.reset();
                        return Ok(Some(len));
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }

    /// The smallest total length the current frame is known to need (0 when unknown): a
    /// hint for how much buffer to reserve.
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Forgets the frame in progress.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
        self.wanted = 0;
    }
}

/// A value with its header read: scalars complete, strings as slices, containers as counts
/// whose elements follow.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Nil,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(usize),
    Map(usize),
}

/// A cursor over complete MessagePack bytes: running out of bytes is an error here.
#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn value(&mut self) -> Result<Value<'a>, DecodeError> {
        let (head, len) = head(&self.buf[self.pos..])?.ok_or(DecodeError::Truncated)?;
        self.pos += len;
        Ok(match head {
            Head::Nil => Value::Nil,
            Head::Bool(b) => Value::Bool(b),
            Head::UInt(v) => Value::UInt(v),
            Head::Int(v) => Value::Int(v),
            Head::Float(v) => Value::Float(v),
            Head::Str(n) => Value::Str(self.take(n)?),
            Head::Bin(n) => Value::Bin(self.take(n)?),
            Head::Ext(ty, n) => Value::Ext(ty, self.take(n)?),
            // Counts are checked against the bytes left, so no loop runs on a claimed count.
            Head::Array(n) if n <= self.remaining() => Value::Array(n),
            Head::Map(n) if n.saturating_mul(2) <= self.remaining() => Value::Map(n),
            Head::Array(_) | Head::Map(_) => return Err(DecodeError::Truncated),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// Skips the elements of `value` if it is a container (its header already read).
    fn skip_children(&mut self, value: Value<'a>) -> Result<(), DecodeError> {
        let mut left = match value {
            Value::Array(n) => n,
            Value::Map(n) => n * 2,
            _ => return Ok(()),
        };
        // Iterative: depth does not matter when only skipping.
        while left > 0 {
            left -= 1;
            match self.value()? {
                Value::Array(n) => left += n,
                Value::Map(n) => left += n * 2,
                _ => {}
            }
            if left > self.remaining() {
                return Err(DecodeError::Truncated);
            }
        }
        Ok(())
    }

    /// Reads a whole value, skipping what a container holds.
    fn skip_value(&mut self) -> Result<Value<'a>, DecodeError> {
        let value = self.value()?;
        self.skip_children(value)?;
        Ok(value)
    }

    /// A map key as bytes; `None` (with the key skipped) when it is not a string.
    fn key(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.skip_value()? {
            Value::Str(key) | Value::Bin(key) => Ok(Some(key)),
            _ => Ok(None),
        }
    }
}

/// One event of a frame, borrowing from the frame.
#[derive(Debug, PartialEq)]
pub struct Record<'a> {
    /// Event time in ms since the epoch; `None` when the sender gave nil.
    pub time_ms: Option<i64>,
    /// The `container_name` field (FireLens sets it).
    pub container: Option<&'a [u8]>,
    /// The `source` field: which output of the container wrote it (`stdout`, `stderr`).
    pub origin: Option<&'a [u8]>,
    /// The line to ship.
    pub body: Body<'a>,
    /// Set when the record is one part of a line the runtime split.
    pub partial: Option<Partial<'a>>,
}

/// What a record ships.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The `log` field's exact bytes.
    Log(&'a [u8]),
    /// No `log` field: the record as a JSON object, without the `partial_*` fields.
    Json(Vec<u8>),
}

impl Body<'_> {
    /// The line's bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Self::Log(log) => log.to_vec(),
            Self::Json(json) => json,
        }
    }
}

/// Docker's split-line metadata (`partial_id`, `partial_ordinal`, `partial_last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial<'a> {
    /// Identifies the line the part belongs to.
    pub id: &'a [u8],
    /// Position of the part in the line (1-based from Docker); `None` when absent.
    pub ordinal: Option<u64>,
    /// True on the line's last part.
    pub last: bool,
}

/// Decodes complete frames. Holds the buffer compressed payloads inflate into, so keep one
/// per connection.
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    inflated: Vec<u8>,
}

#[derive(Debug, Default)]
struct Options<'f> {
    chunk: Option<&'f [u8]>,
    gzip: bool,
}

impl Decoder {
    /// A decoder whose inflated payloads may not exceed `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            inflated: Vec::new(),
        }
    }

    /// Decodes one complete frame (as delimited by [`FrameScanner`]), calling `each` for
    /// every record in order, and returns the frame's `chunk` option (the ack to answer).
    ///
    /// On error, `each` may already have been called for the frame's first records: the
    /// caller should discard them along with the frame.
    pub fn decode<'f>(
        &mut self,
        frame: &'f [u8],
        mut each: impl FnMut(Record<'_>),
    ) -> Result<Option<&'f [u8]>, DecodeError> {
        self.decode_bounded(frame, |record| {
            each(record);
            Ok(())
        })
    }

    /// [`decode`](Self::decode) where `each` may refuse a record (the frame then fails with
    /// its error at once): how the connection stops a frame whose records would take more
    /// memory than its bytes (millions of tiny records) before they are all materialised.
    pub fn decode_bounded<'f>(
        &mut self,
        frame: &'f [u8],
        mut each: impl FnMut(Record<'_>) -> Result<(), DecodeError>,
    ) -> Result<Option<&'f [u8]>, DecodeError> {
        let mut r = Reader::new(frame);
        let len = match r.value()? {
            Value::Array(len @ 2..=4) => len,
            _ => return Err(DecodeError::NotAFrame),
        };
        if !matches!(r.value()?, Value::Str(_) | Value::Bin(_)) {
            return Err(expected("a string tag"));
        }
        let options = match r.value()? {
            // Forward: [tag, [[time, record], ...], option?]
            Value::Array(entries) if len <= 3 => {
                for _ in 0..entries {
                    entry(&mut r, &mut each)?;
                }
                options(&mut r, len == 3)?
            }
            // PackedForward and CompressedPackedForward: [tag, entries as bytes, option?]
            Value::Bin(payload) | Value::Str(payload) if len <= 3 => {
                let options = options(&mut r, len == 3)?;
                let payload = if options.gzip {
                    inflate(payload, self.max_frame, &mut self.inflated)?;
                    &self.inflated[..]
                } else {
                    payload
                };
                let mut entries = Reader::new(payload);
                while entries.remaining() > 0 {
                    entry(&mut entries, &mut each)?;
                }
                options
            }
            // Message: [tag, time, record, option?]
            time @ (Value::UInt(_)
            | Value::Int(_)
            | Value::Float(_)
            | Value::Ext(..)
            | Value::Nil)
                if len >= 3 =>
            {
                record(&mut r, time_of(time)?, &mut each)?;
                options(&mut r, len == 4)?
            }
            _ => return Err(DecodeError::UnknownMode),
        };
        if self.inflated.capacity() > KEEP_INFLATE_BYTES {
            self.inflated = Vec::new();
        }
        if r.remaining() > 0 {
            return Err(DecodeError::NotAFrame);
        }
        Ok(options.chunk)
    }
}

/// Inflates one or more concatenated gzip members into `out`, refusing more than `limit`
/// bytes (a gzip bomb is an oversize frame).
fn inflate(payload: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    if payload.is_empty() {
        return Ok(());
    }
    let mut decoder = MultiGzDecoder::new(payload).take(limit as u64 + 1);
    decoder.read_to_end(out).map_err(DecodeError::Gzip)?;
    if out.len() > limit {
        out.clear();
        return Err(DecodeError::Oversize { limit });
    }
    Ok(())
}

/// The option map (`chunk`, `compressed`, `size`); nil or absent means none.
fn options<'f>(r: &mut Reader<'f>, present: bool) -> Result<Options<'f>, DecodeError> {
    let mut options = Options::default();
    if !present {
        return Ok(options);
    }
    let count = match r.value()? {
        Value::Nil => return Ok(options),
        Value::Map(count) => count,
        _ => return Err(expected("an option map")),
    };
    for _ in 0..count {
        let key = r.key()?;
        let value = r.skip_value()?;
        match (key, value) {
            (Some(b"chunk"), Value::Str(chunk) | Value::Bin(chunk)) => options.chunk = Some(chunk),
            (Some(b"chunk"), _) => return Err(expected("a string chunk id")),
            (Some(b"compressed"), Value::Str(b"gzip")) => options.gzip = true,
            (Some(b"compressed"), Value::Str(b"text") | Value::Nil) => options.gzip = false,
            (Some(b"compressed"), _) => return Err(DecodeError::UnsupportedCompression),
            _ => {}
        }
    }
    Ok(options)
}

/// One `[time, record]` entry of Forward or PackedForward mode.
fn entry(
    r: &mut Reader<'_>,
    each: &mut impl FnMut(Record<'_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    if r.value()? != Value::Array(2) {
        return Err(expected("a [time, record] entry"));
    }
    let time = match r.value()? {
        // Fluent Bit 2's [[time, metadata], record]: the metadata is not needed here.
        Value::Array(2) => {
            let time = time_of(r.value()?)?;
            r.skip_value()?;
            time
        }
        other => time_of(other)?,
    };
    record(r, time, each)
}

/// Integer seconds, float seconds, or EventTime (ext 0: u32 seconds, u32 nanoseconds,
/// big-endian) → ms since the epoch. A time [`MAX_TIME_MS`] or more away from the epoch is
/// no time at all (`None`: the received time is used), as in the line parser.
fn time_of(value: Value<'_>) -> Result<Option<i64>, DecodeError> {
    let ms = |ms: f64| (ms.abs() < MAX_TIME_MS as f64).then_some(ms as i64);
    Ok(match value {
        Value::UInt(secs) => ms(secs as f64 * 1000.0),
        Value::Int(secs) => ms(secs as f64 * 1000.0),
        Value::Float(secs) if secs.is_finite() => ms(secs * 1000.0),
        Value::Float(_) | Value::Nil => None,
        Value::Ext(0, &[s0, s1, s2, s3, n0, n1, n2, n3]) => {
            let secs = u32::from_be_bytes([s0, s1, s2, s3]);
            let nanos = u32::from_be_bytes([n0, n1, n2, n3]).min(999_999_999);
            Some(i64::from(secs) * 1000 + i64::from(nanos / 1_000_000))
        }
        _ => return Err(expected("an event time")),
    })
}

/// Reads a record map and calls `each` with what it ships.
fn record(
    r: &mut Reader<'_>,
    time_ms: Option<i64>,
    each: &mut impl FnMut(Record<'_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let start = r.pos;
    let Value::Map(count) = r.value()? else {
        return Err(expected("a record map"));
    };
    let mut log = None;
    let mut container = None;
    let mut origin = None;
    let mut is_partial = false;
    let mut partial_id = None;
    let mut ordinal = None;
    let mut last = false;
    for _ in 0..count {
        let key = r.key()?;
        let value = r.skip_value()?;
        let Some(key) = key else { continue };
        match (key, value) {
            (b"log", Value::Str(v) | Value::Bin(v)) => log = Some(v),
            (b"container_name", Value::Str(v) | Value::Bin(v)) => container = Some(v),
            (b"source", Value::Str(v) | Value::Bin(v)) => origin = Some(v),
            (b"partial_message", v) => {
                is_partial = matches!(v, Value::Str(b"true") | Value::Bool(true))
            }
            (b"partial_id", Value::Str(v) | Value::Bin(v)) => partial_id = Some(v),
            (b"partial_ordinal", v) => ordinal = ordinal_of(v),
            (b"partial_last", v) => last = matches!(v, Value::Str(b"true") | Value::Bool(true)),
            _ => {}
        }
    }
    let map = &r.buf[start..r.pos];
    let partial = match (is_partial, partial_id, log) {
        (true, Some(id), Some(_)) => Some(Partial { id, ordinal, last }),
        _ => None,
    };
    let body = match log {
        Some(log) => Body::Log(log),
        None => {
            let mut json = Vec::with_capacity(map.len() + map.len() / 2);
            write_json(&mut Reader::new(map), &mut json, 1, true)?;
            Body::Json(json)
        }
    };
    each(Record {
        time_ms,
        container,
        origin,
        body,
        partial,
    })
}

fn ordinal_of(value: Value<'_>) -> Option<u64> {
    match value {
        Value::UInt(n) => Some(n),
        Value::Int(n) => u64::try_from(n).ok(),
        Value::Str(text) => std::str::from_utf8(text).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Writes the next value as JSON: bytes as (lossy UTF-8) strings, EventTime as float
/// seconds, other ext values as null. `top` strips the `partial_*` keys of a record map.
fn write_json(
    r: &mut Reader<'_>,
    out: &mut Vec<u8>,
    depth: usize,
    top: bool,
) -> Result<(), DecodeError> {
    use std::io::Write as _;
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    // Writes into a Vec cannot fail.
    match r.value()? {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => json_float(f, out),
        Value::Str(s) | Value::Bin(s) => json_str(s, out),
        Value::Ext(0, &[s0, s1, s2, s3, n0, n1, n2, n3]) => {
            let secs = u32::from_be_bytes([s0, s1, s2, s3]);
            let nanos = u32::from_be_bytes([n0, n1, n2, n3]);
            json_float(f64::from(secs) + f64::from(nanos) / 1e9, out);
        }
        Value::Ext(..) => out.extend_from_slice(b"null"),
        Value::Array(count) => {
            out.push(b'[');
            for i in 0..count {
                if i > 0 {
                    out.push(b',');
                }
                write_json(r, out, depth + 1, false)?;
            }
            out.push(b']');
        }
        Value::Map(count) => {
            out.push(b'{');
            let mut first = true;
            for _ in 0..count {
                let key = match r.value()? {
                    Value::Str(k) | Value::Bin(k) => Key::Bytes(k),
                    Value::UInt(n) => Key::UInt(n),
                    Value::Int(n) => Key::Int(n),
                    other => {
                        // A key JSON cannot express (nil, float, container): drop the pair.
                        r.skip_children(other)?;
                        r.skip_value()?;
                        continue;
                    }
                };
                if top && matches!(key, Key::Bytes(k) if is_partial_key(k)) {
                    r.skip_value()?;
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                match key {
                    Key::Bytes(k) => json_str(k, out),
                    Key::UInt(n) => {
                        let _ = write!(out, "\"{n}\"");
                    }
                    Key::Int(n) => {
                        let _ = write!(out, "\"{n}\"");
                    }
                }
                out.push(b':');
                write_json(r, out, depth + 1, false)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

enum Key<'a> {
    Bytes(&'a [u8]),
    UInt(u64),
    Int(i64),
}

fn is_partial_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"partial_message" | b"partial_id" | b"partial_ordinal" | b"partial_last"
    )
}

fn json_str(bytes: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(bytes);
    let _ = serde_json::to_writer(&mut *out, &*text);
}

fn json_float(value: f64, out: &mut Vec<u8>) {
    // serde_json writes the shortest exact form, and null for NaN and infinities.
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// Appends the msgpack answer `{"ack": chunk}` to `out`.
pub fn encode_ack(chunk: &[u8], out: &mut Vec<u8>) {
    // Writes into a Vec cannot fail, and a chunk came from a frame, so it fits u32.
    let _ = rmp::encode::write_map_len(out, 1);
    let _ = rmp::encode::write_str(out, "ack");
    let _ = rmp::encode::write_str_len(out, chunk.len() as u32);
    out.extend_from_slice(chunk);
}

//! Parsing a line once: if it is a JSON object, find its timestamp and level without
//! building a tree (a borrowed, single-pass visit; the rest of the object is only
//! validated). Anything else is shipped as it is.

use std::fmt;
use std::fmt::Write as _;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::event::Level;
use super::timing::RequestTiming;

/// What the parse found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The line is a JSON object.
    pub is_json: bool,
    /// Its timestamp field, as ms since the epoch, when present and readable.
    pub time_ms: Option<i64>,
    /// Its level field, when present and recognised.
    pub level: Option<Level>,
    /// The request timing of an access-log event: when extraction is on and all four
    /// fields are present.
    pub timing: Option<RequestTiming>,
    /// The request id, when looked for and present as a string.
    pub request_id: Option<Box<str>>,
}

/// Keys of the four fields of an access-log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingFieldNames {
    /// Route template (a string).
    pub route: String,
    /// HTTP method (a string).
    pub method: String,
    /// Status code (a number).
    pub status: String,
    /// Latency in milliseconds (a number).
    pub latency_ms: String,
}

/// Field names to look for.
#[derive(Debug, Clone)]
pub struct ParseFields {
    /// Key of the event time (RFC 3339 string, or epoch milliseconds as a number).
    pub timestamp: String,
    /// Key of the severity.
    pub level: String,
    /// Keys of an access-log event's timing fields; `None` turns extraction off.
    pub timing: Option<TimingFieldNames>,
}

/// Parses `line` (already UTF-8). Never fails: a line that is not a JSON object yields
/// `Parsed::default()`.
pub fn parse(line: &str, fields: &ParseFields) -> Parsed {
    parse_with_request_id(line, fields, None)
}

/// Like [`parse`], also reading the string field `request_id` (when given) into
/// [`Parsed::request_id`].
pub fn parse_with_request_id(line: &str, fields: &ParseFields, request_id: Option<&str>) -> Parsed {
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        return Parsed::default();
    }
    let mut de = serde_json::Deserializer::from_str(trimmed);
    let seed = LineSeed { fields, request_id };
    // Any syntax error means "not JSON": the line is shipped as it is.
    seed.deserialize(&mut de)
        .and_then(|parsed| de.end().map(|()| parsed))
        .unwrap_or_default()
}

struct LineSeed<'f> {
    fields: &'f ParseFields,
    request_id: Option<&'f str>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = Parsed;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut parsed = Parsed {
            is_json: true,
            ..Parsed::default()
        };
        let (mut route, mut method, mut status, mut latency) = (None, None, None, None);
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let key = key.0.as_ref();
            if key == self.fields.timestamp {
                parsed.time_ms = map.next_value::<Scalar<'de>>()?.time_ms();
            } else if key == self.fields.level {
                parsed.level = map.next_value::<Scalar<'de>>()?.level();
            } else if self.request_id == Some(key) {
                parsed.request_id = map
                    .next_value::<Scalar<'de>>()?
                    .text()
                    .filter(|id| id.len() <= super::event::MAX_REQUEST_ID_BYTES)
                    .map(String::into_boxed_str);
            } else if let Some(names) = &self.fields.timing {
                if key == names.route {
                    route = map.next_value::<Scalar<'de>>()?.text();
                } else if key == names.method {
                    method = map.next_value::<Scalar<'de>>()?.text();
                } else if key == names.status {
                    status = map.next_value::<Scalar<'de>>()?.number();
                } else if key == names.latency_ms {
                    latency = map.next_value::<Scalar<'de>>()?.number();
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if let (Some(route), Some(method), Some(status), Some(latency_ms)) =
            (route, method, status, latency)
            && (0.0..=999.0).contains(&status)
        {
            parsed.timing = Some(RequestTiming {
                route,
                method,
                status: status as u16,
                latency_ms,
                count: 1,
            });
        }
        Ok(parsed)
    }
}

/// A key, borrowed when it has no escapes.
struct CowStr<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A string (borrowed when it has no escapes) or a number; anything else, containers
/// included, is skipped. The one value visitor every looked-for field goes through.
enum Scalar<'de> {
    Text(std::borrow::Cow<'de, str>),
    Number(f64),
    Other,
}

impl Scalar<'_> {
    fn text(self) -> Option<String> {
        match self {
            Self::Text(text) => Some(text.into_owned()),
            _ => None,
        }
    }

    fn number(self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(n),
            Self::Text(text) => text.trim().parse().ok(),
            Self::Other => None,
        }
    }

    /// A timestamp: RFC 3339 text or an epoch number; anything else is ignored.
    fn time_ms(self) -> Option<i64> {
        match self {
            Self::Text(text) => parse_rfc3339_ms(&text),
            Self::Number(n) => epoch_to_ms(n),
            Self::Other => None,
        }
    }

    /// A level: recognised text; anything else is ignored.
    fn level(self) -> Option<Level> {
        match self {
            Self::Text(text) => Level::parse(&text),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(v.to_owned().into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Epoch numbers are milliseconds; values below 10^11 (before 1973 in ms, after year 5000 in
/// seconds) are taken as seconds, the other common convention.
fn epoch_to_ms(value: f64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let ms = if value.abs() < 1e11 {
        value * 1000.0
    } else {
        value
    };
    (ms.abs() < 1e15).then_some(ms as i64)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.frac](Z|±HH:MM)` → ms since the epoch. `None` if malformed.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(range)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let minutes = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Nanoseconds since the epoch → `2018-12-13T14:51:00.300Z` (UTC; as many fraction digits
/// as the time needs: 3, 6 or 9).
pub fn rfc3339(unix_nano: u64) -> String {
    let seconds = unix_nano / 1_000_000_000;
    let nanos = unix_nano % 1_000_000_000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let time = seconds % 86_400;
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        time / 3_600,
        time % 3_600 / 60,
        time % 60
    );
    let _ = match nanos {
        n if n % 1_000_000 == 0 => write!(out, ".{:03}Z", n / 1_000_000),
        n if n % 1_000 == 0 => write!(out, ".{:06}Z", n / 1_000),
        n => write!(out, ".{n:09}Z"),
    };
    out
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day) (Howard Hinnant's
/// algorithm, the inverse of the parser's `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> ParseFields {
        ParseFields {
            timestamp: "timestamp".into(),
            level: "level".into(),
            timing: None,
        }
    }

    #[test]
    fn rfc3339_variants() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T01:34:51.144Z"),
            Some(1_795_656_891_144)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T02:34:51.144+01:00"),
            Some(1_795_656_891_144)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-26 01:34:51.1445678Z"),
            Some(1_795_656_891_144)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("9999-12-31T23:59:59Z"),
            Some(253_402_300_799_000)
        );
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-11-26T01:34:51",
            "2026-11-26T01:34:51.Z",
            "2026-11-26T01:34:51Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_line_yields_time_and_level() {
        let line = r#"{"timestamp":"2026-11-26T01:34:51.144Z","level":"ERROR","route":"/x","nested":{"a":[1,2]}}"#;
        let parsed = parse(line, &fields());
        assert_eq!(
            parsed,
            Parsed {
                is_json: true,
                time_ms: Some(1_795_656_891_144),
                level: Some(Level::Error),
                timing: None,
                request_id: None,
            }
        );
    }

    #[test]
    fn epoch_numbers_and_custom_fields() {
        let custom = ParseFields {
            timestamp: "ts".into(),
            level: "severity".into(),
            timing: None,
        };
        assert_eq!(
            parse(r#"{"ts":1795656891144,"severity":"warning"}"#, &custom).time_ms,
            Some(1_795_656_891_144)
        );
        assert_eq!(
            parse(r#"{"ts":1795656891.5}"#, &custom).time_ms,
            Some(1_795_656_891_500)
        );
        assert_eq!(
            parse(r#"{"ts":1795656891144,"severity":"warning"}"#, &custom).level,
            Some(Level::Warn)
        );
    }

    #[test]
    fn non_json_and_broken_json_are_plain_lines() {
        for line in [
            "plain text",
            "{not json",
            r#"{"a":1} trailing"#,
            "[1,2]",
            "",
            r#"{"a":"\u00"}"#,
        ] {
            assert_eq!(parse(line, &fields()), Parsed::default(), "{line}");
        }
    }

    #[test]
    fn access_log_fields_become_a_request_timing() {
        let mut with_timing = fields();
        with_timing.timing = Some(TimingFieldNames {
            route: "route".into(),
            method: "method".into(),
            status: "status".into(),
            latency_ms: "latency_ms".into(),
        });
        let line = r#"{"level":"info","method":"GET","route":"/api/users/{id}","status":404,"latency_ms":1.25,"x":[1]}"#;
        let timing = parse(line, &with_timing).timing.unwrap();
        assert_eq!(
            timing,
            RequestTiming {
                route: "/api/users/{id}".into(),
                method: "GET".into(),
                status: 404,
                latency_ms: 1.25,
                count: 1
            }
        );
        // A status given as text counts; a missing field means no timing.
        assert!(
            parse(
                r#"{"method":"GET","route":"/","status":"200","latency_ms":1}"#,
                &with_timing
            )
            .timing
            .is_some()
        );
        assert!(
            parse(
                r#"{"method":"GET","route":"/","latency_ms":1}"#,
                &with_timing
            )
            .timing
            .is_none()
        );
        assert!(parse(line, &fields()).timing.is_none(), "extraction off");
    }

    #[test]
    fn odd_field_types_are_ignored_not_fatal() {
        let parsed = parse(r#"{"timestamp":{"x":1},"level":42,"k":"v"}"#, &fields());
        assert_eq!(
            parsed,
            Parsed {
                is_json: true,
                time_ms: None,
                level: None,
                timing: None,
                request_id: None,
            }
        );
    }

    #[test]
    fn deep_nesting_is_handled_without_a_crash() {
        // Valid, 100k levels deep: skipped iteratively, so no stack overflow.
        let line = format!(
            "{{\"level\":\"warn\",\"a\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let parsed = parse(&line, &fields());
        assert!(parsed.is_json);
        assert_eq!(parsed.level, Some(Level::Warn));
        // Unbalanced: not JSON, shipped as text.
        assert!(!parse(&format!("{{\"a\":{}", "[".repeat(100_000)), &fields()).is_json);
    }
}

//! Redaction, before anything leaves the sidecar: values of sensitive keys, and values that
//! look like AWS access key ids, bearer tokens or JWTs, become `"[REDACTED]"`.
//!
//! A case-insensitive multi-pattern scan (Aho-Corasick) decides in one pass whether a line
//! can contain anything sensitive; only those lines (rare) are rewritten, so the common
//! line costs one scan and no allocation.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Keys redacted by default (matched case-insensitively, as a substring of the key with
/// `-` and `_` removed: `X-Api-Key`, `db_password` and `accessToken` all match).
pub const DEFAULT_KEYS: &[&str] = &[
    "password",
    "passwd",
    "authorization",
    "cookie",
    "token",
    "secret",
    "apikey",
    "credential",
    "privatekey",
];

/// Value markers that are always checked.
const VALUE_MARKERS: &[&str] = &["AKIA", "ASIA", "bearer", "eyJ"];

/// A compiled redaction policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    keys: Vec<String>,
    /// Finds key words (and their `_`/`-` spellings) and value markers.
    prefilter: AhoCorasick,
}

impl Redactor {
    /// A policy for `keys` (lowercase words; `-`/`_` are ignored when matching).
    pub fn new(keys: &[String]) -> Self {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| normalize(k))
            .filter(|k| !k.is_empty())
            .collect();
        let mut patterns: Vec<String> = VALUE_MARKERS.iter().map(|s| (*s).to_owned()).collect();
        for key in &keys {
            patterns.push(key.clone());
            // The raw text may spell "apikey" as "api_key" or "api-key": one separator at
            // any position (keys are short, so this stays a few hundred literals).
            for split in (1..key.len()).filter(|&at| key.is_char_boundary(at)) {
                for sep in ['_', '-'] {
                    patterns.push(format!("{}{sep}{}", &key[..split], &key[split..]));
                }
            }
        }
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)
            .expect("literal patterns always compile");
        Self { keys, prefilter }
    }

    /// Redacts `line` in place; `is_json` says it parsed as a JSON object. Returns whether
    /// anything changed.
    pub fn redact(&self, line: &mut String, is_json: bool) -> bool {
        if !self.prefilter.is_match(line.as_str()) {
            return false;
        }
        if is_json && let Ok(mut value) = serde_json::from_str::<Value>(line) {
            if self.redact_value(&mut value) {
                *line = value.to_string();
                return true;
            }
            return false;
        }
        self.redact_text(line)
    }

    fn is_sensitive_key(&self, key: &str) -> bool {
        let key = normalize(key);
        self.keys.iter().any(|k| key.contains(k.as_str()))
    }

    fn redact_value(&self, value: &mut Value) -> bool {
        match value {
            Value::Object(map) => {
                let mut changed = false;
                for (key, value) in map.iter_mut() {
                    if self.is_sensitive_key(key)
                        && !value.is_null()
                        && *value != Value::String(REDACTED.into())
                    {
                        *value = Value::String(REDACTED.into());
                        changed = true;
                    } else {
                        changed |= self.redact_value(value);
                    }
                }
                changed
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_value(item) | changed),
            Value::String(text) => redact_patterns(text),
            _ => false,
        }
    }

    /// Plain text: `key=value` / `key: value` pairs of sensitive keys, then value patterns.
    fn redact_text(&self, line: &mut String) -> bool {
        let mut changed = false;
        let mut out = String::with_capacity(line.len());
        let mut last = 0;
        let bytes = line.as_bytes();
        for m in self.prefilter.find_iter(line.as_str()) {
            if m.start() < last
                || VALUE_MARKERS
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(&line[m.start()..m.end()]))
            {
                continue;
            }
            // Skip the rest of the key word, optional quote, then `=` or `:`.
            let mut i = m.end();
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
            {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                i += 1;
            }
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            if i >= bytes.len() || !(bytes[i] == b'=' || bytes[i] == b':') {
                continue;
            }
            i += 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            // `Authorization: Bearer xyz`: keep the scheme, redact the credential.
            for scheme in ["bearer ", "basic ", "token ", "digest "] {
                let end = i + scheme.len();
                if end <= bytes.len() && bytes[i..end].eq_ignore_ascii_case(scheme.as_bytes()) {
                    i = end;
                    break;
                }
            }
            let quote =
                (i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'')).then(|| bytes[i]);
            let start = if quote.is_some() { i + 1 } else { i };
            let mut end = start;
            while end < bytes.len() {
                let c = bytes[end];
                let stop = match quote {
                    Some(q) => c == q,
                    None => {
                        c.is_ascii_whitespace() || matches!(c, b'&' | b',' | b';' | b'"' | b'\'')
                    }
                };
                if stop {
                    break;
                }
                end += 1;
            }
            if end > start {
                out.push_str(&line[last..start]);
                out.push_str(REDACTED);
                last = end;
                changed = true;
            }
        }
        if changed {
            out.push_str(&line[last..]);
            *line = out;
        }
        redact_patterns(line) | changed
    }
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Replaces AWS access key ids, bearer tokens and JWTs inside `text`.
pub fn redact_patterns(text: &mut String) -> bool {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let b = text.as_bytes();
    let word_start = |i: usize| i == 0 || !b[i - 1].is_ascii_alphanumeric();
    let mut i = 0;
    while i + 3 <= b.len() {
        let rest = &b[i..];
        // AWS access key id: AKIA/ASIA + 16 of [A-Z0-9].
        if (rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"))
            && word_start(i)
            && rest.len() >= 20
        {
            let ok = rest[4..20]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            let ends = rest.len() == 20 || !rest[20].is_ascii_alphanumeric();
            if ok && ends {
                spans.push((i, i + 20));
                i += 20;
                continue;
            }
        }
        // Bearer <token>.
        if rest.len() > 7
            && rest[..6].eq_ignore_ascii_case(b"bearer")
            && rest[6] == b' '
            && word_start(i)
        {
            let start = i + 7;
            let mut end = start;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b"-._~+/=".contains(&b[end]))
            {
                end += 1;
            }
            if end > start && &text[start..end] != REDACTED {
                spans.push((start, end));
                i = end;
                continue;
            }
        }
        // JWT: eyJ<header>.<payload>.<signature>
        if rest.starts_with(b"eyJ") && word_start(i) {
            let is_part = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
            let mut end = i;
            let mut dots = 0;
            while end < b.len() && (is_part(b[end]) || (b[end] == b'.' && dots < 2)) {
                if b[end] == b'.' {
                    dots += 1;
                }
                end += 1;
            }
            if dots == 2 && end - i > 10 {
                spans.push((i, end));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if spans.is_empty() {
        return false;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in spans {
        out.push_str(&text[last..start]);
        out.push_str(REDACTED);
        last = end;
    }
    out.push_str(&text[last..]);
    *text = out;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(
            &DEFAULT_KEYS
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        )
    }

    fn redacted(line: &str, is_json: bool) -> String {
        let mut line = line.to_owned();
        redactor().redact(&mut line, is_json);
        line
    }

    #[test]
    fn sensitive_json_keys_at_any_depth() {
        let line = r#"{"msg":"login","user":{"email":"a@b.c","Password":"hunter2"},"headers":{"Authorization":"Basic xyz","X-Api-Key":"k1"},"api_key":"k2","n":1}"#;
        let out: Value = serde_json::from_str(&redacted(line, true)).unwrap();
        assert_eq!(out["user"]["Password"], REDACTED);
        assert_eq!(out["user"]["email"], "a@b.c");
        assert_eq!(out["headers"]["Authorization"], REDACTED);
        assert_eq!(out["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(out["api_key"], REDACTED);
        assert_eq!(out["n"], 1);
    }

    #[test]
    fn key_order_is_preserved() {
        let out = redacted(r#"{"z":1,"token":"t","a":2}"#, true);
        assert_eq!(out, r#"{"z":1,"token":"[REDACTED]","a":2}"#);
    }

    #[test]
    fn value_patterns_inside_json_strings_and_plain_text() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let line = format!(
            r#"{{"msg":"call with AKIAIOSFODNN7EXAMPLE and Bearer abc.def-123 and {jwt}"}}"#
        );
        let out = redacted(&line, true);
        assert!(
            !out.contains("AKIAIOSFODNN7EXAMPLE")
                && !out.contains("abc.def-123")
                && !out.contains(jwt),
            "{out}"
        );
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");

        let plain =
            format!("GET /x Authorization: Bearer abc123 key AKIAIOSFODNN7EXAMPLE jwt={jwt}");
        let out = redacted(&plain, false);
        assert!(
            !out.contains("abc123") && !out.contains("AKIAIOSFODNN7EXAMPLE") && !out.contains(jwt),
            "{out}"
        );
    }

    #[test]
    fn plain_key_value_pairs() {
        assert_eq!(
            redacted("user=bob password=hunter2 next=1", false),
            "user=bob password=[REDACTED] next=1"
        );
        assert_eq!(
            redacted("db_password: 'p w' ok", false),
            "db_password: '[REDACTED]' ok"
        );
        assert_eq!(redacted("api_key=abc&x=1", false), "api_key=[REDACTED]&x=1");
    }

    #[test]
    fn innocent_lines_are_untouched() {
        for line in [
            r#"{"route":"/api/users/{id}","status":200}"#,
            "GET /health 200",
            "AKIA is a prefix",
            "the token bucket refilled",
        ] {
            assert_eq!(redacted(line, line.starts_with('{')), line);
        }
    }

    #[test]
    fn custom_key_list() {
        let r = Redactor::new(&["ssn".to_owned()]);
        let mut line = r#"{"ssn":"123-45-6789","password":"kept"}"#.to_owned();
        assert!(r.redact(&mut line, true));
        assert_eq!(line, r#"{"ssn":"[REDACTED]","password":"kept"}"#);
    }
}

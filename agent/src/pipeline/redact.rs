//! Redaction, before anything leaves the sidecar: values of sensitive keys, and values that
//! look like AWS access key ids, bearer tokens or JWTs, become `"[REDACTED]"`.
//!
//! The same rules apply wherever a secret can hide: JSON keys at any depth, `key=value` and
//! `"key":"value"` text (query strings, form bodies, header lines, escaped JSON) inside
//! plain lines *and* inside JSON string values, JSON text nested in a string, the password
//! of a URL's userinfo (`https://user:pass@host`), `{"name":"Authorization","value":..}`
//! pairs and `["--password", "x"]` argument lists.
//!
//! A case-insensitive multi-pattern scan (Aho-Corasick) decides in one pass whether a line
//! can contain anything sensitive; only those lines (rare) are rewritten, so the common
//! line costs one scan and no allocation. A `://` match alone triggers nothing unless the
//! URL carries a password, so ordinary URLs stay on the fast path.

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

/// The URL marker: a password may sit in the userinfo after it.
const URL_MARKER: &str = "://";

/// How deep JSON text nested inside strings is followed (each level is parsed again).
const MAX_NESTED_JSON: usize = 8;

/// Longest array element taken as a flag naming a secret (`--password`).
const MAX_FLAG_LEN: usize = 40;

/// What a prefilter pattern stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A sensitive key word (or a spelling of it).
    Key,
    /// A value marker (AKIA, bearer, ...): handled by [`redact_patterns`].
    Marker,
    /// `://`: only a URL with a password in its userinfo matters.
    Url,
}

/// A compiled redaction policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    keys: Vec<String>,
    /// Finds key words (and their `_`/`-` spellings), value markers and `://`.
    prefilter: AhoCorasick,
    /// The kind of each prefilter pattern, by pattern id.
    kinds: Vec<Kind>,
    /// The gate before the prefilter: a few short lowercase anchors that every prefilter
    /// match contains, searched (case-sensitively, so with a SIMD packed searcher) in a
    /// lowercased copy of the line. Most lines hold none of them and stop here.
    anchors: AhoCorasick,
}

/// Anchors of a key word: short pieces that every spelling of it (as is, or with one `_`
/// or `-` inserted anywhere) contains one of. Around a middle position `c`: the prefix
/// `key[..=c]` (a separator after it), the suffix `key[c-1..]` (a separator before it), and
/// `key[c-1]`, separator, `key[c]` (a separator at `c`). They are chosen that way, rather
/// than as the key's halves, so that no anchor is a common word: `apikey` gives `apik`,
/// `ikey`, `i_k` and `i-k`, where halves would give `api`, in every `/api/` route.
fn anchors_of(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 2 {
        return vec![key.to_owned()];
    }
    let c = chars.len() / 2;
    let piece = |range: std::ops::Range<usize>| chars[range].iter().collect::<String>();
    let mut anchors = vec![piece(0..c + 1), piece(c - 1..chars.len())];
    for sep in ['_', '-'] {
        anchors.push(format!("{}{sep}{}", chars[c - 1], chars[c]));
    }
    anchors
}

thread_local! {
    /// The lowercased line the anchors are searched in (reused: no allocation per line).
    static LOWERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
        let mut kinds = vec![Kind::Marker; patterns.len()];
        patterns.push(URL_MARKER.to_owned());
        kinds.push(Kind::Url);
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
        kinds.resize(patterns.len(), Kind::Key);
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)
            .expect("literal patterns always compile");
        let mut anchors: Vec<String> = VALUE_MARKERS
            .iter()
            .map(|m| m.to_ascii_lowercase())
            .collect();
        anchors.push(URL_MARKER.to_owned());
        for key in &keys {
            anchors.extend(anchors_of(&key.to_ascii_lowercase()));
        }
        anchors.sort();
        anchors.dedup();
        let anchors = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&anchors)
            .expect("literal patterns always compile");
        Self {
            keys,
            prefilter,
            kinds,
            anchors,
        }
    }

    /// Redacts `line` in place; `is_json` says it parsed as a JSON object. Returns whether
    /// anything changed.
    pub fn redact(&self, line: &mut String, is_json: bool) -> bool {
        if !self.triggered(line) {
            return false;
        }
        if is_json && let Ok(mut value) = serde_json::from_str::<Value>(line) {
            if self.redact_value(&mut value, 0) {
                *line = value.to_string();
                return true;
            }
            return false;
        }
        self.redact_text(line)
    }

    /// Whether `text` holds a key word, a value marker, or a URL with a password: the one
    /// scan every line pays.
    fn triggered(&self, text: &str) -> bool {
        let gated = LOWERED.with(|lowered| {
            let mut lowered = lowered.borrow_mut();
            lowered.clear();
            lowered.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
            let hit = self.anchors.is_match(lowered.as_slice());
            if lowered.capacity() > 1 << 20 {
                // A huge line passed: do not keep its buffer for good.
                *lowered = Vec::new();
            }
            hit
        });
        if !gated {
            return false;
        }
        self.prefilter.find_iter(text).any(|m| {
            self.kinds[m.pattern().as_usize()] != Kind::Url
                || userinfo_password(text.as_bytes(), m.start()).is_some()
        })
    }

    fn is_sensitive_key(&self, key: &str) -> bool {
        let key = normalize(key);
        self.keys.iter().any(|k| key.contains(k.as_str()))
    }

    fn redact_value(&self, value: &mut Value, depth: usize) -> bool {
        match value {
            Value::Object(map) => {
                let mut changed = false;
                // `{"name": "Authorization", "value": "..."}` (HAR headers, OTLP/JSON
                // attributes as `{"key": .., "value": ..}`): the name is data, not a key.
                let named_secret = ["name", "key"].iter().any(|field| {
                    map.get(*field)
                        .and_then(Value::as_str)
                        .is_some_and(|name| self.is_sensitive_key(name))
                });
                for (key, value) in map.iter_mut() {
                    let sensitive = self.is_sensitive_key(key)
                        || (named_secret && matches!(key.as_str(), "value" | "values"));
                    if sensitive {
                        changed |= replace(value);
                    } else {
                        changed |= self.redact_value(value, depth);
                    }
                }
                changed
            }
            Value::Array(items) => {
                let mut changed = false;
                let mut secret_next = false;
                for item in items.iter_mut() {
                    if secret_next && item.is_string() {
                        changed |= replace(item);
                        secret_next = false;
                        continue;
                    }
                    // `["--password", "hunter2"]`: a short flag naming a secret.
                    secret_next = item.as_str().is_some_and(|flag| {
                        flag.len() <= MAX_FLAG_LEN
                            && !flag.contains(['=', ':', ' '])
                            && self.is_sensitive_key(flag.trim_start_matches('-'))
                    });
                    changed |= self.redact_value(item, depth);
                }
                changed
            }
            Value::String(text) => self.redact_string(text, depth),
            _ => false,
        }
    }

    /// A string value: JSON text inside it is redacted as JSON (and written back compact),
    /// anything else as plain text. Strings without a trigger are left alone untouched.
    fn redact_string(&self, text: &mut String, depth: usize) -> bool {
        if !self.triggered(text) {
            return false;
        }
        let inner = text.trim_start();
        if depth < MAX_NESTED_JSON
            && (inner.starts_with('{') || inner.starts_with('['))
            && let Ok(mut nested) = serde_json::from_str::<Value>(text)
        {
            if self.redact_value(&mut nested, depth + 1) {
                *text = nested.to_string();
                return true;
            }
            return false;
        }
        self.redact_text(text)
    }

    /// Plain text: `key=value` / `key: value` / `"key":"value"` pairs of sensitive keys
    /// (quotes may be backslash-escaped, as in JSON text inside a string), URL passwords,
    /// then value patterns.
    fn redact_text(&self, line: &mut String) -> bool {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let bytes = line.as_bytes();
        let mut last = 0;
        for m in self.prefilter.find_iter(line.as_str()) {
            match self.kinds[m.pattern().as_usize()] {
                Kind::Marker => continue,
                Kind::Url => {
                    if let Some(span) = userinfo_password(bytes, m.start()) {
                        spans.push(span);
                    }
                    continue;
                }
                Kind::Key => {}
            }
            if m.start() < last {
                continue;
            }
            let whole_line = normalize(&line[m.start()..m.end()]).contains("cookie");
            if let Some((start, end)) = key_value_span(bytes, m.end(), whole_line) {
                if &line[start..end] != REDACTED {
                    spans.push((start, end));
                }
                last = end;
            }
        }
        let changed = !spans.is_empty() && replace_spans(line, spans);
        redact_patterns(line) | changed
    }
}

/// Replaces a sensitive value (anything but `null` and an already redacted one).
fn replace(value: &mut Value) -> bool {
    if value.is_null() || value.as_str() == Some(REDACTED) {
        return false;
    }
    *value = Value::String(REDACTED.into());
    true
}

fn is_quote(c: u8) -> bool {
    c == b'"' || c == b'\''
}

/// The value after a key word ending at `i`: optional (escaped) closing quote, `=` or `:`,
/// optional auth scheme, then a quoted value or a token. `whole_line` (a `Cookie:` header)
/// takes everything up to the end of the line or the enclosing quote.
fn key_value_span(b: &[u8], mut i: usize, whole_line: bool) -> Option<(usize, usize)> {
    let at = |i: usize| b.get(i).copied();
    while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
        i += 1;
    }
    // A closing quote, escaped any number of times (JSON text nested in strings).
    let mut j = i;
    while at(j) == Some(b'\\') {
        j += 1;
    }
    if at(j).is_some_and(is_quote) {
        i = j + 1;
    }
    while at(i) == Some(b' ') {
        i += 1;
    }
    let separator = at(i).filter(|c| *c == b'=' || *c == b':')?;
    i += 1;
    while at(i) == Some(b' ') {
        i += 1;
    }
    // `Authorization: Bearer xyz`: keep the scheme, redact the credential.
    for scheme in ["bearer ", "basic ", "token ", "digest "] {
        let end = i + scheme.len();
        if end <= b.len() && b[i..end].eq_ignore_ascii_case(scheme.as_bytes()) {
            i = end;
            break;
        }
    }
    let mut j = i;
    while at(j) == Some(b'\\') {
        j += 1;
    }
    let (quote, escaped) = if at(j).is_some_and(is_quote) {
        let escaped = j > i;
        i = j + 1;
        (at(j), escaped)
    } else {
        (None, false)
    };
    let start = i;
    let mut end = start;
    while end < b.len() {
        let c = b[end];
        let stop = match quote {
            // An escaped value ends at its escaped closing quote (any backslash run).
            Some(_) if escaped => c == b'\\',
            Some(q) => {
                if c == b'\\' {
                    end += 2;
                    continue;
                }
                c == q
            }
            None if whole_line && separator == b':' => {
                c == b'\n' || c == b'\r' || c == b'"' || c == b'\\'
            }
            None => {
                c.is_ascii_whitespace() || matches!(c, b'&' | b',' | b';' | b'"' | b'\'' | b'\\')
            }
        };
        if stop {
            break;
        }
        end += 1;
    }
    let end = end.min(b.len());
    (end > start).then_some((start, end))
}

/// For `://` at `marker`: the password of the URL's userinfo (`scheme://user:PASS@host`).
fn userinfo_password(b: &[u8], marker: usize) -> Option<(usize, usize)> {
    let start = marker + URL_MARKER.len();
    let authority_len = b[start..]
        .iter()
        .position(|c| {
            matches!(
                c,
                b'/' | b'?' | b'#' | b'"' | b'\'' | b'\\' | b'<' | b'>' | b'`'
            ) || c.is_ascii_whitespace()
        })
        .unwrap_or(b.len() - start);
    let authority = &b[start..start + authority_len];
    let at = memchr::memrchr(b'@', authority)?;
    let colon = memchr::memchr(b':', &authority[..at])?;
    let (from, to) = (start + colon + 1, start + at);
    (to > from && &b[from..to] != REDACTED.as_bytes()).then_some((from, to))
}

/// Replaces each span (sorted by start; overlaps skipped) with [`REDACTED`].
fn replace_spans(text: &mut String, mut spans: Vec<(usize, usize)>) -> bool {
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut changed = false;
    for (start, end) in spans {
        if start < last || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str(REDACTED);
        last = end;
        changed = true;
    }
    if changed {
        out.push_str(&text[last..]);
        *text = out;
    }
    changed
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
    replace_spans(text, spans)
}

/// The agent's own log output: each line (one JSON event) is redacted before it reaches
/// stderr, so an error quoting a URL with a password, a header or a rejected line cannot
/// leak what the pipeline would have removed. Logs are few; the cost is one scan a line.
#[derive(Debug, Clone)]
pub struct RedactingWriter<W> {
    redactor: std::sync::Arc<Redactor>,
    make: W,
}

impl<W> RedactingWriter<W> {
    /// Redacts with the default keys, then writes to what `make` returns.
    pub fn new(make: W) -> Self {
        let keys: Vec<String> = DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect();
        Self {
            redactor: std::sync::Arc::new(Redactor::new(&keys)),
            make,
        }
    }
}

impl<'a, W> tracing_subscriber::fmt::MakeWriter<'a> for RedactingWriter<W>
where
    W: Fn() -> Box<dyn std::io::Write> + 'static,
{
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> RedactedLine {
        RedactedLine {
            text: Vec::new(),
            redactor: self.redactor.clone(),
            out: (self.make)(),
        }
    }
}

/// One log event, held until the formatter is done with it, then redacted and written.
pub struct RedactedLine {
    text: Vec<u8>,
    redactor: std::sync::Arc<Redactor>,
    out: Box<dyn std::io::Write>,
}

impl std::fmt::Debug for RedactedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactedLine").finish_non_exhaustive()
    }
}

impl std::io::Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let mut line = String::from_utf8_lossy(&self.text).into_owned();
        let newline = line.ends_with('\n');
        if newline {
            line.pop();
        }
        let is_json = line.starts_with('{');
        self.redactor.redact(&mut line, is_json);
        if newline {
            line.push('\n');
        }
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests;

//! Redaction tests: the placements table (issue 14, item 1) and the rules one by one.

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

/// The secret every placement hides.
const S: &str = "hunter2secretXYZ";

/// Regression: secrets inside JSON string values (query strings, nested JSON text, URL
/// userinfo, ...) were shipped unchanged while the same text as a plain line was redacted.
#[test]
fn no_placement_of_a_secret_survives() {
    let placements: Vec<(&str, String)> = vec![
        ("plain key=value", format!("login ok password={S} user=bob")),
        ("plain key: value with spaces", format!("password = {S}")),
        ("JSON key", format!(r#"{{"password":"{S}"}}"#)),
        (
            "JSON key, nested object",
            format!(r#"{{"user":{{"credentials":{{"x":"{S}"}}}}}}"#),
        ),
        (
            "query string in a JSON string",
            format!(r#"{{"msg":"GET /login?password={S}&x=1"}}"#),
        ),
        (
            "access_token query parameter",
            format!(r#"{{"path":"/cb?code=1&access_token={S}"}}"#),
        ),
        (
            "form body in a JSON string",
            format!(r#"{{"body":"user=bob&passwd={S}"}}"#),
        ),
        (
            "JSON text in a JSON string",
            format!(r#"{{"body":"{{\"password\":\"{S}\"}}"}}"#),
        ),
        (
            "JSON text two levels down",
            format!(r#"{{"a":"{{\"b\":\"{{\\\"token\\\":\\\"{S}\\\"}}\"}}"}}"#),
        ),
        (
            "JSON text after a prefix",
            format!(r#"{{"msg":"config: {{\"api_key\": \"{S}\"}}"}}"#),
        ),
        (
            "JSON texts in an array",
            format!(r#"{{"events":["ok","{{\"token\":\"{S}\"}}"]}}"#),
        ),
        (
            "escaped JSON in a plain line",
            format!(r#"body={{\"password\":\"{S}\"}}"#),
        ),
        (
            "single-quoted (repr) in a plain line",
            format!("{{'password': '{S}'}}"),
        ),
        (
            "URL userinfo in a JSON string",
            format!(r#"{{"url":"https://user:{S}@example.com/x"}}"#),
        ),
        (
            "URL userinfo in a plain line",
            format!("connecting to postgres://app:{S}@db:5432/x"),
        ),
        (
            "URL with an empty user",
            format!(r#"{{"redis":"redis://:{S}@cache:6379/0"}}"#),
        ),
        (
            "URL in an env assignment",
            format!(r#"{{"msg":"DATABASE_URL=postgres://app:{S}@db/x"}}"#),
        ),
        (
            "Authorization header in a string",
            format!(r#"{{"msg":"Authorization: Basic {S}"}}"#),
        ),
        ("API key header in a plain line", format!("X-Api-Key: {S}")),
        (
            "Cookie header, second cookie",
            format!(r#"{{"h":"Cookie: theme=dark; session={S}"}}"#),
        ),
        (
            "Bearer in a string",
            format!(r#"{{"msg":"sent Bearer {S} upstream"}}"#),
        ),
        (
            "client_secret in a string",
            format!(r#"{{"msg":"client_secret: {S}"}}"#),
        ),
        (
            "flag=value in an array",
            format!(r#"{{"args":["--password={S}"]}}"#),
        ),
        (
            "flag then value in an array",
            format!(r#"{{"argv":["app","--password","{S}"]}}"#),
        ),
        (
            "HAR-style header list",
            format!(r#"{{"headers":[{{"name":"Authorization","value":"{S}"}}]}}"#),
        ),
        (
            "OTLP/JSON attribute list",
            format!(
                r#"{{"attributes":[{{"key":"db.password","value":{{"stringValue":"{S}"}}}}]}}"#
            ),
        ),
        (
            "number under a sensitive key",
            r#"{"pin_token":12345678}"#.replace("12345678", "7777777777"),
        ),
    ];
    assert!(placements.len() >= 20);
    let r = redactor();
    for (name, line) in placements {
        let is_json = serde_json::from_str::<serde_json::Map<String, Value>>(&line).is_ok();
        let mut out = line.clone();
        assert!(
            r.redact(&mut out, is_json),
            "{name}: nothing redacted in {line}"
        );
        assert!(
            !out.contains(S) && !out.contains("7777777777"),
            "{name}: the secret survived: {out}"
        );
        assert!(out.contains(REDACTED), "{name}: {out}");
        if is_json {
            serde_json::from_str::<Value>(&out)
                .unwrap_or_else(|e| panic!("{name}: no longer JSON ({e}): {out}"));
        }
    }
}

#[test]
fn ordinary_urls_and_innocent_lines_stay_on_the_fast_path() {
    let r = redactor();
    for line in [
        r#"{"route":"/api/users/{id}","status":200}"#,
        r#"{"msg":"see https://example.com/a?b=c and mailto:x@y.z","n":1}"#,
        r#"{"msg":"fetched https://user@example.com/x","ok":true}"#,
        "GET /health 200",
        "AKIA is a prefix",
        "the token bucket refilled",
        "ssh://git@github.com:22/x",
    ] {
        let mut out = line.to_owned();
        assert!(!r.redact(&mut out, line.starts_with('{')), "{line} → {out}");
        assert_eq!(out, line);
    }
}

#[test]
fn only_the_secret_is_replaced() {
    assert_eq!(
        redacted(r#"{"url":"https://bob:pw@h/x?q=1"}"#, true),
        r#"{"url":"https://bob:[REDACTED]@h/x?q=1"}"#
    );
    assert_eq!(
        redacted(r#"{"msg":"GET /login?password=hunter2&next=/home"}"#, true),
        r#"{"msg":"GET /login?password=[REDACTED]&next=/home"}"#
    );
    assert_eq!(
        redacted(r#"{"body":"{\"password\":\"x\",\"user\":\"bob\"}"}"#, true),
        r#"{"body":"{\"password\":\"[REDACTED]\",\"user\":\"bob\"}"}"#
    );
    assert_eq!(
        redacted(r#"{"argv":["app","--password","x","--port","80"]}"#, true),
        r#"{"argv":["app","--password","[REDACTED]","--port","80"]}"#
    );
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
    let line =
        format!(r#"{{"msg":"call with AKIAIOSFODNN7EXAMPLE and Bearer abc.def-123 and {jwt}"}}"#);
    let out = redacted(&line, true);
    assert!(
        !out.contains("AKIAIOSFODNN7EXAMPLE") && !out.contains("abc.def-123") && !out.contains(jwt),
        "{out}"
    );
    assert_eq!(out.matches(REDACTED).count(), 3, "{out}");

    let plain = format!("GET /x Authorization: Bearer abc123 key AKIAIOSFODNN7EXAMPLE jwt={jwt}");
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
fn custom_key_list() {
    let r = Redactor::new(&["ssn".to_owned()]);
    let mut line = r#"{"ssn":"123-45-6789","password":"kept"}"#.to_owned();
    assert!(r.redact(&mut line, true));
    assert_eq!(line, r#"{"ssn":"[REDACTED]","password":"kept"}"#);
}

#[test]
fn deeply_nested_json_text_is_bounded() {
    // Each level is parsed again; past the bound the text rules still apply.
    let mut text = format!(r#"{{"password":"{S}"}}"#);
    for _ in 0..12 {
        text = serde_json::json!({ "inner": text }).to_string();
    }
    let out = redacted(&text, true);
    assert!(!out.contains(S), "{out}");
}

/// Collects what a writer receives.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_agents_own_log_lines_are_redacted() {
    let captured = Captured::default();
    let sink = captured.clone();
    let writer = RedactingWriter::new(move || Box::new(sink.clone()) as Box<dyn std::io::Write>);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(writer)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(endpoint = %format!("https://agent:{S}@logs.local/"), "cannot reach");
        tracing::warn!(line = %format!(r#"{{"password":"{S}"}}"#), "rejected line");
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains(S), "{text}");
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert!(event["message"].is_string(), "{line}");
    }
}

#[test]
fn anchors_cover_every_one_separator_spelling() {
    for key in DEFAULT_KEYS.iter().chain(&["pin", "ab", "x", "apikey"]) {
        let anchors = anchors_of(key);
        assert!(anchors.iter().any(|a| key.contains(a.as_str())), "{key}");
        for at in 1..key.len() {
            for sep in ['_', '-'] {
                let spelled = format!("{}{sep}{}", &key[..at], &key[at..]);
                assert!(
                    anchors.iter().any(|a| spelled.contains(a.as_str())),
                    "{spelled}: none of {anchors:?}"
                );
            }
        }
    }
}

#[test]
fn no_anchor_is_found_in_an_ordinary_access_log_line() {
    // W1's lines (the benchmark) hold no secret: the gate must stop them all, or every
    // line pays the full case-insensitive scan.
    let r = redactor();
    let line = r#"{"timestamp":"2026-12-06T02:49:11.298000Z","level":"info","service":"checkout-api","host":"ip-10-0-140-125","trace_id":"1a3d1fa7bc8960a923b8c1e9392456de","message":"cache miss for key","method":"GET","route":"/api/v1/orders/{id}","status":204,"latency_ms":31.783,"bytes":12280,"seq":0}"#;
    assert!(!r.anchors.is_match(line.to_ascii_lowercase().as_bytes()));
}

proptest::proptest! {
    #[test]
    fn the_gate_never_hides_what_the_prefilter_finds(
        noise in "[ -~]{0,40}",
        key in proptest::sample::select(DEFAULT_KEYS),
        at in 0usize..20,
        sep in proptest::sample::select(vec!["", "_", "-"]),
        upper in proptest::collection::vec(proptest::bool::ANY, 20),
    ) {
        let r = redactor();
        let at = at % key.len().max(1);
        let word: String = format!("{}{sep}{}", &key[..at], &key[at..])
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let line = format!("{noise}{word}={noise}");
        proptest::prop_assert!(r.triggered(&line), "{}", line);
    }
}

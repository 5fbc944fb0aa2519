//! Joining real traces: each fixture in `agent/tests/fixtures/multiline/` is one trace as
//! the runtime printed it (Java 17, Python 3.11, Go 1.19, Node.js 20, Ruby 3.1;
//! `ruby34_uncaught.txt` is `ruby_uncaught.txt` with Ruby 3.4's quotes and method names).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../../tests/fixtures/multiline/", $name)),
        )
    };
}

/// Every fixture, one trace each.
const TRACES: [(&str, &str); 19] = [
    fixture!("java_caused_by.txt"),
    fixture!("java_suppressed.txt"),
    fixture!("java_uncaught.txt"),
    fixture!("python_chained_cause.txt"),
    fixture!("python_during_handling.txt"),
    fixture!("python_uncaught.txt"),
    fixture!("python_group.txt"),
    fixture!("go_panic_goroutines.txt"),
    fixture!("go_nil_repanic.txt"),
    fixture!("go_http_panic.txt"),
    fixture!("node_stack.txt"),
    fixture!("node_props.txt"),
    fixture!("node_cause.txt"),
    fixture!("node_uncaught.txt"),
    fixture!("ruby_cause.txt"),
    fixture!("ruby_uncaught.txt"),
    fixture!("ruby34_uncaught.txt"),
    fixture!("ruby_highlight.txt"),
    fixture!("ruby_levels.txt"),
];

const BEFORE: &str = "2024-05-01T10:00:00Z INFO server listening on :8080";
const AFTER: &str = "GET /api/users/42 200 1.2ms";

fn multiline(config: MultilineConfig) -> Arc<Multiline> {
    Arc::new(Multiline::new(&config).unwrap())
}

fn on() -> MultilineConfig {
    MultilineConfig {
        enabled: true,
        ..MultilineConfig::default()
    }
}

fn joiner() -> Joiner {
    Joiner::new(multiline(on()))
}

fn lines(text: &str) -> Vec<RawLine> {
    text.lines().map(RawLine::new).collect()
}

fn texts(lines: &[RawLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

fn trace(text: &str) -> String {
    text.trim_end_matches('\n').to_owned()
}

#[test]
fn each_runtime_trace_between_ordinary_lines_is_one_event() {
    let now = Instant::now();
    for (name, text) in TRACES {
        let mut input = vec![RawLine::new(BEFORE)];
        input.extend(lines(text));
        input.push(RawLine::new(AFTER));
        let mut joiner = joiner();
        let out = joiner.process(input, now, 0);
        assert_eq!(
            texts(&out),
            [BEFORE.to_owned(), trace(text), AFTER.to_owned()],
            "{name}"
        );
        assert!(!joiner.is_holding(), "{name}");
        assert_eq!(joiner.counts().joined, 1, "{name}");
    }
}

#[test]
fn line_by_line_gives_the_same_events_and_holds_only_the_trace() {
    let now = Instant::now();
    for (name, text) in TRACES {
        let mut joiner = joiner();
        assert_eq!(
            texts(&joiner.process(lines(BEFORE), now, 0)),
            [BEFORE],
            "{name}"
        );
        let mut trace_lines = lines(text);
        let last = trace_lines.pop().unwrap();
        for line in trace_lines {
            let out = joiner.process(vec![line], now, 0);
            assert!(out.is_empty(), "{name}: a trace line passed alone: {out:?}");
            assert!(joiner.is_holding());
        }
        // The last line ends the trace at once (Node.js's footer) or waits for the next.
        let mut out = joiner.process(vec![last], now, 0);
        out.extend(joiner.process(lines(AFTER), now, 0));
        assert_eq!(texts(&out), [trace(text), AFTER.to_owned()], "{name}");
    }
}

#[test]
fn two_traces_back_to_back_are_two_events() {
    let now = Instant::now();
    let pairs = [
        (TRACES[0].1, TRACES[2].1),   // Java: caused-by, then uncaught
        (TRACES[1].1, TRACES[0].1),   // Java: suppressed, then caused-by
        (TRACES[3].1, TRACES[5].1),   // Python: chained, then uncaught
        (TRACES[4].1, TRACES[6].1),   // Python: during handling, then a group
        (TRACES[7].1, TRACES[9].1),   // Go: goroutines, then net/http's panic
        (TRACES[8].1, TRACES[7].1),   // Go: re-panic, then goroutines
        (TRACES[10].1, TRACES[11].1), // Node: stack, then props
        (TRACES[12].1, TRACES[13].1), // Node: cause, then uncaught
        (TRACES[0].1, TRACES[3].1),   // Java, then Python
    ];
    for (first, second) in pairs {
        let mut input = lines(first);
        input.extend(lines(second));
        input.push(RawLine::new(AFTER));
        let out = joiner().process(input, now, 0);
        assert_eq!(texts(&out), [trace(first), trace(second), AFTER.to_owned()]);
    }
}

#[test]
fn a_ruby_cause_printed_after_the_frames_stays_with_its_trace() {
    let (_, text) = TRACES[14];
    let out = joiner().process(lines(text), Instant::now(), 0);
    assert!(out.is_empty());
    let mut joiner = joiner();
    let mut out = joiner.process(lines(text), Instant::now(), 0);
    joiner.flush_all(&mut out);
    assert_eq!(texts(&out), [trace(text)]);
}

#[test]
fn a_trace_interleaved_with_other_streams_is_joined_per_stream() {
    // Forward: one connection carries several containers and both outputs of each.
    let stream = |container: &str, origin: &str, text: &str| -> Vec<RawLine> {
        text.lines()
            .map(|l| RawLine {
                container: Some(container.into()),
                origin: Some(origin.into()),
                ..RawLine::new(l)
            })
            .collect()
    };
    let java = stream("api", "stderr", TRACES[0].1);
    let python = stream("worker", "stderr", TRACES[5].1);
    let access = stream("api", "stdout", &format!("{AFTER}\n").repeat(40));
    let mut input = Vec::new();
    let (mut a, mut b, mut c) = (java.iter(), python.iter(), access.iter());
    loop {
        let next: Vec<_> = [a.next(), c.next(), b.next(), c.next()]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if next.is_empty() {
            break;
        }
        input.extend(next);
    }
    input.extend(stream("api", "stderr", "after the trace"));
    let mut joiner = joiner();
    let mut out = joiner.process(input, Instant::now(), 0);
    assert_eq!(
        joiner.counts().joined,
        1,
        "the Java trace ended; Python's is held"
    );
    joiner.flush_all(&mut out);
    let events = texts(&out);
    assert_eq!(events.iter().filter(|e| *e == AFTER).count(), 40);
    assert!(events.contains(&trace(TRACES[0].1)), "{events:#?}");
    assert!(events.contains(&trace(TRACES[5].1)), "{events:#?}");
    assert_eq!(events.len(), 40 + 3);
    let java_event = out
        .iter()
        .find(|l| l.bytes.starts_with(b"java.lang"))
        .unwrap();
    assert_eq!(java_event.container.as_deref(), Some("api"));
    assert_eq!(java_event.origin.as_deref(), Some("stderr"));
}

#[test]
fn a_trace_is_shipped_after_flush_ms_without_a_new_line() {
    let t0 = Instant::now();
    let mut joiner = joiner();
    let (_, text) = TRACES[2];
    let mut trace_lines = lines(text).into_iter();
    assert!(
        joiner
            .process(vec![trace_lines.next().unwrap()], t0, 0)
            .is_empty()
    );
    // Each continuation line moves the deadline.
    let t1 = t0 + Duration::from_millis(600);
    assert!(joiner.process(trace_lines.collect(), t1, 0).is_empty());
    assert_eq!(joiner.next_deadline(), Some(t1 + Duration::from_secs(1)));
    let mut out = Vec::new();
    joiner.flush_expired(t0 + Duration::from_millis(1_000), &mut out);
    assert!(out.is_empty(), "not due yet: the last line came at t1");
    joiner.flush_expired(t1 + Duration::from_millis(1_000), &mut out);
    assert_eq!(texts(&out), [trace(text)]);
    assert_eq!(joiner.next_deadline(), None);
}

#[test]
fn a_trace_held_at_shutdown_is_shipped_by_flush_all() {
    let mut joiner = joiner();
    let (_, text) = TRACES[7];
    let mut out = joiner.process(lines(text), Instant::now(), 0);
    assert!(out.is_empty(), "a Go dump has no last line: it waits");
    joiner.flush_all(&mut out);
    assert_eq!(texts(&out), [trace(text)]);
    assert_eq!(joiner.counts().joined, 1);
}

#[test]
fn json_lines_are_never_joined() {
    let now = Instant::now();
    let json_error = r#"{"level":"error","msg":"java.lang.IllegalStateException: boom"}"#;
    let indented_json = r#"   {"level":"info","msg":"  at nothing"}"#;
    let input = vec![
        RawLine::new(json_error),
        RawLine::new("Traceback (most recent call last):"),
        RawLine::new(indented_json),
        RawLine::new("java.lang.RuntimeException: x"),
        RawLine::new(json_error),
        RawLine::new("\tat App.main(App.java:1)"),
    ];
    let mut joiner = joiner();
    let out = joiner.process(input.clone(), now, 0);
    assert_eq!(
        texts(&out),
        texts(&input),
        "no line is joined with a JSON line"
    );
    assert_eq!(joiner.counts().joined, 0);
    assert!(!joiner.is_holding());
}

#[test]
fn ordinary_batches_pass_untouched_without_a_copy() {
    let input: Vec<RawLine> = [
        r#"{"level":"info","msg":"Error: not a start inside JSON"}"#,
        "GET /api/users/42 200 1.2ms",
        "ERROR all capitals is a level, not a trace",
        "",
    ]
    .into_iter()
    .map(RawLine::new)
    .collect();
    let pointer = input.as_ptr();
    let out = joiner().process(input, Instant::now(), 0);
    assert_eq!(out.as_ptr(), pointer, "the batch came back as it went in");
}

#[test]
fn a_possible_start_is_held_only_until_the_next_line_of_its_stream() {
    let now = Instant::now();
    let mut joiner = joiner();
    assert!(
        joiner
            .process(lines("Error: connection reset"), now, 0)
            .is_empty()
    );
    let out = joiner.process(lines(AFTER), now, 0);
    assert_eq!(texts(&out), ["Error: connection reset", AFTER]);
    assert_eq!(joiner.counts().joined, 0, "one line is not a joined trace");
}

#[test]
fn trailing_blank_lines_are_their_own_events() {
    let now = Instant::now();
    let input = lines(
        "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:3 +0x1\n\n\nnext",
    );
    let out = joiner().process(input, now, 0);
    assert_eq!(
        texts(&out),
        [
            "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:3 +0x1",
            "",
            "",
            "next"
        ]
    );
    // A start line followed by blanks only is not a trace.
    let out = joiner().process(lines("panic: boom\n\nnext"), now, 0);
    assert_eq!(texts(&out), ["panic: boom", "", "next"]);
}

#[test]
fn max_lines_cuts_with_a_marker_and_the_rest_goes_on() {
    let config = MultilineConfig {
        max_lines: 5,
        ..on()
    };
    let mut joiner = Joiner::new(multiline(config));
    let frames: String = (0..11)
        .map(|i| format!("\tat App.f{i}(App.java:{i})\n"))
        .collect();
    let text = format!("java.lang.IllegalStateException: deep\n{frames}");
    let mut out = joiner.process(lines(&text), Instant::now(), 0);
    joiner.flush_all(&mut out);
    let events = texts(&out);
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[0].lines().count(), 6, "5 lines and the marker");
    assert!(events[0].ends_with(&format!("\n{CUT_MARKER}")));
    assert!(events[1].starts_with("\tat App.f4("), "{events:#?}");
    assert!(events[1].ends_with(CUT_MARKER));
    assert_eq!(
        events[2],
        "\tat App.f9(App.java:9)\n\tat App.f10(App.java:10)"
    );
    let counts = joiner.counts();
    assert_eq!(
        (counts.joined, counts.cut_max_lines, counts.cut_max_bytes),
        (3, 2, 0)
    );
    let every_line: String = events
        .iter()
        .flat_map(|e| e.lines())
        .filter(|l| *l != CUT_MARKER)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(every_line, text, "no line lost or repeated");
}

#[test]
fn max_bytes_cuts_with_a_marker_and_a_line_that_big_is_never_held() {
    let config = MultilineConfig {
        max_bytes: 1024,
        ..on()
    };
    let mut joiner = Joiner::new(multiline(config));
    let frame = format!("\tat App.{}(App.java:1)", "x".repeat(300));
    let text = format!("java.lang.IllegalStateException: big\n{frame}\n{frame}\n{frame}\n{frame}");
    let mut out = joiner.process(lines(&text), Instant::now(), 0);
    joiner.flush_all(&mut out);
    let events = texts(&out);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events[0].len() <= 1024 + 1 + CUT_MARKER.len());
    assert!(events[0].ends_with(CUT_MARKER));
    assert_eq!(joiner.counts().cut_max_bytes, 1);
    // A start line as long as max_bytes passes at once.
    let huge = format!("java.lang.Error: {}", "y".repeat(1024));
    let out = joiner.process(lines(&huge), Instant::now(), 0);
    assert_eq!(out.len(), 1);
    assert!(!joiner.is_holding());
}

#[test]
fn held_input_bytes_and_marks_say_what_is_not_accepted_yet() {
    let now = Instant::now();
    let mut joiner = joiner();
    joiner.process(lines(AFTER), now, 1);
    assert_eq!((joiner.held_input_bytes(), joiner.oldest_mark()), (0, None));
    joiner.process(lines("java.lang.Error: x\n\tat A.b(A.java:1)"), now, 7);
    assert_eq!(
        joiner.held_input_bytes(),
        ("java.lang.Error: x\n\tat A.b(A.java:1)\n").len() as u64
    );
    joiner.process(lines("\tat A.c(A.java:2)"), now, 9);
    assert_eq!(
        joiner.oldest_mark(),
        Some(7),
        "a trace keeps the mark it was opened with"
    );
    let out = joiner.process(lines("java.lang.Error: y"), now, 11);
    assert_eq!(out.len(), 1);
    assert_eq!(joiner.oldest_mark(), Some(11));
}

#[test]
fn crlf_lines_match_and_keep_their_bytes() {
    let text = "java.lang.Error: x\r\n\tat A.b(A.java:1)\r\n\t... 3 more\r\nnext\r\n";
    let input: Vec<RawLine> = text
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(RawLine::new)
        .collect();
    let out = joiner().process(input, Instant::now(), 0);
    assert_eq!(
        texts(&out),
        [
            "java.lang.Error: x\r\n\tat A.b(A.java:1)\r\n\t... 3 more\r",
            "next\r"
        ]
    );
}

#[test]
fn custom_rules_join_like_fluent_bit_and_come_first() {
    let config = MultilineConfig {
        rules: vec![],
        custom: vec![CustomRule {
            name: "spring".into(),
            start: r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d".into(),
            continue_: r"^(?:\s|Caused by:|[\w.]+(?:Exception|Error))".into(),
        }],
        ..on()
    };
    let text = "2024-05-01 10:00:00 ERROR c.e.App - request failed\n\
                java.lang.IllegalStateException: boom\n\
                \tat c.e.App.run(App.java:10)\n\
                2024-05-01 10:00:01 INFO c.e.App - next request";
    let mut joiner = Joiner::new(multiline(config));
    let mut out = joiner.process(lines(text), Instant::now(), 0);
    joiner.flush_all(&mut out);
    let events = texts(&out);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].lines().count(), 3);
    assert_eq!(events[1], "2024-05-01 10:00:01 INFO c.e.App - next request");
}

#[test]
fn too_many_streams_ship_the_oldest_trace() {
    let now = Instant::now();
    let mut joiner = joiner();
    let input: Vec<RawLine> = (0..MAX_HELD_STREAMS + 3)
        .map(|i| RawLine {
            container: Some(format!("c{i}").into()),
            ..RawLine::new("java.lang.Error: x")
        })
        .collect();
    let out = joiner.process(input, now, 0);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].container.as_deref(), Some("c0"));
    assert!(joiner.is_holding());
}

#[test]
fn validate_names_every_bad_key() {
    let config = MultilineConfig {
        rules: vec![BuiltinRule::Java, BuiltinRule::Invalid],
        custom: vec![
            CustomRule {
                name: "".into(),
                start: "(".into(),
                continue_: "ok".into(),
            },
            CustomRule {
                name: "a".into(),
                start: "x".into(),
                continue_: "y".into(),
            },
            CustomRule {
                name: "a".into(),
                start: "x".into(),
                continue_: "[".into(),
            },
        ],
        flush_ms: 0,
        max_lines: 1,
        max_bytes: 10 << 20,
        ..on()
    };
    let errors = config.validate("pipeline.multiline");
    let keys: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "pipeline.multiline.flush_ms",
            "pipeline.multiline.max_lines",
            "pipeline.multiline.max_bytes",
            "pipeline.multiline.rules[1]",
            "pipeline.multiline.custom[0].name",
            "pipeline.multiline.custom[2].name",
            "pipeline.multiline.custom[0].start",
            "pipeline.multiline.custom[2].continue",
        ],
        "{errors:#?}"
    );
    let nothing = MultilineConfig {
        rules: vec![],
        ..on()
    };
    assert_eq!(nothing.validate("m").len(), 1);
    assert!(on().validate("m").is_empty());
}

#[test]
fn counts_reach_the_metrics() {
    let metrics = Metrics::default();
    let mut joiner = joiner();
    let mut out = joiner.process(lines(TRACES[0].1), Instant::now(), 0);
    joiner.flush_all(&mut out);
    joiner.report(&metrics, SourceKind::Stdin);
    joiner.report(&metrics, SourceKind::Stdin);
    let text = metrics.render(crate::metrics::BufferUsage::default());
    assert!(
        text.contains("agent_multiline_traces_joined_total{source=\"stdin\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("agent_multiline_traces_cut_total{reason=\"max_lines\"} 0\n"));
}

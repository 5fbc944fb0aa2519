//! The rules that recognise a stack trace: small state machines over lines, one per runtime
//! (after Google's `fluent-plugin-detect-exceptions` and Fluent Bit's built-in multiline
//! parsers), plus the custom `start` / `continue` pairs.
//!
//! A machine starts in `start`; a line matching one of the current state's patterns moves it
//! to that pattern's next state and belongs to the trace; `end` completes the trace with that
//! line. Several machines may follow one trace at once (a Node.js `TypeError:` line is also a
//! Java exception line): the trace goes on while any of them accepts the next line.
//!
//! Most lines never reach a regex: a start is only looked for in a line that holds one of a
//! few literals (`Exception`, `Error`, `Traceback`, `panic`, ...), found with one SIMD
//! multi-literal scan, unless a custom rule asks for every line.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;

use super::config::{BuiltinRule, CustomRule};

/// One transition of a built-in table: from these states, a line matching the pattern moves
/// to the named state (`end`: the trace is complete with the line).
type Transition = (&'static [&'static str], &'static str, &'static str);

/// The state every machine starts in.
const START: &str = "start";
/// The pseudo-state that completes a trace.
const END: &str = "end";

/// Java (and Kotlin, Scala): an exception line, `\tat` frames, `Caused by:`, `Suppressed:`
/// and `... N more`.
const JAVA: &[Transition] = &[
    (
        &[START],
        r"(?:Exception|Error|Throwable)(?::|$)",
        "exception",
    ),
    (&["exception", "frames"], r"^\s+(?:eval )?at \S", "frames"),
    (
        &["exception", "frames"],
        r"^\s*(?:Caused by|Suppressed): ",
        "exception",
    ),
    (
        &["exception", "frames"],
        r"^\s*\.\.\. \d+ (?:more|common frames omitted)$",
        "frames",
    ),
];

/// Python: `Traceback (most recent call last):`, indented frames and code, the exception
/// line; chained exceptions (`During handling ...`, `The above exception ...`) and
/// exception groups (`+ Exception Group Traceback`, `|` lines) stay in the same trace.
const PYTHON: &[Transition] = &[
    (
        &[START, "chained"],
        r"^Traceback \(most recent call last\):$",
        "frames",
    ),
    (
        &[START, "chained"],
        r"^\s*\+ Exception Group Traceback \(most recent call last\):$",
        "group",
    ),
    (&["frames"], r"^\s", "frames"),
    (
        &["frames"],
        r"^(?:[^\s.():]+\.)*[^\s.():]+(?::|$)",
        "raised",
    ),
    (&["raised"], r"^$", "gap"),
    (
        &["gap"],
        r"^(?:During handling of the above exception, another exception occurred|The above exception was the direct cause of the following exception):$",
        "chained",
    ),
    (&["chained"], r"^$", "chained"),
    (&["group"], r"^\s*[|+]", "group"),
];

/// Go: `panic:` (or `fatal error:`, or net/http's `http: panic serving`), nested panics and
/// `[signal ...]`, then goroutine dumps: a `goroutine N [state]:` header, function and
/// file lines in pairs, blank lines between goroutines.
const GO: &[Transition] = &[
    (&[START], r"\bpanic: ", "panicked"),
    (&[START], r"^fatal error: ", "panicked"),
    (&[START], r"\bhttp: panic serving ", "goroutine"),
    (&["panicked"], r"^\s+panic: ", "panicked"),
    (&["panicked"], r"^\[signal ", "panicked"),
    (&["panicked", "function"], r"^$", "goroutine"),
    (
        &["panicked", "goroutine"],
        r"^(?:goroutine \d+ .*\]:|runtime stack:)$",
        "function",
    ),
    (&["function"], r"^(?:created by \S.*|\S+\(.*\))$", "file"),
    (
        &["function"],
        r"^\.\.\.additional frames elided\.\.\.$",
        "function",
    ),
    (&["file"], r"^\s+\S", "function"),
];

/// Node.js: `Error: msg` (any `XxxError`, with an optional `[CODE]`) and `    at` frames,
/// `... N lines matching cause stack trace ...`, the `{ code: ..., [cause]: ... }` block
/// `console.error` prints, and an uncaught exception's `file.js:N` / source / caret header
/// and `Node.js vX` footer.
const NODE: &[Transition] = &[
    (
        &[START],
        r"(?:Error|Exception)(?: \[[\w.]+\])?(?::|$)",
        "error",
    ),
    (&[START], r"^(?:/|file:///)\S*:\d+$", "source"),
    (&["source"], r"", "caret"),
    (&["caret"], r"^\s*\^+\s*$", "blank"),
    (&["blank"], r"^$", "blank"),
    (&["blank"], r"^\S", "error"),
    (&["error", "frames"], r"^\s+at \S.*\{$", "props"),
    (&["error", "frames"], r"^\s+at \S", "frames"),
    (
        &["error", "frames"],
        r"^\s+\.\.\. \d+ lines matching cause stack trace \.\.\.$",
        "frames",
    ),
    (&["frames", "closed"], r"^$", "tail"),
    (&["props"], r"^\}$", "closed"),
    (&["props"], r"^\s", "props"),
    (&["tail"], r"^Node\.js v\d", END),
];

/// Ruby: `file.rb:N:in 'method': message (Class)` (backquote before 3.4), the
/// error_highlight snippet, `\tfrom file.rb:N:in ...` frames, `... N levels...`, and the
/// causes Ruby prints after the frames.
const RUBY: &[Transition] = &[
    (&[START, "frames"], RUBY_ERROR, "message"),
    (&["message"], r"^$", "message"),
    (&["message"], r"^ +\S", "message"),
    (&["message", "frames"], r"^\s+from \S+:\d+:in ", "frames"),
    (&["frames"], r"^\s+\.\.\. \d+ levels\.\.\.$", "frames"),
];

const RUBY_ERROR: &str = r"^\S+:\d+:in [`'].*\((?:[A-Z]\w*::)*[A-Z]\w*\)$";

/// A built-in rule's table and the literals one of which every start line holds.
fn table(rule: BuiltinRule) -> (&'static [Transition], &'static [&'static str]) {
    match rule {
        BuiltinRule::Java => (JAVA, &["Exception", "Error", "Throwable"]),
        BuiltinRule::Python => (PYTHON, &["Traceback"]),
        BuiltinRule::Go => (GO, &["panic", "fatal error: "]),
        BuiltinRule::Node => (NODE, &["Exception", "Error"]),
        BuiltinRule::Ruby => (RUBY, &[":in "]),
        BuiltinRule::Invalid => (&[], &[]),
    }
}

/// Where a transition leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    State(u16),
    End,
}

/// One rule, compiled: its patterns and, per state (0 = `start`), the transitions out of it.
#[derive(Debug)]
struct Machine {
    patterns: Vec<Regex>,
    states: Vec<Vec<(usize, Next)>>,
}

/// A machine following a trace, and the state it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Candidate {
    machine: u16,
    state: u16,
}

/// What a line did to a trace in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    /// The machines that accepted it, in their new states.
    pub(super) candidates: Vec<Candidate>,
    /// A machine reached `end`: the line completes the trace.
    pub(super) ended: bool,
}

/// Every enabled rule, compiled.
#[derive(Debug)]
pub(super) struct Rules {
    machines: Vec<Machine>,
    /// Literals of the built-in starts; `None` when no built-in rule is on.
    literals: Option<AhoCorasick>,
    /// The Node.js rule is on: also look at `/path/file.js:N` headers.
    node_headers: bool,
    /// How many machines (the first ones) are custom: their starts are tried on every line.
    custom: usize,
}

impl Rules {
    /// Compiles `custom` (tried first) and then `builtin`, in order. Errors name the
    /// offending custom rule's index and key.
    pub(super) fn new(builtin: &[BuiltinRule], custom: &[CustomRule]) -> Result<Self, Vec<String>> {
        let mut machines = Vec::new();
        let mut errors = Vec::new();
        for (i, rule) in custom.iter().enumerate() {
            let start = compile(&rule.start).map_err(|e| format!("custom[{i}].start: {e}"));
            let cont = compile(&rule.continue_).map_err(|e| format!("custom[{i}].continue: {e}"));
            match (start, cont) {
                (Ok(start), Ok(cont)) => machines.push(Machine {
                    patterns: vec![start, cont],
                    states: vec![vec![(0, Next::State(1))], vec![(1, Next::State(1))]],
                }),
                (start, cont) => errors.extend(start.err().into_iter().chain(cont.err())),
            }
        }
        let mut literals = Vec::new();
        for rule in builtin.iter().filter(|r| r.is_valid()) {
            let (transitions, words) = table(*rule);
            machines.push(Machine::from_table(transitions).map_err(|e| vec![e])?);
            literals.extend(words.iter().copied());
        }
        literals.sort_unstable();
        literals.dedup();
        if !errors.is_empty() {
            return Err(errors);
        }
        // Leftmost-first, not the standard semantics, because only the leftmost kinds get
        // the packed SIMD (Teddy) searcher: on a 300-byte line 46 ns instead of 500.
        let literals = match literals.is_empty() {
            true => None,
            false => Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&literals)
                    .map_err(|e| vec![e.to_string()])?,
            ),
        };
        Ok(Self {
            machines,
            literals,
            node_headers: builtin.contains(&BuiltinRule::Node),
            custom: custom.len(),
        })
    }

    /// The machines a line starts a trace for, or `None` (most lines: no regex runs unless
    /// the line holds a literal of a built-in start, or a custom rule is configured).
    pub(super) fn start(&self, line: &[u8]) -> Option<Vec<Candidate>> {
        let line = trim_cr(line);
        let builtin = self.literals.as_ref().is_some_and(|l| l.is_match(line))
            || (self.node_headers && looks_like_source_header(line));
        let range = match (self.custom, builtin) {
            (0, false) => return None,
            (custom, false) => 0..custom,
            (_, true) => 0..self.machines.len(),
        };
        let candidates: Vec<Candidate> = range
            .filter_map(|m| match self.machines[m].next(0, line) {
                Some(Next::State(state)) => Some(Candidate {
                    machine: m as u16,
                    state,
                }),
                _ => None,
            })
            .collect();
        (!candidates.is_empty()).then_some(candidates)
    }

    /// Where `line` takes a trace whose machines are `from`; `None` when no machine accepts
    /// it (the trace ended before it).
    pub(super) fn advance(&self, from: &[Candidate], line: &[u8]) -> Option<Step> {
        let line = trim_cr(line);
        let mut step = Step {
            candidates: Vec::with_capacity(from.len()),
            ended: false,
        };
        for candidate in from {
            let machine = &self.machines[usize::from(candidate.machine)];
            match machine.next(usize::from(candidate.state), line) {
                Some(Next::State(state)) => {
                    let next = Candidate {
                        state,
                        ..*candidate
                    };
                    if !step.candidates.contains(&next) {
                        step.candidates.push(next);
                    }
                }
                Some(Next::End) => step.ended = true,
                None => {}
            }
        }
        (step.ended || !step.candidates.is_empty()).then_some(step)
    }
}

impl Machine {
    /// Compiles a built-in table (a bad table is a programming error the tests show).
    fn from_table(transitions: &[Transition]) -> Result<Self, String> {
        let mut names: Vec<&str> = vec![START];
        let mut index_of = |name: &'static str| match names.iter().position(|n| *n == name) {
            Some(index) => index,
            None => {
                names.push(name);
                names.len() - 1
            }
        };
        let mut patterns = Vec::with_capacity(transitions.len());
        let mut edges = Vec::new();
        for (pattern, (from, regex, to)) in transitions.iter().enumerate() {
            patterns.push(compile(regex).map_err(|e| format!("built-in rule {regex}: {e}"))?);
            let next = match *to {
                END => Next::End,
                to => Next::State(index_of(to) as u16),
            };
            for state in *from {
                edges.push((index_of(state), pattern, next));
            }
        }
        let mut states = vec![Vec::new(); names.len()];
        for (state, pattern, next) in edges {
            states[state].push((pattern, next));
        }
        Ok(Self { patterns, states })
    }

    /// The first transition out of `state` that `line` matches.
    fn next(&self, state: usize, line: &[u8]) -> Option<Next> {
        self.states
            .get(state)?
            .iter()
            .find_map(|(pattern, next)| self.patterns[*pattern].is_match(line).then_some(*next))
    }
}

/// Compiles one rule pattern (a line never holds `\n`, so `^` and `$` are its ends).
pub(super) fn compile(pattern: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| one_line(&e.to_string()))
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line without the `\r` of a CRLF ending, which would keep `$` from matching.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `/app/index.js:12` or `file:///app/index.mjs:12`: what Node.js prints above an uncaught
/// exception (checked by hand: no literal says it).
fn looks_like_source_header(line: &[u8]) -> bool {
    (line.first() == Some(&b'/') || line.starts_with(b"file:///"))
        && line.last().is_some_and(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_table_compiles_and_starts_from_start_only() {
        for rule in BuiltinRule::ALL {
            let (transitions, _) = table(rule);
            let machine = Machine::from_table(transitions).unwrap();
            assert!(!machine.states[0].is_empty(), "{rule:?} has a start");
            for (_, next) in &machine.states[0] {
                assert_ne!(*next, Next::End, "{rule:?}: a start must not end at once");
            }
        }
    }

    #[test]
    fn every_start_line_holds_one_of_its_rule_literals() {
        // The prefilter must never hide a start: each built-in start pattern's required
        // text contains one of the rule's literals (node's source header excepted: checked
        // by hand).
        let samples = [
            (BuiltinRule::Java, "java.lang.IllegalStateException: boom"),
            (
                BuiltinRule::Java,
                "Exception in thread \"main\" java.lang.StackOverflowError",
            ),
            (BuiltinRule::Python, "Traceback (most recent call last):"),
            (
                BuiltinRule::Python,
                "  + Exception Group Traceback (most recent call last):",
            ),
            (
                BuiltinRule::Go,
                "panic: runtime error: index out of range [3] with length 2",
            ),
            (BuiltinRule::Go, "fatal error: concurrent map writes"),
            (
                BuiltinRule::Go,
                "2024/01/01 12:00:00 http: panic serving 1.2.3.4:5: boom",
            ),
            (BuiltinRule::Node, "Error [ERR_ASSERTION]: boom"),
            (BuiltinRule::Node, "/app/index.js:12"),
            (
                BuiltinRule::Ruby,
                "app.rb:16:in 'Integer#/': divided by 0 (ZeroDivisionError)",
            ),
        ];
        for (rule, line) in samples {
            let rules = Rules::new(&[rule], &[]).unwrap();
            assert!(rules.start(line.as_bytes()).is_some(), "{rule:?}: {line}");
        }
        let rules = Rules::new(&BuiltinRule::ALL, &[]).unwrap();
        for line in [
            "GET /api/users/42 200 1.2ms",
            "",
            "   ",
            "ERROR: all caps is a level",
        ] {
            assert_eq!(rules.start(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn custom_rules_are_tried_first_on_every_line() {
        let custom = CustomRule {
            name: "timestamped".into(),
            start: r"^\d{4}-\d\d-\d\d ".into(),
            continue_: r"^\s".into(),
        };
        let rules = Rules::new(&[BuiltinRule::Java], &[custom]).unwrap();
        let start = rules.start(b"2024-05-01 ERROR failed").unwrap();
        assert_eq!(
            start,
            vec![Candidate {
                machine: 0,
                state: 1
            }]
        );
        let step = rules.advance(&start, b"  detail").unwrap();
        assert_eq!((step.candidates.len(), step.ended), (1, false));
        assert_eq!(rules.advance(&start, b"2024-05-01 next"), None);
    }

    #[test]
    fn bad_custom_patterns_are_named() {
        let bad = CustomRule {
            name: "x".into(),
            start: "(".into(),
            continue_: "[".into(),
        };
        let errors = Rules::new(&[], &[bad]).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("custom[0].start: "), "{errors:?}");
        assert!(errors[1].starts_with("custom[0].continue: "), "{errors:?}");
        assert!(!errors[0].contains('\n'));
    }
}

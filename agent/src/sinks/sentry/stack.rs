//! Stack trace text → Sentry frames, best effort, for the usual printouts: Rust
//! (`12: path::fn` + `at file:line:col`), Go (`pkg.fn(...)` + `/file.go:12 +0x1d`), Java
//! (`at pkg.Class.m(File.java:12)`), JavaScript (`at fn (file.js:1:2)`) and Python
//! (`File "x.py", line 3, in fn`). Sentry wants frames oldest first; all of these except
//! Python print the newest first. An unrecognised text becomes one frame per line.

use sentry_types::protocol::v7::Frame as SentryFrame;

/// At most this many frames are sent (Sentry trims longer traces anyway).
pub(crate) const MAX_FRAMES: usize = 200;
/// Lines of a trace read at most.
const MAX_LINES: usize = 2000;
/// Longest function name or file name kept.
const MAX_NAME_CHARS: usize = 512;

#[derive(Debug, Default)]
struct Frame {
    function: Option<String>,
    filename: Option<String>,
    lineno: Option<u64>,
    colno: Option<u64>,
    /// Rust and Go print the location on the next line.
    awaiting_location: bool,
}

impl Frame {
    /// Sentry's frame: the four fields a printed trace gives.
    fn into_sentry(self) -> SentryFrame {
        SentryFrame {
            function: self.function,
            filename: self.filename,
            lineno: self.lineno,
            colno: self.colno,
            ..SentryFrame::default()
        }
    }

    fn set_location(&mut self, location: &str) {
        let (filename, lineno, colno) = split_location(location);
        if !filename.is_empty() {
            self.filename = Some(short(filename));
        }
        self.lineno = lineno;
        self.colno = colno;
        self.awaiting_location = false;
    }
}

fn short(text: &str) -> String {
    text.chars().take(MAX_NAME_CHARS).collect()
}

/// `file:line:col`, `file:line` or `file` (`Native Method`, `<anonymous>`).
fn split_location(location: &str) -> (&str, Option<u64>, Option<u64>) {
    let location = location.trim();
    let number = |s: &str| s.parse::<u64>().ok().filter(|_| !s.is_empty());
    if let Some((head, last)) = location.rsplit_once(':')
        && let Some(last) = number(last)
    {
        if let Some((file, line)) = head.rsplit_once(':')
            && let Some(line) = number(line)
        {
            return (file, Some(line), Some(last));
        }
        return (head, Some(last), None);
    }
    (location, None, None)
}

/// Frames of `text`, oldest first, as Sentry `stacktrace.frames`.
pub(crate) fn frames(text: &str) -> Vec<SentryFrame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut python = false;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(MAX_LINES)
        .collect();
    for line in &lines {
        if frames.len() >= MAX_FRAMES {
            break;
        }
        if let Some(frame) = python_frame(line) {
            python = true;
            frames.push(frame);
            continue;
        }
        if python {
            // Source lines and the final `Error: message` of a Python traceback.
            continue;
        }
        let awaiting = frames.last().is_some_and(|f| f.awaiting_location);
        if let Some(rest) = line.strip_prefix("at ") {
            if awaiting {
                // Rust: the location of the frame above.
                if let Some(last) = frames.last_mut() {
                    last.set_location(rest);
                }
            } else {
                frames.push(at_frame(rest));
            }
            continue;
        }
        if awaiting && (line.starts_with('/') || line.contains(".go:")) {
            // Go: `/src/app/main.go:42 +0x1d`.
            let location = line.split(" +0x").next().unwrap_or(line);
            if let Some(last) = frames.last_mut() {
                last.set_location(location);
            }
            continue;
        }
        if let Some(function) = rust_numbered(line) {
            frames.push(Frame {
                function: Some(short(function)),
                awaiting_location: true,
                ..Frame::default()
            });
            continue;
        }
        if let Some(function) = go_function(line) {
            frames.push(Frame {
                function: Some(short(function)),
                awaiting_location: true,
                ..Frame::default()
            });
        }
    }
    if frames.is_empty() {
        // Unknown format: one frame per line, in the order given.
        return lines
            .iter()
            .take(MAX_FRAMES)
            .rev()
            .map(|line| {
                Frame {
                    function: Some(short(line)),
                    ..Frame::default()
                }
                .into_sentry()
            })
            .collect();
    }
    if !python {
        frames.reverse();
    }
    frames.into_iter().map(Frame::into_sentry).collect()
}

/// `File "app.py", line 3, in handler`.
fn python_frame(line: &str) -> Option<Frame> {
    let rest = line.strip_prefix("File \"")?;
    let (file, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(", line ")?;
    let (number, function) = match rest.split_once(", in ") {
        Some((number, function)) => (number, Some(function)),
        None => (rest, None),
    };
    Some(Frame {
        function: function.map(short),
        filename: Some(short(file)),
        lineno: number.trim().parse().ok(),
        ..Frame::default()
    })
}

/// Java `pkg.Class.method(File.java:12)`, JavaScript `fn (file.js:1:2)` or `file.js:1:2`.
fn at_frame(rest: &str) -> Frame {
    let mut frame = Frame::default();
    if let (Some(open), true) = (rest.find('('), rest.ends_with(')')) {
        let function = rest[..open].trim();
        if !function.is_empty() {
            frame.function = Some(short(function));
        }
        frame.set_location(&rest[open + 1..rest.len() - 1]);
    } else {
        frame.set_location(rest);
    }
    frame
}

/// Rust's `12: app::handler::h3c1d` (the `N:` index of `std::backtrace`).
fn rust_numbered(line: &str) -> Option<&str> {
    let (index, function) = line.split_once(": ")?;
    (!index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())).then(|| function.trim())
}

/// Go's `main.handler(0xc000012345, ...)` or `net/http.HandlerFunc.ServeHTTP(...)`.
fn go_function(line: &str) -> Option<&str> {
    let open = line.find('(')?;
    let function = &line[..open];
    let plausible = line.ends_with(')')
        && function.contains('.')
        && !function.contains(char::is_whitespace)
        && !function.is_empty();
    plausible.then_some(function)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(frames: &[SentryFrame]) -> Vec<&str> {
        frames
            .iter()
            .map(|f| f.function.as_deref().unwrap_or("?"))
            .collect()
    }

    #[test]
    fn rust_backtraces_are_reversed_with_locations() {
        let text = "   0: app::db::query\n             at ./src/db.rs:10:5\n   1: app::handler\n             at ./src/main.rs:20:9\n   2: std::rt::lang_start";
        let frames = frames(text);
        assert_eq!(
            names(&frames),
            ["std::rt::lang_start", "app::handler", "app::db::query"]
        );
        assert_eq!(frames[2].filename.as_deref(), Some("./src/db.rs"));
        assert_eq!(frames[2].lineno, Some(10));
        assert_eq!(frames[2].colno, Some(5));
    }

    #[test]
    fn java_and_javascript_frames() {
        let java = "java.lang.IllegalStateException: boom\n\tat com.x.Db.query(Db.java:42)\n\tat com.x.Api.handle(Api.java:7)\n\tat java.base/Thread.run(Native Method)";
        let frames = frames(java);
        assert_eq!(
            names(&frames),
            ["java.base/Thread.run", "com.x.Api.handle", "com.x.Db.query"]
        );
        assert_eq!(frames[2].filename.as_deref(), Some("Db.java"));
        assert_eq!(frames[2].lineno, Some(42));
        assert_eq!(frames[0].filename.as_deref(), Some("Native Method"));

        let js = "Error: boom\n    at query (/app/db.js:10:15)\n    at /app/index.js:3:1";
        let frames = super::frames(js);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].filename.as_deref(), Some("/app/index.js"));
        assert_eq!(frames[1].function.as_deref(), Some("query"));
        assert_eq!(frames[1].colno, Some(15));
    }

    #[test]
    fn python_keeps_its_order_and_go_pairs_lines() {
        let py = "Traceback (most recent call last):\n  File \"app.py\", line 3, in main\n    run()\n  File \"db.py\", line 9, in run\nValueError: boom";
        let frames = frames(py);
        assert_eq!(names(&frames), ["main", "run"]);
        assert_eq!(frames[1].filename.as_deref(), Some("db.py"));
        assert_eq!(frames[1].lineno, Some(9));

        let go = "goroutine 1 [running]:\nmain.query(0xc000010000)\n\t/src/app/db.go:42 +0x1d\nmain.main()\n\t/src/app/main.go:7 +0x25";
        let frames = super::frames(go);
        assert_eq!(names(&frames), ["main.main", "main.query"]);
        assert_eq!(frames[1].filename.as_deref(), Some("/src/app/db.go"));
        assert_eq!(frames[1].lineno, Some(42));
    }

    #[test]
    fn unknown_text_becomes_one_frame_per_line_and_is_bounded() {
        let frames = frames("first\nsecond");
        assert_eq!(names(&frames), ["second", "first"]);
        let long: String = (0..5000).map(|i| format!("{i}: f{i}\n")).collect();
        assert_eq!(super::frames(&long).len(), MAX_FRAMES);
    }
}

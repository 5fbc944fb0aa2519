//! Multiline: stack traces that arrive one line per event are joined into one event per
//! trace, per stream, on raw lines, before anything parses them.
//!
//! A [`Joiner`] sits in a source between reading lines and [`EventSender::send`]. Lines are
//! grouped by stream (container and `stdout`/`stderr` for Fluent Forward; one per file; one
//! for stdin). A line that starts a trace ([`rules`]) is held; the lines that continue it
//! join it; the trace is shipped as one event (lines joined with `\n`, the first line's time
//! and container) when a line of its stream does not continue it, when `flush_ms` passes
//! with no new line, or when the source closes. A trace reaching `max_lines` or `max_bytes`
//! is shipped cut, ending with [`CUT_MARKER`], and the rest of it goes on in the next event.
//!
//! Lines that are not part of a trace pass at once: only a line that could start one is
//! held, and only until the next line of its stream or `flush_ms`. A JSON line (its first
//! non-blank byte is `{`, its last `}`) is never joined. The common batch (no trace in progress, no line
//! holding a start literal) is returned as it came, without a copy.
//!
//! Held lines are not accepted yet: the sources withhold their acknowledgements (forward
//! acks, file checkpoints) for them, using [`Joiner::oldest_mark`] and
//! [`Joiner::held_input_bytes`].
//!
//! [`EventSender::send`]: crate::pipeline::EventSender::send

pub mod config;
mod rules;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use self::config::{BuiltinRule, CustomRule, MultilineConfig};
use self::rules::{Candidate, Rules, Step};
use super::event::RawLine;
use crate::metrics::{Metrics, MultilineCut, SourceKind};

/// Ends an event cut at `max_lines` or `max_bytes` (on a line of its own).
pub const CUT_MARKER: &str = "...[trace cut by agent]";

/// Most streams one joiner holds a trace for at once (a Fluent Forward connection carries
/// many containers); beyond it the oldest trace is shipped as it is.
pub const MAX_HELD_STREAMS: usize = 64;

/// The rules and limits, compiled once and shared by every source's joiners.
#[derive(Debug)]
pub struct Multiline {
    rules: Rules,
    flush: Duration,
    max_lines: usize,
    max_bytes: usize,
}

impl Multiline {
    /// Compiles a validated configuration; `Err` lists what [`MultilineConfig::validate`]
    /// would have reported about the patterns.
    pub fn new(config: &MultilineConfig) -> Result<Self, Vec<String>> {
        Ok(Self {
            rules: Rules::new(&config.rules, &config.custom)?,
            flush: Duration::from_millis(config.flush_ms),
            max_lines: config.max_lines.max(2),
            max_bytes: config.max_bytes.clamp(2, config::MAX_MAX_BYTES),
        })
    }

    /// Whether `line` is a JSON line or could start a trace (the cheap checks first).
    fn starts(&self, line: &RawLine) -> Option<Vec<Candidate>> {
        if is_json(&line.bytes) || line.bytes.len() >= self.max_bytes {
            return None;
        }
        self.rules.start(&line.bytes)
    }
}

/// Traces joined and cut since the last [`Joiner::report`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events made of several lines.
    pub joined: u64,
    /// Of those, the ones cut at `max_lines`.
    pub cut_max_lines: u64,
    /// Of those, the ones cut at `max_bytes`.
    pub cut_max_bytes: u64,
}

/// One stream's trace in progress.
#[derive(Debug)]
struct Group {
    lines: Vec<RawLine>,
    /// Bytes of the joined event so far (lines and the `\n`s between them).
    bytes: usize,
    candidates: Vec<Candidate>,
    deadline: Instant,
    /// The caller's mark when the group was opened.
    mark: u64,
}

impl Group {
    fn same_stream(&self, line: &RawLine) -> bool {
        let first = &self.lines[0];
        first.container == line.container && first.origin == line.origin
    }
}

/// One source's (or one connection's, or one file's) traces in progress, per stream.
#[derive(Debug)]
pub struct Joiner {
    multiline: Arc<Multiline>,
    /// Oldest first.
    groups: Vec<Group>,
    held_bytes: usize,
    counts: Counts,
}

impl Joiner {
    /// A joiner with nothing held.
    pub fn new(multiline: Arc<Multiline>) -> Self {
        Self {
            multiline,
            groups: Vec::new(),
            held_bytes: 0,
            counts: Counts::default(),
        }
    }

    /// Runs `lines` (in the order read) through: returns what may be sent now and holds the
    /// rest. Traces opened here remember `mark` (see [`oldest_mark`](Self::oldest_mark)).
    pub fn process(&mut self, lines: Vec<RawLine>, now: Instant, mark: u64) -> Vec<RawLine> {
        let first = match self.groups.is_empty() {
            // No trace in progress: lines before the first possible start pass untouched.
            true => match lines
                .iter()
                .position(|l| self.multiline.starts(l).is_some())
            {
                None => return lines,
                Some(first) => first,
            },
            false => 0,
        };
        let mut out = Vec::with_capacity(lines.len());
        let mut lines = lines.into_iter();
        out.extend(lines.by_ref().take(first));
        for line in lines {
            self.push(line, now, mark, &mut out);
        }
        out
    }

    /// Ships (into `out`) the traces whose last line is `flush_ms` old.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<RawLine>) {
        while let Some(index) = self.groups.iter().position(|g| g.deadline <= now) {
            self.emit(index, out);
        }
    }

    /// Ships every trace in progress (the source is closing).
    pub fn flush_all(&mut self, out: &mut Vec<RawLine>) {
        while !self.groups.is_empty() {
            self.emit(0, out);
        }
    }

    /// When the next trace is due to be shipped, if one is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups.iter().map(|g| g.deadline).min()
    }

    /// Whether any line is held.
    pub fn is_holding(&self) -> bool {
        !self.groups.is_empty()
    }

    /// The smallest mark of the traces held: a source acknowledges nothing it read at or
    /// after it (forward: the ack bytes queued since that delivery).
    pub fn oldest_mark(&self) -> Option<u64> {
        self.groups.iter().map(|g| g.mark).min()
    }

    /// Input bytes of the held lines, each with its `\n`: a file's checkpoint stays this far
    /// behind the end of what was read. (Held lines always ended with a newline: a line
    /// shipped without one is a last line and flushed with everything.)
    pub fn held_input_bytes(&self) -> u64 {
        // A group's `bytes` counts the `\n`s between its lines: one short of its input.
        (self.held_bytes + self.groups.len()) as u64
    }

    /// Adds the traces joined and cut since the last call to `metrics`.
    pub fn report(&mut self, metrics: &Metrics, source: SourceKind) {
        let counts = std::mem::take(&mut self.counts);
        if counts != Counts::default() {
            metrics.multiline_joined(source, counts.joined);
            metrics.multiline_cut(MultilineCut::MaxLines, counts.cut_max_lines);
            metrics.multiline_cut(MultilineCut::MaxBytes, counts.cut_max_bytes);
        }
    }

    /// The counts so far (tests).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn push(&mut self, line: RawLine, now: Instant, mark: u64, out: &mut Vec<RawLine>) {
        if let Some(index) = self.groups.iter().position(|g| g.same_stream(&line)) {
            let step = match is_json(&line.bytes) {
                true => None,
                false => {
                    (self.multiline.rules).advance(&self.groups[index].candidates, &line.bytes)
                }
            };
            if let Some(step) = step {
                return self.extend(index, line, step, now, mark, out);
            }
            self.emit(index, out);
        }
        match self.multiline.starts(&line) {
            Some(candidates) => self.open(line, candidates, now, mark, out),
            None => out.push(line),
        }
    }

    /// Adds a continuation line to the trace at `index`, cutting it first at the limits.
    fn extend(
        &mut self,
        index: usize,
        line: RawLine,
        step: Step,
        now: Instant,
        mark: u64,
        out: &mut Vec<RawLine>,
    ) {
        let limits = &self.multiline;
        let group = &self.groups[index];
        let cut = if group.lines.len() >= limits.max_lines {
            Some(MultilineCut::MaxLines)
        } else if group.bytes + 1 + line.bytes.len() > limits.max_bytes {
            Some(MultilineCut::MaxBytes)
        } else {
            None
        };
        if let Some(reason) = cut {
            self.cut(index, reason, out);
            // The rest of the trace goes on in the next event.
            if step.ended || line.bytes.len() >= self.multiline.max_bytes {
                out.push(line);
            } else {
                self.open(line, step.candidates, now, mark, out);
            }
            return;
        }
        let flush = self.multiline.flush;
        let group = &mut self.groups[index];
        group.bytes += 1 + line.bytes.len();
        self.held_bytes += 1 + line.bytes.len();
        group.lines.push(line);
        group.candidates = step.candidates;
        group.deadline = now + flush;
        if step.ended {
            self.emit(index, out);
        }
    }

    /// Holds a line that starts a trace, shipping the oldest traces first if too much is held.
    fn open(
        &mut self,
        line: RawLine,
        candidates: Vec<Candidate>,
        now: Instant,
        mark: u64,
        out: &mut Vec<RawLine>,
    ) {
        let limit = self.multiline.max_bytes.saturating_mul(4);
        while !self.groups.is_empty()
            && (self.groups.len() >= MAX_HELD_STREAMS || self.held_bytes + line.bytes.len() > limit)
        {
            self.emit(0, out);
        }
        self.held_bytes += line.bytes.len();
        self.groups.push(Group {
            bytes: line.bytes.len(),
            lines: vec![line],
            candidates,
            deadline: now + self.multiline.flush,
            mark,
        });
    }

    /// Ships the trace at `index`: one event, then its trailing blank lines as they came
    /// (they were held in case the trace went on after them).
    fn emit(&mut self, index: usize, out: &mut Vec<RawLine>) {
        let mut group = self.remove(index);
        let keep = 1 + group.lines[1..]
            .iter()
            .rposition(|l| !is_blank(&l.bytes))
            .map_or(0, |last| last + 1);
        let blanks = group.lines.split_off(keep);
        if group.lines.len() == 1 {
            out.extend(group.lines.pop());
        } else {
            self.counts.joined += 1;
            out.push(join(group.lines, None));
        }
        out.extend(blanks);
    }

    /// Ships the trace at `index` cut, with the marker.
    fn cut(&mut self, index: usize, reason: MultilineCut, out: &mut Vec<RawLine>) {
        let group = self.remove(index);
        self.counts.joined += 1;
        match reason {
            MultilineCut::MaxLines => self.counts.cut_max_lines += 1,
            MultilineCut::MaxBytes => self.counts.cut_max_bytes += 1,
        }
        out.push(join(group.lines, Some(CUT_MARKER)));
    }

    fn remove(&mut self, index: usize) -> Group {
        let group = self.groups.remove(index);
        self.held_bytes -= group.bytes;
        group
    }
}

/// The lines as one event: joined with `\n` (a marker last, if given), with the first
/// line's time, container and origin.
fn join(lines: Vec<RawLine>, marker: Option<&str>) -> RawLine {
    let size: usize =
        lines.iter().map(|l| l.bytes.len() + 1).sum::<usize>() + marker.map_or(0, str::len);
    let mut lines = lines.into_iter();
    let Some(mut first) = lines.next() else {
        return RawLine::new(Vec::new());
    };
    first.bytes.reserve(size.saturating_sub(first.bytes.len()));
    for line in lines {
        first.bytes.push(b'\n');
        first.bytes.extend_from_slice(&line.bytes);
    }
    if let Some(marker) = marker {
        first.bytes.push(b'\n');
        first.bytes.extend_from_slice(marker.as_bytes());
    }
    first
}

/// A JSON line: its first non-blank byte is `{` and its last `}`. Never joined with another
/// line. (The last byte too, so that a Python frame's code line `{}["key"]` still joins.)
fn is_json(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && line.iter().rfind(|b| !b.is_ascii_whitespace()) == Some(&b'}')
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

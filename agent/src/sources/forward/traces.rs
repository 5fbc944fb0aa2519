//! Stack traces on a forward connection: lines are joined per container and origin
//! (`stdout`/`stderr`) before they are sent, and the acks of the frames a held trace came
//! from wait until it is sent.
//!
//! Acks are written in the order they were queued, so "withheld" is a position in that
//! queue: a trace opened during a delivery holds back every ack queued since the previous
//! delivery (its frames are among them; so, conservatively, are the others of that
//! delivery). Traces are held for at most `flush_ms` after their last line, so acks wait at
//! most that long, and a trace held continuously on one stream does not hold the acks of
//! later deliveries once it is shipped.

use tokio::time::Instant;

use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::event::RawLine;
use crate::pipeline::multiline::Joiner;

/// One connection's traces in progress and the ack position they hold.
#[derive(Debug)]
pub(super) struct Traces {
    joiner: Joiner,
    /// Ack bytes written to the peer so far.
    written: u64,
    /// Ack bytes the last delivery left queued (they wait for a held trace).
    kept: usize,
}

impl Traces {
    pub(super) fn new(joiner: Joiner) -> Self {
        Self {
            joiner,
            written: 0,
            kept: 0,
        }
    }

    /// Joins `batch` (with `close`, also ships every trace held; else those due) and returns
    /// the lines to send with how many of the `queued` ack bytes may be written once they
    /// are accepted.
    pub(super) fn join(
        &mut self,
        batch: Vec<RawLine>,
        queued: usize,
        close: bool,
        metrics: &Metrics,
    ) -> (Vec<RawLine>, usize) {
        let now = Instant::now();
        let mark = self.written + self.kept as u64;
        let mut lines = self.joiner.process(batch, now, mark);
        if close {
            self.joiner.flush_all(&mut lines);
        } else {
            self.joiner.flush_expired(now, &mut lines);
        }
        self.joiner.report(metrics, SourceKind::Forward);
        let ready = match self.joiner.oldest_mark() {
            Some(held) => usize::try_from(held.saturating_sub(self.written)).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        (lines, ready.min(queued))
    }

    /// `count` ack bytes were written; `left` stay queued.
    pub(super) fn wrote(&mut self, count: usize, left: usize) {
        self.written += count as u64;
        self.kept = left;
    }

    /// When the next held trace is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.joiner.next_deadline()
    }
}

//! File tail: follows the files matching globs through rename rotation, copytruncate,
//! deletion and agent restarts, delivering every line at least once.
//!
//! Polling, so it works on any filesystem without an inotify crate: every
//! `poll_interval_ms` the globs are expanded, new files are opened, and each followed file
//! is read from its offset to its end. The loop runs on a blocking thread, as Vector's file
//! server does: reads are plain 256 KiB `read`s, and [`EventSender::send`] is driven with
//! `Handle::block_on`, so when the pipeline is full this thread waits and reads nothing
//! more (back-pressure) without holding up the async workers.
//!
//! Files are known by (device, inode), not by path. One that stops matching the globs
//! (renamed by rotation, or deleted) is still read through its open handle, and dropped
//! once nothing has been written to it for [`ROTATE_WAIT`] (Fluent Bit's `rotate_wait`):
//! late writes to the old name are not lost. The file that takes the name is new, read from
//! its start. A file that shrinks below the offset, or whose first bytes change, was
//! truncated in place (copytruncate) and is read again from its start.
//!
//! The checkpoint records per file the end of the last line the pipeline *accepted*
//! (`send` returned), never further, so after a crash lines are read twice, never lost.
//! `start_at` only applies to files found by the first scan that the checkpoint does not
//! know; any file that appears later is read from its start.
//!
//! With `[pipeline.multiline]`, stack traces are joined per file. The lines of a trace still
//! held are not accepted yet, so the checkpoint stays before them
//! ([`Joiner::held_input_bytes`]); a held trace is sent when it is due (checked every poll),
//! when the file is truncated, retired or ends with an unfinished line, and at shutdown.

mod checkpoint;
pub mod config;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use self::checkpoint::{Checkpoints, Claim, Entry, FileId, Fingerprint};
pub use self::config::{FileConfig, StartAt};
use crate::pipeline::EventSender;
use crate::pipeline::event::RawLine;
use crate::pipeline::multiline::Joiner;

/// Bytes per `read` call.
const READ_BYTES: usize = 256 * 1024;

/// Most bytes read from one file before the other files get their turn.
const READ_TURN_BYTES: u64 = 16 * 1024 * 1024;

/// A batch is sent once it holds this many bytes of lines...
pub const BATCH_MAX_BYTES: usize = 1024 * 1024;

/// ...or this many lines.
pub const BATCH_MAX_LINES: usize = 10_000;

/// An unfinished line longer than this is shipped as it is (then cut by the pipeline's
/// event limit), so that one endless line cannot hold memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// A last line still without its newline after this long is shipped as it is: an
/// application that died mid-line still has its last words delivered. (A writer that pauses
/// longer than this inside a line gets it split in two.)
pub const IDLE_FLUSH: Duration = Duration::from_secs(5);

/// How long a file that no longer matches the globs (rotated away, deleted) is still read
/// after its last new byte.
pub const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// Least time between two checkpoint writes (one more is written at shutdown).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The limits above, shortened by tests.
#[derive(Debug, Clone)]
struct Tuning {
    batch_max_bytes: usize,
    batch_max_lines: usize,
    max_line_bytes: usize,
    idle_flush: Duration,
    rotate_wait: Duration,
    checkpoint_every: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            batch_max_bytes: BATCH_MAX_BYTES,
            batch_max_lines: BATCH_MAX_LINES,
            max_line_bytes: MAX_LINE_BYTES,
            idle_flush: IDLE_FLUSH,
            rotate_wait: ROTATE_WAIT,
            checkpoint_every: CHECKPOINT_EVERY,
        }
    }
}

/// Follows the files matching `config.include` until `shutdown` fires (or the pipeline
/// closes), then writes the checkpoint and returns. I/O errors on files are logged and
/// retried, never fatal; only an invalid glob is an error.
pub async fn run(
    config: FileConfig,
    out: EventSender,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(config, out, shutdown, Tuning::default()).await
}

async fn run_with(
    config: FileConfig,
    out: EventSender,
    shutdown: CancellationToken,
    tuning: Tuning,
) -> anyhow::Result<()> {
    for pattern in &config.include {
        glob::Pattern::new(pattern)
            .with_context(|| format!("invalid file source glob {pattern:?}"))?;
    }
    let output = Output {
        out,
        shutdown,
        runtime: Handle::current(),
    };
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        FileSource::new(config, tuning, output).run();
    })
    .await
    .context("the file source thread panicked")
}

/// Reading stopped early: shutdown was requested or the pipeline closed.
#[derive(Debug)]
struct Stopped;

/// The way out of the blocking thread.
#[derive(Debug)]
struct Output {
    out: EventSender,
    shutdown: CancellationToken,
    runtime: Handle,
}

impl Output {
    /// Sends `lines`, waiting while the pipeline is full. Shutdown interrupts only that
    /// wait: the batch is then not accepted (or partly) and is read again after a restart.
    fn send(&self, lines: Vec<RawLine>) -> Result<(), Stopped> {
        let accepted = self.runtime.block_on(async {
            tokio::select! {
                biased;
                result = self.out.send(lines) => result.is_ok(),
                () = self.shutdown.cancelled() => false,
            }
        });
        if accepted { Ok(()) } else { Err(Stopped) }
    }

    fn check(&self) -> Result<(), Stopped> {
        if self.shutdown.is_cancelled() {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    fn sleep(&self, duration: Duration) -> Result<(), Stopped> {
        self.runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(duration) => Ok(()),
                () = self.shutdown.cancelled() => Err(Stopped),
            }
        })
    }
}

#[derive(Debug)]
struct FileSource {
    include: Vec<String>,
    start_at: StartAt,
    poll_interval: Duration,
    tuning: Tuning,
    output: Output,
    checkpoints: Checkpoints,
    files: HashMap<FileId, Followed>,
    buffer: Vec<u8>,
    /// Paths whose open failed, so the warning is logged once rather than every poll.
    unreadable: HashSet<PathBuf>,
    first_scan: bool,
}

impl FileSource {
    fn new(config: FileConfig, tuning: Tuning, output: Output) -> Self {
        Self {
            include: config.include,
            start_at: config.start_at,
            poll_interval: Duration::from_millis(config.poll_interval_ms.max(1)),
            tuning,
            output,
            checkpoints: Checkpoints::load(config.checkpoint_path),
            files: HashMap::new(),
            buffer: vec![0; READ_BYTES],
            unreadable: HashSet::new(),
            first_scan: true,
        }
    }

    fn run(mut self) {
        if self.follow().is_err() {
            tracing::debug!("file source stopping");
        }
        // Traces still held go now if the pipeline takes them at once; if not, the
        // checkpoint stays before them and they are read again after a restart.
        for followed in self.files.values_mut() {
            let _ = followed.flush_traces(&self.output, true);
        }
        self.save_checkpoint(true);
    }

    fn follow(&mut self) -> Result<(), Stopped> {
        loop {
            self.scan();
            if self.first_scan {
                self.first_scan = false;
                // Records where start_at put each file, so a restart before the first
                // line does not skip what was written in between.
                self.save_checkpoint(true);
            }
            let more = self.read_all()?;
            self.retire()?;
            self.save_checkpoint(false);
            if more {
                self.output.check()?;
            } else {
                self.output.sleep(self.poll_interval)?;
            }
        }
    }

    /// Expands the globs, opens the files not yet followed, and notes which followed files
    /// no longer match (their path now leads elsewhere, or nowhere).
    fn scan(&mut self) {
        let mut seen = HashSet::new();
        for (listed, path) in list(&self.include, |path| !self.checkpoints.is_own_file(path)) {
            let id = match self.files.get_mut(&listed) {
                Some(followed) => {
                    if followed.path != path {
                        tracing::debug!(from = %followed.path.display(), to = %path.display(), "followed file renamed");
                        followed.path = path;
                    }
                    Some(listed)
                }
                None => self.open(path),
            };
            seen.extend(id);
        }
        for (id, followed) in &mut self.files {
            let matched = seen.contains(id);
            if followed.matched && !matched {
                tracing::info!(path = %followed.path.display(), "file rotated or deleted; reading it to its end");
            }
            followed.matched = matched;
        }
    }

    /// Opens a newly found file and decides where to start reading it.
    fn open(&mut self, path: PathBuf) -> Option<FileId> {
        let opened = File::open(&path).and_then(|file| file.metadata().map(|meta| (file, meta)));
        let (mut file, meta) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                if self.unreadable.insert(path.clone()) {
                    tracing::warn!(path = %path.display(), %error, "cannot open file; will retry");
                }
                return None;
            }
        };
        self.unreadable.remove(&path);
        // Identity from the open handle: the path may have been rotated since it was listed.
        let id = FileId::of(&meta);
        if self.files.contains_key(&id) {
            return Some(id);
        }
        let size = meta.len();
        let start = match self.checkpoints.claim(id, &file) {
            Claim::Resume(offset) if offset <= size => offset,
            Claim::Resume(offset) => {
                tracing::info!(path = %path.display(), offset, size, "file shrank while stopped; reading it from the start");
                0
            }
            Claim::Reused => {
                tracing::info!(path = %path.display(), "new file on a checkpointed inode; reading it from the start");
                0
            }
            Claim::Unknown if self.first_scan && self.start_at == StartAt::End => size,
            Claim::Unknown => 0,
        };
        if let Err(error) = file.seek(SeekFrom::Start(start)) {
            tracing::warn!(path = %path.display(), %error, "cannot seek in file; will retry");
            return None;
        }
        let fingerprint = Fingerprint::read(&file, size).unwrap_or_default();
        tracing::debug!(path = %path.display(), offset = start, "following file");
        let followed = Followed {
            path,
            file,
            position: start,
            partial: Vec::new(),
            committed: start,
            fingerprint,
            checked_size: size,
            last_data: Instant::now(),
            matched: true,
            failing: false,
            joiner: self.output.out.joiner(),
        };
        self.files.insert(id, followed);
        Some(id)
    }

    /// Reads every followed file to its end (or its turn's end). `Ok(true)` when some file
    /// has more to read right away.
    fn read_all(&mut self) -> Result<bool, Stopped> {
        let mut more = false;
        let yield_at = Instant::now() + self.tuning.checkpoint_every;
        for followed in self.files.values_mut() {
            followed.check_truncation(&self.output)?;
            more |= followed.read(&self.output, &mut self.buffer, &self.tuning, yield_at)?;
        }
        Ok(more)
    }

    /// Ships unfinished lines that waited too long, and drops files that no longer match
    /// and have been quiet for `rotate_wait`.
    fn retire(&mut self) -> Result<(), Stopped> {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (id, followed) in &mut self.files {
            let quiet = now.duration_since(followed.last_data);
            if !followed.matched && quiet >= self.tuning.rotate_wait {
                // Nothing will complete its last line any more.
                followed.flush_partial(&self.output)?;
                gone.push(*id);
            } else if !followed.partial.is_empty() && quiet >= self.tuning.idle_flush {
                tracing::debug!(path = %followed.path.display(), "shipping a last line that has no newline");
                followed.flush_partial(&self.output)?;
            } else {
                followed.flush_traces(&self.output, false)?;
            }
        }
        for id in gone {
            let Some(followed) = self.files.remove(&id) else {
                continue;
            };
            tracing::debug!(path = %followed.path.display(), "no longer following file");
            // Renamed out of the globs but still there: remember it in case it comes back.
            if followed.file.metadata().is_ok_and(|meta| meta.nlink() > 0) {
                self.checkpoints.keep_dormant(followed.entry(id));
            }
        }
        Ok(())
    }

    fn save_checkpoint(&mut self, force: bool) {
        if force || self.checkpoints.due(self.tuning.checkpoint_every) {
            let live = self
                .files
                .iter()
                .map(|(id, followed)| followed.entry(*id))
                .collect();
            self.checkpoints.save(live);
        }
    }
}

/// The existing regular files the globs match now that `keep` accepts, by identity (a file
/// matched twice, through two globs or a link, once).
fn list(include: &[String], keep: impl Fn(&Path) -> bool) -> Vec<(FileId, PathBuf)> {
    let mut found = Vec::new();
    let mut ids = HashSet::new();
    for pattern in include {
        // Patterns were validated by `run`.
        let Ok(paths) = glob::glob(pattern) else {
            continue;
        };
        for path in paths {
            let path = match path {
                Ok(path) => path,
                Err(error) => {
                    tracing::debug!(%error, "cannot list a directory for the file source");
                    continue;
                }
            };
            // Gone since it was listed, or not a regular file: skip.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = FileId::of(&meta);
            if meta.is_file() && keep(&path) && ids.insert(id) {
                found.push((id, path));
            }
        }
    }
    found
}

/// One file being read.
#[derive(Debug)]
struct Followed {
    /// Where it was last seen.
    path: PathBuf,
    file: File,
    /// Offset of the next byte to read (where `file`'s cursor is).
    position: u64,
    /// The unfinished last line: read, not yet sent.
    partial: Vec<u8>,
    /// End of the last line the pipeline accepted: what the checkpoint stores.
    committed: u64,
    fingerprint: Fingerprint,
    /// Size at the last truncation check.
    checked_size: u64,
    /// When bytes last arrived (or the file was opened).
    last_data: Instant,
    /// Found by the latest scan.
    matched: bool,
    /// A read error was logged and no read has succeeded since.
    failing: bool,
    /// Stack traces being joined (with `[pipeline.multiline]`).
    joiner: Option<Joiner>,
}

impl Followed {
    fn entry(&self, id: FileId) -> Entry {
        Entry {
            dev: id.dev,
            inode: id.inode,
            path: self.path.clone(),
            offset: self.committed,
            fingerprint: self.fingerprint,
        }
    }

    /// Starts again from 0 when the file was truncated in place (copytruncate): its size
    /// fell below our offset, or its first bytes changed. Extends the fingerprint as the
    /// file grows.
    fn check_truncation(&mut self, output: &Output) -> Result<(), Stopped> {
        let Ok(meta) = self.file.metadata() else {
            return Ok(());
        };
        let size = meta.len();
        if size == self.checked_size && size >= self.position {
            return Ok(());
        }
        self.checked_size = size;
        let rewritten =
            size < self.position || !self.fingerprint.matches(&self.file).unwrap_or(true);
        if rewritten {
            tracing::info!(
                path = %self.path.display(),
                size,
                offset = self.position,
                "file truncated (copytruncate?); reading it again from the start"
            );
            // Its unfinished line will never be completed in this file.
            self.flush_partial(output)?;
            if let Err(error) = self.file.seek(SeekFrom::Start(0)) {
                tracing::warn!(path = %self.path.display(), %error, "cannot seek in file; will retry");
                return Ok(());
            }
            self.position = 0;
            self.committed = 0;
            self.fingerprint = Fingerprint::default();
        }
        if self.fingerprint.len < Fingerprint::MAX_BYTES
            && size > self.fingerprint.len
            && let Ok(fingerprint) = Fingerprint::read(&self.file, size)
        {
            self.fingerprint = fingerprint;
        }
        Ok(())
    }

    /// Reads from `position` to the end of the file (or the end of this file's turn, or
    /// `yield_at` so the checkpoint can be written), sending complete lines in batches.
    /// `Ok(true)` when it stopped before the end.
    fn read(
        &mut self,
        output: &Output,
        buffer: &mut [u8],
        tuning: &Tuning,
        yield_at: Instant,
    ) -> Result<bool, Stopped> {
        let mut batch = Pending::default();
        let mut turn = 0;
        loop {
            output.check()?;
            let read = match self.file.read(buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    if !self.failing {
                        tracing::warn!(path = %self.path.display(), %error, "cannot read file; will retry");
                        self.failing = true;
                    }
                    break;
                }
            };
            self.failing = false;
            self.last_data = Instant::now();
            turn += read as u64;
            let mut split = 0;
            while split < read {
                split += split_lines(&buffer[split..read], &mut self.partial, &mut batch, tuning);
                if batch.is_full(tuning) {
                    let end = self.position + split as u64 - self.partial.len() as u64;
                    self.send(output, &mut batch, end)?;
                }
            }
            self.position += read as u64;
            if turn >= READ_TURN_BYTES || Instant::now() >= yield_at {
                self.send(
                    output,
                    &mut batch,
                    self.position - self.partial.len() as u64,
                )?;
                return Ok(true);
            }
        }
        self.send(
            output,
            &mut batch,
            self.position - self.partial.len() as u64,
        )?;
        Ok(false)
    }

    /// Sends `batch` and, once it is accepted, moves the checkpointed offset to `end`, the
    /// end of its last line (less the lines of a stack trace still held).
    fn send(&mut self, output: &Output, batch: &mut Pending, end: u64) -> Result<(), Stopped> {
        if batch.lines.is_empty() {
            return Ok(());
        }
        batch.bytes = 0;
        let mut lines = std::mem::take(&mut batch.lines);
        if let Some(joiner) = &mut self.joiner {
            lines = joiner.process(lines, tokio::time::Instant::now(), 0);
            joiner.report(output.out.metrics(), output.out.source());
        }
        if !lines.is_empty() {
            output.send(lines)?;
        }
        self.committed = end.saturating_sub(self.held());
        Ok(())
    }

    /// Input bytes of the stack trace held, if any.
    fn held(&self) -> u64 {
        self.joiner.as_ref().map_or(0, Joiner::held_input_bytes)
    }

    /// Sends the stack traces that are due (`all`: the one held, whatever its age).
    fn flush_traces(&mut self, output: &Output, all: bool) -> Result<(), Stopped> {
        let Some(joiner) = &mut self.joiner else {
            return Ok(());
        };
        let end = self.committed + joiner.held_input_bytes();
        let mut lines = Vec::new();
        match all {
            true => joiner.flush_all(&mut lines),
            false => joiner.flush_expired(tokio::time::Instant::now(), &mut lines),
        }
        joiner.report(output.out.metrics(), output.out.source());
        if !lines.is_empty() {
            output.send(lines)?;
        }
        self.committed = end.saturating_sub(self.held());
        Ok(())
    }

    /// Ships the unfinished last line as a line of its own, and the stack trace held: nothing
    /// more will follow them in this file. (Together, so that a line without its newline is
    /// never left held: [`Joiner::held_input_bytes`] counts one per held line.)
    fn flush_partial(&mut self, output: &Output) -> Result<(), Stopped> {
        let mut lines = Vec::new();
        if !self.partial.is_empty() {
            lines.push(RawLine::new(std::mem::take(&mut self.partial)));
        }
        if let Some(joiner) = &mut self.joiner {
            lines = joiner.process(lines, tokio::time::Instant::now(), 0);
            joiner.flush_all(&mut lines);
            joiner.report(output.out.metrics(), output.out.source());
        }
        if !lines.is_empty() {
            output.send(lines)?;
            self.committed = self.position;
        }
        Ok(())
    }
}

/// Lines waiting to be sent.
#[derive(Debug, Default)]
struct Pending {
    lines: Vec<RawLine>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, line: Vec<u8>) {
        self.bytes += line.len();
        self.lines.push(RawLine::new(line));
    }

    fn is_full(&self, tuning: &Tuning) -> bool {
        self.lines.len() >= tuning.batch_max_lines || self.bytes >= tuning.batch_max_bytes
    }
}

/// Splits `chunk` on `\n`, continuing the unfinished line in `partial`, and pushes complete
/// lines (without their `\n`) to `batch`, stopping early when it is full. Returns how many
/// bytes of `chunk` it used; when that is all of them, what followed the last `\n` is in
/// `partial`. A `partial` longer than `max_line_bytes` is pushed in pieces of that size.
fn split_lines(chunk: &[u8], partial: &mut Vec<u8>, batch: &mut Pending, tuning: &Tuning) -> usize {
    let mut start = 0;
    for newline in memchr::memchr_iter(b'\n', chunk) {
        let line = if partial.is_empty() {
            chunk[start..newline].to_vec()
        } else {
            partial.extend_from_slice(&chunk[start..newline]);
            std::mem::take(partial)
        };
        batch.push(line);
        start = newline + 1;
        if batch.is_full(tuning) {
            return start;
        }
    }
    partial.extend_from_slice(&chunk[start..]);
    while partial.len() > tuning.max_line_bytes {
        let rest = partial.split_off(tuning.max_line_bytes);
        batch.push(std::mem::replace(partial, rest));
    }
    chunk.len()
}

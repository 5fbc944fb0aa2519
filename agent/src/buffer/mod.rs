//! The disk buffer: a write-ahead log between the pipeline and the CloudWatch Logs sink.
//!
//! Sources append batches through a [`Writer`]; an append returns only once the record is
//! written (and, with `fsync = "batch"`, synced), which is when the events count as
//! accepted. One writer thread groups concurrent appends into one write and one fsync.
//! A reader thread replays the log into the sink, taking the memory budget for what it
//! holds; every event carries an [`Ack`] of its record, and when the last event of a record
//! is settled (stored, or dropped for a final reason) the record is acknowledged in the
//! segment's `.ack` file. A segment whose records are all acknowledged is deleted.
//!
//! After a crash, the segments left on disk are checked record by record (length and
//! CRC-32): records acknowledged before the crash are skipped, the rest are delivered again
//! (at most the batches that were in flight are duplicated; they are counted as
//! `replayed`). A damaged record costs only itself: the reader resynchronises on the next
//! offset whose length, CRC-32 and layout check out (a torn last write is the same case at
//! the end of a segment), with an error log and a count per damaged stretch.
//!
//! Layout: `<path>/<seq:020>.seg` (records), `<seq:020>.ack` (acknowledged record
//! offsets, u64 LE) and `lock` (held exclusively while an agent uses the directory: two
//! agents on one buffer would deliver and delete each other's records). The size cap counts the bytes of unacknowledged records; at the cap,
//! appends wait, which slows inputs exactly as the memory ceiling does.

pub mod config;
pub mod record;

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use self::config::{DiskBufferConfig, Fsync};
use crate::metrics::Metrics;
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::event::{Ack, Acknowledge, Event};
use crate::pipeline::output::BoxFuture;
use crate::pipeline::{Batch, Closed, Output, TrySendError};

/// Appends grouped into one write and one fsync, at most.
const GROUP_BYTES: usize = 8 << 20;

/// How long the reader and a waiting writer sleep between checks of the stop signals.
const POLL: Duration = Duration::from_millis(100);

/// Pause before retrying a failed write (disk full, I/O error).
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// The acknowledgement of one record, shared by its events (as the pipeline's [`Ack`]).
/// Each event must be settled (stored by CloudWatch, or dropped for a final reason); when
/// the last holder is dropped and every event was settled, the record is acknowledged.
/// Anything else (the shutdown deadline, a sink task that died) leaves it on disk.
#[derive(Debug)]
struct RecordAck {
    seq: u64,
    offset: u64,
    bytes: u64,
    /// Events of the record not yet settled.
    unsettled: AtomicU64,
    acks: std::sync::mpsc::Sender<(u64, u64, u64)>,
    abandon: CancellationToken,
}

impl Acknowledge for RecordAck {
    fn settled(&self, events: usize) {
        self.unsettled.fetch_sub(events as u64, Ordering::AcqRel);
    }
}

impl Drop for RecordAck {
    fn drop(&mut self) {
        if *self.unsettled.get_mut() == 0 && !self.abandon.is_cancelled() {
            let _ = self.acks.send((self.seq, self.offset, self.bytes));
        }
    }
}

/// What the admin endpoints show of the buffer.
#[derive(Debug, Clone)]
pub struct Status {
    shared: Arc<Shared>,
}

impl Status {
    /// Bytes of records not yet acknowledged.
    pub fn bytes(&self) -> u64 {
        self.shared.lock().outstanding
    }

    /// The size cap.
    pub fn limit(&self) -> u64 {
        self.shared.max_bytes
    }

    /// Whether appends are waiting (cap reached, or writes failing).
    pub fn blocked(&self) -> bool {
        self.shared.blocked.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    fsync: bool,
    state: Mutex<State>,
    changed: Condvar,
    blocked: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, seq: u64, extension: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}.{extension}"))
    }

    /// Deletes `seq` once it is sealed and every record in it is acknowledged.
    fn reclaim_if_done(&self, state: &mut State, seq: u64) {
        let done = state.segments.get(&seq).is_some_and(|s| {
            s.sealed
                && if s.damaged {
                    s.read_to_end && s.acked >= s.handed
                } else {
                    s.acked == s.records
                }
        });
        if done {
            if let Some(segment) = state.segments.remove(&seq) {
                // Damaged records will never be acknowledged: they no longer count against
                // the cap (they were counted as corrupt when the reader met them).
                state.outstanding = state.outstanding.saturating_sub(segment.unacked_bytes);
            }
            // The ack file first: an orphan `.ack` could otherwise mark records of a later
            // segment with the same number as delivered.
            for extension in ["ack", "seg"] {
                let path = self.path(seq, extension);
                if let Err(error) = std::fs::remove_file(&path)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a delivered buffer segment");
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    segments: BTreeMap<u64, Segment>,
    /// The writer has stopped: no more records will come.
    closed: bool,
    /// The reader found the active segment damaged: the writer starts a new one.
    roll_requested: bool,
    /// Bytes of unacknowledged records.
    outstanding: u64,
}

#[derive(Debug, Default)]
struct Segment {
    /// End of the records the reader may read (committed, and checked at recovery).
    end: u64,
    /// No more records will be added.
    sealed: bool,
    records: u64,
    acked: u64,
    /// Bytes of this segment's unacknowledged records.
    unacked_bytes: u64,
    /// The reader met damage the writer's `records` count includes (or could not open the
    /// file): the segment is done once the reader has left it and every record it handed
    /// out (`handed`) is acknowledged.
    damaged: bool,
    /// The reader has moved past this segment.
    read_to_end: bool,
    /// Damaged stretches found at recovery (start → next good record), already counted:
    /// the reader jumps over them.
    skips: BTreeMap<u64, u64>,
    /// Records the reader has handed out or skipped as acknowledged.
    handed: u64,
    /// Offsets acknowledged before a restart: the reader skips them.
    preacked: HashSet<u64>,
    ack_file: Option<File>,
}

/// A handle for appending batches. Cheap to clone; the writer thread stops when every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Append>,
}

#[derive(Debug)]
struct Append {
    record: Vec<u8>,
    done: oneshot::Sender<()>,
}

impl Writer {
    /// Writes `events` as one record and returns once it is on disk (synced, with
    /// `fsync = "batch"`). Waits while the size cap is reached or the disk refuses writes.
    pub async fn append(&self, events: &[Event]) -> Result<(), Closed> {
        let mut record = Vec::with_capacity(record::encoded_len(events));
        record::encode(events, &mut record);
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Append { record, done })
            .await
            .map_err(|_| Closed)?;
        wait.await.map_err(|_| Closed)
    }
}

/// The pipeline's output into the buffer: a batch counts as accepted once it is written
/// (synced with `fsync = "batch"`); the buffer's reader feeds the sink.
///
/// A push dropped after its record reached the writer still writes it: the source then
/// does not acknowledge lines that will be delivered, and its client sends them again (a
/// duplicate, never a loss).
#[derive(Debug)]
pub struct DiskOutput {
    writer: Writer,
    status: Status,
}

impl DiskOutput {
    /// An output appending with `writer`, refusing `try_push` while `status` is full.
    pub fn new(writer: Writer, status: Status) -> Self {
        Self { writer, status }
    }
}

impl Output for DiskOutput {
    fn push(&self, events: Vec<Event>, _cost: usize) -> BoxFuture<'_, Result<(), Closed>> {
        Box::pin(async move { self.writer.append(&events).await })
    }

    fn try_push(
        &self,
        events: Vec<Event>,
        _cost: usize,
    ) -> BoxFuture<'_, Result<(), TrySendError>> {
        Box::pin(async move {
            if self.status.blocked() || self.status.bytes() >= self.status.limit() {
                return Err(TrySendError::Full);
            }
            Ok(self.writer.append(&events).await?)
        })
    }
}

/// What was found on disk at start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Segments left by an earlier run.
    pub segments: u64,
    /// Events in unacknowledged records: they will be delivered (again, for those that were
    /// in flight at the crash).
    pub events: u64,
    /// Damaged records (each ends its segment's replay).
    pub corrupt: u64,
}

/// The buffer, opened and checked, before its threads start.
#[derive(Debug)]
pub struct DiskBuffer {
    shared: Arc<Shared>,
    /// Held (locked) for as long as the buffer is in use.
    lock: File,
    /// The segment appends go to.
    active: u64,
    recovered: Recovered,
}

impl DiskBuffer {
    /// Opens (creating) the directory, checks what an earlier run left and starts a new
    /// segment for this run.
    pub fn open(config: &DiskBufferConfig, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.path)?;
        let lock = File::create(config.path.join("lock"))?;
        lock.try_lock().map_err(|error| match error {
            std::fs::TryLockError::WouldBlock => std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "in use by another agent (its lock file is held)",
            ),
            std::fs::TryLockError::Error(error) => error,
        })?;
        let shared = Arc::new(Shared {
            dir: config.path.clone(),
            segment_bytes: config.segment_size_mib << 20,
            max_bytes: config.max_size_mib << 20,
            fsync: config.fsync == Fsync::Batch,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            blocked: AtomicBool::new(false),
            metrics,
        });
        let recovered = recover(&shared)?;
        let active = {
            let mut state = shared.lock();
            let seq = state.segments.keys().next_back().map_or(1, |last| last + 1);
            create_segment(&shared, seq)?;
            state.segments.insert(seq, Segment::default());
            seq
        };
        if recovered.segments > 0 {
            tracing::info!(
                segments = recovered.segments,
                events = recovered.events,
                corrupt = recovered.corrupt,
                "disk buffer: replaying what an earlier run left"
            );
        }
        shared.metrics.disk_buffer_replayed(recovered.events);
        Ok(Self {
            shared,
            lock,
            active,
            recovered,
        })
    }

    /// What [`open`](Self::open) found.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// The admin view.
    pub fn status(&self) -> Status {
        Status {
            shared: self.shared.clone(),
        }
    }

    /// Starts the writer, reader and acknowledgement threads. The reader sends to `out`,
    /// holding `budget` for what it sends, and closes `out` once the writer has stopped and
    /// everything is read; `abandon` (the shutdown deadline) stops it early and keeps
    /// unsettled records on disk.
    pub fn start(
        self,
        budget: MemoryBudget,
        out: mpsc::Sender<Batch>,
        abandon: CancellationToken,
    ) -> std::io::Result<(Writer, Threads)> {
        let (tx, rx) = mpsc::channel(64);
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        let writer = {
            let shared = self.shared.clone();
            let active = self.active;
            let lock = self.lock;
            let abandon = abandon.clone();
            std::thread::Builder::new()
                .name("buffer-writer".into())
                .spawn(move || {
                    write_loop(&shared, active, rx, &abandon);
                    // Released only once no more records can be written.
                    drop(lock);
                })?
        };
        let reader = {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("buffer-reader".into())
                .spawn(move || {
                    read_loop(&shared, &runtime, &budget, &out, &ack_tx, &abandon);
                })?
        };
        let acker = {
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name("buffer-acks".into())
                .spawn(move || ack_loop(&shared, &ack_rx))?
        };
        Ok((
            Writer { tx },
            Threads {
                writer,
                reader,
                acker,
            },
        ))
    }
}

/// The buffer's threads.
#[derive(Debug)]
pub struct Threads {
    writer: std::thread::JoinHandle<()>,
    reader: std::thread::JoinHandle<()>,
    acker: std::thread::JoinHandle<()>,
}

impl Threads {
    /// Waits (blocking) for the writer and the acknowledgements to finish: call after the
    /// sink has returned, so acknowledgements are on disk before exit. The reader is not
    /// waited for: after the deadline it may be blocked on a full pipeline that nobody
    /// drains any more.
    pub fn join(self) {
        let _ = self.writer.join();
        let _ = self.acker.join();
        drop(self.reader);
    }
}

fn create_segment(shared: &Shared, seq: u64) -> std::io::Result<()> {
    match std::fs::remove_file(shared.path(seq, "ack")) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    File::create(shared.path(seq, "seg"))?;
    // The new directory entry must survive a crash too.
    if shared.fsync {
        File::open(&shared.dir)?.sync_all()?;
    }
    Ok(())
}

/// Checks every segment an earlier run left: counts its valid records, skips acknowledged
/// ones, and steps over damaged stretches (each counted once) to the next good record.
fn recover(shared: &Shared) -> std::io::Result<Recovered> {
    let mut seqs: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(&shared.dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
            seqs.push(seq);
        } else if let Some(seq) = name
            .strip_suffix(".ack")
            .and_then(|s| s.parse::<u64>().ok())
        {
            // An ack file without its segment (a crash between the two deletions): its
            // number must not be reused while it exists; remove it.
            if !shared.path(seq, "seg").exists() {
                std::fs::remove_file(shared.path(seq, "ack"))?;
            }
        }
    }
    seqs.sort_unstable();
    let mut recovered = Recovered::default();
    let mut state = shared.lock();
    for seq in seqs {
        recovered.segments += 1;
        let preacked = read_acks(&shared.path(seq, "ack"));
        let file = File::open(shared.path(seq, "seg"))?;
        let len = file.metadata()?.len();
        let mut segment = Segment {
            sealed: true,
            ..Segment::default()
        };
        let mut offset = 0u64;
        while offset < len {
            match read_record(&file, offset, len) {
                Ok(payload) => {
                    let bytes = (record::HEADER_LEN + payload.len()) as u64;
                    segment.records += 1;
                    if preacked.contains(&offset) {
                        segment.acked += 1;
                    } else {
                        state.outstanding += bytes;
                        segment.unacked_bytes += bytes;
                        recovered.events += record::event_count(&payload);
                    }
                    offset += bytes;
                }
                Err(reason) => {
                    recovered.corrupt += 1;
                    shared.metrics.disk_buffer_corrupt(1);
                    let next = resync(&file, offset + 1, len);
                    tracing::error!(
                        segment = %shared.path(seq, "seg").display(),
                        offset,
                        reason,
                        resumes_at = next,
                        "disk buffer: damaged record skipped (a torn last write when nothing follows)"
                    );
                    match next {
                        Some(next) => {
                            segment.skips.insert(offset, next);
                            offset = next;
                        }
                        None => break,
                    }
                }
            }
        }
        segment.end = offset;
        segment.preacked = preacked;
        state.segments.insert(seq, segment);
        shared.reclaim_if_done(&mut state, seq);
    }
    Ok(recovered)
}

fn read_acks(path: &Path) -> HashSet<u64> {
    std::fs::read(path)
        .map(|bytes| {
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The checked payload of the record at `offset`, or why it cannot be trusted.
fn read_record(file: &File, offset: u64, len: u64) -> Result<Vec<u8>, &'static str> {
    let mut header = [0u8; record::HEADER_LEN];
    if len - offset < header.len() as u64 {
        return Err("truncated header");
    }
    file.read_exact_at(&mut header, offset)
        .map_err(|_| "unreadable header")?;
    let (size, crc) = record::header(&header);
    // Every payload holds at least its event count; a zero header (a zero-filled tail
    // after a crash) would otherwise pass as an empty record with CRC 0.
    if !(record::MIN_PAYLOAD_BYTES..=record::MAX_PAYLOAD_BYTES).contains(&size) {
        return Err("impossible length");
    }
    if len - offset - (header.len() as u64) < size as u64 {
        return Err("truncated record");
    }
    let mut payload = vec![0u8; size];
    file.read_exact_at(&mut payload, offset + header.len() as u64)
        .map_err(|_| "unreadable record")?;
    if !record::checksum_ok(&payload, crc) {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

/// The first offset in `from..end` where a whole record checks out (length, CRC-32 and
/// layout), or `None`. Reads the stretch once; a candidate costs a CRC only when its length
/// fits, which text payloads (length fields of ASCII bytes) almost never do.
fn resync(file: &File, from: u64, end: u64) -> Option<u64> {
    if from >= end {
        return None;
    }
    let mut bytes = vec![0u8; usize::try_from(end - from).ok()?];
    file.read_exact_at(&mut bytes, from).ok()?;
    record::find_record(&bytes).map(|at| from + at as u64)
}

/// The writer thread: groups appends, waits for room under the cap, writes, syncs, commits,
/// then answers every append of the group.
fn write_loop(
    shared: &Shared,
    mut active: u64,
    mut rx: mpsc::Receiver<Append>,
    abandon: &CancellationToken,
) {
    let mut file = match OpenOptions::new()
        .append(true)
        .open(shared.path(active, "seg"))
    {
        Ok(file) => file,
        Err(error) => {
            tracing::error!(%error, "disk buffer: cannot open the active segment; inputs will stop");
            return;
        }
    };
    let mut file_len = 0u64;
    let mut group: Vec<Append> = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        let mut bytes = group[0].record.len();
        while bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.record.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let roll_requested = std::mem::take(&mut shared.lock().roll_requested);
        if file_len > 0 && (roll_requested || file_len + bytes as u64 > shared.segment_bytes) {
            match roll(shared, active) {
                Ok((seq, next)) => {
                    active = seq;
                    file = next;
                    file_len = 0;
                }
                Err(error) => {
                    tracing::error!(%error, "disk buffer: cannot start a new segment; writing on in the current one");
                }
            }
        }
        // After a roll: a damaged segment sealed by it can be reclaimed, making room.
        if !wait_for_room(shared, bytes as u64, abandon) {
            // The shutdown deadline passed while full: these appends were never accepted.
            break;
        }
        buffer.clear();
        let mut offsets = Vec::with_capacity(group.len());
        for append in &group {
            offsets.push((file_len + buffer.len() as u64, append.record.len() as u64));
            buffer.extend_from_slice(&append.record);
        }
        write_durably(shared, &mut file, file_len, &buffer);
        file_len += buffer.len() as u64;
        {
            let mut state = shared.lock();
            state.outstanding += buffer.len() as u64;
            if let Some(segment) = state.segments.get_mut(&active) {
                segment.end = file_len;
                segment.records += group.len() as u64;
                segment.unacked_bytes += buffer.len() as u64;
            }
        }
        shared.changed.notify_all();
        for append in group.drain(..) {
            let _ = append.done.send(());
        }
    }
    let mut state = shared.lock();
    state.closed = true;
    if let Some(segment) = state.segments.get_mut(&active) {
        segment.sealed = true;
    }
    shared.reclaim_if_done(&mut state, active);
    drop(state);
    shared.changed.notify_all();
}

/// Waits while `bytes` more would pass the size cap (one record may always be written when
/// nothing else is outstanding, so an oversized record cannot wedge the buffer); false when
/// `abandon` fired meanwhile.
fn wait_for_room(shared: &Shared, bytes: u64, abandon: &CancellationToken) -> bool {
    let mut state = shared.lock();
    while state.outstanding > 0 && state.outstanding + bytes > shared.max_bytes {
        if abandon.is_cancelled() {
            return false;
        }
        if !shared.blocked.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit_bytes = shared.max_bytes,
                "disk buffer full: inputs are slowed until CloudWatch Logs catches up"
            );
        }
        state = shared
            .changed
            .wait_timeout(state, POLL)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    shared.blocked.store(false, Ordering::Relaxed);
    true
}

/// Writes `bytes` at `at` (the committed end), retrying until the disk takes them: a failed
/// write is cut back off so the segment never holds a torn record followed by good ones.
fn write_durably(shared: &Shared, file: &mut File, at: u64, bytes: &[u8]) {
    let mut failures = 0u64;
    loop {
        let result = file.write_all(bytes).and_then(|()| {
            if shared.fsync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "disk buffer: writes succeed again");
                }
                shared.blocked.store(false, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                failures += 1;
                shared.metrics.disk_buffer_write_error();
                shared.blocked.store(true, Ordering::Relaxed);
                if failures == 1 {
                    tracing::error!(%error, "disk buffer: write failed (disk full?); inputs wait and the write is retried");
                }
                let _ = file.set_len(at);
                std::thread::sleep(WRITE_RETRY);
            }
        }
    }
}

/// Seals `active` and starts the next segment.
fn roll(shared: &Shared, active: u64) -> std::io::Result<(u64, File)> {
    let next = active + 1;
    create_segment(shared, next)?;
    let file = OpenOptions::new()
        .append(true)
        .open(shared.path(next, "seg"))?;
    let mut state = shared.lock();
    state.segments.insert(next, Segment::default());
    if let Some(segment) = state.segments.get_mut(&active) {
        segment.sealed = true;
    }
    shared.reclaim_if_done(&mut state, active);
    drop(state);
    shared.changed.notify_all();
    Ok((next, file))
}

/// The reader thread: follows the segments in order and hands their records to the sink.
fn read_loop(
    shared: &Shared,
    runtime: &tokio::runtime::Handle,
    budget: &MemoryBudget,
    out: &mpsc::Sender<Batch>,
    acks: &std::sync::mpsc::Sender<(u64, u64, u64)>,
    abandon: &CancellationToken,
) {
    let mut seq = 0u64;
    let mut offset = 0u64;
    let mut file: Option<File> = None;
    let mut preacked = HashSet::new();
    loop {
        // Find the next readable range, waiting for the writer when caught up.
        let end = {
            let mut state = shared.lock();
            loop {
                if abandon.is_cancelled() {
                    return;
                }
                let current = state.segments.get(&seq).map(|s| (s.end, s.sealed));
                match current {
                    Some((end, _)) if offset < end => break end,
                    Some((_, false)) => {}
                    // Sealed and read, or never existed / already reclaimed: move on.
                    _ => {
                        if let Some(segment) = state.segments.get_mut(&seq)
                            && !segment.read_to_end
                        {
                            segment.read_to_end = true;
                            shared.reclaim_if_done(&mut state, seq);
                        }
                        let next = state.segments.range(seq + 1..).next().map(|(k, _)| *k);
                        match next {
                            Some(next) => {
                                seq = next;
                                offset = 0;
                                file = None;
                                preacked = state
                                    .segments
                                    .get_mut(&next)
                                    .map(|s| std::mem::take(&mut s.preacked))
                                    .unwrap_or_default();
                                continue;
                            }
                            None if state.closed => return,
                            None => {}
                        }
                    }
                }
                state = shared
                    .changed
                    .wait_timeout(state, POLL)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        };
        if file.is_none() {
            match File::open(shared.path(seq, "seg")) {
                Ok(opened) => file = Some(opened),
                Err(error) => {
                    tracing::error!(%error, seq, "disk buffer: cannot open a segment; it is skipped");
                    shared.metrics.disk_buffer_corrupt(1);
                    skip_segment(shared, seq);
                    offset = u64::MAX;
                    continue;
                }
            }
        }
        let Some(segment_file) = &file else { continue };
        while offset < end {
            let payload = match read_record(segment_file, offset, end) {
                Ok(payload) => payload,
                Err(reason) => {
                    offset = step_over_damage(shared, segment_file, seq, offset, end, reason);
                    continue;
                }
            };
            let at = offset;
            let bytes = (record::HEADER_LEN + payload.len()) as u64;
            offset += bytes;
            if let Some(segment) = shared.lock().segments.get_mut(&seq) {
                segment.handed += 1;
            }
            if preacked.remove(&at) {
                continue;
            }
            let Some(mut events) = record::decode(&payload) else {
                tracing::error!(seq, offset = at, "disk buffer: undecodable record; skipped");
                shared.metrics.disk_buffer_corrupt(1);
                let _ = acks.send((seq, at, bytes));
                continue;
            };
            let ack = Ack::new(Arc::new(RecordAck {
                seq,
                offset: at,
                bytes,
                unsettled: AtomicU64::new(events.len() as u64),
                acks: acks.clone(),
                abandon: abandon.clone(),
            }));
            for event in &mut events {
                event.ack = Some(ack.clone());
            }
            drop(ack);
            // In pieces of at most a quarter of the budget (a record written under a larger
            // ceiling than this run's must still fit), each holding exactly what it takes.
            let chunk_limit = (budget.limit() / 4).max(1);
            let mut events = events.into_iter().peekable();
            while events.peek().is_some() {
                let mut chunk = Vec::new();
                let mut cost = 0;
                while let Some(event) =
                    events.next_if(|e| chunk.is_empty() || cost + e.cost() <= chunk_limit)
                {
                    cost += event.cost();
                    chunk.push(event);
                }
                let acquired = runtime.block_on(async {
                    tokio::select! {
                        taken = budget.acquire(cost) => Some(taken),
                        () = abandon.cancelled() => None,
                    }
                });
                let Some(taken) = acquired else { return };
                if out.blocking_send(Batch { events: chunk }).is_err() {
                    budget.release(taken);
                    return;
                }
            }
        }
    }
}

/// Where reading resumes after the damaged record at `offset`: a stretch found at recovery
/// is jumped silently (it was counted then); damage met now is counted, logged, and the
/// segment marked so its unreadable records are not waited for.
fn step_over_damage(
    shared: &Shared,
    file: &File,
    seq: u64,
    offset: u64,
    end: u64,
    reason: &'static str,
) -> u64 {
    let known = shared
        .lock()
        .segments
        .get(&seq)
        .and_then(|s| s.skips.get(&offset).copied());
    if let Some(next) = known {
        return next;
    }
    let next = resync(file, offset + 1, end);
    tracing::error!(
        seq,
        offset,
        reason,
        resumes_at = next,
        "disk buffer: damaged record skipped"
    );
    shared.metrics.disk_buffer_corrupt(1);
    if let Some(segment) = shared.lock().segments.get_mut(&seq) {
        segment.damaged = true;
    }
    next.unwrap_or(end)
}

/// Gives up on the rest of segment `seq` (damaged or unreadable): only the records read
/// so far can be acknowledged; the segment is reclaimed once they are. When it is the
/// segment being written, the writer moves on to a new one.
fn skip_segment(shared: &Shared, seq: u64) {
    let mut state = shared.lock();
    let sealed = match state.segments.get_mut(&seq) {
        Some(segment) => {
            segment.damaged = true;
            segment.sealed
        }
        None => true,
    };
    if !sealed {
        state.roll_requested = true;
    }
    shared.reclaim_if_done(&mut state, seq);
    drop(state);
    shared.changed.notify_all();
}

/// The acknowledgement thread: records acknowledgements and reclaims finished segments.
fn ack_loop(shared: &Shared, acks: &std::sync::mpsc::Receiver<(u64, u64, u64)>) {
    while let Ok((seq, offset, bytes)) = acks.recv() {
        let mut state = shared.lock();
        state.outstanding = state.outstanding.saturating_sub(bytes);
        if let Some(segment) = state.segments.get_mut(&seq) {
            segment.acked += 1;
            segment.unacked_bytes = segment.unacked_bytes.saturating_sub(bytes);
            if segment.ack_file.is_none() {
                segment.ack_file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(shared.path(seq, "ack"))
                    .map_err(|error| tracing::warn!(%error, "disk buffer: cannot open an ack file; delivered records may be sent again after a crash"))
                    .ok();
            }
            if let Some(ack_file) = &mut segment.ack_file {
                let _ = ack_file.write_all(&offset.to_le_bytes());
            }
        }
        shared.reclaim_if_done(&mut state, seq);
        drop(state);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_size_mib: u64) -> DiskBufferConfig {
        DiskBufferConfig {
            path: dir.to_path_buf(),
            max_size_mib,
            segment_size_mib: 1,
            fsync: Fsync::Batch,
        }
    }

    fn events(first: usize, n: usize, size: usize) -> Vec<Event> {
        (first..first + n)
            .map(|i| {
                let mut message = format!("{i:08}:");
                message.push_str(&"x".repeat(size.saturating_sub(message.len())));
                Event {
                    time_ms: i as i64,
                    message,
                    level: None,
                    container: None,
                    request_id: None,
                    ack: None,
                }
            })
            .collect()
    }

    struct Running {
        writer: Writer,
        status: Status,
        rx: mpsc::Receiver<Batch>,
        abandon: CancellationToken,
        threads: Threads,
        recovered: Recovered,
    }

    fn start(dir: &Path, max_size_mib: u64) -> Running {
        let metrics = Arc::new(Metrics::default());
        let buffer = DiskBuffer::open(&config(dir, max_size_mib), metrics).unwrap();
        let recovered = buffer.recovered();
        let status = buffer.status();
        let (tx, rx) = mpsc::channel(1024);
        let abandon = CancellationToken::new();
        let (writer, threads) = buffer
            .start(MemoryBudget::new(64 << 20), tx, abandon.clone())
            .unwrap();
        Running {
            writer,
            status,
            rx,
            abandon,
            threads,
            recovered,
        }
    }

    /// Receives until `n` events arrived; returns their ids in order (events dropped, so
    /// acknowledged, unless `keep`).
    async fn receive(
        rx: &mut mpsc::Receiver<Batch>,
        n: usize,
        keep: &mut Vec<Event>,
    ) -> Vec<usize> {
        let mut ids = Vec::new();
        while ids.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("events in time")
                .expect("open");
            for event in batch.events {
                ids.push(event.message[..8].parse().unwrap());
                keep.push(event);
            }
        }
        ids
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "lock")
            .collect();
        names.sort();
        names
    }

    /// Delivers `events`: each is settled, then dropped (acknowledging its record).
    fn settle(events: Vec<Event>) {
        for event in &events {
            event.ack.as_ref().unwrap().settled(1);
        }
    }

    /// Simulates `kill -9`: nothing settled afterwards is acknowledged.
    /// (The threads are joined so the directory lock is free for the next start, as the
    /// kernel frees it after a real `kill -9`.)
    fn crash(running: Running, keep: Vec<Event>) {
        running.abandon.cancel();
        drop(keep);
        drop(running.writer);
        drop(running.rx);
        running.threads.join();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_dropped_unsettled_stay_on_disk_even_before_the_deadline() {
        // A sink task that dies (or a pipeline torn down) drops its events without a
        // final outcome: their records must not be acknowledged.
        let dir = tempfile::tempdir().unwrap();
        let mut run = start(dir.path(), 16);
        run.writer.append(&events(0, 50, 100)).await.unwrap();
        let mut keep = Vec::new();
        receive(&mut run.rx, 50, &mut keep).await;
        drop(keep);
        drop(run.writer);
        drop(run.rx);
        let _ = tokio::task::spawn_blocking(move || run.threads.join()).await;
        let run = start(dir.path(), 16);
        assert_eq!(run.recovered.events, 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_orphan_ack_file_cannot_mark_a_new_segments_records_delivered() {
        // A crash between deleting a segment and its ack file leaves `<seq>.ack` behind;
        // the next segment with that number must not inherit its offsets.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(format!("{:020}.ack", 1)),
            0u64.to_le_bytes(),
        )
        .unwrap();
        let run = start(dir.path(), 16);
        run.writer.append(&events(0, 10, 100)).await.unwrap();
        crash(run, Vec::new());
        let run = start(dir.path(), 16);
        assert_eq!(run.recovered.events, 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivered_records_are_acknowledged_and_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = start(dir.path(), 4);
        // 30 records of ~100 KiB: three segments of 1 MiB.
        for i in 0..30 {
            run.writer
                .append(&events(i * 10, 10, 10_000))
                .await
                .unwrap();
        }
        let mut keep = Vec::new();
        let ids = receive(&mut run.rx, 300, &mut keep).await;
        assert_eq!(ids, (0..300).collect::<Vec<_>>(), "in order, exactly once");
        assert!(run.status.bytes() > 0, "unsettled records still count");
        settle(keep);
        drop(run.writer);
        let _ = tokio::task::spawn_blocking(move || run.threads.join()).await;
        assert_eq!(run.status.bytes(), 0);
        assert!(
            segment_files(dir.path()).is_empty(),
            "every segment reclaimed: {:?}",
            segment_files(dir.path())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_crash_only_unacknowledged_records_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = start(dir.path(), 16);
        for i in 0..20 {
            run.writer.append(&events(i * 5, 5, 50_000)).await.unwrap();
        }
        let mut keep = Vec::new();
        receive(&mut run.rx, 100, &mut keep).await;
        // The first 40 events (8 records) are delivered; the rest are in flight at the crash.
        let in_flight = keep.split_off(40);
        settle(keep);
        tokio::time::sleep(Duration::from_millis(200)).await;
        crash(run, in_flight);

        let mut run = start(dir.path(), 16);
        assert_eq!(run.recovered.events, 60);
        assert_eq!(run.recovered.corrupt, 0);
        let mut keep = Vec::new();
        let ids = receive(&mut run.rx, 60, &mut keep).await;
        assert_eq!(ids, (40..100).collect::<Vec<_>>());
        settle(keep);
        drop(run.writer);
        let _ = tokio::task::spawn_blocking(move || run.threads.join()).await;
        assert!(segment_files(dir.path()).is_empty());
    }

    /// Writes 25 records of 10 events (~100 KiB each, so three 1 MiB segments), crashes,
    /// lets `damage` edit the first (or, with `last`, the last) segment file given the
    /// record size, restarts, and returns (recovered corrupt count, ids delivered).
    async fn replay_after(
        last: bool,
        damage: impl FnOnce(&mut Vec<u8>, usize),
    ) -> (u64, Vec<usize>) {
        let dir = tempfile::tempdir().unwrap();
        let run = start(dir.path(), 16);
        for i in 0..25 {
            run.writer
                .append(&events(i * 10, 10, 10_000))
                .await
                .unwrap();
        }
        crash(run, Vec::new());
        let files = segment_files(dir.path());
        let mut segments = files.iter().filter(|f| f.ends_with(".seg"));
        let chosen = if last {
            segments.next_back()
        } else {
            segments.next()
        };
        let path = dir.path().join(chosen.unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes, record::encoded_len(&events(0, 10, 10_000)));
        std::fs::write(&path, bytes).unwrap();

        let mut run = start(dir.path(), 16);
        let corrupt = run.recovered.corrupt;
        let mut keep = Vec::new();
        let ids = receive(&mut run.rx, run.recovered.events as usize, &mut keep).await;
        settle(keep);
        drop(run.writer);
        let _ = tokio::task::spawn_blocking(move || run.threads.join()).await;
        assert!(
            segment_files(dir.path()).is_empty(),
            "the damaged segment is reclaimed too: {:?}",
            segment_files(dir.path())
        );
        (corrupt, ids)
    }

    fn all_but(lost: std::ops::Range<usize>) -> Vec<usize> {
        (0..250).filter(|i| !lost.contains(i)).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_record_costs_only_itself_at_the_start_middle_and_end_of_a_segment() {
        // Regression: one flipped byte used to cost the rest of its segment (half of it
        // when in the middle).
        for (name, record) in [("start", 0), ("middle", 4), ("end", 9)] {
            let (corrupt, ids) = replay_after(false, |bytes, size| {
                assert!(bytes.len() >= 10 * size, "ten records in the first segment");
                bytes[record * size + size / 2] ^= 0xff;
            })
            .await;
            assert_eq!(corrupt, 1, "{name}");
            assert_eq!(ids, all_but(record * 10..record * 10 + 10), "{name}");
        }
        // A damaged length field: the record's own bytes are scanned past.
        let (corrupt, ids) = replay_after(false, |bytes, size| bytes[3 * size + 1] ^= 0x01).await;
        assert_eq!(corrupt, 1);
        assert_eq!(ids, all_but(30..40));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_last_write_or_a_zero_filled_tail_costs_only_that_write() {
        let (corrupt, ids) =
            replay_after(true, |bytes, size| bytes.truncate(bytes.len() - size / 3)).await;
        assert_eq!(corrupt, 1);
        assert_eq!(ids, all_but(240..250));
        let (corrupt, ids) =
            replay_after(true, |bytes, _| bytes.extend_from_slice(&[0; 4096])).await;
        assert_eq!(corrupt, 1);
        assert_eq!(ids, all_but(0..0));
    }

    #[test]
    fn a_directory_in_use_by_another_agent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let first = DiskBuffer::open(&config(dir.path(), 16), metrics.clone()).unwrap();
        let error = DiskBuffer::open(&config(dir.path(), 16), metrics.clone()).unwrap_err();
        assert!(
            error.to_string().contains("in use by another agent"),
            "{error}"
        );
        drop(first);
        DiskBuffer::open(&config(dir.path(), 16), metrics).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_blocks_appends_and_counts_the_failures_instead_of_accepting() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let buffer = DiskBuffer::open(&config(dir.path(), 16), metrics.clone()).unwrap();
        // The active segment becomes /dev/full: every write fails with ENOSPC.
        let active = dir.path().join(format!("{:020}.seg", buffer.active));
        std::fs::remove_file(&active).unwrap();
        std::os::unix::fs::symlink("/dev/full", &active).unwrap();
        let status = buffer.status();
        let (tx, _rx) = mpsc::channel(16);
        let abandon = CancellationToken::new();
        let (writer, _threads) = buffer
            .start(MemoryBudget::new(1 << 20), tx, abandon.clone())
            .unwrap();
        let append = tokio::spawn(async move { writer.append(&events(0, 3, 100)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !append.is_finished(),
            "not accepted while the disk refuses it"
        );
        assert!(status.blocked(), "shows in /ready and /metrics");
        let text = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            !text.contains("agent_disk_buffer_write_errors_total 0\n"),
            "write errors are counted"
        );
        abandon.cancel();
        append.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_wait_at_the_size_cap_until_records_are_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = start(dir.path(), 2);
        // ~1.5 MiB outstanding, then a 1 MiB append would pass the 2 MiB cap.
        for i in 0..3 {
            run.writer.append(&events(i * 5, 5, 100_000)).await.unwrap();
        }
        let blocked = {
            let writer = run.writer.clone();
            tokio::spawn(async move { writer.append(&events(15, 10, 100_000)).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!blocked.is_finished(), "the append waits at the cap");
        assert!(run.status.blocked());
        let mut keep = Vec::new();
        receive(&mut run.rx, 15, &mut keep).await;
        settle(keep);
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("room after the acknowledgements")
            .unwrap()
            .unwrap();
        assert!(!run.status.blocked());
    }
}

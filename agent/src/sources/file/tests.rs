//! End-to-end tests of the file source: real files in a temporary directory, a real
//! pipeline, results awaited with a deadline.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::DropGuard;

use super::checkpoint::{self, Entry};
use super::*;
use crate::metrics::{Metrics, SourceKind};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::parse::ParseFields;
use crate::pipeline::{self, Batch, Processor};

const DEADLINE: Duration = Duration::from_secs(10);
const MIB: usize = 1024 * 1024;

/// A running file source and the sink end of its pipeline.
struct Tail {
    rx: mpsc::Receiver<Batch>,
    budget: MemoryBudget,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Stops the source if a test fails before `stop`.
    _guard: DropGuard,
}

impl Tail {
    fn start(config: FileConfig, tuning: Tuning, budget_bytes: usize) -> Self {
        Self::start_with(config, tuning, budget_bytes, processor())
    }

    fn start_with(
        config: FileConfig,
        tuning: Tuning,
        budget_bytes: usize,
        processor: Processor,
    ) -> Self {
        let budget = MemoryBudget::new(budget_bytes);
        let (senders, rx) =
            pipeline::channel(processor, budget.clone(), Arc::new(Metrics::default()));
        let shutdown = CancellationToken::new();
        let out = senders.for_source(SourceKind::File);
        let task = tokio::spawn(run_with(config, out, shutdown.clone(), tuning));
        Self {
            rx,
            budget,
            _guard: shutdown.clone().drop_guard(),
            shutdown,
            task,
        }
    }

    /// Waits for `n` lines, giving their budget back as a sink would.
    async fn lines(&mut self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut lines = Vec::new();
        while lines.len() < n {
            let Ok(batch) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                panic!("timed out with {} of {n} lines: {lines:?}", lines.len());
            };
            let batch = batch.expect("the source stopped early");
            self.budget.release(batch.cost());
            lines.extend(batch.events.into_iter().map(|event| event.message));
        }
        lines
    }

    /// Stops the source, then returns the lines it sent that were not received yet.
    async fn stop(mut self) -> Vec<String> {
        self.shutdown.cancel();
        let result = tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("the source stops promptly");
        result.unwrap().unwrap();
        let mut rest = Vec::new();
        while let Ok(batch) = self.rx.try_recv() {
            rest.extend(batch.events.into_iter().map(|event| event.message));
        }
        rest
    }
}

fn processor() -> Processor {
    let fields = ParseFields {
        timestamp: "timestamp".into(),
        level: "level".into(),
        timing: None,
    };
    Processor::new(fields, None, MIB)
}

/// Follows `<dir>/logs/*.log`, checkpointing to `<dir>/state/checkpoint.json`.
fn config(dir: &Path, start_at: StartAt) -> FileConfig {
    fs::create_dir_all(dir.join("logs")).unwrap();
    let dir_pattern = glob::Pattern::escape(&dir.display().to_string());
    FileConfig {
        include: vec![format!("{dir_pattern}/logs/*.log")],
        checkpoint_path: dir.join("state/checkpoint.json"),
        start_at,
        poll_interval_ms: 10,
    }
}

/// `<dir>/logs/<name>`, creating the directory.
fn log(dir: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(dir.join("logs")).unwrap();
    dir.join("logs").join(name)
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn stored(dir: &Path) -> Vec<Entry> {
    checkpoint::load(&dir.join("state/checkpoint.json"))
        .unwrap()
        .unwrap_or_default()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The checkpoint is first written right after the first scan.
async fn first_scan_done(dir: &Path) {
    eventually("the first scan", || {
        dir.join("state/checkpoint.json").exists()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_existing_lines_and_beginning_reads_them() {
    for (start_at, expected) in [
        (StartAt::End, vec!["new"]),
        (StartAt::Beginning, vec!["old 1", "old 2", "new"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), start_at);
        append(&log(dir.path(), "app.log"), b"old 1\nold 2\n");
        let mut tail = Tail::start(config, Tuning::default(), MIB);
        first_scan_done(dir.path()).await;
        append(&log(dir.path(), "app.log"), b"new\n");
        assert_eq!(tail.lines(expected.len()).await, expected, "{start_at:?}");
        assert!(tail.stop().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_after_start_is_read_from_its_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let mut tail = Tail::start(config(dir.path(), StartAt::End), Tuning::default(), MIB);
    first_scan_done(dir.path()).await;
    append(&log(dir.path(), "ignored.txt"), b"not matched\n");
    append(&log(dir.path(), "late.log"), b"one\ntwo\n");
    assert_eq!(tail.lines(2).await, ["one", "two"]);
    assert!(tail.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_delivers_old_and_new_lines_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    append(&path, b"a1\na2\n");
    let tuning = Tuning {
        rotate_wait: Duration::from_secs(2),
        ..Tuning::default()
    };
    let mut tail = Tail::start(config(dir.path(), StartAt::End), tuning, MIB);
    first_scan_done(dir.path()).await;
    append(&path, b"a3\n");
    assert_eq!(tail.lines(1).await, ["a3"]);

    let mut old = OpenOptions::new().append(true).open(&path).unwrap();
    fs::rename(&path, log(dir.path(), "app.log.1")).unwrap();
    old.write_all(b"a4\n").unwrap();
    append(&path, b"b1\n");
    let mut lines = tail.lines(2).await;
    // The application still writes to the old file after the new one is found.
    old.write_all(b"a5\n").unwrap();
    append(&path, b"b2\n");
    lines.extend(tail.lines(2).await);

    let from = |prefix: &str| {
        lines
            .iter()
            .filter(|line| line.starts_with(prefix))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(from("a"), ["a4", "a5"]);
    assert_eq!(
        from("b"),
        ["b1", "b2"],
        "the new file is read from its start despite start_at = end"
    );
    // The old file is dropped once quiet, and its entry pruned: its path is the new file's.
    let new_file = FileId::of(&fs::metadata(&path).unwrap());
    eventually("the old file to be dropped", || {
        let entries = stored(dir.path());
        entries.len() == 1 && entries[0].id() == new_file && entries[0].offset == 6
    })
    .await;
    assert!(tail.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_and_in_place_rewrites_are_read_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    append(&path, b"a fairly long first line\nand a second one\n");
    let mut tail = Tail::start(
        config(dir.path(), StartAt::Beginning),
        Tuning::default(),
        MIB,
    );
    assert_eq!(
        tail.lines(2).await,
        ["a fairly long first line", "and a second one"]
    );

    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"short\n");
    assert_eq!(tail.lines(1).await, ["short"]);

    // Rewritten past our offset in one write: only the changed first bytes tell.
    let rewrite = b"rewritten 1\nrewritten 2\n";
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(rewrite)
        .unwrap();
    assert_eq!(tail.lines(2).await, ["rewritten 1", "rewritten 2"]);
    assert!(tail.stop().await.is_empty());
    assert_eq!(stored(dir.path())[0].offset, rewrite.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_at_the_checkpoint_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    append(&path, b"1\n2\n3\n");
    let mut tail = Tail::start(
        config(dir.path(), StartAt::Beginning),
        Tuning::default(),
        MIB,
    );
    assert_eq!(tail.lines(3).await, ["1", "2", "3"]);
    assert!(tail.stop().await.is_empty());
    assert_eq!(stored(dir.path())[0].offset, 6);

    append(&path, b"4\n5\n");
    // The checkpoint wins over start_at, whichever it is.
    let mut tail = Tail::start(config(dir.path(), StartAt::End), Tuning::default(), MIB);
    append(&path, b"6\n");
    assert_eq!(tail.lines(3).await, ["4", "5", "6"]);
    assert!(tail.stop().await.is_empty());
    assert_eq!(stored(dir.path())[0].offset, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    append(&path, b"first\nhel");
    let mut tail = Tail::start(
        config(dir.path(), StartAt::Beginning),
        Tuning::default(),
        MIB,
    );
    assert_eq!(tail.lines(1).await, ["first"]);
    append(&path, b"lo\n");
    assert_eq!(tail.lines(1).await, ["hello"]);
    assert!(tail.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_line_without_newline_is_shipped_after_idle_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    append(&path, b"last words");
    let tuning = Tuning {
        idle_flush: Duration::from_millis(100),
        ..Tuning::default()
    };
    let mut tail = Tail::start(config(dir.path(), StartAt::Beginning), tuning, MIB);
    assert_eq!(tail.lines(1).await, ["last words"]);
    assert!(tail.stop().await.is_empty());
    assert_eq!(stored(dir.path())[0].offset, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_lines_still_arrive() {
    let dir = tempfile::tempdir().unwrap();
    append(&log(dir.path(), "app.log"), b"a\xffb\nok\r\n");
    let mut tail = Tail::start(
        config(dir.path(), StartAt::Beginning),
        Tuning::default(),
        MIB,
    );
    assert_eq!(tail.lines(2).await, ["a\u{fffd}b", "ok"]);
    assert!(tail.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_read_through_its_handle_then_dropped_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (doomed, kept) = (log(dir.path(), "doomed.log"), log(dir.path(), "kept.log"));
    append(&doomed, b"x\n");
    append(&kept, b"y\n");
    let tuning = Tuning {
        rotate_wait: Duration::from_millis(500),
        ..Tuning::default()
    };
    let mut tail = Tail::start(config(dir.path(), StartAt::Beginning), tuning, MIB);
    let mut lines = tail.lines(2).await;
    lines.sort();
    assert_eq!(lines, ["x", "y"]);
    let mut handle = OpenOptions::new().append(true).open(&doomed).unwrap();
    fs::remove_file(&doomed).unwrap();
    handle.write_all(b"after delete\n").unwrap();
    assert_eq!(tail.lines(1).await, ["after delete"]);
    eventually("the deleted file's entry to be pruned", || {
        stored(dir.path())
            .iter()
            .map(|entry| entry.path.clone())
            .collect::<Vec<_>>()
            == [kept.clone()]
    })
    .await;
    assert!(tail.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_keeps_the_checkpoint_at_accepted_lines() {
    let dir = tempfile::tempdir().unwrap();
    let line = |i: usize| format!("{i:03} {}", "x".repeat(96));
    let all: Vec<String> = (0..200).map(line).collect();
    append(
        &log(dir.path(), "app.log"),
        format!("{}\n", all.join("\n")).as_bytes(),
    );
    // Room for about a dozen events, and nobody gives it back.
    let tuning = Tuning {
        batch_max_lines: 10,
        ..Tuning::default()
    };
    let tail = Tail::start(config(dir.path(), StartAt::Beginning), tuning, 2_000);
    eventually("some lines to be accepted", || tail.budget.in_use() > 0).await;
    let accepted = tail.stop().await;
    assert!(
        accepted.len() < all.len(),
        "the budget cannot hold every line"
    );
    assert_eq!(accepted, all[..accepted.len()]);
    let offset = stored(dir.path())[0].offset as usize;
    let line_bytes = all[0].len() + 1;
    assert!(
        offset > 0 && offset.is_multiple_of(line_bytes),
        "offset {offset} is at the end of a line"
    );
    assert!(
        offset / line_bytes <= accepted.len(),
        "offset {offset} is past the {} accepted lines",
        accepted.len()
    );

    // A restart with a draining sink resumes right there: nothing lost.
    let resumed = offset / line_bytes;
    let mut tail = Tail::start(
        config(dir.path(), StartAt::Beginning),
        Tuning::default(),
        MIB,
    );
    assert_eq!(tail.lines(all.len() - resumed).await, all[resumed..]);
    assert!(tail.stop().await.is_empty());
}

#[tokio::test]
async fn an_invalid_glob_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), StartAt::End);
    config.include = vec!["[unclosed".into()];
    let (senders, _rx) = pipeline::channel(
        Processor::new(
            ParseFields {
                timestamp: "t".into(),
                level: "l".into(),
                timing: None,
            },
            None,
            MIB,
        ),
        MemoryBudget::new(MIB),
        Arc::new(Metrics::default()),
    );
    let out = senders.for_source(SourceKind::File);
    assert!(
        run_with(config, out, CancellationToken::new(), Tuning::default())
            .await
            .is_err()
    );
}

#[test]
fn split_lines_keeps_the_unfinished_line_cuts_it_at_the_limit_and_stops_when_full() {
    let tuning = Tuning {
        max_line_bytes: 4,
        batch_max_lines: 3,
        ..Tuning::default()
    };
    let mut partial = Vec::new();
    let mut batch = Pending::default();
    assert_eq!(split_lines(b"ab", &mut partial, &mut batch, &tuning), 2);
    assert_eq!(
        split_lines(b"cdefghi\nxy", &mut partial, &mut batch, &tuning),
        10
    );
    assert_eq!(split_lines(b"zzzzzz", &mut partial, &mut batch, &tuning), 6);
    assert_eq!(partial, b"zzzz");
    assert_eq!(
        split_lines(b"\n1\n2\n", &mut partial, &mut batch, &tuning),
        1,
        "full after one more line"
    );
    let lines: Vec<&[u8]> = batch
        .lines
        .iter()
        .map(|line| line.bytes.as_slice())
        .collect();
    // A complete line is never cut here (the pipeline truncates it); an unfinished one is.
    assert_eq!(lines, [&b"abcdefghi"[..], b"xyzz", b"zzzz"]);
    assert_eq!(batch.bytes, 17);
}

// ---- Stack traces ---------------------------------------------------------------------

/// A tail whose pipeline joins stack traces after `flush_ms`, checkpointing often.
fn multiline_tail(dir: &Path, flush_ms: u64) -> Tail {
    use crate::pipeline::multiline::{Multiline, MultilineConfig};
    let config = MultilineConfig {
        enabled: true,
        flush_ms,
        ..MultilineConfig::default()
    };
    let processor = processor().with_multiline(Arc::new(Multiline::new(&config).unwrap()));
    let tuning = Tuning {
        checkpoint_every: Duration::from_millis(10),
        ..Tuning::default()
    };
    Tail::start_with(config_of(dir), tuning, MIB, processor)
}

fn config_of(dir: &Path) -> FileConfig {
    config(dir, StartAt::Beginning)
}

fn checkpointed(dir: &Path) -> Option<u64> {
    stored(dir).first().map(|entry| entry.offset)
}

const TRACE: &str = "java.lang.IllegalStateException: boom\n\tat App.run(App.java:3)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_trace_keeps_the_checkpoint_before_it_until_sent_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    append(&path, format!("ordinary\n{TRACE}").as_bytes());
    let mut tail = multiline_tail(dir.path(), 60_000);
    assert_eq!(tail.lines(1).await, ["ordinary"]);
    eventually("the checkpoint past the ordinary line", || {
        checkpointed(dir.path()) == Some(9)
    })
    .await;
    append(&path, b"\t... 4 more\n");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        checkpointed(dir.path()),
        Some(9),
        "held lines are not accepted yet"
    );
    let rest = tail.stop().await;
    assert_eq!(
        rest,
        [format!("{}\t... 4 more", TRACE)],
        "the trace held at shutdown is sent"
    );
    let size = fs::metadata(&path).unwrap().len();
    assert_eq!(checkpointed(dir.path()), Some(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_sent_when_due_and_the_checkpoint_follows() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(dir.path(), "app.log");
    let mut tail = multiline_tail(dir.path(), 100);
    first_scan_done(dir.path()).await;
    append(&path, TRACE.as_bytes());
    assert_eq!(tail.lines(1).await, [TRACE.trim_end()]);
    let size = fs::metadata(&path).unwrap().len();
    eventually("the checkpoint past the trace", || {
        checkpointed(dir.path()) == Some(size)
    })
    .await;
    assert!(tail.stop().await.is_empty());
}

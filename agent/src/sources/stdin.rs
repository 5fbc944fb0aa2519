//! Line-delimited standard input. When the pipeline is full, reading stops, so the writer
//! blocks on its pipe: back-pressure, not loss. With `[pipeline.multiline]`, stack traces
//! are joined (stdin is one stream); a trace held at EOF or shutdown is sent before the
//! source ends.

use memchr::memchr_iter;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::pipeline::event::RawLine;
use crate::pipeline::multiline::Joiner;
use crate::pipeline::{Closed, EventSender};

/// Read size; large reads keep the per-line cost low.
const READ_BYTES: usize = 256 * 1024;

/// A line longer than this is shipped as one event of its first `MAX_LINE_BYTES` (then
/// truncated with the marker by the pipeline's event limit); the rest of it, up to the next
/// newline, is skipped rather than shipped as pieces that start mid-line.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Standard input.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StdinConfig {}

/// Reads stdin until EOF or shutdown.
pub async fn run(out: EventSender, shutdown: CancellationToken) -> anyhow::Result<()> {
    read_lines(tokio::io::stdin(), out, shutdown).await
}

/// Splits `input` into lines and sends them in read-sized batches.
pub async fn read_lines<R: AsyncRead + Unpin>(
    mut input: R,
    out: EventSender,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut out = Lines {
        joiner: out.joiner(),
        out,
    };
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_BYTES * 2);
    // Inside the tail of an over-long line already shipped: skip to its newline.
    let mut skipping = false;
    loop {
        let start = buffer.len();
        buffer.resize(start + READ_BYTES, 0);
        let read = tokio::select! {
            read = input.read(&mut buffer[start..]) => read?,
            () = shutdown.cancelled() => {
                buffer.truncate(start);
                break;
            }
            () = out.trace_due() => {
                buffer.truncate(start);
                if out.flush(false).await.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        buffer.truncate(start + read);
        if read == 0 {
            break;
        }
        let mut lines = Vec::new();
        let mut line_start = 0;
        for newline in memchr_iter(b'\n', &buffer[start..]) {
            let end = start + newline;
            if skipping {
                skipping = false;
            } else {
                lines.push(RawLine::new(&buffer[line_start..end]));
            }
            line_start = end + 1;
        }
        buffer.drain(..line_start);
        if skipping {
            buffer.clear();
        } else if buffer.len() >= MAX_LINE_BYTES {
            lines.push(RawLine::new(std::mem::take(&mut buffer)));
            skipping = true;
        }
        if !lines.is_empty() && out.send(lines).await.is_err() {
            return Ok(());
        }
    }
    // A last line without a trailing newline is still a line.
    if !buffer.is_empty() && !skipping {
        let _ = out.send(vec![RawLine::new(buffer)]).await;
    }
    let _ = out.flush(true).await;
    Ok(())
}

/// The way to the pipeline, through the stack-trace joiner when multiline is on.
#[derive(Debug)]
struct Lines {
    out: EventSender,
    joiner: Option<Joiner>,
}

impl Lines {
    async fn send(&mut self, lines: Vec<RawLine>) -> Result<(), Closed> {
        let lines = match &mut self.joiner {
            Some(joiner) => {
                let lines = joiner.process(lines, tokio::time::Instant::now(), 0);
                joiner.report(self.out.metrics(), self.out.source());
                lines
            }
            None => lines,
        };
        match lines.is_empty() {
            true => Ok(()),
            false => self.out.send(lines).await,
        }
    }

    /// Sends the traces due (`all`: every one held).
    async fn flush(&mut self, all: bool) -> Result<(), Closed> {
        let Some(joiner) = &mut self.joiner else {
            return Ok(());
        };
        let mut lines = Vec::new();
        match all {
            true => joiner.flush_all(&mut lines),
            false => joiner.flush_expired(tokio::time::Instant::now(), &mut lines),
        }
        joiner.report(self.out.metrics(), self.out.source());
        match lines.is_empty() {
            true => Ok(()),
            false => self.out.send(lines).await,
        }
    }

    /// Resolves when a held trace is due; never without one.
    async fn trace_due(&self) {
        match self.joiner.as_ref().and_then(Joiner::next_deadline) {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::{Metrics, SourceKind};
    use crate::pipeline::budget::MemoryBudget;
    use crate::pipeline::parse::ParseFields;
    use crate::pipeline::{Processor, channel};

    #[tokio::test]
    async fn an_over_long_line_is_one_event_and_the_next_line_is_intact() {
        let processor = Processor::new(
            ParseFields {
                timestamp: "timestamp".into(),
                level: "level".into(),
                timing: None,
            },
            None,
            256 * 1024,
        );
        let (senders, mut rx) = channel(
            processor,
            MemoryBudget::new(64 << 20),
            Arc::new(Metrics::default()),
        );
        let mut input = vec![b'a'; 3 * MAX_LINE_BYTES + 17];
        input.extend_from_slice(b"\nnext\nlast");
        read_lines(
            &input[..],
            senders.for_source(SourceKind::Stdin),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        drop(senders);
        let mut messages = Vec::new();
        while let Some(batch) = rx.recv().await {
            messages.extend(batch.events.into_iter().map(|e| e.message));
        }
        assert_eq!(messages.len(), 3, "one event per line");
        assert!(messages[0].starts_with("aaa"));
        assert!(messages[0].ends_with(crate::pipeline::TRUNCATION_MARKER));
        assert_eq!(&messages[1..], ["next", "last"]);
    }

    #[tokio::test]
    async fn traces_are_joined_flushed_when_due_and_at_eof() {
        use crate::pipeline::multiline::{Multiline, MultilineConfig};
        use tokio::io::AsyncWriteExt;
        let config = MultilineConfig {
            enabled: true,
            flush_ms: 100,
            ..MultilineConfig::default()
        };
        let processor = Processor::new(
            ParseFields {
                timestamp: "timestamp".into(),
                level: "level".into(),
                timing: None,
            },
            None,
            256 * 1024,
        )
        .with_multiline(Arc::new(Multiline::new(&config).unwrap()));
        let metrics = Arc::new(Metrics::default());
        let (senders, mut rx) = channel(processor, MemoryBudget::new(64 << 20), metrics.clone());
        let (mut writer, reader) = tokio::io::duplex(4096);
        let source = tokio::spawn(read_lines(
            reader,
            senders.for_source(SourceKind::Stdin),
            CancellationToken::new(),
        ));
        drop(senders);
        let mut received = Vec::new();
        let mut next = async || {
            let batch = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv());
            let batch = batch.await.expect("in time").expect("a batch");
            batch
                .events
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
        };
        writer
            .write_all(
                b"starting
java.lang.Error: boom
	at A.b(A.java:1)
",
            )
            .await
            .unwrap();
        received.extend(next().await);
        // The trace's lines stay held while the input is open, until flush_ms.
        received.extend(next().await);
        assert_eq!(
            received,
            ["starting", "java.lang.Error: boom\n\tat A.b(A.java:1)"]
        );
        writer
            .write_all(b"Traceback (most recent call last):\n  File \"a.py\", line 1")
            .await
            .unwrap();
        drop(writer);
        source.await.unwrap().unwrap();
        assert_eq!(
            next().await,
            ["Traceback (most recent call last):\n  File \"a.py\", line 1"],
            "held at EOF (the last line without its newline): sent before the source ends"
        );
        let text = metrics.render(crate::metrics::BufferUsage::default());
        assert!(text.contains("agent_multiline_traces_joined_total{source=\"stdin\"} 2\n"));
    }
}

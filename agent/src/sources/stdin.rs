//! Line-delimited standard input. When the pipeline is full, reading stops, so the writer
//! blocks on its pipe: back-pressure, not loss.

use memchr::memchr_iter;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::pipeline::EventSender;
use crate::pipeline::event::RawLine;

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
    Ok(())
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
}

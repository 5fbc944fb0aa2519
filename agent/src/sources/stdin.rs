//! Line-delimited standard input. When the pipeline is full, reading stops, so the writer
//! blocks on its pipe: back-pressure, not loss.

use memchr::memchr_iter;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::pipeline::EventSender;
use crate::pipeline::event::RawLine;

/// Read size; large reads keep the per-line cost low.
const READ_BYTES: usize = 256 * 1024;

/// A line longer than this without a newline is shipped as it is (then truncated by the
/// pipeline's event limit).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

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
            lines.push(RawLine::new(&buffer[line_start..end]));
            line_start = end + 1;
        }
        buffer.drain(..line_start);
        if buffer.len() >= MAX_LINE_BYTES {
            lines.push(RawLine::new(std::mem::take(&mut buffer)));
        }
        if !lines.is_empty() && out.send(lines).await.is_err() {
            return Ok(());
        }
    }
    // A last line without a trailing newline is still a line.
    if !buffer.is_empty() {
        let _ = out.send(vec![RawLine::new(buffer)]).await;
    }
    Ok(())
}

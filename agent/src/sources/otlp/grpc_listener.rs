//! The OTLP/gRPC server's connections, capped as the HTTP inputs' are: beyond
//! `max_connections` a new connection is closed at once (counted as `connection_refused`);
//! each accepted one holds a slot until it closes. (Request timeouts and HTTP/2 keepalive
//! are set on the tonic server itself.)

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::SourceKind;
use crate::pipeline::EventSender;

/// Accepted connections, as tonic's `serve_with_incoming_shutdown` takes them.
#[derive(Debug)]
pub(super) struct CappedIncoming {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    counter: EventSender,
}

impl CappedIncoming {
    pub(super) fn new(listener: TcpListener, max_connections: usize, counter: EventSender) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            counter,
        }
    }
}

impl futures_core::Stream for CappedIncoming {
    type Item = std::io::Result<CappedIo>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let (stream, peer) = match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                // Usually out of file descriptors: tonic logs it and polls again.
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Ok(accepted)) => accepted,
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "refusing an OTLP/gRPC connection: too many open");
                self.counter
                    .metrics()
                    .input_error(SourceKind::Otlp, "connection_refused");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Poll::Ready(Some(Ok(CappedIo {
                stream,
                _slot: slot,
            })));
        }
    }
}

/// A connection holding one slot.
#[derive(Debug)]
pub(super) struct CappedIo {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for CappedIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for CappedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_core::Stream as _;
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::budget::MemoryBudget;
    use crate::pipeline::parse::ParseFields;
    use crate::pipeline::{Processor, channel};

    async fn next(incoming: &mut CappedIncoming) -> Option<CappedIo> {
        let poll = std::future::poll_fn(|cx| Pin::new(&mut *incoming).poll_next(cx));
        match tokio::time::timeout(Duration::from_millis(300), poll).await {
            Ok(Some(Ok(io))) => Some(io),
            _ => None,
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_and_counted() {
        let fields = ParseFields {
            timestamp: "timestamp".into(),
            level: "level".into(),
            timing: None,
        };
        let metrics = Arc::new(Metrics::default());
        let (senders, _rx) = channel(
            Processor::new(fields, None, 1024),
            MemoryBudget::new(1 << 20),
            metrics.clone(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = CappedIncoming::new(listener, 1, senders.for_source(SourceKind::Otlp));
        let _first = TcpStream::connect(addr).await.unwrap();
        let held = next(&mut incoming)
            .await
            .expect("the first connection is accepted");
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(
            next(&mut incoming).await.is_none(),
            "no slot for the second"
        );
        let mut buffer = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buffer)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the second is closed");
        let rendered = metrics.render(MemoryBudget::new(1).usage());
        assert!(
            rendered.contains(
                "agent_input_errors_total{kind=\"connection_refused\",source=\"otlp\"} 1"
            ),
            "{rendered}"
        );
        drop(held);
        let _third = TcpStream::connect(addr).await.unwrap();
        assert!(
            next(&mut incoming).await.is_some(),
            "a freed slot is reused"
        );
    }
}

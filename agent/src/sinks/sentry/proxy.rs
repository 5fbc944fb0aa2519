//! Outbound proxies for the Sentry transport, honoured as the AWS SDK's HTTP client honours
//! them (both read the environment with hyper-util's `Matcher`): `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, upper- or lower-case. An https target is
//! reached through a CONNECT tunnel (TLS runs end to end inside it: the proxy sees only
//! host:port); an http target is sent to the proxy as an absolute-form request, with
//! `Proxy-Authorization` when the proxy URL carries credentials. Proxies are http:// ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::http::uri::Scheme;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects to an origin directly, through a CONNECT tunnel, or to a forwarding proxy, as
/// its matcher says for each destination.
#[derive(Debug, Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    matcher: Arc<Matcher>,
}

impl ProxyConnector {
    /// `http` for every TCP connection (origin or proxy), `matcher` to choose.
    pub(crate) fn new(http: HttpConnector, matcher: Matcher) -> Self {
        Self {
            http,
            matcher: Arc::new(matcher),
        }
    }

    /// The proxy `dst` goes through, if any.
    pub(crate) fn route(&self, dst: &Uri) -> Option<Intercept> {
        self.matcher.intercept(dst)
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // HttpConnector (and a Tunnel over it) is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(connect(self.http.clone(), self.route(&dst), dst))
    }
}

async fn connect(
    mut http: HttpConnector,
    route: Option<Intercept>,
    dst: Uri,
) -> Result<ProxyStream, BoxError> {
    let Some(proxy) = route else {
        let io = http.call(dst).await?;
        return Ok(ProxyStream::new(io, false));
    };
    if proxy.uri().scheme() != Some(&Scheme::HTTP) {
        return Err(format!(
            "proxy {}: only http:// proxies are supported for Sentry",
            proxy.uri()
        )
        .into());
    }
    if dst.scheme() == Some(&Scheme::HTTPS) {
        let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let io = tunnel.call(dst).await?;
        return Ok(ProxyStream::new(io, false));
    }
    let io = http.call(proxy.uri().clone()).await?;
    Ok(ProxyStream::new(io, true))
}

/// A TCP connection to the origin (direct or tunnelled) or to a forwarding proxy; the
/// latter makes hyper write absolute-form request targets.
#[derive(Debug)]
pub(crate) struct ProxyStream {
    io: TokioIo<TcpStream>,
    forwarded: bool,
}

impl ProxyStream {
    fn new(io: TokioIo<TcpStream>, forwarded: bool) -> Self {
        Self { io, forwarded }
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarded)
    }
}

impl Read for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::super::config::Dsn;
    use super::super::transport::Transport;
    use super::*;

    /// A listener that records the head of each request it gets and answers `reply`.
    async fn recorder(reply: &'static str) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (heads, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                let _ = heads.send(String::from_utf8_lossy(&head).to_lowercase());
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (port, seen)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";

    fn transport(dsn: &str, proxies: Matcher) -> Transport {
        let dsn = Dsn::parse(dsn).unwrap();
        Transport::with_proxies(&dsn, Duration::from_secs(5), proxies).unwrap()
    }

    #[tokio::test]
    async fn an_http_target_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
        let (proxy, mut seen) = recorder(OK).await;
        let proxies = Matcher::builder()
            .http(format!("http://user:pass@127.0.0.1:{proxy}"))
            .build();
        let transport = transport("http://key@127.0.0.1:9/42", proxies);
        assert_eq!(
            transport.proxy().map(ToString::to_string),
            Some(format!("http://127.0.0.1:{proxy}/"))
        );
        let reply = transport.send(Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(reply.status, 200);
        let head = seen.recv().await.unwrap();
        assert!(
            head.starts_with("post http://127.0.0.1:9/api/42/envelope/ http/1.1\r\n"),
            "{head}"
        );
        // base64("user:pass")
        assert!(
            head.contains("proxy-authorization: basic dxnlcjpwyxnz\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn an_https_target_asks_the_proxy_for_a_connect_tunnel() {
        let (proxy, mut seen) = recorder("HTTP/1.1 403 Forbidden\r\n\r\n").await;
        let proxies = Matcher::builder()
            .https(format!("http://user:pass@127.0.0.1:{proxy}"))
            .build();
        let transport = transport("https://key@127.0.0.1:9/42", proxies);
        let error = transport.send(Bytes::from_static(b"{}")).await.unwrap_err();
        assert_eq!(error.kind(), "connection", "{error}");
        let head = seen.recv().await.unwrap();
        assert!(
            head.starts_with("connect 127.0.0.1:9 http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("proxy-authorization: basic dxnlcjpwyxnz\r\n"),
            "{head}"
        );
        assert!(
            !head.contains("x-sentry-auth"),
            "the tunnel carries no request: {head}"
        );
    }

    #[tokio::test]
    async fn no_proxy_hosts_are_reached_directly() {
        let (proxy, mut through_proxy) = recorder(OK).await;
        let (origin, mut direct) = recorder(OK).await;
        let proxies = Matcher::builder()
            .all(format!("http://127.0.0.1:{proxy}"))
            .no("localhost, 127.0.0.1")
            .build();
        let transport = transport(&format!("http://key@127.0.0.1:{origin}/42"), proxies);
        assert_eq!(transport.proxy(), None);
        assert_eq!(transport.send(Bytes::new()).await.unwrap().status, 200);
        assert!(
            direct
                .recv()
                .await
                .unwrap()
                .starts_with("post /api/42/envelope/ ")
        );
        assert!(through_proxy.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_https_proxy_is_refused_with_a_reason() {
        let proxies = Matcher::builder().https("https://127.0.0.1:9").build();
        let transport = transport("https://key@127.0.0.1:9/42", proxies);
        let error = transport.send(Bytes::new()).await.unwrap_err();
        assert!(
            error.to_string().contains("only http:// proxies"),
            "{error}"
        );
    }
}

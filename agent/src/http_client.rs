//! A minimal, bounded plain-HTTP GET for loopback and link-local targets (the ECS metadata
//! endpoint, the application's health routes). No TLS, no redirects, no pooling: each call
//! is one short connection, which is what a probe should measure.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response read.
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes (not de-chunked: we ask for HTTP/1.0, which has no chunking).
    pub body: Vec<u8>,
}

/// `GET url` (http:// only) within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> std::io::Result<Response> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs are supported"))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let host_port = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(&host_port).await?;
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: agent/{}\r\n\r\n",
                    crate::VERSION
                )
                .as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut raw)
            .await?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| invalid("truncated response"))?;
        let status = std::str::from_utf8(&raw[..split])
            .ok()
            .and_then(|head| head.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("malformed status line"))?;
        Ok(Response {
            status,
            body: raw.split_off(split + 4),
        })
    };
    tokio::time::timeout(timeout, request).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )
    })?
}

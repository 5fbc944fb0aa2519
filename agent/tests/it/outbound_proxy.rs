//! An outbound HTTP proxy for the tests, as a corporate egress proxy behaves: `CONNECT
//! host:port` opens a tunnel (what clients do for https targets), and an absolute-form
//! request (`POST http://host:port/path`, what clients do for http targets) is forwarded in
//! origin form. It records every tunnel and every forwarded request (head and up to 16 KiB
//! of body) and only ever connects to loopback: any other target is refused with 403, so a
//! test can point real endpoints' traffic at it without anything leaving the machine.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Body bytes kept per forwarded request.
const KEPT_BODY: usize = 16 * 1024;

/// One request forwarded to an http target.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarded {
    /// The request head as the client sent it, lower-cased (`post http://... http/1.1`, ...).
    pub(crate) head: String,
    /// The first bytes of its body.
    pub(crate) body: String,
}

impl Forwarded {
    /// The SigV4 service of the request (`logs`, `monitoring`, `sts`, `secretsmanager`).
    pub(crate) fn service(&self) -> Option<&str> {
        self.credential().and_then(|scope| scope.split('/').nth(3))
    }

    /// The access key id that signed it.
    pub(crate) fn access_key(&self) -> Option<&str> {
        self.credential().and_then(|scope| scope.split('/').next())
    }

    /// `<key>/<date>/<region>/<service>/aws4_request`.
    fn credential(&self) -> Option<&str> {
        let start = self.head.find("credential=")? + "credential=".len();
        let rest = &self.head[start..];
        Some(&rest[..rest.find([',', ' ', '\r']).unwrap_or(rest.len())])
    }
}

#[derive(Debug, Default)]
struct Seen {
    tunnels: Vec<String>,
    forwarded: Vec<Forwarded>,
}

/// The proxy, listening on a free loopback port until dropped.
pub(crate) struct OutboundProxy {
    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY` / `HTTP_PROXY`.
    pub(crate) url: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl OutboundProxy {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve(client, seen.clone()));
                }
            }
        });
        Self { url, seen, task }
    }

    /// The `host:port` of every CONNECT so far.
    pub(crate) fn tunnels(&self) -> Vec<String> {
        self.seen.lock().unwrap().tunnels.clone()
    }

    /// Every request forwarded to an http target so far.
    pub(crate) fn forwarded(&self) -> Vec<Forwarded> {
        self.seen.lock().unwrap().forwarded.clone()
    }
}

impl Drop for OutboundProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, seen: Arc<Mutex<Seen>>) {
    let Some((head, rest)) = read_head(&mut client).await else {
        return;
    };
    let lower = head.to_lowercase();
    let mut words = head.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method.eq_ignore_ascii_case("CONNECT") {
        seen.lock().unwrap().tunnels.push(target.to_owned());
        tunnel(client, target).await;
        return;
    }
    let Some((authority, path)) = target.strip_prefix("http://").map(|t| {
        t.split_once('/')
            .map_or((t, "".into()), |(a, p)| (a, format!("/{p}")))
    }) else {
        let _ = client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
            .await;
        return;
    };
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.forwarded.push(Forwarded {
            head: lower,
            body: String::new(),
        });
        seen.forwarded.len() - 1
    };
    let Some(mut upstream) = connect_loopback(authority).await else {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nconnection: close\r\n\r\n")
            .await;
        return;
    };
    let request = origin_form(&head, method, &path);
    if upstream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let body = tokio::spawn(async move {
        keep(&seen, index, &rest);
        let _ = upstream_write.write_all(&rest).await;
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            keep(&seen, index, &buf[..n]);
            if upstream_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    answer(&mut upstream_read, &mut client_write).await;
    let _ = client_write.shutdown().await;
    body.abort();
}

/// Adds `bytes` to the kept body of request `index`.
fn keep(seen: &Mutex<Seen>, index: usize, bytes: &[u8]) {
    let body = &mut seen.lock().unwrap().forwarded[index].body;
    if body.len() < KEPT_BODY {
        body.push_str(&String::from_utf8_lossy(bytes));
    }
}

/// The upstream's answer, passed on with `connection: close` (one request per connection).
async fn answer(upstream: &mut (impl AsyncRead + Unpin), client: &mut (impl AsyncWrite + Unpin)) {
    let Some((head, rest)) = read_head(upstream).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let mut out = format!("{}\r\n", lines.next().unwrap_or_default());
    for line in lines.filter(|l| !l.is_empty()) {
        if !line.to_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    if client.write_all(out.as_bytes()).await.is_err() || client.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy(upstream, client).await;
}

/// The request head in origin form, asking the upstream to close after it.
fn origin_form(head: &str, method: &str, path: &str) -> String {
    let mut lines = head.split("\r\n");
    let version = lines
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("HTTP/1.1");
    let mut out = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.to_lowercase();
        if !name.starts_with("connection:") && !name.starts_with("proxy-") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    out
}

async fn tunnel(mut client: TcpStream, target: &str) {
    let Some(mut upstream) = connect_loopback(target).await else {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// A connection to `authority` if it is a loopback address that answers; nothing else.
async fn connect_loopback(authority: &str) -> Option<TcpStream> {
    let address: SocketAddr = authority.parse().ok()?;
    if !address.ip().is_loopback() {
        return None;
    }
    TcpStream::connect(address).await.ok()
}

/// The head (up to the blank line, without it) and whatever was read past it.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = raw.split_off(end + 4);
            raw.truncate(end);
            return Some((String::from_utf8_lossy(&raw).into_owned(), rest));
        }
        match stream.read(&mut buf).await {
            Ok(n @ 1..) if raw.len() < 64 * 1024 => raw.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

//! A fault-injecting HTTP proxy for the tests: it sits between the agent and an endpoint
//! (or stands in for one) and can stall, trickle the answer at N bytes/s, reset after the
//! request, cut the answer mid-way, or add latency. Loopback only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forward the request, return the answer.
    Pass,
    /// Accept and read the request, never answer (a black-holed endpoint).
    Stall,
    /// Answer at this many bytes per second.
    Trickle(u32),
    /// Read the request, then reset the connection.
    ResetAfterRequest,
    /// Send half of the answer, then reset the connection.
    CutMidResponse,
    /// Answer after this many ms.
    Latency(u64),
}

/// The canned answer when there is no upstream: an empty JSON object, which every
/// CloudWatch Logs call the agent makes reads as success.
const CANNED: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}";

pub(crate) struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub(crate) endpoint: String,
    fault: Arc<Mutex<Fault>>,
    /// Requests read so far.
    pub(crate) requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`host:port`), or a stand-in endpoint without one.
    pub(crate) async fn start(upstream: Option<String>, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let fault = Arc::new(Mutex::new(fault));
        let requests = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let fault = fault.clone();
            let requests = requests.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve(
                        client,
                        upstream.clone(),
                        fault.clone(),
                        requests.clone(),
                    ));
                }
            }
        });
        Self {
            endpoint,
            fault,
            requests,
            task,
        }
    }

    /// Changes what happens to the next requests.
    pub(crate) fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: Option<String>,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<AtomicUsize>,
) {
    while let Some(request) = read_message(&mut client).await {
        requests.fetch_add(1, Ordering::SeqCst);
        let fault = *fault.lock().unwrap();
        if fault == Fault::Stall {
            // Read (and drop) whatever comes until the client gives up.
            let mut sink = [0u8; 4096];
            while client.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            return;
        }
        if fault == Fault::ResetAfterRequest {
            reset(client);
            return;
        }
        let answer = match &upstream {
            Some(upstream) => match forward(upstream, &request).await {
                Some(answer) => answer,
                None => return,
            },
            None => CANNED.to_vec(),
        };
        let written = match fault {
            Fault::Trickle(bytes_per_sec) => {
                let pause = Duration::from_secs(1) / bytes_per_sec.max(1);
                let mut ok = true;
                for byte in &answer {
                    if client.write_all(&[*byte]).await.is_err() {
                        ok = false;
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                ok
            }
            Fault::CutMidResponse => {
                let _ = client.write_all(&answer[..answer.len() / 2]).await;
                let _ = client.flush().await;
                reset(client);
                return;
            }
            Fault::Latency(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                client.write_all(&answer).await.is_ok()
            }
            _ => client.write_all(&answer).await.is_ok(),
        };
        if !written {
            return;
        }
    }
}

/// Closes with a TCP reset (SO_LINGER 0) rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Sends `request` to `upstream` on a fresh connection and reads one whole answer.
async fn forward(upstream: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(request).await.ok()?;
    read_message(&mut server).await
}

/// Reads one HTTP/1.1 message (head and a `Content-Length` body; a chunked body is read
/// until its terminating chunk). `None` at EOF or on an error.
async fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(length) => buffer.len() >= head_end + length,
            None if chunked => find(&buffer[head_end..], b"0\r\n\r\n").is_some(),
            None => true,
        };
        if complete {
            return Some(buffer);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return Some(buffer);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

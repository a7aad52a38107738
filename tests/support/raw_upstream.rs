//! An upstream that speaks raw bytes: it records every byte of every connection the proxy
//! opens to it, and answers each request head with bytes a test chose (well-formed or not),
//! so a test can show exactly what was (not) sent and how a misbehaving upstream is relayed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one connection to a [`RawUpstream`] carried.
#[derive(Debug, Default)]
pub struct RawConn {
    pub bytes: Vec<u8>,
    /// The proxy closed (or reset) this connection.
    pub ended: bool,
}

impl RawConn {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The answer to a request whose target is `path` (compared exactly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scripted {
    pub path: &'static str,
    /// The bytes written back; empty: never answer.
    pub answer: &'static [u8],
    /// Close the connection after the answer (a close-delimited body ends so).
    pub then_close: bool,
}

/// How a [`RawUpstream`] answers a complete request head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawMode {
    /// `200` with a two-byte body to every head (requests are assumed to have no body).
    Ok,
    /// As `Ok`, but a head asking for `Upgrade: h2c` gets `101 Switching Protocols`, and from
    /// then on the connection is only recorded: an h2c-capable upstream as far as the proxy can
    /// tell.
    H2c,
    /// Never answers.
    Silent,
    /// `103 Early Hints` with a `Link` header at once, then `200` after [`HINT_LEAD`].
    EarlyHints,
    /// Answers chosen by path; any other path gets `Ok`'s answer. After an answer to a request
    /// that asked to upgrade and got a 101, the connection is only recorded.
    ByPath(&'static [Scripted]),
}

/// How long a [`RawMode::EarlyHints`] upstream waits between its `103` and its `200`.
pub const HINT_LEAD: Duration = Duration::from_millis(400);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A TCP upstream that records every byte the proxy sends it.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<Arc<Mutex<RawConn>>>>>,
}

impl RawUpstream {
    pub async fn start(mode: RawMode) -> RawUpstream {
        let listener = super::listen_local().await;
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<RawConn>>>>> = Arc::default();
        let all = conns.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = Arc::new(Mutex::new(RawConn::default()));
                all.lock().unwrap().push(conn.clone());
                tokio::spawn(serve_raw(stream, conn, mode));
            }
        });
        RawUpstream { addr, conns }
    }

    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Everything received, all connections in accept order.
    pub fn received(&self) -> String {
        let conns = self.conns.lock().unwrap();
        conns.iter().map(|c| c.lock().unwrap().text()).collect()
    }

    pub fn conn(&self, index: usize) -> Arc<Mutex<RawConn>> {
        self.conns.lock().unwrap()[index].clone()
    }

    /// Each connection's bytes, in accept order.
    pub fn per_connection(&self) -> Vec<String> {
        let conns = self.conns.lock().unwrap();
        conns.iter().map(|c| c.lock().unwrap().text()).collect()
    }
}

/// The answer for one request head (as received), and whether to close after it.
fn answer_for(mode: RawMode, head: &str) -> (&'static [u8], bool) {
    let lower = head.to_ascii_lowercase();
    match mode {
        RawMode::H2c if lower.contains("upgrade: h2c") => (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            false,
        ),
        RawMode::ByPath(script) => {
            let target = head.split(' ').nth(1).unwrap_or("");
            match script.iter().find(|s| s.path == target) {
                Some(s) => (s.answer, s.then_close),
                None => (OK, false),
            }
        }
        _ => (OK, false),
    }
}

async fn serve_raw(mut stream: TcpStream, conn: Arc<Mutex<RawConn>>, mode: RawMode) {
    let mut buf = vec![0u8; 16384];
    let mut answered_up_to = 0;
    let mut tunnelled = false;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let heads: Vec<String> = {
            let mut conn = conn.lock().unwrap();
            conn.bytes.extend_from_slice(&buf[..n]);
            let mut heads = Vec::new();
            while !tunnelled && mode != RawMode::Silent {
                let rest = &conn.bytes[answered_up_to..];
                let Some(end) = find(rest, b"\r\n\r\n") else {
                    break;
                };
                let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                answered_up_to += end + 4;
                let (answer, _) = answer_for(mode, &head);
                tunnelled = answer.starts_with(b"HTTP/1.1 101 ");
                heads.push(head);
            }
            heads
        };
        for head in heads {
            if mode == RawMode::EarlyHints {
                let hint = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
                if stream.write_all(hint).await.is_err() {
                    break;
                }
                tokio::time::sleep(HINT_LEAD).await;
            }
            let (answer, then_close) = answer_for(mode, &head);
            if stream.write_all(answer).await.is_err() {
                break;
            }
            if then_close {
                let _ = stream.shutdown().await;
                // Keep recording until the proxy closes its side.
            }
        }
    }
    conn.lock().unwrap().ended = true;
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

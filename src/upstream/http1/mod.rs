//! canaryd's own upstream HTTP/1.1 client (docs/architecture.md#the-upstream-http11-engine):
//! each exchange is driven by the request's own task — no connection task, no channel.
//!
//! - `pool.rs`: each worker's idle `(socket, buffers)` pairs per endpoint, checked for a close
//!   or stray bytes (a non-blocking read) before reuse;
//! - `request_head.rs`: the request head written from the validated request's parsed names
//!   and values, each line ended with CRLF, and the body's framing;
//! - `response_head.rs`: the response head parsed with `httparse`, its framing decided;
//! - `chunked.rs`: the strict chunked decoder;
//! - `exchange.rs`: writing the request (its body streamed) while reading the response head;
//! - `body.rs`: the response body, read inside its own `poll_frame`, which returns the
//!   connection to the pool when the message ended cleanly;
//! - `upgraded.rs`: the socket a `101` hands to the tunnel.
//!
//! Cleartext HTTP/1.1 endpoints only, with `proxy.http1_engine = "canaryd"`; TLS and HTTP/2
//! upstreams, and `CONNECT`, stay on hyper's client (`../send.rs`).

mod body;
pub(crate) mod chunked;
mod exchange;
mod pool;
pub(crate) mod request_head;
pub(crate) mod response_head;
mod upgraded;

pub use body::OwnBody;
pub(crate) use exchange::{send, send_head, SendFailure};
pub(crate) use pool::{sweep, take};
pub use response_head::FlatFields;
pub use upgraded::Upgraded;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::ConnectError;

/// Why an exchange on canaryd's engine failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from or writing to the upstream failed.
    #[error("upstream I/O: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before a whole response head.
    #[error("upstream closed the connection before the response head")]
    Closed,
    /// The upstream closed the connection before the end of the body its framing announced.
    #[error("upstream closed the connection mid-body")]
    IncompleteBody,
    /// The response head is not valid HTTP/1.1.
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    /// The response head is larger than the limit.
    #[error("response head too large")]
    HeadTooLarge,
    /// A status outside 100–999.
    #[error("invalid status")]
    Status,
    /// A field name or value the `http` crate refuses.
    #[error("invalid response field")]
    Field,
    /// `Content-Length` values that are not digits or disagree.
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    /// `Transfer-Encoding` in an HTTP/1.0 response.
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingOnHttp10,
    /// The chunked body is invalid.
    #[error(transparent)]
    Chunk(#[from] chunked::ChunkError),
    /// The client's request body failed (it broke off, or its framing did).
    #[error("request body: {0}")]
    RequestBody(#[source] hyper::Error),
    /// The client's request body did not match the length the request announced.
    #[error("request body length differs from its Content-Length")]
    RequestBodyLength,
}

impl Error {
    /// The client's fault (its body), not the upstream's.
    pub fn is_user(&self) -> bool {
        matches!(self, Error::RequestBody(_) | Error::RequestBodyLength)
    }
}

/// The initial size of a connection's read buffer, and what each read makes room for.
const READ_CHUNK: usize = 8 * 1024;

/// One upstream connection and its buffers, boxed once when opened: what the pool keeps, an
/// exchange borrows and the response body carries, moved as one pointer.
pub type Socket = Box<SocketState>;

/// What a [`Socket`] holds.
#[derive(Debug)]
pub struct SocketState {
    io: TcpStream,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
}

impl SocketState {
    /// Open a TCP connection (no delay) to `addr` within `timeout`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Socket, ConnectError> {
        let io = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Ok(Ok(io)) => io,
        };
        io.set_nodelay(true)
            .map_err(|source| ConnectError::Io { addr, source })?;
        Ok(Box::new(SocketState {
            io,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: Vec::with_capacity(512),
        }))
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it nor
    /// sent anything since the last message. A non-blocking read that finds nothing to read
    /// (no system call unless the reactor saw the socket become readable).
    fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

//! One exchange on a connection, in the request's own task: the head written, the request
//! body streamed as the client sends it, and, at the same time, the response read up to the
//! end of its final head (1xx heads passed to the request's [`InformationalHook`] on the way).
//!
//! Writing goes on inside the response body (`body.rs`) when the upstream answers before the
//! request body is all sent. A request that could not be written at all (not one byte) is
//! handed back for another connection; once a byte is written it never is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::body::OwnBody;
use super::request_head::{self, BodyFraming};
use super::response_head::{self, Head, Parsed};
use super::{Error, Socket, READ_CHUNK};
use crate::upstream::{readiness, Endpoint, InformationalHook, RequestBody};

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// Not one byte was written: the request can go to another connection.
    NotSent(Box<Request<RequestBody>>),
    /// Not one byte of a head given as bytes ([`send_head`]) was written, or the upstream
    /// closed a reused connection before answering it: the caller, who keeps the bytes, can
    /// send them on another connection.
    HeadNotSent,
    /// The exchange failed after the request was (possibly) seen by the upstream.
    Failed(Error),
}

/// Start sending `request` on `socket`: the head (with the body's first bytes when they are
/// already here) is written at once, without waiting; the returned [`Exchange`] writes the rest
/// and reads the final response head. The response's body reads on and returns the connection
/// to `endpoint`'s pool when it may.
///
/// Nothing of the request outlives this call but what the exchange needs (the socket, the body
/// still to send, the method, the 1xx hook): the future a request path awaits stays small, and
/// it is moved by value more than once per request.
///
/// On a `reused` connection, an idempotent request without a body is kept until its answer
/// starts: if the upstream closes the connection before sending a byte of it (it closed an
/// idle connection as the request arrived), the request is handed back to be sent on a new
/// connection, as nginx and HAProxy retry it (docs/routing.md#4-forward, "Upstream connections").
pub(crate) fn send(
    mut socket: Socket,
    mut request: Box<Request<RequestBody>>,
    endpoint: &Arc<Endpoint>,
    reused: bool,
) -> Result<Exchange, SendFailure> {
    let body = std::mem::replace(request.body_mut(), RequestBody::Buffered(None));
    let framing = request_head::write(&request, &body, &mut socket.write_buf);
    let body = (framing != BodyFraming::None && !body.is_end_stream()).then_some(body);
    let mut out = Outgoing::new(body, framing);
    // A body broken from its first bytes sends nothing at all, as with hyper. Polled with a
    // no-op waker: the exchange polls the body again with its own before it waits.
    let mut noop = Context::from_waker(std::task::Waker::noop());
    if let Err(e) = out.take_ready_frame(&mut socket.write_buf, &mut noop) {
        return Err(SendFailure::Failed(e));
    }
    match socket.io.try_write(&socket.write_buf) {
        Ok(n) if n > 0 => out.written = n,
        // The socket is alive but full: the exchange writes the head when it can.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // Nothing of the request went out: it can go to another connection, unless a part of
        // its body was already taken from the client.
        first => match out.untouched_body() {
            Some(body) => {
                *request.body_mut() = body;
                return Err(SendFailure::NotSent(request));
            }
            None => {
                let error = first
                    .err()
                    .unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                return Err(SendFailure::Failed(Error::Io(error)));
            }
        },
    }
    let resendable = reused && framing == BodyFraming::None && is_idempotent(request.method());
    Ok(Exchange {
        socket: Some(socket),
        out: Some(out),
        hook: request.extensions().get::<InformationalHook>().cloned(),
        method: request.method().clone(),
        endpoint: endpoint.clone(),
        resend: resendable.then_some(Resend::Request(request)),
        answered: false,
        flat: false,
    })
}

/// Start sending a bodiless request whose head is already written (the fast path's,
/// docs/performance.md#the-client-side-fast-path), as [`send`] does (1xx heads to `hook`): a head not written at all,
/// or whose reused connection closed before a byte of the answer (an idempotent `method` only),
/// fails with [`SendFailure::HeadNotSent`], to be sent again by the caller.
pub(crate) fn send_head(
    mut socket: Socket,
    head: &[u8],
    method: &Method,
    hook: Option<InformationalHook>,
    endpoint: &Arc<Endpoint>,
    reused: bool,
) -> Result<Exchange, SendFailure> {
    socket.write_buf.clear();
    socket.write_buf.extend_from_slice(head);
    let mut out = Outgoing::new(None, BodyFraming::None);
    match socket.io.try_write(&socket.write_buf) {
        Ok(n) if n > 0 => out.written = n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        _ => return Err(SendFailure::HeadNotSent),
    }
    let resendable = reused && is_idempotent(method);
    Ok(Exchange {
        socket: Some(socket),
        out: Some(out),
        hook,
        method: method.clone(),
        endpoint: endpoint.clone(),
        resend: resendable.then_some(Resend::Head),
        answered: false,
        flat: true,
    })
}

/// What a failed exchange hands back to be sent again.
#[derive(Debug)]
enum Resend {
    Request(Box<Request<RequestBody>>),
    Head,
}

/// Methods a repeated request does no more harm with than one (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A request being written and its response head being read.
#[derive(Debug)]
pub(crate) struct Exchange {
    socket: Option<Socket>,
    out: Option<Outgoing>,
    method: Method,
    hook: Option<InformationalHook>,
    endpoint: Arc<Endpoint>,
    /// The request, kept while it may be sent again (see [`send`]).
    resend: Option<Resend>,
    /// A byte of the answer arrived.
    answered: bool,
    /// The final head's fields are left as spans (the fast path's, [`send_head`]).
    flat: bool,
}

impl Future for Exchange {
    type Output = Result<Response<OwnBody>, SendFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (Some(socket), Some(out)) = (this.socket.as_mut(), this.out.as_mut()) else {
            return Poll::Ready(Err(SendFailure::Failed(Error::Closed)));
        };
        let polled = poll_head(
            socket,
            out,
            (&this.method, this.flat),
            this.hook.as_ref(),
            &mut this.answered,
            cx,
        );
        let head = match ready!(polled) {
            Ok(head) => head,
            Err(e) => {
                return Poll::Ready(Err(match this.resend.take() {
                    Some(Resend::Request(request)) if !this.answered => {
                        SendFailure::NotSent(request)
                    }
                    Some(Resend::Head) if !this.answered => SendFailure::HeadNotSent,
                    _ => SendFailure::Failed(e),
                }))
            }
        };
        this.resend = None;
        let (Some(socket), Some(out)) = (this.socket.take(), this.out.take()) else {
            return Poll::Ready(Err(SendFailure::Failed(Error::Closed)));
        };
        Poll::Ready(Ok(OwnBody::response(
            head,
            socket,
            out,
            this.endpoint.clone(),
        )))
    }
}

/// Write what remains of the request, and read until a final head is whole.
fn poll_head(
    socket: &mut Socket,
    out: &mut Outgoing,
    (method, flat): (&Method, bool),
    hook: Option<&InformationalHook>,
    answered: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, Error>> {
    out.drive(socket, cx)?;
    loop {
        match response_head::parse_with(&mut socket.read_buf, method, flat)? {
            Parsed::Final(head) => return Poll::Ready(Ok(head)),
            Parsed::Informational(status, headers) => {
                if let Some(hook) = hook {
                    hook.call(status, &headers);
                }
                continue;
            }
            Parsed::Partial => {}
        }
        match ready!(poll_read(&socket.io, &mut socket.read_buf, cx)) {
            Ok(0) => return Poll::Ready(Err(Error::Closed)),
            Ok(_) => *answered = true,
            Err(e) => return Poll::Ready(Err(Error::Io(e))),
        }
    }
}

/// Read what the socket has into `buf` (room for at least `READ_CHUNK` more is made first).
pub(super) fn poll_read(
    io: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    loop {
        let room = buf.capacity() - buf.len();
        match io.try_read_buf(buf) {
            Ok(n) => {
                readiness::after_read(io, n, room);
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(io.poll_read_ready(cx))?,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// The request as it is still being written: the unwritten part of the socket's write
/// buffer, then the client's body, frame by frame.
#[derive(Debug)]
pub(super) struct Outgoing {
    body: Option<RequestBody>,
    framing: BodyFraming,
    /// Body bytes still owed under `Content-Length`.
    left: u64,
    /// Bytes of the write buffer already written.
    written: usize,
    /// A frame of the body was taken from the client.
    touched: bool,
    state: Writing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    Busy,
    /// The whole request went out.
    Done,
    /// Writing failed once the upstream could already answer: it is not retried, and the
    /// connection is never reused.
    Abandoned,
}

impl Outgoing {
    fn new(body: Option<RequestBody>, framing: BodyFraming) -> Self {
        let left = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        Outgoing {
            body,
            framing,
            left,
            written: 0,
            touched: false,
            state: Writing::Busy,
        }
    }

    /// The body, if nothing of it was taken yet (a request that can be sent again).
    fn untouched_body(&mut self) -> Option<RequestBody> {
        if self.touched {
            return None;
        }
        Some(self.body.take().unwrap_or(RequestBody::Buffered(None)))
    }

    /// Add to `buf` the body's next frame if the client's bytes are already here.
    fn take_ready_frame(&mut self, buf: &mut Vec<u8>, cx: &mut Context<'_>) -> Result<(), Error> {
        let Some(body) = self.body.as_mut() else {
            return Ok(());
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(polled) => self.add_frame(polled, buf),
            Poll::Pending => Ok(()),
        }
    }

    /// Encode what the body yielded into `buf`.
    fn add_frame(
        &mut self,
        polled: Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>,
        buf: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.touched = true;
        match polled {
            None => {
                self.body = None;
                match self.framing {
                    BodyFraming::Chunked => buf.extend_from_slice(b"0\r\n\r\n"),
                    BodyFraming::Length(_) if self.left != 0 => {
                        return Err(Error::RequestBodyLength)
                    }
                    _ => {}
                }
            }
            Some(Err(e)) => {
                self.body = None;
                return Err(Error::RequestBody(e));
            }
            Some(Ok(frame)) => {
                // Request trailers are never sent, as with hyper's client: `Trailer` is
                // hop-by-hop, so the upstream was told of none.
                let Ok(data) = frame.into_data() else {
                    return Ok(());
                };
                if data.is_empty() {
                    return Ok(());
                }
                match self.framing {
                    BodyFraming::Chunked => {
                        push_hex(buf, data.len());
                        buf.extend_from_slice(b"\r\n");
                        buf.extend_from_slice(&data);
                        buf.extend_from_slice(b"\r\n");
                    }
                    BodyFraming::Length(_) => {
                        let n = data.len() as u64;
                        if n > self.left {
                            return Err(Error::RequestBodyLength);
                        }
                        self.left -= n;
                        buf.extend_from_slice(&data);
                    }
                    BodyFraming::None => {}
                }
            }
        }
        Ok(())
    }

    /// The whole request was written.
    pub(super) fn is_done(&self) -> bool {
        self.state == Writing::Done
    }

    /// Make what progress writing can. An error of the client's body is returned (the
    /// exchange is broken); a write error only stops writing, since the upstream may have
    /// answered before it stopped reading.
    pub(super) fn drive(&mut self, socket: &mut Socket, cx: &mut Context<'_>) -> Result<(), Error> {
        if self.state != Writing::Busy {
            return Ok(());
        }
        match self.poll(&mut socket.io, &mut socket.write_buf, cx) {
            Poll::Ready(Ok(())) => self.state = Writing::Done,
            Poll::Ready(Err(e)) if e.is_user() => {
                self.state = Writing::Abandoned;
                return Err(e);
            }
            Poll::Ready(Err(_)) => self.state = Writing::Abandoned,
            Poll::Pending => {}
        }
        Ok(())
    }

    fn poll(
        &mut self,
        io: &mut TcpStream,
        buf: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        loop {
            while self.written < buf.len() {
                match ready!(Pin::new(&mut *io).poll_write(cx, &buf[self.written..])) {
                    Ok(0) => return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into()))),
                    Ok(n) => self.written += n,
                    Err(e) => return Poll::Ready(Err(Error::Io(e))),
                }
            }
            buf.clear();
            self.written = 0;
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let polled = ready!(Pin::new(body).poll_frame(cx));
            if let Err(e) = self.add_frame(polled, buf) {
                return Poll::Ready(Err(e));
            }
        }
    }
}

fn push_hex(buf: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn chunk_sizes_are_uppercase_hex_as_hyper_writes_them() {
        for (n, text) in [(0, "0"), (5, "5"), (255, "FF"), (4096, "1000")] {
            let mut buf = Vec::new();
            push_hex(&mut buf, n);
            assert_eq!(buf, text.as_bytes());
        }
    }
}

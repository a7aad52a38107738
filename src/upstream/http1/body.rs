//! The response body on canaryd's engine: read inside its own `poll_frame` (no task between
//! the socket and the client), delimited by `Content-Length`, chunked (`chunked.rs`) or the
//! connection's close. When the message ends cleanly — the whole request written, nothing
//! read past the end, the connection kept alive — the connection goes back to the worker's
//! pool at once, in the same poll that returns the last bytes; any other end closes it, and
//! so does dropping the body early (a client that went away).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};

use super::chunked::{Chunk, ChunkedDecoder};
use super::exchange::{poll_read, Outgoing};
use super::response_head::{FlatFields, Framing, Head};
use super::{pool, Error, Socket, Upgraded};
use crate::upstream::Endpoint;

/// An upstream response body read by canaryd's engine.
#[derive(Debug)]
pub struct OwnBody {
    /// The connection, until the message ends.
    socket: Option<Socket>,
    out: Outgoing,
    decoder: Decoder,
    keep_alive: bool,
    endpoint: Arc<Endpoint>,
    /// Body bytes were returned.
    relayed: bool,
    /// The error the next poll returns: a failure after some of the body was relayed is
    /// reported one poll late, so that hyper's server first writes out the head and those
    /// bytes, as it does when such a failure comes through hyper's client (the client sees a
    /// transfer aborted after them, never an empty reply).
    failed: Option<Error>,
    /// The head's fields, for the fast path, which parses no `HeaderMap`. Boxed: a response
    /// body travels by value through every request's future
    /// (docs/performance.md#small-request-futures).
    flat: Option<Box<FlatFields>>,
}

#[derive(Debug)]
enum Decoder {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    /// A `101`: the socket waits for the tunnel.
    Switch,
    /// The message ended cleanly.
    Done,
    /// The body failed; the connection is closed.
    Failed,
}

/// What one look at the buffer found.
enum Step {
    Frame(Frame<Bytes>),
    /// The data frame that ends the message.
    Last(Frame<Bytes>),
    End,
    Fail(Error),
    Read,
}

impl OwnBody {
    /// The response for `head`, whose body follows on `socket`.
    pub(super) fn response(
        head: Head,
        socket: Socket,
        out: Outgoing,
        endpoint: Arc<Endpoint>,
    ) -> Response<OwnBody> {
        let decoder = match head.framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(ChunkedDecoder::default()),
            Framing::Close => Decoder::Close,
            Framing::Switch => Decoder::Switch,
        };
        let mut body = OwnBody {
            socket: Some(socket),
            out,
            decoder,
            keep_alive: head.keep_alive,
            endpoint,
            relayed: false,
            failed: None,
            flat: head.flat.map(Box::new),
        };
        if matches!(body.decoder, Decoder::Done) {
            body.finish();
        }
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        if let Some(reason) = head.reason {
            response.extensions_mut().insert(reason);
        }
        response
    }

    /// The response head's fields, when they were left as spans for the fast path
    /// (docs/performance.md#the-client-side-fast-path); the response's `HeaderMap` is empty then.
    pub fn take_flat_fields(&mut self) -> Option<Box<FlatFields>> {
        self.flat.take()
    }

    /// The socket of a `101`, with what the upstream already sent of the new protocol.
    pub(crate) fn upgrade(&mut self) -> Option<Upgraded> {
        if !matches!(self.decoder, Decoder::Switch) {
            return None;
        }
        self.decoder = Decoder::Failed;
        let socket = *self.socket.take()?;
        Some(Upgraded::new(socket.io, socket.read_buf.freeze()))
    }

    /// The message ended: the connection is pooled if nothing makes it untrustworthy.
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        if let Some(socket) = self.socket.take() {
            if self.keep_alive && self.out.is_done() && socket.read_buf.is_empty() {
                pool::put(&self.endpoint, socket);
            }
        }
    }

    /// The body failed: the connection is closed now; the error is returned at once, or on
    /// the next poll if body bytes went before it.
    fn fail(
        &mut self,
        error: Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.decoder = Decoder::Failed;
        self.socket = None;
        if !self.relayed {
            return Poll::Ready(Some(Err(error)));
        }
        self.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Take what the buffer holds of the body.
    fn step(&mut self) -> Step {
        let Some(socket) = self.socket.as_mut() else {
            return Step::End;
        };
        let buf = &mut socket.read_buf;
        match &mut self.decoder {
            Decoder::Done | Decoder::Failed | Decoder::Switch => Step::End,
            Decoder::Length(_) | Decoder::Close if buf.is_empty() => Step::Read,
            Decoder::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                let frame = Frame::data(buf.split_to(take).freeze());
                if *left == 0 {
                    Step::Last(frame)
                } else {
                    Step::Frame(frame)
                }
            }
            Decoder::Close => Step::Frame(Frame::data(buf.split().freeze())),
            Decoder::Chunked(chunked) => match chunked.decode(buf) {
                Ok(Chunk::Data(data)) => Step::Frame(Frame::data(data)),
                Ok(Chunk::Trailers(trailers)) => Step::Last(Frame::trailers(trailers)),
                Ok(Chunk::End) => Step::End,
                Ok(Chunk::NeedMore) => Step::Read,
                Err(e) => Step::Fail(e.into()),
            },
        }
    }
}

impl Body for OwnBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(socket) = this.socket.as_mut() {
            if let Err(e) = this.out.drive(socket, cx) {
                return this.fail(e, cx);
            }
        }
        loop {
            match this.step() {
                Step::Frame(frame) => {
                    this.relayed = true;
                    return Poll::Ready(Some(Ok(frame)));
                }
                Step::Last(frame) => {
                    this.relayed = true;
                    this.finish();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Step::End => {
                    if matches!(this.decoder, Decoder::Chunked(_)) {
                        this.finish();
                    }
                    return Poll::Ready(None);
                }
                Step::Fail(e) => return this.fail(e, cx),
                Step::Read => {}
            }
            let Some(socket) = this.socket.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(poll_read(&socket.io, &mut socket.read_buf, cx)) {
                Ok(0) if matches!(this.decoder, Decoder::Close) => {
                    // The end of a close-delimited body; never pooled (`keep_alive` is off).
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Error::IncompleteBody, cx),
                Ok(_) => {}
                Err(e) => return this.fail(Error::Io(e), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decoder, Decoder::Done | Decoder::Switch)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(left) => SizeHint::with_exact(left),
            Decoder::Done | Decoder::Switch => SizeHint::with_exact(0),
            Decoder::Chunked(_) | Decoder::Close | Decoder::Failed => SizeHint::default(),
        }
    }
}

//! One request as a stream on a shared HTTP/2 upstream connection, driven with the `h2` crate
//! from the request's own task (docs/performance.md#http2-upstreams-and-grpc).
//!
//! hyper's HTTP/2 client puts two more tasks between a request and its connection: a dispatch
//! task that receives each request over a channel and opens its stream, and a task per request
//! that waits for the response head and hands it back over a oneshot. Here the request's task
//! opens the stream itself (`h2::client::SendRequest` is shared by cloning) and waits for the
//! response head itself; only a request body still arriving when the head is sent gets a task
//! of its own, which copies it to the stream under HTTP/2 flow control while the response flows
//! back (gRPC streaming). The connection's own task (`connect.rs`) reads and writes the frames.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use super::RequestBody;

/// The handle requests share to open streams on one connection.
pub(super) type H2Sender = h2::client::SendRequest<Bytes>;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Why a request on an HTTP/2 connection did not get its response head.
#[derive(Debug)]
pub(super) enum StreamError {
    /// Nothing was sent: the connection is closed or closing; the request comes back whole.
    NotOpened(Box<Request<RequestBody>>),
    /// The stream was opened (its head may have been processed, or refused: see
    /// `send.rs::not_processed`).
    Failed(h2::Error),
}

/// Open a stream for `request`, start its body, and wait for the response head.
pub(super) async fn exchange(
    sender: &mut H2Sender,
    request: Box<Request<RequestBody>>,
) -> Result<Response<H2Body>, StreamError> {
    // A fresh clone has no stream pending open, so this only asks whether the connection can
    // still open one; asked first because a failed `send_request` would consume the head.
    if poll_fn(|cx| sender.poll_ready(cx)).await.is_err() {
        return Err(StreamError::NotOpened(request));
    }
    let (mut head, body) = request.into_parts();
    strip_connection_fields(&mut head.headers);
    let end_of_stream = body.is_end_stream();
    if let Some(length) = body.size_hint().exact() {
        if (length != 0 || has_payload_semantics(&head.method))
            && !head.headers.contains_key(CONTENT_LENGTH)
        {
            head.headers.insert(CONTENT_LENGTH, length.into());
        }
    }
    let (response, send_stream) = sender
        .send_request(Request::from_parts(head, ()), end_of_stream)
        .map_err(StreamError::Failed)?;
    let mut cancel = CancelOnDrop(None);
    if !end_of_stream {
        let mut pipe = BodyPipe {
            body,
            stream: send_stream,
            cancelled: None,
            first_chunk: true,
        };
        // Usually the body is already here (a small gRPC message): sent now, without a task.
        let done = poll_fn(|cx| Poll::Ready(Pin::new(&mut pipe).poll(cx).is_ready())).await;
        if !done {
            let (tx, rx) = oneshot::channel();
            pipe.cancelled = Some(rx);
            cancel.0 = Some(tx);
            tokio::spawn(pipe);
        }
    }
    let response = response.await.map_err(StreamError::Failed)?;
    // Disarmed: from here on the body goes on with the response.
    drop(cancel.0.take());
    let (parts, recv) = response.into_parts();
    let length = content_length(&parts.headers);
    Ok(Response::from_parts(
        parts,
        H2Body {
            recv,
            length,
            data_done: false,
        },
    ))
}

/// RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2 (and `h2` refuses to
/// send them). The request rewrite already removed the client's; `Transfer-Encoding: chunked`
/// may have been set for an HTTP/1.1 upstream's framing (`headers.rs::keep_body_framing`).
fn strip_connection_fields(headers: &mut HeaderMap) {
    for name in [
        &CONNECTION,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ] {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    if headers.get(TE).is_some_and(|te| te != "trailers") {
        headers.remove(TE);
    }
}

/// Methods whose request has a body by definition, so an empty one says `content-length: 0`.
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Copies a request body to its stream as the peer's flow-control window allows.
struct BodyPipe<B = RequestBody> {
    body: B,
    stream: h2::SendStream<Bytes>,
    /// Fires when the request gave up before its response head (a timeout): the stream is
    /// reset rather than left waiting for the rest of the client's body.
    cancelled: Option<oneshot::Receiver<()>>,
    /// No chunk has been taken from the body yet.
    first_chunk: bool,
}

impl<B> Future for BodyPipe<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let pipe = self.get_mut();
        if let Some(cancelled) = &mut pipe.cancelled {
            match Pin::new(cancelled).poll(cx) {
                Poll::Ready(Ok(())) => {
                    pipe.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                // The response head arrived: the body goes on as long as the stream does.
                Poll::Ready(Err(_)) => pipe.cancelled = None,
                Poll::Pending => {}
            }
        }
        loop {
            // The peer reset the stream (it may have answered without reading the rest).
            if let Poll::Ready(reason) = pipe.stream.poll_reset(cx) {
                tracing::debug!(?reason, "upstream reset the stream of a request body");
                return Poll::Ready(());
            }
            // Wait for some window before taking more of the body, so a slow upstream slows
            // the client down instead of piling its body up here: at most the one chunk taken
            // before the stream had any window is held beyond it. That first chunk goes without
            // waiting because a new stream has no window yet: `h2` gives it some only when the
            // connection's task has sent the stream's HEADERS, so waiting would cost every
            // request with a body (every gRPC call) a task of its own and a round of wake-ups.
            if !pipe.first_chunk {
                pipe.stream.reserve_capacity(1);
                while pipe.stream.capacity() == 0 {
                    match pipe.stream.poll_capacity(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                    }
                }
            }
            match Pin::new(&mut pipe.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let _ = pipe.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
                Poll::Ready(Some(Err(e))) => {
                    // The client's body broke: the stream is reset as ours (`Initiator::User`),
                    // which `ExchangeError::is_user` tells from the upstream's failures.
                    tracing::debug!(error = %e, "client request body failed on its way upstream");
                    pipe.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        pipe.first_chunk = false;
                        let last = pipe.body.is_end_stream();
                        if !data.has_remaining() && !last {
                            continue;
                        }
                        let sent = pipe.stream.send_data(data, last);
                        if sent.is_err() || last {
                            return Poll::Ready(());
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let _ = pipe.stream.send_trailers(trailers);
                            return Poll::Ready(());
                        }
                    }
                },
            }
        }
    }
}

/// Tells a spawned [`BodyPipe`] that its request gave up, unless disarmed when the response
/// head arrives.
struct CancelOnDrop(Option<oneshot::Sender<()>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            let _ = cancel.send(());
        }
    }
}

/// A response body arriving on an HTTP/2 stream: its DATA frames, then its trailers. Each chunk
/// read gives its bytes back to the flow-control window at once: the proxy holds nothing, the
/// client's own connection paces the reading.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    /// The response's `content-length`, for the client's framing.
    length: Option<u64>,
    data_done: bool,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let body = self.get_mut();
        if !body.data_done {
            match body.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = body.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => body.data_done = true,
            }
        }
        match body.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http::HeaderValue;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A request body whose chunks are all here, counting the ones taken.
    struct ReadyChunks {
        chunks: VecDeque<Bytes>,
        taken: Arc<AtomicUsize>,
    }

    impl Body for ReadyChunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let body = self.get_mut();
            Poll::Ready(body.chunks.pop_front().map(|chunk| {
                body.taken.fetch_add(1, Ordering::Relaxed);
                Ok(Frame::data(chunk))
            }))
        }

        fn is_end_stream(&self) -> bool {
            self.chunks.is_empty()
        }
    }

    const SERVER_STREAMS: u32 = 7;

    /// A stream just opened on a real HTTP/2 connection over loopback to an `h2` server whose
    /// streams start with `window` bytes of flow-control window; the server accepts streams
    /// and never reads their bodies.
    async fn new_stream(window: u32) -> (H2Sender, h2::SendStream<Bytes>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut server = h2::server::Builder::new()
                .initial_window_size(window)
                .max_concurrent_streams(SERVER_STREAMS)
                .handshake::<_, Bytes>(socket)
                .await
                .unwrap();
            let mut held = Vec::new();
            while let Some(Ok(stream)) = server.accept().await {
                held.push(stream);
            }
        });
        let (sender, connection) = h2::client::handshake(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap();
        tokio::spawn(connection);
        // The server's SETTINGS (its window among them) are in force once its stream limit is.
        while sender.current_max_send_streams() != SERVER_STREAMS as usize {
            tokio::task::yield_now().await;
        }
        let mut sender = sender.ready().await.unwrap();
        let request = Request::post("http://upstream/").body(()).unwrap();
        let (_response, stream) = sender.send_request(request, false).unwrap();
        (sender, stream)
    }

    fn pipe<B>(body: B, stream: h2::SendStream<Bytes>) -> BodyPipe<B> {
        BodyPipe {
            body,
            stream,
            cancelled: None,
            first_chunk: true,
        }
    }

    /// A body that is all here goes onto a stream the connection has not opened yet in the
    /// request's own poll: waiting for the window a new stream gets only when its HEADERS are
    /// out would cost every gRPC call a task (docs/performance.md#http2-upstreams-and-grpc).
    #[tokio::test]
    async fn a_body_already_here_is_sent_without_waiting_for_the_stream_to_open() {
        let (_sender, stream) = new_stream(65_535).await;
        let taken = Arc::new(AtomicUsize::new(0));
        let body = ReadyChunks {
            chunks: VecDeque::from([Bytes::from_static(b"\0\0\0\0\x05hello")]),
            taken: taken.clone(),
        };
        let mut pipe = pipe(body, stream);
        // Polled before the connection's task has run once since the stream was made.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(
            Pin::new(&mut pipe).poll(&mut cx).is_ready(),
            "the pipe waited for a window the stream cannot have yet"
        );
        assert_eq!(taken.load(Ordering::Relaxed), 1);
    }

    /// A slow upstream slows the client: with no window at all, the pipe takes the first chunk
    /// and then waits, however many more chunks the client has sent.
    #[tokio::test]
    async fn no_more_than_one_chunk_goes_beyond_the_window() {
        let (_sender, stream) = new_stream(0).await;
        let taken = Arc::new(AtomicUsize::new(0));
        let body = ReadyChunks {
            chunks: (0..4).map(|_| Bytes::from(vec![b'x'; 1024])).collect(),
            taken: taken.clone(),
        };
        let mut pipe = pipe(body, stream);
        for _ in 0..20 {
            let done = poll_fn(|cx| Poll::Ready(Pin::new(&mut pipe).poll(cx).is_ready())).await;
            assert!(
                !done,
                "the pipe finished a body the upstream had no window for"
            );
            // Lets the connection's task open the stream and read the server's settings.
            tokio::task::yield_now().await;
        }
        assert_eq!(
            taken.load(Ordering::Relaxed),
            1,
            "chunks taken beyond the window"
        );
    }

    #[test]
    fn connection_specific_fields_never_reach_an_http2_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        headers.insert(&KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("gzip"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_connection_fields(&mut headers);
        assert_eq!(headers.len(), 1, "left: {headers:?}");
        assert_eq!(headers["x-kept"], "1");

        // `TE: trailers` is the one TE HTTP/2 allows, and gRPC servers require it.
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("trailers"));
        strip_connection_fields(&mut headers);
        assert_eq!(headers[TE], "trailers");
    }
}

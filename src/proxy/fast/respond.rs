//! The fast path's answer to the client (docs/performance.md#the-client-side-fast-path): a
//! `Response<ResponseBody>` — what `forward.rs`'s `respond` or its one exit made, the outcome
//! recorded by the body as on today's path — written to the socket as hyper's HTTP/1.1 server
//! writes it to a keep-alive HTTP/1.1 request: the same status line, the same fields in the
//! same order, the same framing chosen by the same rules (`Content-Length`, `chunked`, none for
//! `HEAD`, `204` and `304`), `Date` added, and `Connection: close` added when the client asked
//! to close. The body is streamed frame by frame; trailers are not sent (a simple request has
//! no `TE: trailers`).

use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::CONNECTION;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::proxy::body::ResponseBody;

/// How the body goes on the wire after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (none at all for `0`).
    Length(u64),
    Chunked,
    /// Until the connection closes.
    Close,
}

/// A response head as hyper's server would write it, and how its body follows.
#[derive(Debug)]
pub struct Head {
    pub bytes: Vec<u8>,
    pub framing: Framing,
    /// The connection closes after this response.
    pub last: bool,
}

/// What hyper's server would refuse to write (conflicting framing fields): the connection
/// is closed without an answer, as hyper closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwritable;

/// The body's length as hyper's dispatcher reads it: none when it has already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Known(u64),
    Unknown,
}

fn can_chunked(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD
        && !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// hyper's `Server::can_have_body`, which, unlike the framing checks, ignores the version.
fn can_have_body(method: &Method, status: StatusCode) -> bool {
    can_chunked(method, status)
}

fn can_have_content_length(status: StatusCode) -> bool {
    !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// `value` lists `token` (comma-separated, case-insensitive), as hyper reads `Connection`
/// (text only: a value that is not `to_str` text lists nothing).
pub(super) fn lists(value: &[u8], token: &str) -> bool {
    crate::routing::as_text(value)
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// `chunked` is the last coding, as hyper reads `Transfer-Encoding`.
fn ends_chunked(value: &[u8]) -> bool {
    crate::routing::as_text(value)
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
}

/// `Content-Length` digits, as hyper reads them.
fn digits(value: &[u8]) -> Option<u64> {
    let bytes = value;
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, b| {
        b.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10))
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
    })
}

/// What of a response, besides its fields, decides how hyper's server writes its head.
#[derive(Debug, Clone, Copy)]
pub struct Start<'r> {
    pub status: StatusCode,
    /// An HTTP/1.0 answer (from an HTTP/1.0 upstream) keeps its version, as hyper writes it.
    pub http10: bool,
    /// A reason phrase other than the status's canonical one.
    pub reason: Option<&'r [u8]>,
    body: Option<BodyLength>,
}

impl<'r> Start<'r> {
    /// The start of `response`, whose body is `body`.
    pub fn of<T, B: Body>(response: &'r Response<T>, body: &B) -> Self {
        Start {
            status: response.status(),
            http10: response.version() == http::Version::HTTP_10,
            reason: response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| r.as_bytes()),
            body: body_length(body),
        }
    }
}

/// The body's length as hyper's dispatcher reads it: none when it has already ended.
fn body_length<B: Body>(body: &B) -> Option<BodyLength> {
    if body.is_end_stream() {
        None
    } else {
        Some(match body.size_hint().exact() {
            Some(n) => BodyLength::Known(n),
            None => BodyLength::Unknown,
        })
    }
}

/// Encode `response`'s head for a request with `method` on a connection whose client
/// `wants_close`: the rules of hyper 1's HTTP/1 server (`proto/h1/role.rs`, `Server::encode`,
/// and `Conn::enforce_version`), kept rule for rule, quirks included.
pub fn encode_head<B: Body>(
    response: &mut Response<B>,
    method: &Method,
    wants_close: bool,
    date: &[u8],
) -> Result<Head, Unwritable> {
    let headers = response.headers_mut();
    if wants_close {
        // Keep-alive is off: `Connection: close` is added, unless a value says it already.
        let says_close = headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| lists(v.as_bytes(), "close"));
        if !says_close {
            headers.append(CONNECTION, HeaderValue::from_static("close"));
        }
    }
    let start = Start::of(response, response.body());
    let fields = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    encode_fields(start, fields, method, wants_close, date)
}

/// [`encode_head`]'s rules over fields in the order a `HeaderMap` iterates them (a name's
/// values together), names compared without case and written lowercase; `Connection: close`
/// is already among them when the client asked to close.
pub fn encode_fields<'f>(
    start: Start<'_>,
    fields: impl Iterator<Item = (&'f [u8], &'f [u8])>,
    method: &Method,
    wants_close: bool,
    date: &[u8],
) -> Result<Head, Unwritable> {
    let Start {
        status,
        http10,
        reason,
        body,
    } = start;
    let mut last = wants_close;
    let mut dst = Vec::with_capacity(256);
    let can_chunked = |method: &Method, status: StatusCode| !http10 && can_chunked(method, status);
    if status == StatusCode::OK && reason.is_none() && !http10 {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(reason) => dst.extend_from_slice(reason),
            None => dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let mut framing = Framing::Length(0);
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut name_written = false;
    let mut must_write_chunked = false;
    let mut prev_len: Option<u64> = None;
    let mut current: Option<&[u8]> = None;
    // hyper ends a joined line when the next name starts, with `, chunked` whenever a
    // `Transfer-Encoding` did not end with it (the flag is never cleared, as in hyper).
    let end_line = |dst: &mut Vec<u8>, name_written: bool, must_write_chunked: bool| {
        if name_written {
            if must_write_chunked {
                dst.extend_from_slice(b", chunked\r\n");
            } else {
                dst.extend_from_slice(b"\r\n");
            }
        }
    };
    for (name, value) in fields {
        if !current.is_some_and(|c| c.eq_ignore_ascii_case(name)) {
            end_line(&mut dst, name_written, must_write_chunked);
            name_written = false;
            current = Some(name);
        }
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        if is(b"content-length") {
            if wrote_len && !name_written {
                return Err(Unwritable);
            }
            match body {
                Some(BodyLength::Known(known)) => {
                    if !name_written {
                        framing = Framing::Length(known);
                        dst.extend_from_slice(b"content-length: ");
                        dst.extend_from_slice(value);
                        wrote_len = true;
                        name_written = true;
                    }
                    continue;
                }
                Some(BodyLength::Unknown) => {
                    let len = digits(value).ok_or(Unwritable)?;
                    match prev_len {
                        Some(prev) if prev != len => return Err(Unwritable),
                        Some(_) => continue,
                        None => {
                            framing = Framing::Length(len);
                            dst.extend_from_slice(b"content-length: ");
                            dst.extend_from_slice(value);
                            wrote_len = true;
                            name_written = true;
                            prev_len = Some(len);
                            continue;
                        }
                    }
                }
                None if *method != Method::HEAD => continue,
                None => {}
            }
            wrote_len = true;
        } else if is(b"transfer-encoding") {
            if wrote_len && !name_written {
                return Err(Unwritable);
            }
            if !can_chunked(method, status) {
                continue;
            }
            wrote_len = true;
            must_write_chunked = !ends_chunked(value);
            if name_written {
                dst.extend_from_slice(b", ");
            } else {
                framing = Framing::Chunked;
                name_written = true;
                dst.extend_from_slice(b"transfer-encoding: ");
            }
            dst.extend_from_slice(value);
            continue;
        } else if is(b"connection") {
            last |= lists(value, "close");
            if name_written {
                dst.extend_from_slice(b", ");
            } else {
                name_written = true;
                dst.extend_from_slice(b"connection: ");
            }
            dst.extend_from_slice(value);
            continue;
        } else if is(b"date") {
            wrote_date = true;
        } else if is(b"trailer") {
            if !can_chunked(method, status) {
                continue;
            }
            if name_written {
                dst.extend_from_slice(b", ");
            } else {
                name_written = true;
                dst.extend_from_slice(b"trailer: ");
            }
            dst.extend_from_slice(value);
            continue;
        }
        let at = dst.len();
        dst.extend_from_slice(name);
        if let Some(written) = dst.get_mut(at..) {
            written.make_ascii_lowercase();
        }
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value);
        dst.extend_from_slice(b"\r\n");
    }
    end_line(&mut dst, name_written, must_write_chunked);
    if !wrote_len {
        framing = match body {
            Some(BodyLength::Unknown) if !can_chunked(method, status) => Framing::Close,
            Some(BodyLength::Unknown) => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            None | Some(BodyLength::Known(0)) => {
                if can_have_content_length(status) && *method != Method::HEAD {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(BodyLength::Known(_)) if !can_have_content_length(status) => Framing::Length(0),
            Some(BodyLength::Known(len)) => {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(len.to_string().as_bytes());
                dst.extend_from_slice(b"\r\n");
                Framing::Length(len)
            }
        };
    }
    if !can_have_body(method, status) {
        framing = Framing::Length(0);
    }
    if wrote_date {
        dst.extend_from_slice(b"\r\n");
    } else {
        dst.extend_from_slice(b"date: ");
        dst.extend_from_slice(date);
        dst.extend_from_slice(b"\r\n\r\n");
    }
    // hyper's server cannot keep a connection whose body ends only when it closes.
    last |= framing == Framing::Close;
    Ok(Head {
        bytes: dst,
        framing,
        last,
    })
}

/// How writing an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Whole, and the connection stays open for the next request.
    KeepAlive,
    /// Whole (or refused), and the connection closes: the client may still be sending.
    Close,
    /// The client went away, or its socket failed.
    Gone,
}

/// Write `response` to `socket` for a request with `method`. The body is dropped at the end,
/// which records its outcome (`body.rs`) as hyper dropping it does.
pub async fn write<W: AsyncWrite + Unpin>(
    socket: &mut W,
    mut response: Response<ResponseBody>,
    method: &Method,
    wants_close: bool,
) -> Written {
    let head =
        super::date::with_current(|date| encode_head(&mut response, method, wants_close, date));
    write_encoded(socket, head, response.into_body()).await
}

/// Write a head encoded by [`encode_head`] or [`encode_fields`], then stream `body` as it
/// frames it.
pub async fn write_encoded<W: AsyncWrite + Unpin>(
    socket: &mut W,
    head: Result<Head, Unwritable>,
    mut body: ResponseBody,
) -> Written {
    let Ok(Head {
        bytes: mut out,
        framing,
        last,
    }) = head
    else {
        return Written::Close;
    };
    let whole = match framing {
        // hyper does not poll a body it frames as empty.
        Framing::Length(0) => true,
        Framing::Length(n) => stream(socket, &mut body, &mut out, Some(n), false).await,
        Framing::Chunked => stream(socket, &mut body, &mut out, None, true).await,
        Framing::Close => stream(socket, &mut body, &mut out, None, false).await,
    };
    if !whole {
        // The body broke, or did not fit its framing: hyper aborts the connection, and what it
        // had not flushed yet (at least the head, when the body broke at once) never goes out.
        drop(body);
        return Written::Close;
    }
    // Flushed, as hyper flushes after each answer: the socket then knows the answer is out,
    // and a later upstream 1xx may be written (`informational.rs`).
    let flushed = socket.write_all(&out).await.is_ok() && socket.flush().await.is_ok();
    drop(body);
    match (flushed, last) {
        (false, _) => Written::Gone,
        (true, false) => Written::KeepAlive,
        (true, true) => Written::Close,
    }
}

/// Stream the body after the head already in `out`: exactly `length` bytes, or chunks, or as
/// it comes. Bytes gather in `out` while the body has more at once, and go out when it must
/// be waited for. `false` when the body broke, or did not fit its length (hyper aborts the
/// connection then) or the socket failed.
async fn stream<W: AsyncWrite + Unpin>(
    socket: &mut W,
    body: &mut ResponseBody,
    out: &mut Vec<u8>,
    length: Option<u64>,
    chunked: bool,
) -> bool {
    let mut left = length;
    loop {
        let ready =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let polled = match ready {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                if !out.is_empty() {
                    if socket.write_all(out).await.is_err() {
                        return false;
                    }
                    out.clear();
                }
                std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let data = match polled {
            None => break,
            Some(Err(_)) => return false,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: not sent to a request that did not ask for them.
                Err(_) => continue,
            },
        };
        if !add(out, &data, &mut left, chunked) {
            return false;
        }
        if out.len() >= 64 * 1024 {
            if socket.write_all(out).await.is_err() {
                return false;
            }
            out.clear();
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    left.is_none_or(|n| n == 0)
}

/// Encode one data frame into `out`; `false` when it passes the announced length.
fn add(out: &mut Vec<u8>, data: &Bytes, left: &mut Option<u64>, chunked: bool) -> bool {
    if data.is_empty() {
        return true;
    }
    if let Some(n) = left {
        let len = data.len() as u64;
        if len > *n {
            return false;
        }
        *n -= len;
    }
    if chunked {
        out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
    true
}

/// The fields of a response as hyper writes them: only for tests of [`encode_head`].
#[cfg(test)]
fn fields(head: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with("date: "))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};

    fn head<B: Body>(
        mut response: Response<B>,
        method: Method,
        close: bool,
    ) -> (Vec<String>, Framing, bool) {
        let head = encode_head(&mut response, &method, close, b"DATE").unwrap();
        let text = String::from_utf8(head.bytes.clone()).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        let mut lines = vec![text.lines().next().unwrap().to_owned()];
        lines.extend(fields(&head.bytes));
        (lines, head.framing, head.last)
    }

    #[test]
    fn length_chunked_and_bodiless_framing() {
        let full = Response::new(Full::new(Bytes::from_static(b"hello")));
        assert_eq!(
            head(full, Method::GET, false),
            (
                vec!["HTTP/1.1 200 OK".into(), "content-length: 5".into()],
                Framing::Length(5),
                false
            )
        );
        let mut empty = Response::new(Empty::<Bytes>::new());
        *empty.status_mut() = StatusCode::NOT_FOUND;
        assert_eq!(
            head(empty, Method::GET, true),
            (
                vec![
                    "HTTP/1.1 404 Not Found".into(),
                    "connection: close".into(),
                    "content-length: 0".into()
                ],
                Framing::Length(0),
                true
            )
        );
        let mut no_content = Response::new(Empty::<Bytes>::new());
        *no_content.status_mut() = StatusCode::NO_CONTENT;
        assert_eq!(
            head(no_content, Method::GET, false).0,
            vec!["HTTP/1.1 204 No Content".to_owned()]
        );
        let mut coded = Response::new(Full::new(Bytes::from_static(b"x")));
        coded.headers_mut().insert(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        coded
            .headers_mut()
            .insert("x-a", HeaderValue::from_static("1"));
        let (lines, framing, _) = head(coded, Method::GET, false);
        assert_eq!(framing, Framing::Chunked);
        assert_eq!(lines[1], "transfer-encoding: gzip, chunked");
        assert_eq!(lines[2], "x-a: 1");
    }
}

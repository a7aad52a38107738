//! The upstream's response head: parsed with `httparse`, its fields kept as slices of the
//! bytes read (no copy), and its framing decided as RFC 9112 §6.3 says
//! (docs/security.md#upstream-responses-through-canaryds-engine).
//!
//! Every decision here also says whether the connection may carry another exchange: a
//! close-delimited body, `Content-Length` together with `Transfer-Encoding`, a `101`, an
//! HTTP/1.0 answer and `Connection: close` all end it.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use hyper::ext::ReasonPhrase;

use super::Error;

/// The largest response head read, as hyper's client allows (its default buffer limit).
pub(crate) const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// The most fields a head may have, as hyper's client allows.
const MAX_FIELDS: usize = 100;

/// How the response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: `204`, `304`, an answer to `HEAD`.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
    /// `101`: the connection now carries another protocol.
    Switch,
}

/// A response head's fields as they came, spans of its bytes: the fast path's view
/// (docs/performance.md#the-client-side-fast-path), with no `HeaderMap` built.
#[derive(Debug)]
pub struct FlatFields {
    bytes: Bytes,
    /// (name start, name end, value start, value end) in `bytes`.
    spans: Vec<(usize, usize, usize, usize)>,
}

impl FlatFields {
    /// How many fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// No fields at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Each field's name (as sent) and value, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|&(ns, ne, vs, ve)| {
            (
                self.bytes.get(ns..ne).unwrap_or_default(),
                self.bytes.get(vs..ve).unwrap_or_default(),
            )
        })
    }
}

/// A final (non-1xx) response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// The fields, unless `flat` holds them.
    pub headers: HeaderMap,
    /// The fields as spans, when the head was parsed for the fast path.
    pub flat: Option<FlatFields>,
    /// The reason phrase, when it is not the status's canonical one (hyper's server writes it).
    pub reason: Option<ReasonPhrase>,
    pub framing: Framing,
    /// The connection may carry another exchange once this message is read to its end.
    pub keep_alive: bool,
}

/// What the bytes at the front of the buffer hold.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A `1xx` other than `101` (consumed): passed on, and a final head follows.
    Informational(StatusCode, HeaderMap),
    /// The final head (consumed).
    Final(Head),
}

/// Parse a head at the front of `buf`, consuming it when complete; `method` is the request's
/// (an answer to `HEAD` has no body, nor has a `2xx` to `CONNECT`).
pub(crate) fn parse(buf: &mut BytesMut, method: &Method) -> Result<Parsed, Error> {
    parse_with(buf, method, false)
}

/// [`parse`], the final head's fields left as spans (`Head::flat`) when `flat`: the same
/// checks and framing, no `HeaderMap` (a 1xx still gets one, for its hook). `httparse`'s field
/// names and values are what `HeaderName` and `HeaderValue` accept, so no field the
/// `HeaderMap` path would refuse passes here.
pub(crate) fn parse_with(buf: &mut BytesMut, method: &Method, flat: bool) -> Result<Parsed, Error> {
    // Left uninitialised (httparse writes what it fills): an initialised array of 100 fields,
    // or one of their positions, is a memset of kilobytes per response.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(Error::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(Error::Head(e)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(Error::HeadTooLarge);
    }
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| Error::Status)?;
    let version = if response.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let reason = response
        .reason
        .filter(|r| Some(*r) != status.canonical_reason())
        .and_then(|r| ReasonPhrase::try_from(r.as_bytes()).ok());
    // Where each field lies in the buffer, so that the values become slices of one `Bytes`.
    let base = buf.as_ptr() as usize;
    let count = response.headers.len();
    let mut spans = Vec::with_capacity(count);
    for field in response.headers.iter() {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        spans.push((
            name,
            name + field.name.len(),
            value,
            value + field.value.len(),
        ));
    }
    let bytes: Bytes = buf.split_to(len).freeze();
    // An HTTP/1.0 server keeps a connection only for a client that asked with `Connection:
    // keep-alive`, which canaryd (an HTTP/1.1 client) never sends: the server may close after
    // its answer, so the connection is not used again (as with hyper's client).
    let mut keep_alive = version == Version::HTTP_11;
    let informational = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
    if flat && !informational {
        let fields = FlatFields { bytes, spans };
        // One pass for what framing asks most: whether the framing fields are there at all.
        let mut seen = Seen {
            fields: &fields,
            te: false,
            cl: false,
        };
        for (name, value) in fields.iter() {
            match name.len() {
                // Once any `Connection` line says close, a later `keep-alive` does not undo it.
                10 if name.eq_ignore_ascii_case(b"connection") && lists(value, b"close") => {
                    keep_alive = false;
                }
                14 => seen.cl |= name.eq_ignore_ascii_case(b"content-length"),
                17 => seen.te |= name.eq_ignore_ascii_case(b"transfer-encoding"),
                _ => {}
            }
        }
        let framing = framing(status, version, &seen, method, &mut keep_alive)?;
        return Ok(Parsed::Final(Head {
            status,
            version,
            headers: HeaderMap::new(),
            flat: Some(fields),
            reason,
            framing,
            keep_alive,
        }));
    }
    let mut headers = HeaderMap::with_capacity(count);
    for (name_start, name_end, value_start, value_end) in spans {
        let name =
            HeaderName::from_bytes(&bytes[name_start..name_end]).map_err(|_| Error::Field)?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value_start..value_end))
            .map_err(|_| Error::Field)?;
        // Once any `Connection` line says close, a later `keep-alive` does not undo it.
        if name == CONNECTION && has_token(&value, b"close") {
            keep_alive = false;
        }
        headers.append(name, value);
    }
    if informational {
        return Ok(Parsed::Informational(status, headers));
    }
    let framing = framing(status, version, &headers, method, &mut keep_alive)?;
    Ok(Parsed::Final(Head {
        status,
        version,
        headers,
        flat: None,
        reason,
        framing,
        keep_alive,
    }))
}

/// The lines of one field name, from a `HeaderMap` or from spans: framing is decided by one
/// code for both.
pub(crate) trait Lines {
    /// The values of every line named `name`, in order.
    fn lines<'s>(&'s self, name: &'s HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + 's;

    fn has(&self, name: &HeaderName) -> bool {
        self.lines(name).next().is_some()
    }
}

impl Lines for HeaderMap {
    // A `HeaderName` looks a standard field up without parsing its name again.
    fn lines<'s>(&'s self, name: &'s HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + 's {
        self.get_all(name).into_iter().map(|v| v.as_bytes())
    }

    fn has(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }
}

/// Flat fields with the framing fields' presence found in one pass.
struct Seen<'f> {
    fields: &'f FlatFields,
    te: bool,
    cl: bool,
}

impl Lines for Seen<'_> {
    fn lines<'s>(&'s self, name: &'s HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + 's {
        self.fields.lines(name)
    }

    fn has(&self, name: &HeaderName) -> bool {
        if name == TRANSFER_ENCODING {
            self.te
        } else if name == CONTENT_LENGTH {
            self.cl
        } else {
            self.fields.has(name)
        }
    }
}

impl Lines for FlatFields {
    fn lines<'s>(&'s self, name: &'s HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + 's {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes()))
            .map(|(_, v)| v)
    }
}

/// RFC 9112 §6.3, in hyper's client's order, plus what makes the connection single-use.
fn framing<L: Lines>(
    status: StatusCode,
    version: Version,
    headers: &L,
    method: &Method,
    keep_alive: &mut bool,
) -> Result<Framing, Error> {
    let has_te = headers.has(&TRANSFER_ENCODING);
    // Both framings in one message: nothing after it on the connection can be trusted (RFC
    // 9112 §6.3, item 3), whatever the status; for a body, `Transfer-Encoding` wins.
    if has_te && headers.has(&CONTENT_LENGTH) {
        *keep_alive = false;
    }
    match status.as_u16() {
        101 => {
            *keep_alive = false;
            return Ok(Framing::Switch);
        }
        204 | 304 => return Ok(Framing::Empty),
        _ if *method == Method::HEAD => return Ok(Framing::Empty),
        // The connection became a tunnel canaryd does not open (hyper's client: an upgrade).
        200..=299 if *method == Method::CONNECT => {
            *keep_alive = false;
            return Ok(Framing::Empty);
        }
        _ => {}
    }
    if has_te {
        if version == Version::HTTP_10 {
            return Err(Error::TransferEncodingOnHttp10);
        }
        return Ok(if ends_chunked(headers) {
            Framing::Chunked
        } else {
            *keep_alive = false;
            Framing::Close
        });
    }
    if headers.has(&CONTENT_LENGTH) {
        return content_length(headers).map(Framing::Length);
    }
    *keep_alive = false;
    Ok(Framing::Close)
}

/// Whether the last coding of the last `Transfer-Encoding` line is `chunked`.
fn ends_chunked<L: Lines>(headers: &L) -> bool {
    headers
        .lines(&TRANSFER_ENCODING)
        .next_back()
        .and_then(|v| v.rsplit(|b| *b == b',').next())
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Every `Content-Length` value (lines and comma-separated lists) must be the same run of
/// digits; anything else is invalid framing (RFC 9112 §6.3, item 5).
pub(crate) fn content_length<L: Lines>(headers: &L) -> Result<u64, Error> {
    let mut found: Option<u64> = None;
    for line in headers.lines(&CONTENT_LENGTH) {
        for item in line.split(|b| *b == b',') {
            let n = digits(item.trim_ascii()).ok_or(Error::ContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(Error::ContentLength);
            }
            found = Some(n);
        }
    }
    found.ok_or(Error::ContentLength)
}

fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn has_token(value: &HeaderValue, token: &[u8]) -> bool {
    lists(value.as_bytes(), token)
}

fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn final_head(text: &str, to_head: bool) -> Result<(Head, usize), Error> {
        let mut buf = BytesMut::from(text.as_bytes());
        let method = if to_head { Method::HEAD } else { Method::GET };
        match parse(&mut buf, &method)? {
            Parsed::Final(head) => Ok((head, buf.len())),
            other => panic!("not final: {other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (h, left) =
            final_head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!(
            (h.framing, h.keep_alive, left),
            (Framing::Length(5), true, 5)
        );
        let (h, _) = final_head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false).unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(matches!(
            final_head(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false
            ),
            Err(Error::ContentLength)
        ));
        assert!(matches!(
            final_head("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false),
            Err(Error::ContentLength)
        ));
        let (h, _) = final_head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let (h, _) =
            final_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let (h, _) = final_head("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let (h, _) = final_head(
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let (h, _) = final_head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let (h, _) = final_head(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Switch, false));
        assert!(matches!(
            final_head(
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            Err(Error::TransferEncodingOnHttp10)
        ));
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let (h, _) = final_head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
        let (h, _) = final_head(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(
            !h.keep_alive,
            "canaryd never asks an HTTP/1.0 server to keep it"
        );
        let (h, _) = final_head("HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn informational_heads_are_consumed_one_at_a_time() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..]);
        let Parsed::Informational(status, headers) = parse(&mut buf, &Method::GET).unwrap() else {
            panic!("not informational")
        };
        assert_eq!(status, 103);
        assert_eq!(headers["link"], "</a>");
        assert!(matches!(
            parse(&mut buf, &Method::GET).unwrap(),
            Parsed::Final(_)
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_fail() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(matches!(
            parse(&mut buf, &Method::GET).unwrap(),
            Parsed::Partial
        ));
        let mut big = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX: "[..]);
        big.extend_from_slice(&vec![b'a'; MAX_HEAD_BYTES]);
        assert!(matches!(
            parse(&mut big, &Method::GET),
            Err(Error::HeadTooLarge)
        ));
        let mut bad = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n"[..]);
        assert!(matches!(parse(&mut bad, &Method::GET), Err(Error::Head(_))));
    }
}

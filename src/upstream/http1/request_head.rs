//! The request head as it goes to the upstream: rebuilt from the validated request's parsed
//! method, origin-form target and fields, every line ended with CRLF (never bytes as the
//! client sent them), and the body's framing chosen as hyper's client chooses it.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request};
use http_body::Body;

use super::response_head::content_length;
use crate::upstream::RequestBody;

/// How the request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body is sent.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
}

/// Write the head into `out` (cleared first) and say how the body follows.
///
/// As hyper's client: a body that already ended sends none and drops `Transfer-Encoding`; a
/// request `Transfer-Encoding` means chunked (with `chunked` added when it is not the final
/// coding) and drops `Content-Length`; else a valid `Content-Length` frames it, else a known
/// size does (written as `content-length`), else `GET`, `HEAD` and `CONNECT` send no body and
/// the other methods go chunked.
/// `request`'s own body is not looked at: the body to send is `body` (taken out of it, so
/// that the request itself can be kept to be sent again).
pub(crate) fn write(
    request: &Request<RequestBody>,
    body: &RequestBody,
    out: &mut Vec<u8>,
) -> BodyFraming {
    let headers = request.headers();
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    let (framing, add) = if body.is_end_stream() {
        (BodyFraming::None, Added::Nothing)
    } else if has_te {
        let chunked_last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        let add = if chunked_last {
            Added::Nothing
        } else {
            Added::Chunked
        };
        (BodyFraming::Chunked, add)
    } else if let Some(n) = headers
        .contains_key(CONTENT_LENGTH)
        .then(|| content_length(headers).ok())
        .flatten()
    {
        (BodyFraming::Length(n), Added::Nothing)
    } else if let Some(n) = body.size_hint().exact() {
        (BodyFraming::Length(n), Added::Length(n))
    } else if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::CONNECT
    ) {
        (BodyFraming::None, Added::Nothing)
    } else {
        (BodyFraming::Chunked, Added::Chunked)
    };
    out.clear();
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    match request.uri().path_and_query() {
        Some(target) if !target.as_str().is_empty() => {
            out.extend_from_slice(target.as_str().as_bytes())
        }
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let skip_te = framing == BodyFraming::None;
    let skip_cl = framing == BodyFraming::Chunked || matches!(add, Added::Length(_));
    for (name, value) in headers {
        if (skip_te && name == TRANSFER_ENCODING) || (skip_cl && name == CONTENT_LENGTH) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match add {
        Added::Nothing => {}
        Added::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Added::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// A framing field the head gets that the request did not carry.
#[derive(Clone, Copy)]
enum Added {
    Nothing,
    Chunked,
    Length(u64),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use http::HeaderValue;

    fn head(
        method: Method,
        fields: &[(&'static str, &'static str)],
        body: RequestBody,
    ) -> (String, BodyFraming) {
        let mut request = Request::builder()
            .method(method)
            .uri("/p?q=1")
            .body(RequestBody::Buffered(None))
            .unwrap();
        for (n, v) in fields {
            request
                .headers_mut()
                .append(*n, HeaderValue::from_static(v));
        }
        let mut out = Vec::new();
        let framing = write(&request, &body, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn heads_are_rebuilt_with_crlf_and_framed_as_hyper_does() {
        let (text, framing) = head(
            Method::GET,
            &[("host", "a"), ("x-a", "1")],
            RequestBody::Buffered(None),
        );
        assert_eq!(text, "GET /p?q=1 HTTP/1.1\r\nhost: a\r\nx-a: 1\r\n\r\n");
        assert_eq!(framing, BodyFraming::None);
        let body = || RequestBody::Buffered(Some(Bytes::from_static(b"hello")));
        let (text, framing) = head(Method::POST, &[("host", "a")], body());
        assert_eq!(
            text,
            "POST /p?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::Length(5));
        let (text, framing) = head(Method::POST, &[("content-length", "5")], body());
        assert_eq!(text, "POST /p?q=1 HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(framing, BodyFraming::Length(5));
        let (text, framing) = head(
            Method::POST,
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            body(),
        );
        assert_eq!(
            text,
            "POST /p?q=1 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::Chunked);
        let (text, _) = head(
            Method::GET,
            &[("transfer-encoding", "chunked")],
            RequestBody::Buffered(None),
        );
        assert_eq!(text, "GET /p?q=1 HTTP/1.1\r\n\r\n");
    }
}

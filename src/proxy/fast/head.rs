//! The request head classifier of the fast path (docs/performance.md#the-client-side-fast-path):
//! a plain HTTP/1.1 request head parsed with `httparse` straight from the bytes the rounds loop
//! holds into a flat view (method, target, field name and value slices), and classified in the
//! same pass, without a `HeaderMap`.
//!
//! A head is *simple* when it is complete within the bytes given and fits `max_head`, says
//! `HTTP/1.1`, has an origin-form target (no fragment, nothing the `http` crate would refuse or
//! rewrite), a method of `GET`, `HEAD`, `POST`, `PUT`, `DELETE` or `PATCH`, exactly one valid,
//! non-empty `Host`, at most one valid `Content-Length` field, and no `Transfer-Encoding`,
//! `TE`, `Upgrade`, `Expect` or `HTTP2-Settings`. Everything else, and so everything
//! `validate.rs` refuses, is not simple: the caller hands it to hyper before consuming a
//! byte, and today's path answers it (docs/security.md#the-fast-path-differential-suite).

use http::Method;

use crate::proxy::validate::is_valid_host;

/// The most fields a simple head may carry; a head with more goes to hyper (whose limit is
/// 100).
pub const MAX_FIELDS: usize = 64;

/// The longest head the fast path reads, whatever `proxy.max_header_bytes` says: hyper refuses
/// a field name of 64 KiB, and a head this long is no common request.
const MAX_HEAD: usize = 64 * 1024;

/// Why a head is not simple: the request goes to hyper untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSimple {
    /// The head does not end within the bytes given.
    Partial,
    /// `httparse` refused the head (hyper answers it with a 400).
    Malformed,
    /// More than [`MAX_FIELDS`] fields.
    TooManyFields,
    /// Longer than the limit.
    TooLarge,
    /// Not `HTTP/1.1`.
    Version,
    /// A method the fast path does not serve (`CONNECT`, `OPTIONS`, `TRACE`, extensions).
    Method,
    /// Not origin-form, a fragment, or a byte the `http` crate refuses in a target.
    Target,
    /// No `Host`, more than one, an empty one, or one `validate.rs` refuses.
    Host,
    /// More than one `Content-Length` field, or one that is not a number.
    ContentLength,
    /// `Transfer-Encoding`, in any form.
    TransferEncoding,
    /// `TE`, in any form.
    Te,
    /// `Upgrade`.
    Upgrade,
    /// `Expect`.
    Expect,
    /// `HTTP2-Settings`.
    Http2Settings,
    /// A `Connection` or `X-Forwarded-For` value that is not visible ASCII, which the rewrite
    /// reads as text.
    NonAsciiField,
}

/// `Connection` as the rewrite needs it: the options said, and whether it names fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// A `Connection` field is present.
    pub present: bool,
    /// One of its tokens is `close`.
    pub close: bool,
    /// It names something other than `close` and `keep-alive` (a field to remove).
    pub names_fields: bool,
}

/// What one pass over a simple head's fields found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The index of the `Host` field.
    pub host: usize,
    /// The `Content-Length` value, when one was sent.
    pub content_length: Option<u64>,
    /// `Connection`.
    pub connection: ConnectionFacts,
    /// A hop-by-hop field removed whatever `Connection` says (`Keep-Alive`,
    /// `Proxy-Connection`, `Trailer`), or a field named `Close`.
    pub hop_by_hop: bool,
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` are present.
    pub forwarded_for: bool,
    pub forwarded_proto: bool,
    pub forwarded_host: bool,
    /// `X-Request-Id` is present.
    pub request_id: bool,
    /// `Content-Type` starts with `application/grpc` (docs/routing.md#grpc).
    pub grpc: bool,
}

/// A simple request head, as slices of the client's bytes.
#[derive(Debug)]
pub struct FlatHead<'h, 'b> {
    pub method: Method,
    /// The origin-form target, path and query.
    pub target: &'b str,
    /// The fields in the order sent, names as sent (compare them case-insensitively).
    pub fields: &'h [httparse::Header<'b>],
    /// The head's length in bytes, its final empty line included.
    pub len: usize,
    pub facts: Facts,
}

impl<'b> FlatHead<'_, 'b> {
    /// The path, without the query.
    pub fn path(&self) -> &'b str {
        match self.target.find('?') {
            Some(at) => &self.target[..at],
            None => self.target,
        }
    }

    /// The `Host` value.
    pub fn host(&self) -> &'b [u8] {
        self.fields.get(self.facts.host).map_or(&[], |f| f.value)
    }

    /// The request has no body to read.
    pub fn is_bodiless(&self) -> bool {
        self.facts.content_length.is_none_or(|n| n == 0)
    }
}

/// Read and classify the head at the start of `buf` (at most `max_head` bytes of it), with
/// `fields` as room for the parsed fields.
pub fn classify<'h, 'b>(
    buf: &'b [u8],
    max_head: usize,
    fields: &'h mut [httparse::Header<'b>; MAX_FIELDS],
) -> Result<FlatHead<'h, 'b>, NotSimple> {
    let mut request = httparse::Request::new(fields);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return Err(if buf.len() >= max_head.min(MAX_HEAD) {
                NotSimple::TooLarge
            } else {
                NotSimple::Partial
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(NotSimple::TooManyFields),
        Err(_) => return Err(NotSimple::Malformed),
    };
    if len > max_head.min(MAX_HEAD) {
        return Err(NotSimple::TooLarge);
    }
    if request.version != Some(1) {
        return Err(NotSimple::Version);
    }
    let method = match request.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        Some("POST") => Method::POST,
        Some("PUT") => Method::PUT,
        Some("DELETE") => Method::DELETE,
        Some("PATCH") => Method::PATCH,
        _ => return Err(NotSimple::Method),
    };
    let target = request.path.unwrap_or_default();
    if !is_plain_origin_form(target.as_bytes()) {
        return Err(NotSimple::Target);
    }
    let fields: &'h [httparse::Header<'b>] = request.headers;
    let facts = read_fields(fields)?;
    Ok(FlatHead {
        method,
        target,
        fields,
        len,
        facts,
    })
}

/// One pass over the fields: the facts, or why the head is not simple.
fn read_fields(fields: &[httparse::Header<'_>]) -> Result<Facts, NotSimple> {
    let mut facts = Facts::default();
    let mut hosts = 0;
    let mut lengths = 0;
    for (at, field) in fields.iter().enumerate() {
        let name = field.name.as_bytes();
        // Most names are none of these: the length picks the few to compare.
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        match name.len() {
            2 if is("te") => return Err(NotSimple::Te),
            4 if is("host") => {
                hosts += 1;
                facts.host = at;
            }
            5 if is("close") => facts.hop_by_hop = true,
            6 if is("expect") => return Err(NotSimple::Expect),
            7 if is("upgrade") => return Err(NotSimple::Upgrade),
            7 if is("trailer") => facts.hop_by_hop = true,
            10 if is("connection") => read_connection(field.value, &mut facts.connection)?,
            10 if is("keep-alive") => facts.hop_by_hop = true,
            12 if is("content-type") => {
                facts.grpc |= field.value.starts_with(b"application/grpc");
            }
            12 if is("x-request-id") => facts.request_id = true,
            14 if is("content-length") => {
                lengths += 1;
                facts.content_length = Some(content_length(field.value)?);
            }
            14 if is("http2-settings") => return Err(NotSimple::Http2Settings),
            15 if is("x-forwarded-for") => {
                if !is_visible_ascii(field.value) {
                    return Err(NotSimple::NonAsciiField);
                }
                facts.forwarded_for = true;
            }
            16 if is("proxy-connection") => facts.hop_by_hop = true,
            16 if is("x-forwarded-host") => facts.forwarded_host = true,
            17 if is("transfer-encoding") => return Err(NotSimple::TransferEncoding),
            17 if is("x-forwarded-proto") => facts.forwarded_proto = true,
            _ => {}
        }
    }
    if hosts != 1 {
        return Err(NotSimple::Host);
    }
    let host = fields.get(facts.host).map_or(&[][..], |f| f.value);
    if host.is_empty() || !is_valid_host(host) {
        return Err(NotSimple::Host);
    }
    if lengths > 1 {
        return Err(NotSimple::ContentLength);
    }
    Ok(facts)
}

/// `Content-Length`: digits only, as hyper reads it, and a length hyper can frame.
fn content_length(value: &[u8]) -> Result<u64, NotSimple> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(NotSimple::ContentLength);
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The options of one `Connection` field (RFC 9110 §7.6.1), added to what earlier ones said.
fn read_connection(value: &[u8], facts: &mut ConnectionFacts) -> Result<(), NotSimple> {
    if !is_visible_ascii(value) {
        return Err(NotSimple::NonAsciiField);
    }
    facts.present = true;
    for token in value.split(|b| *b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            facts.close = true;
        } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
            facts.names_fields = true;
        }
    }
    Ok(())
}

/// Visible ASCII, spaces and tabs: what `HeaderValue::to_str` reads as text.
fn is_visible_ascii(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
}

/// An origin-form target made only of bytes the `http` crate keeps as they are: in the path,
/// visible ASCII but `#`, `<`, `>` and `` ` ``; in the query, visible ASCII but `#`, `"`, `<`
/// and `>`. A fragment (which `http` would cut off) or any other byte, non-ASCII included,
/// sends the request to hyper.
fn is_plain_origin_form(target: &[u8]) -> bool {
    let Some((b'/', rest)) = target.split_first() else {
        return false;
    };
    let mut in_query = false;
    for b in rest {
        let ok = match b {
            b'?' => {
                in_query = true;
                true
            }
            b'#' | b'<' | b'>' => false,
            b'`' => in_query,
            b'"' => !in_query,
            b'!'..=b'~' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Result<(Method, String, Facts), NotSimple> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        classify(head.as_bytes(), 8192, &mut fields)
            .map(|h| (h.method.clone(), h.target.to_owned(), h.facts))
    }

    fn not_simple(head: &str) -> NotSimple {
        match verdict(head) {
            Err(why) => why,
            Ok(simple) => panic!("{head:?} classified simple: {simple:?}"),
        }
    }

    #[test]
    fn a_plain_get_is_simple_and_its_facts_are_read() {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let buf =
            b"GET /a/b?c=d HTTP/1.1\r\nHost: shop.test:8080\r\nX-Request-Id: r\r\n\r\nGET /next";
        let head = classify(buf, 8192, &mut fields).unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.target, "/a/b?c=d");
        assert_eq!(head.path(), "/a/b");
        assert_eq!(head.host(), b"shop.test:8080");
        assert_eq!(head.len, buf.len() - b"GET /next".len());
        assert!(head.is_bodiless());
        assert!(head.facts.request_id);
        assert!(!head.facts.connection.present);
        assert_eq!(head.fields.len(), 2);
    }

    #[test]
    fn connection_and_length_facts() {
        let (_, _, facts) = verdict(
            "POST /u HTTP/1.1\r\nhost: a\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\
             Connection: X-Secret, Close\r\nKeep-Alive: timeout=5\r\n\
             content-type: application/grpc+proto\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        )
        .unwrap();
        assert_eq!(facts.content_length, Some(12));
        assert_eq!(
            facts.connection,
            ConnectionFacts {
                present: true,
                close: true,
                names_fields: true
            }
        );
        assert!(facts.hop_by_hop && facts.grpc && facts.forwarded_for);
        assert!(!facts.forwarded_proto && !facts.forwarded_host && !facts.request_id);
        let (_, _, facts) =
            verdict("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,,\r\n\r\n").unwrap();
        assert!(!facts.connection.close && !facts.connection.names_fields);
    }

    #[test]
    fn framing_that_smuggling_lives_on_is_never_simple() {
        use NotSimple::*;
        for (head, why) in [
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: identity\r\n\r\n", TransferEncoding),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", ContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", ContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", ContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", ContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", ContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n", Malformed),
            ("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Version),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", Malformed),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\rX-B: two\r\n\r\n", Malformed),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", Malformed),
            ("GET / HTTP/1.1\r\nTE: trailers\r\nHost: a\r\n\r\n", Te),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", Upgrade),
            ("GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", Http2Settings),
            ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", Expect),
        ] {
            assert_eq!(not_simple(head), why, "{head:?}");
        }
    }

    #[test]
    fn what_validate_refuses_is_never_simple() {
        use NotSimple::*;
        for (head, why) in [
            ("GET / HTTP/1.1\r\n\r\n", Host),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Host),
            ("GET / HTTP/1.1\r\nHost:\r\n\r\n", Host),
            ("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", Host),
            ("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", Host),
            ("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Method),
            ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Method),
            ("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", Method),
            ("GET /old HTTP/1.0\r\nHost: a\r\n\r\n", Version),
            ("GET /x HTTP/1.2\r\nHost: a\r\n\r\n", Malformed),
            ("GET /x HTTP/1.1\r\nHost: a\r\n", Partial),
            ("GET /x#frag HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            ("GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            ("GET /a`b HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            ("GET /a?b\"c HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            ("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: caf\u{e9}\r\n\r\n",
                NonAsciiField,
            ),
        ] {
            assert_eq!(not_simple(head), why, "{head:?}");
        }
        // Allowed where `http` keeps them.
        assert!(verdict("GET /a\"b?c`d{}|~ HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
    }

    #[test]
    fn limits_send_the_head_to_hyper() {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(200));
        assert_eq!(
            classify(long.as_bytes(), 100, &mut fields).err(),
            Some(NotSimple::TooLarge)
        );
        assert_eq!(
            classify(&long.as_bytes()[..150], 100, &mut fields).err(),
            Some(NotSimple::TooLarge)
        );
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_FIELDS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(not_simple(&many), NotSimple::TooManyFields);
    }
}

//! Header rewriting between client and upstream: hop-by-hop removal, `X-Forwarded-*`,
//! `X-Request-Id`, `Host`, HTTP/2 cookie crumbs, transfer codings, and the optional version
//! header.

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use ipnet::IpNet;
use rand::RngCore;

use crate::config::Version;

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static CLOSE: HeaderName = HeaderName::from_static("close");
/// The h2c upgrade's settings: connection-specific (RFC 9113 §3.1), never forwarded even when
/// `Connection` does not name it.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// What the request headers are rewritten from: who sent it and how.
#[derive(Debug, Clone, Copy)]
pub struct ClientFacts<'a> {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The peer's address as a header value, made once per connection.
    pub peer_value: &'a HeaderValue,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The request's authority (`:authority`, else `Host`), as received.
    pub authority: Option<&'a HeaderValue>,
    /// CIDRs whose forwarding headers are trusted and extended.
    pub trusted_proxies: &'a [IpNet],
}

/// What a request's `Transfer-Encoding` says, where hyper lets it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCodings {
    /// No `Transfer-Encoding`, or `chunked` alone.
    Chunked,
    /// `chunked` applied more than once: RFC 9112 §6.1 forbids it, and a proxy behind another
    /// might frame the body differently.
    ChunkedTwice,
    /// A coding other than `chunked` (`gzip, chunked`): canaryd implements none, so
    /// RFC 9112 §6.1 asks for 501 rather than forwarding bytes whose coding is then lost.
    Unsupported,
}

/// Read a request's `Transfer-Encoding` (hyper has already refused one that does not end in
/// `chunked`). One lookup for a request without the field.
pub fn request_codings(headers: &HeaderMap) -> RequestCodings {
    let mut chunked = 0;
    for coding in headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
    {
        if coding.eq_ignore_ascii_case(b"chunked") {
            chunked += 1;
        } else {
            return RequestCodings::Unsupported;
        }
    }
    if chunked > 1 {
        RequestCodings::ChunkedTwice
    } else {
        RequestCodings::Chunked
    }
}

/// What an upstream response's `Transfer-Encoding` leaves for the relay to do, once hyper's
/// client has decoded its final `chunked`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseCodings {
    /// The response also had `Content-Length`, now removed: `Transfer-Encoding` overrides it
    /// (RFC 9112 §6.3), and such a response may be an attempt at response splitting, so its
    /// connection is not used again.
    pub length_dropped: bool,
    /// Codings other than the final `chunked` (`gzip` of `gzip, chunked`), still applied to the
    /// body bytes; `None` when `chunked` was the only one.
    pub remaining: Option<HeaderValue>,
}

/// Take a response's `Transfer-Encoding` apart; call only when the field is present (the
/// caller sees it in its one pass over the names). The field itself is left for hop-by-hop
/// removal; `Content-Length` is removed here.
pub fn response_codings(headers: &mut HeaderMap) -> ResponseCodings {
    let length_dropped = headers.remove(CONTENT_LENGTH).is_some();
    let codings = || {
        headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
    };
    let count = codings().count();
    // hyper decoded the final coding if it is `chunked`, and read to EOF otherwise.
    let decoded = codings()
        .next_back()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
    let kept = count - usize::from(decoded);
    let remaining = (kept > 0).then(|| {
        let mut joined = Vec::new();
        for coding in codings().take(kept) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(coding);
        }
        // Made of the bytes of valid header values and ", ", so always a valid value; were it
        // not, the field as received still names every coding.
        HeaderValue::from_bytes(&joined)
            .ok()
            .or_else(|| headers.get(TRANSFER_ENCODING).cloned())
    });
    ResponseCodings {
        length_dropped,
        remaining: remaining.flatten(),
    }
}

/// Join an HTTP/2 request's cookie crumbs into one `Cookie` field for the HTTP/1.1 upstream:
/// HTTP/2 may split it into one field per cookie, and RFC 9113 §8.2.3 requires them joined
/// with "; " before the request goes to a non-HTTP/2 context. Only a request with a repeated
/// field name (two O(1) lengths compared) pays a lookup.
pub fn join_cookie_crumbs(headers: &mut HeaderMap) {
    if headers.len() == headers.keys_len() {
        return;
    }
    let mut crumbs = headers.get_all(COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for crumb in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Make sure a request body of unknown length reaches the upstream, whatever the method.
///
/// hyper's client sends a GET, HEAD or CONNECT whose body has no known length as a request with
/// no body at all, unless `Transfer-Encoding` says otherwise; a chunked HTTP/1.1 body or HTTP/2
/// DATA frames without `content-length` would be dropped (`docs/security.md#protocol-conformance`).
/// For the other methods hyper chooses chunked itself; setting it here is the same framing.
pub fn keep_body_framing(headers: &mut HeaderMap, body: &impl http_body::Body) {
    if !body.is_end_stream()
        && body.size_hint().exact().is_none()
        && !headers.contains_key(CONTENT_LENGTH)
    {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

/// The hop-by-hop headers removed whatever `Connection` says.
static FIXED_HOP_BY_HOP: [&HeaderName; 7] = [
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &HTTP2_SETTINGS,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
];

/// Which hop-by-hop fields a message carries.
#[derive(Debug, Clone, Copy, Default)]
struct HopByHop {
    connection: bool,
    /// One of `FIXED_HOP_BY_HOP`.
    fixed: bool,
    te: bool,
    /// One of `FIXED_HOP_BY_HOP` other than `TE`.
    fixed_but_te: bool,
}

impl HopByHop {
    /// One pass over the names present (a handful) instead of a hashed lookup per hop-by-hop
    /// name: nearly every message carries `Connection` at most (BENCHMARKS.md, CPU per request).
    fn find(headers: &HeaderMap) -> Self {
        let mut found = HopByHop::default();
        for name in headers.keys() {
            if name == CONNECTION {
                found.connection = true;
            } else if FIXED_HOP_BY_HOP.contains(&name) {
                found.fixed = true;
                let te = name == TE;
                found.te |= te;
                found.fixed_but_te |= !te;
            }
        }
        found
    }
}

/// Remove hop-by-hop headers: the fixed list, and every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_found(headers, HopByHop::find(headers));
}

fn remove_found(headers: &mut HeaderMap, found: HopByHop) {
    let HopByHop {
        connection, fixed, ..
    } = found;
    if connection {
        if let Some(named) = headers_named_in_connection(headers) {
            for name in named {
                headers.remove(name);
            }
        }
        // `close` names a field as well as the option (RFC 9110 §7.6.1; `Close` is a reserved
        // field name, §16.3.1): a field so named never travels on.
        headers.remove(&CLOSE);
        headers.remove(CONNECTION);
    }
    if fixed {
        for name in FIXED_HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// The headers a `Connection` header names, other than the ones removed anyway. Nearly every
/// request says only `keep-alive` or `close`, so that case allocates nothing.
fn headers_named_in_connection(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let tokens = || {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
    };
    tokens().next()?;
    Some(
        tokens()
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect(),
    )
}

/// Whether the request's one `TE` field says exactly `trailers`, as the proxy would send it.
fn only_te_trailers(headers: &HeaderMap) -> bool {
    let mut te = headers.get_all(TE).iter();
    te.next().is_some_and(|v| v == "trailers") && te.next().is_none()
}

/// Whether `TE` lists `trailers` (RFC 9110 §10.1.4): the client will take trailers.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Rewrite a client's request headers for the upstream.
///
/// `TE` is hop-by-hop, but the proxy relays trailers, so a client's `trailers` is passed on as
/// the proxy's own `TE: trailers` (gRPC servers require it, and it is the only `TE` HTTP/2
/// allows).
pub fn rewrite_request(headers: &mut HeaderMap, facts: &ClientFacts<'_>) {
    let found = HopByHop::find(headers);
    // A gRPC client's `TE: trailers` alone is already what the proxy sends: left in place
    // rather than removed with the six other fixed names and inserted again (2,000
    // instructions per gRPC call).
    let te_as_sent =
        found.te && !found.fixed_but_te && !found.connection && only_te_trailers(headers);
    if !te_as_sent {
        let trailers = found.te && accepts_trailers(headers);
        remove_found(headers, found);
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
    let trusted = facts
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&facts.peer));
    set_forwarded_for(headers, facts.peer_value, trusted);
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if facts.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if let Some(authority) = facts.authority {
        if !trusted || !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST.clone(), authority.clone());
        }
        // The authority the request was routed on is the one forwarded: an absolute-form URI
        // or HTTP/2 `:authority` overrides a disagreeing `Host` (RFC 9112 §3.2.2), and HTTP/2
        // clients that send no `Host` get one for the HTTP/1.1 upstream.
        headers.insert(HOST, authority.clone());
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        // Marked sensitive so an HTTP/2 upstream gets it as a literal never indexed (RFC 7541
        // §6.2.3): a value that never repeats would otherwise be added to the connection's
        // HPACK table on every request, evicting the fields that do repeat, and each lookup
        // would compare it with every older id in the table
        // (docs/performance.md#http2-upstreams-and-grpc). HTTP/1.1 ignores the mark.
        let mut id = new_request_id();
        id.set_sensitive(true);
        headers.insert(X_REQUEST_ID.clone(), id);
    }
}

fn set_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue, trusted: bool) {
    if trusted {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !prior.is_empty() {
            let joined = format!(
                "{}, {}",
                prior.join(", "),
                peer.to_str().unwrap_or_default()
            );
            if let Ok(value) = HeaderValue::from_str(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), value);
                return;
            }
        }
    }
    headers.insert(X_FORWARDED_FOR.clone(), peer.clone());
}

/// The peer address as an `X-Forwarded-For` value (computed once per client connection).
pub fn peer_header_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

thread_local! {
    // Request ids need uniqueness, not secrecy: a small fast generator per thread, seeded from
    // the OS, is enough and avoids the cryptographic generator's cost on every request.
    static FAST_RNG: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
}

/// A random request id in the UUID v4 text layout.
pub fn new_request_id() -> HeaderValue {
    let out = request_id_bytes();
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The text of a random request id (UUID v4 layout), without making a header value of it.
pub fn request_id_bytes() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each of the 16 bytes' two hex digits go, around the four dashes. A byte at a time
    // from a table: it runs on every request without an id (docs/performance.md).
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut bytes = [0u8; 16];
    FAST_RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        bytes[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    });
    // Version 4, variant 10xx, as in RFC 9562.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    for (byte, at) in bytes.into_iter().zip(AT) {
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// Rewrite an upstream's response headers for the client.
pub fn rewrite_response(
    headers: &mut HeaderMap,
    version_header: Option<&HeaderName>,
    version: Version,
) {
    remove_hop_by_hop(headers);
    if let Some(name) = version_header {
        headers.insert(name.clone(), HeaderValue::from_static(version.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        peer: &str,
        trusted: &'a [IpNet],
        authority: Option<&'a HeaderValue>,
    ) -> ClientFacts<'a> {
        let peer: IpAddr = peer.parse().unwrap();
        ClientFacts {
            peer,
            // Leaked: a test-only value that must outlive the returned borrow.
            peer_value: Box::leak(Box::new(peer_header_value(peer))),
            tls: false,
            authority,
            trusted_proxies: trusted,
        }
    }

    #[test]
    fn strips_hop_by_hop_and_headers_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, x-forwarded-for"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        rewrite_request(&mut h, &facts("10.1.2.3", &[], None));
        assert!(h.get("x-secret").is_none());
        assert!(h.get(CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(
            h[TE], "trailers",
            "the proxy relays trailers, so it takes them too"
        );
        assert_eq!(h["x-keep"], "1");
        // Connection named X-Forwarded-For: the client's copy is gone, the proxy's own arrives.
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    }

    #[test]
    fn te_other_than_trailers_is_removed() {
        let mut h = HeaderMap::new();
        h.insert(TE, HeaderValue::from_static("gzip, deflate;q=0.5"));
        rewrite_request(&mut h, &facts("10.1.2.3", &[], None));
        assert!(h.get(TE).is_none());
        let mut h = HeaderMap::new();
        h.insert(TE, HeaderValue::from_static("gzip, Trailers;q=1"));
        rewrite_request(&mut h, &facts("10.1.2.3", &[], None));
        assert_eq!(h[TE], "trailers");
    }

    #[test]
    fn forwarded_for_replaced_unless_peer_trusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let host = HeaderValue::from_static("shop.test");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        rewrite_request(&mut h, &facts("192.168.1.1", &trusted, Some(&host)));
        assert_eq!(h["x-forwarded-for"], "192.168.1.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.test");
        assert_eq!(h[HOST], "shop.test");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        rewrite_request(&mut h, &facts("10.9.9.9", &trusted, Some(&host)));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.9.9.9");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn te_reaches_the_upstream_as_trailers_or_not_at_all() {
        let te = |values: &[&'static str]| {
            let mut h = with(TE, values);
            rewrite_request(&mut h, &facts("127.0.0.1", &[], None));
            h.get_all(TE).iter().cloned().collect::<Vec<_>>()
        };
        assert_eq!(te(&["trailers"]), ["trailers"]);
        assert_eq!(te(&["trailers, gzip"]), ["trailers"]);
        assert_eq!(te(&["trailers", "gzip"]), ["trailers"]);
        assert_eq!(te(&["Trailers"]), ["trailers"]);
        assert!(te(&["gzip"]).is_empty());
        // Named in `Connection`: still the proxy's own `TE: trailers`.
        let mut h = with(TE, &["trailers"]);
        h.insert(CONNECTION, HeaderValue::from_static("te"));
        rewrite_request(&mut h, &facts("127.0.0.1", &[], None));
        assert_eq!(h[TE], "trailers");
        assert!(h.get(CONNECTION).is_none());
    }

    #[test]
    fn request_id_kept_or_generated() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        rewrite_request(&mut h, &facts("127.0.0.1", &[], None));
        assert_eq!(h["x-request-id"], "abc");
        let mut h = HeaderMap::new();
        rewrite_request(&mut h, &facts("127.0.0.1", &[], None));
        let id = h["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_request_id(), new_request_id());
        assert!(
            h["x-request-id"].is_sensitive(),
            "a generated id goes to HTTP/2 upstreams never indexed, out of their HPACK tables"
        );
    }

    #[test]
    fn a_generated_request_id_is_a_uuid_v4_whose_random_bits_all_vary() {
        let mut seen_zero = [false; 32];
        let mut seen_one = [false; 32];
        for _ in 0..256 {
            let id = request_id_bytes();
            let text = std::str::from_utf8(&id).unwrap();
            let parsed = uuid_text_to_u128(text);
            assert_eq!(parsed >> 76 & 0xf, 4, "version 4: {text}");
            assert_eq!(parsed >> 62 & 0x3, 2, "variant 10: {text}");
            for (i, digit) in text.chars().filter(|c| *c != '-').enumerate() {
                let nibble = digit.to_digit(16).unwrap();
                seen_zero[i] |= nibble & 1 == 0;
                seen_one[i] |= nibble & 1 == 1;
            }
        }
        // Every hex digit but the version's carries random bits (the variant's low bit too).
        for i in (0..32).filter(|i| *i != 12) {
            assert!(seen_zero[i] && seen_one[i], "digit {i} never varies");
        }
    }

    /// A UUID's text as a number, checking the layout: 8-4-4-4-12 lowercase hex digits.
    fn uuid_text_to_u128(text: &str) -> u128 {
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{text}"
        );
        assert!(
            text.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{text}"
        );
        u128::from_str_radix(&groups.concat(), 16).unwrap()
    }

    fn with(name: HeaderName, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn request_codings_other_than_chunked_are_unsupported() {
        use RequestCodings::*;
        for (values, want) in [
            (&[][..], Chunked),
            (&["chunked"], Chunked),
            (&["Chunked"], Chunked),
            (&["chunked, chunked"], ChunkedTwice),
            (&["chunked", "chunked"], ChunkedTwice),
            (&["gzip, chunked"], Unsupported),
            (&["gzip", "chunked"], Unsupported),
            (&["identity, chunked"], Unsupported),
        ] {
            assert_eq!(
                request_codings(&with(TRANSFER_ENCODING, values)),
                want,
                "{values:?}"
            );
        }
    }

    #[test]
    fn response_codings_keep_all_but_a_final_chunked_and_drop_the_length() {
        let mut h = with(TRANSFER_ENCODING, &["chunked"]);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert_eq!(
            response_codings(&mut h),
            ResponseCodings {
                length_dropped: true,
                remaining: None
            }
        );
        assert!(!h.contains_key(CONTENT_LENGTH));
        let mut h = with(TRANSFER_ENCODING, &["gzip", "chunked"]);
        let codings = response_codings(&mut h);
        assert!(!codings.length_dropped);
        assert_eq!(codings.remaining.unwrap(), "gzip");
        let mut h = with(TRANSFER_ENCODING, &["chunked, gzip"]);
        assert_eq!(response_codings(&mut h).remaining.unwrap(), "chunked, gzip");
        let mut h = with(TRANSFER_ENCODING, &["gzip,deflate , chunked"]);
        assert_eq!(response_codings(&mut h).remaining.unwrap(), "gzip, deflate");
    }

    #[test]
    fn cookie_crumbs_are_joined_with_semicolons() {
        let mut h = with(COOKIE, &["a=1", "b=2", "c=3"]);
        join_cookie_crumbs(&mut h);
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2; c=3");
        let mut h = with(COOKIE, &["a=1"]);
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        join_cookie_crumbs(&mut h);
        assert_eq!(h[COOKIE], "a=1");
        assert_eq!(h.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn response_gets_version_header_and_loses_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let name = HeaderName::from_static("x-canaryd-version");
        rewrite_response(&mut h, Some(&name), Version::Canary);
        assert_eq!(h["x-canaryd-version"], "canary");
        assert!(h.get(CONNECTION).is_none());
        assert!(h.get(TRANSFER_ENCODING).is_none());
    }
}

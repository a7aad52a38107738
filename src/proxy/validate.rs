//! Requests refused before routing because their head is malformed, whatever the route: a
//! request target canaryd cannot forward (RFC 9112 §3.2.3 for `CONNECT`), the `Host` rules of
//! RFC 9112 §3.2 and RFC 9110 §7.2, and HTTP/2 field values with surrounding whitespace
//! (RFC 9113 §8.2.1). A refused request reaches no upstream and counts against no
//! version (`docs/security.md#protocol-conformance`).

use std::net::Ipv6Addr;

use http::header::HOST;
use http::uri::Scheme;
use http::{HeaderMap, Method, Uri, Version};

use super::ProxyError;

/// Why a request is refused before routing, or `None` for a well-formed head.
pub fn malformed_head(
    method: &Method,
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<ProxyError> {
    if is_unforwardable_target(method, uri) {
        return Some(ProxyError::BadTarget);
    }
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some(ProxyError::BadHost);
    }
    if host.is_some_and(|h| !is_valid_host(h.as_bytes())) {
        return Some(ProxyError::BadHost);
    }
    // The authority of an absolute-form target or of HTTP/2 `:authority`: `http` has parsed
    // it, but accepts a userinfo part (`user@host`) that neither may carry.
    if uri
        .authority()
        .is_some_and(|a| !is_valid_host(a.as_str().as_bytes()))
    {
        return Some(ProxyError::BadHost);
    }
    // HTTP/1.0 predates `Host`; HTTP/1.1 must send it, also with an absolute-form target
    // (RFC 9112 §3.2); HTTP/2 sends `:authority` or `host` (RFC 9113 §8.3.1).
    let missing = match version {
        Version::HTTP_11 => host.is_none(),
        Version::HTTP_2 => host.is_none() && uri.authority().is_none(),
        _ => false,
    };
    if missing {
        return Some(ProxyError::BadHost);
    }
    if version == Version::HTTP_2
        && headers
            .values()
            .any(|v| has_surrounding_whitespace(v.as_bytes()))
    {
        return Some(ProxyError::MalformedHeader);
    }
    None
}

/// `CONNECT` takes only an authority (`host:port`, RFC 9112 §3.2.3), never a path or an
/// absolute URI; any other method may carry an absolute URI only for `http` or `https`, the
/// schemes canaryd routes (`GET ftp://host/x` names a resource no route serves). Origin-form
/// targets, nearly every request, cost two branches.
fn is_unforwardable_target(method: &Method, uri: &Uri) -> bool {
    if method == Method::CONNECT {
        return uri.scheme().is_some() || uri.path_and_query().is_some();
    }
    uri.scheme()
        .is_some_and(|scheme| *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS)
}

/// A field value that starts or ends with SP or HTAB: HTTP/1 parsing trims them, HTTP/2 carries
/// them as is, and RFC 9113 §8.2.1 makes such a request malformed.
fn has_surrounding_whitespace(value: &[u8]) -> bool {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    value.first().is_some_and(blank) || value.last().is_some_and(blank)
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2) with RFC 3986's `IP-literal / IPv4address /
/// reg-name` host; the port, when present and not empty, must be a number up to 65535.
/// IPvFuture literals and IPv6 zone identifiers are refused.
pub fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|b| *b == b']') else {
            return false;
        };
        let (literal, rest) = value.split_at(end + 1);
        match rest {
            [] => (literal, None),
            [b':', port @ ..] => (literal, Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|b| *b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        p.is_empty()
            || (p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok()))
    });
    port_ok && (is_ip_literal(host) || is_reg_name(host))
}

fn is_ip_literal(host: &[u8]) -> bool {
    match host {
        [b'[', inner @ .., b']'] => {
            std::str::from_utf8(inner).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
        }
        _ => false,
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, which also covers IPv4 addresses.
fn is_reg_name(host: &[u8]) -> bool {
    let mut bytes = host.iter();
    while let Some(b) = bytes.next() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            b'%' => {
                let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
                if !(hex(bytes.next()) && hex(bytes.next())) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_syntax() {
        for good in [
            "a",
            "shop.test",
            "shop.test:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::7]",
            "xn--bcher-kva.example",
            "a%2Eb",
            "a:",
            "",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good:?} refused");
        }
        for bad in [
            "a b/c",
            "a/b",
            "a b",
            "user@a",
            "a:b",
            "a:80:80",
            "a:123456",
            "a:65536",
            "[::1",
            "::1",
            "[::1]x",
            "[::1]:x",
            "[v1.x]",
            "[fe80::1%25eth0]",
            "a%2",
            "a%zz",
            "a\"b",
            "a?b",
            "a#b",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?} accepted");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn host_presence_by_version() {
        let origin: Uri = "/x".parse().unwrap();
        let absolute: Uri = "http://b.test/x".parse().unwrap();
        assert!(malformed_head(&Method::GET, Version::HTTP_11, &origin, &headers(&[])).is_some());
        assert!(malformed_head(&Method::GET, Version::HTTP_11, &absolute, &headers(&[])).is_some());
        assert!(malformed_head(
            &Method::GET,
            Version::HTTP_11,
            &absolute,
            &headers(&[("host", "a")])
        )
        .is_none());
        assert!(malformed_head(&Method::GET, Version::HTTP_10, &origin, &headers(&[])).is_none());
        assert!(malformed_head(&Method::GET, Version::HTTP_2, &absolute, &headers(&[])).is_none());
        assert!(malformed_head(&Method::GET, Version::HTTP_2, &origin, &headers(&[])).is_some());
        let two = headers(&[("host", "a"), ("host", "a")]);
        assert!(malformed_head(&Method::GET, Version::HTTP_10, &origin, &two).is_some());
        assert!(malformed_head(&Method::GET, Version::HTTP_2, &absolute, &two).is_some());
        let userinfo: Uri = "http://u@b.test/x".parse().unwrap();
        assert!(malformed_head(
            &Method::GET,
            Version::HTTP_11,
            &userinfo,
            &headers(&[("host", "b")])
        )
        .is_some());
    }

    #[test]
    fn connect_takes_only_an_authority_and_absolute_targets_only_http() {
        let host = headers(&[("host", "a")]);
        let refused = |method: Method, target: &str| {
            let uri: Uri = target.parse().unwrap();
            matches!(
                malformed_head(&method, Version::HTTP_11, &uri, &host),
                Some(ProxyError::BadTarget)
            )
        };
        assert!(!refused(Method::CONNECT, "a:443"));
        assert!(refused(Method::CONNECT, "/connect-path"));
        assert!(refused(Method::CONNECT, "http://a/x"));
        assert!(refused(Method::CONNECT, "http://a"));
        assert!(refused(Method::GET, "ftp://a/x"));
        assert!(!refused(Method::GET, "http://a/x"));
        assert!(!refused(Method::GET, "https://a/x"));
        assert!(!refused(Method::GET, "/x"));
        assert!(!refused(Method::OPTIONS, "*"));
    }

    #[test]
    fn http2_values_with_surrounding_whitespace() {
        let uri: Uri = "http://a/x".parse().unwrap();
        for value in [" v", "v ", "\tv", "v\t"] {
            let mut h = HeaderMap::new();
            h.insert("x-a", http::HeaderValue::from_str(value).unwrap());
            assert!(
                malformed_head(&Method::GET, Version::HTTP_2, &uri, &h).is_some(),
                "{value:?}"
            );
            // HTTP/1 parsing already trimmed them; nothing to refuse there.
            h.insert(HOST, http::HeaderValue::from_static("a"));
            assert!(
                malformed_head(&Method::GET, Version::HTTP_11, &uri, &h).is_none(),
                "{value:?}"
            );
        }
        let h = headers(&[("x-a", "in ner"), ("x-b", "")]);
        assert!(malformed_head(&Method::GET, Version::HTTP_2, &uri, &h).is_none());
    }
}

//! The upstream request head of a simple request, written straight from the flat view
//! (docs/performance.md#the-client-side-fast-path): the same bytes `headers.rs`'s
//! `rewrite_request` and the engine's head writer produce from hyper's `HeaderMap` — hop-by-hop
//! fields and those `Connection` names removed, `X-Forwarded-For`/`-Proto`/`-Host`, `Host`,
//! `X-Request-Id` — every line rebuilt from the parsed name (lowercased) and value and ended
//! with CRLF, never the client's bytes as sent.
//!
//! Same bytes means the same field order too, and a `HeaderMap` has its own: one entry per
//! name in the order names first appear, all of a name's values together, a new name added at
//! the end, a replaced one kept in place, and a removed one's slot taken by the last entry.
//! `fields.rs` keeps exactly those rules over a short list, without hashing.

use http::HeaderName;

use super::fields::{Fields, Value};
use super::head::FlatHead;
use crate::proxy::headers::ClientFacts;

/// The hop-by-hop fields removed whatever `Connection` says, in `headers.rs`'s order.
pub(super) const FIXED_HOP_BY_HOP: [&[u8]; 7] = [
    b"keep-alive",
    b"proxy-connection",
    b"http2-settings",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

/// Write into `out` (cleared first) the head a simple, bodiless request goes upstream with.
/// `new_request_id` is asked for an id only when the client sent none.
pub fn write_upstream_head<'b>(
    head: &FlatHead<'_, 'b>,
    facts: &ClientFacts<'b>,
    new_request_id: impl FnOnce() -> [u8; 36],
    out: &mut Vec<u8>,
) {
    let mut fields = Fields::with_capacity(head.fields.len() + 4);
    for field in head.fields {
        fields.append(field.name.as_bytes(), Value::Sent(field.value));
    }
    remove_hop_by_hop(&mut fields);
    let trusted = facts
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&facts.peer));
    set_forwarded_for(&mut fields, facts.peer_value.as_bytes(), trusted);
    if !trusted || !fields.contains(b"x-forwarded-proto") {
        let proto: &[u8] = if facts.tls { b"https" } else { b"http" };
        fields.insert(b"x-forwarded-proto", Value::Sent(proto));
    }
    // The authority the request was routed on: its one `Host`, as received.
    let authority = head.host();
    if !trusted || !fields.contains(b"x-forwarded-host") {
        fields.insert(b"x-forwarded-host", Value::Sent(authority));
    }
    fields.insert(b"host", Value::Sent(authority));
    if !fields.contains(b"x-request-id") {
        fields.insert(b"x-request-id", Value::Id(new_request_id()));
    }
    out.clear();
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields.write(out);
    out.extend_from_slice(b"\r\n");
}

/// `headers.rs`'s `remove_found`: the fields `Connection` names, `Close`, `Connection`, then
/// the fixed list — each removal in the same order, so the same entries move.
pub(super) fn remove_hop_by_hop(fields: &mut Fields<'_>) {
    // One pass over the names says which removals can remove anything: this runs on every
    // request and every answer (docs/performance.md#the-client-side-fast-path).
    let mut connection = false;
    let mut fixed = false;
    let mut close = false;
    for name in fields.names() {
        match hop_by_hop(name) {
            Some(HopByHop::Connection) => connection = true,
            Some(HopByHop::Fixed) => fixed = true,
            Some(HopByHop::Close) => close = true,
            None => {}
        }
    }
    if connection {
        // Nearly every `Connection` says just `keep-alive` or `close`, and names nothing to
        // remove: only another value is taken apart.
        let plain = |v: &Value<'_>| {
            let v = v.bytes();
            v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
        };
        let named: Vec<HeaderName> = if fields.values(b"connection").all(plain) {
            Vec::new()
        } else {
            fields
                .values(b"connection")
                .filter_map(|v| std::str::from_utf8(v.bytes()).ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| {
                    !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close")
                })
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect()
        };
        for name in &named {
            fields.remove(name.as_str().as_bytes());
        }
        if close {
            fields.remove(b"close");
        }
        fields.remove(b"connection");
    }
    if fixed {
        for name in FIXED_HOP_BY_HOP {
            fields.remove(name);
        }
    }
}

/// Which of [`remove_hop_by_hop`]'s triggers a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HopByHop {
    Connection,
    /// A field named `close`, removed with `Connection` (RFC 9110 §7.6.1).
    Close,
    /// One of [`FIXED_HOP_BY_HOP`].
    Fixed,
}

/// `Connection`, `Close`, one of [`FIXED_HOP_BY_HOP`], or none (as `headers.rs`'s
/// `HopByHop::find` tells them, from the same list).
fn hop_by_hop(name: &[u8]) -> Option<HopByHop> {
    if name.eq_ignore_ascii_case(b"connection") {
        Some(HopByHop::Connection)
    } else if name.eq_ignore_ascii_case(b"close") {
        Some(HopByHop::Close)
    } else if FIXED_HOP_BY_HOP
        .iter()
        .any(|fixed| name.eq_ignore_ascii_case(fixed))
    {
        Some(HopByHop::Fixed)
    } else {
        None
    }
}

/// `headers.rs`'s `set_forwarded_for`: a trusted peer's address joins the list it was sent,
/// anyone else's replaces it.
fn set_forwarded_for<'b>(fields: &mut Fields<'b>, peer: &'b [u8], trusted: bool) {
    if trusted {
        let mut joined = Vec::new();
        for value in fields.values(b"x-forwarded-for") {
            joined.extend_from_slice(value.bytes());
            joined.extend_from_slice(b", ");
        }
        if !joined.is_empty() {
            joined.extend_from_slice(peer);
            fields.insert(b"x-forwarded-for", Value::Made(joined));
            return;
        }
    }
    fields.insert(b"x-forwarded-for", Value::Sent(peer));
}

#[cfg(test)]
mod tests {
    use super::super::head::{classify, MAX_FIELDS};
    use super::*;
    use http::HeaderValue;

    fn upstream_head(client: &str, trusted: bool) -> String {
        let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let head = classify(client.as_bytes(), 8192, &mut storage).unwrap();
        let peer_value = HeaderValue::from_static("10.1.2.3");
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let facts = ClientFacts {
            peer: "10.1.2.3".parse().unwrap(),
            peer_value: &peer_value,
            tls: false,
            authority: None,
            trusted_proxies: if trusted { &nets } else { &[] },
        };
        let mut out = Vec::new();
        write_upstream_head(
            &head,
            &facts,
            || *b"iiiiiiii-iiii-iiii-iiii-iiiiiiiiiiii",
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_plain_get_gains_the_proxy_fields_at_the_end() {
        assert_eq!(
            upstream_head(
                "GET /a?b HTTP/1.1\r\nHost: shop\r\nUser-Agent: x\r\n\r\n",
                false
            ),
            "GET /a?b HTTP/1.1\r\nhost: shop\r\nuser-agent: x\r\nx-forwarded-for: 10.1.2.3\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: shop\r\nx-request-id: iiiiiiii-iiii-iiii-iiii-iiiiiiiiiiii\r\n\r\n"
        );
    }

    #[test]
    fn removals_move_the_last_entry_as_a_header_map_does() {
        // `Connection` goes: `x-request-id`, the last entry, takes its slot.
        assert_eq!(
            upstream_head(
                "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\
                 X-A: 3\r\nX-Request-Id: r\r\n\r\n",
                false
            ),
            "GET / HTTP/1.1\r\nx-request-id: r\r\nhost: a\r\nx-a: 1\r\nx-a: 3\r\nx-b: 2\r\n\
             x-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-host: a\r\n\r\n"
        );
    }

    #[test]
    fn every_hop_by_hop_name_is_told_apart() {
        for name in FIXED_HOP_BY_HOP {
            assert_eq!(hop_by_hop(name), Some(HopByHop::Fixed));
            assert_eq!(
                hop_by_hop(&name.to_ascii_uppercase()),
                Some(HopByHop::Fixed)
            );
        }
        assert_eq!(hop_by_hop(b"Connection"), Some(HopByHop::Connection));
        assert_eq!(hop_by_hop(b"CLOSE"), Some(HopByHop::Close));
        for name in [
            &b"host"[..],
            b"clos",
            b"x-forwarded-for",
            b"tee",
            b"connections",
        ] {
            assert_eq!(hop_by_hop(name), None, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn a_trusted_peer_extends_the_forwarding_fields() {
        assert_eq!(
            upstream_head(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\
                 X-Forwarded-Proto: https\r\nX-Forwarded-Host: b\r\n\r\n",
                true
            ),
            "GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: b\r\nx-request-id: iiiiiiii-iiii-iiii-iiii-iiiiiiiiiiii\r\n\r\n"
        );
    }
}

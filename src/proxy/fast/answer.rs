//! The upstream's answer to a simple request, made ready for the client without a `HeaderMap`
//! (docs/performance.md#the-client-side-fast-path): the engine left the response head's fields
//! as spans (`FlatFields`), and here they get what `forward.rs`'s `respond` and `headers.rs`'s
//! `rewrite_response` do to a `HeaderMap` — `Transfer-Encoding` taken apart, the outcome header
//! read and removed, `Trailer` kept, hop-by-hop fields removed, the version header added — in
//! the same order of operations, on a field list that keeps a `HeaderMap`'s order
//! (`fields.rs`); then the head is encoded as hyper's server writes it (`respond.rs`). The
//! outcome is recorded by the same `body.rs` `Completion`.

use std::sync::Arc;

use http::{Method, Response};
use tokio::time::Instant;

use super::fields::{Fields, Value};
use super::respond::{self, Head, Start, Unwritable};
use super::rewrite::remove_hop_by_hop;
use crate::config::{ProxyConfig, Version};
use crate::proxy::body::{Completion, Judge, ResponseBody};
use crate::routing::Route;
use crate::upstream::http1::FlatFields;
use crate::upstream::{Conn, UpstreamBody};

/// What `respond` needs to know of the request it answers.
pub(in crate::proxy) struct Asked<'a> {
    pub route: &'a Arc<Route>,
    pub proxy: &'a ProxyConfig,
    pub started: Instant,
    /// The path is not in `ignore_paths`.
    pub counted: bool,
    pub method: &'a Method,
    /// The client sent `Connection: close`.
    pub wants_close: bool,
}

/// The answer's head encoded for the client (or why hyper would not have written it), and its
/// body, which records the outcome when it ends or is dropped.
pub(in crate::proxy) fn answer_flat(
    response: Response<UpstreamBody>,
    flat: &FlatFields,
    conn: Conn,
    served_by: Version,
    asked: Asked<'_>,
) -> (Result<Head, Unwritable>, ResponseBody) {
    let mut fields = Fields::with_capacity(flat.len() + 4);
    for (name, value) in flat.iter() {
        fields.append(name, Value::Sent(value));
    }
    // `respond`: one look at the names for `Transfer-Encoding` and `Trailer`.
    let coded = fields.contains(b"transfer-encoding");
    let announced = fields.contains(b"trailer");
    let mut reusable = true;
    let mut codings = None;
    if coded {
        // `response_codings`: `Content-Length` goes; the codings but a final `chunked` stay.
        reusable = !fields.contains(b"content-length");
        fields.remove(b"content-length");
        codings = remaining_codings(&fields);
    }
    let judge = judge(&asked, &mut fields);
    let trailer = if announced {
        let value = fields.first(b"trailer").map(|v| v.bytes().to_vec());
        fields.remove(b"trailer");
        value
    } else {
        None
    };
    // `rewrite_response`.
    remove_hop_by_hop(&mut fields);
    if let Some(name) = &asked.proxy.version_header {
        fields.insert(
            name.as_str().as_bytes(),
            Value::Sent(served_by.as_str().as_bytes()),
        );
    }
    if let Some(codings) = codings {
        fields.insert(b"transfer-encoding", Value::Made(codings));
    }
    // `keep_trailers`, for a call that is not gRPC.
    if let Some(announced) = trailer {
        fields.insert(b"trailer", Value::Made(announced));
    }
    let (parts, upstream) = response.into_parts();
    let completion = Completion {
        route: asked.route.clone(),
        version: served_by,
        status: parts.status.as_u16(),
        started: asked.started,
        conn,
        judge,
        ejection: asked.proxy.ejection,
        reusable,
    };
    let body = ResponseBody::upstream(upstream, completion);
    if asked.wants_close
        && !fields
            .values(b"connection")
            .any(|v| respond::lists(v.bytes(), "close"))
    {
        // hyper's `enforce_version`, keep-alive being off.
        fields.append(b"connection", Value::Sent(b"close"));
    }
    fields.settle();
    let head = super::date::with_current(|date| {
        let shown = Response::from_parts(parts, ());
        let start = Start::of(&shown, &body);
        let lines = fields.iter().map(|(n, v)| (n, v.bytes()));
        respond::encode_fields(start, lines, asked.method, asked.wants_close, date)
    });
    (head, body)
}

/// `response_codings`: every coding but a final `chunked`, joined with ", ", if any.
fn remaining_codings(fields: &Fields<'_>) -> Option<Vec<u8>> {
    let codings = || {
        fields
            .values(b"transfer-encoding")
            .flat_map(|v| v.bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
    };
    let count = codings().count();
    let decoded = codings()
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
    let kept = count - usize::from(decoded);
    (kept > 0).then(|| {
        let mut joined = Vec::new();
        for coding in codings().take(kept) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(coding);
        }
        joined
    })
}

/// `forward.rs`'s `judge` for a call that is not gRPC: an ignored path never counts; the
/// upstream's own outcome header (removed: it never reaches the client) overrides the status.
fn judge(asked: &Asked<'_>, fields: &mut Fields<'_>) -> Judge {
    if !asked.counted {
        return Judge::Ignored;
    }
    if let Some(name) = &asked.route.failures.outcome_header {
        let name = name.as_str().as_bytes();
        let said = fields.first(name).map(|v| {
            let said = v.bytes();
            (
                said.eq_ignore_ascii_case(b"failure"),
                said.eq_ignore_ascii_case(b"success"),
            )
        });
        if let Some((failure, success)) = said {
            fields.remove(name);
            if failure {
                return Judge::Marked(true);
            }
            if success {
                return Judge::Marked(false);
            }
        }
    }
    Judge::Status
}

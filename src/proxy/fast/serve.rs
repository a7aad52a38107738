//! One simple request served without hyper's server, at a message boundary of the rounds loop
//! (`http1_rounds.rs`; docs/performance.md#the-client-side-fast-path):
//!
//! 1. read what the client has sent (below the byte counter of hyper's head timer), and
//!    classify the head (`head.rs`);
//! 2. decide before consuming anything: a simple head without a body, not gRPC, to a route
//!    without `[route.mirror]` whose endpoints (primary and canary) all use canaryd's engine;
//!    route and version are chosen on the flat view, as `forward.rs` chooses them;
//! 3. anything else is put back where it was read from, untouched, and hyper serves it;
//! 4. else the head is consumed (bytes past it stay for the next request), its upstream head
//!    written (`rewrite.rs`), and `forward.rs`'s phases 4–6 run (`forward_simple`): the same
//!    upstream call, response rewrite, outcome record and error answers;
//! 5. the answer goes to the client as hyper would write it (`respond.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use http::Method;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::head::{classify, FlatHead, MAX_FIELDS};
use super::respond::{self, Written};
use super::rewrite::write_upstream_head;
use crate::config::Version;
use crate::proxy::forward::{forward_simple, SimpleRequest};
use crate::proxy::headers::{new_request_id, ClientFacts};
use crate::proxy::http1_rounds::{put_back_bytes, PlainSocket};
use crate::proxy::service::ConnContext;
use crate::routing::{choose_version, FlatFields, Route, RoutingSnapshot};

/// Requests the fast path served, process-wide: for tests that must know it was taken.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// How many requests the fast path has served in this process (for tests only).
pub fn served_count() -> u64 {
    SERVED.load(Ordering::Relaxed)
}

/// The most the fast path reads for a head; a head not complete within it goes to hyper.
const READ: usize = 8 * 1024;

/// How a request at a boundary went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Served {
    /// Not taken: every byte read is back in front of the socket, for hyper.
    Declined,
    /// Answered; the connection is at the next boundary.
    KeepAlive,
    /// Answered, and the connection closes (the client may still be sending).
    Close,
    /// The client went away.
    Gone,
}

/// A simple request the fast path takes, decided before a byte of it is consumed.
struct Plan {
    route: Arc<Route>,
    version: Version,
    counted: bool,
    method: Method,
    /// The client sent `Connection: close`.
    wants_close: bool,
    /// The head's length in the bytes read.
    len: usize,
}

/// Serve the request whose first bytes are waiting on `socket`, if it is simple.
pub(in crate::proxy) async fn serve_one(socket: &mut PlainSocket, context: &ConnContext) -> Served {
    let snapshot = context.shared.snapshot.load_full();
    let proxy = &snapshot.config.proxy;
    if !proxy.fast_path {
        return Served::Declined;
    }
    let mut buf = BytesMut::with_capacity(READ);
    let rewind = put_back_bytes(socket);
    let had_put_back = rewind.has_put_back();
    match rewind.read_buf(&mut buf).await {
        Ok(0) => return Served::Declined,
        Ok(_) => {}
        Err(_) => return Served::Gone,
    }
    // Put-back bytes come alone (the first 24 bytes of a connection, read to look for the
    // HTTP/2 preface, are some): what already followed them is added without waiting.
    if had_put_back && !rewind.has_put_back() {
        let _ = rewind.get_ref().try_read_buf(&mut buf);
    }
    let started = Instant::now();
    let mut upstream_head = Vec::with_capacity(512);
    let plan = {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        classify(&buf, proxy.max_header_bytes, &mut fields)
            .ok()
            .and_then(|head| plan(&head, &snapshot, context, &mut upstream_head))
    };
    let Some(plan) = plan else {
        put_back_bytes(socket).put_back(buf.freeze());
        return Served::Declined;
    };
    // Consumed: what follows the head (a pipelined request) waits for the next boundary.
    let rest = buf.split_off(plan.len);
    put_back_bytes(socket).put_back(rest.freeze());
    SERVED.fetch_add(1, Ordering::Relaxed);
    let response = forward_simple(
        proxy,
        &context.client,
        SimpleRequest {
            route: plan.route,
            version: plan.version,
            counted: plan.counted,
            method: &plan.method,
            head: &upstream_head,
            started,
        },
    )
    .await;
    match respond::write(socket, response, &plan.method, plan.wants_close).await {
        Written::KeepAlive => Served::KeepAlive,
        Written::Close => Served::Close,
        Written::Gone => Served::Gone,
    }
}

/// Whether the fast path takes `head`, and if so where it goes; its upstream head is written
/// into `upstream_head`.
fn plan(
    head: &FlatHead<'_, '_>,
    snapshot: &RoutingSnapshot,
    context: &ConnContext,
    upstream_head: &mut Vec<u8>,
) -> Option<Plan> {
    let proxy = &snapshot.config.proxy;
    if !head.is_bodiless() || head.facts.grpc {
        return None;
    }
    let host = std::str::from_utf8(head.host()).ok()?;
    let route = snapshot.table.find(Some(host), head.path())?;
    if route.mirror.is_some() || !all_on_the_engine(route) {
        return None;
    }
    let version = choose_version(route, &FlatFields(head.fields), &mut || {
        rand::random_range(0..10_000u16)
    });
    let client = &context.client;
    let facts = ClientFacts {
        peer: client.peer.ip(),
        peer_value: &client.peer_value,
        tls: client.tls,
        authority: None,
        trusted_proxies: &proxy.trusted_proxies,
    };
    write_upstream_head(
        head,
        &facts,
        || new_request_id().as_bytes().to_vec(),
        upstream_head,
    );
    Some(Plan {
        route: route.clone(),
        version,
        counted: !route.failures.ignores(head.path()),
        method: head.method.clone(),
        wants_close: head.facts.connection.close,
        len: head.len,
    })
}

/// Every endpoint the request could go to (either version: a canary's failure fails over to
/// the primary) is spoken to by canaryd's own HTTP/1.1 engine.
fn all_on_the_engine(route: &Route) -> bool {
    let on_engine = |backend: &crate::routing::Backend| {
        backend.endpoints().iter().all(|e| e.drives_own_http1())
    };
    on_engine(&route.primary) && route.canary.as_deref().is_none_or(on_engine)
}

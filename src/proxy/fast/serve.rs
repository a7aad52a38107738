//! One simple request served without hyper's server, at a message boundary of the rounds loop
//! (`http1_rounds.rs`; docs/performance.md#the-client-side-fast-path):
//!
//! 1. look at what the client has sent — put-back bytes, then a peek at the socket — and
//!    classify the head (`head.rs`);
//! 2. decide before consuming anything: a simple head without a body, not gRPC, to a route
//!    without `[route.mirror]` whose endpoints (primary and canary) all use canaryd's engine;
//!    route and version are chosen on the flat view, as `forward.rs` chooses them;
//! 3. anything else is left where it was, not a byte consumed, and hyper serves it;
//! 4. else exactly the head is consumed (bytes past it stay for the next request), its upstream head
//!    written (`rewrite.rs`), and `forward.rs`'s phases 4–6 run (`forward_simple`): the same
//!    upstream call, response rewrite, outcome record and error answers;
//! 5. the answer goes to the client as hyper would write it (`respond.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::Method;
use tokio::io::{AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::head::{classify, FlatHead, MAX_FIELDS};
use super::respond::{self, Written};
use super::rewrite::write_upstream_head;
use crate::config::Version;
use crate::proxy::forward::{forward_simple, SimpleAnswer, SimpleRequest};
use crate::proxy::headers::{request_id_bytes, ClientFacts};
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
    let started = Instant::now();
    let mut upstream_head = Vec::with_capacity(512);
    let plan = match take_simple_head(socket, &snapshot, context, &mut upstream_head) {
        Taken::Simple(plan) => plan,
        Taken::Declined => return Served::Declined,
        Taken::Broken => return Served::Gone,
    };
    SERVED.fetch_add(1, Ordering::Relaxed);
    let forward = forward_simple(
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
        plan.wants_close,
    );
    let mut forward = std::pin::pin!(forward);
    // While the upstream is asked, the socket is flushed whenever an upstream 1xx is queued
    // for it (`informational.rs`), so that it reaches the client before the final answer is
    // ready, as it does under hyper.
    let answer = std::future::poll_fn(|cx| {
        if let Poll::Ready(response) = forward.as_mut().poll(cx) {
            return Poll::Ready(response);
        }
        let _ = Pin::new(&mut *socket).poll_flush(cx);
        Poll::Pending
    })
    .await;
    let written = match answer {
        SimpleAnswer::Encoded(head, body) => respond::write_encoded(socket, head, body).await,
        SimpleAnswer::Made(response) => {
            respond::write(socket, response, &plan.method, plan.wants_close).await
        }
    };
    match written {
        Written::KeepAlive => Served::KeepAlive,
        Written::Close => Served::Close,
        Written::Gone => Served::Gone,
    }
}

/// What looking at the waiting bytes came to.
enum Taken {
    /// A simple request's head, consumed; the plan says where it goes.
    Simple(Plan),
    /// Not simple, or not all here: nothing was consumed.
    Declined,
    /// The socket failed while the head was being consumed.
    Broken,
}

thread_local! {
    /// Where each worker looks at a waiting head: shared by its connections, since a head is
    /// looked at without waiting (docs/performance.md#memory-per-idle-connection).
    static LOOK: RefCell<Vec<u8>> = RefCell::new(vec![0; READ]);
}

/// Look at the waiting bytes — put-back ones first, then the socket's, *peeked* — and, when
/// they start with a simple head the fast path takes, consume exactly that head. Nothing is
/// consumed otherwise, so hyper reads the same bytes in the same reads as without the fast
/// path (its limits on long heads depend on how its reads fall).
fn take_simple_head(
    socket: &mut PlainSocket,
    snapshot: &RoutingSnapshot,
    context: &ConnContext,
    upstream_head: &mut Vec<u8>,
) -> Taken {
    LOOK.with(|look| {
        let Ok(mut buf) = look.try_borrow_mut() else {
            return Taken::Declined;
        };
        let rewind = put_back_bytes(socket);
        let put_back = rewind.put_back_bytes();
        let from_put_back = put_back.len().min(READ);
        buf[..from_put_back].copy_from_slice(&put_back[..from_put_back]);
        let mut len = from_put_back;
        if from_put_back == put_back.len() && len < READ {
            // The socket is ready (the rounds loop saw a byte) or holds nothing yet (there were
            // put-back bytes): a peek with no waker to wake.
            let mut cx = Context::from_waker(Waker::noop());
            let mut read = ReadBuf::new(&mut buf[len..]);
            if let Poll::Ready(Ok(_)) = rewind.get_ref().poll_peek(&mut cx, &mut read) {
                len += read.filled().len();
            }
        }
        let plan = {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let proxy = &snapshot.config.proxy;
            classify(&buf[..len], proxy.max_header_bytes, &mut fields)
                .ok()
                .and_then(|head| plan(&head, snapshot, context, upstream_head))
        };
        let Some(plan) = plan else {
            return Taken::Declined;
        };
        // Consume the head: its put-back part, then the rest from the socket, where the peek
        // saw it.
        let taken = plan.len.min(from_put_back);
        rewind.consume_put_back(taken);
        let mut left = plan.len - taken;
        while left > 0 {
            match rewind.get_ref().try_read(&mut buf[..left]) {
                Ok(n) if n > 0 => left -= n,
                _ => return Taken::Broken,
            }
        }
        Taken::Simple(plan)
    })
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
    write_upstream_head(head, &facts, request_id_bytes, upstream_head);
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

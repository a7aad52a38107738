//! One simple request served without hyper's server, at a message boundary of the rounds loop
//! (`http1_rounds.rs`; docs/performance.md#the-client-side-fast-path):
//!
//! 1. look at what the client has sent — put-back bytes, then one non-blocking read of the
//!    socket — and classify the head (`head.rs`), without waiting ([`look`]);
//! 2. decide: a simple head without a body, not gRPC, to a route without `[route.mirror]`
//!    whose endpoints (primary and canary) all use canaryd's engine; route and version are
//!    chosen on the flat view, as `forward.rs` chooses them;
//! 3. anything else is put back, every byte read in order, and hyper serves it;
//! 4. else exactly the head is used (bytes read past it are put back for the next request),
//!    its upstream head written (`rewrite.rs`), and `forward.rs`'s phases 4–6 run
//!    (`forward_simple`): the same upstream call, response rewrite, outcome record and error
//!    answers ([`serve_planned`]);
//! 5. the answer goes to the client as hyper would write it (`respond.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::Method;
use tokio::io::AsyncWrite;
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
use crate::upstream::readiness;

/// Requests the fast path served, process-wide: for tests that must know it was taken.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// How many requests the fast path has served in this process (for tests only).
pub fn served_count() -> u64 {
    SERVED.load(Ordering::Relaxed)
}

/// The most the fast path reads for a head; a head not complete within it goes to hyper.
const READ: usize = 8 * 1024;

/// The most the fast path reads from the socket: one byte short of hyper's first read (8 KiB),
/// so that bytes it puts back never fill one of hyper's reads. A full read makes hyper read
/// more at a time from then on, and a head too large to take would then be answered
/// differently (414 instead of 431 for a 100 KiB target, docs/security.md#the-fast-path-differential-suite).
const READ_FROM_SOCKET: usize = READ - 1;

/// What looking at the bytes waiting at a boundary came to.
pub(in crate::proxy) enum Looked {
    /// A simple request, its head consumed: [`serve_planned`] serves it.
    Simple(Box<Plan>),
    /// Not taken: every byte read is back in front of the socket, for hyper.
    Declined,
    /// Nothing was waiting (the readiness was stale): wait again.
    Nothing,
    /// The client closed, or its socket failed, at a boundary: nothing of its is unread.
    Closed,
}

/// How a simple request's exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Served {
    /// Answered; the connection is at the next boundary.
    KeepAlive,
    /// Answered, and the connection closes (the client may still be sending).
    Close,
    /// The client went away.
    Gone,
}

/// A simple request the fast path takes, decided before its head was consumed.
pub(in crate::proxy) struct Plan {
    snapshot: Arc<RoutingSnapshot>,
    route: Arc<Route>,
    version: Version,
    counted: bool,
    method: Method,
    /// The client sent `Connection: close`.
    wants_close: bool,
    /// The head's length in the bytes read.
    len: usize,
    /// What goes upstream.
    upstream_head: Vec<u8>,
    started: Instant,
}

/// Look at the bytes waiting at a boundary, without waiting: a simple request's head is
/// consumed and planned; anything else is put back for hyper. Not a future, so that a look
/// that finds nothing costs no boxed exchange (docs/performance.md#the-client-side-fast-path).
pub(in crate::proxy) fn look(socket: &mut PlainSocket, context: &ConnContext) -> Looked {
    let snapshot = context.shared.snapshot.load();
    if !snapshot.config.proxy.fast_path {
        return Looked::Declined;
    }
    take_simple_head(socket, &snapshot, context)
}

/// Serve a request [`look`] planned.
pub(in crate::proxy) async fn serve_planned(
    socket: &mut PlainSocket,
    context: &ConnContext,
    plan: Box<Plan>,
) -> Served {
    SERVED.fetch_add(1, Ordering::Relaxed);
    let forward = forward_simple(
        &plan.snapshot.config.proxy,
        &context.client,
        SimpleRequest {
            route: plan.route,
            version: plan.version,
            counted: plan.counted,
            method: &plan.method,
            head: &plan.upstream_head,
            started: plan.started,
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

thread_local! {
    /// Where each worker looks at a waiting head: shared by its connections, since a head is
    /// looked at without waiting (docs/performance.md#memory-per-idle-connection).
    static LOOK: RefCell<Vec<u8>> = RefCell::new(vec![0; READ]);
}

/// Look at the waiting bytes — put-back ones first, then what one non-blocking read of the
/// socket brings — and, when they start with a simple head the fast path takes, consume
/// exactly that head. Whatever else was read is put back, in order, for the next request or
/// for hyper: a read and a put-back instead of a peek and a read spares a system call per
/// request (docs/performance.md#the-client-side-fast-path).
fn take_simple_head(
    socket: &mut PlainSocket,
    snapshot: &Arc<RoutingSnapshot>,
    context: &ConnContext,
) -> Looked {
    LOOK.with(|look| {
        let Ok(mut buf) = look.try_borrow_mut() else {
            return Looked::Declined;
        };
        let rewind = put_back_bytes(socket);
        let put_back = rewind.put_back_bytes();
        let from_put_back = put_back.len().min(READ);
        buf[..from_put_back].copy_from_slice(&put_back[..from_put_back]);
        let mut len = from_put_back;
        let mut read = 0;
        if from_put_back == put_back.len() && len < READ_FROM_SOCKET {
            // A read that stops short of its room drained the socket: its readiness goes, so
            // the wait at the next boundary sleeps until the next request arrives instead of
            // trying the socket once more for nothing (`upstream::readiness`).
            let tcp = rewind.get_ref();
            match tcp.try_read(&mut buf[len..READ_FROM_SOCKET]) {
                Ok(n) => {
                    readiness::after_read(tcp, n, READ_FROM_SOCKET - len);
                    read = n;
                }
                // Readiness left over from an earlier read: nothing has arrived yet.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && len == 0 => {
                    return Looked::Nothing;
                }
                // With put-back bytes to look at, the next read (hyper's) meets the failure.
                Err(_) if len > 0 => {}
                Err(_) => return Looked::Closed,
            }
            if len == 0 && read == 0 {
                return Looked::Closed;
            }
            len += read;
        }
        let plan = {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let proxy = &snapshot.config.proxy;
            classify(&buf[..len], proxy.max_header_bytes, &mut fields)
                .ok()
                .and_then(|head| plan(&head, snapshot, context))
        };
        let used = plan.as_ref().map_or(0, |plan| plan.len);
        if read > 0 {
            // Everything looked at now sits in `buf`: what the request did not use goes back
            // (nearly always nothing: a client sends its next request after this answer).
            let unused = &buf[used..len];
            rewind.replace_put_back(if unused.is_empty() {
                Bytes::new()
            } else {
                Bytes::copy_from_slice(unused)
            });
        } else {
            rewind.consume_put_back(used);
        }
        match plan {
            Some(plan) => Looked::Simple(Box::new(plan)),
            None => Looked::Declined,
        }
    })
}

/// Whether the fast path takes `head`, and if so where it goes; its upstream head is written
/// into `upstream_head`.
fn plan(
    head: &FlatHead<'_, '_>,
    snapshot: &Arc<RoutingSnapshot>,
    context: &ConnContext,
) -> Option<Plan> {
    let started = Instant::now();
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
    let mut upstream_head = Vec::with_capacity(512);
    write_upstream_head(head, &facts, request_id_bytes, &mut upstream_head);
    Some(Plan {
        snapshot: snapshot.clone(),
        upstream_head,
        started,
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

//! Upstream connections kept for reuse, one pool per worker thread and endpoint: idle
//! HTTP/1.1 connections, and the HTTP/2 connections whose streams requests share.
//!
//! Thread-local on purpose: a worker takes and returns connections without a lock or a shared
//! cache line, like HAProxy's and nginx's per-worker pools. A connection returned on another
//! thread (possible with the work-stealing runtime) simply joins that thread's pool.
//!
//! HTTP/1.1: bounded by the endpoint's pool bounds (`proxy.pool_max_idle_per_endpoint`,
//! `proxy.pool_idle_timeout`, docs/configuration.md#keys-and-defaults): a connection returned to
//! a full pool is closed, and a sweep task per worker closes the ones idle for too long. Each
//! list is a stack (the most recently returned connection is taken first, as it is the least
//! likely to have been closed by the upstream), so it is ordered oldest first and a sweep only
//! looks at its front. Without a written bound the pool keeps what the traffic used: taking the
//! most recent first leaves the connections beyond the concurrency in use at the bottom, where
//! the idle timeout closes them.
//!
//! HTTP/2: one connection per endpoint and worker carries every request as a stream; another
//! is opened only when each one holds as many streams as its peer allows
//! (`SETTINGS_MAX_CONCURRENT_STREAMS`, RFC 9113 §5.1.2), and a request that finds no room waits
//! for a connection another request is opening while that one will have room, so a burst on a
//! cold pool opens the connections its streams need rather than one per request. A connection
//! with no stream for the idle timeout is closed; one that received a GOAWAY is never given new
//! streams.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connect::INITIAL_MAX_STREAMS;
use super::failure::ConnectFailure;
use super::h2_stream::H2Sender;
use super::idle::{IdleLists, Reusable};
use super::{Endpoint, RequestBody};

/// How often a worker's sweep looks for connections idle longer than their endpoint's timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Sender = SendRequest<RequestBody>;

impl Reusable for Sender {
    fn reusable(&self) -> bool {
        !self.is_closed()
    }
}

/// What the requests on one HTTP/2 connection share, wherever their response bodies end up.
#[derive(Debug)]
pub(super) struct H2Shared {
    /// Streams open now.
    streams: AtomicUsize,
    /// The peer's limit, kept current by the connection task (0 once it ended, so a connection
    /// whose task is gone is never given a stream).
    max_streams: Arc<AtomicUsize>,
    /// The peer sent GOAWAY or refused a stream: no new stream goes here.
    retired: AtomicBool,
    /// A response arrived, so the peer's SETTINGS did (a server sends them first): until then
    /// `max_streams` is only h2's initial guess.
    settled: AtomicBool,
}

impl H2Shared {
    /// A response arrived on this connection: its stream limit is the peer's.
    pub(super) fn settle(&self) {
        self.settled.store(true, Ordering::Relaxed);
    }

    /// No new stream goes to this connection (it is closing).
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

/// One stream's claim on an HTTP/2 connection, released when the request ends.
#[derive(Debug)]
pub(super) struct StreamSlot(Arc<H2Shared>);

impl StreamSlot {
    pub(super) fn connection(&self) -> &H2Shared {
        &self.0
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

struct H2Conn {
    sender: H2Sender,
    shared: Arc<H2Shared>,
    /// Closed after this with no stream open.
    expires: Instant,
}

impl H2Conn {
    fn is_usable(&self) -> bool {
        self.shared.max_streams.load(Ordering::Relaxed) > 0
            && !self.shared.retired.load(Ordering::Relaxed)
    }
}

/// This worker's HTTP/2 connections to one endpoint.
#[derive(Default)]
struct H2Conns {
    conns: Vec<H2Conn>,
    /// The stream limit the endpoint's settled connections report: what a new connection is
    /// held to until its own peer's SETTINGS are known.
    learned_limit: Option<usize>,
    /// Connections being opened now, and the streams promised on each.
    opening: Vec<Opening>,
}

/// Numbers the connections being opened, on every worker (a guard may end on another thread).
static OPENINGS: AtomicU64 = AtomicU64::new(0);

/// A connection a request of this worker is opening: requests that find no room on the open
/// connections wait for it, up to the streams it will allow, instead of each opening one of
/// its own (a burst on a cold pool would otherwise open a connection per request).
struct Opening {
    id: u64,
    /// Streams requests expect on it, its opener's included.
    promised: usize,
    limit: usize,
    outcome: watch::Receiver<OpenOutcome>,
}

/// How the opening of a connection that requests wait for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenOutcome {
    Pending,
    /// Open and in the pool: look again.
    Opened,
    /// ALPN chose HTTP/1.1 (`protocol = "auto"`): each request opens its own.
    Http1,
    /// It failed: the requests waiting for it fail the same way rather than each trying again
    /// for another `connect_timeout`.
    Failed(ConnectFailure),
}

/// What a request for a stream gets from [`take_stream_or_wait`].
pub(super) enum StreamOrWait {
    /// A stream on an open connection.
    Stream(H2Sender, StreamSlot),
    /// Another request of this worker is opening a connection with room for this one.
    Wait(watch::Receiver<OpenOutcome>),
    /// This request opens a connection; until it is done, others may wait for it.
    Open(OpeningGuard),
}

/// Held by the request that opens a connection others wait for; tells them how it ended (a
/// guard dropped without [`OpeningGuard::finish`], its request cancelled, tells them to look
/// again).
pub(super) struct OpeningGuard {
    endpoint: u64,
    id: u64,
    outcome: watch::Sender<OpenOutcome>,
}

impl OpeningGuard {
    /// Tell the waiting requests how the opening ended.
    pub(super) fn finish(self, outcome: OpenOutcome) {
        self.outcome.send_replace(outcome);
    }
}

impl Drop for OpeningGuard {
    fn drop(&mut self) {
        H2.with(|h2| {
            if let Some(entry) = h2.borrow_mut().get_mut(&self.endpoint) {
                entry.opening.retain(|o| o.id != self.id);
            }
        });
    }
}

thread_local! {
    static IDLE: RefCell<IdleLists<Sender>> = RefCell::new(IdleLists::default());
    static H2: RefCell<HashMap<u64, H2Conns>> = RefCell::new(HashMap::new());
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// A stream on one of this worker's HTTP/2 connections to the endpoint that has room for one.
pub(super) fn take_stream(endpoint: &Endpoint) -> Option<(H2Sender, StreamSlot)> {
    H2.with(|h2| {
        let mut h2 = h2.borrow_mut();
        let entry = h2.get_mut(&endpoint.id())?;
        entry.conns.retain(H2Conn::is_usable);
        let expires = Instant::now() + endpoint.pool().idle_timeout;
        let mut learned = entry.learned_limit;
        let conn = entry.conns.iter_mut().find(|c| {
            let own = c.shared.max_streams.load(Ordering::Relaxed);
            let limit = if c.shared.settled.load(Ordering::Relaxed) {
                learned = Some(own);
                own
            } else {
                learned.map_or(own, |l| l.min(own))
            };
            c.shared.streams.load(Ordering::Relaxed) < limit
        });
        let conn = match conn {
            Some(conn) => conn,
            None => {
                entry.learned_limit = learned;
                return None;
            }
        };
        conn.shared.streams.fetch_add(1, Ordering::Relaxed);
        conn.expires = expires;
        let taken = (conn.sender.clone(), StreamSlot(conn.shared.clone()));
        entry.learned_limit = learned;
        Some(taken)
    })
}

/// A stream on one of this worker's HTTP/2 connections to the endpoint, or else a connection
/// being opened to wait for, or else the go-ahead to open one (docs/routing.md, HTTP/2
/// upstreams: more connections only when each open one is full).
pub(super) fn take_stream_or_wait(endpoint: &Endpoint) -> StreamOrWait {
    if let Some((sender, slot)) = take_stream(endpoint) {
        return StreamOrWait::Stream(sender, slot);
    }
    H2.with(|h2| {
        let mut h2 = h2.borrow_mut();
        let entry = h2.entry(endpoint.id()).or_default();
        // An opener that ended on another thread (the work-stealing runtime) left its entry
        // here; its channel is closed.
        entry.opening.retain(|o| {
            o.outcome.has_changed().is_ok() && *o.outcome.borrow() == OpenOutcome::Pending
        });
        if let Some(opening) = entry.opening.iter_mut().find(|o| o.promised < o.limit) {
            opening.promised += 1;
            return StreamOrWait::Wait(opening.outcome.clone());
        }
        let id = OPENINGS.fetch_add(1, Ordering::Relaxed);
        let (outcome, receiver) = watch::channel(OpenOutcome::Pending);
        entry.opening.push(Opening {
            id,
            promised: 1,
            limit: entry.learned_limit.unwrap_or(INITIAL_MAX_STREAMS),
            outcome: receiver,
        });
        StreamOrWait::Open(OpeningGuard {
            endpoint: endpoint.id(),
            id,
            outcome,
        })
    })
}

/// Whether this worker has opened an HTTP/2 connection to the endpoint that it still knows
/// of (with `protocol = "auto"`, the endpoint's ALPN chose h2).
pub(super) fn has_spoken_h2(endpoint: &Endpoint) -> bool {
    H2.with(|h2| {
        h2.borrow()
            .get(&endpoint.id())
            .is_some_and(|entry| !entry.conns.is_empty() || entry.learned_limit.is_some())
    })
}

/// Share a new HTTP/2 connection on this worker; the first stream is the caller's.
pub(super) fn add_connection(
    endpoint: &Endpoint,
    sender: H2Sender,
    max_streams: Arc<AtomicUsize>,
) -> StreamSlot {
    let shared = Arc::new(H2Shared {
        streams: AtomicUsize::new(1),
        max_streams,
        retired: AtomicBool::new(false),
        settled: AtomicBool::new(false),
    });
    H2.with(|h2| {
        h2.borrow_mut()
            .entry(endpoint.id())
            .or_default()
            .conns
            .push(H2Conn {
                sender,
                shared: shared.clone(),
                expires: Instant::now() + endpoint.pool().idle_timeout,
            });
    });
    start_sweeping();
    StreamSlot(shared)
}

/// Take an idle connection to this endpoint that is neither known to be closed nor expired.
pub(super) fn take(endpoint: &Endpoint) -> Option<Sender> {
    IDLE.with(|idle| idle.borrow_mut().take(endpoint.id(), Instant::now()))
}

/// Return a connection whose last response completed; it is closed (dropped) instead if the
/// endpoint's pool on this worker is full.
pub(super) fn put(endpoint: &Endpoint, sender: Sender) {
    let policy = endpoint.pool();
    if sender.is_closed() || policy.max_idle_per_endpoint == 0 {
        return;
    }
    let expires = Instant::now() + policy.idle_timeout;
    IDLE.with(|idle| {
        idle.borrow_mut()
            .put(endpoint.id(), sender, policy.max_idle_per_endpoint, expires)
    });
    start_sweeping();
}

/// Start this worker's sweep task once, from inside its runtime (it also sweeps the pool of
/// canaryd's engine, `http1/pool.rs`).
pub(super) fn start_sweeping() {
    if SWEEPING.with(Cell::get) {
        return;
    }
    // Outside a runtime (a connection dropped during shutdown) there is nothing to sweep for.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    SWEEPING.with(|s| s.set(true));
    runtime.spawn(async {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            sweep(Instant::now());
        }
    });
}

/// Close this worker's connections that expired by `now` (and those closed by the upstream).
fn sweep(now: Instant) {
    super::http1::sweep(now);
    IDLE.with(|idle| idle.borrow_mut().sweep(now));
    H2.with(|h2| {
        let mut h2 = h2.borrow_mut();
        for entry in h2.values_mut() {
            entry.conns.retain(|c| {
                c.is_usable() && (c.expires > now || c.shared.streams.load(Ordering::Relaxed) > 0)
            });
        }
        h2.retain(|_, entry| !entry.conns.is_empty() || !entry.opening.is_empty());
    });
}

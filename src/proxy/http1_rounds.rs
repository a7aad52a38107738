//! Plain HTTP/1.1 client connections served in rounds, so an idle keep-alive connection holds
//! its socket and nothing of hyper's (`docs/performance.md#memory-per-idle-connection`).
//!
//! hyper keeps a connection's read and write buffers (about 16 KiB) and its dispatcher for the
//! connection's whole life, idle or not, and has no setting to let them go. So a plain
//! connection gets a fresh hyper connection only when a request's first bytes arrive — a
//! *round* — and the round ends, its buffers freed, once the connection is back at a message
//! boundary with nothing in flight and has stayed quiet for `proxy.release_buffers_after`:
//!
//! 1. Wait until the next request's first byte can be peeked (`idle_timeout` bounds the wait,
//!    as hyper's keep-alive timer did); bytes put back by the previous round start one at once.
//! 2. Serve with hyper, for as many requests as keep coming. When a whole quiet period passes
//!    with no new request, every request answered, and the last one without a body or a wish
//!    to close, disable keep-alive: hyper finishes the response still being written, if any,
//!    and stops without touching the socket (`poll_without_shutdown`). A response head already
//!    written is unaffected, so the client sees an ordinary keep-alive answer.
//! 3. Take the socket back with whatever hyper read past that response (a pipelined request)
//!    and go to 1.
//!
//! The quiet period is what keeps a busy connection cheap: a fresh hyper connection, and the
//! peek before it, cost about 8,700 instructions and one system call per request when a round
//! ended after every response (`docs/performance.md#memory-per-idle-connection`). With
//! `release_buffers_after = "0s"` a round still ends right after each such response.
//!
//! At each boundary, before a round starts, a simple request (no body, to a route on canaryd's
//! upstream engine) is served without hyper at all when `proxy.fast_path` is on (`fast/`); the
//! bytes of any other are put back untouched and a round serves it.
//!
//! A request with a body keeps its round going: whether hyper consumed every byte of it is not
//! visible from outside, and only hyper's own next parse proves the boundary. The round ends
//! after the next bodiless request instead. A connection that asked to close, or a response
//! that closes, ends the connection as hyper would. A 101 ends the round with the socket handed
//! to the tunnel (`upgrade.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use http::header::CONNECTION;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};

use super::body::ResponseBody;
use super::conn_timer::CountingIo;
use super::fast::serve::{look, serve_planned, Looked, Served};
use super::informational::InformationalIo;
use super::lingering_close::lingering_close;
use super::rewind::Rewind;
use super::service::ClientService;
use super::upgrade::{self, ClientIo, ReleasedUpgrade};

/// A plain client socket as every round sees it. The put-back bytes sit under the byte count,
/// so hyper's head timer sees a head that starts in them as started (`conn_timer.rs`).
pub(super) type PlainSocket = InformationalIo<CountingIo<Rewind<TcpStream>>>;

/// Where a plain socket's bytes are put back.
pub(super) fn put_back_bytes(socket: &mut PlainSocket) -> &mut Rewind<TcpStream> {
    socket.get_mut().get_mut()
}

/// `make()`'s future on the heap, the allocation made first so that the future can be built
/// where it will stay: `Box::pin(make())` builds it on the stack and copies all of it, its
/// largest state included, into the allocation (about 400 instructions per fast-path request,
/// docs/performance.md#the-client-side-fast-path).
fn pinned_in_place<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}

/// What the requests of one round tell the loop that serves it.
pub(super) struct Round {
    started: AtomicU32,
    answered: AtomicU32,
    /// The latest request leaves the connection at a boundary a new hyper connection can
    /// start from: no body, no `Connection: close`, and (once answered) no closing response.
    reusable: AtomicBool,
    switched: AtomicBool,
    upgrade: Mutex<Option<oneshot::Sender<Box<dyn ClientIo>>>>,
    answered_one: Notify,
}

impl Round {
    fn new() -> Self {
        Round {
            started: AtomicU32::new(0),
            answered: AtomicU32::new(0),
            reusable: AtomicBool::new(false),
            switched: AtomicBool::new(false),
            upgrade: Mutex::new(None),
            answered_one: Notify::new(),
        }
    }

    /// hyper parsed a request head of this round and is calling the service.
    pub fn request_started(&self, request: &mut Request<Incoming>) {
        self.started.fetch_add(1, Ordering::Relaxed);
        let reusable =
            request.body().is_end_stream() && !asks_to_close(request.version(), request.headers());
        self.reusable.store(reusable, Ordering::Relaxed);
        if upgrade::requested(request.version(), request.headers()).is_some() {
            let (socket, released) = oneshot::channel();
            *self.upgrade.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket);
            request
                .extensions_mut()
                .insert(ReleasedUpgrade::new(released));
        }
    }

    /// The service returned `response`; hyper writes its head in the same poll.
    pub fn answered(&self, response: &Response<ResponseBody>) {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.switched.store(true, Ordering::Relaxed);
        }
        if asks_to_close(http::Version::HTTP_11, response.headers()) {
            self.reusable.store(false, Ordering::Relaxed);
        }
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.answered_one.notify_one();
    }

    /// How many requests of this round hyper has started.
    fn started(&self) -> u32 {
        self.started.load(Ordering::Relaxed)
    }

    /// Every request of the round is answered and the last one left a clean boundary.
    fn can_end(&self) -> bool {
        self.started.load(Ordering::Relaxed) == self.answered.load(Ordering::Relaxed)
            && self.reusable.load(Ordering::Relaxed)
            && !self.switched.load(Ordering::Relaxed)
    }

    fn served_any(&self) -> bool {
        self.started.load(Ordering::Relaxed) > 0
    }

    fn take_upgrade(&self) -> Option<oneshot::Sender<Box<dyn ClientIo>>> {
        if !self.switched.load(Ordering::Relaxed) {
            return None;
        }
        self.upgrade
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Whether a message's `Connection` field (or, for HTTP/1.0, its absence of `keep-alive`)
/// closes the connection after it (RFC 9112 §9.3).
fn asks_to_close(version: http::Version, headers: &HeaderMap) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for token in headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let token = token.trim();
        close |= token.eq_ignore_ascii_case("close");
        keep_alive |= token.eq_ignore_ascii_case("keep-alive");
    }
    close || (version <= http::Version::HTTP_10 && !keep_alive)
}

/// How rounds are served on one connection.
pub(super) struct Rounds<'a> {
    /// hyper's HTTP/1 server settings, made when a round starts.
    pub http1: &'a (dyn Fn() -> http1::Builder + Sync),
    pub service: &'a ClientService,
    pub idle_timeout: Duration,
    /// `proxy.release_buffers_after`: how long a round stays quiet before it ends.
    pub release_after: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub peer: &'a std::net::SocketAddr,
}

/// How a round ended.
enum RoundEnd {
    /// Back at a message boundary: wait for the next request.
    Boundary(PlainSocket),
    /// The connection is done (closed by either side, an error, or shutdown).
    Closed,
}

impl<'a> Rounds<'a> {
    /// Serve `socket` until the connection ends.
    ///
    /// The future uses `self` and `socket` where it captured them: an `async fn` would keep
    /// its arguments beside the copies it moves them into for the connection's whole life
    /// (docs/performance.md#memory-per-idle-connection).
    #[allow(clippy::manual_async_fn)] // the `async fn` form is the one that costs the room
    pub fn serve(mut self, mut socket: PlainSocket) -> impl Future<Output = ()> + Send + 'a {
        async move {
            loop {
                // A simple request is served without hyper; anything else, untouched, by hyper
                // (docs/performance.md#the-client-side-fast-path).
                let fast_path = self
                    .service
                    .fast_path_context()
                    .shared
                    .snapshot
                    .load()
                    .config
                    .proxy
                    .fast_path;
                if !socket.get_ref().get_ref().has_put_back()
                    && !self.wait_for_request(&socket, fast_path).await
                {
                    // Idle, closed by the client, or stopping while idle: nothing of the client's
                    // is unread, and a client that keeps an idle socket open must not hold the
                    // drain at shutdown for the lingering time.
                    let _ = socket.shutdown().await;
                    return;
                }
                if fast_path {
                    let context = self.service.fast_path_context();
                    let looked = look(&mut socket, context);
                    let served = match looked {
                        // Boxed, so that an idle connection's task does not carry the exchange's
                        // state inline.
                        Looked::Simple(plan) => Some(
                            pinned_in_place(|| serve_planned(&mut socket, context, plan)).await,
                        ),
                        Looked::Nothing => continue,
                        Looked::Closed => {
                            let _ = socket.shutdown().await;
                            return;
                        }
                        Looked::Declined => None,
                    };
                    match served {
                        Some(Served::KeepAlive) => continue,
                        Some(Served::Close) => {
                            lingering_close(socket).await;
                            return;
                        }
                        Some(Served::Gone) => return,
                        None => {}
                    }
                }
                // Boxed too: an idle connection must carry only the wait above, not a round's
                // (docs/performance.md#memory-per-idle-connection).
                match Box::pin(self.round(socket)).await {
                    RoundEnd::Boundary(next) => socket = next,
                    RoundEnd::Closed => return,
                }
            }
        }
    }

    /// Wait, holding only the socket, until the next request's first bytes arrive; `false`
    /// if the connection should close instead (idle timeout, the client closed, shutdown, a
    /// socket error). With the fast path on, readiness is enough: its read tells a stale one
    /// (nothing read, wait again) and the end of the stream apart, and a peek here would cost
    /// a system call per request.
    async fn wait_for_request(&mut self, socket: &PlainSocket, fast_path: bool) -> bool {
        let tcp = socket.get_ref().get_ref().get_ref();
        let idle = tokio::time::sleep(self.idle_timeout);
        let mut idle = std::pin::pin!(idle);
        let stopping = self.shutdown.wait_for(|stop| *stop);
        let mut stopping = std::pin::pin!(stopping);
        // Polled by hand rather than as `select!` over `timeout(readable())`: the wait is what
        // an idle connection's task holds, and these polls keep no state of their own
        // (docs/performance.md#memory-per-idle-connection).
        let waited = std::future::poll_fn(|cx| {
            let arrived = if fast_path {
                tcp.poll_read_ready(cx).map_ok(|()| true)
            } else {
                // Without it, a peek, not readiness: readiness left over from hyper's last read
                // would start a round with nothing to read, and that round would sit idle
                // holding hyper's buffers.
                let mut first = [0u8; 1];
                tcp.poll_peek(cx, &mut ReadBuf::new(&mut first))
                    .map_ok(|n| n > 0)
            };
            if let Poll::Ready(arrived) = arrived {
                return Poll::Ready(Some(arrived));
            }
            if idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Ok(false)));
            }
            Poll::Pending
        })
        .await;
        match waited {
            Some(Ok(more)) => more,
            Some(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "client connection failed while idle");
                false
            }
            None => {
                tracing::debug!(peer = %self.peer, "closing idle HTTP/1 connection");
                false
            }
        }
    }

    /// One hyper connection, from a request's first bytes to the next boundary.
    async fn round(&mut self, socket: PlainSocket) -> RoundEnd {
        let round = Arc::new(Round::new());
        // Boxed, so the idle connection's task does not carry hyper's connection state inline.
        let mut connection = Box::new(
            (self.http1)()
                .serve_connection(TokioIo::new(socket), self.service.in_round(round.clone())),
        );
        let mut ending = false;
        let mut stopping = false;
        let at_once = self.release_after.is_zero();
        let mut quiet = QuietPeriods::new(self.release_after);
        let result = loop {
            tokio::select! {
                // The connection first and in order: no random draw per wake-up.
                biased;
                result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
                () = round.answered_one.notified(), if at_once && !ending && !stopping => {
                    if round.can_end() {
                        std::pin::Pin::new(&mut *connection).graceful_shutdown();
                        ending = true;
                    }
                }
                () = quiet.next(), if !at_once && !ending && !stopping => {
                    if quiet.was_quiet(round.started()) && round.can_end() {
                        std::pin::Pin::new(&mut *connection).graceful_shutdown();
                        ending = true;
                    }
                }
                _ = self.shutdown.wait_for(|stop| *stop), if !stopping => {
                    std::pin::Pin::new(&mut *connection).graceful_shutdown();
                    stopping = true;
                }
            }
        };
        let parts = connection.into_parts();
        if let Err(e) = result {
            // hyper has written its error answer (400, 431…), usually with the client's bytes
            // still unread behind it.
            tracing::debug!(peer = %self.peer, error = %e, "client connection ended with an error");
            lingering_close(parts.io.into_inner()).await;
            return RoundEnd::Closed;
        }
        let mut socket = parts.io.into_inner();
        put_back_bytes(&mut socket).put_back(parts.read_buf);
        if let Some(tunnel) = round.take_upgrade() {
            // The 101 is out; the tunnel owns the socket from here.
            let _ = tunnel.send(Box::new(socket));
            return RoundEnd::Closed;
        }
        if ending && !stopping && round.served_any() {
            RoundEnd::Boundary(socket)
        } else if stopping {
            let _ = socket.shutdown().await;
            RoundEnd::Closed
        } else {
            // A closing answer: the client may still be sending (`lingering_close.rs`).
            lingering_close(socket).await;
            RoundEnd::Closed
        }
    }
}

/// Ticks every `release_after` during a round, to see whether a whole period went by without a
/// new request. One timer per round, not one reset per request: a busy connection pays a wake-up
/// per period, not per request.
struct QuietPeriods {
    ticks: Option<tokio::time::Interval>,
    started_at_last_tick: u32,
}

impl QuietPeriods {
    fn new(period: Duration) -> Self {
        let ticks = (!period.is_zero()).then(|| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        QuietPeriods {
            ticks,
            started_at_last_tick: 0,
        }
    }

    /// The end of the current period (never, without a period).
    async fn next(&mut self) {
        match &mut self.ticks {
            Some(ticks) => {
                ticks.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Whether no request started in the period that just ended.
    fn was_quiet(&mut self, started: u32) -> bool {
        let quiet = started == self.started_at_last_tick;
        self.started_at_last_tick = started;
        quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn connection(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(CONNECTION, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn close_is_read_like_hyper_reads_it() {
        use http::Version;
        assert!(!asks_to_close(Version::HTTP_11, &connection(&[])));
        assert!(asks_to_close(Version::HTTP_11, &connection(&["close"])));
        assert!(asks_to_close(
            Version::HTTP_11,
            &connection(&["x-a, Close"])
        ));
        assert!(asks_to_close(
            Version::HTTP_11,
            &connection(&["x-a", "close"])
        ));
        assert!(asks_to_close(Version::HTTP_10, &connection(&[])));
        assert!(!asks_to_close(
            Version::HTTP_10,
            &connection(&["Keep-Alive"])
        ));
        assert!(!asks_to_close(Version::HTTP_11, &connection(&["closed"])));
    }
}

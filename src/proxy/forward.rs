//! The life of one request, as named phases, each a function of this file run in order by
//! `handle` (`docs/routing.md`):
//!
//! 0. `refuse_malformed_head` — a bad target, `Host` or header field is refused before
//!    routing; an `OPTIONS` or `TRACE` with `Max-Forwards: 0` is answered here
//!    (`answer_as_last_hop`);
//! 1. `find_route` — the route by host and path, from the snapshot loaded once per request;
//!    then `refuse_unforwardable_framing`;
//! 2. `pick_version` — match rules, phase, sticky key or weight;
//! 3. `take_upgrade`, `rewrite_head` and `join_upstream_request` — hop-by-hop removal,
//!    `X-Forwarded-*`, `X-Request-Id`, origin-form URI; and, for a route with
//!    `[route.mirror]`, a copy of the request sent to the canary (`copy_to_canary`);
//! 4. `upstream_call::forward` — pick an endpoint, take or open a connection (retrying connect
//!    failures within the version's retry budget), send, wait for the response head within
//!    `request_timeout`;
//! 5. `respond` — rewrite the response headers and stream the body back; or, when an upgrade
//!    request got a 101 to a protocol it offered, join client and upstream into a tunnel
//!    (`upgrade.rs`); a 101 nobody asked for, or a transfer coding the client cannot receive,
//!    is the upstream's failure (502);
//! 6. **record** — the outcome is reported once to the route's metrics, when the response body
//!    ends (`body.rs`).
//!
//! A phase that fails returns a `ProxyError`; every such request leaves through one exit
//! (`or_answer!`, then `answer_failure`), which records the outcome of a failure that counts
//! against a version (phase 6 for it), and picks the status, the text and whether the
//! connection closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, TRAILER, TRANSFER_ENCODING};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{Completion, Judge, ResponseBody};
use super::grpc;
use super::headers::{
    join_cookie_crumbs, keep_body_framing, request_codings, response_codings, rewrite_request,
    rewrite_response, ClientFacts, RequestCodings,
};
use super::informational::Informational;
use super::upgrade::{self, ClientUpgrade};
use super::upstream_call::{self, Forwarded};
use super::validate::malformed_head;
use super::{mirror, ProxyError};
use crate::config::{ProxyConfig, Version};
use crate::metrics::MetricsRegistry;
use crate::routing::{choose_version, Route, RoutingSnapshot};
use crate::upstream::{BodyWatch, InformationalHook, RequestBody};

/// What every connection of the proxy shares.
#[derive(Debug)]
pub struct ProxyShared {
    /// The routing snapshot, published by the control task.
    pub snapshot: Arc<ArcSwap<RoutingSnapshot>>,
    /// Counters, for the ones that belong to no route.
    pub registry: Arc<MetricsRegistry>,
}

/// What is known of a client connection before its first request.
#[derive(Debug)]
pub struct ClientConn {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's IP as an `X-Forwarded-For` value.
    pub peer_value: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Where an HTTP/1 connection's 1xx responses wait to be written (`informational.rs`).
    pub(crate) informational: Option<Arc<Informational>>,
}

impl ClientConn {
    /// A plain or TLS client connection from `peer`.
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        ClientConn {
            peer,
            peer_value: super::headers::peer_header_value(peer.ip()),
            tls,
            informational: None,
        }
    }

    /// Forward upstreams' 1xx responses to this (HTTP/1) connection through `queue`.
    pub(super) fn with_informational(mut self, queue: Option<Arc<Informational>>) -> Self {
        self.informational = queue;
        self
    }
}

/// Serve one request on a client connection: the phases in order, and one exit for every
/// request the proxy answers itself.
///
/// The phases run in this one function rather than in a nested `async fn`: a nested future is
/// built and then moved into its caller's state, and a nested `run_phases` cost 633
/// instructions per request over TLS and 491 over plain HTTP (BENCHMARKS.md, 2026-12-04).
///
/// A block rather than an `async fn`: an `async fn` keeps its arguments twice in its future,
/// the request's 264 bytes included (docs/performance.md#small-request-futures).
#[allow(clippy::manual_async_fn)]
pub fn handle<'a>(
    shared: &'a ProxyShared,
    client: &'a ClientConn,
    mut request: Request<Incoming>,
) -> impl Future<Output = Response<ResponseBody>> + 'a {
    async move {
        let started = Instant::now();
        let client_version = request.version();
        // A gRPC client gets the proxy's own errors as gRPC (docs/routing.md#grpc).
        let grpc = grpc::is_grpc(request.headers());
        let snapshot = shared.snapshot.load_full();
        let proxy = &snapshot.config.proxy;
        // A phase's error leaves through the one exit.
        macro_rules! or_answer {
            ($phase:expr) => {
                match $phase {
                    Ok(value) => value,
                    Err(failure) => {
                        return answer_failure(Failure::from(failure), client_version, grpc, started)
                    }
                }
            };
        }
        or_answer!(refuse_malformed_head(&request));
        if let Some(answer) = answer_as_last_hop(&mut request) {
            return answer;
        }
        let authority = request_authority(&request);
        let route = or_answer!(find_route(&snapshot, authority.as_ref(), &request));
        let counted = !route.failures.ignores(request.uri().path());
        or_answer!(refuse_unforwardable_framing(&request));
        let version = pick_version(&route, &request);
        let upgrade = take_upgrade(&mut request);
        let informational = informational_queue(client, &request);
        let (mut parts, body) = request.into_parts();
        let facts = ClientFacts {
            peer: client.peer.ip(),
            peer_value: &client.peer_value,
            tls: client.tls,
            authority: authority.as_ref(),
            trusted_proxies: &proxy.trusted_proxies,
        };
        rewrite_head(&mut parts, &facts, &upgrade);
        let body = if upgrade.is_none() && mirror::wants_copy(&route, version, &parts, &body) {
            or_answer!(copy_to_canary(&snapshot, &route, &parts, body).await)
        } else {
            watched(body)
        };
        let upstream_request = join_upstream_request(parts, body, informational);
        let forwarded = or_answer!(upstream_call::forward(
            proxy,
            &route,
            version,
            upstream_request,
            upgrade.as_ref().map(|(offered, _)| offered),
            grpc,
        )
        .await
        .map_err(|(error, counted_for)| Failure {
            error,
            counted: counted.then(|| (route.clone(), counted_for)),
        }));
        let exchange = Exchange {
            route: &route,
            proxy,
            started,
            grpc,
            counted,
            client_version,
        };
        or_answer!(respond(forwarded, upgrade, exchange))
    }
}

/// A simple request the fast path took (docs/performance.md#the-client-side-fast-path): routed
/// and its version chosen on the flat view before a byte of it was consumed, its upstream head
/// already written (`fast/rewrite.rs`).
pub(super) struct SimpleRequest<'a> {
    pub route: Arc<Route>,
    pub version: Version,
    /// The path is not in `ignore_paths`.
    pub counted: bool,
    pub method: &'a Method,
    /// The head to send upstream.
    pub head: &'a [u8],
    pub started: Instant,
}

/// What the fast path writes to the client.
pub(super) enum SimpleAnswer {
    /// The upstream's answer: its head encoded as hyper's server would write it (or why it
    /// would not), and its body.
    Encoded(
        Result<super::fast::respond::Head, super::fast::respond::Unwritable>,
        ResponseBody,
    ),
    /// An answer the proxy made (`answer_failure`), or one whose fields came as a `HeaderMap`.
    Made(Response<ResponseBody>),
}

/// `handle`'s phases 4 to 6 for a simple request, with the same exit: the upstream call, the
/// response rewritten (`respond`, done on the engine's flat fields by `fast/answer.rs`), the
/// outcome recorded when its body ends.
pub(super) async fn forward_simple(
    proxy: &ProxyConfig,
    client: &ClientConn,
    request: SimpleRequest<'_>,
    wants_close: bool,
) -> SimpleAnswer {
    let SimpleRequest {
        route,
        version,
        counted,
        method,
        head,
        started,
    } = request;
    let client_version = http::Version::HTTP_11;
    let hook = client.informational.as_ref().map(|queue| {
        let queue = queue.clone();
        InformationalHook::new(move |status, headers| queue.forward(status, headers))
    });
    let outgoing = upstream_call::HeadOut {
        head,
        method,
        hook: hook.as_ref(),
    };
    let forwarded = upstream_call::forward(proxy, &route, version, outgoing, None, false).await;
    let failure = |error, counted_for| Failure {
        error,
        counted: counted.then(|| (route.clone(), counted_for)),
    };
    let answered = match forwarded {
        // A 101 to a request that offered no upgrade (`respond`).
        Ok((response, _, served_by)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            Err(failure(ProxyError::UnsolicitedSwitch, served_by))
        }
        Ok((mut response, conn, served_by)) => {
            let flat = match response.body_mut() {
                crate::upstream::UpstreamBody::Own(body) => body.take_flat_fields(),
                crate::upstream::UpstreamBody::Hyper(_) | crate::upstream::UpstreamBody::H2(_) => {
                    None
                }
            };
            match flat {
                Some(flat) => {
                    let asked = super::fast::answer::Asked {
                        route: &route,
                        proxy,
                        started,
                        counted,
                        method,
                        wants_close,
                    };
                    let (head, body) =
                        super::fast::answer::answer_flat(response, &flat, conn, served_by, asked);
                    return SimpleAnswer::Encoded(head, body);
                }
                None => {
                    let exchange = Exchange {
                        route: &route,
                        proxy,
                        started,
                        grpc: false,
                        counted,
                        client_version,
                    };
                    respond((response, conn, served_by), None, exchange)
                }
            }
        }
        Err((error, counted_for)) => Err(failure(error, counted_for)),
    };
    SimpleAnswer::Made(
        answered.unwrap_or_else(|failure| answer_failure(failure, client_version, false, started)),
    )
}

/// A request the proxy answers itself instead of forwarding it.
struct Failure {
    error: ProxyError,
    /// The route and version the failure counts against, once a version was chosen.
    counted: Option<(Arc<Route>, Version)>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure {
            error,
            counted: None,
        }
    }
}

/// An upgrade the client asked for: the protocol, and the client's side of the connection.
type RequestedUpgrade = Option<(HeaderValue, ClientUpgrade)>;

/// Refused before routing: nothing reaches an upstream or counts against a version.
fn refuse_malformed_head(request: &Request<Incoming>) -> Result<(), ProxyError> {
    match malformed_head(
        request.method(),
        request.version(),
        request.uri(),
        request.headers(),
    ) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

static MAX_FORWARDS: HeaderName = HeaderName::from_static("max-forwards");

/// `Max-Forwards` (RFC 9110 §7.6.2): an `OPTIONS` or `TRACE` that may be forwarded no further
/// is answered by canaryd as its final recipient; one that may is forwarded with the count one
/// lower. Every other method costs one comparison.
fn answer_as_last_hop(request: &mut Request<Incoming>) -> Option<Response<ResponseBody>> {
    if !matches!(*request.method(), Method::OPTIONS | Method::TRACE) {
        return None;
    }
    let left = request
        .headers()
        .get(&MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if left > 0 {
        request
            .headers_mut()
            .insert(MAX_FORWARDS.clone(), HeaderValue::from(left - 1));
        return None;
    }
    if request.method() == Method::OPTIONS {
        return Some(Response::new(ResponseBody::local("")));
    }
    Some(trace_echo(request))
}

/// A `TRACE` answered here (RFC 9110 §9.3.8): the request head as canaryd received it, as
/// `message/http`, without the fields that carry credentials (`Cookie`, `Authorization`,
/// `Proxy-Authorization`), which the RFC asks the final recipient to leave out.
fn trace_echo(request: &Request<Incoming>) -> Response<ResponseBody> {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    let mut echo = Vec::with_capacity(256);
    echo.extend_from_slice(request.method().as_str().as_bytes());
    echo.push(b' ');
    echo.extend_from_slice(request.uri().to_string().as_bytes());
    echo.extend_from_slice(format!(" {:?}\r\n", request.version()).as_bytes());
    for (name, value) in request.headers() {
        if name == COOKIE || name == AUTHORIZATION || name == PROXY_AUTHORIZATION {
            continue;
        }
        echo.extend_from_slice(name.as_str().as_bytes());
        echo.extend_from_slice(b": ");
        echo.extend_from_slice(value.as_bytes());
        echo.extend_from_slice(b"\r\n");
    }
    echo.extend_from_slice(b"\r\n");
    let mut response = Response::new(ResponseBody::local_bytes(Bytes::from(echo)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("message/http"));
    response
}

/// Phase 1: the route, by host and path.
fn find_route(
    snapshot: &RoutingSnapshot,
    authority: Option<&HeaderValue>,
    request: &Request<Incoming>,
) -> Result<Arc<Route>, ProxyError> {
    snapshot
        .table
        .find(
            authority.and_then(|a| a.to_str().ok()),
            request.uri().path(),
        )
        .cloned()
        .ok_or(ProxyError::NoRoute)
}

/// Framing hyper lets through that canaryd must not forward: `chunked` twice, or a transfer
/// coding it does not implement (501, RFC 9112 §6.1).
fn refuse_unforwardable_framing(request: &Request<Incoming>) -> Result<(), ProxyError> {
    // hyper frames a `Transfer-Encoding` body as one still to come, so a body already at its
    // end came without the field: only a request with a body pays the lookup.
    if request.body().is_end_stream() {
        return Ok(());
    }
    match request_codings(request.headers()) {
        RequestCodings::Chunked => Ok(()),
        RequestCodings::ChunkedTwice => Err(ProxyError::AmbiguousFraming),
        RequestCodings::Unsupported => Err(ProxyError::UnsupportedTransferCoding),
    }
}

/// The client's body on its way upstream. A body still to come is watched, so that a
/// `request_timeout` spent waiting for the client is charged to the client (408), not to the
/// version; a request without a body allocates nothing for it.
fn watched(body: Incoming) -> RequestBody {
    if body.is_end_stream() {
        RequestBody::Streamed(body)
    } else {
        RequestBody::Watched(body, BodyWatch::default())
    }
}

/// Phase 2: the version, by rules, phase, sticky key or weight.
fn pick_version(route: &Route, request: &Request<Incoming>) -> Version {
    choose_version(route, request.headers(), &mut || {
        rand::random_range(0..10_000u16)
    })
}

/// The client's side of an upgrade comes off the request before its parts are rewritten.
fn take_upgrade(request: &mut Request<Incoming>) -> RequestedUpgrade {
    upgrade::requested(request.version(), request.headers())
        .map(|protocol| (protocol, upgrade::client_side(request)))
}

/// Where the upstream's 1xx answers go: RFC 9110 §15.2 sends them to HTTP/1.1 clients, never
/// to HTTP/1.0 ones, and HTTP/2 cannot carry them (`informational.rs`).
fn informational_queue(
    client: &ClientConn,
    request: &Request<Incoming>,
) -> Option<Arc<Informational>> {
    client
        .informational
        .as_ref()
        .filter(|_| request.version() == http::Version::HTTP_11)
        .cloned()
}

/// Phase 3: the upstream's request head — hop-by-hop removal, `X-Forwarded-*`,
/// `X-Request-Id`, the upgrade kept, HTTP/2 cookie crumbs joined, origin-form URI, HTTP/1.1.
fn rewrite_head(
    parts: &mut http::request::Parts,
    facts: &ClientFacts<'_>,
    upgrade: &RequestedUpgrade,
) {
    rewrite_request(&mut parts.headers, facts);
    if parts.version == http::Version::HTTP_2 {
        join_cookie_crumbs(&mut parts.headers);
    }
    if let Some((protocol, _)) = upgrade {
        upgrade::keep_on_request(&mut parts.headers, protocol.clone());
    }
    parts.uri = origin_form(&parts.uri);
    parts.version = http::Version::HTTP_11;
}

/// Phase 3's end: head and body joined, with the hook that passes the upstream's 1xx on.
/// Boxed: it goes by value through several async functions, each of which would otherwise
/// keep a slot of its size in the request's future (docs/performance.md#small-request-futures).
fn join_upstream_request(
    mut parts: http::request::Parts,
    body: RequestBody,
    informational: Option<Arc<Informational>>,
) -> Box<Request<RequestBody>> {
    // After the mirror read: a buffered body has a known length and needs no chunked framing.
    keep_body_framing(&mut parts.headers, &body);
    let mut upstream_request = Box::new(Request::from_parts(parts, body));
    if let Some(queue) = informational {
        upstream_request
            .extensions_mut()
            .insert(InformationalHook::new(move |status, headers| {
                queue.forward(status, headers)
            }));
    }
    upstream_request
}

/// Read a mirrored request's small body once, send a copy to the canary in the background,
/// and give back the body for the request itself.
async fn copy_to_canary(
    snapshot: &RoutingSnapshot,
    route: &Arc<Route>,
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<RequestBody, ProxyError> {
    let limit = route.mirror.as_ref().map_or(0, |m| m.max_body_bytes);
    let bytes = mirror::read_small_body(body, limit)
        .await
        .map_err(|_| ProxyError::BadRequestBody)?;
    mirror::spawn_copy(route.clone(), snapshot.config.clone(), parts, bytes.clone());
    Ok(RequestBody::Buffered((!bytes.is_empty()).then_some(bytes)))
}

/// What `respond` needs to know of the request it answers.
struct Exchange<'a> {
    route: &'a Arc<Route>,
    proxy: &'a ProxyConfig,
    started: Instant,
    /// The request was a gRPC call.
    grpc: bool,
    /// The path is not in `ignore_paths`.
    counted: bool,
    client_version: http::Version,
}

/// Phase 5: the upstream's answer goes back with its headers rewritten and its body streamed;
/// phase 6 (record) runs when the body ends (`body.rs`). A 101 to an upgrade request that
/// offered its protocol joins client and upstream into a tunnel instead (`upgrade.rs`).
///
/// The upstream fails the request (502, counted as a broken exchange) with a 101 nobody asked
/// for (RFC 9110 §15.2.2; HTTP/2 has no 101, RFC 9113 §8.6), or with a transfer coding other
/// than `chunked` that the client cannot receive: HTTP/1.1 clients get it as
/// `Transfer-Encoding`, HTTP/1.0 and HTTP/2 have none (`docs/security.md#protocol-conformance`).
fn respond(
    (response, conn, served_by): Forwarded,
    upgrade: RequestedUpgrade,
    exchange: Exchange<'_>,
) -> Result<Response<ResponseBody>, Failure> {
    let Exchange {
        route,
        proxy,
        started,
        client_version,
        ..
    } = exchange;
    let upstream_failure = |error| Failure {
        error,
        counted: exchange.counted.then(|| (route.clone(), served_by)),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return match upgrade {
            Some((offered, client))
                if upgrade::switches_to_offered(&offered, response.headers()) =>
            {
                Ok(upgrade::tunnel(
                    response,
                    conn,
                    client,
                    route,
                    served_by,
                    proxy.version_header.as_ref(),
                    started,
                ))
            }
            _ => Err(upstream_failure(ProxyError::UnsolicitedSwitch)),
        };
    }
    let (mut parts, body) = response.into_parts();
    // One pass over the names (a handful) instead of two hashed lookups.
    let (mut coded, mut announced) = (false, false);
    for name in parts.headers.keys() {
        coded |= name == TRANSFER_ENCODING;
        announced |= name == TRAILER;
    }
    let mut reusable = true;
    let mut codings = None;
    if coded {
        let found = response_codings(&mut parts.headers);
        reusable = !found.length_dropped;
        codings = found.remaining;
        if codings.is_some() && client_version != http::Version::HTTP_11 {
            return Err(upstream_failure(ProxyError::UndeliverableTransferCoding));
        }
    }
    let judge = judge(&exchange, &mut parts.headers);
    let trailer = if announced {
        parts.headers.remove(TRAILER)
    } else {
        None
    };
    rewrite_response(&mut parts.headers, proxy.version_header.as_ref(), served_by);
    if let Some(codings) = codings {
        // hyper's server appends the `chunked` it frames the body with.
        parts.headers.insert(TRANSFER_ENCODING, codings);
    }
    keep_trailers(&mut parts.headers, trailer, &exchange);
    if client_version == http::Version::HTTP_10 && body.size_hint().exact().is_none() {
        // An HTTP/1.0 client has no chunked framing: the body ends when the connection does,
        // so the answer says so rather than letting hyper promise keep-alive.
        parts.version = http::Version::HTTP_10;
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let completion = Completion {
        route: route.clone(),
        version: served_by,
        status: parts.status.as_u16(),
        started,
        conn,
        judge,
        ejection: proxy.ejection,
        reusable,
    };
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, completion),
    ))
}

/// How the answer will be judged when it ends (docs/rollouts.md#what-counts-as-a-failure):
/// an ignored path never is; the upstream's own `outcome_header` (removed here, it never
/// reaches the client) overrides the rest; a gRPC call is judged by its `grpc-status`.
fn judge(exchange: &Exchange<'_>, headers: &mut http::HeaderMap) -> Judge {
    if !exchange.counted {
        return Judge::Ignored;
    }
    if let Some(name) = &exchange.route.failures.outcome_header {
        if let Some(value) = headers.remove(name) {
            let said = value.as_bytes();
            if said.eq_ignore_ascii_case(b"failure") {
                return Judge::Marked(true);
            }
            if said.eq_ignore_ascii_case(b"success") {
                return Judge::Marked(false);
            }
        }
    }
    if exchange.grpc {
        return Judge::Grpc(grpc::grpc_status(headers));
    }
    Judge::Status
}

/// Trailers reach an HTTP/1.1 client (that sent `TE: trailers`) only as the fields its
/// `Trailer` header announces, so the upstream's announcement is kept, and a gRPC answer, whose
/// HTTP/2 upstream announces nothing, announces gRPC's own.
fn keep_trailers(
    headers: &mut http::HeaderMap,
    trailer: Option<HeaderValue>,
    exchange: &Exchange<'_>,
) {
    match trailer {
        Some(announced) => {
            headers.insert(TRAILER, announced);
        }
        None if exchange.grpc && exchange.client_version == http::Version::HTTP_11 => {
            headers.insert(
                TRAILER,
                HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin"),
            );
        }
        None => {}
    }
}

/// The one exit for requests the proxy answers itself: phase 6 for a failure that counts
/// against a version, then the error's status and text. After a client's framing or body
/// error, an HTTP/1 connection's next bytes cannot be trusted to start a request, so the
/// answer closes it.
fn answer_failure(
    failure: Failure,
    client_version: http::Version,
    grpc: bool,
    started: Instant,
) -> Response<ResponseBody> {
    let Failure { error, counted } = failure;
    if let Some((route, version)) = counted {
        if let Some(outcome) = error.outcome() {
            route.metrics.record(version, outcome, started.elapsed());
            tracing::debug!(route = %route.name, error = %error, "proxy error");
        }
    }
    let answer = if grpc {
        grpc::error_response(&error)
    } else {
        error_response(&error)
    };
    if error.distrusts_connection() && client_version != http::Version::HTTP_2 {
        closing(answer)
    } else {
        answer
    }
}

/// The request's authority: the URI's (HTTP/2 `:authority`, absolute-form) or else `Host`.
fn request_authority(request: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(authority) = request.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    request.headers().get(HOST).cloned()
}

fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// Ask hyper to close the client connection after this answer: after a framing error the rest
/// of the connection's bytes cannot be trusted to start a request.
fn closing(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn error_response(error: &ProxyError) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::local(error.body()));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A request's future is copied whole as it is built and boxed, and once a copy passes
    /// 4 KiB glibc's `memcpy` switches to `rep movsb`, one counted instruction per byte. The
    /// connect future inlined into it and the request passed by value down the upstream call
    /// had made it 4,192 bytes here (unoptimised) and cost 15,000 instructions per request
    /// (docs/performance.md#small-request-futures).
    #[test]
    fn the_request_future_stays_small() {
        let size = future_size(
            |(shared, client, request): (
                &'static ProxyShared,
                &'static ClientConn,
                Request<Incoming>,
            )| handle(shared, client, request),
        );
        assert!(
            size <= 2560,
            "handle's future is {size} bytes: box what is large and rare, pass what is large \
             by reference or boxed"
        );
    }
}

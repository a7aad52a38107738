//! The life of one request, as named phases:
//!
//! 1. **route** — find the route by host and path, from the snapshot loaded once per request;
//! 2. **choose version** — match rules, phase, sticky key or weight;
//! 3. **rewrite request** — hop-by-hop removal, `X-Forwarded-*`, `X-Request-Id`, origin-form URI;
//!    and, for a route with `[route.mirror]`, a copy of the request sent to the canary;
//! 4. **forward** — pick an endpoint, take or open a connection (retrying connect failures
//!    within the version's retry budget), send, wait for the response head within
//!    `request_timeout`;
//! 5. **respond** — rewrite the response headers and stream the body back; or, when an upgrade
//!    request got a 101, join client and upstream into a tunnel (`upgrade.rs`);
//! 6. **record** — the outcome is reported once to the route's metrics, when the response body
//!    ends (`body.rs`) or at once for errors the proxy answers itself.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::HOST;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{Completion, ResponseBody};
use super::headers::{
    has_ambiguous_framing, keep_body_framing, rewrite_request, rewrite_response, ClientFacts,
};
use super::informational::Informational;
use super::validate::malformed_head;
use super::ProxyError;
use super::{mirror, upgrade};
use crate::config::{ProxyConfig, Version};
use crate::metrics::MetricsRegistry;
use crate::routing::{choose_version, EndpointPick, Route, RoutingSnapshot};
use crate::upstream::{acquire, Conn, RequestBody, SendError};

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

/// Serve one request on a client connection.
pub async fn handle(
    shared: &ProxyShared,
    client: &ClientConn,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let snapshot = shared.snapshot.load_full();
    let proxy = &snapshot.config.proxy;

    // Refused before routing: nothing reaches an upstream or counts against a version.
    if let Some(error) = malformed_head(request.version(), request.uri(), request.headers()) {
        let answer = error_response(&error);
        // After a malformed HTTP/1 head the connection's next bytes are not trusted either.
        return if request.version() == http::Version::HTTP_2 {
            answer
        } else {
            closing(answer)
        };
    }

    // Phase 1: route.
    let authority = request_authority(&request);
    let Some(route) = snapshot
        .table
        .find(
            authority.as_ref().and_then(|a| a.to_str().ok()),
            request.uri().path(),
        )
        .cloned()
    else {
        return error_response(&ProxyError::NoRoute);
    };

    if has_ambiguous_framing(request.headers()) {
        return closing(error_response(&ProxyError::AmbiguousFraming));
    }

    // Phase 2: choose version.
    let version = choose_version(&route, request.headers(), &mut || {
        rand::random_range(0..10_000u16)
    });

    // Phase 3: rewrite request.
    let mut request = request;
    // RFC 9110 §15.2: 1xx go to HTTP/1.1 clients, never to HTTP/1.0 ones.
    let informational = client
        .informational
        .as_ref()
        .filter(|_| request.version() == http::Version::HTTP_11)
        .cloned();
    let upgrade = upgrade::requested(request.version(), request.headers())
        .map(|protocol| (protocol, upgrade::client_side(&mut request)));
    let (mut parts, body) = request.into_parts();
    let facts = ClientFacts {
        peer: client.peer.ip(),
        peer_value: &client.peer_value,
        tls: client.tls,
        authority: authority.as_ref(),
        trusted_proxies: &proxy.trusted_proxies,
    };
    rewrite_request(&mut parts.headers, &facts);
    if let Some((protocol, _)) = &upgrade {
        upgrade::keep_on_request(&mut parts.headers, protocol.clone());
    }
    parts.uri = origin_form(&parts.uri);
    parts.version = http::Version::HTTP_11;
    let body = if upgrade.is_none() && mirror::wants_copy(&route, version, &parts, &body) {
        let limit = route.mirror.as_ref().map_or(0, |m| m.max_body_bytes);
        match mirror::read_small_body(body, limit).await {
            Ok(bytes) => {
                mirror::spawn_copy(
                    route.clone(),
                    snapshot.config.clone(),
                    &parts,
                    bytes.clone(),
                );
                RequestBody::Buffered((!bytes.is_empty()).then_some(bytes))
            }
            Err(_) => return closing(error_response(&ProxyError::BadRequestBody)),
        }
    } else {
        RequestBody::Streamed(body)
    };
    // After the mirror read: a buffered body has a known length and needs no chunked framing.
    keep_body_framing(&mut parts.headers, &body);
    let mut upstream_request = Request::from_parts(parts, body);
    if let Some(queue) = informational {
        hyper::ext::on_informational(&mut upstream_request, move |response| {
            queue.forward(response.status(), response.headers());
        });
    }

    // Phase 4: forward.
    match forward(proxy, &route, version, upstream_request).await {
        Ok((response, conn, served_by)) => {
            if let (StatusCode::SWITCHING_PROTOCOLS, Some((_, client))) =
                (response.status(), upgrade)
            {
                return upgrade::tunnel(
                    response,
                    conn,
                    client,
                    &route,
                    served_by,
                    proxy.version_header.as_ref(),
                    started,
                );
            }
            // Phase 5: respond; phase 6 runs when the body ends.
            let (mut parts, body) = response.into_parts();
            rewrite_response(&mut parts.headers, proxy.version_header.as_ref(), served_by);
            let completion = Completion {
                metrics: route.metrics.clone(),
                version: served_by,
                status: parts.status.as_u16(),
                started,
                conn,
            };
            Response::from_parts(parts, ResponseBody::upstream(body, completion))
        }
        Err((ProxyError::BadRequestBody, _)) => {
            closing(error_response(&ProxyError::BadRequestBody))
        }
        Err((error, counted_for)) => {
            // Phase 6 for errors the proxy answers itself.
            if let Some(outcome) = error.outcome() {
                route
                    .metrics
                    .record(counted_for, outcome, started.elapsed());
            }
            tracing::debug!(route = %route.name, error = %error, "proxy error");
            error_response(&error)
        }
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

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

type Forwarded = (Response<Incoming>, Conn, Version);

/// Connect (with retries and failover) and send. On error, also says which version the
/// failure counts against.
///
/// A retry — another endpoint of the same version after a connect failure, idempotent methods,
/// at most `retries` per request — also needs the version's retry budget
/// (`metrics::RetryBudget`): when it is spent the request goes on as if it had no retries left.
/// The failover of a canary request to the primary is not charged to any budget: it happens at
/// most once per request and moves the request to the other pool rather than adding load to the
/// failing one. The replacement of a stale pooled connection in [`send`] is not a retry either.
async fn forward(
    proxy: &ProxyConfig,
    route: &Route,
    version: Version,
    request: Request<RequestBody>,
) -> Result<Forwarded, (ProxyError, Version)> {
    let idempotent = is_idempotent(request.method());
    let mut retries_left = if idempotent { proxy.retries } else { 0 };
    let mut target = version;
    let mut pick = EndpointPick::default();
    let mut endpoint = route.backend(target).pick(&mut pick).cloned();
    let mut last_error = ProxyError::NoEndpoint;
    loop {
        let acquired = match &endpoint {
            Some(endpoint) => acquire(endpoint, proxy.connect_timeout).await.map_err(Some),
            None => Err(None),
        };
        match acquired {
            Ok(conn) => {
                let result = send(proxy, conn, request).await;
                // Passive health: 5xx answers, timeouts and broken exchanges count against the
                // endpoint; a client's broken body does not.
                if let Some(endpoint) = &endpoint {
                    match &result {
                        Ok((response, _)) => {
                            endpoint.record(!response.status().is_server_error(), &proxy.ejection)
                        }
                        Err(ProxyError::BadRequestBody) => {}
                        Err(_) => endpoint.record(false, &proxy.ejection),
                    }
                }
                return result
                    .map(|(response, conn)| (response, conn, target))
                    .map_err(|e| (e, target));
            }
            Err(error) => {
                if let Some(error) = error {
                    if let Some(endpoint) = &endpoint {
                        endpoint.record(false, &proxy.ejection);
                    }
                    tracing::debug!(route = %route.name, error = %error, "connect failed");
                    last_error = ProxyError::Connect(error);
                    if retries_left > 0 {
                        retries_left -= 1;
                        // Only a retry that has somewhere to go asks the budget.
                        let next = route.backend(target).pick(&mut pick).cloned();
                        if next.is_some() && route.metrics.try_retry(target, &proxy.retry_budget) {
                            endpoint = next;
                            continue;
                        }
                    }
                }
                let can_fail_over = target == Version::Canary
                    && route.canary.is_some()
                    && proxy.failover_to_primary;
                if !can_fail_over {
                    return Err((last_error, target));
                }
                // The canary could not take the request: it counts against the canary, and the
                // primary serves it. Nothing was sent, so this is safe for any method.
                if let Some(outcome) = last_error.outcome() {
                    route
                        .metrics
                        .record(Version::Canary, outcome, std::time::Duration::ZERO);
                }
                target = Version::Primary;
                pick = EndpointPick::default();
                endpoint = route.backend(target).pick(&mut pick).cloned();
                retries_left = if idempotent { proxy.retries } else { 0 };
            }
        }
    }
}

/// Send on a connection; a stale pooled connection that closed before the request was written
/// is replaced once by a fresh one to the same endpoint.
pub(super) async fn send(
    proxy: &ProxyConfig,
    conn: Conn,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Conn), ProxyError> {
    let exchange = async move {
        let mut conn = conn;
        let mut request = request;
        loop {
            match conn.send(request).await {
                Ok(response) => return Ok((response, conn)),
                Err(SendError::NotSent(unsent)) if conn.is_reused() => {
                    request = *unsent;
                    conn = conn
                        .reconnect(proxy.connect_timeout)
                        .await
                        .map_err(ProxyError::Connect)?;
                }
                Err(SendError::NotSent(_)) => {
                    return Err(ProxyError::Connect(crate::upstream::AcquireError::closed(
                        conn.endpoint().addr(),
                    )))
                }
                // The client's own body broke (bad chunk, early close): not the upstream's
                // fault, and not a failure of the version.
                Err(SendError::Failed(e)) if e.is_user() => return Err(ProxyError::BadRequestBody),
                Err(SendError::Failed(e)) => return Err(ProxyError::Upstream(e)),
            }
        }
    };
    match tokio::time::timeout(proxy.request_timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout),
    }
}

/// Ask hyper to close the client connection after this answer: after a framing error the rest
/// of the connection's bytes cannot be trusted to start a request.
fn closing(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn error_response(error: &ProxyError) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::local(error.body()));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

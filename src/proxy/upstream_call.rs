//! The upstream side of one request: pick an endpoint, take or open a connection, send, and
//! wait for the response head within `request_timeout` — or a gRPC call's shorter
//! `grpc-timeout` (`docs/routing.md`, phase 4).
//!
//! Both the client's request (`forward.rs`) and a mirrored copy (`mirror.rs`) go through here,
//! so neither of those two imports the other.

use http::{HeaderValue, Method, Request, Response, StatusCode};

use super::grpc::grpc_timeout;
use super::{upgrade, ProxyError};
use crate::config::{FailurePolicy, ProxyConfig, Version};
use crate::metrics::RouteMetrics;
use crate::routing::{EndpointPick, Route};
use crate::upstream::{
    acquire, Conn, HeadSendError, InformationalHook, RequestBody, SendError, UpstreamBody,
};

/// What goes upstream: the request today's path built, or the fast path's head as bytes
/// (a bodiless request, docs/performance.md#the-client-side-fast-path). A trait, not an enum:
/// each path's `forward` holds only its own send in its future (docs/performance.md#small-request-futures).
pub(super) trait Outgoing {
    fn method(&self) -> &Method;

    /// A gRPC call's own deadline (`grpc-timeout`).
    fn grpc_deadline(&self) -> Option<std::time::Duration>;

    /// [`send`] or [`send_head`].
    async fn send_on(
        self,
        proxy: &ProxyConfig,
        conn: Conn,
        timeout: std::time::Duration,
        resends: Resends<'_>,
    ) -> Result<(Response<UpstreamBody>, Conn), ProxyError>;
}

/// Where a request sent again on another connection, because the upstream had not processed
/// it, is counted (`canaryd_upstream_resends_total`): its route and version.
#[derive(Clone, Copy)]
pub(super) struct Resends<'a> {
    pub metrics: &'a RouteMetrics,
    pub version: Version,
}

impl Resends<'_> {
    fn count(self) {
        self.metrics.count_resend(self.version);
    }
}

impl Outgoing for Box<Request<RequestBody>> {
    fn method(&self) -> &Method {
        Request::method(self)
    }

    fn grpc_deadline(&self) -> Option<std::time::Duration> {
        grpc_timeout(self.headers())
    }

    async fn send_on(
        self,
        proxy: &ProxyConfig,
        conn: Conn,
        timeout: std::time::Duration,
        resends: Resends<'_>,
    ) -> Result<(Response<UpstreamBody>, Conn), ProxyError> {
        send(proxy, conn, self, timeout, resends).await
    }
}

/// The fast path's head, written from the flat view.
pub(super) struct HeadOut<'h> {
    pub head: &'h [u8],
    pub method: &'h Method,
    /// Where the upstream's 1xx heads go.
    pub hook: Option<&'h InformationalHook>,
}

impl Outgoing for HeadOut<'_> {
    fn method(&self) -> &Method {
        self.method
    }

    fn grpc_deadline(&self) -> Option<std::time::Duration> {
        None
    }

    async fn send_on(
        self,
        proxy: &ProxyConfig,
        conn: Conn,
        timeout: std::time::Duration,
        resends: Resends<'_>,
    ) -> Result<(Response<UpstreamBody>, Conn), ProxyError> {
        send_head(
            proxy,
            conn,
            (self.head, self.method, self.hook),
            timeout,
            resends,
        )
        .await
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether an answer counts for the endpoint's passive health: not in the route's failure set
/// (`[route.failures]`), and not a 101 to a request that did not offer the protocol it switches
/// to (`upgrade.rs`; the client gets 502). Only a 101 pays for the protocol check.
fn answered_well(
    response: &Response<UpstreamBody>,
    upgrade_offered: Option<&HeaderValue>,
    failures: &FailurePolicy,
) -> bool {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return upgrade_offered
            .is_some_and(|o| upgrade::switches_to_offered(o, response.headers()));
    }
    !failures.status_fails(status.as_u16())
}

/// The upstream's response head, the connection it came on, and the version that served it.
pub(super) type Forwarded = (Response<UpstreamBody>, Conn, Version);

/// Connect (with retries and failover) and send; `grpc` says the request is a gRPC call. On
/// error, also says which version the failure counts against.
///
/// A retry — another endpoint of the same version after a connect failure, idempotent methods,
/// at most `retries` per request — also needs the version's retry budget
/// (`metrics::RetryBudget`): when it is spent the request goes on as if it had no retries left.
/// The failover of a canary request to the primary is not charged to any budget: it happens at
/// most once per request and moves the request to the other pool rather than adding load to the
/// failing one. The replacement of a stale pooled connection in [`send`] is not a retry either.
/// `upgrade_offered` is the protocol an upgrade request offered, for judging a 101.
pub(super) async fn forward(
    proxy: &ProxyConfig,
    route: &Route,
    version: Version,
    request: impl Outgoing,
    upgrade_offered: Option<&HeaderValue>,
    grpc: bool,
) -> Result<Forwarded, (ProxyError, Version)> {
    let idempotent = is_idempotent(request.method());
    let deadline = if grpc { request.grpc_deadline() } else { None };
    let timeout = match deadline {
        Some(deadline) => deadline.min(proxy.request_timeout),
        None => proxy.request_timeout,
    };
    let mut retries_left = if idempotent { proxy.retries } else { 0 };
    let mut target = version;
    let mut pick = EndpointPick::default();
    let mut endpoint = route.backend(target).pick(&mut pick).cloned();
    let mut last_error = ProxyError::NoEndpoint;
    // The canary's failed connects are charged with the time they took, not zero, so a
    // failing canary does not look fast (docs/routing.md#4-forward).
    let canary_tried = tokio::time::Instant::now();
    loop {
        let acquired = match &endpoint {
            Some(endpoint) => acquire(endpoint, proxy.connect_timeout).await.map_err(Some),
            None => Err(None),
        };
        match acquired {
            Ok(conn) => {
                let resends = Resends {
                    metrics: &route.metrics,
                    version: target,
                };
                let result = request.send_on(proxy, conn, timeout, resends).await;
                // Passive health: answers in the route's failure set, a 101 nobody asked for,
                // timeouts and broken exchanges count against the endpoint; a client's broken or
                // stalled body does not; a gRPC call's answer counts when it ends (`body.rs`),
                // its status says little.
                if let Some(endpoint) = &endpoint {
                    match &result {
                        // A 101 ends no gRPC call: it is judged here, as for any request.
                        Ok((response, _))
                            if grpc && response.status() != StatusCode::SWITCHING_PROTOCOLS => {}
                        Ok((response, _)) => endpoint.record(
                            answered_well(response, upgrade_offered, &route.failures),
                            &proxy.ejection,
                        ),
                        Err(ProxyError::BadRequestBody | ProxyError::ClientBodyTimeout) => {}
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
                        endpoint.record_connect_failure(error.failure(), &proxy.ejection);
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
                        .record(Version::Canary, outcome, canary_tried.elapsed());
                }
                target = Version::Primary;
                pick = EndpointPick::default();
                endpoint = route.backend(target).pick(&mut pick).cloned();
                retries_left = if idempotent { proxy.retries } else { 0 };
            }
        }
    }
}

/// [`send`] for the fast path's head given as bytes: a head the connection did not process
/// goes once more on a new connection to the same endpoint; there is no client body to stall.
async fn send_head(
    proxy: &ProxyConfig,
    conn: Conn,
    (head, method, hook): (&[u8], &Method, Option<&InformationalHook>),
    timeout: std::time::Duration,
    resends: Resends<'_>,
) -> Result<(Response<UpstreamBody>, Conn), ProxyError> {
    let exchange = async move {
        let mut conn = conn;
        loop {
            match conn.send_head(head, method, hook).await {
                Ok(response) => return Ok((response, conn)),
                Err(HeadSendError::NotSent) if conn.is_reused() => {
                    resends.count();
                    conn = conn
                        .reconnect(proxy.connect_timeout)
                        .await
                        .map_err(ProxyError::Connect)?;
                }
                Err(HeadSendError::NotSent) => {
                    return Err(ProxyError::Connect(crate::upstream::AcquireError::closed(
                        conn.endpoint().addr(),
                    )))
                }
                Err(HeadSendError::Failed(e)) => return Err(ProxyError::Upstream(e)),
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ProxyError::Timeout))
}

/// Send on a connection, waiting for the response head at most `timeout`; a request the
/// connection did not process (a stale pooled connection that closed before it was written, a
/// stream an HTTP/2 peer refused or left out of its GOAWAY) is sent once more on another
/// connection to the same endpoint. When `timeout` runs out while the upstream waits for the
/// client's body, the stall is the client's (`ClientBodyTimeout`).
pub(super) async fn send(
    proxy: &ProxyConfig,
    conn: Conn,
    request: Box<Request<RequestBody>>,
    timeout: std::time::Duration,
    resends: Resends<'_>,
) -> Result<(Response<UpstreamBody>, Conn), ProxyError> {
    let watch = match request.body() {
        RequestBody::Watched(_, watch) => Some(watch.clone()),
        _ => None,
    };
    let exchange = async move {
        let mut conn = conn;
        let mut request = request;
        // A new connection that closes before the request is written says nothing of the
        // next one; an HTTP/2 peer that did not process a stream on a new connection (its
        // GOAWAY, RFC 9113 §8.7) is shutting that connection down, so the stream gets one
        // more try on another.
        let mut new_h2_retried = false;
        loop {
            match conn.send(request).await {
                Ok(response) => return Ok((response, conn)),
                Err(SendError::NotSent(unsent))
                    if conn.is_reused() || (conn.is_http2() && !new_h2_retried) =>
                {
                    new_h2_retried |= !conn.is_reused();
                    resends.count();
                    request = unsent;
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
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) if watch.is_some_and(|w| w.waits_for_client()) => Err(ProxyError::ClientBodyTimeout),
        Err(_) => Err(ProxyError::Timeout),
    }
}

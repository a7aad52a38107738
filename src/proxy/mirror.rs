//! Shadow traffic: copies of primary-bound requests sent to the canary, answers discarded.
//!
//! A copy is made only for the configured methods, for `percent` of requests, and only when the
//! body is empty or of a known length up to `max_body_bytes` (such a body is read once and sent
//! to both). The copy runs in its own task: the client's request never waits for it. Its outcome
//! counts in the canary's metrics, which is how a blue/green canary is judged before it serves.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::Request;
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::upstream_call::{send, Resends};
use crate::config::{Config, MirrorConfig, ProxyConfig, Version};
use crate::metrics::{Answer, Outcome, UpstreamErrorKind};
use crate::routing::{EndpointPick, Route};
use crate::upstream::{acquire, ConnectFailure, RequestBody};

/// Whether this request should be copied to the canary, judged from its head alone.
pub fn wants_copy(route: &Route, version: Version, parts: &Parts, body: &Incoming) -> bool {
    let Some(mirror) = &route.mirror else {
        return false;
    };
    // What each phase means for mirroring is decided in `routing::Phase::traffic`.
    let mirroring_phase = route.rollout.phase.traffic().mirrored;
    version == Version::Primary
        && route.canary.is_some()
        && mirroring_phase
        && mirror.methods.contains(&parts.method)
        && body_fits(mirror, body)
        && rand::random_range(0..100u8) < mirror.percent
}

fn body_fits(mirror: &MirrorConfig, body: &Incoming) -> bool {
    body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= mirror.max_body_bytes)
}

/// Read a small body of known length so it can be sent twice. An error means the client's body
/// broke off or ran past its announced length.
pub async fn read_small_body(body: Incoming, limit: u64) -> Result<Bytes, BodyReadError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|_| BodyReadError)
}

/// The client's request body could not be read in full.
#[derive(Debug, thiserror::Error)]
#[error("request body could not be read")]
pub struct BodyReadError;

/// Send a copy to the canary in the background and record its outcome for the canary.
pub fn spawn_copy(route: Arc<Route>, config: Arc<Config>, parts: &Parts, body: Bytes) {
    let mut copy = Box::new(Request::new(RequestBody::Buffered(
        (!body.is_empty()).then_some(body),
    )));
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = send_copy(&route, &config.proxy, copy).await;
        route
            .metrics
            .record(Version::Canary, outcome, started.elapsed());
    });
}

/// Connect and send like any request (`upstream_call::send`, so a stale pooled connection is replaced
/// rather than counted against the canary), then read the answer to the end and discard it,
/// all within `request_timeout`.
async fn send_copy(route: &Route, proxy: &ProxyConfig, copy: Box<Request<RequestBody>>) -> Outcome {
    let backend = route.backend(Version::Canary);
    let Some(endpoint) = backend.pick(&mut EndpointPick::default()).cloned() else {
        return Outcome::UpstreamError(UpstreamErrorKind::Connect(ConnectFailure::Dns));
    };
    let conn = match acquire(&endpoint, proxy.connect_timeout).await {
        Ok(conn) => conn,
        Err(error) => return Outcome::UpstreamError(UpstreamErrorKind::Connect(error.failure())),
    };
    let exchange = async {
        let resends = Resends {
            metrics: &route.metrics,
            version: Version::Canary,
        };
        let (response, conn) = match send(proxy, conn, copy, proxy.request_timeout, resends).await {
            Ok(answer) => answer,
            // A buffered copy has no client body to break, so every error has an outcome.
            Err(e) => {
                return e
                    .outcome()
                    .unwrap_or(Outcome::UpstreamError(UpstreamErrorKind::Reset))
            }
        };
        let status = response.status().as_u16();
        // Read the answer to the end so the connection can be reused.
        match response.into_body().collect().await {
            Ok(_) => {
                conn.release();
                Outcome::Answer(Answer {
                    status,
                    failed: route.failures.status_fails(status),
                    grpc_code: None,
                })
            }
            Err(_) => Outcome::UpstreamError(UpstreamErrorKind::Reset),
        }
    };
    tokio::time::timeout(proxy.request_timeout, exchange)
        .await
        .unwrap_or(Outcome::UpstreamError(UpstreamErrorKind::Timeout))
}

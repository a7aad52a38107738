//! `[route.failures]` through the proxy (docs/rollouts.md#what-counts-as-a-failure): a listed
//! status counts as a failure, an ignored path is never counted, and the upstream's outcome
//! header overrides the status and never reaches the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use canaryd::config::Version;
use canaryd::metrics::VersionMetrics;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use support::*;

/// Answers the status that ends the path (`/any/429`), and with `x-say: V` in the request,
/// marks its answer `x-canaryd-outcome: V`.
async fn marking_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                let status = request
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(200);
                let mut response = Response::new(Full::new(Bytes::from("answer")));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                if let Some(say) = request.headers().get("x-say") {
                    response
                        .headers_mut()
                        .insert("x-canaryd-outcome", say.clone());
                }
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn route(addr: SocketAddr, failures: &str) -> String {
    base_config("", "")
        + &format!(
            "[[route]]\nname = \"app\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{addr}\"]\n{failures}"
        )
}

async fn counted(proxy: &Canaryd, requests: u64) -> std::sync::Arc<canaryd::metrics::RouteMetrics> {
    let metrics = proxy.server().registry().route("app");
    let m = metrics.clone();
    eventually("requests recorded", Duration::from_secs(2), move || {
        let v: &VersionMetrics = m.version(Version::Primary);
        v.requests() >= requests
    })
    .await;
    metrics
}

#[tokio::test]
async fn a_listed_429_counts_as_a_failure_and_by_default_it_does_not() {
    let addr = marking_upstream().await;
    let listed = Canaryd::start(&route(
        addr,
        "[route.failures]\nhttp_statuses = [\"5xx\", \"429\"]\n",
    ));
    let (status, _, _) = get(&client(), &listed.url("/api/429"), &[]).await;
    assert_eq!(status.as_u16(), 429);
    let (status, _, _) = get(&client(), &listed.url("/api/404"), &[]).await;
    assert_eq!(status.as_u16(), 404);
    let m = counted(&listed, 2).await;
    let v = m.version(Version::Primary);
    assert_eq!(v.code_class_outcome(4, true), 1, "the 429");
    assert_eq!(v.code_class_outcome(4, false), 1, "the 404");

    let default = Canaryd::start(&route(addr, ""));
    get(&client(), &default.url("/api/429"), &[]).await;
    let m = counted(&default, 1).await;
    assert_eq!(m.version(Version::Primary).code_class_outcome(4, false), 1);
}

#[tokio::test]
async fn ignored_paths_are_served_but_never_counted() {
    let addr = marking_upstream().await;
    let proxy = Canaryd::start(&route(
        addr,
        "[route.failures]\nignore_paths = [\"/healthz\"]\n",
    ));
    for _ in 0..3 {
        let (status, _, body) = get(&client(), &proxy.url("/healthz/503"), &[]).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (503, "answer"),
            "still served"
        );
    }
    // One counted request afterwards: once it is in, the three before it would be too.
    get(&client(), &proxy.url("/api/200"), &[]).await;
    let m = counted(&proxy, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v = m.version(Version::Primary);
    assert_eq!(v.requests(), 1, "only the request outside /healthz");
    assert_eq!(v.code_class(5), 0);
}

#[tokio::test]
async fn the_outcome_header_overrides_the_status_and_never_reaches_the_client() {
    let addr = marking_upstream().await;
    let proxy = Canaryd::start(&route(
        addr,
        "[route.failures]\noutcome_header = \"x-canaryd-outcome\"\n",
    ));
    let (status, headers, _) =
        get(&client(), &proxy.url("/api/200"), &[("x-say", "failure")]).await;
    assert_eq!(status.as_u16(), 200);
    assert!(
        headers.get("x-canaryd-outcome").is_none(),
        "stripped: {headers:?}"
    );
    let (status, headers, _) =
        get(&client(), &proxy.url("/api/503"), &[("x-say", "success")]).await;
    assert_eq!(status.as_u16(), 503);
    assert!(headers.get("x-canaryd-outcome").is_none());
    let m = counted(&proxy, 2).await;
    let v = m.version(Version::Primary);
    assert_eq!(
        v.code_class_outcome(2, true),
        1,
        "a 200 the upstream marked failed"
    );
    assert_eq!(
        v.code_class_outcome(5, false),
        1,
        "a 503 the upstream marked a success"
    );
}

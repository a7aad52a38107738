//! gRPC through canaryd with a real gRPC implementation (tonic) as client and upstream
//! (docs/routing.md#grpc): every kind of call over h2c and TLS upstreams, trailer metadata, a
//! canary failing with UNAVAILABLE on HTTP 200 rolled back, a healthy one promoted, and the
//! proxy's own errors answered as gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod grpc_echo;
mod pki;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use canaryd::config::Version;
use grpc_echo::*;
use support::*;
use tonic::Code;

/// Route "orders": h2c to `primary`, with `extra` appended to the route.
fn grpc_route(primary: std::net::SocketAddr, extra: &str) -> String {
    base_config("", "")
        + &format!(
            "[[route]]\nname = \"orders\"\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{primary}\"]\nprotocol = \"http2\"\n{extra}"
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_passes_through_to_an_h2c_upstream() {
    let upstream = GrpcUpstream::start("v1").await;
    let proxy = Canaryd::start(&grpc_route(upstream.addr, ""));
    let mut client = connect(proxy.addr).await;

    let answer = unary(&mut client, "/test.Echo/Unary", "hello")
        .await
        .unwrap();
    assert_eq!(answer.into_inner().text, "v1:hello");
    assert_eq!(
        server_stream(&mut client, "n").await.unwrap(),
        ["n-0", "n-1", "n-2", "n-3", "n-4"]
    );
    assert_eq!(
        client_stream(&mut client, &["a", "b", "c"]).await.unwrap(),
        "a+b+c"
    );
    assert_eq!(
        bidi(&mut client, &["x", "y", "z"]).await.unwrap(),
        ["echo:x", "echo:y", "echo:z"]
    );

    // Every call was a success, each counted with its grpc-status.
    let metrics = proxy.server().registry().route("orders");
    let primary = metrics.version(Version::Primary);
    eventually("four calls recorded", Duration::from_secs(2), || {
        primary.grpc_code_outcome(0, false) == 4
    })
    .await;
    assert_eq!(primary.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailer_metadata_reaches_the_client_and_the_status_is_what_is_counted() {
    let upstream = GrpcUpstream::start("v1").await;
    let proxy = Canaryd::start(&grpc_route(upstream.addr, ""));
    let mut client = connect(proxy.addr).await;
    let status = unary(&mut client, "/test.Echo/Fail", "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing");
    assert_eq!(
        status.metadata().get("x-detail").unwrap(),
        "looked everywhere"
    );

    upstream
        .behaviour
        .unavailable_per_10
        .store(10, Ordering::SeqCst);
    let status = unary(&mut client, "/test.Echo/Unary", "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // NOT_FOUND is an answer (not in the default failure set); UNAVAILABLE is a failure, though
    // both came as HTTP 200.
    let metrics = proxy.server().registry().route("orders");
    let primary = metrics.version(Version::Primary);
    eventually("both calls recorded", Duration::from_secs(2), || {
        primary.requests() == 2
    })
    .await;
    assert_eq!(
        primary.grpc_code_outcome(5, false),
        1,
        "NOT_FOUND, a success"
    );
    assert_eq!(
        primary.grpc_code_outcome(14, true),
        1,
        "UNAVAILABLE, a failure"
    );
    assert_eq!(primary.code_class(2), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_gives_the_client_unavailable_never_an_http_error_page() {
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = Canaryd::start(&grpc_route(dead, ""));
    let mut client = connect(proxy.addr).await;
    let status = unary(&mut client, "/test.Echo/Unary", "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "upstream connect failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_pass_through_to_a_tls_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::TestCa::new("test ca");
    let pair = ca.server(&["orders.internal"]);
    let upstream = GrpcUpstream::start_with("tls", Some((pair.cert, pair.key))).await;
    let tls = format!(
        "[route.primary.tls]\nca = \"{}\"\nserver_name = \"orders.internal\"\n",
        ca.write(dir.path(), "ca.pem").display()
    );
    let proxy = Canaryd::start(&grpc_route(upstream.addr, &tls));
    let mut client = connect(proxy.addr).await;
    let answer = unary(&mut client, "/test.Echo/Unary", "secure")
        .await
        .unwrap();
    assert_eq!(answer.into_inner().text, "tls:secure");
    assert_eq!(
        server_stream(&mut client, "s").await.unwrap(),
        ["s-0", "s-1", "s-2", "s-3", "s-4"]
    );
    assert_eq!(
        bidi(&mut client, &["p", "q"]).await.unwrap(),
        ["echo:p", "echo:q"]
    );
}

/// Route "shop" under analysis: primary and canary over h2c, checks every 300 ms.
fn analysed(primary: &GrpcUpstream, canary: &GrpcUpstream) -> String {
    base_config("", "")
        + &format!(
            "[[route]]\nname = \"shop\"\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{}\"]\nprotocol = \"http2\"\n[route.canary]\nrevision = \"v2\"\n\
             endpoints = [\"{}\"]\nprotocol = \"http2\"\n[route.analysis]\n\
             judge = \"threshold\"\ninterval = \"300ms\"\nthreshold = 2\nstep_weights = [25, 50]\n\
             min_requests = 5\ninconclusive_limit = 20\n",
            primary.addr, canary.addr
        )
        + BUILTIN_METRICS
}

/// Unary calls at about `per_second` until the returned sender is dropped.
fn grpc_load(addr: std::net::SocketAddr, per_second: u64) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let client = connect(addr).await;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tick.tick() => {
                    let mut client = client.clone();
                    tokio::spawn(async move {
                        let _ = unary(&mut client, "/test.Echo/Unary", "load").await;
                    });
                }
            }
        }
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_unavailable_on_30_percent_of_calls_is_rolled_back() {
    let (primary, canary) = (
        GrpcUpstream::start("v1").await,
        GrpcUpstream::start("v2").await,
    );
    // All of them HTTP 200: only grpc-status tells.
    canary
        .behaviour
        .unavailable_per_10
        .store(3, Ordering::SeqCst);
    let proxy = Canaryd::start(&analysed(&primary, &canary));
    let load = grpc_load(proxy.addr, 200);
    eventually("rollback", Duration::from_secs(15), || {
        proxy.phase("shop") == "Failed"
    })
    .await;
    drop(load);
    let status = proxy.server().analysis().status("shop").unwrap();
    assert_eq!(status.weight, 0);
    let canary_metrics = proxy.server().registry().route("shop");
    assert!(
        canary_metrics
            .version(Version::Canary)
            .grpc_code_outcome(14, true)
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_grpc_canary_is_promoted() {
    let (primary, canary) = (
        GrpcUpstream::start("v1").await,
        GrpcUpstream::start("v2").await,
    );
    let proxy = Canaryd::start(&analysed(&primary, &canary));
    let load = grpc_load(proxy.addr, 200);
    eventually("promotion", Duration::from_secs(15), || {
        proxy.phase("shop") == "Succeeded"
    })
    .await;
    drop(load);
    // The status says Succeeded only once the data plane routes by it
    // (docs/operations.md#admin-api): the very next call reaches the promoted revision.
    let mut client = connect(proxy.addr).await;
    let answer = unary(&mut client, "/test.Echo/Unary", "after")
        .await
        .unwrap()
        .into_inner()
        .text;
    assert_eq!(answer, "v2:after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_sent_te_trailers_gets_the_grpc_trailers_in_the_chunked_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = GrpcUpstream::start("v1").await;
    let proxy = Canaryd::start(&grpc_route(upstream.addr, ""));
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // One gRPC frame: uncompressed, 4 bytes, Msg { text: "hi" }.
    let frame = [0u8, 0, 0, 0, 4, 0x0a, 2, b'h', b'i'];
    let head = format!(
        "POST /test.Echo/Unary HTTP/1.1\r\nHost: orders\r\ncontent-type: application/grpc\r\n\
         te: trailers\r\ncontent-length: {}\r\n\r\n",
        frame.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains("grpc-status") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the trailers arrive")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    let (_, after_body) = text.split_once("\r\n0\r\n").expect("a last chunk");
    assert!(after_body.contains("grpc-status: 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_bounds_the_wait_and_the_client_gets_deadline_exceeded() {
    use http_body_util::{BodyExt, Full};
    // An upstream that ignores the forwarded deadline: tonic's server would answer CANCELLED
    // at the same 300 ms and, on a loaded machine, sometimes first.
    let upstream = GrpcUpstream::start_ignoring_deadlines("v1").await;
    let proxy = Canaryd::start(&grpc_route(upstream.addr, ""));
    // A plain HTTP/2 client with no deadline of its own: what comes back is canaryd's doing.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let frame = bytes::Bytes::from_static(&[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i']);
    let request = http::Request::post(proxy.url("/test.Echo/Slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(Full::new(frame))
        .unwrap();
    let started = std::time::Instant::now();
    let response = client.request(request).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    assert!(
        elapsed < Duration::from_secs(2),
        "the 300 ms deadline, not the 60 s request_timeout nor the 3 s answer: {elapsed:?}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty(), "a trailers-only answer");
}

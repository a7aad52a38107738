//! TLS to the upstreams (docs/security.md#upstream-tls) against real rustls servers holding
//! certificates from a test CA: a good chain is accepted (by IP SAN or `server_name`); a wrong
//! CA, a wrong name and an expired certificate are each refused with the reason logged and
//! nothing served from them; mTLS; ALPN `auto` picks h2 or http/1.1 as the server offers, and
//! once it picked h2 a burst opens only the connections its streams need.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pki;
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use pki::{server_config, Pair, TestCa};
use support::*;

/// An HTTPS upstream: counts the requests it served and the HTTP version of each.
struct TlsUpstream {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    versions: Arc<Mutex<Vec<http::Version>>>,
}

impl TlsUpstream {
    async fn start(config: rustls::ServerConfig) -> TlsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (count, seen) = (served.clone(), versions.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, count, seen) = (acceptor.clone(), count.clone(), seen.clone());
                tokio::spawn(async move {
                    // A refused handshake ends here: nothing is served.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            count.fetch_add(1, Ordering::SeqCst);
                            seen.lock().unwrap().push(request.version());
                            async {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("tls-ok"))))
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsUpstream {
            addr,
            served,
            versions,
        }
    }

    fn versions(&self) -> Vec<http::Version> {
        self.versions.lock().unwrap().clone()
    }
}

/// canaryd's `upstream TLS handshake failed` warnings: (endpoint, reason).
fn tls_failures() -> &'static Mutex<Vec<(String, String)>> {
    static LOG: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    LOG.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        struct Capture;
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                #[derive(Default)]
                struct Fields(String, String, String);
                impl tracing::field::Visit for Fields {
                    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                        match f.name() {
                            "message" => self.0 = format!("{v:?}"),
                            "endpoint" => self.1 = format!("{v:?}"),
                            "reason" => self.2 = format!("{v:?}"),
                            _ => {}
                        }
                    }
                }
                let mut fields = Fields::default();
                event.record(&mut fields);
                if fields.0 == "upstream TLS handshake failed" {
                    if let Some(log) = LOG.get() {
                        log.lock().unwrap().push((fields.1, fields.2));
                    }
                }
            }
        }
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("only this file installs a subscriber");
        Mutex::new(Vec::new())
    })
}

fn failure_reasons(addr: SocketAddr) -> Vec<String> {
    let endpoint = addr.to_string();
    tls_failures()
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| *e == endpoint)
        .map(|(_, reason)| reason.clone())
        .collect()
}

/// One route to `addr` over TLS; `tls` is the body of `[route.primary.tls]`.
fn route(addr: SocketAddr, protocol: &str, tls: &str) -> String {
    base_config("", "")
        + &format!(
            "[[route]]\nname = \"secure\"\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{addr}\"]\nprotocol = \"{protocol}\"\n[route.primary.tls]\n{tls}\n"
        )
}

fn ca_line(dir: &Path, ca: &TestCa) -> String {
    format!("ca = \"{}\"\n", ca.write(dir, "ca.pem").display())
}

#[tokio::test]
async fn a_good_chain_is_accepted_by_ip_san_and_by_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    // An IP endpoint without server_name: the certificate's IP SAN is verified.
    let by_ip = TlsUpstream::start(server_config(
        &ca.server(&["127.0.0.1"]),
        &[b"http/1.1"],
        None,
    ))
    .await;
    let proxy = Canaryd::start(&route(by_ip.addr, "http1", &ca_line(dir.path(), &ca)));
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "tls-ok"));
    assert_eq!(by_ip.versions(), [http::Version::HTTP_11]);

    let by_name = TlsUpstream::start(server_config(
        &ca.server(&["orders.internal"]),
        &[b"http/1.1"],
        None,
    ))
    .await;
    let tls = ca_line(dir.path(), &ca) + "server_name = \"orders.internal\"\n";
    let proxy = Canaryd::start(&route(by_name.addr, "http1", &tls));
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "tls-ok"));
}

/// The upstream serves `pair`; canaryd trusts `trusted` and expects `orders.internal`.
async fn refused(pair: Pair, trusted: &TestCa, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = TlsUpstream::start(server_config(&pair, &[b"http/1.1"], None)).await;
    let tls = ca_line(dir.path(), trusted) + "server_name = \"orders.internal\"\n";
    let proxy = Canaryd::start(&route(upstream.addr, "http1", &tls));
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(
        status.as_u16(),
        502,
        "a refused certificate is a connect failure"
    );
    assert_eq!(
        upstream.served.load(Ordering::SeqCst),
        0,
        "nothing served from it"
    );
    let reasons = failure_reasons(upstream.addr);
    assert!(
        reasons.iter().any(|r| r.contains(reason)),
        "no logged reason containing {reason:?}: {reasons:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_as_unknown_issuer() {
    tls_failures();
    let (ca, other) = (TestCa::new("test ca"), TestCa::new("other ca"));
    refused(other.server(&["orders.internal"]), &ca, "UnknownIssuer").await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    tls_failures();
    let ca = TestCa::new("test ca");
    refused(ca.server(&["billing.internal"]), &ca, "not valid for name").await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    tls_failures();
    let ca = TestCa::new("test ca");
    refused(ca.expired_server(&["orders.internal"]), &ca, "expired").await;
}

#[tokio::test]
async fn mtls_presents_the_client_certificate_the_upstream_demands() {
    tls_failures();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let upstream = TlsUpstream::start(server_config(
        &ca.server(&["127.0.0.1"]),
        &[b"http/1.1"],
        Some(&ca),
    ))
    .await;
    // Without a client certificate the upstream refuses the handshake.
    let proxy = Canaryd::start(&route(upstream.addr, "http1", &ca_line(dir.path(), &ca)));
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status.as_u16(), 502);
    assert_eq!(upstream.served.load(Ordering::SeqCst), 0);
    drop(proxy);
    // With one, it serves.
    let (cert, key) = ca.client("canaryd").write(dir.path(), "client");
    let tls = ca_line(dir.path(), &ca)
        + &format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
    let proxy = Canaryd::start(&route(upstream.addr, "http1", &tls));
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "tls-ok"));
    assert_eq!(upstream.served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn alpn_auto_picks_h2_from_an_h2_server_and_http1_from_an_http1_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let pair = ca.server(&["127.0.0.1"]);
    let h2 = TlsUpstream::start(server_config(&pair, &[b"h2", b"http/1.1"], None)).await;
    let h1 = TlsUpstream::start(server_config(&pair, &[b"http/1.1"], None)).await;
    for (upstream, expected) in [(&h2, http::Version::HTTP_2), (&h1, http::Version::HTTP_11)] {
        let proxy = Canaryd::start(&route(upstream.addr, "auto", &ca_line(dir.path(), &ca)));
        for _ in 0..3 {
            let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
            assert_eq!((status.as_u16(), body.as_str()), (200, "tls-ok"));
        }
        assert_eq!(upstream.versions(), [expected; 3]);
    }
}

#[tokio::test]
async fn routes_with_other_tls_settings_never_share_a_verified_connection() {
    tls_failures();
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (TestCa::new("test ca"), TestCa::new("other ca"));
    let upstream = TlsUpstream::start(server_config(
        &ca.server(&["orders.internal"]),
        &[b"http/1.1"],
        None,
    ))
    .await;
    let trusted = ca.write(dir.path(), "ca.pem");
    let untrusted = other.write(dir.path(), "other.pem");
    // The same address twice: "good" trusts the upstream's CA, "bad" does not.
    let toml = base_config("", "")
        + &format!(
            "[[route]]\nname = \"good\"\nhosts = [\"good.test\"]\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{addr}\"]\n[route.primary.tls]\nca = \"{good}\"\nserver_name = \"orders.internal\"\n\
             [[route]]\nname = \"bad\"\nhosts = [\"bad.test\"]\n[route.primary]\nrevision = \"v1\"\n\
             endpoints = [\"{addr}\"]\n[route.primary.tls]\nca = \"{bad}\"\nserver_name = \"orders.internal\"\n",
            addr = upstream.addr,
            good = trusted.display(),
            bad = untrusted.display(),
        );
    let proxy = Canaryd::start(&toml);
    let client = client();
    for _ in 0..3 {
        let (status, _, _) = get(&client, &proxy.url("/"), &[("host", "good.test")]).await;
        assert_eq!(status.as_u16(), 200);
        // The pooled connection "good" verified must not serve "bad".
        let (status, _, _) = get(&client, &proxy.url("/"), &[("host", "bad.test")]).await;
        assert_eq!(status.as_u16(), 502);
    }
    assert_eq!(upstream.served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn verify_false_accepts_what_verification_would_refuse() {
    let other = TestCa::new("other ca");
    let upstream = TlsUpstream::start(server_config(
        &other.expired_server(&["elsewhere"]),
        &[b"http/1.1"],
        None,
    ))
    .await;
    let proxy = Canaryd::start(&route(upstream.addr, "http1", "verify = false\n"));
    let (status, _, body) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "tls-ok"));
}

/// An h2-only TLS upstream allowing `max_streams` streams per connection, each answer held
/// `delay`; counts the TLS connections it accepted.
async fn limited_h2_upstream(
    config: rustls::ServerConfig,
    max_streams: u32,
    delay: std::time::Duration,
) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let counted = connections.clone();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let service =
                    service_fn(move |_: http::Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("tls-ok"))))
                    });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.max_concurrent_streams(max_streams);
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (addr, connections)
}

/// With `protocol = "auto"`, once the endpoint has chosen h2, a burst beyond the open
/// connection's streams waits for the connections being opened instead of each request
/// opening one: 20 requests at once over 4-stream connections open 5 in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_auto_bursts_open_only_the_h2_connections_their_streams_need() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let pair = ca.server(&["127.0.0.1"]);
    let config = server_config(&pair, &[b"h2"], None);
    let (addr, connections) =
        limited_h2_upstream(config, 4, std::time::Duration::from_millis(200)).await;
    let proxy = Canaryd::start(
        &route(addr, "auto", &ca_line(dir.path(), &ca)).replace("workers = 2", "workers = 1"),
    );
    let (status, _, _) = get(&client(), &proxy.url("/"), &[]).await;
    assert_eq!(status.as_u16(), 200);
    let client = client();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), proxy.url("/"));
            tokio::spawn(async move { get(&client, &url, &[]).await.0.as_u16() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        5,
        "20 requests at once over connections of 4 streams need 5"
    );
}

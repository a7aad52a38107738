//! TLS termination over real sockets: HTTP/1.1 and HTTP/2 (ALPN) over TLS with
//! `X-Forwarded-Proto: https`, TLS 1.2/1.3 only, certificate reload (a good pair is swapped in,
//! a mismatched one is rejected and the old certificate keeps serving), and garbage on the TLS
//! port harming nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A freshly generated self-signed certificate for `localhost`: its PEMs and DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn new_cert() -> TestCert {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    TestCert {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        der: certified.cert.der().clone(),
    }
}

fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
}

fn tls_config(dir: &Path, upstream: &Upstream) -> String {
    let tls = format!(
        "[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    base_config("", &tls) + &app_route(upstream)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `trusted` only, offering `alpn` and the given TLS versions.
fn connector(
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector(trusted, alpn, rustls::ALL_VERSIONS)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The end-entity certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One HTTP/1.1 GET over `stream`; status and body.
async fn get_h1(stream: TlsStream<TcpStream>, path: &str) -> (http::StatusCode, String) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn tls_addr(proxy: &Canaryd) -> SocketAddr {
    proxy.server().tls_addrs()[0]
}

#[tokio::test]
async fn http1_over_tls_is_forwarded_with_forwarded_proto_https() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let proxy = Canaryd::start(&tls_config(certs.path(), &up));

    let stream = connect(tls_addr(&proxy), &cert.der, &[b"http/1.1"])
        .await
        .unwrap();
    let (_, conn) = stream.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(matches!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    ));
    assert_eq!(presented(&stream), cert.der);
    let (status, body) = get_h1(stream, "/hello").await;
    assert_eq!(status, 200);
    assert_eq!(body, "app");
    let seen = up.last_seen();
    assert_eq!(seen.uri, "/hello");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    // The plain listener still says http.
    let (status, _, _) = get(&client(), &proxy.url("/plain"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(up.last_seen().headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn alpn_h2_serves_http2_over_tls() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let proxy = Canaryd::start(&tls_config(certs.path(), &up));

    // Offering both, the server prefers h2.
    let stream = connect(tls_addr(&proxy), &cert.der, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("https://localhost/h2/{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"app");
        let seen = up.last_seen();
        assert_eq!(seen.uri, format!("/h2/{i}"));
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
    }
    // Close the connection before the proxy stops, or its drain waits for this idle client.
    drop(sender);
    conn.await.unwrap().unwrap();
}

#[tokio::test]
async fn only_tls_12_and_13_are_accepted() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let proxy = Canaryd::start(&tls_config(certs.path(), &up));
    let addr = tls_addr(&proxy);

    // A TLS 1.2-only client is served, over TLS 1.2.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector(&cert.der, &[b"http/1.1"], &[&rustls::version::TLS12])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert!(matches!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    ));
    assert_eq!(get_h1(stream, "/v12").await.0, 200);

    // A TLS 1.1 ClientHello (no supported_versions extension, legacy version 3.2) is refused:
    // the server answers with an alert record or closes, never with a ServerHello.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut first))
        .await
        .expect("the server answers or closes");
    match read {
        Ok(0) | Err(_) => {}
        Ok(_) => assert_eq!(first[0], 0x15, "expected an alert record, not a handshake"),
    }
    assert_eq!(
        up.hits(),
        1,
        "only the TLS 1.2 request reached the upstream"
    );
}

/// A minimal TLS 1.1 ClientHello: legacy version 3.2, two CBC suites, no extensions.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn certificate_reload_swaps_a_good_pair_and_rejects_a_mismatched_one() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let first = new_cert();
    write_pair(certs.path(), &first.cert_pem, &first.key_pem);
    let toml = tls_config(certs.path(), &up);
    let proxy = Canaryd::start(&toml);
    let addr = tls_addr(&proxy);
    let open = connect(addr, &first.der, &[b"http/1.1"]).await.unwrap();
    assert_eq!(presented(&open), first.der);

    // A new pair, then a reload: new connections get the new certificate.
    let second = new_cert();
    assert_ne!(second.der, first.der);
    write_pair(certs.path(), &second.cert_pem, &second.key_pem);
    proxy.reload_with(&toml).await.unwrap();
    let stream = connect(addr, &second.der, &[b"http/1.1"]).await.unwrap();
    assert_eq!(presented(&stream), second.der);
    assert_eq!(get_h1(stream, "/after-reload").await.0, 200);
    // A client still trusting only the old certificate is refused now.
    assert!(connect(addr, &first.der, &[b"http/1.1"]).await.is_err());
    // The connection opened before the reload keeps working.
    assert_eq!(get_h1(open, "/still-open").await.0, 200);

    // A certificate with someone else's key: the reload is rejected as a whole and the
    // second certificate keeps serving.
    let third = new_cert();
    write_pair(certs.path(), &third.cert_pem, &first.key_pem);
    let err = proxy.reload_with(&toml).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("proxy.tls") || message.contains("TLS"),
        "{message}"
    );
    assert!(message.contains("cert.pem"), "{message}");
    let stream = connect(addr, &second.der, &[b"http/1.1"]).await.unwrap();
    assert_eq!(presented(&stream), second.der);
    assert_eq!(get_h1(stream, "/after-rejected").await.0, 200);
}

#[tokio::test]
async fn start_refuses_a_mismatched_pair() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let (a, b) = (new_cert(), new_cert());
    write_pair(certs.path(), &a.cert_pem, &b.key_pem);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canaryd.toml");
    std::fs::write(&path, tls_config(certs.path(), &up)).unwrap();
    let config = canaryd::config::load_file(&path).unwrap();
    let started = std::thread::spawn(move || canaryd::server::Server::start(config).err())
        .join()
        .unwrap();
    let err = started.expect("a mismatched pair must fail the start");
    assert!(
        matches!(err, canaryd::server::StartError::Tls(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn plain_http_and_garbage_on_the_tls_port_harm_nothing() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let proxy = Canaryd::start(&tls_config(certs.path(), &up));
    let addr = tls_addr(&proxy);

    // A TLS connection open across the garbage keeps working.
    let open = connect(addr, &cert.der, &[b"http/1.1"]).await.unwrap();

    // Plain HTTP to the TLS port: closed (possibly after an alert), never forwarded.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection");
    assert!(read.is_err() || !answer.starts_with(b"HTTP/"), "{answer:?}");

    // Random bytes, and a client that connects and says nothing then leaves.
    let mut junk = TcpStream::connect(addr).await.unwrap();
    junk.write_all(&[0xde; 300]).await.unwrap();
    drop(TcpStream::connect(addr).await.unwrap());

    assert_eq!(up.hits(), 0);
    assert_eq!(get_h1(open, "/open").await.0, 200);
    let stream = connect(addr, &cert.der, &[b"http/1.1"]).await.unwrap();
    assert_eq!(get_h1(stream, "/next").await.0, 200);
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_by_the_header_read_timeout() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let toml = tls_config(certs.path(), &up).replace(
        "workers = 2\n",
        "workers = 2\nheader_read_timeout = \"300ms\"\n",
    );
    let proxy = Canaryd::start(&toml);
    let mut silent = TcpStream::connect(tls_addr(&proxy)).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the proxy hangs up on a silent TLS client");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Read from a TLS stream until the proxy closes it (`true`) or 3 s pass (`false`).
async fn read_until_closed(stream: &mut TlsStream<TcpStream>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Err(_) => return (out, false),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `bytes` split into HTTP/2 frames (type, payload); `None` unless they are whole frames.
fn h2_frames(bytes: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 9 {
            return None;
        }
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if rest.len() < 9 + len {
            return None;
        }
        frames.push((rest[3], rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    Some(frames)
}

/// After ALPN chose `h2`, the connection speaks HTTP/2 only: HTTP/1.1 bytes are an invalid
/// connection preface, a connection error. The proxy sends nothing but HTTP/2 frames (its
/// SETTINGS; h2 omits the GOAWAY, which RFC 9113 §3.4 allows after an invalid preface) and
/// closes; never an HTTP/1.1 response, and nothing reaches the upstream.
#[tokio::test]
async fn after_alpn_h2_http1_bytes_are_a_connection_error_and_reach_no_upstream() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let proxy = Canaryd::start(&tls_config(certs.path(), &up));
    let mut stream = connect(tls_addr(&proxy), &cert.der, &[b"h2"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream
        .write_all(b"GET /h1-over-h2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(closed, "connection left open: {text:?}");
    let frames = h2_frames(&answer).unwrap_or_else(|| panic!("not HTTP/2 frames: {text:?}"));
    // SETTINGS (4), and GOAWAY (7) if h2 ever sends one.
    assert!(
        !frames.is_empty() && frames.iter().all(|(kind, _)| *kind == 0x4 || *kind == 0x7),
        "{frames:?}"
    );
    if let Some((_, payload)) = frames.iter().find(|(kind, _)| *kind == 0x7) {
        assert_eq!(
            payload[4..8],
            [0, 0, 0, 1],
            "GOAWAY not PROTOCOL_ERROR: {payload:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.hits(), 0, "{:?}", up.seen.lock().unwrap());
}

/// After ALPN chose `http/1.1`, or with no ALPN at all, the connection speaks HTTP/1.1 only: an
/// HTTP/2 preface and request are read as a (malformed) HTTP/1.1 request, never served as
/// HTTP/2, and nothing reaches the upstream.
#[tokio::test]
async fn after_alpn_http1_or_none_an_h2_preface_is_not_served_http2() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let proxy = Canaryd::start(&tls_config(certs.path(), &up));
    for alpn in [&[&b"http/1.1"[..]][..], &[][..]] {
        let mut stream = connect(tls_addr(&proxy), &cert.der, alpn).await.unwrap();
        let expected = alpn.first().copied();
        assert_eq!(stream.get_ref().1.alpn_protocol(), expected);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // An empty SETTINGS frame, then HEADERS for GET /h2-over-h1 (HPACK literals).
        bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        let mut block = vec![0x82, 0x87, 0x04, 11];
        block.extend_from_slice(b"/h2-over-h1");
        block.extend_from_slice(&[0x01, 9]);
        block.extend_from_slice(b"localhost");
        bytes.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
        bytes.extend_from_slice(&block);
        let _ = stream.write_all(&bytes).await;
        let (answer, _) = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&answer);
        // hyper's HTTP/1 parser recognises the preface and closes without an answer
        // (docs/tls.md); never an HTTP/2 answer.
        assert!(answer.is_empty(), "ALPN {alpn:?}: {text:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.hits(), 0, "{:?}", up.seen.lock().unwrap());
    let stream = connect(tls_addr(&proxy), &cert.der, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(get_h1(stream, "/after").await.0, 200);
}

/// Upgrades still tunnel on a TLS connection served HTTP/1.1 only (ALPN `http/1.1`): the
/// upstream's 101 reaches the client and bytes go both ways.
#[tokio::test]
async fn websocket_upgrade_tunnels_over_tls_after_alpn_http1() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await;
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let certs = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
    let tls = format!(
        "[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    );
    let toml = base_config("", &tls)
        + &format!("[[route]]\nname = \"ws\"\n[route.primary]\nrevision = \"v1\"\nendpoints = [\"{addr}\"]\n");
    let proxy = Canaryd::start(&toml);
    let mut stream = connect(tls_addr(&proxy), &cert.der, &[b"http/1.1"])
        .await
        .unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream.write_all(b"ping over the tunnel").await.unwrap();
    let mut echo = vec![0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping over the tunnel");
}

/// Accept balancing (`docs/performance.md#accept-balancing`) moves a TLS connection to the
/// least loaded worker before its handshake. Each worker has its own upstream pool, so two
/// requests sent one after the other on two held-open connections need two upstream
/// connections when two workers serve them, and one when a single worker does (which the
/// kernel's `SO_REUSEPORT` hash alone chooses half the time: eight tries).
#[tokio::test]
async fn tls_connections_are_spread_over_the_workers_before_the_handshake() {
    for attempt in 0..8 {
        let up = Upstream::start("app").await;
        let certs = tempfile::tempdir().unwrap();
        let cert = new_cert();
        write_pair(certs.path(), &cert.cert_pem, &cert.key_pem);
        let proxy = Canaryd::start(&tls_config(certs.path(), &up));
        let first = connect(tls_addr(&proxy), &cert.der, &[b"http/1.1"])
            .await
            .unwrap();
        let second = connect(tls_addr(&proxy), &cert.der, &[b"http/1.1"])
            .await
            .unwrap();
        assert_eq!(get_h1(first, "/").await.0, 200);
        // Let the first answer's upstream connection go back to its worker's pool.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(get_h1(second, "/").await.0, 200);
        assert_eq!(
            up.connections(),
            2,
            "attempt {attempt}: both TLS connections were served by one worker"
        );
    }
}

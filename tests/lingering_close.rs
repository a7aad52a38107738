//! Lingering close (docs/security.md#lingering-close): an answer that closes an HTTP/1
//! connection while the client is still sending reaches the client whole, followed by a clean
//! FIN — never a TCP reset that could destroy it. Raw sockets, plain and over TLS, 50 times in
//! a row each, because a reset loses the race only some of the time on a slower path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const ROUNDS: usize = 50;

/// A request head of about 40 KB: well over the test's `max_header_bytes` of 16 KiB.
fn oversized_head() -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..40 {
        head.extend_from_slice(format!("x-filler-{i:02}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A head with two disagreeing `Content-Length`s, then 40 KB the proxy never reads as a body.
fn framing_error_with_bytes_behind() -> Vec<u8> {
    let mut request =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'z', 40_000));
    request
}

fn proxy_config(up: &Upstream, extra_proxy: &str) -> String {
    base_config("", &format!("max_header_bytes = 16384\n{extra_proxy}")) + &app_route(up)
}

/// Send `request` on `stream`, and 8 KB more a moment later, as a client still uploading
/// does; then read to the end: the whole answer must arrive and the stream end cleanly (a
/// reset is an error here). Bytes that reach a socket closed without lingering make its kernel
/// answer with a reset, and a reset that arrives before the client reads makes the kernel
/// report it instead of the answer.
async fn answer_and_clean_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<String, std::io::Error> {
    stream.write_all(request).await?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    // A proxy that lingers reads these; one that closed answers them with a reset.
    stream.write_all(&[b'z'; 8192]).await?;
    stream.flush().await?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn assert_complete(answer: &str, status: &str, round: usize) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "round {round}: {answer:?}"
    );
    assert!(answer.contains("\r\n\r\n"), "round {round}: {answer:?}");
}

#[tokio::test]
async fn an_oversized_head_gets_its_whole_431_and_a_fin_every_time() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&proxy_config(&up, ""));
    let head = oversized_head();
    for round in 0..ROUNDS {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let answer = answer_and_clean_close(stream, &head)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the 431 was cut by {e}"));
        assert_complete(&answer, "431", round);
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn a_framing_error_with_bytes_behind_it_gets_its_whole_400_and_a_fin_every_time() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&proxy_config(&up, ""));
    let request = framing_error_with_bytes_behind();
    for round in 0..ROUNDS {
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let answer = answer_and_clean_close(stream, &request)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the 400 was cut by {e}"));
        assert_complete(&answer, "400", round);
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn over_tls_an_oversized_head_gets_its_whole_431_and_a_close_notify_every_time() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let up = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let tls = format!(
        "[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let proxy = Canaryd::start(&proxy_config(&up, &tls));
    let tls_addr = proxy.server().tls_addrs()[0];

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(client));

    let head = oversized_head();
    for round in 0..ROUNDS {
        let tcp = TcpStream::connect(tls_addr).await.unwrap();
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        // A reset, or a FIN without close_notify, is an error for a rustls client.
        let answer = answer_and_clean_close(stream, &head)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the 431 was cut by {e}"));
        assert_complete(&answer, "431", round);
    }
    assert_eq!(up.hits(), 0);
}

//! A real outside client: curl over HTTP/1.1, h2c (prior knowledge), and HTTP/2 over TLS (ALPN)
//! through canaryd.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::*;

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_http1_and_h2c_prior_knowledge_through_the_proxy() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let toml = base_config("", "version_header = \"x-canaryd-version\"")
        + &split_route("shop", &primary, &canary, 0)
        + "[[route.match]]\nheaders = { \"x-canary\" = \"always\" }\n";
    let proxy = Canaryd::start(&toml);
    let url = proxy.url("/hello");
    let (body, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || curl(&[&url])
    })
    .await
    .unwrap();
    assert_eq!(body, "primary");
    let (out, _) = tokio::task::spawn_blocking(move || {
        curl(&[
            "--http2-prior-knowledge",
            "-i",
            "-H",
            "x-canary: always",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("x-canaryd-version: canary"), "{out}");
    assert!(out.ends_with("canary"), "{out}");
    let seen = canary.last_seen();
    assert_eq!(seen.uri, "/hello");
    assert!(seen.headers.contains_key("host"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_http2_over_tls_through_the_proxy() {
    let up = Upstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let toml = base_config("", &tls) + &app_route(&up);
    let proxy = Canaryd::start(&toml);
    let port = proxy.server().tls_addrs()[0].port();
    let (out, _) = tokio::task::spawn_blocking(move || {
        curl(&[
            "--http2",
            "--cacert",
            cert.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-i",
            // Allowed in HTTP/2, but hop-by-hop: it must not reach the upstream.
            "-H",
            "te: trailers",
            &format!("https://localhost:{port}/secure?q=1"),
        ])
    })
    .await
    .unwrap();
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.ends_with("app"), "{out}");
    assert_eq!(up.hits(), 1);
    let seen = up.last_seen();
    assert_eq!(seen.uri, "/secure?q=1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https", "{seen:?}");
    let hosts: Vec<_> = seen.headers.get_all("host").iter().collect();
    assert_eq!(hosts, [format!("localhost:{port}").as_str()], "{seen:?}");
    // curl's `te: trailers` goes on as the proxy's own, since the proxy relays trailers
    // (docs/routing.md#grpc); no other hop-by-hop field does.
    if let Some(te) = seen.headers.get("te") {
        assert_eq!(te, "trailers", "{seen:?}");
    }
    for hop in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(
            !seen.headers.contains_key(hop),
            "{hop} reached the upstream: {seen:?}"
        );
    }
}

/// `curl --http2` on a plain `http://` URL asks for the h2c upgrade; canaryd never forwards it
/// (`docs/security.md#protocol-conformance`), so curl gets its answer over HTTP/1.1 and the
/// upstream sees a plain request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_http2_upgrade_on_plain_http_is_answered_over_http1() {
    let up = Upstream::start("app").await;
    let proxy = Canaryd::start(&(base_config("", "") + &app_route(&up)));
    let url = proxy.url("/upgrade-me");
    let (out, _) = tokio::task::spawn_blocking(move || curl(&["--http2", "-i", &url]))
        .await
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("app"), "{out}");
    let seen = up.last_seen();
    assert_eq!(seen.uri, "/upgrade-me");
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} forwarded: {seen:?}"
        );
    }
}

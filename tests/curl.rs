//! A real outside client: curl over HTTP/1.1 and h2c (prior knowledge) through canaryd.

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

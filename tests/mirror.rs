//! `[route.mirror]`: copies of primary-bound requests reach the canary, count in its metrics, and
//! never hold up the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use canaryd::config::Version;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

fn mirrored(primary: &Upstream, canary: &Upstream, percent: u8) -> String {
    base_config("", "")
        + &split_route("shop", primary, canary, 0)
        + &format!(
            "[route.mirror]\npercent = {percent}\nmethods = [\"GET\", \"POST\"]\nmax_body_bytes = 1024\n"
        )
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_primary_request_is_copied_to_the_canary_and_counted_for_it() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let proxy = Canaryd::start(&mirrored(&primary, &canary, 100));
    let client = client();
    let counts = tally(&client, &proxy.url("/item?id=7"), 20, &[]).await;
    // Clients only ever see the primary's answers.
    assert_eq!(counts.get("primary"), Some(&20), "{counts:?}");
    wait_for("20 mirrored copies", || canary.hits() == 20).await;
    let copy = canary.last_seen();
    assert_eq!(copy.uri, "/item?id=7");
    assert_eq!(copy.method, http::Method::GET);
    let metrics = proxy.server().registry().route("shop");
    wait_for("canary metrics", || {
        metrics.version(Version::Canary).requests() == 20
    })
    .await;
    assert_eq!(metrics.version(Version::Primary).requests(), 20);
}

#[tokio::test]
async fn small_bodies_are_mirrored_large_ones_and_other_methods_are_not() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let proxy = Canaryd::start(&mirrored(&primary, &canary, 100));
    let client = client();
    let post = |body: &'static [u8]| {
        Request::post(proxy.url("/upload"))
            .body(Full::new(Bytes::from_static(body)).boxed())
            .unwrap()
    };
    let resp = client.request(post(b"hello mirror")).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "12");
    wait_for("the small POST copy", || canary.hits() == 1).await;
    assert_eq!(canary.last_seen().body_len, 12);

    // Over max_body_bytes: the primary gets it, the canary does not.
    let big: &'static [u8] = Box::leak(vec![7u8; 4096].into_boxed_slice());
    let resp = client.request(post(big)).await.unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "4096");
    // PUT is not in `methods`.
    let put = Request::put(proxy.url("/x"))
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    client.request(put).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(canary.hits(), 1);
    assert_eq!(primary.hits(), 3);
}

#[tokio::test]
async fn a_slow_canary_never_delays_the_client() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    canary.delay_ms.store(1500, Ordering::SeqCst);
    let proxy = Canaryd::start(&mirrored(&primary, &canary, 100));
    let client = client();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(&client, &proxy.url("/"), &[]).await.2, "primary");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    wait_for("the slow copies to finish", || {
        canary.seen.lock().unwrap().len() == 5
    })
    .await;
}

#[tokio::test]
async fn percent_limits_the_share_of_copies() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let proxy = Canaryd::start(&mirrored(&primary, &canary, 25));
    let client = client();
    tally(&client, &proxy.url("/"), 400, &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copies = canary.hits();
    // 25% of 400 = 100, give or take 40.
    assert!((60..=140).contains(&copies), "{copies} copies of 400");
}

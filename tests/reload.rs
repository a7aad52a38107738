//! Hot reload: zero failed requests while reloading under load; an invalid file is kept out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canaryd::config::Version;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_concurrent_load_fail_no_request() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let config_at = |w: u8| base_config("", "") + &split_route("shop", &primary, &canary, w);
    let proxy = Canaryd::start(&config_at(10));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), proxy.url("/"));
        load.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(&url).body(Default::default()).unwrap();
                match client.request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        use http_body_util::BodyExt;
                        match resp.into_body().collect().await {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                eprintln!("body error: {e:?}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    other => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("failed: {:?}", other.map(|r| r.status()));
                        }
                    }
                }
            }
        }));
    }
    for i in 0..50u8 {
        proxy
            .reload_with(&config_at(i % 2 * 40 + 10))
            .await
            .expect("valid reload");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "{failed} requests failed during reloads ({ok} ok)"
    );
    assert!(ok > 200, "too little load to mean anything: {ok}");
    let stats = &proxy.server().registry().process;
    // The file watcher may add reloads of its own for the same writes.
    assert!(stats.reloads_success.load(Ordering::Relaxed) >= 50);
}

#[tokio::test]
async fn invalid_reload_keeps_the_old_config_serving() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let good = base_config("", "") + &split_route("shop", &primary, &canary, 0);
    let proxy = Canaryd::start(&good);
    let client = client();
    assert_eq!(get(&client, &proxy.url("/"), &[]).await.2, "primary");

    let bad = good.replace("weight = 0", "weight = 101");
    let error = proxy
        .reload_with(&bad)
        .await
        .expect_err("weight 101 must be rejected");
    let message = error.to_string();
    assert!(message.contains("canaryd.toml:"), "{message}");
    assert!(message.contains("weight"), "{message}");

    // A file caught between truncate and write is not a config to swap in.
    let error = proxy
        .reload_with("")
        .await
        .expect_err("an empty file must be rejected");
    assert!(error.to_string().contains("empty"), "{error}");

    // Still the old config: all primary, and the failure is visible.
    let counts = tally(&client, &proxy.url("/"), 50, &[]).await;
    assert_eq!(counts.get("primary"), Some(&50));
    let stats = &proxy.server().registry().process;
    assert!(!stats.last_reload_successful.load(Ordering::Relaxed));
    assert_eq!(stats.reloads_failure.load(Ordering::Relaxed), 2);

    // A valid reload afterwards applies.
    proxy
        .reload_with(&good.replace("weight = 0", "weight = 100"))
        .await
        .unwrap();
    let counts = tally(&client, &proxy.url("/"), 20, &[]).await;
    assert_eq!(counts.get("canary"), Some(&20));
    assert!(stats.last_reload_successful.load(Ordering::Relaxed));
    let m = proxy.server().registry().route("shop");
    assert_eq!(
        m.version(Version::Canary).requests(),
        20,
        "counters survive reloads"
    );
}

#[tokio::test]
async fn file_change_on_disk_reloads_without_a_signal() {
    let primary = Upstream::start("primary").await;
    let canary = Upstream::start("canary").await;
    let good = base_config("", "") + &split_route("shop", &primary, &canary, 0);
    let proxy = Canaryd::start(&good);
    let client = client();
    // Replace the file the way editors and ConfigMaps do: write aside, rename over.
    let aside = proxy.dir.path().join("canaryd.toml.new");
    std::fs::write(&aside, good.replace("weight = 0", "weight = 100")).unwrap();
    std::fs::rename(&aside, &proxy.config_path).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if get(&client, &proxy.url("/"), &[]).await.2 == "canary" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

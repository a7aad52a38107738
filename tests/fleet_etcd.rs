//! Fleet mode when etcd itself fails (docs/fleet.md#failures): quorum lost and restored, a
//! replica cut off with a failing canary, and a follower whose watch is compacted away.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fleet_support::*;

const STEPS: &str = "10, 20, 30, 40, 50, 60, 70, 80, 90";

async fn weights(replicas: &[Replica]) -> Vec<Option<u64>> {
    let client = admin_client();
    let mut out = Vec::new();
    for r in replicas {
        out.push(shop(&client, r).await.map(|(_, w)| w));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn losing_etcd_quorum_keeps_the_last_weights_and_the_rollout_resumes_after() {
    let mut f = fleet(STEPS).await;
    let history = History::record(&f.etcd).await;
    let loads = load_through(&f.replicas);
    let client = admin_client();
    leader_at_weight(&client, &f.replicas, 20).await;

    f.etcd.kill(1);
    f.etcd.kill(2);
    let cut = Instant::now();
    // A write in flight may still land; after a second nothing can.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen = weights(&f.replicas).await;
    let reference = frozen[0].unwrap();
    assert!(frozen.iter().all(|w| *w == Some(reference)), "{frozen:?}");
    let mut ages = Vec::new();
    while cut.elapsed() < Duration::from_secs(7) {
        assert_eq!(
            weights(&f.replicas).await,
            frozen,
            "weights moved without etcd"
        );
        for replica in &f.replicas {
            let (status, _) = admin_text(&client, replica.admin, "/readyz").await.unwrap();
            assert_eq!(status, 200, "/readyz of {} without etcd", replica.name);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for replica in &f.replicas {
        let (_, metrics) = admin_text(&client, replica.admin, "/metrics")
            .await
            .unwrap();
        assert_eq!(
            gauge(&metrics, "canaryd_fleet_etcd_up"),
            Some(0.0),
            "{metrics}"
        );
        let age = gauge(&metrics, "canaryd_fleet_state_age_seconds").unwrap();
        assert!(age > 3.0, "state age {age}");
        ages.push(age);
    }
    let during = history.writes.lock().unwrap().len();

    f.etcd.restart(1);
    f.etcd.restart(2);
    let restored = Instant::now();
    f.etcd.wait_healthy(Duration::from_secs(20)).await;
    wait_for(
        "the next step after etcd is back",
        Duration::from_secs(15),
        || async {
            let now = weights(&f.replicas).await;
            now.iter()
                .all(|w| w.is_some_and(|w| w > reference))
                .then_some(())
        },
    )
    .await;
    let resumed_after = restored.elapsed();
    wait_for("promotion", Duration::from_secs(60), || async {
        phase_everywhere(&f.replicas, "Succeeded")
            .await
            .then_some(())
    })
    .await;
    for load in loads {
        load.stop().await;
    }
    let writes = history.check();
    let mut steps: Vec<u64> = writes
        .iter()
        .filter(|w| w.phase == "Progressing")
        .map(|w| w.weight)
        .collect();
    steps.dedup();
    assert_eq!(steps, [10, 20, 30, 40, 50, 60, 70, 80, 90], "{writes:#?}");
    assert!(during <= writes.len());
    eprintln!(
        "quorum lost 7 s: weights held at {reference}, state ages {ages:?}; next step {resumed_after:?} after restore"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_replica_cut_off_from_etcd_drops_a_failing_canary_and_the_fleet_follows() {
    let mut f = fleet(STEPS).await;
    let loads = load_through(&f.replicas);
    let client = admin_client();
    leader_at_weight(&client, &f.replicas, 20).await;
    f.etcd.kill(1);
    f.etcd.kill(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The canary now fails every request: each replica, alone, rolls it back.
    f.canary.fail_every.store(1, Ordering::SeqCst);
    wait_for(
        "local rollback everywhere",
        Duration::from_secs(10),
        || async {
            weights(&f.replicas)
                .await
                .iter()
                .all(|w| *w == Some(0))
                .then_some(())
        },
    )
    .await;
    f.etcd.restart(1);
    f.etcd.restart(2);
    f.etcd.wait_healthy(Duration::from_secs(20)).await;
    // Back in touch, the replicas ask the fleet to abort: the fleet state says Failed.
    wait_for("Failed fleet-wide", Duration::from_secs(15), || async {
        let mut etcd = f.etcd.client().await;
        let state = etcd
            .get("/canaryd/test-fleet/state/shop", None)
            .await
            .ok()?;
        let state: serde_json::Value = serde_json::from_slice(state.kvs().first()?.value()).ok()?;
        (state["phase"] == "Failed").then_some(())
    })
    .await;
    assert!(phase_everywhere(&f.replicas, "Failed").await);
    for load in loads {
        load.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_follower_whose_watch_is_compacted_away_recovers_the_current_state() {
    let f = fleet(STEPS).await;
    let loads = load_through(&f.replicas);
    let client = admin_client();
    let leader = leader_at_weight(&client, &f.replicas, 20).await;
    let follower = (leader + 1) % 3;
    f.replicas[follower].pause();
    // Flood the fleet's prefix so the paused follower's watch falls behind (etcd moves it off
    // the synced set), then compact everything it has not read and remove the flood.
    // 15 MB of writes through a 3-member cluster on a loaded 2-core machine: one 100 kB put
    // can take longer than the 2 s the tests' own short-lived calls allow.
    let mut etcd = etcd_client::Client::connect(
        f.etcd.endpoints(),
        Some(
            f.etcd
                .connect_options()
                .with_timeout(Duration::from_secs(30)),
        ),
    )
    .await
    .unwrap();
    let blob = vec![b'x'; 100_000];
    for i in 0..150 {
        etcd.put(format!("/canaryd/test-fleet/noise/{i}"), blob.clone(), None)
            .await
            .unwrap();
    }
    etcd.delete(
        "/canaryd/test-fleet/noise/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let revision = etcd
        .get("/x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    etcd.compact(revision, None).await.unwrap();
    f.replicas[follower].resume();
    let resumed = Instant::now();
    wait_for(
        "the follower to serve the fleet's weight",
        Duration::from_secs(3),
        || async {
            let now = weights(&f.replicas).await;
            let leader_weight = now[leader]?;
            (now[follower] == Some(leader_weight) && leader_weight > 20).then_some(())
        },
    )
    .await;
    let recovered = resumed.elapsed();
    // It did not just read on: its watch was cancelled as compacted and it re-read.
    wait_for(
        "the compaction to be noticed",
        Duration::from_secs(3),
        || async {
            f.replicas[follower]
                .log_contains("fleet watch cancelled or compacted")
                .then_some(())
        },
    )
    .await;
    for load in loads {
        load.stop().await;
    }
    eprintln!("follower recovered {recovered:?} after resuming");
}

//! Fleet mode end to end (docs/fleet.md): a real 3-member etcd cluster, three `canaryd run`
//! replicas, real backends and load through every replica. Needs `etcd` (Debian's etcd-server)
//! and the binary built with `--features fleet`.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fleet_support::*;
use support::Load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_healthy_canary_is_promoted_by_the_fleet_on_the_fleets_totals() {
    let f = fleet("10, 20, 30, 40, 50").await;
    let history = History::record(&f.etcd).await;
    let loads: Vec<Load> = f
        .replicas
        .iter()
        .map(|r| Load::start(r.url("/"), 60))
        .collect();
    let agreement = Agreement::start(f.replicas.iter().map(|r| r.admin).collect());
    let started = Instant::now();
    let canary_hits_before = f.canary.hits();

    let deadline = Duration::from_secs(40);
    wait_for("promotion on every replica", deadline, || async {
        phase_everywhere(&f.replicas, "Succeeded")
            .await
            .then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let canary_hits = f.canary.hits() - canary_hits_before;
    let (longest, samples) = agreement.stop().await;
    for load in loads {
        load.stop().await;
    }

    // Every replica serves the promoted canary.
    let client = admin_client();
    for replica in &f.replicas {
        assert_eq!(
            shop(&client, replica).await,
            Some(("Succeeded".into(), 100))
        );
    }
    assert!(
        longest <= Duration::from_secs(1),
        "replicas disagreed for {longest:?}: {samples:?}"
    );

    let writes = history.check();
    // Each step once, in order, then the promotion.
    let mut steps: Vec<u64> = writes
        .iter()
        .filter(|w| w.phase == "Progressing")
        .map(|w| w.weight)
        .collect();
    steps.dedup();
    assert_eq!(steps, [10, 20, 30, 40, 50], "{writes:#?}");
    assert_eq!(writes.last().unwrap().phase, "Succeeded");

    // The checks judged the fleet's traffic: the canary requests of all checks add up to what
    // the canary backend served during the rollout (one replica alone would see a third).
    let mut checks: Vec<(String, u64)> = writes.iter().filter_map(|w| w.check.clone()).collect();
    checks.dedup();
    let judged: u64 = checks.iter().map(|(_, n)| n).sum();
    assert!(
        judged as f64 >= canary_hits as f64 * 0.7 && judged <= canary_hits + 5,
        "checks judged {judged} canary requests, the canary served {canary_hits}: {checks:?}"
    );

    // etcd writes per replica per second (evidence, member key, state when leading).
    let puts = history.puts.lock().unwrap().clone();
    for replica in &f.replicas {
        // Its evidence and member keys end with its name; its state writes carry it as writer.
        let own_keys = puts
            .iter()
            .filter(|(key, _, _)| key.ends_with(&format!("/{}", replica.name)))
            .count();
        let own_states = writes.iter().filter(|w| w.writer == replica.name).count();
        let rate = (own_keys + own_states) as f64 / elapsed.as_secs_f64();
        eprintln!(
            "replica {}: {rate:.2} etcd writes/s ({own_keys} evidence/member, {own_states} state)",
            replica.name
        );
        assert!(rate < 4.0, "{} writes {rate:.2}/s", replica.name);
    }
    eprintln!(
        "promoted in {elapsed:?}; longest disagreement {longest:?}; judged {judged} of {canary_hits} canary requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_bad_canary_is_rolled_back_everywhere_and_stays_failed_after_restarting_all() {
    let mut f = fleet("10, 20, 30, 40, 50").await;
    f.canary.fail_every.store(2, Ordering::SeqCst); // 50% errors
    let history = History::record(&f.etcd).await;
    let loads: Vec<Load> = f
        .replicas
        .iter()
        .map(|r| Load::start(r.url("/"), 60))
        .collect();
    wait_for(
        "rollback on every replica",
        Duration::from_secs(20),
        || async { phase_everywhere(&f.replicas, "Failed").await.then_some(()) },
    )
    .await;
    for load in loads {
        load.stop().await;
    }
    let client = admin_client();
    for replica in &f.replicas {
        assert_eq!(shop(&client, replica).await, Some(("Failed".into(), 0)));
    }
    let writes = history.check();
    assert_eq!(writes.last().unwrap().phase, "Failed", "{writes:#?}");

    // Restart all three without their state files: the fleet state alone keeps it Failed.
    for replica in &mut f.replicas {
        replica.kill();
    }
    for name in ["a", "b", "c"] {
        let _ = std::fs::remove_file(f.dir.path().join(format!("{name}-state.json")));
    }
    f.replicas = ["a", "b", "c"]
        .iter()
        .zip(&f.configs)
        .map(|(name, config)| Replica::start(name, config))
        .collect();
    wait_for(
        "Failed after the restart",
        Duration::from_secs(5),
        || async { phase_everywhere(&f.replicas, "Failed").await.then_some(()) },
    )
    .await;
    let hits = f.canary.hits();
    let loads: Vec<Load> = f
        .replicas
        .iter()
        .map(|r| Load::start(r.url("/"), 60))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for load in loads {
        load.stop().await;
    }
    for replica in &f.replicas {
        assert_eq!(shop(&client, replica).await, Some(("Failed".into(), 0)));
    }
    // A fresh replica may serve its first-step weight until the fleet state arrives (well under
    // a second); after that the canary gets nothing.
    assert!(
        f.canary.hits() - hits < 20,
        "the failed canary got {} requests after the restart",
        f.canary.hits() - hits
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn abort_on_a_follower_sets_weight_zero_everywhere_within_two_seconds() {
    let f = fleet("10, 20, 30, 40, 50, 60, 70, 80, 90").await;
    let history = History::record(&f.etcd).await;
    let loads: Vec<Load> = f
        .replicas
        .iter()
        .map(|r| Load::start(r.url("/"), 60))
        .collect();
    let client = admin_client();
    let leader = wait_for("a leader", Duration::from_secs(10), || {
        leader_of(&f.replicas)
    })
    .await;
    wait_for("weight 20", Duration::from_secs(20), || async {
        let (_, weight) = shop(&client, &f.replicas[leader]).await?;
        (weight >= 20).then_some(())
    })
    .await;
    let follower = (leader + 1) % 3;
    let asked = Instant::now();
    let (status, body) = admin_post(
        &client,
        f.replicas[follower].admin,
        "/api/v1/routes/shop/abort",
    )
    .await;
    let answered = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["phase"], "Failed");
    assert_eq!(answer["weight"], 0);
    wait_for("weight 0 everywhere", Duration::from_secs(2), || async {
        for replica in &f.replicas {
            if shop(&client, replica).await != Some(("Failed".into(), 0)) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let everywhere = asked.elapsed();
    assert!(everywhere <= Duration::from_secs(2), "{everywhere:?}");
    // A command the phase does not allow is refused by the leader, through etcd: 409.
    let (status, body) = admin_post(
        &client,
        f.replicas[follower].admin,
        "/api/v1/routes/shop/promote",
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cannot promote: route is Failed"), "{body}");
    for load in loads {
        load.stop().await;
    }
    history.check();
    eprintln!(
        "abort via follower answered in {answered:?}, weight 0 everywhere after {everywhere:?}"
    );
}

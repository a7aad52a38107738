//! Fleet leadership under failure (docs/fleet.md#failures): the leader killed with SIGKILL (also
//! during a bake, which the next leader carries on), and the leader paused past its lease. Real
//! etcd cluster, three `canaryd run` replicas, load through every replica.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod support;

use std::time::{Duration, Instant};

use fleet_support::*;
use support::Load;

const STEPS: &str = "10, 20, 30, 40, 50, 60, 70, 80, 90";
const ALL_STEPS: [u64; 9] = [10, 20, 30, 40, 50, 60, 70, 80, 90];

fn progressing_steps(writes: &[Write]) -> Vec<u64> {
    let mut steps: Vec<u64> = writes
        .iter()
        .filter(|w| w.phase == "Progressing")
        .map(|w| w.weight)
        .collect();
    steps.dedup();
    steps
}

/// Who the survivors say leads, once it is not `old`.
async fn new_leader(replicas: &[Replica], old: usize) -> Option<usize> {
    let client = admin_client();
    for (i, replica) in replicas.iter().enumerate() {
        if i == old {
            continue;
        }
        let fleet = admin_get(&client, replica.admin, "/api/v1/fleet").await?;
        let leader = fleet["leader"].as_str()?;
        let index = replicas.iter().position(|r| r.name == leader)?;
        if index != old {
            return Some(index);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn killing_the_leader_mid_rollout_moves_leadership_and_the_rollout_goes_on() {
    let mut f = fleet(STEPS).await;
    let history = History::record(&f.etcd).await;
    let mut loads: Vec<Option<Load>> = f
        .replicas
        .iter()
        .map(|r| Some(Load::start(r.url("/"), 60)))
        .collect();
    let client = admin_client();
    let leader = leader_at_weight(&client, &f.replicas, 30).await;

    f.replicas[leader].kill();
    let killed = Instant::now();
    if let Some(load) = loads[leader].take() {
        load.stop().await;
    }
    let successor = wait_for("a new leader", Duration::from_secs(6), || {
        new_leader(&f.replicas, leader)
    })
    .await;
    let failover = killed.elapsed();
    // lease_ttl (2 s) + 2 s.
    assert!(
        failover <= Duration::from_secs(4),
        "new leader after {failover:?}"
    );

    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let agreement = Agreement::start(survivors.iter().map(|i| f.replicas[*i].admin).collect());
    wait_for(
        "promotion on the survivors",
        Duration::from_secs(60),
        || async {
            for i in &survivors {
                if shop(&client, &f.replicas[*i]).await?.0 != "Succeeded" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let (longest, samples) = agreement.stop().await;
    for load in loads.into_iter().flatten() {
        load.stop().await;
    }
    let writes = history.check();
    // No step repeated or skipped, the weight never back at the first step, and the new
    // leader's writes carry its own, later term.
    assert_eq!(progressing_steps(&writes), ALL_STEPS, "{writes:#?}");
    let successor_name = &f.replicas[successor].name;
    let first_new = writes
        .iter()
        .position(|w| &w.writer == successor_name)
        .unwrap();
    assert!(writes[first_new..]
        .iter()
        .all(|w| &w.writer == successor_name));
    assert!(writes[first_new].weight > 10, "{writes:#?}");
    assert!(
        longest <= Duration::from_secs(1),
        "survivors disagreed {longest:?}: {samples:?}"
    );
    eprintln!("new leader {successor_name} {failover:?} after kill -9; survivors' longest disagreement {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_leader_paused_past_its_lease_cannot_write_and_comes_back_as_a_follower() {
    let f = fleet(STEPS).await;
    let history = History::record(&f.etcd).await;
    let loads = load_through(&f.replicas);
    let client = admin_client();
    let old = leader_at_weight(&client, &f.replicas, 20).await;

    f.replicas[old].pause();
    let paused = Instant::now();
    let successor = wait_for("a new leader", Duration::from_secs(6), || {
        new_leader(&f.replicas, old)
    })
    .await;
    let failover = paused.elapsed();
    // Let the new leader advance at least one step while the old one sleeps.
    let successor_name = f.replicas[successor].name.clone();
    wait_for(
        "a write by the new leader",
        Duration::from_secs(10),
        || async {
            let writes = history.writes.lock().unwrap().clone();
            writes
                .iter()
                .any(|w| w.writer == successor_name && w.phase == "Progressing")
                .then_some(())
        },
    )
    .await;
    f.replicas[old].resume();
    let resumed = history.writes.lock().unwrap().len();

    // The old leader follows: it sees the new leader and serves the fleet's weight.
    wait_for(
        "the old leader to follow",
        Duration::from_secs(5),
        || async {
            let fleet = admin_get(&client, f.replicas[old].admin, "/api/v1/fleet").await?;
            (fleet["leader"] == successor_name.as_str() && fleet["is_leader"] == false)
                .then_some(())
        },
    )
    .await;
    wait_for("promotion everywhere", Duration::from_secs(60), || async {
        phase_everywhere(&f.replicas, "Succeeded")
            .await
            .then_some(())
    })
    .await;
    for load in loads {
        load.stop().await;
    }
    let writes = history.check();
    let old_name = &f.replicas[old].name;
    assert!(
        writes[resumed..].iter().all(|w| &w.writer != old_name),
        "the paused leader wrote after it resumed: {writes:#?}"
    );
    assert_eq!(progressing_steps(&writes), ALL_STEPS, "{writes:#?}");
    let metrics = {
        let req = http::Request::get(format!("http://{}/metrics", f.replicas[old].admin))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    assert!(metrics.contains("canaryd_fleet_leader 0"), "{metrics}");
    assert!(metrics.contains("canaryd_fleet_members 3"), "{metrics}");
    eprintln!("paused leader replaced after {failover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_leader_stopped_with_sigterm_hands_leadership_over_at_once() {
    let f = fleet(STEPS).await;
    let loads = load_through(&f.replicas);
    let client = admin_client();
    let leader = leader_at_weight(&client, &f.replicas, 20).await;
    f.replicas[leader].terminate();
    let stopped = Instant::now();
    wait_for("a new leader", Duration::from_secs(6), || {
        new_leader(&f.replicas, leader)
    })
    .await;
    let handover = stopped.elapsed();
    // Well under lease_ttl (2 s): the leaving leader revoked its lease.
    assert!(
        handover < Duration::from_millis(1500),
        "new leader after {handover:?}"
    );
    for load in loads {
        load.stop().await;
    }
    eprintln!("leader stopped with SIGTERM: new leader after {handover:?}");
}

/// The bake checks left in the writes of `phase` Baking, in order.
fn bake_lefts(writes: &[Write]) -> Vec<u64> {
    writes
        .iter()
        .filter(|w| w.phase == "Baking")
        .filter_map(|w| w.bake_left)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_leader_killed_during_the_bake_hands_the_bake_over_and_a_restarted_replica_resumes_it() {
    // One step of 50%, then a bake of 12 one-second checks (docs/rollouts.md#bake).
    let mut f = fleet_with("50", "bake = \"12s\"\n").await;
    let history = History::record(&f.etcd).await;
    let mut loads: Vec<Option<Load>> = f
        .replicas
        .iter()
        .map(|r| Some(Load::start(r.url("/"), 60)))
        .collect();
    let client = admin_client();
    let leader = wait_for("a leader", Duration::from_secs(10), || {
        leader_of(&f.replicas)
    })
    .await;
    wait_for(
        "Baking on every replica",
        Duration::from_secs(60),
        || async { phase_everywhere(&f.replicas, "Baking").await.then_some(()) },
    )
    .await;
    // A few bake checks pass under the first leader.
    wait_for("a few bake checks", Duration::from_secs(20), || async {
        let lefts = bake_lefts(&history.writes.lock().unwrap().clone());
        (lefts.len() >= 3).then_some(())
    })
    .await;

    f.replicas[leader].kill();
    let killed_at = bake_lefts(&history.writes.lock().unwrap().clone());
    if let Some(load) = loads[leader].take() {
        load.stop().await;
    }
    let successor = wait_for("a new leader", Duration::from_secs(6), || {
        new_leader(&f.replicas, leader)
    })
    .await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in &survivors {
        let (phase, weight) = shop(&client, &f.replicas[*i]).await.unwrap();
        assert!(
            (phase == "Baking" || phase == "Succeeded") && weight == 100,
            "replica {} after the failover: {phase} {weight}",
            f.replicas[*i].name
        );
    }

    // The killed replica comes back with its state file (Baking, more bake left than the
    // fleet has now): it follows the fleet, it starts no bake or rollout of its own.
    f.replicas[leader] = Replica::start(&f.replicas[leader].name.clone(), &f.configs[leader]);
    loads[leader] = Some(Load::start(f.replicas[leader].url("/"), 60));
    wait_for("Succeeded everywhere", Duration::from_secs(60), || async {
        phase_everywhere(&f.replicas, "Succeeded")
            .await
            .then_some(())
    })
    .await;
    for load in loads.into_iter().flatten() {
        load.stop().await;
    }
    for replica in &f.replicas {
        assert_eq!(
            shop(&client, replica).await,
            Some(("Succeeded".into(), 100))
        );
    }

    let writes = history.check();
    let first_bake = writes.iter().position(|w| w.phase == "Baking").unwrap();
    assert!(
        writes[first_bake..]
            .iter()
            .all(|w| w.phase == "Baking" || w.phase == "Succeeded"),
        "the bake went back to a rollout: {writes:#?}"
    );
    // The bake counts down across the failover and never starts over (a check that did not
    // count writes the same number again), whoever the leader.
    let lefts = bake_lefts(&writes);
    assert!(
        lefts.windows(2).all(|w| w[1] <= w[0]),
        "bake left went back up: {lefts:?}"
    );
    assert_eq!(lefts.first(), Some(&12), "{writes:#?}");
    let successor_name = &f.replicas[successor].name;
    let handed_over = writes
        .iter()
        .filter(|w| w.phase == "Baking" && &w.writer == successor_name)
        .filter_map(|w| w.bake_left)
        .next();
    assert!(
        matches!((handed_over, killed_at.last()), (Some(next), Some(last)) if next <= *last),
        "the successor's first bake write {handed_over:?} after {killed_at:?}: {writes:#?}"
    );
    assert_eq!(writes.last().unwrap().phase, "Succeeded");
    eprintln!(
        "bake handed from {} to {successor_name} at {:?} checks left",
        f.replicas[leader].name,
        killed_at.last()
    );
}

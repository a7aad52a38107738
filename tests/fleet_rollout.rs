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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn a_healthy_canary_is_promoted_by_the_fleet_on_the_fleets_totals() {
    let f = fleet("10, 20, 30, 40, 50").await;
    let history = History::record(&f.etcd).await;
    let loads = load_through(&f.replicas);
    let agreement = Agreement::start(f.replicas.iter().map(|r| r.admin).collect());
    let started = Instant::now();
    let canary_hits_before = f.canary.hits();

    let deadline = Duration::from_secs(60);
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
    // Every replica knows the fleet: one leader, three members, etcd up.
    let views: Vec<serde_json::Value> = {
        let mut v = Vec::new();
        for replica in &f.replicas {
            v.push(
                admin_get(&client, replica.admin, "/api/v1/fleet")
                    .await
                    .unwrap(),
            );
        }
        v
    };
    let leader = views[0]["leader"].as_str().unwrap().to_owned();
    for view in &views {
        assert_eq!(view["name"], "test-fleet");
        assert_eq!(view["leader"], leader.as_str(), "{view}");
        assert_eq!(view["etcd"], "up");
        assert_eq!(view["members"].as_array().unwrap().len(), 3, "{view}");
        assert_eq!(view["is_leader"], view["replica"] == leader.as_str());
        let member = &view["members"][0];
        assert!(member["applied"]["shop"].is_u64(), "{member}");
        assert!(member["config_hash"]["shop"].is_string(), "{member}");
    }
    let route = admin_get(&client, f.replicas[1].admin, "/api/v1/routes/shop")
        .await
        .unwrap();
    assert_eq!(route["fleet"]["leader"], leader.as_str());
    assert_eq!(
        route["fleet"]["members"],
        serde_json::json!(["a", "b", "c"])
    );
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args([
            "status",
            "--admin",
            &format!("http://{}", f.replicas[2].admin),
        ])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("fleet: leader {leader}; members a, b, c")),
        "{status}"
    );
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

    // The sequential judge decided on the fleet's evidence too: it counts (since its evidence
    // began) at least the fleet window's canary requests, not one replica's third of them.
    let sequential: Vec<(u64, u64)> = writes
        .iter()
        .filter_map(|w| Some((w.evidence_requests?, w.check.as_ref()?.1)))
        .collect();
    assert!(
        !sequential.is_empty(),
        "no sequential evidence in {writes:#?}"
    );
    for (evidence, window) in &sequential {
        assert!(
            *evidence as f64 >= *window as f64 * 0.9,
            "judge evidence {evidence} < fleet window {window}: {sequential:?}"
        );
    }

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
    let loads = load_through(&f.replicas);
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
    let loads = load_through(&f.replicas);
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
    let loads = load_through(&f.replicas);
    let client = admin_client();
    let leader = leader_at_weight(&client, &f.replicas, 20).await;
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
    // The leader's events are in every member's event log, followers included.
    for replica in &f.replicas {
        let (status, events) = admin_text(&client, replica.admin, "/api/v1/events?route=shop")
            .await
            .unwrap_or_default();
        assert_eq!(status, 200);
        assert!(
            events.contains("Rolling back shop"),
            "{}: {events}",
            replica.admin
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn members_that_disagree_about_a_routes_settings_hold_it_until_they_agree() {
    let etcd = Etcd::start().await;
    let (primary, canary) = (
        support::Upstream::start("primary").await,
        support::Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let route = analysed_shop(primary.addr, canary.addr, "10, 20, 30");
    let drifted = route.replace("threshold = 2", "threshold = 3");
    let configs = [
        replica_config(dir.path(), "a", &etcd.endpoints(), "2s", &route),
        replica_config(dir.path(), "b", &etcd.endpoints(), "2s", &route),
        replica_config(dir.path(), "c", &etcd.endpoints(), "2s", &drifted),
    ];
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .zip(&configs)
        .map(|(name, config)| Replica::start(name, config))
        .collect();
    let loads = load_through(&replicas);
    let client = admin_client();
    wait_for("drift to be seen", Duration::from_secs(10), || async {
        let fleet = admin_get(&client, replicas[0].admin, "/api/v1/fleet").await?;
        (fleet["drift"] == serde_json::json!(["shop"])).then_some(())
    })
    .await;
    // Five intervals: nothing advances past the first step.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for replica in &replicas {
        let (phase, weight) = shop(&client, replica).await.unwrap();
        assert!(
            weight <= 10,
            "{} advanced to {weight} ({phase}) under drift",
            replica.name
        );
    }
    let leader = leader_of(&replicas).await.unwrap();
    let events = admin_get(&client, replicas[leader].admin, "/api/v1/events?route=shop")
        .await
        .unwrap();
    assert!(
        events.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("Fleet config drift on shop")),
        "{events}"
    );
    let (_, metrics) = admin_text(&client, replicas[leader].admin, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("canaryd_fleet_config_drift{route=\"shop\"} 1"),
        "{metrics}"
    );
    let route_json = admin_get(&client, replicas[leader].admin, "/api/v1/routes/shop")
        .await
        .unwrap();
    assert_eq!(route_json["fleet"]["drift"], true);

    // c gets the same settings (its file is rewritten and reloaded): the rollout goes on.
    let aside = configs[2].with_extension("next");
    std::fs::write(
        &aside,
        std::fs::read_to_string(&configs[0])
            .unwrap()
            .replace("replica = \"a\"", "replica = \"c\"")
            .replace("a-state.json", "c-state.json"),
    )
    .unwrap();
    std::fs::rename(&aside, &configs[2]).unwrap();
    wait_for(
        "promotion once the members agree",
        Duration::from_secs(30),
        || async { phase_everywhere(&replicas, "Succeeded").await.then_some(()) },
    )
    .await;
    for load in loads {
        load.stop().await;
    }
}

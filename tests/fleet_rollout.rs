//! Fleet mode end to end (docs/fleet.md): a real 3-member etcd cluster, three `canaryd run`
//! replicas, real backends and load through every replica. Needs `etcd` (Debian's etcd-server)
//! and the binary built with `--features fleet`.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_support::*;
use support::{Load, Upstream};

struct Fleet {
    etcd: Etcd,
    replicas: Vec<Replica>,
    configs: Vec<std::path::PathBuf>,
    primary: Upstream,
    canary: Upstream,
    _dir: tempfile::TempDir,
}

async fn fleet(steps: &str) -> Fleet {
    let etcd = Etcd::start().await;
    let (primary, canary) = (
        Upstream::start("primary").await,
        Upstream::start("canary").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let route = analysed_shop(primary.addr, canary.addr, steps);
    let configs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|r| replica_config(dir.path(), r, &etcd.endpoints(), "2s", &route))
        .collect();
    let replicas = ["a", "b", "c"]
        .iter()
        .zip(&configs)
        .map(|(name, config)| Replica::start(name, config))
        .collect();
    Fleet {
        etcd,
        replicas,
        configs,
        primary,
        canary,
        _dir: dir,
    }
}

/// Samples every replica's weight every 200 ms; the longest time they disagreed.
struct Agreement {
    longest: Arc<Mutex<Duration>>,
    samples: Arc<Mutex<Vec<Vec<Option<u64>>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Agreement {
    fn start(admins: Vec<std::net::SocketAddr>) -> Agreement {
        let longest = Arc::new(Mutex::new(Duration::ZERO));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let (longest, samples, stop) = (longest.clone(), samples.clone(), stop.clone());
            async move {
                let client = admin_client();
                let mut since: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    let mut weights = Vec::new();
                    for admin in &admins {
                        let route = admin_get(&client, *admin, "/api/v1/routes/shop").await;
                        weights.push(route.and_then(|r| r["weight"].as_u64()));
                    }
                    let seen: Vec<u64> = weights.iter().flatten().copied().collect();
                    let disagree = seen.windows(2).any(|w| w[0] != w[1]);
                    match (disagree, since) {
                        (true, None) => since = Some(Instant::now()),
                        (true, Some(start)) => {
                            let mut l = longest.lock().unwrap();
                            *l = (*l).max(start.elapsed());
                        }
                        (false, _) => since = None,
                    }
                    samples.lock().unwrap().push(weights);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Agreement {
            longest,
            samples,
            stop,
            task,
        }
    }

    async fn stop(self) -> (Duration, Vec<Vec<Option<u64>>>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let longest = *self.longest.lock().unwrap();
        let samples = self.samples.lock().unwrap().clone();
        (longest, samples)
    }
}

async fn phase_everywhere(replicas: &[Replica], phase: &str) -> bool {
    let client = admin_client();
    for replica in replicas {
        match shop(&client, replica).await {
            Some((p, _)) if p == phase => {}
            _ => return false,
        }
    }
    true
}

async fn leader_of(replicas: &[Replica]) -> Option<usize> {
    let client = admin_client();
    for replica in replicas {
        if let Some(fleet) = admin_get(&client, replica.admin, "/api/v1/fleet").await {
            if let Some(leader) = fleet["leader"].as_str() {
                return replicas.iter().position(|r| r.name == leader);
            }
        }
    }
    None
}

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

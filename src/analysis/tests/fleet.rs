//! Fleet mode on tokio's paused clock, without etcd: two whole replicas (engine, fleet route
//! task, control task) share one in-memory store behind the fleet's store seam
//! (docs/architecture.md#fleet-store), which refuses a stale write as etcd's transaction does.
//! The test plays etcd and the session: it elects the leader, cuts a replica off, lets its
//! lease lapse and reconnects it. A bake whose leader is cut off goes on under the next one
//! from the check it had reached.

use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

use super::runner::{config_judged_by, scenario, start_prepared, Running, SUCCESS_RATE};
use crate::analysis::{self, Command};
use crate::config::{Config, FleetConfig, Version};
use crate::fleet::{FleetBoard, MemoryStore};
use crate::metrics::{Outcome, UpstreamErrorKind};
use crate::routing::Phase;
use crate::upstream::ConnectFailure;

const INTERVAL: Duration = Duration::from_secs(60);
const ROUTE: &str = "shop";

/// One replica: the engine test's [`Running`] (registry, control task, analysis), joined to
/// the fleet's store, with its own state file.
struct Replica {
    run: Running,
    _dir: TempDir,
}

impl std::ops::Deref for Replica {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.run
    }
}

fn fleet_config(replica: &str) -> FleetConfig {
    FleetConfig {
        name: "shop-edge".to_owned(),
        etcd: Vec::new(),
        replica: replica.to_owned(),
        lease_ttl: Duration::from_secs(10),
        prefix: "/canaryd".to_owned(),
        tls: None,
        auth: None,
    }
}

fn store() -> MemoryStore {
    MemoryStore::new("/canaryd", "shop-edge")
}

/// A replica of its own (state file, registry, control task, analysis) joined to `store`.
async fn join(store: &MemoryStore, replica: &str) -> Replica {
    join_with(store, replica, |dir| config_judged_by(dir, "threshold")).await
}

/// [`join`] with the config `config` makes for a state file in its directory.
async fn join_with(
    store: &MemoryStore,
    replica: &str,
    config: impl FnOnce(&Path) -> Config,
) -> Replica {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = config(dir.path());
    let fleet = store.join(&fleet_config(replica), FleetBoard::default());
    let prepared = analysis::Prepared::load(&config).with_fleet(fleet);
    Replica {
        run: start_prepared(config, prepared).await,
        _dir: dir,
    }
}

/// The stored state's phase, weight and writer.
fn stored(store: &MemoryStore) -> (String, u8, String) {
    match store.state(ROUTE) {
        Some(state) => (state.phase, state.weight, state.writer),
        None => panic!("no fleet state for {ROUTE}"),
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A leader `a` and a follower `b`, the fleet's first state written by `a`.
async fn fleet_of_two(store: &MemoryStore) -> (Replica, Replica) {
    let a = join(store, "a").await;
    let b = join(store, "b").await;
    assert!(store.elect("a").is_some(), "a takes the free leader key");
    settle().await;
    assert_eq!(
        stored(store),
        ("Progressing".to_owned(), 10, "a".to_owned())
    );
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn the_leader_judges_the_fleets_traffic_and_the_follower_adopts_without_writing() {
    let store = store();
    let (a, b) = fleet_of_two(&store).await;
    // Each replica alone is above min_requests (20); the leader judges both.
    a.traffic(0);
    b.traffic(0);
    tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    assert_eq!(
        stored(&store),
        ("Progressing".to_owned(), 20, "a".to_owned())
    );
    let canary_requests = store
        .state(ROUTE)
        .and_then(|s| s.rollout.pointer("/last_check/canary/requests").cloned());
    assert_eq!(
        canary_requests,
        Some(serde_json::json!(200)),
        "the check counted both replicas' canary requests"
    );
    assert_eq!(a.status(), ("Progressing", 20));
    assert_eq!(b.status(), ("Progressing", 20), "the follower adopted it");
    assert_eq!(b.routed(), (Phase::Progressing, 20));
    let writes = store.writes();
    assert_eq!(writes.len(), 2, "the first state and one step: {writes:?}");
    assert!(writes.iter().all(|w| w.replica == "a"), "{writes:?}");
}

/// The leader's rollback names why the canary's connects failed, although only the follower
/// saw them: the kinds travel with each replica's evidence (docs/fleet.md#evidence).
#[tokio::test(start_paused = true)]
async fn a_fleet_rollback_names_the_connect_failures_a_follower_saw() {
    let store = store();
    let (a, b) = fleet_of_two(&store).await;
    let refused = Outcome::UpstreamError(UpstreamErrorKind::Connect(ConnectFailure::Refused));
    for _ in 0..2 {
        a.traffic(0);
        let metrics = b.registry.route(ROUTE);
        for _ in 0..100 {
            metrics.record(
                Version::Primary,
                Outcome::Status(200),
                Duration::from_millis(5),
            );
            metrics.record(Version::Canary, refused, Duration::from_millis(1));
        }
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    }
    let cause = "100 of 200 canary requests failed to connect: connection refused";
    for replica in [&a, &b] {
        let reason = replica
            .analysis
            .status(ROUTE)
            .and_then(|s| s.reason)
            .unwrap_or_default();
        assert!(
            reason.starts_with("failed checks threshold reached 2: ") && reason.ends_with(cause),
            "{reason:?}"
        );
    }
    assert_eq!(stored(&store).0, "Failed");
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_store_stops_advancing_and_a_new_leader_goes_on() {
    let store = store();
    let (a, b) = fleet_of_two(&store).await;
    store.cut_off("a");
    a.traffic(0);
    b.traffic(0);
    tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    // Cut off, the leader judges only to roll back: healthy traffic does not advance it.
    assert_eq!(a.status(), ("Progressing", 10));
    assert_eq!(
        stored(&store),
        ("Progressing".to_owned(), 10, "a".to_owned())
    );
    // Its lease lapses; b leads and goes on from the same step.
    store.expire("a");
    assert!(store.elect("b").is_some(), "b takes the lapsed leader key");
    settle().await;
    b.traffic(0);
    tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    assert_eq!(
        stored(&store),
        ("Progressing".to_owned(), 20, "b".to_owned())
    );
    assert_eq!(a.status(), ("Progressing", 10), "fail static while cut off");
    // Back in touch, a follows the new leader and never writes with its old term.
    store.reconnect("a");
    settle().await;
    assert_eq!(a.status(), ("Progressing", 20));
    assert_eq!(a.routed(), (Phase::Progressing, 20));
    let writes = store.writes();
    assert!(
        writes.iter().skip(1).all(|w| w.replica == "b"),
        "only the new leader wrote after the cut: {writes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_cut_off_with_a_failing_canary_rolls_back_alone_then_the_fleet_aborts() {
    let store = store();
    let (a, b) = fleet_of_two(&store).await;
    store.cut_off("b");
    // threshold = 2: two failing checks of b's own traffic roll it back, locally.
    for _ in 0..2 {
        a.traffic(0);
        b.traffic(50);
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    }
    assert_eq!(b.routed().1, 0, "b took its canary out alone");
    assert_ne!(
        stored(&store).0,
        "Failed",
        "the fleet did not roll back yet"
    );
    assert_eq!(store.commands_waiting(ROUTE), 0);
    // Back in touch: b keeps its canary out, asks the fleet to abort, the leader applies it.
    store.reconnect("b");
    settle().await;
    assert_eq!(
        b.routed().1,
        0,
        "b keeps the canary out until the fleet rolled back"
    );
    tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    let (phase, weight, writer) = stored(&store);
    assert_eq!(
        (phase.as_str(), weight, writer.as_str()),
        ("Failed", 0, "a")
    );
    assert_eq!(store.commands_waiting(ROUTE), 0, "the abort was consumed");
    assert_eq!(a.routed(), (Phase::Failed, 0));
    assert_eq!(b.routed(), (Phase::Failed, 0));
    assert!(store.writes().iter().all(|w| w.replica == "a"));
}

#[tokio::test(start_paused = true)]
async fn a_command_asked_of_a_follower_is_applied_once_by_the_leader_and_answered() {
    let store = store();
    let (a, b) = fleet_of_two(&store).await;
    // Refused: the asker gets the leader's reason.
    let refused = b.analysis.command(ROUTE, Command::Resume).await;
    match refused {
        Err(e) => assert_eq!(e.to_string(), "cannot resume: route is Progressing"),
        Ok(status) => panic!("resume applied in Progressing: {status:?}"),
    }
    // Applied: the asker answers with the new status once its data plane routes by it.
    let paused = b.analysis.command(ROUTE, Command::Pause).await;
    match paused {
        Ok(status) => assert_eq!((status.phase, status.weight), ("Paused", 10)),
        Err(e) => panic!("pause refused: {e}"),
    }
    assert_eq!(b.routed(), (Phase::Paused, 10));
    settle().await;
    assert_eq!(a.status(), ("Paused", 10));
    assert_eq!(store.commands_waiting(ROUTE), 0);
    let consumed: Vec<String> = store
        .writes()
        .into_iter()
        .flat_map(|w| {
            assert_eq!(w.replica, "a");
            w.consumed
        })
        .collect();
    assert_eq!(
        consumed.len(),
        2,
        "each command consumed once: {consumed:?}"
    );
    assert_ne!(consumed[0], consumed[1]);
    let results = store.state(ROUTE).map(|s| s.commands).unwrap_or_default();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].refused_in.as_deref(), Some("Progressing"));
    assert_eq!(results[1].refused, None);
}

#[tokio::test(start_paused = true)]
async fn a_replica_without_a_state_file_serves_the_primary_only_until_lease_ttl_without_a_fleet_state(
) {
    let store = store();
    // Alone and with no leader: no fleet state comes.
    let c = join(&store, "c").await;
    assert_eq!(
        c.routed(),
        (Phase::Progressing, 0),
        "primary only from the start"
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        c.routed(),
        (Phase::Progressing, 0),
        "still waiting within lease_ttl"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c.routed(),
        (Phase::Progressing, 10),
        "its own first step once lease_ttl (10 s) passed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_without_a_state_file_serves_the_fleets_step_as_soon_as_it_reads_it() {
    let store = store();
    let (a, b) = fleet_of_two(&store).await;
    // The fleet's state is the step this replica would start at: it still ends the wait.
    let c = join(&store, "c").await;
    assert_eq!(
        c.routed(),
        (Phase::Progressing, 0),
        "primary only from the start"
    );
    settle().await;
    assert_eq!(c.routed(), (Phase::Progressing, 10));
    a.traffic(0);
    b.traffic(0);
    tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    assert_eq!(c.routed(), (Phase::Progressing, 20));
    // A replica that joins now starts at the fleet's step, never at its own first one.
    let d = join(&store, "d").await;
    assert_eq!(
        d.routed(),
        (Phase::Progressing, 0),
        "primary only from the start"
    );
    settle().await;
    assert_eq!(d.routed(), (Phase::Progressing, 20));
}

/// The stored state's phase and bake checks left.
fn stored_bake(store: &MemoryStore) -> (String, Option<u64>) {
    match store.state(ROUTE) {
        Some(state) => (
            state.phase,
            state
                .rollout
                .pointer("/bake_left")
                .and_then(serde_json::Value::as_u64),
        ),
        None => panic!("no fleet state for {ROUTE}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_bake_whose_leader_is_cut_off_goes_on_under_the_next_leader_where_it_was() {
    // One step of 50%, then a bake of five one-minute checks (docs/rollouts.md#bake).
    let baked = |dir: &Path| {
        scenario(
            dir,
            &format!(
                "judge = \"threshold\"\nthreshold = 2\nstep_weights = [50]\nmin_requests = 20\nbake = \"5m\"\n{SUCCESS_RATE}"
            ),
        )
    };
    let store = store();
    let a = join_with(&store, "a", baked).await;
    let b = join_with(&store, "b", baked).await;
    assert!(store.elect("a").is_some());
    settle().await;
    // A healthy interval promotes into the bake; one bake check passes under a.
    for _ in 0..2 {
        a.traffic(0);
        b.traffic(0);
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
    }
    assert_eq!(stored_bake(&store), ("Baking".to_owned(), Some(4)));
    assert_eq!(b.routed(), (Phase::Baking, 100), "the follower bakes too");

    // a is cut off and its lease lapses: b leads and counts on from 4, never from 5 or a
    // rollout.
    store.cut_off("a");
    store.expire("a");
    assert!(store.elect("b").is_some(), "b takes the lapsed leader key");
    settle().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        b.traffic(0);
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
        seen.push(stored_bake(&store));
    }
    let baking = |left| ("Baking".to_owned(), Some(left));
    assert_eq!(
        seen,
        [
            baking(3),
            baking(2),
            baking(1),
            ("Succeeded".to_owned(), None)
        ]
    );
    assert_eq!(
        stored(&store),
        ("Succeeded".to_owned(), 100, "b".to_owned())
    );
    assert_eq!(b.routed(), (Phase::Succeeded, 100));
    // Back in touch, a follows: Succeeded, no bake of its own.
    store.reconnect("a");
    settle().await;
    assert_eq!(a.routed(), (Phase::Succeeded, 100));
}

//! The fenced state write against a real etcd cluster (docs/fleet.md#how-it-works): a leader
//! writes with its term and the revision it read; a stale revision or a lost term is refused
//! and leaves the state as it was. Drives the library's fleet handle directly, so the moment
//! leadership is lost is the test's to choose.
#![cfg(feature = "fleet")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet_support;
mod support;

use std::time::Duration;

use canaryd::config::FleetConfig;
use canaryd::fleet::{FleetBoard, FleetError, RouteState};
use fleet_support::*;

fn state(term: i64, weight: u8) -> RouteState {
    RouteState {
        rollout: serde_json::json!({ "test": weight }),
        term,
        writer: "a".to_owned(),
        window: 0,
        evidence: 0,
        weight,
        phase: "Progressing".to_owned(),
        commands: Vec::new(),
        events: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd"]
async fn writes_with_a_stale_revision_or_a_lost_term_are_refused() {
    let etcd = Etcd::start().await;
    let config = FleetConfig {
        name: "test-fleet".to_owned(),
        etcd: etcd.endpoints(),
        replica: "a".to_owned(),
        lease_ttl: Duration::from_secs(2),
        prefix: "/canaryd".to_owned(),
        tls: None,
        auth: None,
    };
    let fleet = canaryd::fleet::start(&config, FleetBoard::default())
        .await
        .unwrap();
    let mut session = fleet.session();
    let (term, lease) = wait_for("leadership", Duration::from_secs(5), || {
        let s = *session.borrow_and_update();
        async move { Some((s.term?, s.lease?)) }
    })
    .await;

    let first = fleet
        .write_state("shop", &state(term, 10), 0, &[])
        .await
        .unwrap();
    // The state moved on since revision 0: a writer that read it before is refused.
    assert!(matches!(
        fleet.write_state("shop", &state(term, 20), 0, &[]).await,
        Err(FleetError::Fenced)
    ));
    let second = fleet
        .write_state("shop", &state(term, 20), first, &[])
        .await
        .unwrap();

    // Leadership is lost (its lease revoked, as etcd does when it expires) and another replica
    // takes the leader key: the old term can no longer write, whatever revision it read.
    let mut client = etcd.client().await;
    client.lease_revoke(lease).await.unwrap();
    let other = client.lease_grant(10, None).await.unwrap().id();
    client
        .put(
            "/canaryd/test-fleet/leader",
            "b",
            Some(etcd_client::PutOptions::new().with_lease(other)),
        )
        .await
        .unwrap();
    assert!(matches!(
        fleet
            .write_state("shop", &state(term, 30), second, &[])
            .await,
        Err(FleetError::Fenced)
    ));
    let stored = client
        .get("/canaryd/test-fleet/state/shop", None)
        .await
        .unwrap();
    let stored: RouteState = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!(stored.weight, 20, "a refused write changed nothing");

    // And the replica knows it follows now.
    wait_for("the replica to follow", Duration::from_secs(5), || {
        let s = *session.borrow_and_update();
        async move { s.term.is_none().then_some(()) }
    })
    .await;
}

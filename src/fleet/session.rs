//! This replica's lease and its bid for leadership.
//!
//! One lease per replica (TTL `lease_ttl`) carries its member key, its evidence keys and, while
//! it leads, the leader key. Leadership is the leader key created with
//! `create_revision == 0` in a transaction; the term is that key's `create_revision`, which
//! grows with every new leader. A replica that has not had a keep-alive answered for two thirds
//! of the TTL stops calling itself leader before etcd can expire its lease, and every state
//! write compares the term anyway (see `state.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::CALL_TIMEOUT;
use super::handle::{Contact, FleetError};
use super::keys::Keys;
use super::mirror::Mirror;

/// How often a follower looks (in its mirror) whether the leader key is free.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(200);

/// What the session shares with the handle: etcd contact, and the shutdown flag.
pub struct Shared {
    /// When etcd last answered.
    pub contact: Arc<Contact>,
    /// Set by [`super::FleetHandle::leave`]: take no new lease, never lead again.
    pub leaving: Arc<AtomicBool>,
}

/// This replica's standing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    /// The lease its keys are bound to, once granted.
    pub lease: Option<i64>,
    /// Its term while it is the leader.
    pub term: Option<i64>,
}

/// Hold a lease and campaign until every receiver is gone.
pub async fn run(
    mut client: Client,
    keys: Keys,
    replica: String,
    ttl: Duration,
    tx: watch::Sender<Session>,
    mirror: watch::Receiver<Arc<Mirror>>,
    shared: Shared,
) {
    let Shared { contact, leaving } = shared;
    let ttl_seconds = i64::try_from(ttl.as_secs()).unwrap_or(10).max(2);
    // Why the last lease grant failed, logged once per new reason: a wrong CA, a rejected
    // client certificate or a lapsed login must be visible, without a line every 250 ms.
    let mut refused: Option<String> = None;
    loop {
        if tx.is_closed() {
            return;
        }
        if leaving.load(Ordering::Relaxed) {
            // Shutting down: the lease was revoked; never take a new one or lead again.
            tx.send_replace(Session::default());
            std::future::pending::<()>().await;
        }
        tx.send_if_modified(|s| {
            let changed = *s != Session::default();
            *s = Session::default();
            changed
        });
        let granted = tokio::time::timeout(CALL_TIMEOUT, client.lease_grant(ttl_seconds, None));
        let lease = match granted.await {
            Ok(Ok(response)) => {
                refused = None;
                response.id()
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => FleetError::etcd(e).to_string(),
                    _ => FleetError::Timeout.to_string(),
                };
                if refused.as_ref() != Some(&reason) {
                    tracing::warn!("cannot reach etcd (fleet lease not granted): {reason}");
                    refused = Some(reason);
                }
                contact.down();
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let keep = tokio::time::timeout(CALL_TIMEOUT, client.lease_keep_alive(lease));
        let (mut keeper, mut answers) = match keep.await {
            Ok(Ok(pair)) => pair,
            _ => {
                contact.down();
                continue;
            }
        };
        tracing::info!(lease, "fleet lease granted");
        tx.send_replace(Session {
            lease: Some(lease),
            term: None,
        });
        let mut last_answer = Instant::now();
        let mut keep_alive = tokio::time::interval(ttl / 4);
        let mut campaign = tokio::time::interval(CAMPAIGN_EVERY);
        loop {
            tokio::select! {
                _ = keep_alive.tick() => {
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                }
                answer = answers.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => last_answer = Instant::now(),
                    Ok(Some(_)) => {
                        tracing::warn!(lease, "fleet lease expired; taking a new one");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                },
                _ = campaign.tick() => {
                    let silent = last_answer.elapsed();
                    if silent >= ttl {
                        tracing::warn!(lease, "fleet lease not renewed for {silent:?}; taking a new one");
                        break;
                    }
                    let term = tx.borrow().term;
                    if silent >= ttl * 2 / 3 {
                        if term.is_some() {
                            tracing::warn!("etcd has not answered keep-alives: no longer acting as leader");
                            tx.send_modify(|s| s.term = None);
                        }
                        continue;
                    }
                    // The mirror shows the leader key without asking etcd; only a free key is
                    // worth a transaction.
                    let seen = mirror.borrow().leader_entry().map(|(who, entry)| {
                        (who == replica && entry.lease == lease).then_some(entry.create_revision)
                    });
                    let found = match seen {
                        Some(ours) => ours,
                        None => claim(&mut client, &keys, &replica, lease).await,
                    };
                    if found != term {
                        match found {
                            Some(term) => tracing::info!(term, "this replica leads the fleet"),
                            None => tracing::info!("this replica follows the fleet"),
                        }
                        tx.send_modify(|s| s.term = found);
                    }
                }
            }
            if tx.is_closed() {
                let _ = client.lease_revoke(lease).await;
                return;
            }
            if leaving.load(Ordering::Relaxed) {
                break;
            }
        }
        contact.down();
    }
}

/// Create the leader key if it is free; either way, our term if the key is ours (same lease).
async fn claim(client: &mut Client, keys: &Keys, replica: &str, lease: i64) -> Option<i64> {
    let key = keys.leader();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            replica,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = match tokio::time::timeout(CALL_TIMEOUT, client.txn(txn)).await {
        Ok(Ok(response)) => response,
        _ => return None,
    };
    if response.succeeded() {
        return response.header().map(|h| h.revision());
    }
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .filter(|kv| kv.lease() == lease && kv.value() == replica.as_bytes())
            .map(|kv| kv.create_revision()),
        _ => None,
    })
}

//! This replica's copy of the fleet's keys, kept current by one prefix watch and repaired by
//! re-reading: a broken, cancelled or compacted watch is replaced by a full read and a new watch
//! from that read's revision (never resumed at a compacted revision), and a periodic reconciling
//! read replaces the copy even when the watch looks healthy, so a silently stuck watch cannot
//! leave the replica stale for long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::CALL_TIMEOUT;
use super::commands::FleetCommand;
use super::evidence::StepEvidence;
use super::handle::Contact;
use super::keys::{KeyKind, Keys};
use super::state::RouteState;
use super::view::MemberView;

/// How often the whole prefix is read again regardless of the watch.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// One key as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub lease: i64,
}

impl Entry {
    fn of(kv: &KeyValue) -> Entry {
        Entry {
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

/// The fleet's keys at `revision`.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    /// The etcd revision this copy is complete up to.
    pub revision: i64,
    /// Key → value.
    pub entries: BTreeMap<String, Entry>,
    keys: Option<Keys>,
}

impl Mirror {
    /// A copy of `entries` at `revision` (what the in-memory store hands its members).
    #[cfg(test)]
    pub(super) fn of(revision: i64, entries: BTreeMap<String, Entry>, keys: Keys) -> Mirror {
        Mirror {
            revision,
            entries,
            keys: Some(keys),
        }
    }

    fn kinds(&self) -> impl Iterator<Item = (KeyKind<'_>, &Entry)> {
        self.entries.iter().filter_map(|(key, entry)| {
            let keys = self.keys.as_ref()?;
            Some((keys.kind(key), entry))
        })
    }

    /// The leader's replica id and term (`create_revision` of the leader key).
    pub fn leader(&self) -> Option<(String, i64)> {
        self.leader_entry()
            .map(|(who, entry)| (who, entry.create_revision))
    }

    /// The leader's replica id and its key.
    pub fn leader_entry(&self) -> Option<(String, &Entry)> {
        self.kinds().find_map(|(kind, entry)| match kind {
            KeyKind::Leader => Some((String::from_utf8_lossy(&entry.value).into_owned(), entry)),
            _ => None,
        })
    }

    /// A route's state and its `mod_revision`; `None` if absent or unreadable (logged).
    pub fn state(&self, route: &str) -> Option<(RouteState, i64)> {
        let keys = self.keys.as_ref()?;
        let entry = self.entries.get(&keys.state(route))?;
        match serde_json::from_slice(&entry.value) {
            Ok(state) => Some((state, entry.mod_revision)),
            Err(e) => {
                tracing::error!(route, "fleet state in etcd is not valid: {e}");
                None
            }
        }
    }

    /// The `mod_revision` of a route's state key, 0 when absent (what the fenced write compares).
    pub fn state_revision(&self, route: &str) -> i64 {
        self.keys
            .as_ref()
            .and_then(|keys| self.entries.get(&keys.state(route)))
            .map_or(0, |e| e.mod_revision)
    }

    /// Every member's evidence for a route, except `skip`'s (the caller's own, which it has
    /// fresher); entries that do not decode are left out (and logged).
    pub fn evidence(&self, route: &str, skip: &str) -> Vec<(String, StepEvidence)> {
        self.kinds()
            .filter_map(|(kind, entry)| match kind {
                KeyKind::Evidence(r, replica) if r == route && replica != skip => {
                    match StepEvidence::decode(&entry.value) {
                        Ok(e) => Some((replica.to_owned(), e)),
                        Err(e) => {
                            tracing::warn!(route, replica, "ignoring fleet evidence: {e}");
                            None
                        }
                    }
                }
                _ => None,
            })
            .collect()
    }

    /// Live members, by replica id.
    pub fn members(&self) -> Vec<MemberView> {
        self.kinds()
            .filter_map(|(kind, entry)| match kind {
                KeyKind::Member(_) => serde_json::from_slice(&entry.value).ok(),
                _ => None,
            })
            .collect()
    }

    /// Commands waiting for a route, oldest first, with their keys.
    pub fn commands(&self, route: &str) -> Vec<(String, FleetCommand)> {
        let mut found: Vec<(i64, String, FleetCommand)> = self
            .entries
            .iter()
            .filter_map(|(key, entry)| {
                let kind = self.keys.as_ref()?.kind(key);
                match kind {
                    KeyKind::Command(r) if r == route => serde_json::from_slice(&entry.value)
                        .ok()
                        .map(|c| (entry.create_revision, key.clone(), c)),
                    _ => None,
                }
            })
            .collect();
        found.sort_by_key(|(rev, _, _)| *rev);
        found.into_iter().map(|(_, k, c)| (k, c)).collect()
    }
}

/// Keep `tx` current until every receiver is gone.
pub async fn run(
    mut client: Client,
    keys: Keys,
    tx: watch::Sender<Arc<Mirror>>,
    contact: Arc<Contact>,
) {
    let base = keys.base().to_owned();
    loop {
        if tx.is_closed() {
            return;
        }
        let Some(mirror) = read_all(&mut client, &keys, &contact).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let mut revision = mirror.revision;
        tx.send_replace(Arc::new(mirror));
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let watch = tokio::time::timeout(CALL_TIMEOUT, client.watch(base.as_str(), Some(options)));
        let mut stream = match watch.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!("fleet watch failed to start: {e}");
                contact.down();
                continue;
            }
            Err(_) => {
                contact.down();
                continue;
            }
        };
        let mut reconcile =
            tokio::time::interval_at(Instant::now() + RECONCILE_EVERY, RECONCILE_EVERY);
        loop {
            tokio::select! {
                message = stream.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) | Err(_) => {
                            tracing::info!("fleet watch ended; re-reading the fleet state");
                            break;
                        }
                    };
                    if response.canceled() || response.compact_revision() > 0 {
                        tracing::warn!(
                            compact_revision = response.compact_revision(),
                            reason = response.cancel_reason(),
                            "fleet watch cancelled or compacted; re-reading the fleet state"
                        );
                        break;
                    }
                    let events = response.events();
                    if events.is_empty() {
                        continue;
                    }
                    let mut next = (**tx.borrow()).clone();
                    for event in events {
                        let Some(kv) = event.kv() else { continue };
                        // A reconciling read may already be past this event.
                        if kv.mod_revision() <= next.revision {
                            continue;
                        }
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        match event.event_type() {
                            EventType::Put => {
                                next.entries.insert(key, Entry::of(kv));
                            }
                            EventType::Delete => {
                                next.entries.remove(&key);
                            }
                        }
                        revision = revision.max(kv.mod_revision());
                    }
                    next.revision = next.revision.max(revision);
                    contact.up();
                    tx.send_replace(Arc::new(next));
                }
                _ = reconcile.tick() => {
                    match read_all(&mut client, &keys, &contact).await {
                        Some(read) if read.revision >= tx.borrow().revision => {
                            let changed = read.entries != tx.borrow().entries;
                            revision = read.revision;
                            if changed {
                                tracing::info!("fleet reconciling read found changes the watch missed");
                                tx.send_replace(Arc::new(read));
                            } else {
                                tx.send_modify(|m| Arc::make_mut(m).revision = read.revision);
                            }
                        }
                        Some(_) => {}
                        // etcd unreachable: keep the copy (fail static) and let its age grow.
                        None => {}
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    }
}

async fn read_all(client: &mut Client, keys: &Keys, contact: &Contact) -> Option<Mirror> {
    let read = client.get(keys.base(), Some(GetOptions::new().with_prefix()));
    match tokio::time::timeout(CALL_TIMEOUT, read).await {
        Ok(Ok(response)) => {
            let revision = response.header().map_or(0, |h| h.revision());
            let entries = response
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        Entry::of(kv),
                    )
                })
                .collect();
            contact.up();
            Some(Mirror {
                revision,
                entries,
                keys: Some(keys.clone()),
            })
        }
        Ok(Err(e)) => {
            tracing::debug!("fleet read failed: {e}");
            contact.down();
            None
        }
        Err(_) => {
            contact.down();
            None
        }
    }
}

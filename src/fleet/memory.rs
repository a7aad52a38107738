//! An in-memory stand-in for etcd (tests only), behind the same [`Store`] seam: one key space
//! with revisions, leases and the leader key, and the same fence as etcd's transaction — a
//! state write holds only while the leader key's `create_revision` is the writer's term and the
//! state key's `mod_revision` is the one it read. The test plays the parts etcd and the session
//! play in production: it elects a leader, cuts a member off (its calls fail, its copy stops
//! being confirmed), lets its lease lapse and reconnects it. Every member's mirror is pushed on
//! each change and confirmed every [`RECONCILE_EVERY`], as the real mirror's reconciling read.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::watch;

use super::handle::{Contact, FleetError, FleetHandle, Parts};
use super::keys::{KeyKind, Keys};
use super::mirror::{Entry, Mirror, RECONCILE_EVERY};
use super::session::Session;
use super::state::RouteState;
use super::store::{Fence, Store};
use super::view::FleetBoard;
use crate::config::FleetConfig;

/// One state write the store accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// The replica that wrote it.
    pub replica: String,
    /// The state key.
    pub key: String,
    /// Command keys deleted with it.
    pub consumed: Vec<String>,
}

struct Member {
    lease: Option<i64>,
    cut_off: bool,
    mirror: watch::Sender<Arc<Mirror>>,
    session: watch::Sender<Session>,
    contact: Arc<Contact>,
}

struct Space {
    keys: Keys,
    revision: i64,
    next_lease: i64,
    entries: BTreeMap<String, Entry>,
    members: BTreeMap<String, Member>,
    writes: Vec<StateWrite>,
}

impl Space {
    fn member(&self, replica: &str) -> Result<&Member, FleetError> {
        match self.members.get(replica) {
            Some(member) if !member.cut_off => Ok(member),
            // What a partitioned replica gets from etcd.
            _ => Err(FleetError::Timeout),
        }
    }

    fn put(&mut self, key: String, value: Vec<u8>, lease: i64) {
        let create_revision = self
            .entries
            .get(&key)
            .map_or(self.revision, |e| e.create_revision);
        let entry = Entry {
            value,
            mod_revision: self.revision,
            create_revision,
            lease,
        };
        self.entries.insert(key, entry);
    }

    /// Every key bound to `lease` goes, as when etcd expires or revokes it.
    fn drop_lease(&mut self, lease: i64) {
        self.revision += 1;
        self.entries.retain(|_, e| e.lease != lease);
        for member in self.members.values_mut() {
            if member.lease == Some(lease) {
                member.lease = None;
                member.session.send_replace(Session::default());
            }
        }
        self.publish();
    }

    /// Every member in touch sees the new revision at once.
    fn publish(&self) {
        for member in self.members.values().filter(|m| !m.cut_off) {
            let mirror = Mirror::of(self.revision, self.entries.clone(), self.keys.clone());
            member.mirror.send_replace(Arc::new(mirror));
            member.contact.up();
        }
    }
}

/// The shared key space.
#[derive(Clone)]
pub struct MemoryStore {
    space: Arc<Mutex<Space>>,
}

/// The store as one member calls it.
#[derive(Clone)]
pub struct MemoryMember {
    space: Arc<Mutex<Space>>,
    replica: String,
}

impl MemoryStore {
    /// An empty key space for the fleet `name` under `prefix`.
    pub fn new(prefix: &str, name: &str) -> MemoryStore {
        let space = Space {
            keys: Keys::new(prefix, name),
            revision: 1,
            next_lease: 1,
            entries: BTreeMap::new(),
            members: BTreeMap::new(),
            writes: Vec::new(),
        };
        MemoryStore {
            space: Arc::new(Mutex::new(space)),
        }
    }

    fn space(&self) -> std::sync::MutexGuard<'_, Space> {
        self.space.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A replica joins with a fresh lease: its handle, as `fleet::start` gives one.
    pub fn join(&self, config: &FleetConfig, board: FleetBoard) -> FleetHandle {
        let replica = config.replica.clone();
        let contact = Arc::new(Contact::new());
        let (mirror_tx, mirror_rx) = watch::channel(Arc::new(Mirror::default()));
        let (session_tx, session_rx) = watch::channel(Session::default());
        {
            let mut space = self.space();
            let lease = space.next_lease;
            space.next_lease += 1;
            session_tx.send_replace(Session {
                lease: Some(lease),
                term: None,
            });
            let member = Member {
                lease: Some(lease),
                cut_off: false,
                mirror: mirror_tx,
                session: session_tx,
                contact: contact.clone(),
            };
            space.members.insert(replica.clone(), member);
            space.publish();
        }
        tokio::spawn(confirm(Arc::downgrade(&self.space), replica.clone()));
        let parts = Parts {
            store: Store::Memory(MemoryMember {
                space: self.space.clone(),
                replica,
            }),
            mirror: mirror_rx,
            session: session_rx,
            contact,
            leaving: Arc::new(AtomicBool::new(false)),
        };
        FleetHandle::assemble(config, board, parts)
    }

    /// `replica` campaigns: it takes the leader key if it is free (bound to its lease), as the
    /// session's transaction does. Its term, if it leads.
    pub fn elect(&self, replica: &str) -> Option<i64> {
        let mut space = self.space();
        let lease = space.member(replica).ok()?.lease?;
        let key = space.keys.leader();
        if !space.entries.contains_key(&key) {
            space.revision += 1;
            space.put(key.clone(), replica.as_bytes().to_vec(), lease);
            space.publish();
        }
        let entry = space.entries.get(&key)?;
        let term = (entry.lease == lease).then_some(entry.create_revision)?;
        if let Some(member) = space.members.get(replica) {
            member.session.send_modify(|s| s.term = Some(term));
        }
        Some(term)
    }

    /// `replica` loses etcd: its calls fail and its copy is no longer confirmed. Its lease (and
    /// leadership) lives on until [`MemoryStore::expire`], as etcd's does for `lease_ttl`.
    pub fn cut_off(&self, replica: &str) {
        let mut space = self.space();
        if let Some(member) = space.members.get_mut(replica) {
            member.cut_off = true;
            member.contact.down();
        }
    }

    /// `replica`'s lease lapses: its leader, member and evidence keys go.
    pub fn expire(&self, replica: &str) {
        let mut space = self.space();
        if let Some(lease) = space.members.get(replica).and_then(|m| m.lease) {
            space.drop_lease(lease);
        }
    }

    /// `replica` reaches etcd again, with a new lease if its old one lapsed.
    pub fn reconnect(&self, replica: &str) {
        let mut space = self.space();
        let lease = space.next_lease;
        let Some(member) = space.members.get_mut(replica) else {
            return;
        };
        member.cut_off = false;
        if member.lease.is_none() {
            member.lease = Some(lease);
            member.session.send_replace(Session {
                lease: Some(lease),
                term: None,
            });
            space.next_lease += 1;
        }
        space.publish();
    }

    /// A route's state as stored.
    pub fn state(&self, route: &str) -> Option<RouteState> {
        let space = self.space();
        let entry = space.entries.get(&space.keys.state(route))?;
        serde_json::from_slice(&entry.value).ok()
    }

    /// Command keys waiting for a route.
    pub fn commands_waiting(&self, route: &str) -> usize {
        let space = self.space();
        space
            .entries
            .keys()
            .filter(|key| space.keys.kind(key) == KeyKind::Command(route))
            .count()
    }

    /// Every state write the store accepted, oldest first.
    pub fn writes(&self) -> Vec<StateWrite> {
        self.space().writes.clone()
    }
}

/// The reconciling read's part: while `replica` is in touch, its copy is confirmed every
/// [`RECONCILE_EVERY`].
async fn confirm(space: Weak<Mutex<Space>>, replica: String) {
    loop {
        tokio::time::sleep(RECONCILE_EVERY).await;
        let Some(space) = space.upgrade() else {
            return;
        };
        let space = space.lock().unwrap_or_else(PoisonError::into_inner);
        match space.members.get(&replica) {
            Some(member) if member.mirror.is_closed() => return,
            Some(member) if !member.cut_off => member.contact.up(),
            Some(_) => {}
            None => return,
        }
    }
}

impl MemoryMember {
    fn space(&self) -> std::sync::MutexGuard<'_, Space> {
        self.space.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn put(
        &self,
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<(), FleetError> {
        let mut space = self.space();
        let member = space.member(&self.replica)?;
        if lease.is_some() && lease != member.lease {
            return Err(FleetError::Etcd("requested lease not found".to_owned()));
        }
        space.revision += 1;
        space.put(key, value, lease.unwrap_or(0));
        space.publish();
        Ok(())
    }

    /// etcd's transaction: compare both revisions, then put and delete at one revision.
    pub(super) fn fenced_write(
        &self,
        fence: &Fence<'_>,
        value: Vec<u8>,
        consumed: &[String],
    ) -> Result<i64, FleetError> {
        let mut space = self.space();
        space.member(&self.replica)?;
        let revision_of = |key: &str, created: bool| {
            space.entries.get(key).map_or(0, |e| {
                if created {
                    e.create_revision
                } else {
                    e.mod_revision
                }
            })
        };
        if revision_of(fence.leader, true) != fence.term
            || revision_of(fence.key, false) != fence.expected
        {
            return Err(FleetError::Fenced);
        }
        space.revision += 1;
        space.put(fence.key.to_owned(), value, 0);
        for key in consumed {
            space.entries.remove(key);
        }
        space.writes.push(StateWrite {
            replica: self.replica.clone(),
            key: fence.key.to_owned(),
            consumed: consumed.to_vec(),
        });
        space.publish();
        Ok(space.revision)
    }

    pub(super) fn revoke(&self, lease: i64) -> Result<(), FleetError> {
        let mut space = self.space();
        space.member(&self.replica)?;
        space.drop_lease(lease);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(replica: &str) -> FleetConfig {
        FleetConfig {
            name: "edge".to_owned(),
            etcd: Vec::new(),
            replica: replica.to_owned(),
            lease_ttl: Duration::from_secs(10),
            prefix: "/canaryd".to_owned(),
            tls: None,
            auth: None,
        }
    }

    fn state(term: i64, writer: &str, weight: u8) -> RouteState {
        RouteState {
            rollout: serde_json::json!({}),
            term,
            writer: writer.to_owned(),
            window: 0,
            evidence: 0,
            weight,
            phase: "Progressing".to_owned(),
            commands: Vec::new(),
            events: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_write_holds_only_for_the_current_term_and_the_revision_it_read() {
        let store = MemoryStore::new("/canaryd", "edge");
        let a = store.join(&config("a"), FleetBoard::default());
        let b = store.join(&config("b"), FleetBoard::default());
        let old_term = store.elect("a").unwrap_or_else(|| panic!("a cannot lead"));
        assert_eq!(store.elect("b"), None, "the leader key is taken");
        let first = a
            .write_state("shop", &state(old_term, "a", 10), 0, &[])
            .await;
        let first = first.unwrap_or_else(|e| panic!("{e}"));
        // A write from a stale read (the key moved on since revision 0) is refused.
        let stale = a
            .write_state("shop", &state(old_term, "a", 20), 0, &[])
            .await;
        assert!(matches!(stale, Err(FleetError::Fenced)), "{stale:?}");
        // A new leader's term fences the old one out, even with the current revision.
        store.expire("a");
        let new_term = store.elect("b").unwrap_or_else(|| panic!("b cannot lead"));
        assert!(new_term > old_term);
        let deposed = a
            .write_state("shop", &state(old_term, "a", 20), first, &[])
            .await;
        assert!(matches!(deposed, Err(FleetError::Fenced)), "{deposed:?}");
        let taken = b
            .write_state("shop", &state(new_term, "b", 20), first, &[])
            .await;
        assert!(taken.is_ok(), "{taken:?}");
        let kept = store.state("shop").map(|s| (s.writer, s.weight));
        assert_eq!(kept, Some(("b".to_owned(), 20)));
        // A member cut off from the store gets what a partitioned replica gets from etcd.
        store.cut_off("b");
        let cut = b
            .write_state("shop", &state(new_term, "b", 30), 0, &[])
            .await;
        assert!(matches!(cut, Err(FleetError::Timeout)), "{cut:?}");
        assert_eq!(store.writes().len(), 2);
    }
}

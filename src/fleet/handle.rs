//! The running fleet membership of this replica: starts the session (lease, election), the
//! mirror (watch + reconciling reads) and the member publisher, and offers the route tasks the
//! few etcd operations they need: the fenced state write, evidence, commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{connect, CALL_TIMEOUT};
use super::commands::FleetCommand;
use super::evidence::StepEvidence;
use super::keys::Keys;
use super::mirror::{self, Mirror};
use super::session::{self, Session};
use super::state::RouteState;
use super::store::{Fence, Store};
use super::view::{FleetBoard, FleetView, MemberView};
use crate::config::FleetConfig;

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The etcd client failed.
    #[error("etcd: {0}")]
    Etcd(String),
    /// etcd did not answer in time.
    #[error("etcd did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    /// A TLS or password file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The fenced write was refused: this replica is not the leader of that term any more, or
    /// the state changed since it was read.
    #[error("not written: leadership or state changed (fenced)")]
    Fenced,
    /// This replica has no lease yet (etcd unreachable since start).
    #[error("no etcd lease yet")]
    NoLease,
    /// State could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl FleetError {
    /// The error with its causes: tonic's transport error alone says only "transport error",
    /// the cause says which (refused connection, unknown certificate issuer, ...).
    pub(super) fn etcd(e: etcd_client::Error) -> FleetError {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        FleetError::Etcd(text)
    }
}

/// When this replica last heard from etcd.
#[derive(Debug)]
pub struct Contact {
    last: Mutex<Option<Instant>>,
    up: std::sync::atomic::AtomicBool,
}

impl Contact {
    pub(super) fn new() -> Contact {
        Contact {
            last: Mutex::new(None),
            up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A read or watch event succeeded: the mirror is current.
    pub fn up(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.up.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// An etcd call failed.
    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Since the mirror was last confirmed; since start when it never was.
    fn age(&self, started: Instant) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(started)
            .elapsed()
    }
}

/// What this replica reports about itself in its member key.
#[derive(Debug, Default, Clone, PartialEq)]
struct Local {
    applied: BTreeMap<String, u8>,
    hashes: BTreeMap<String, String>,
}

struct Inner {
    config: FleetConfig,
    keys: Keys,
    store: Store,
    mirror: watch::Receiver<Arc<Mirror>>,
    session: watch::Receiver<Session>,
    contact: Arc<Contact>,
    board: FleetBoard,
    local: Mutex<Local>,
    started: Instant,
    leaving: Arc<std::sync::atomic::AtomicBool>,
}

/// This replica's handle on its fleet (cheap to clone).
#[derive(Clone)]
pub struct FleetHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FleetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetHandle")
            .field("fleet", &self.inner.config.name)
            .field("replica", &self.inner.config.replica)
            .finish()
    }
}

/// Connect and start the fleet tasks on the current runtime. Never waits for etcd to answer:
/// a replica starts serving its cached weights while etcd is down.
pub async fn start(config: &FleetConfig, board: FleetBoard) -> Result<FleetHandle, FleetError> {
    let client = connect(config).await?;
    let keys = Keys::new(&config.prefix, &config.name);
    let contact = Arc::new(Contact::new());
    let (mirror_tx, mirror_rx) = watch::channel(Arc::new(Mirror::default()));
    let (session_tx, session_rx) = watch::channel(Session::default());
    let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(mirror::run(
        client.clone(),
        keys.clone(),
        mirror_tx,
        contact.clone(),
    ));
    tokio::spawn(session::run(
        client.clone(),
        keys.clone(),
        config.replica.clone(),
        config.lease_ttl,
        session_tx,
        mirror_rx.clone(),
        session::Shared {
            contact: contact.clone(),
            leaving: leaving.clone(),
        },
    ));
    let parts = Parts {
        store: Store::Etcd(Box::new(client)),
        mirror: mirror_rx,
        session: session_rx,
        contact,
        leaving,
    };
    Ok(FleetHandle::assemble(config, board, parts))
}

/// What a store backend gives the handle: where writes go, and the mirror and session it keeps
/// current.
pub(super) struct Parts {
    pub store: Store,
    pub mirror: watch::Receiver<Arc<Mirror>>,
    pub session: watch::Receiver<Session>,
    pub contact: Arc<Contact>,
    pub leaving: Arc<std::sync::atomic::AtomicBool>,
}

impl FleetHandle {
    /// The handle over a backend's parts; starts publishing this replica's member key.
    pub(super) fn assemble(config: &FleetConfig, board: FleetBoard, parts: Parts) -> FleetHandle {
        let handle = FleetHandle {
            inner: Arc::new(Inner {
                config: config.clone(),
                keys: Keys::new(&config.prefix, &config.name),
                store: parts.store,
                mirror: parts.mirror,
                session: parts.session,
                contact: parts.contact,
                board,
                local: Mutex::new(Local::default()),
                started: Instant::now(),
                leaving: parts.leaving,
            }),
        };
        tokio::spawn(publish_members(handle.clone()));
        handle
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.inner.config.replica
    }

    /// Leave the fleet at shutdown: revoke the lease, so leadership (and this replica's member
    /// and evidence keys) go at once instead of after `lease_ttl`. The replica keeps serving
    /// its last weights while it drains.
    pub async fn leave(&self) {
        self.inner
            .leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let Some(lease) = self.inner.session.borrow().lease else {
            return;
        };
        match self.inner.store.revoke(lease).await {
            Ok(()) => tracing::info!(lease, "left the fleet (lease revoked)"),
            Err(e) => tracing::warn!("cannot revoke the fleet lease: {e}"),
        }
    }

    /// `fleet.lease_ttl`.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.config.lease_ttl
    }

    /// The mirror of the fleet's keys.
    pub fn mirror(&self) -> watch::Receiver<Arc<Mirror>> {
        self.inner.mirror.clone()
    }

    /// Lease and leadership.
    pub fn session(&self) -> watch::Receiver<Session> {
        self.inner.session.clone()
    }

    /// How old the mirror is: grows while etcd is unreachable.
    pub fn state_age(&self) -> Duration {
        self.inner.contact.age(self.inner.started)
    }

    /// The mirror is recent enough to decide on: confirmed within the last lease TTL.
    pub fn fresh(&self) -> bool {
        self.inner.contact.is_up() && self.state_age() < self.lease_ttl()
    }

    /// Report what this replica serves for a route and the hash of the route's settings.
    pub fn report(&self, route: &str, weight: u8, settings_hash: &str) {
        let mut local = self
            .inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        local.applied.insert(route.to_owned(), weight);
        local
            .hashes
            .insert(route.to_owned(), settings_hash.to_owned());
    }

    /// Forget a route that lost its analysis.
    pub fn forget(&self, route: &str) {
        let mut local = self
            .inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        local.applied.remove(route);
        local.hashes.remove(route);
    }

    /// Publish this replica's evidence for a route (bound to its lease); in the background,
    /// so a slow etcd never delays the route task. Skipped without a lease.
    pub fn publish_evidence(&self, route: &str, evidence: &StepEvidence) {
        let Some(lease) = self.inner.session.borrow().lease else {
            return;
        };
        let value = match evidence.encode() {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(route, "cannot encode fleet evidence: {e}");
                return;
            }
        };
        let key = self.inner.keys.evidence(route, self.replica());
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put(key, value, Some(lease)).await {
                tracing::debug!("cannot publish fleet evidence: {e}");
            }
        });
    }

    /// Write a route's state, fenced: only if the leader key still has `term` as its
    /// `create_revision` and the state key's `mod_revision` is still `expected` (0: absent).
    /// `consumed` command keys are deleted in the same transaction. Returns the new revision.
    pub async fn write_state(
        &self,
        route: &str,
        state: &RouteState,
        expected: i64,
        consumed: &[String],
    ) -> Result<i64, FleetError> {
        let value = serde_json::to_vec(state).map_err(|e| FleetError::Encode(e.to_string()))?;
        let key = self.inner.keys.state(route);
        let leader = self.inner.keys.leader();
        let fence = Fence {
            leader: &leader,
            term: state.term,
            key: &key,
            expected,
        };
        self.inner.store.fenced_write(fence, value, consumed).await
    }

    /// Queue an operator command for the leader.
    pub async fn submit_command(
        &self,
        route: &str,
        command: &FleetCommand,
    ) -> Result<(), FleetError> {
        let value = serde_json::to_vec(command).map_err(|e| FleetError::Encode(e.to_string()))?;
        let key = self.inner.keys.command(route, &command.id);
        self.inner.store.put(key, value, None).await
    }

    /// The view for the admin API, built from the mirror and this replica's own report.
    pub fn view(&self) -> FleetView {
        let mirror = self.inner.mirror.borrow().clone();
        let session = *self.inner.session.borrow();
        let mut members = mirror.members();
        members.sort_by(|a, b| a.replica.cmp(&b.replica));
        let mut drift = Vec::new();
        for member in &members {
            for (route, hash) in &member.config_hash {
                let differs = members
                    .iter()
                    .any(|other| other.config_hash.get(route).is_some_and(|h| h != hash));
                if differs && !drift.contains(route) {
                    drift.push(route.clone());
                }
            }
        }
        FleetView {
            name: self.inner.config.name.clone(),
            replica: self.replica().to_owned(),
            leader: mirror.leader().map(|(who, _)| who),
            is_leader: session.term.is_some(),
            members,
            etcd: if self.inner.contact.is_up() {
                "up"
            } else {
                "down"
            },
            state_age_seconds: self.state_age().as_secs_f64(),
            drift,
        }
    }

    /// Members disagree about a route's settings (by their published hashes, including ours).
    pub fn drift(&self, route: &str, own_hash: &str) -> Option<Vec<String>> {
        let members = self.inner.mirror.borrow().members();
        let differing: Vec<String> = members
            .iter()
            .filter(|m| m.config_hash.get(route).is_some_and(|h| h != own_hash))
            .map(|m| m.replica.clone())
            .collect();
        (!differing.is_empty()).then_some(differing)
    }
}

/// Keep the admin board current (4 times a second, from the mirror) and this replica's member
/// key: rewritten when what it says changed (at most once a second), and at least every few
/// seconds for its state age.
async fn publish_members(handle: FleetHandle) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last: Option<(Local, i64, Instant)> = None;
    let refresh = Duration::from_secs(5);
    loop {
        tick.tick().await;
        if Arc::strong_count(&handle.inner) == 1 {
            return;
        }
        handle.inner.board.store(handle.view());
        let Some(lease) = handle.inner.session.borrow().lease else {
            continue;
        };
        let local = handle
            .inner
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let unchanged = last
            .as_ref()
            .is_some_and(|(l, le, at)| *l == local && *le == lease && at.elapsed() < refresh);
        let recent = last
            .as_ref()
            .is_some_and(|(_, le, at)| *le == lease && at.elapsed() < Duration::from_secs(1));
        if unchanged || recent {
            continue;
        }
        let member = MemberView {
            replica: handle.replica().to_owned(),
            applied: local.applied.clone(),
            state_age_seconds: handle.state_age().as_secs_f64(),
            config_hash: local.hashes.clone(),
        };
        let Ok(value) = serde_json::to_vec(&member) else {
            continue;
        };
        let key = handle.inner.keys.member(handle.replica());
        if handle
            .inner
            .store
            .put(key, value, Some(lease))
            .await
            .is_ok()
        {
            last = Some((local, lease, Instant::now()));
        }
    }
}

//! The seam between a replica's fleet logic and the store its keys live in
//! (docs/architecture.md#fleet-store): the few writes the handle makes — a plain or leased put,
//! the fenced state write, a lease's revocation. Reads arrive through the mirror and the
//! session, which each backend keeps current on its own. etcd is the store in production; the
//! in-memory fake (`memory.rs`, tests only) enforces the same fence, so the route tasks run
//! against it unchanged on a paused clock.

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::client::CALL_TIMEOUT;
use super::handle::FleetError;
#[cfg(test)]
use super::memory::MemoryMember;

/// Where this replica's writes go.
#[derive(Clone)]
pub(super) enum Store {
    /// An etcd v3 cluster.
    Etcd(Box<Client>),
    /// The in-memory fake, as one member sees it.
    #[cfg(test)]
    Memory(MemoryMember),
}

/// The state write's fence: only while `leader` still has `term` as its `create_revision` and
/// `key` still has `expected` as its `mod_revision` (0: absent).
pub(super) struct Fence<'a> {
    pub leader: &'a str,
    pub term: i64,
    pub key: &'a str,
    pub expected: i64,
}

impl Store {
    /// Put `value` at `key`, bound to `lease` if given.
    pub(super) async fn put(
        &self,
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<(), FleetError> {
        match self {
            Store::Etcd(client) => {
                let mut client = client.clone();
                let options = lease.map(|lease| PutOptions::new().with_lease(lease));
                match tokio::time::timeout(CALL_TIMEOUT, client.put(key, value, options)).await {
                    Ok(result) => result.map(|_| ()).map_err(FleetError::etcd),
                    Err(_) => Err(FleetError::Timeout),
                }
            }
            #[cfg(test)]
            Store::Memory(member) => member.put(key, value, lease),
        }
    }

    /// Put `value` at the fence's key and delete `consumed`, in one transaction that holds only
    /// if the fence does; the store's revision after it.
    pub(super) async fn fenced_write(
        &self,
        fence: Fence<'_>,
        value: Vec<u8>,
        consumed: &[String],
    ) -> Result<i64, FleetError> {
        match self {
            Store::Etcd(client) => {
                let mut ops = vec![TxnOp::put(fence.key, value, None)];
                ops.extend(consumed.iter().map(|k| TxnOp::delete(k.as_str(), None)));
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(fence.leader, CompareOp::Equal, fence.term),
                        Compare::mod_revision(fence.key, CompareOp::Equal, fence.expected),
                    ])
                    .and_then(ops);
                let mut client = client.clone();
                let response = match tokio::time::timeout(CALL_TIMEOUT, client.txn(txn)).await {
                    Ok(result) => result.map_err(FleetError::etcd)?,
                    Err(_) => return Err(FleetError::Timeout),
                };
                if !response.succeeded() {
                    return Err(FleetError::Fenced);
                }
                Ok(response.header().map_or(0, |h| h.revision()))
            }
            #[cfg(test)]
            Store::Memory(member) => member.fenced_write(&fence, value, consumed),
        }
    }

    /// Give up `lease`: every key bound to it goes at once.
    pub(super) async fn revoke(&self, lease: i64) -> Result<(), FleetError> {
        match self {
            Store::Etcd(client) => {
                let mut client = client.clone();
                match tokio::time::timeout(CALL_TIMEOUT, client.lease_revoke(lease)).await {
                    Ok(result) => result.map(|_| ()).map_err(FleetError::etcd),
                    Err(_) => Err(FleetError::Timeout),
                }
            }
            #[cfg(test)]
            Store::Memory(member) => member.revoke(lease),
        }
    }
}

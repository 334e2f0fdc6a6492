//! The one hook of the commit path for replicated mode: the committer hands
//! each gathered group to a `Replica` before its local synced write, so no
//! group is durable here unless the replica accepted it (docs/replication.md).

use crate::store::journal::Commit;

/// Where a group of commits is made durable besides the local store.
///
/// Contract: called on the committer thread, once per group, in ticket order,
/// before the group is written locally. `Ok` means the replica holds the
/// group durably (the local write and the answers follow); `Err` names why
/// it does not, and the store fail-stops: the group is not written, every
/// waiter is answered `outcome_unknown`, and the daemon exits to recover from
/// the replica. A replica that follows another node (standby) takes every
/// group as it is: its commits are replays of what the replica already holds.
pub trait Replica: Send + Sync {
    fn replicate(&self, group: &[Commit]) -> Result<(), String>;
}

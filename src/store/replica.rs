//! The one hook of the commit path for replicated mode: the committer hands
//! each gathered group to a `Replica` (pipelined, at most
//! `REPLICA_PIPELINE_GROUPS_MAX` groups unsettled), so no group is durable
//! here unless the replica accepted it (docs/replication.md).

use crate::store::journal::Commit;

/// Where a group of commits is made durable besides the local store.
///
/// Contract: `send` is called on the committer thread, once per group, in
/// ticket order, and starts making the group durable in the replica without
/// waiting; `settle` waits for the oldest group sent and not yet settled
/// (groups settle in the order they were sent). `Ok` from `settle` means the
/// replica holds that group durably: the local write follows, then
/// `may_answer`, then the answers. An `Err` from any of them names why, and
/// the store fail-stops: that group and every later one sent are not
/// written (or not answered), every waiter is answered `outcome_unknown`,
/// and the daemon exits to recover from the replica. A replica that follows
/// another node (standby) takes every group as it is: its commits are
/// replays of what the replica already holds.
pub trait Replica: Send + Sync {
    fn send(&self, group: &[Commit]) -> Result<(), String>;
    fn settle(&self) -> Result<(), String>;
    /// Whether this node may still answer as the writer, checked after a
    /// settled group's local write, right before its answers are released.
    fn may_answer(&self) -> Result<(), String>;
}

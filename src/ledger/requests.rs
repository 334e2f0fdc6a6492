//! Request-id memory: an accepted change's answer (and a remembered
//! refusal) is kept under the caller's request id, so a retry with the same
//! id gets the first answer and is never applied twice; ids being decided
//! right now are held in `Inflight` so a racing duplicate waits.
//!
//! Ids are kept for a retention period, then pruned (`prune_requests`): a
//! background pass reads a bounded batch of the `requests` table from where
//! the last one stopped, without any lock, and deletes the rows older than
//! the retention in one commit, which holds the tail lock only to take a
//! ticket. Writers never wait for more than that.

use super::*;

/// An answer kept for retries of the same request id.
#[derive(Encode, Decode)]
pub(super) struct Remembered {
    pub(super) content: [u8; 32],
    pub(super) time: Timestamp,
    pub(super) outcome: Result<Reply, Refusal>,
}

/// What one pruning pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows read.
    pub examined: usize,
    /// Rows deleted (older than the retention).
    pub deleted: usize,
    /// The pass reached the end of the table; the next starts from the beginning.
    pub wrapped: bool,
}

/// Per request id: `None` while an operation is being decided, then its ticket.
pub(super) type Inflight = Mutex<HashMap<Vec<u8>, Option<u64>>>;

/// How long a duplicate request id waits for the first to be decided (spins).
pub(super) const INFLIGHT_SPINS_MAX: u32 = 100_000;

impl Ledger {
    pub(super) fn inflight_shard(&self, key: &[u8]) -> &Inflight {
        let hash = blake3::hash(key);
        &self.inflight[usize::from(hash.as_bytes()[0]) % self.inflight.len()]
    }

    pub(super) fn content_hash(&self, op: &Op) -> [u8; 32] {
        *blake3::keyed_hash(&self.secret.0, &codec::encode_plain(op)).as_bytes()
    }

    /// Claims the request id for this operation, or returns the answer a
    /// previous request with that id got. Waits for an identical request in
    /// flight in another batch to become durable first.
    pub(super) fn remembered(
        &self,
        key: &[u8],
        content: [u8; 32],
    ) -> Result<Option<Result<Reply, Refusal>>, Refusal> {
        let mut spins = 0;
        loop {
            let mut inflight = self.inflight_shard(key).lock();
            match inflight.get(key).copied() {
                None => {
                    inflight.insert(key.to_vec(), None);
                    break;
                }
                Some(None) => {
                    drop(inflight);
                    spins += 1;
                    if spins > INFLIGHT_SPINS_MAX {
                        return Err(Refusal::new(
                            Reason::Overloaded,
                            "the same request id is in flight; retry",
                        ));
                    }
                    std::thread::yield_now();
                }
                Some(Some(ticket)) => {
                    drop(inflight);
                    self.journal.wait_durable(ticket)?;
                    let mut inflight = self.inflight_shard(key).lock();
                    if inflight.get(key) == Some(&Some(ticket)) {
                        inflight.remove(key);
                    }
                }
            }
        }
        let stored = self.journal.get(Table::Requests, key).map_err(|e| {
            self.inflight_shard(key).lock().remove(key);
            Refusal::new(Reason::StorageUnavailable, e.to_string())
        })?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        self.inflight_shard(key).lock().remove(key);
        let remembered: Remembered = codec::decode(&stored, "remembered request")
            .map_err(|e| Refusal::new(Reason::StorageUnavailable, e.to_string()))?;
        if remembered.content != content {
            return Ok(Some(Err(Refusal::new(
                Reason::RequestIdReused,
                "request id was used for another request",
            ))));
        }
        Ok(Some(remembered.outcome))
    }

    /// One pruning pass: reads up to `REQUEST_PRUNE_BATCH_MAX` remembered
    /// requests from where the previous pass stopped (wrapping at the end of
    /// the table) and forgets those remembered longer than `retention_s`
    /// ago. Takes no shard lock; the deletes are one commit, submitted under
    /// the tail lock like any other. A full commit queue skips the pass
    /// (the cursor stays, nothing is lost). A row that does not decode is
    /// left alone for start-up's checks and the operator.
    ///
    /// Deleting is safe against a retry racing it: a remembered key is never
    /// written again, and a retry that still reads the old row gets the old
    /// answer; once the delete is durable the id is new again.
    pub fn prune_requests(&self, retention_s: i64) -> Result<Pruned, Refusal> {
        assert!(retention_s > 0, "a retention is positive");
        let from = self.prune_cursor.lock().clone();
        let rows = self
            .journal
            .range(Table::Requests, &from, REQUEST_PRUNE_BATCH_MAX)
            .map_err(Refusal::from)?;
        let wrapped = rows.len() < REQUEST_PRUNE_BATCH_MAX;
        let next = match rows.last() {
            Some((key, _)) if !wrapped => {
                let mut next = key.clone();
                next.push(0);
                next
            }
            _ => Vec::new(),
        };
        let cutoff = self.clock.now().0.saturating_sub(retention_s);
        let puts: Vec<Put> = rows
            .iter()
            .filter(|(_, value)| {
                codec::decode::<Remembered>(value, "remembered request")
                    .is_ok_and(|remembered| remembered.time.0 < cutoff)
            })
            .map(|(key, _)| Put {
                table: Table::Requests,
                key: key.clone(),
                value: None,
            })
            .collect();
        let pruned = Pruned {
            examined: rows.len(),
            deleted: puts.len(),
            wrapped,
        };
        if !puts.is_empty() {
            let mut tail = self.tail.lock();
            if self.journal.is_full() {
                return Err(Refusal::new(
                    Reason::Overloaded,
                    "the commit queue is full; pruning waits",
                ));
            }
            let ticket = tail.ticket + 1;
            self.journal.submit(Commit { ticket, puts })?;
            tail.ticket = ticket;
            self.assigned_ticket.store(ticket, Ordering::SeqCst);
        }
        *self.prune_cursor.lock() = next;
        Ok(pruned)
    }

    pub(super) fn remember_put(
        &self,
        origin: &Origin,
        content: [u8; 32],
        outcome: Result<Reply, Refusal>,
    ) -> Put {
        let remembered = Remembered {
            content,
            time: origin.time.get(),
            outcome,
        };
        Put {
            table: Table::Requests,
            key: keys::request(&origin.caller, origin.request_id),
            value: Some(codec::encode(&remembered)),
        }
    }
}

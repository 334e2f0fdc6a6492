//! Request-id memory: an accepted change's answer (and a remembered
//! refusal) is kept under the caller's request id, so a retry with the same
//! id gets the first answer and is never applied twice; ids being decided
//! right now are held in `Inflight` so a racing duplicate waits.

use super::*;

/// An answer kept for retries of the same request id.
#[derive(Encode, Decode)]
pub(super) struct Remembered {
    pub(super) content: [u8; 32],
    pub(super) time: Timestamp,
    pub(super) outcome: Result<Reply, Refusal>,
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
            key: keys::request(origin.role, origin.request_id),
            value: Some(codec::encode(&remembered)),
        }
    }
}

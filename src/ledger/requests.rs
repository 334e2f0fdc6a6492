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
//!
//! A frame may be applied without ever waiting (`FrameRun`,
//! `Ledger::apply_without_waiting`): it stops before a request whose id is
//! in flight and says what to await, so an async worker never blocks.

use super::*;
use crate::limits::{
    NOT_AUTHORISED_PER_INSTITUTION_PER_S, REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S,
};
use crate::metric_names;

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

/// Where the next pruning pass starts (a `requests` key; empty: the
/// beginning) and the rows the current sweep has kept so far.
#[derive(Default)]
pub(super) struct PruneCursor {
    next: Vec<u8>,
    kept: u64,
}

/// Per request id: `None` while an operation is being decided, then its ticket.
pub(super) type Inflight = Mutex<HashMap<Vec<u8>, Option<u64>>>;

/// How long a duplicate request id waits for the first to be decided (spins).
pub(super) const INFLIGHT_SPINS_MAX: u32 = 100_000;

/// Whether applying a frame may wait for a request id in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Block the thread (a blocking-pool thread, or a synchronous caller).
    Block,
    /// Never wait: stop before the request and say for what (`WaitFor`).
    Never,
}

/// What a frame applied without waiting stopped for, before a request that
/// has not been applied (nothing of it happened yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// The same request id is being decided in another frame: await
    /// `Ledger::request_decided`.
    Decided,
    /// The same request id's first answer rests on this ticket, not durable
    /// yet: await it on `Ledger::durability`.
    Durable(u64),
    /// An `expire` holds every shard: try again shortly.
    Sweep,
}

/// Why `remembered` gives no answer.
pub(super) enum Stop {
    Refused(Refusal),
    Wait(WaitFor),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Stop {
        Stop::Refused(refusal)
    }
}

/// A frame being applied, request by request: what `apply` keeps between
/// requests (the answers so far, the ids seen in the frame, the per-frame
/// read caps), so a frame applied without waiting can stop and go on.
pub struct FrameRun<'r> {
    pub(super) caller: Caller,
    pub(super) requests: &'r [Request],
    /// The next request to apply.
    pub(super) next: usize,
    pub(super) seen: HashMap<&'r str, ([u8; 32], usize)>,
    pub(super) audit_reads: usize,
    pub(super) stats_reads: usize,
    pub(super) events_reads: usize,
    pub(super) pending: Pending,
}

impl<'r> FrameRun<'r> {
    pub fn new(caller: Caller, requests: &'r [Request]) -> FrameRun<'r> {
        FrameRun {
            caller,
            requests,
            next: 0,
            seen: HashMap::new(),
            audit_reads: 0,
            stats_reads: 0,
            events_reads: 0,
            pending: Pending {
                answers: Vec::with_capacity(requests.len()),
                ticket: 0,
                inflight: Vec::new(),
            },
        }
    }
}

/// A request id held as being decided, as a frame in flight holds it,
/// until dropped: for tests of what waits for it.
pub struct HeldRequestId<'a> {
    ledger: &'a Ledger,
    key: Vec<u8>,
}

impl Drop for HeldRequestId<'_> {
    fn drop(&mut self) {
        self.ledger
            .inflight_shard(&self.key)
            .lock()
            .remove(&self.key);
        self.ledger.request_decided.notify_waiters();
    }
}

/// Refusals remembered within one second of the ledger's clock: counts
/// per certificate and per institution (`not_authorised` only), all
/// forgotten when the second changes, so the maps hold one second's callers.
#[derive(Default)]
pub(super) struct RefusalRates {
    limits: RefusalLimits,
    second: i64,
    per_certificate: HashMap<[u8; 32], u32>,
    not_authorised: HashMap<InstitutionCode, u32>,
}

/// The bounds `may_remember_refusal` enforces; the default is `limits.rs`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalLimits {
    pub per_certificate_per_s: u32,
    pub not_authorised_per_institution_per_s: u32,
}

impl RefusalLimits {
    /// No bound: for tests whose clock stands still through thousands of
    /// refusals (the bounds have tests of their own).
    pub const UNLIMITED: RefusalLimits = RefusalLimits {
        per_certificate_per_s: u32::MAX,
        not_authorised_per_institution_per_s: u32::MAX,
    };
}

impl Default for RefusalLimits {
    fn default() -> RefusalLimits {
        RefusalLimits {
            per_certificate_per_s: REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S,
            not_authorised_per_institution_per_s: NOT_AUTHORISED_PER_INSTITUTION_PER_S,
        }
    }
}

impl Ledger {
    /// Replaces the bounds on remembered refusals (`RefusalLimits`).
    pub fn set_refusal_limits(&self, limits: RefusalLimits) {
        self.refusal_rates.lock().limits = limits;
    }

    /// Whether a refusal by a rule may be remembered (a synced write): at
    /// most `REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S` per certificate and
    /// `NOT_AUTHORISED_PER_INSTITUTION_PER_S` `not_authorised` per
    /// institution, each second; past them `overloaded` (nothing written,
    /// the retry is decided afresh). Counts every `not_authorised`.
    pub(super) fn may_remember_refusal(
        &self,
        origin: &Origin,
        command: &Command,
        refusal: &Refusal,
    ) -> Result<(), Refusal> {
        let institution = command
            .institution()
            .filter(|_| refusal.reason == Reason::NotAuthorised);
        if let Some(code) = institution {
            metrics::counter!(metric_names::NOT_AUTHORISED, "institution" => code.to_string())
                .increment(1);
        }
        let second = self.clock.now().0;
        let mut rates = self.refusal_rates.lock();
        if rates.second != second {
            *rates = RefusalRates {
                limits: rates.limits,
                second,
                ..RefusalRates::default()
            };
        }
        let limits = rates.limits;
        let certificate = rates
            .per_certificate
            .entry(origin.caller.certificate)
            .or_default();
        if *certificate >= limits.per_certificate_per_s {
            return Err(Refusal::new(
                Reason::Overloaded,
                "too many refused requests from this certificate this second; slow down and retry",
            ));
        }
        *certificate += 1;
        if let Some(code) = institution {
            let count = rates.not_authorised.entry(code).or_default();
            if *count >= limits.not_authorised_per_institution_per_s {
                return Err(Refusal::new(
                    Reason::Overloaded,
                    format!(
                        "too many not_authorised refusals at institution {code} this second; retry later"
                    ),
                ));
            }
            *count += 1;
        }
        Ok(())
    }

    pub(super) fn inflight_shard(&self, key: &[u8]) -> &Inflight {
        let hash = blake3::hash(key);
        &self.inflight[usize::from(hash.as_bytes()[0]) % self.inflight.len()]
    }

    pub(super) fn content_hash(&self, op: &Op) -> [u8; 32] {
        *blake3::keyed_hash(&self.secret.0, &codec::encode_plain(op)).as_bytes()
    }

    /// Holds `caller`'s request id `id` as being decided until the result
    /// is dropped (see `HeldRequestId`). Test support.
    #[doc(hidden)]
    pub fn hold_request_id(&self, caller: Caller, id: &str) -> HeldRequestId<'_> {
        let key = keys::request(&caller, id);
        let previous = self.inflight_shard(&key).lock().insert(key.clone(), None);
        assert!(previous.is_none(), "the request id is already in flight");
        HeldRequestId { ledger: self, key }
    }

    /// Whether waiting for `ticket` to be durable is over (or never long).
    fn settled(&self, ticket: u64) -> bool {
        self.journal
            .durability()
            .is_none_or(|durability| durability.borrow().settles(ticket))
    }

    /// Claims the request id for this operation, or returns the answer a
    /// previous request with that id got. Waits (`Waiting::Block`) for an
    /// identical request in flight in another batch to become durable
    /// first, or stops (`Waiting::Never`) saying what to await.
    pub(super) fn remembered(
        &self,
        key: &[u8],
        content: [u8; 32],
        waiting: Waiting,
    ) -> Result<Option<Result<Reply, Refusal>>, Stop> {
        let mut spins = 0;
        loop {
            let mut inflight = self.inflight_shard(key).lock();
            match inflight.get(key).copied() {
                None => {
                    inflight.insert(key.to_vec(), None);
                    break;
                }
                Some(None) if waiting == Waiting::Never => {
                    return Err(Stop::Wait(WaitFor::Decided));
                }
                Some(Some(ticket)) if waiting == Waiting::Never && !self.settled(ticket) => {
                    return Err(Stop::Wait(WaitFor::Durable(ticket)));
                }
                Some(None) => {
                    drop(inflight);
                    spins += 1;
                    if spins > INFLIGHT_SPINS_MAX {
                        return Err(Stop::Refused(Refusal::new(
                            Reason::Overloaded,
                            "the same request id is in flight; retry",
                        )));
                    }
                    std::thread::yield_now();
                }
                Some(Some(ticket)) => {
                    drop(inflight);
                    // Returns at once when `waiting` is `Never` (settled).
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
            self.request_decided.notify_waiters();
            Refusal::new(Reason::StorageUnavailable, e.to_string())
        })?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        self.inflight_shard(key).lock().remove(key);
        self.request_decided.notify_waiters();
        let remembered: Remembered = codec::decode(&stored, "remembered request")
            .map_err(|e| Stop::Refused(Refusal::new(Reason::StorageUnavailable, e.to_string())))?;
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
    /// ago. Counts what a sweep keeps (`requests_remembered`) and what it
    /// deletes (`voucherd_requests_pruned_total`). Takes no shard lock; the
    /// deletes are one commit, submitted under the tail lock like any other. A full commit queue skips the pass
    /// (the cursor stays, nothing is lost). A row that does not decode is
    /// left alone for start-up's checks and the operator.
    ///
    /// Deleting is safe against a retry racing it: a remembered key is never
    /// written again, and a retry that still reads the old row gets the old
    /// answer; once the delete is durable the id is new again.
    pub fn prune_requests(&self, retention_s: i64) -> Result<Pruned, Refusal> {
        assert!(retention_s > 0, "a retention is positive");
        let from = self.prune_cursor.lock().next.clone();
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
        metrics::counter!(metric_names::REQUESTS_PRUNED).increment(pruned.deleted as u64);
        let mut cursor = self.prune_cursor.lock();
        cursor.kept += (pruned.examined - pruned.deleted) as u64;
        if wrapped {
            self.requests_remembered
                .store(cursor.kept, Ordering::Relaxed);
            metrics::gauge!(metric_names::REQUESTS_REMEMBERED).set(cursor.kept as f64);
            cursor.kept = 0;
        }
        cursor.next = next;
        Ok(pruned)
    }

    /// Request ids the last complete sweep of the pruner kept (each row
    /// counted as the sweep passed it: rows added behind the cursor during
    /// the sweep count at the next one); `None` before a sweep completed.
    /// Exported as `voucherd_requests_remembered`.
    pub fn requests_remembered(&self) -> Option<u64> {
        match self.requests_remembered.load(Ordering::Relaxed) {
            u64::MAX => None,
            kept => Some(kept),
        }
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

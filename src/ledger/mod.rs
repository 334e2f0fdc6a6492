//! The ledger: the rules applied to lock-sharded in-memory indexes, each
//! accepted change sealed into the audit chain and handed to the journal.
//!
//! An operation locks what it touches (voucher, then person, then institution,
//! then the tail), asks the pure rules, submits its commit, and only then
//! changes memory. Every answer waits until the commits it may rest on are
//! durable, so nothing acknowledged — or refused — depends on a change that
//! could still be lost.

mod apply;
mod classes;
mod commit;
pub mod digest;
mod events;
mod expiry;
mod index;
mod keys;
pub mod meta;
mod read;
mod recovery;
mod replay;
mod requests;
mod rising;
mod shards;
mod standby;

use hashbrown::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bincode::{Decode, Encode};
use parking_lot::Mutex;

use crate::audit::{self, AuditRecord, GENESIS_HASH};
use crate::codec;
use crate::domain::campaign::{Campaign, Campaigns};
use crate::domain::command::{check_request_id, Command};
use crate::domain::enums::VoucherState;
use crate::domain::ids::{
    DistrictCode, IdNumber, InstitutionCode, OperatorId, PersonKey, PersonSecret, VoucherId,
};
use crate::domain::op::{
    Answer, AuditPage, Caller, CityStats, Coverage, DistrictStats, InstitutionStats, Op, Reply,
    Request, Role, StatsView, StepTimes, VoucherSummary,
};
use crate::domain::records::{figure_contributions, Figure, Institution, PersonYear, Voucher};
use crate::domain::rules::{self, Context};
use crate::domain::time::{day_text, Clock, Timestamp};
use crate::error::{Error, Reason, Refusal};
use crate::limits::{
    AUDIT_PAGE_BYTES_MAX, AUDIT_PAGE_RECORDS_MAX, AUDIT_READS_PER_FRAME_MAX, EVENTS_PER_FRAME_MAX,
    REQUEST_PRUNE_BATCH_MAX, STATS_PER_FRAME_MAX, VOUCHER_ID_MAX,
};
use crate::store::journal::{Commit, Durability, Journal, Put, Table};
use digest::StateDigest;
use index::{Districts, Packed, PersonHandle, Persons, Vouchers};
pub use keys::{decode_u64, STORE_LAYOUT_VERSION};
use shards::Shards;

use apply::{Change, Origin};
pub use commit::Pending;
use commit::{Applying, Tail};
pub use expiry::{expire_year_paced, expiry_pause_after, ExpiryPass};
pub use requests::{FrameRun, HeldRequestId, Pruned, RefusalLimits, WaitFor, Waiting};
use requests::{Inflight, Stop};

/// What a ledger needs besides its journal.
pub struct LedgerConfig {
    pub campaigns: Campaigns,
    pub secret: PersonSecret,
    pub clock: Arc<dyn Clock>,
}

pub struct Ledger {
    campaigns: Campaigns,
    secret: PersonSecret,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn Journal>,
    vouchers: Vouchers,
    persons: Persons,
    /// Every campaign district; packed vouchers name districts by index here.
    districts: Districts,
    institutions: Shards<InstitutionCode, Institution>,
    /// Every class opened (lock after the institution's lock).
    classes: classes::Classes,
    tail: Mutex<Tail>,
    /// The last ticket handed to the journal; reads wait for it.
    assigned_ticket: AtomicU64,
    next_voucher: AtomicU64,
    inflight: Vec<Inflight>,
    /// Woken whenever a request id being decided is decided (its `Inflight`
    /// entry leaves `None`), for frames applied without waiting.
    request_decided: tokio::sync::Notify,
    /// Operations that lock every shard (`expire`) running now.
    sweeps: AtomicUsize,
    /// The last sealed record's time (Unix seconds), as `Tail::time`, for
    /// `stamp` to read without the tail lock.
    record_time: AtomicI64,
    /// Where the next pass of `prune_requests` starts, and what the sweep
    /// it belongs to has kept so far.
    prune_cursor: Mutex<requests::PruneCursor>,
    /// Rows the last complete sweep of `requests` kept (`u64::MAX`: no
    /// sweep completed yet).
    requests_remembered: AtomicU64,
    /// The data return's index of events (`events`); locked after the tail.
    events: Mutex<events::EventIndex>,
    /// The sequence number of the last event noted (long polls wait on it).
    events_notice: tokio::sync::watch::Sender<u64>,
    /// Set when the daemon stops: a build of the events index still reading
    /// the chain gives up (`stop_events_index_build`).
    events_build_stop: std::sync::atomic::AtomicBool,
    /// Refusals remembered in the current second, per certificate and
    /// per institution (`may_remember_refusal`).
    refusal_rates: Mutex<requests::RefusalRates>,
    /// Replicated mode's standby: the `not_leader` message (`standby.rs`).
    standby: parking_lot::RwLock<Option<String>>,
}

/// Counts a sweep as running until dropped (even by a panic).
struct Sweeping<'a>(&'a AtomicUsize);

impl<'a> Sweeping<'a> {
    fn new(sweeps: &'a AtomicUsize) -> Sweeping<'a> {
        sweeps.fetch_add(1, Ordering::SeqCst);
        Sweeping(sweeps)
    }
}

impl Drop for Sweeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ledger {
    fn empty(config: LedgerConfig, journal: Arc<dyn Journal>) -> Ledger {
        let districts = config
            .campaigns
            .all()
            .iter()
            .flat_map(|campaign| campaign.districts.iter().map(|d| d.code))
            .collect();
        Ledger {
            campaigns: config.campaigns,
            secret: config.secret,
            clock: config.clock,
            journal,
            vouchers: Vouchers::default(),
            persons: Persons::default(),
            districts: Districts::new(districts),
            institutions: Shards::default(),
            classes: classes::Classes::default(),
            tail: Mutex::new(Tail {
                seq: 0,
                hash: GENESIS_HASH,
                time: Timestamp(i64::MIN),
                ticket: 0,
                digest: StateDigest::default(),
                figures: HashMap::new(),
                at_expiry: HashMap::new(),
                institutions_registered: 0,
            }),
            assigned_ticket: AtomicU64::new(0),
            next_voucher: AtomicU64::new(1),
            inflight: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
            request_decided: tokio::sync::Notify::new(),
            sweeps: AtomicUsize::new(0),
            record_time: AtomicI64::new(i64::MIN),
            prune_cursor: Mutex::new(requests::PruneCursor::default()),
            requests_remembered: AtomicU64::new(u64::MAX),
            events: Mutex::new(events::EventIndex::default()),
            events_notice: tokio::sync::watch::Sender::new(0),
            events_build_stop: std::sync::atomic::AtomicBool::new(false),
            refusal_rates: Mutex::new(requests::RefusalRates::default()),
            standby: parking_lot::RwLock::new(None),
        }
    }

    pub fn campaigns(&self) -> &Campaigns {
        &self.campaigns
    }

    /// Runs a batch of requests in order and waits until their answers are durable.
    /// A bare `Role` is a caller with the test certificate (`Caller::test`).
    pub fn execute(&self, caller: impl Into<Caller>, requests: &[Request]) -> Vec<Answer> {
        let pending = self.apply(caller, requests);
        self.finish(pending)
    }

    /// Decides every request of a batch, in order, without waiting for durability.
    /// Call `finish` before showing any answer to anyone.
    pub fn apply(&self, caller: impl Into<Caller>, requests: &[Request]) -> Pending {
        let mut run = FrameRun::new(caller.into(), requests);
        let stopped = self.apply_run(&mut run, Waiting::Block);
        assert!(stopped.is_none(), "a blocking apply never stops");
        self.applied(run)
    }

    /// Applies the frame's next requests without ever waiting: stops before
    /// a request that would wait (its id in flight in another frame, or an
    /// `expire` holding every shard) and says for what. Await that
    /// (`request_decided`, `durability`), then call again; `None` once every
    /// request has its answer (then `applied`).
    pub fn apply_without_waiting(&self, run: &mut FrameRun<'_>) -> Option<WaitFor> {
        self.apply_run(run, Waiting::Never)
    }

    /// The pending answers of a frame whose every request is applied.
    pub fn applied(&self, run: FrameRun<'_>) -> Pending {
        assert!(
            run.next == run.requests.len(),
            "a frame is applied to its end before its answers are taken"
        );
        let mut pending = run.pending;
        pending.ticket = pending
            .ticket
            .max(self.assigned_ticket.load(Ordering::SeqCst));
        pending
    }

    /// Answers the request a frame stopped before with `refusal` (nothing
    /// applied for it) and moves past it: for a caller that gave up waiting.
    pub fn refuse_next(&self, run: &mut FrameRun<'_>, refusal: Refusal) {
        let request = &run.requests[run.next];
        run.pending.answers.push(Answer {
            id: request.id.clone(),
            outcome: Err(refusal),
        });
        run.next += 1;
    }

    /// A wake-up for when a request id being decided is decided: enable it
    /// before `apply_without_waiting`, await it after `WaitFor::Decided`.
    pub fn request_decided(&self) -> tokio::sync::futures::Notified<'_> {
        self.request_decided.notified()
    }

    fn apply_run(&self, run: &mut FrameRun<'_>, waiting: Waiting) -> Option<WaitFor> {
        if run.next == 0 {
            // A standby answers every request `not_leader` (replicated mode).
            if let Some(answers) = self.standby_answers(run.requests) {
                run.pending.answers = answers;
                run.next = run.requests.len();
                return None;
            }
        }
        let _applying = Applying::new(&*self.journal);
        let requests = run.requests;
        while let Some(request) = requests.get(run.next) {
            if waiting == Waiting::Never && self.is_sweeping() {
                return Some(WaitFor::Sweep);
            }
            // The reads whose answers grow with the ledger are capped per
            // frame, so one frame cannot ask for gigabytes or hold the tail
            // lock for many figure walks (`limits.rs`). Reads never stop a
            // frame, so each is counted once.
            let (count, max, name) = match request.op {
                Op::AuditRead { .. } => (
                    &mut run.audit_reads,
                    AUDIT_READS_PER_FRAME_MAX,
                    "audit_read",
                ),
                Op::Stats { .. } => (&mut run.stats_reads, STATS_PER_FRAME_MAX, "stats"),
                Op::Events { .. } => (&mut run.events_reads, EVENTS_PER_FRAME_MAX, "events"),
                _ => (&mut 0, usize::MAX, ""),
            };
            *count += 1;
            if *count > max {
                run.pending.answers.push(Answer::refused(
                    &request.id,
                    Reason::InvalidRequest,
                    format!("at most {max} {name} per request frame"),
                ));
                run.next += 1;
                continue;
            }
            match self.apply_one(
                run.caller,
                request,
                &mut run.seen,
                &mut run.pending,
                waiting,
            ) {
                Ok(answer) => {
                    run.pending.answers.push(answer);
                    run.next += 1;
                }
                Err(wait) => return Some(wait),
            }
        }
        None
    }

    /// True while an operation holds every voucher and person shard
    /// (`expire`): any other operation would wait for it to finish, so the
    /// server keeps such frames off its async workers meanwhile.
    pub fn is_sweeping(&self) -> bool {
        self.sweeps.load(Ordering::SeqCst) > 0
    }

    /// Seals every campaign of this ledger that the audit chain does not
    /// hold yet as a `record_campaign` record carrying its TOML text (the
    /// text of `meta/campaign/<year>`), durably, so that a replay needs
    /// nothing but the chain. The daemon calls it at start, before serving;
    /// a data folder of an older version gets its campaigns sealed then.
    /// Returns how many it sealed.
    pub fn record_campaigns(&self) -> Result<usize, Error> {
        let mut missing = Vec::new();
        for campaign in self.campaigns.all() {
            let key = meta::campaign_sealed_key(campaign.year);
            if self.journal.get(Table::Meta, &key)?.is_none() {
                missing.push(campaign);
            }
        }
        // A missing marker usually means a campaign never sealed (a ledger
        // from before campaign records). It can also mean the marker alone
        // was lost (a damaged store file): the chain itself decides, read
        // once, so a campaign is never sealed twice.
        let in_chain = if missing.is_empty() {
            Vec::new()
        } else {
            self.campaign_years_in_chain()?
        };
        let mut sealed = 0;
        for campaign in missing {
            let year = campaign.year;
            if in_chain.contains(&year) {
                continue;
            }
            let command = Command::RecordCampaign {
                year,
                text: campaign.to_toml(),
            };
            let request_id = format!("campaign/{year}");
            let origin = Origin {
                caller: Caller::new(Role::Bureau, Caller::DAEMON_CERTIFICATE),
                request_id: &request_id,
                time: std::cell::Cell::new(self.clock.now()),
                fixed_time: false,
                restamp: std::cell::Cell::new(false),
                remember: None,
                record_version: audit::AUDIT_RECORD_VERSION,
                logged: false,
            };
            match self.apply_command(&origin, &command, None) {
                (Ok(_), Some(ticket)) => self
                    .journal
                    .wait_durable(ticket)
                    .map_err(|refusal| Error::Storage(refusal.message))?,
                (outcome, _) => {
                    return Err(Error::Storage(format!(
                        "campaign {year} could not be sealed in the audit chain: {outcome:?}"
                    )))
                }
            }
            sealed += 1;
        }
        Ok(sealed)
    }

    /// The years whose campaign records are in the audit chain (a full read
    /// of the chain: only when a marker is missing).
    fn campaign_years_in_chain(&self) -> Result<Vec<u16>, Error> {
        let mut years = Vec::new();
        self.journal.scan(Table::Audit, &mut |_, entry| {
            let (record, _) = audit::open(entry).map_err(Error::Corrupt)?;
            if let Command::RecordCampaign { year, .. } = record.command {
                years.push(year);
            }
            Ok(())
        })?;
        Ok(years)
    }

    /// Where async callers await durability before `finish` (see `Journal::durability`).
    pub fn durability(&self) -> Option<tokio::sync::watch::Receiver<Durability>> {
        self.journal.durability()
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal::new(Reason::StorageUnavailable, error.to_string())
    }
}

/// The allocator's own hand-back of free memory, when the binary's
/// allocator has one (`set_memory_returner`; voucherd's mimalloc, D118).
static MEMORY_RETURNER: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what `return_freed_memory` calls besides glibc's `malloc_trim`:
/// the binary that chose the global allocator knows how it returns memory.
/// The first call wins.
pub fn set_memory_returner(returner: fn()) {
    let _ = MEMORY_RETURNER.set(returner);
}

/// Hands the memory a start-up step freed (the blocks of vectors that grew,
/// rows decoded, the holders' pairs) back to the system, so the resident
/// size is what the indexes hold (after recovery and after the events
/// index is built): the binary's returner if one is set, then glibc's trim.
fn return_freed_memory() {
    if let Some(returner) = MEMORY_RETURNER.get() {
        returner();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Shared helpers for the integration tests: a ledger on a memory journal with
//! a hand-moved clock, request builders, seeds, and the ledgers the shared
//! test kit's workload drives (`voucherd_load::kit`, which also holds the
//! synthetic ID numbers and the one `voucherd` process wrapper).
#![allow(dead_code)]

pub mod daemon;

use std::sync::Arc;

use voucherd::domain::campaign::{Campaign, Campaigns};
use voucherd::domain::enums::{Category, Channel, ClassMode, Kind};
use voucherd::domain::ids::{DistrictCode, InstitutionCode, OperatorId, PersonSecret, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role};
use voucherd::domain::time::{ManualClock, Timestamp};
use voucherd::ledger::{Ledger, LedgerConfig};
use voucherd::store::journal::MemoryJournal;

/// Reason codes declared but not yet produced by any operation: replicated
/// mode (issue 20). Whoever builds one removes it
/// here, so the tests that walk every code demand it from then on.
pub const NOT_YET_BUILT: &[voucherd::error::Reason] = &[];

/// 2026-11-29 09:00 in Chongqing: the default campaign (2026) is open.
pub const NOW: Timestamp = Timestamp(1_795_914_000);
/// The default campaign's deadline: 2026-11-30T23:59:59+08:00.
pub const DEADLINE: Timestamp = Timestamp(1_796_054_399);

/// A training site in Chongqing (Jiefangbei) and a point 2 km away; the
/// synthetic ID numbers and the registration the kit's workload uses too.
pub use voucherd_load::kit::workload::{authorise, bad_id_number, id_number, register, FAR, SITE};

pub struct Harness {
    pub ledger: Arc<Ledger>,
    pub journal: Arc<MemoryJournal>,
    pub clock: Arc<ManualClock>,
    next_request: std::sync::atomic::AtomicU64,
}

pub fn campaigns() -> Campaigns {
    Campaigns::new(vec![Campaign::default_for(NOW)]).unwrap()
}

pub fn secret() -> PersonSecret {
    PersonSecret([7; 32])
}

impl Harness {
    pub fn new() -> Harness {
        let journal = Arc::new(MemoryJournal::default());
        Harness::on(journal)
    }

    /// A ledger reopened over an existing memory journal (recovery).
    pub fn on(journal: Arc<MemoryJournal>) -> Harness {
        let clock = Arc::new(ManualClock::new(NOW));
        let config = LedgerConfig {
            campaigns: campaigns(),
            secret: secret(),
            clock: clock.clone(),
        };
        let ledger = Arc::new(Ledger::open(config, journal.clone()).expect("ledger opens"));
        Harness {
            ledger,
            journal,
            clock,
            next_request: Default::default(),
        }
    }

    /// A harness around a ledger opened elsewhere over `journal`.
    pub fn around(ledger: Ledger, journal: Arc<MemoryJournal>, clock: Arc<ManualClock>) -> Harness {
        Harness {
            ledger: Arc::new(ledger),
            journal,
            clock,
            next_request: Default::default(),
        }
    }

    pub fn request_id(&self) -> String {
        let n = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("req-{n}")
    }

    /// Runs one operation as `role` with a fresh request id.
    pub fn run(&self, role: Role, op: Op) -> Answer {
        let request = Request {
            id: self.request_id(),
            op,
        };
        self.ledger.execute(role, &[request]).remove(0)
    }

    /// Runs and expects acceptance; returns the reply.
    pub fn ok(&self, role: Role, op: Op) -> Reply {
        let answer = self.run(role, op.clone());
        match answer.outcome {
            Ok(reply) => reply,
            Err(refusal) => panic!("{op:?} refused: {} ({})", refusal.reason, refusal.message),
        }
    }

    /// Runs and returns the reason code of a refusal (panics if accepted).
    pub fn reason(&self, role: Role, op: Op) -> &'static str {
        match self.run(role, op.clone()).outcome {
            Ok(reply) => panic!("{op:?} was accepted: {reply:?}"),
            Err(refusal) => refusal.reason.as_str(),
        }
    }

    /// Registers an institution in 500101 with one site at `SITE`,
    /// authorises `operator` and opens, by it, an onsite class for every
    /// kind for the whole campaign (`kit_class`), since every redeem names
    /// an opened class (D51).
    pub fn institution(&self, code: &str, admin: &str, operator: &str) {
        self.ok(Role::Bureau, register(code, "500101", admin));
        self.ok(Role::Gateway, authorise(code, admin, operator));
        for op in kit_classes(code, operator) {
            self.ok(Role::Gateway, op);
        }
    }

    /// Issues a voucher of `kind` to `person`; returns its id.
    pub fn issue(&self, person: &str, kind: Kind) -> VoucherId {
        match self.ok(Role::Bureau, issue(person, kind)) {
            Reply::Issued { voucher } => voucher,
            other => panic!("issue answered {other:?}"),
        }
    }

    /// Issues and claims.
    pub fn claimed(&self, person: &str, kind: Kind) -> VoucherId {
        let voucher = self.issue(person, kind);
        self.ok(
            Role::Gateway,
            Op::Claim {
                voucher,
                id_number: person.into(),
            },
        );
        voucher
    }

    /// Issues, claims and redeems at `institution` by `operator`.
    pub fn redeemed(
        &self,
        person: &str,
        kind: Kind,
        institution: &str,
        operator: &str,
    ) -> VoucherId {
        let voucher = self.claimed(person, kind);
        self.ok(
            Role::Gateway,
            redeem_in(voucher, institution, operator, &kit_class(kind)),
        );
        voucher
    }

    /// A redeem naming the `kit_class` of the voucher's kind (read from the
    /// ledger; `KIT_CLASS` for an unknown voucher).
    pub fn redeem(&self, voucher: VoucherId, institution: &str, operator: &str) -> Op {
        redeem_for(&self.ledger, voucher, institution, operator)
    }

    pub fn head(&self) -> (u64, String) {
        let (seq, _, digest) = self.ledger.head();
        (seq, digest)
    }
}

pub fn issue(person: &str, kind: Kind) -> Op {
    Op::Issue {
        id_number: person.into(),
        category: Category::RuralMigrant,
        kind,
        face_value_fen: 80_000,
        channel: Channel::Wechat,
        district: "500101".parse().unwrap(),
        year: None,
    }
}

/// `open_class` of `institution` by `operator`, with the institution's sites
/// when onsite.
pub fn open_class(
    institution: &str,
    operator: &str,
    class: &str,
    kind: Kind,
    (first_day, last_day): (&str, &str),
    mode: ClassMode,
) -> Op {
    Op::OpenClass {
        institution: institution.parse().unwrap(),
        operator: operator.parse().unwrap(),
        class: class.parse().unwrap(),
        kind,
        first_day: first_day.into(),
        last_day: last_day.into(),
        mode,
        sites: None,
    }
}

/// The class `Harness::institution` opens for `kind`: `KIT_CLASS` for
/// employment skills (the kind of most tests), else the workload's code.
pub fn kit_class(kind: Kind) -> String {
    match kind {
        Kind::EmploymentSkills => KIT_CLASS.into(),
        other => format!("kit-{}", voucherd::domain::enums::wire_name(other)),
    }
}

/// The class `redeem` names: the employment-skills class of every
/// institution `Harness::institution` sets up.
pub const KIT_CLASS: &str = "kit-employment_skills";

/// `open_class` of every kind's `kit_class` at `code`, onsite at its sites,
/// for the whole default campaign.
pub fn kit_classes(code: &str, operator: &str) -> Vec<Op> {
    kit_classes_of(code, operator, campaigns().current().year)
}

/// `kit_classes` over the days of the campaign of `year`.
pub fn kit_classes_of(code: &str, operator: &str, year: u16) -> Vec<Op> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let first = format!("{}-12-01", year - 1);
            let last = format!("{year}-11-30");
            let class = kit_class(kind);
            open_class(
                code,
                operator,
                &class,
                kind,
                (&first, &last),
                ClassMode::Onsite,
            )
        })
        .collect()
}

/// A redeem naming `KIT_CLASS` (an employment-skills voucher).
pub fn redeem(voucher: VoucherId, institution: &str, operator: &str) -> Op {
    redeem_in(voucher, institution, operator, KIT_CLASS)
}

/// A redeem naming the `kit_class` of the voucher's kind, read from
/// `ledger` (`KIT_CLASS` for an unknown voucher).
pub fn redeem_for(ledger: &Ledger, voucher: VoucherId, institution: &str, operator: &str) -> Op {
    let read = Request {
        id: "kind".into(),
        op: Op::GetVoucher { voucher },
    };
    let class = match ledger.execute(Role::Auditor, &[read]).remove(0).outcome {
        Ok(Reply::Voucher(view)) => kit_class(view.kind),
        _ => KIT_CLASS.into(),
    };
    redeem_in(voucher, institution, operator, &class)
}

/// A redeem naming `class`.
pub fn redeem_in(voucher: VoucherId, institution: &str, operator: &str, class: &str) -> Op {
    Op::Redeem {
        voucher,
        institution: institution.parse::<InstitutionCode>().unwrap(),
        operator: operator.parse::<OperatorId>().unwrap(),
        class: class.into(),
    }
}

pub fn district(code: &str) -> Role {
    Role::District(code.parse::<DistrictCode>().unwrap())
}

// ---------------------------------------------------------------------------
// Helpers for the race, durability and replay tests: seeds, a driver that
// works on both the memory journal and the RocksDB store, on which the kit's
// seeded random workload runs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use voucherd::domain::time::Clock;

use rand::rngs::StdRng;
use rand::SeedableRng;
use voucherd::domain::op::{StatsView, VoucherView};
use voucherd::error::Error;
use voucherd::store::Store;

/// The seed of randomized tests when `VOUCHERD_SEED` is not set: `make test`
/// is deterministic.
pub const DEFAULT_SEED: u64 = 20_211_130;

/// The seed of a randomized test: `VOUCHERD_SEED` (a number, or `time` for the
/// clock, as the soak tier uses), else `DEFAULT_SEED`. Printed so a failure
/// can be rerun with the same choices.
pub fn seed() -> u64 {
    let seed = match std::env::var("VOUCHERD_SEED") {
        Ok(text) if text.trim() == "time" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64,
        Ok(text) => text
            .trim()
            .parse()
            .expect("VOUCHERD_SEED must be a u64 or `time`"),
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("seed {seed} (rerun with VOUCHERD_SEED={seed})");
    seed
}

/// A random generator from `seed()` (the seed is printed).
pub fn seeded_rng() -> (u64, StdRng) {
    let seed = seed();
    (seed, StdRng::seed_from_u64(seed))
}

/// A ledger and a source of fresh request ids: the memory `Harness` or `Disk`.
/// A `Target` of the kit's workload too.
pub trait Drive: Sync + Target {
    fn ledger(&self) -> &Ledger;
    fn clock(&self) -> &ManualClock;
    fn fresh_request_id(&self) -> String;

    /// Runs one operation with a fresh request id; returns the request and its answer.
    fn send(&self, role: Role, op: Op) -> (Request, Answer) {
        let request = Request {
            id: self.fresh_request_id(),
            op,
        };
        let answer = self
            .ledger()
            .execute(role, std::slice::from_ref(&request))
            .remove(0);
        (request, answer)
    }

    /// Runs one operation and expects acceptance.
    fn accept(&self, role: Role, op: Op) -> Reply {
        let (request, answer) = self.send(role, op);
        match answer.outcome {
            Ok(reply) => reply,
            Err(refusal) => panic!(
                "{:?} refused: {} ({})",
                request.op, refusal.reason, refusal.message
            ),
        }
    }

    /// Runs one operation and returns the reason code of its refusal, or "ok".
    fn outcome(&self, role: Role, op: Op) -> &'static str {
        match self.send(role, op).1.outcome {
            Ok(_) => "ok",
            Err(refusal) => refusal.reason.as_str(),
        }
    }

    fn view(&self, voucher: VoucherId) -> VoucherView {
        match self.accept(Role::Auditor, Op::GetVoucher { voucher }) {
            Reply::Voucher(view) => *view,
            other => panic!("get_voucher answered {other:?}"),
        }
    }

    fn city_stats(&self) -> StatsView {
        match self.accept(
            Role::Bureau,
            Op::Stats {
                district: None,
                year: None,
            },
        ) {
            Reply::Stats(stats) => *stats,
            other => panic!("stats answered {other:?}"),
        }
    }

    /// Issues `kinds` to `person` and claims them, one batch each (one commit wait).
    fn claimed_batch(&self, person: &str, kinds: &[Kind]) -> Vec<VoucherId> {
        let issues: Vec<Request> = kinds
            .iter()
            .map(|&kind| Request {
                id: self.fresh_request_id(),
                op: issue(person, kind),
            })
            .collect();
        let vouchers: Vec<VoucherId> = self
            .ledger()
            .execute(Role::Bureau, &issues)
            .into_iter()
            .map(|answer| match answer.outcome {
                Ok(Reply::Issued { voucher }) => voucher,
                other => panic!("issue answered {other:?}"),
            })
            .collect();
        let claims: Vec<Request> = vouchers
            .iter()
            .map(|&voucher| Request {
                id: self.fresh_request_id(),
                op: Op::Claim {
                    voucher,
                    id_number: person.into(),
                },
            })
            .collect();
        for answer in self.ledger().execute(Role::Gateway, &claims) {
            assert!(
                answer.outcome.is_ok(),
                "claim answered {:?}",
                answer.outcome
            );
        }
        vouchers
    }
}

impl Drive for Harness {
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    fn clock(&self) -> &ManualClock {
        &self.clock
    }
    fn fresh_request_id(&self) -> String {
        self.request_id()
    }
}

/// A ledger on the real RocksDB store of a data folder (`voucherd::admin::data_dir::open`).
pub struct Disk {
    pub ledger: Arc<Ledger>,
    pub store: Arc<Store>,
    pub clock: Arc<ManualClock>,
    prefix: String,
    next_request: AtomicU64,
}

impl Disk {
    /// Opens (or creates) the data folder with the default campaign and a
    /// manual clock at `NOW`. Request ids are `{prefix}-{n}`.
    pub fn open(data: &Path, prefix: &str) -> Disk {
        Disk::open_at(data, prefix, Arc::new(ManualClock::new(NOW))).expect("data folder opens")
    }

    pub fn open_at(data: &Path, prefix: &str, clock: Arc<ManualClock>) -> Result<Disk, Error> {
        Disk::open_with(
            data,
            prefix,
            clock,
            voucherd::limits::STORAGE_FREE_BYTES_MIN,
        )
    }

    /// `open_at` with another free-space reserve for the store, bytes.
    pub fn open_with(
        data: &Path,
        prefix: &str,
        clock: Arc<ManualClock>,
        free_bytes_min: u64,
    ) -> Result<Disk, Error> {
        let opened = voucherd::admin::data_dir::open_with(
            data,
            Campaign::default_for(NOW),
            clock.clone(),
            free_bytes_min,
        )?;
        Ok(Disk {
            ledger: opened.ledger,
            store: opened.store,
            clock,
            prefix: prefix.to_owned(),
            next_request: AtomicU64::new(0),
        })
    }
}

impl Drive for Disk {
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    fn clock(&self) -> &ManualClock {
        &self.clock
    }
    fn fresh_request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::SeqCst);
        format!("{}-{n}", self.prefix)
    }
}

// The one random workload and its model live in the kit (`voucherd_load::kit`),
// shared with `voucher-crash`; the tests drive it on their ledgers.

pub use voucherd_load::kit::workload::{Target, Workload};

/// A workload of `persons` people (ID numbers `id_number(0..persons)`) on the
/// default campaign, from `seed`.
pub fn workload(seed: u64, persons: usize) -> Workload {
    Workload::new(seed, persons, Campaign::default_for(NOW).year)
}

/// The workload drives the memory `Harness` and the RocksDB `Disk` alike.
macro_rules! workload_target {
    ($driver:ty) => {
        impl Target for $driver {
            fn submit(&self, role: Role, op: Op) -> (Request, Answer) {
                self.send(role, op)
            }
            fn advance(&self, seconds: i64) {
                let to = (self.clock().now().0 + seconds).min(DEADLINE.0 - 1);
                self.clock().set(Timestamp(to));
            }
            fn read(&self, voucher: VoucherId) -> VoucherView {
                self.view(voucher)
            }
        }
    };
}
workload_target!(Harness);
workload_target!(Disk);

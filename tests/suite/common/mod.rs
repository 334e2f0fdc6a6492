//! Shared helpers for the integration tests: a ledger on a memory journal with
//! a hand-moved clock, valid ID numbers, and request builders.
#![allow(dead_code)]

pub mod daemon;

use std::sync::Arc;

use voucherd::domain::campaign::{Campaign, Campaigns};
use voucherd::domain::enums::{Category, Channel, InstitutionType, Kind};
use voucherd::domain::ids::{
    DistrictCode, IdNumber, InstitutionCode, OperatorId, PersonSecret, VoucherId,
};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec};
use voucherd::domain::time::{ManualClock, Timestamp};
use voucherd::ledger::{Ledger, LedgerConfig};
use voucherd::store::journal::MemoryJournal;

/// 2026-11-29 09:00 in Chongqing: the default campaign (2026) is open.
pub const NOW: Timestamp = Timestamp(1_795_914_000);
/// The default campaign's deadline: 2026-11-30T23:59:59+08:00.
pub const DEADLINE: Timestamp = Timestamp(1_796_054_399);

/// A training site in Chongqing (Jiefangbei) and a point 2 km away.
pub const SITE: (f64, f64) = (29.5576, 106.5775);
pub const FAR: (f64, f64) = (29.5756, 106.5775);

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

    /// Registers an institution in 500101 with one site at `SITE` and
    /// authorises `operator`.
    pub fn institution(&self, code: &str, admin: &str, operator: &str) {
        self.ok(Role::Bureau, register(code, "500101", admin));
        self.ok(Role::Gateway, authorise(code, admin, operator));
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
        self.ok(Role::Gateway, redeem(voucher, institution, operator));
        voucher
    }

    pub fn head(&self) -> (u64, String) {
        let (seq, _, digest) = self.ledger.head();
        (seq, digest)
    }
}

/// The n-th synthetic resident ID number (valid GB 11643 check digit).
pub fn id_number(n: u64) -> String {
    IdNumber::synthetic("5001011990", n)
}

/// An ID number whose check digit is wrong.
pub fn bad_id_number() -> String {
    let good = id_number(1);
    let last = if good.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &good[..17])
}

pub fn register(code: &str, district: &str, admin: &str) -> Op {
    Op::RegisterInstitution {
        code: code.parse().unwrap(),
        name: format!("培训机构 {code}"),
        district: district.parse().unwrap(),
        address: "重庆市渝中区解放碑".into(),
        phone: "023-88126902".into(),
        kind: InstitutionType::PrivateSchool,
        admin_name: "刘路".into(),
        admin_id_number: admin.into(),
        sites: vec![SiteSpec {
            lat: SITE.0,
            lon: SITE.1,
            radius_m: None,
        }],
    }
}

pub fn authorise(code: &str, admin: &str, operator: &str) -> Op {
    Op::AuthoriseOperator {
        institution: code.parse().unwrap(),
        admin_id_number: admin.into(),
        operator: operator.parse().unwrap(),
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

pub fn redeem(voucher: VoucherId, institution: &str, operator: &str) -> Op {
    Op::Redeem {
        voucher,
        institution: institution.parse::<InstitutionCode>().unwrap(),
        operator: operator.parse::<OperatorId>().unwrap(),
        class: "电工初级 2026 冬".into(),
    }
}

pub fn district(code: &str) -> Role {
    Role::District(code.parse::<DistrictCode>().unwrap())
}

// ---------------------------------------------------------------------------
// Helpers for the race, durability and replay tests: seeds, a driver that
// works on both the memory journal and the RocksDB store, and a seeded random
// workload that keeps a model of every voucher from the answers it got.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use voucherd::domain::time::Clock;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use voucherd::domain::enums::VoucherState;
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
pub trait Drive: Sync {
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

/// The districts the workload's institutions and vouchers use.
pub const WORKLOAD_DISTRICTS: [&str; 4] = ["500101", "500102", "500103", "LJXQ"];

/// What the workload knows of a voucher, from the answers it got.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracked {
    pub holder: usize,
    pub kind: Kind,
    pub face_value_fen: u64,
    pub district: String,
    pub state: VoucherState,
    /// Index of the institution it is redeemed at.
    pub institution: Option<usize>,
    pub checkins: u32,
    pub score: Option<u8>,
    pub settled_fen: Option<u64>,
}

/// An institution of the workload and its current admin and operators.
#[derive(Clone, Debug)]
pub struct TrackedInstitution {
    pub code: String,
    pub district: String,
    pub admin: String,
    pub operators: Vec<String>,
}

/// One request the workload sent and the answer it got.
#[derive(Clone, Debug)]
pub struct Sent {
    pub role: Role,
    pub request: Request,
    pub answer: Answer,
}

/// A seeded random mix of every changing operation, valid and invalid, over
/// `persons` people and a handful of institutions, moving the clock forward
/// but staying before the deadline.
pub struct Workload {
    pub rng: StdRng,
    pub persons: usize,
    /// First person number (so two workloads can use different people).
    pub person_base: u64,
    /// Institution code prefix digit (so two workloads can use different institutions).
    pub institution_base: u32,
    pub institutions: Vec<TrackedInstitution>,
    pub vouchers: Vec<(VoucherId, Tracked)>,
    pub index: HashMap<VoucherId, usize>,
    pub sent: Vec<Sent>,
    /// Accepted changes, i.e. audit records written.
    pub accepted_changes: u64,
}

impl Workload {
    pub fn new(seed: u64, persons: usize) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            persons,
            person_base: 0,
            institution_base: 5_000_000,
            institutions: Vec::new(),
            vouchers: Vec::new(),
            index: HashMap::new(),
            sent: Vec::new(),
            accepted_changes: 0,
        }
    }

    pub fn person(&self, n: usize) -> String {
        id_number(self.person_base + n as u64)
    }

    fn admin_number(&mut self) -> String {
        id_number(900_000 + self.rng.gen_range(0..50_000))
    }

    /// Registers `count` institutions (one per district in turn) with two operators each.
    pub fn setup<D: Drive>(&mut self, d: &D, count: usize) {
        for i in 0..count {
            let code = format!(
                "{:07}",
                self.institution_base + self.institutions.len() as u32
            );
            let district = WORKLOAD_DISTRICTS[i % WORKLOAD_DISTRICTS.len()];
            let admin = self.admin_number();
            self.apply(d, Role::Bureau, register(&code, district, &admin));
            for j in 0..2 {
                let operator = format!("op-{code}-{j}");
                self.apply(d, Role::Gateway, authorise(&code, &admin, &operator));
            }
        }
    }

    /// Sends one operation, records it, and updates the model from the answer.
    pub fn apply<D: Drive>(&mut self, d: &D, role: Role, op: Op) -> Answer {
        let (request, answer) = d.send(role, op);
        self.learn(role, &request, &answer);
        answer
    }

    /// Updates the model from one answered request.
    pub fn learn(&mut self, role: Role, request: &Request, answer: &Answer) {
        self.sent.push(Sent {
            role,
            request: request.clone(),
            answer: answer.clone(),
        });
        let Ok(reply) = &answer.outcome else { return };
        if request.op.is_read() {
            return;
        }
        self.accepted_changes += 1;
        match (&request.op, reply) {
            (
                Op::RegisterInstitution {
                    code,
                    district,
                    admin_id_number,
                    ..
                },
                _,
            ) => {
                self.institutions.push(TrackedInstitution {
                    code: code.to_string(),
                    district: district.to_string(),
                    admin: admin_id_number.clone(),
                    operators: Vec::new(),
                });
            }
            (
                Op::Issue {
                    id_number,
                    kind,
                    face_value_fen,
                    district,
                    ..
                },
                Reply::Issued { voucher },
            ) => {
                let holder = (0..self.persons)
                    .find(|&n| id_number == &id_number_of(self.person_base + n as u64))
                    .expect("the workload issues to its own persons");
                self.index.insert(*voucher, self.vouchers.len());
                self.vouchers.push((
                    *voucher,
                    Tracked {
                        holder,
                        kind: *kind,
                        face_value_fen: *face_value_fen,
                        district: district.to_string(),
                        state: VoucherState::Issued,
                        institution: None,
                        checkins: 0,
                        score: None,
                        settled_fen: None,
                    },
                ));
            }
            (Op::Claim { voucher, .. }, _) => self.tracked(voucher).state = VoucherState::Claimed,
            (
                Op::Redeem {
                    voucher,
                    institution,
                    ..
                },
                Reply::Redeemed { .. },
            ) => {
                let at = self
                    .institutions
                    .iter()
                    .position(|i| i.code == institution.to_string());
                let voucher = self.tracked(voucher);
                voucher.state = VoucherState::Redeemed;
                voucher.institution = at;
            }
            (Op::Checkin { voucher, .. }, Reply::CheckedIn { checkins, .. }) => {
                self.tracked(voucher).checkins = *checkins
            }
            (Op::Complete { voucher, .. }, _) => {
                self.tracked(voucher).state = VoucherState::Completed
            }
            (Op::Evaluate { voucher, score, .. }, _) => self.tracked(voucher).score = Some(*score),
            (
                Op::Settle {
                    voucher,
                    amount_fen,
                },
                _,
            ) => {
                let voucher = self.tracked(voucher);
                voucher.state = VoucherState::Settled;
                voucher.settled_fen = Some(*amount_fen);
            }
            (Op::Release { voucher, .. }, _) => {
                let voucher = self.tracked(voucher);
                voucher.state = VoucherState::Claimed;
                voucher.institution = None;
                voucher.checkins = 0;
            }
            (Op::Expire { .. }, Reply::Expired { .. }) => {
                for (_, voucher) in &mut self.vouchers {
                    if matches!(
                        voucher.state,
                        VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
                    ) {
                        voucher.state = VoucherState::Expired;
                    }
                }
            }
            (
                Op::SetInstitutionAdmin {
                    institution,
                    admin_id_number,
                    ..
                },
                _,
            ) => {
                let code = institution.to_string();
                if let Some(tracked) = self.institutions.iter_mut().find(|i| i.code == code) {
                    if &tracked.admin != admin_id_number {
                        tracked.admin = admin_id_number.clone();
                        tracked.operators.clear();
                    }
                }
            }
            (
                Op::AuthoriseOperator {
                    institution,
                    operator,
                    ..
                },
                _,
            ) => {
                let code = institution.to_string();
                if let Some(tracked) = self.institutions.iter_mut().find(|i| i.code == code) {
                    if !tracked.operators.contains(&operator.to_string()) {
                        tracked.operators.push(operator.to_string());
                    }
                }
            }
            (
                Op::RevokeOperator {
                    institution,
                    operator,
                    ..
                },
                _,
            ) => {
                let code = institution.to_string();
                if let Some(tracked) = self.institutions.iter_mut().find(|i| i.code == code) {
                    tracked.operators.retain(|o| o != operator.as_str());
                }
            }
            _ => {}
        }
    }

    fn tracked(&mut self, voucher: &VoucherId) -> &mut Tracked {
        let position = self.index[voucher];
        &mut self.vouchers[position].1
    }

    /// A voucher id: mostly one in a wanted state, sometimes any, rarely unknown.
    fn pick_voucher(&mut self, wanted: &[VoucherState]) -> VoucherId {
        if self.vouchers.is_empty() || self.rng.gen_bool(0.02) {
            return VoucherId(9_000_000 + self.rng.gen_range(0..1000));
        }
        if self.rng.gen_bool(0.85) {
            let fitting: Vec<VoucherId> = self
                .vouchers
                .iter()
                .filter(|(_, v)| wanted.contains(&v.state))
                .map(|(id, _)| *id)
                .collect();
            if let Some(id) = fitting.choose(&mut self.rng) {
                return *id;
            }
        }
        self.vouchers.choose(&mut self.rng).expect("not empty").0
    }

    fn holder_of(&mut self, voucher: VoucherId) -> String {
        match self.index.get(&voucher) {
            Some(&position) if self.rng.gen_bool(0.9) => {
                let holder = self.vouchers[position].1.holder;
                self.person(holder)
            }
            _ => {
                let n = self.rng.gen_range(0..self.persons);
                self.person(n)
            }
        }
    }

    /// The voucher's institution (mostly), or any.
    fn institution_of(&mut self, voucher: VoucherId) -> usize {
        let at = self
            .index
            .get(&voucher)
            .and_then(|&position| self.vouchers[position].1.institution);
        match at {
            Some(at) if self.rng.gen_bool(0.85) => at,
            _ => self.rng.gen_range(0..self.institutions.len()),
        }
    }

    /// Sends one random operation (or moves the clock).
    pub fn step<D: Drive>(&mut self, d: &D) {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=3 => {
                // Move the clock forward, staying before the deadline.
                let now = d.clock().now().0;
                let to = (now + self.rng.gen_range(1..=900)).min(DEADLINE.0 - 1);
                d.clock().set(Timestamp(to));
            }
            4..=14 => {
                let person = self.rng.gen_range(0..self.persons);
                let id = if self.rng.gen_bool(0.02) {
                    bad_id_number()
                } else {
                    self.person(person)
                };
                let kind = *Kind::ALL.choose(&mut self.rng).expect("kinds");
                let district = if self.rng.gen_bool(0.03) {
                    "500199".to_owned()
                } else {
                    WORKLOAD_DISTRICTS
                        .choose(&mut self.rng)
                        .expect("districts")
                        .to_string()
                };
                let face_value_fen = if self.rng.gen_bool(0.02) {
                    0
                } else {
                    self.rng.gen_range(1..=20) * 10_000
                };
                let op = Op::Issue {
                    id_number: id,
                    category: *voucherd::domain::enums::Category::ALL
                        .choose(&mut self.rng)
                        .expect("categories"),
                    kind,
                    face_value_fen,
                    channel: *Channel::ALL.choose(&mut self.rng).expect("channels"),
                    district: district.parse().expect("district code"),
                    year: None,
                };
                self.apply(d, Role::Bureau, op);
            }
            15..=27 => {
                let voucher = self.pick_voucher(&[VoucherState::Issued]);
                let id_number = self.holder_of(voucher);
                self.apply(d, Role::Gateway, Op::Claim { voucher, id_number });
            }
            28..=44 => {
                let voucher = self.pick_voucher(&[VoucherState::Claimed]);
                let at = self.rng.gen_range(0..self.institutions.len());
                let institution = self.institutions[at].clone();
                let operator = match institution.operators.choose(&mut self.rng) {
                    Some(operator) if self.rng.gen_bool(0.9) => operator.clone(),
                    _ => format!("op-stranger-{}", self.rng.gen_range(0..3)),
                };
                let op = Op::Redeem {
                    voucher,
                    institution: institution.code.parse().expect("code"),
                    operator: operator.parse().expect("operator"),
                    class: format!("班级 {}", self.rng.gen_range(0..20)),
                };
                self.apply(d, Role::Gateway, op);
            }
            45..=54 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                let (lat, lon) = if self.rng.gen_bool(0.85) { SITE } else { FAR };
                self.apply(d, Role::Gateway, Op::Checkin { voucher, lat, lon });
            }
            55..=63 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = self.institutions[at].code.parse().expect("code");
                self.apply(
                    d,
                    Role::Gateway,
                    Op::Complete {
                        voucher,
                        institution,
                    },
                );
            }
            64..=70 => {
                let voucher = self.pick_voucher(&[VoucherState::Completed, VoucherState::Settled]);
                let id_number = self.holder_of(voucher);
                let score = if self.rng.gen_bool(0.03) {
                    6
                } else {
                    self.rng.gen_range(1..=5)
                };
                let comment = match self.rng.gen_range(0..4) {
                    0 => Some("老师讲得很好".to_owned()),
                    1 => Some("x".repeat(self.rng.gen_range(150..=210))),
                    _ => None,
                };
                let op = Op::Evaluate {
                    voucher,
                    id_number,
                    score,
                    comment,
                };
                self.apply(d, Role::Gateway, op);
            }
            71..=78 => {
                let voucher = self.pick_voucher(&[VoucherState::Completed]);
                let at = self.institution_of(voucher);
                let district = self.institutions[at].district.clone();
                let face = self
                    .index
                    .get(&voucher)
                    .map_or(100_000, |&p| self.vouchers[p].1.face_value_fen);
                let amount_fen = if self.rng.gen_bool(0.05) {
                    face + 1
                } else {
                    self.rng.gen_range(0..=face)
                };
                let role = Role::District(district.parse().expect("district"));
                self.apply(
                    d,
                    role,
                    Op::Settle {
                        voucher,
                        amount_fen,
                    },
                );
            }
            79..=88 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = self.institutions[at].code.parse().expect("code");
                self.apply(
                    d,
                    Role::Gateway,
                    Op::Release {
                        voucher,
                        institution,
                    },
                );
            }
            89..=91 => {
                let at = self.rng.gen_range(0..self.institutions.len());
                let institution = self.institutions[at].clone();
                let admin = if self.rng.gen_bool(0.9) {
                    institution.admin.clone()
                } else {
                    self.admin_number()
                };
                let operator = format!("op-{}-{}", institution.code, self.rng.gen_range(0..4));
                let op = if self.rng.gen_bool(0.6) {
                    authorise(&institution.code, &admin, &operator)
                } else {
                    Op::RevokeOperator {
                        institution: institution.code.parse().expect("code"),
                        admin_id_number: admin,
                        operator: operator.parse().expect("operator"),
                    }
                };
                self.apply(d, Role::Gateway, op);
            }
            92 => {
                let at = self.rng.gen_range(0..self.institutions.len());
                let institution = self.institutions[at].clone();
                let admin = if self.rng.gen_bool(0.3) {
                    institution.admin.clone()
                } else {
                    self.admin_number()
                };
                let op = Op::SetInstitutionAdmin {
                    institution: institution.code.parse().expect("code"),
                    admin_name: "王芳".into(),
                    admin_id_number: admin,
                };
                self.apply(d, Role::Bureau, op);
            }
            93 => {
                // A duplicate registration, or one in a district outside the campaign.
                let at = self.rng.gen_range(0..self.institutions.len());
                let code = self.institutions[at].code.clone();
                let admin = self.admin_number();
                let op = if self.rng.gen_bool(0.5) {
                    register(&code, "500101", &admin)
                } else {
                    register("4999999", "500199", &admin)
                };
                self.apply(d, Role::Bureau, op);
            }
            94 => {
                let year = Campaign::default_for(NOW).year;
                self.apply(d, Role::Bureau, Op::Expire { year });
            }
            95 => {
                // A caller whose role may not run the operation.
                let voucher = self.pick_voucher(&[VoucherState::Claimed]);
                self.apply(
                    d,
                    Role::Auditor,
                    Op::Release {
                        voucher,
                        institution: "5000000".parse().expect("code"),
                    },
                );
            }
            96..=97 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                self.apply(d, Role::Auditor, Op::GetVoucher { voucher });
            }
            _ => {
                let district = WORKLOAD_DISTRICTS.choose(&mut self.rng).expect("districts");
                self.apply(
                    d,
                    Role::Bureau,
                    Op::Stats {
                        district: Some(district.parse().expect("district")),
                        year: None,
                    },
                );
            }
        }
    }

    /// Asserts that every voucher the workload knows reads back as its answers said.
    pub fn check_views<D: Drive>(&self, d: &D) {
        for (voucher, tracked) in &self.vouchers {
            let view = d.view(*voucher);
            let context = format!("voucher {voucher}: model {tracked:?}, ledger {view:?}");
            assert_eq!(view.state, tracked.state, "{context}");
            assert_eq!(view.kind, tracked.kind, "{context}");
            assert_eq!(view.face_value_fen, tracked.face_value_fen, "{context}");
            assert_eq!(view.district.to_string(), tracked.district, "{context}");
            let institution = tracked
                .institution
                .map(|at| self.institutions[at].code.clone());
            assert_eq!(
                view.institution.map(|c| c.to_string()),
                institution,
                "{context}"
            );
            assert_eq!(view.checkins, tracked.checkins, "{context}");
            assert_eq!(view.score, tracked.score, "{context}");
            assert_eq!(view.settled_fen, tracked.settled_fen, "{context}");
        }
    }
}

/// `id_number`, named apart so closures over a field called `id_number` can call it.
pub fn id_number_of(n: u64) -> String {
    id_number(n)
}

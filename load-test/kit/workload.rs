//! The one random workload: which operation comes next (valid or deliberately
//! invalid, for which person, voucher and institution), and the model of every
//! voucher and institution it keeps from the answers it got.
//!
//! It does no I/O (as `quinn-proto` does none): a driver asks for the next
//! operation, sends it however it sends (straight to a `Ledger` in the tests,
//! over QUIC in `voucher-crash`), and hands the answer back to `learn`. The
//! tests drive it synchronously through `Target` (`step`, `setup`,
//! `check_views`); `voucher-crash` calls `next_op` and `learn` from its async
//! clients and compares read-backs with `difference`.
//!
//! Deterministic: the same seed, the same answers and the same calls give the
//! same operations.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use voucherd::domain::enums::{
    wire_name, Category, Channel, ClassMode, InstitutionType, Kind, VoucherState,
};
use voucherd::domain::ids::{IdNumber, OperatorId, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec, VoucherView};

/// The districts the workload's institutions and vouchers use (all in the
/// default campaign).
pub const DISTRICTS: [&str; 4] = ["500101", "500102", "500103", "LJXQ"];
/// A district code the default campaign does not have.
pub const FOREIGN_DISTRICT: &str = "500199";
/// A training site in Chongqing (Jiefangbei), where every institution of the
/// workload trains, and a point 2 km north of it (outside its 500 m radius).
pub const SITE: (f64, f64) = (29.5576, 106.5775);
pub const FAR: (f64, f64) = (29.5756, 106.5775);
/// Voucher ids from here on are never issued in a test or a trial: the
/// workload's "unknown voucher".
pub const UNKNOWN_VOUCHER_FIRST: u64 = 8_000_000_000;
/// Operator numbers `op-{code}-{0..OPERATORS_PER_INSTITUTION}` the workload
/// authorises and revokes at each institution.
pub const OPERATORS_PER_INSTITUTION: u32 = 4;
/// The score `evaluate` sends when it means to be refused: scores are 1 to 5
/// (docs/decisions.md D21), and 0 is the likeliest client mistake.
pub const INVALID_SCORE: u8 = 0;
/// Chances (0 to 1) of the deliberately invalid variants.
const BAD_ID_NUMBER_CHANCE: f64 = 0.02;
const FOREIGN_DISTRICT_CHANCE: f64 = 0.03;
const ZERO_FACE_VALUE_CHANCE: f64 = 0.02;
const INVALID_SCORE_CHANCE: f64 = 0.03;
const OVERPAID_CHANCE: f64 = 0.05;
const UNKNOWN_VOUCHER_CHANCE: f64 = 0.02;

/// The n-th synthetic resident ID number (valid GB 11643 check digit).
pub fn id_number(n: u64) -> String {
    IdNumber::synthetic("5001011990", n)
}

/// `id_number(n)` with a wrong check digit.
pub fn bad_id_number_of(n: u64) -> String {
    let good = id_number(n);
    let last = if good.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &good[..17])
}

/// An ID number whose check digit is wrong.
pub fn bad_id_number() -> String {
    bad_id_number_of(1)
}

/// A registration of a private school in `district` with one site at `SITE`.
pub fn register(code: &str, district: &str, admin: &str) -> Op {
    Op::RegisterInstitution {
        code: code.parse().expect("institution code"),
        name: format!("培训机构 {code}"),
        district: district.parse().expect("district code"),
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
        institution: code.parse().expect("institution code"),
        admin_id_number: admin.into(),
        operator: operator.parse().expect("operator"),
    }
}

/// The code of the class each institution of the workload opens for `kind`
/// (one per kind, onsite at the institution's sites, for the whole campaign).
pub fn class_code(kind: Kind) -> String {
    format!("班-{}", wire_name(kind))
}

/// The code of the online class each institution of the workload opens for
/// `kind` (beside the onsite one): an online platform reports its check-ins.
pub fn online_class_code(kind: Kind) -> String {
    format!("网课-{}", wire_name(kind))
}

/// A class code no institution of the workload opens (`unknown_class`, or a
/// free-text class at an institution that opened none).
pub const UNKNOWN_CLASS: &str = "班-无此班";

/// `open_class` of the workload's class for `kind` at institution `code`, by
/// `operator`: the days of the campaign of `year` (1 December before it to
/// its 30 November deadline, 365 or 366 days); onsite at the institution's
/// sites (`class_code`) or online (`online_class_code`).
pub fn open_class(code: &str, operator: &str, kind: Kind, year: u16, mode: ClassMode) -> Op {
    let class = match mode {
        ClassMode::Onsite => class_code(kind),
        ClassMode::Online => online_class_code(kind),
    };
    Op::OpenClass {
        institution: code.parse().expect("institution code"),
        operator: operator.parse().expect("operator"),
        class: class.parse().expect("class code"),
        kind,
        first_day: format!("{}-12-01", year - 1),
        last_day: format!("{year}-11-30"),
        mode,
        sites: None,
    }
}

/// Every class of the workload at institution `code`: an onsite and an
/// online one per kind.
pub fn open_classes(code: &str, operator: &str, year: u16) -> Vec<Op> {
    Kind::ALL
        .iter()
        .flat_map(|&kind| {
            [ClassMode::Onsite, ClassMode::Online]
                .map(|mode| open_class(code, operator, kind, year, mode))
        })
        .collect()
}

/// What the workload knows of a voucher, from the answers it got.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracked {
    pub id: VoucherId,
    /// The holder's person number (`Workload::person`).
    pub holder: usize,
    pub kind: Kind,
    pub face_value_fen: u64,
    pub district: String,
    pub state: VoucherState,
    /// Index into `Workload::institutions` of where it is redeemed.
    pub institution: Option<usize>,
    pub checkins: u32,
    pub score: Option<u8>,
    pub settled_fen: Option<u64>,
    /// Enrolled in an online class (`online_class_code`): its check-ins
    /// come from the platform.
    pub online: bool,
}

/// An institution the workload knows, with its current admin and operators.
#[derive(Clone, Debug)]
pub struct TrackedInstitution {
    pub code: String,
    pub district: String,
    pub admin: String,
    pub operators: Vec<String>,
    /// Registered by this workload (it may replace its admin); false for one
    /// it was told about (`know`), which others use too.
    pub owned: bool,
}

/// One request the workload sent and the answer it got.
#[derive(Clone, Debug)]
pub struct Sent {
    pub role: Role,
    pub request: Request,
    pub answer: Answer,
}

/// What comes next: an operation, or moving a test's clock forward.
#[derive(Clone, Debug)]
pub enum Step {
    /// Move the clock this many seconds forward (a test keeps it before the deadline).
    Advance {
        seconds: i64,
    },
    Send {
        role: Role,
        op: Op,
    },
}

/// A ledger the workload drives synchronously (the tests' memory and RocksDB ledgers).
pub trait Target {
    /// Runs one operation with a fresh request id; the request and its answer.
    fn submit(&self, role: Role, op: Op) -> (Request, Answer);
    /// Moves the clock `seconds` forward, staying before the campaign's deadline.
    fn advance(&self, seconds: i64);
    /// The voucher as the ledger shows it (`get_voucher`).
    fn read(&self, voucher: VoucherId) -> VoucherView;
}

/// A seeded random mix of every operation, valid and invalid, over `persons`
/// people and the institutions it registered or was told about, and the model
/// of everything it was answered.
pub struct Workload {
    pub rng: StdRng,
    pub persons: usize,
    /// First person number (so two workloads can use different people).
    pub person_base: u64,
    /// The code of the first institution this workload registers (then +1 ...).
    pub institution_base: u32,
    /// Issues go on only while it tracks fewer vouchers (bounds a read-back).
    pub vouchers_max: usize,
    /// The campaign year `expire` names.
    pub year: u16,
    pub institutions: Vec<TrackedInstitution>,
    pub vouchers: Vec<Tracked>,
    pub index: HashMap<VoucherId, usize>,
    /// Every request learnt from, in order.
    pub sent: Vec<Sent>,
    /// Accepted changes, i.e. audit records written.
    pub accepted_changes: u64,
    /// Institution codes it has tried to register (each tried once).
    registrations: u32,
}

impl Workload {
    pub fn new(seed: u64, persons: usize, year: u16) -> Workload {
        assert!(persons > 0, "a workload needs persons");
        Workload {
            rng: StdRng::seed_from_u64(seed),
            persons,
            person_base: 0,
            institution_base: 5_000_000,
            vouchers_max: usize::MAX,
            year,
            institutions: Vec::new(),
            vouchers: Vec::new(),
            index: HashMap::new(),
            sent: Vec::new(),
            accepted_changes: 0,
            registrations: 0,
        }
    }

    /// The ID number of person `n` (0-based) of this workload.
    pub fn person(&self, n: usize) -> String {
        id_number(self.person_base + n as u64)
    }

    /// A random admin ID number (not one of the persons).
    fn admin_number(&mut self) -> String {
        id_number(900_000 + self.rng.gen_range(0..50_000))
    }

    /// Tells the workload of an institution someone else registered.
    pub fn know(&mut self, code: &str, district: &str, admin: &str, operators: &[&str]) {
        self.institutions.push(TrackedInstitution {
            code: code.to_owned(),
            district: district.to_owned(),
            admin: admin.to_owned(),
            operators: operators.iter().map(|o| o.to_string()).collect(),
            owned: false,
        });
    }

    fn next_code(&mut self) -> String {
        let code = format!("{:07}", self.institution_base + self.registrations);
        self.registrations += 1;
        code
    }

    /// The registrations of `count` institutions (one per district in turn)
    /// with two operators each and a class for every kind (`open_classes`),
    /// to send in order before the random steps.
    pub fn setup_ops(&mut self, count: usize) -> Vec<(Role, Op)> {
        let mut ops = Vec::new();
        for i in 0..count {
            let code = self.next_code();
            let district = DISTRICTS[i % DISTRICTS.len()];
            let admin = self.admin_number();
            ops.push((Role::Bureau, register(&code, district, &admin)));
            for j in 0..2 {
                let operator = format!("op-{code}-{j}");
                ops.push((Role::Gateway, authorise(&code, &admin, &operator)));
            }
            for op in open_classes(&code, &format!("op-{code}-0"), self.year) {
                ops.push((Role::Gateway, op));
            }
        }
        ops
    }

    /// Sends `setup_ops(count)` to `target`.
    pub fn setup<T: Target>(&mut self, target: &T, count: usize) {
        for (role, op) in self.setup_ops(count) {
            self.apply(target, role, op);
        }
    }

    /// Sends one operation to `target` and learns from its answer.
    pub fn apply<T: Target>(&mut self, target: &T, role: Role, op: Op) -> Answer {
        let (request, answer) = target.submit(role, op);
        self.learn(role, &request, &answer);
        answer
    }

    /// Sends one random operation to `target` (or moves its clock).
    pub fn step<T: Target>(&mut self, target: &T) {
        match self.next_step() {
            Step::Advance { seconds } => target.advance(seconds),
            Step::Send { role, op } => {
                self.apply(target, role, op);
            }
        }
    }

    /// Asserts that every voucher the workload knows reads back as its answers said.
    pub fn check_views<T: Target>(&self, target: &T) {
        for tracked in &self.vouchers {
            let view = target.read(tracked.id);
            if let Some(difference) = self.difference(tracked, &view) {
                panic!("{difference}");
            }
        }
    }

    /// What differs between the model of a voucher and how it reads back; None if nothing.
    pub fn difference(&self, tracked: &Tracked, view: &VoucherView) -> Option<String> {
        let institution = tracked
            .institution
            .map(|at| self.institutions[at].code.clone());
        let fields = [
            ("voucher", view.voucher == tracked.id),
            ("state", view.state == tracked.state),
            ("kind", view.kind == tracked.kind),
            (
                "face_value_fen",
                view.face_value_fen == tracked.face_value_fen,
            ),
            ("district", view.district.to_string() == tracked.district),
            (
                "institution",
                view.institution.map(|code| code.to_string()) == institution,
            ),
            ("checkins", view.checkins == tracked.checkins),
            ("score", view.score == tracked.score),
            ("settled_fen", view.settled_fen == tracked.settled_fen),
        ];
        let differing: Vec<&str> = fields
            .iter()
            .filter(|(_, same)| !same)
            .map(|(name, _)| *name)
            .collect();
        (!differing.is_empty()).then(|| {
            format!(
                "voucher {}: {} differ; the answers said {tracked:?} (institution {institution:?}), it reads back {view:?}",
                tracked.id,
                differing.join(", ")
            )
        })
    }

    /// The tracked voucher `voucher`, if the workload issued it.
    pub fn tracked(&self, voucher: VoucherId) -> Option<&Tracked> {
        self.index.get(&voucher).map(|&at| &self.vouchers[at])
    }

    fn tracked_mut(&mut self, voucher: &VoucherId) -> &mut Tracked {
        let at = self.index[voucher];
        &mut self.vouchers[at]
    }

    fn institution_at(&mut self, code: &str) -> Option<&mut TrackedInstitution> {
        self.institutions.iter_mut().find(|i| i.code == code)
    }

    /// Records one answered request and updates the model from it.
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
            ) => self.institutions.push(TrackedInstitution {
                code: code.to_string(),
                district: district.to_string(),
                admin: admin_id_number.clone(),
                operators: Vec::new(),
                owned: true,
            }),
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
                    .find(|&n| &self.person(n) == id_number)
                    .expect("the workload issues to its own persons");
                self.index.insert(*voucher, self.vouchers.len());
                self.vouchers.push(Tracked {
                    id: *voucher,
                    holder,
                    kind: *kind,
                    face_value_fen: *face_value_fen,
                    district: district.to_string(),
                    state: VoucherState::Issued,
                    institution: None,
                    checkins: 0,
                    score: None,
                    settled_fen: None,
                    online: false,
                });
            }
            (Op::Claim { voucher, .. }, _) => {
                self.tracked_mut(voucher).state = VoucherState::Claimed
            }
            (
                Op::Redeem {
                    voucher,
                    institution,
                    class,
                    ..
                },
                Reply::Redeemed { .. },
            ) => {
                let code = institution.to_string();
                let at = self.institutions.iter().position(|i| i.code == code);
                let tracked = self.tracked_mut(voucher);
                tracked.state = VoucherState::Redeemed;
                tracked.institution = at;
                tracked.online = *class == online_class_code(tracked.kind);
            }
            (
                Op::Checkin { voucher, .. } | Op::CheckinOnline { voucher, .. },
                Reply::CheckedIn { checkins, .. },
            ) => self.tracked_mut(voucher).checkins = *checkins,
            (Op::Complete { voucher, .. }, _) => {
                self.tracked_mut(voucher).state = VoucherState::Completed
            }
            (Op::Evaluate { voucher, score, .. }, _) => {
                self.tracked_mut(voucher).score = Some(*score)
            }
            (
                Op::Settle {
                    voucher,
                    amount_fen,
                },
                _,
            ) => {
                let tracked = self.tracked_mut(voucher);
                tracked.state = VoucherState::Settled;
                tracked.settled_fen = Some(*amount_fen);
            }
            (Op::Release { voucher, .. }, _) => {
                let tracked = self.tracked_mut(voucher);
                tracked.state = VoucherState::Claimed;
                tracked.institution = None;
                tracked.checkins = 0;
                tracked.online = false;
            }
            (Op::Expire { .. }, Reply::Expired { .. }) => {
                for tracked in &mut self.vouchers {
                    if matches!(
                        tracked.state,
                        VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
                    ) {
                        tracked.state = VoucherState::Expired;
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
                if let Some(tracked) = self.institution_at(&institution.to_string()) {
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
                if let Some(tracked) = self.institution_at(&institution.to_string()) {
                    if !tracked.operators.iter().any(|o| o == operator.as_str()) {
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
                if let Some(tracked) = self.institution_at(&institution.to_string()) {
                    tracked.operators.retain(|o| o != operator.as_str());
                }
            }
            _ => {}
        }
    }

    /// A voucher id: mostly one in a wanted state, sometimes any, rarely unknown.
    fn pick_voucher(&mut self, wanted: &[VoucherState]) -> VoucherId {
        if self.vouchers.is_empty() || self.rng.gen_bool(UNKNOWN_VOUCHER_CHANCE) {
            return VoucherId(UNKNOWN_VOUCHER_FIRST + self.rng.gen_range(0..1_000));
        }
        if self.rng.gen_bool(0.85) {
            let fitting: Vec<VoucherId> = self
                .vouchers
                .iter()
                .filter(|v| wanted.contains(&v.state))
                .map(|v| v.id)
                .collect();
            if let Some(id) = fitting.choose(&mut self.rng) {
                return *id;
            }
        }
        self.vouchers.choose(&mut self.rng).expect("not empty").id
    }

    /// The voucher's holder (mostly), or any person.
    fn holder_of(&mut self, voucher: VoucherId) -> String {
        match self.tracked(voucher).map(|t| t.holder) {
            Some(holder) if self.rng.gen_bool(0.9) => self.person(holder),
            _ => {
                let n = self.rng.gen_range(0..self.persons);
                self.person(n)
            }
        }
    }

    /// Any institution it knows.
    fn any_institution(&mut self) -> usize {
        assert!(
            !self.institutions.is_empty(),
            "the workload knows an institution (setup or know first)"
        );
        self.rng.gen_range(0..self.institutions.len())
    }

    /// The voucher's institution (mostly), or any.
    fn institution_of(&mut self, voucher: VoucherId) -> usize {
        match self.tracked(voucher).and_then(|t| t.institution) {
            Some(at) if self.rng.gen_bool(0.85) => at,
            _ => self.any_institution(),
        }
    }

    /// One of the institution's authorised operators (mostly), or a stranger
    /// (`not_authorised`), for redeem, complete and release.
    fn operator_of(&mut self, at: usize) -> OperatorId {
        let operator = match self.institutions[at].operators.choose(&mut self.rng) {
            Some(operator) if self.rng.gen_bool(0.9) => operator.clone(),
            _ => format!("op-stranger-{}", self.rng.gen_range(0..3)),
        };
        operator.parse().expect("operator")
    }

    /// What comes next: a random operation, or (rarely) moving the clock.
    pub fn next_step(&mut self) -> Step {
        let roll = self.rng.gen_range(0..100);
        if roll < 4 {
            return Step::Advance {
                seconds: self.rng.gen_range(1..=900),
            };
        }
        let (role, op) = self.op_for(roll);
        Step::Send { role, op }
    }

    /// A random operation, valid or not, and the role that sends it (never a
    /// clock move: for a daemon on the real clock).
    pub fn next_op(&mut self) -> (Role, Op) {
        let roll = self.rng.gen_range(4..100);
        self.op_for(roll)
    }

    fn op_for(&mut self, roll: u32) -> (Role, Op) {
        match roll {
            4..=14 if self.vouchers.len() < self.vouchers_max => {
                let person = self.rng.gen_range(0..self.persons);
                let id_number = if self.rng.gen_bool(BAD_ID_NUMBER_CHANCE) {
                    bad_id_number_of(self.person_base + person as u64)
                } else {
                    self.person(person)
                };
                let district = if self.rng.gen_bool(FOREIGN_DISTRICT_CHANCE) {
                    FOREIGN_DISTRICT
                } else {
                    DISTRICTS.choose(&mut self.rng).expect("districts")
                };
                let face_value_fen = if self.rng.gen_bool(ZERO_FACE_VALUE_CHANCE) {
                    0
                } else {
                    self.rng.gen_range(1..=20) * 10_000
                };
                let op = Op::Issue {
                    id_number,
                    category: *Category::ALL.choose(&mut self.rng).expect("categories"),
                    kind: *Kind::ALL.choose(&mut self.rng).expect("kinds"),
                    face_value_fen,
                    channel: *Channel::ALL.choose(&mut self.rng).expect("channels"),
                    district: district.parse().expect("district code"),
                    year: None,
                };
                (Role::Bureau, op)
            }
            4..=27 => {
                let voucher = self.pick_voucher(&[VoucherState::Issued]);
                let id_number = self.holder_of(voucher);
                (Role::Gateway, Op::Claim { voucher, id_number })
            }
            28..=44 => {
                let voucher = self.pick_voucher(&[VoucherState::Claimed]);
                let at = self.any_institution();
                let institution = self.institutions[at].clone();
                let operator = match institution.operators.choose(&mut self.rng) {
                    Some(operator) if self.rng.gen_bool(0.9) => operator.clone(),
                    _ => format!("op-stranger-{}", self.rng.gen_range(0..3)),
                };
                // Mostly the institution's class for the voucher's kind.
                // Mostly a class of the institution for the voucher's kind
                // (onsite two times in three).
                let kind = self.tracked(voucher).map(|tracked| tracked.kind);
                let class = match kind {
                    Some(kind) if self.rng.gen_bool(0.95) => match self.rng.gen_range(0..3) {
                        0 => online_class_code(kind),
                        _ => class_code(kind),
                    },
                    _ => UNKNOWN_CLASS.to_owned(),
                };
                let op = Op::Redeem {
                    voucher,
                    institution: institution.code.parse().expect("code"),
                    operator: operator.parse().expect("operator"),
                    class,
                };
                (Role::Gateway, op)
            }
            45..=54 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                // Mostly the form the voucher's class takes (`wrong_mode` else).
                let online = self.tracked(voucher).is_some_and(|t| t.online);
                if online != self.rng.gen_bool(0.05) {
                    let op = Op::CheckinOnline {
                        voucher,
                        online: true,
                    };
                    return (Role::Platform, op);
                }
                let (lat, lon) = if self.rng.gen_bool(0.85) { SITE } else { FAR };
                (Role::Gateway, Op::Checkin { voucher, lat, lon })
            }
            55..=63 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = self.institutions[at].code.parse().expect("code");
                let operator = self.operator_of(at);
                (
                    Role::Gateway,
                    Op::Complete {
                        voucher,
                        institution,
                        operator,
                    },
                )
            }
            64..=70 => {
                let voucher = self.pick_voucher(&[VoucherState::Completed, VoucherState::Settled]);
                let id_number = self.holder_of(voucher);
                let score = if self.rng.gen_bool(INVALID_SCORE_CHANCE) {
                    INVALID_SCORE
                } else {
                    self.rng.gen_range(1..=5)
                };
                // Sometimes around `COMMENT_CHARS_MAX` (200), in characters of 3 bytes.
                let comment = match self.rng.gen_range(0..4) {
                    0 => Some("老师讲得很好".to_owned()),
                    1 => Some("好".repeat(self.rng.gen_range(190..=210))),
                    _ => None,
                };
                let op = Op::Evaluate {
                    voucher,
                    id_number,
                    score,
                    comment,
                };
                (Role::Gateway, op)
            }
            71..=78 => {
                let voucher = self.pick_voucher(&[VoucherState::Completed]);
                let at = self.institution_of(voucher);
                let district = self.institutions[at].district.clone();
                let face = self.tracked(voucher).map_or(100_000, |t| t.face_value_fen);
                let amount_fen = if self.rng.gen_bool(OVERPAID_CHANCE) {
                    face + 1
                } else {
                    self.rng.gen_range(0..=face)
                };
                (
                    Role::District(district.parse().expect("district")),
                    Op::Settle {
                        voucher,
                        amount_fen,
                    },
                )
            }
            79..=88 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = self.institutions[at].code.parse().expect("code");
                let operator = self.operator_of(at);
                (
                    Role::Gateway,
                    Op::Release {
                        voucher,
                        institution,
                        operator,
                    },
                )
            }
            89..=91 => {
                // Sometimes with the wrong admin.
                let at = self.any_institution();
                let institution = self.institutions[at].clone();
                let admin = if self.rng.gen_bool(0.9) {
                    institution.admin.clone()
                } else {
                    self.admin_number()
                };
                let operator = format!(
                    "op-{}-{}",
                    institution.code,
                    self.rng.gen_range(0..OPERATORS_PER_INSTITUTION)
                );
                let op = if self.rng.gen_bool(0.6) {
                    authorise(&institution.code, &admin, &operator)
                } else {
                    Op::RevokeOperator {
                        institution: institution.code.parse().expect("code"),
                        admin_id_number: admin,
                        operator: operator.parse().expect("operator"),
                    }
                };
                (Role::Gateway, op)
            }
            92 if self.institutions.iter().any(|i| i.owned) => {
                // A new admin (mostly) of an institution this workload registered.
                let owned: Vec<usize> = (0..self.institutions.len())
                    .filter(|&at| self.institutions[at].owned)
                    .collect();
                let at = *owned.choose(&mut self.rng).expect("owned");
                let admin = if self.rng.gen_bool(0.3) {
                    self.institutions[at].admin.clone()
                } else {
                    self.admin_number()
                };
                let op = Op::SetInstitutionAdmin {
                    institution: self.institutions[at].code.parse().expect("code"),
                    admin_name: "王芳".into(),
                    admin_id_number: admin,
                };
                (Role::Bureau, op)
            }
            92..=93 => {
                // A new institution, a duplicate, or one in a district outside the campaign.
                let admin = self.admin_number();
                let op = match self.rng.gen_range(0..3) {
                    0 => {
                        let code = self.next_code();
                        let district = DISTRICTS.choose(&mut self.rng).expect("districts");
                        register(&code, district, &admin)
                    }
                    1 => {
                        let at = self.any_institution();
                        register(&self.institutions[at].code.clone(), DISTRICTS[0], &admin)
                    }
                    _ => register("4999999", FOREIGN_DISTRICT, &admin),
                };
                (Role::Bureau, op)
            }
            // Before the deadline: refused `campaign_open`.
            94 => (Role::Bureau, Op::Expire { year: self.year }),
            95 => {
                // A caller whose role may not run the operation.
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = self.institutions[at].code.parse().expect("code");
                let operator = self.operator_of(at);
                (
                    Role::Auditor,
                    Op::Release {
                        voucher,
                        institution,
                        operator,
                    },
                )
            }
            96..=97 => {
                let voucher = self.pick_voucher(&[VoucherState::Redeemed]);
                (Role::Auditor, Op::GetVoucher { voucher })
            }
            _ => {
                let district = if self.rng.gen_bool(0.5) {
                    let code = DISTRICTS.choose(&mut self.rng).expect("districts");
                    Some(code.parse().expect("district"))
                } else {
                    None
                };
                (
                    Role::Bureau,
                    Op::Stats {
                        district,
                        year: None,
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_operations() {
        let ops = |seed| {
            let mut work = Workload::new(seed, 5, 2026);
            work.know("5100001", "500101", &id_number(9_000_000), &["op-main"]);
            (0..200)
                .map(|_| format!("{:?}", work.next_op()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ops(7), ops(7));
        assert_ne!(ops(7), ops(8));
    }

    #[test]
    fn a_bad_id_number_differs_only_in_its_check_digit() {
        let (good, bad) = (id_number(42), bad_id_number_of(42));
        assert_eq!(good[..17], bad[..17]);
        assert_ne!(good, bad);
        assert!(IdNumber::parse(&good).is_ok());
        assert!(IdNumber::parse(&bad).is_err());
    }
}

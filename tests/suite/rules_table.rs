//! Every operation of API.md, table-driven, end to end through `Ledger::execute`
//! on the memory journal: each accept path and each reason code an operation
//! can answer, the role table, input validation, idempotent request ids,
//! expiry at the campaign deadline, check-in sessions, the use limit, and
//! backpressure (`overloaded`).
//!
//! A table is a list of rows (description, role, setup, expected outcome). Each
//! row runs on a fresh ledger (`World::new`: institution A in 500101 and B in
//! 500102, each with one authorised operator); its setup brings the ledger to
//! the state the row needs and returns the operation under test. The runner
//! checks the reason code (also in the JSON form of the answer), that every
//! refusal leaves the audit head (seq, chain hash) and the state digest as they
//! were, and that an accepted change adds exactly one audit record.
//!
//! Every reason code a test sees is recorded (per test thread);
//! `every_reason_code_is_exercised` runs all tables and checks that each code
//! of `Reason::ALL` but `overloaded`/`shutting_down`/`storage_unavailable`
//! came up (`overloaded` has its own test).

use crate::common::{kit_classes, redeem_in, KIT_CLASS};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use crate::common::{
    authorise, bad_id_number, district, id_number, issue, redeem, register, secret, Harness,
    DEADLINE, FAR, NOW, SITE,
};
use voucherd::codec;
use voucherd::domain::enums::{Category, Channel, ClassMode, InstitutionType, Kind, VoucherState};
use voucherd::domain::ids::{DistrictCode, IdNumber, InstitutionCode, OperatorId, VoucherId};
use voucherd::domain::op::{
    Answer, Op, Reply, Request, Role, SiteSpec, StatsView, VoucherSummary, VoucherView,
};
use voucherd::domain::records::PersonYear;
use voucherd::domain::time::{Clock, Timestamp};
use voucherd::error::Reason;
use voucherd::store::journal::{Journal, Table};

// ---------------------------------------------------------------------------
// The world every row starts from.

/// Institution A: district 500101 (万州区), admin `id_number(900)`, operator `op-a`.
const A: &str = "5000001";
/// Institution B: district 500102 (涪陵区), admin `id_number(901)`, operator `op-b`.
const B: &str = "5000002";
/// An institution registered by some rows: district 500101, admin `id_number(903)`, operator `op-c`.
const C: &str = "5000003";
const OP_A: &str = "op-a";
const OP_B: &str = "op-b";
const OP_C: &str = "op-c";
const NO_SUCH_INSTITUTION: &str = "5009999";
/// 两江新区's 2025 code: not a district of the campaign (2021 rules and figures).
const NO_SUCH_DISTRICT: &str = "500157";
const NO_SUCH_VOUCHER: VoucherId = VoucherId(999_999);
/// The face value `crate::common::issue` gives.
const FACE: u64 = 80_000;
/// The default campaign at `NOW`.
const YEAR: u16 = 2026;
const AFTER_DEADLINE: Timestamp = Timestamp(DEADLINE.0 + 1);
const HOUR: i64 = 3600;
/// Writes every row runs before its setup (2 registrations, 2
/// authorisations, a class per kind at each institution: `kit_classes`).
const WORLD_RECORDS: u64 = 4 + 2 * Kind::ALL.len() as u64;

fn admin_a() -> String {
    id_number(900)
}
fn admin_b() -> String {
    id_number(901)
}
fn admin_c() -> String {
    id_number(903)
}
/// Trainees (all registered in 500101 by `crate::common::issue`).
fn p1() -> String {
    id_number(1)
}
fn p2() -> String {
    id_number(2)
}

fn code(text: &str) -> InstitutionCode {
    text.parse().unwrap()
}
fn dc(text: &str) -> DistrictCode {
    text.parse().unwrap()
}
fn operator(text: &str) -> OperatorId {
    text.parse().unwrap()
}

/// The four kinds of caller; `district:500101` is A's district agency.
fn roles() -> [Role; 4] {
    [
        Role::Gateway,
        Role::Bureau,
        district("500101"),
        Role::Auditor,
    ]
}

// ---------------------------------------------------------------------------
// Reason codes seen by the current test thread.

thread_local! {
    static SEEN: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

fn saw(code: &'static str) {
    SEEN.with(|seen| seen.borrow_mut().insert(code));
}

fn check_refusal(answer: &Answer, role: Role, code: &'static str, context: &str) {
    match &answer.outcome {
        Ok(reply) => panic!("{context} (as {role}): accepted {reply:?}, expected {code}"),
        Err(refusal) => {
            assert_eq!(
                refusal.reason.as_str(),
                code,
                "{context} (as {role}): {}",
                refusal.message
            );
            assert!(
                !refusal.message.is_empty(),
                "{context}: a refusal explains itself"
            );
        }
    }
    let json = answer.to_json();
    assert_eq!(json["ok"], false, "{context}");
    assert_eq!(json["reason"], code, "{context}");
    saw(code);
}

// ---------------------------------------------------------------------------
// Operation builders (on top of `common`'s register, authorise, issue, redeem).

fn registration(code: &str, district: &str, name: &str, admin: &str, sites: Vec<SiteSpec>) -> Op {
    Op::RegisterInstitution {
        code: code.parse().unwrap(),
        name: name.into(),
        district: dc(district),
        address: "重庆市万州区高笋塘".into(),
        phone: "023-58221234".into(),
        kind: InstitutionType::TechnicianCollege,
        admin_name: "王芳".into(),
        admin_id_number: admin.into(),
        sites,
    }
}

fn site(lat: f64, lon: f64, radius_m: Option<u32>) -> SiteSpec {
    SiteSpec { lat, lon, radius_m }
}

/// A registration of C that is valid but for what `change` does to it.
fn c_registration(change: impl FnOnce(&mut Op)) -> Op {
    let mut op = registration(
        C,
        "500101",
        "重庆万州技师学院",
        &admin_c(),
        vec![site(SITE.0, SITE.1, None)],
    );
    change(&mut op);
    op
}

fn set_admin(institution: &str, admin_name: &str, admin: &str) -> Op {
    Op::SetInstitutionAdmin {
        institution: code(institution),
        admin_name: admin_name.into(),
        admin_id_number: admin.into(),
    }
}

fn revoke(institution: &str, admin: &str, op: &str) -> Op {
    Op::RevokeOperator {
        institution: code(institution),
        admin_id_number: admin.into(),
        operator: operator(op),
    }
}

fn issue_full(person: &str, face_value_fen: u64, district: &str, year: Option<u16>) -> Op {
    Op::Issue {
        id_number: person.into(),
        category: Category::Unemployed,
        kind: Kind::DomesticServices,
        face_value_fen,
        channel: Channel::Yukuaiban,
        district: dc(district),
        year,
    }
}

fn claim(voucher: VoucherId, person: &str) -> Op {
    Op::Claim {
        voucher,
        id_number: person.into(),
    }
}

fn redeem_class(voucher: VoucherId, class: &str) -> Op {
    Op::Redeem {
        voucher,
        institution: code(A),
        operator: operator(OP_A),
        class: class.into(),
    }
}

fn checkin(voucher: VoucherId, (lat, lon): (f64, f64)) -> Op {
    Op::Checkin { voucher, lat, lon }
}

/// The operator each institution of the world authorised (`op-a`, `op-b`, `op-c`).
fn operator_of(institution: &str) -> &'static str {
    match institution {
        A => OP_A,
        B => OP_B,
        C => OP_C,
        _ => OP_A,
    }
}

/// Reported by the institution's own operator.
fn complete(voucher: VoucherId, institution: &str) -> Op {
    complete_by(voucher, institution, operator_of(institution))
}

fn complete_by(voucher: VoucherId, institution: &str, by: &str) -> Op {
    Op::Complete {
        voucher,
        institution: code(institution),
        operator: operator(by),
    }
}

fn evaluate(voucher: VoucherId, person: &str, score: u8, comment: Option<String>) -> Op {
    Op::Evaluate {
        voucher,
        id_number: person.into(),
        score,
        comment,
    }
}

fn settle(voucher: VoucherId, amount_fen: u64) -> Op {
    Op::Settle {
        voucher,
        amount_fen,
    }
}

/// Released by the institution's own operator.
fn release(voucher: VoucherId, institution: &str) -> Op {
    release_by(voucher, institution, operator_of(institution))
}

fn release_by(voucher: VoucherId, institution: &str, by: &str) -> Op {
    Op::Release {
        voucher,
        institution: code(institution),
        operator: operator(by),
    }
}

fn expire(year: u16) -> Op {
    Op::Expire { year }
}

fn get(voucher: VoucherId) -> Op {
    Op::GetVoucher { voucher }
}

fn stats(district: Option<&str>) -> Op {
    Op::Stats {
        district: district.map(dc),
        year: None,
    }
}

// ---------------------------------------------------------------------------
// The world: a ledger with institutions A and B, and life-cycle shortcuts.

struct World {
    h: Harness,
}

impl World {
    fn new() -> World {
        let h = Harness::new();
        h.institution(A, &admin_a(), OP_A);
        h.ok(Role::Bureau, register(B, "500102", &admin_b()));
        h.ok(Role::Gateway, authorise(B, &admin_b(), OP_B));
        for op in kit_classes(B, OP_B) {
            h.ok(Role::Gateway, op);
        }
        assert_eq!(h.head().0, WORLD_RECORDS);
        World { h }
    }

    /// Runs under a chosen request id.
    fn run_id(&self, role: Role, id: &str, op: Op) -> Answer {
        let request = Request { id: id.into(), op };
        self.h.ledger.execute(role, &[request]).remove(0)
    }

    fn ok(&self, role: Role, op: Op) -> Reply {
        self.h.ok(role, op)
    }

    /// Expects a refusal with `code` that changes nothing (audit head and digest).
    #[track_caller]
    fn refused(&self, role: Role, op: Op, code: &'static str) {
        let before = self.h.ledger.head();
        let answer = self.h.run(role, op.clone());
        check_refusal(&answer, role, code, &format!("{op:?}"));
        assert_eq!(
            self.h.ledger.head(),
            before,
            "refused {op:?} changed the ledger"
        );
    }

    fn issued(&self, person: &str, kind: Kind) -> VoucherId {
        self.h.issue(person, kind)
    }
    fn claimed(&self, person: &str, kind: Kind) -> VoucherId {
        self.h.claimed(person, kind)
    }
    /// Redeemed at A by `op-a`.
    fn redeemed(&self, person: &str, kind: Kind) -> VoucherId {
        self.h.redeemed(person, kind, A, OP_A)
    }
    /// Redeemed at B (district 500102) by `op-b`.
    fn redeemed_at_b(&self, person: &str, kind: Kind) -> VoucherId {
        self.h.redeemed(person, kind, B, OP_B)
    }
    /// Redeemed at A and completed.
    fn completed(&self, person: &str, kind: Kind) -> VoucherId {
        let voucher = self.redeemed(person, kind);
        self.ok(Role::Gateway, complete(voucher, A));
        voucher
    }
    /// Completed at A and settled for 600 yuan by A's district agency.
    fn settled(&self, person: &str, kind: Kind) -> VoucherId {
        let voucher = self.completed(person, kind);
        self.ok(district("500101"), settle(voucher, 60_000));
        voucher
    }
    /// Redeemed at A and released.
    fn released(&self, person: &str, kind: Kind) -> VoucherId {
        let voucher = self.redeemed(person, kind);
        self.ok(Role::Gateway, release(voucher, A));
        voucher
    }
    /// Registers C in 500101 with these sites and authorises `op-c`.
    fn institution_c(&self, sites: Vec<SiteSpec>) {
        self.ok(
            Role::Bureau,
            registration(C, "500101", "重庆万州技师学院", &admin_c(), sites),
        );
        self.ok(Role::Gateway, authorise(C, &admin_c(), OP_C));
        for op in kit_classes(C, OP_C) {
            self.ok(Role::Gateway, op);
        }
    }

    fn past_deadline(&self) {
        self.h.clock.set(AFTER_DEADLINE);
    }

    /// A redeem naming A's or B's class of the voucher's kind.
    fn redeem(&self, voucher: VoucherId, institution: &str, operator: &str) -> Op {
        self.h.redeem(voucher, institution, operator)
    }

    fn view(&self, voucher: VoucherId) -> VoucherView {
        match self.ok(Role::Auditor, get(voucher)) {
            Reply::Voucher(view) => *view,
            other => panic!("get_voucher answered {other:?}"),
        }
    }

    fn stats_as(&self, role: Role, district: Option<&str>) -> StatsView {
        match self.ok(role, stats(district)) {
            Reply::Stats(stats) => *stats,
            other => panic!("stats answered {other:?}"),
        }
    }

    fn city(&self) -> StatsView {
        self.stats_as(Role::Bureau, None)
    }

    /// (issued, claimed, used) of one district.
    fn figures(&self, code: &str) -> (u64, u64, u64) {
        let stats = self.city();
        let d = stats
            .districts
            .iter()
            .find(|d| d.code == dc(code))
            .expect("district listed");
        (d.issued, d.claimed, d.used)
    }

    /// The holder's uses this year as the journal holds them (Persons table;
    /// key: keyed hash of the ID number, then the year big-endian).
    fn uses(&self, person: &str) -> u8 {
        let mut key = IdNumber::parse(person).unwrap().key(&secret()).0.to_vec();
        key.extend_from_slice(&YEAR.to_be_bytes());
        match self.h.journal.get(Table::Persons, &key).unwrap() {
            Some(bytes) => codec::decode::<PersonYear>(&bytes, "person").unwrap().uses,
            None => 0,
        }
    }
}

// ---------------------------------------------------------------------------
// Tables.

type Setup = Rc<dyn Fn(&World) -> Op>;
type Check = Box<dyn Fn(&World, &Reply)>;

enum Expect {
    /// Accepted with no result fields.
    Done,
    /// Accepted with exactly this reply.
    Reply(Reply),
    /// Accepted; the closure checks the reply and the ledger after it.
    Check(Check),
    /// Refused with this reason code.
    Refused(&'static str),
}

fn check(check: impl Fn(&World, &Reply) + 'static) -> Expect {
    Expect::Check(Box::new(check))
}

fn accepted() -> Expect {
    Expect::Check(Box::new(|_, _| {}))
}

struct Row {
    what: String,
    role: Role,
    request_id: Option<String>,
    setup: Setup,
    expect: Expect,
}

fn row(
    what: impl Into<String>,
    role: Role,
    setup: impl Fn(&World) -> Op + 'static,
    expect: Expect,
) -> Row {
    Row {
        what: what.into(),
        role,
        request_id: None,
        setup: Rc::new(setup),
        expect,
    }
}

/// `forbidden_role` for each role of `roles()` that API.md's table does not allow.
fn forbidden_rows(allowed: &[Role], setup: impl Fn(&World) -> Op + 'static) -> Vec<Row> {
    let setup: Setup = Rc::new(setup);
    roles()
        .into_iter()
        .filter(|role| !allowed.contains(role))
        .map(|role| Row {
            what: format!("role {role} may not run it"),
            role,
            request_id: None,
            setup: setup.clone(),
            expect: Expect::Refused("forbidden_role"),
        })
        .collect()
}

/// Request ids: 1 to 64 printable ASCII characters, checked before anything else.
fn request_id_rows(role: Role, setup: impl Fn(&World) -> Op + 'static) -> Vec<Row> {
    let setup: Setup = Rc::new(setup);
    let cases = [
        (
            "an empty request id",
            String::new(),
            Expect::Refused("invalid_request"),
        ),
        (
            "a request id of 65 characters",
            "r".repeat(65),
            Expect::Refused("invalid_request"),
        ),
        (
            "a request id that is not ASCII",
            "请求-1".into(),
            Expect::Refused("invalid_request"),
        ),
        (
            "a request id with a control character",
            "req\t1".into(),
            Expect::Refused("invalid_request"),
        ),
        ("a request id of 64 characters", "r".repeat(64), accepted()),
    ];
    cases
        .into_iter()
        .map(|(what, id, expect)| Row {
            what: what.into(),
            role,
            request_id: Some(id),
            setup: setup.clone(),
            expect,
        })
        .collect()
}

/// Runs each row on a fresh world.
fn run_table(name: &str, rows: Vec<Row>) {
    assert!(!rows.is_empty());
    for row in rows {
        let w = World::new();
        let op = (row.setup)(&w);
        assert_eq!(op.name(), name, "row {:?} runs another operation", row.what);
        let id = row.request_id.clone().unwrap_or_else(|| w.h.request_id());
        let before = w.h.ledger.head();
        let answer = w.run_id(row.role, &id, op.clone());
        let after = w.h.ledger.head();
        let context = format!("{name}: {}", row.what);
        assert_eq!(
            answer.id, id,
            "{context}: the answer carries the request id"
        );
        match row.expect {
            Expect::Refused(code) => {
                check_refusal(&answer, row.role, code, &context);
                assert_eq!(after, before, "{context}: the refusal changed the ledger");
            }
            expect => {
                let reply = match answer.outcome {
                    Ok(reply) => reply,
                    Err(refusal) => panic!(
                        "{context} (as {}): refused {} ({})",
                        row.role, refusal.reason, refusal.message
                    ),
                };
                if op.is_read() {
                    assert_eq!(after, before, "{context}: a read changed the ledger");
                } else {
                    assert_eq!(
                        after.0,
                        before.0 + 1,
                        "{context}: one audit record per change"
                    );
                }
                match expect {
                    Expect::Done => assert_eq!(reply, Reply::Done {}, "{context}"),
                    Expect::Reply(want) => assert_eq!(reply, want, "{context}"),
                    Expect::Check(check) => check(&w, &reply),
                    Expect::Refused(_) => unreachable!(),
                }
            }
        }
        // What the journal holds rebuilds the same ledger (recovery recounts
        // figures and uses and recomputes the digest).
        let reopened = Harness::on(w.h.journal.clone());
        assert_eq!(
            reopened.ledger.head(),
            w.h.ledger.head(),
            "{name}: {}: reopened",
            row.what
        );
    }
}

fn register_institution_table() {
    let valid = |_: &World| c_registration(|_| {});
    let mut rows = vec![
        row(
            "a new institution is registered; its admin may authorise operators",
            Role::Bureau,
            valid,
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                assert_eq!(w.city().coverage.institutions_registered, 3);
                w.ok(Role::Gateway, authorise(C, &admin_c(), OP_C));
                for op in kit_classes(C, OP_C) {
                    w.ok(Role::Gateway, op);
                }
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, w.redeem(voucher, C, OP_C));
            }),
        ),
        row(
            "a functional zone's letter code is a district (LJXQ)",
            Role::Bureau,
            |_| c_registration(|op| set_district(op, "LJXQ")),
            Expect::Done,
        ),
        row(
            "a name of 200 Chinese characters (600 bytes) is accepted",
            Role::Bureau,
            |_| c_registration(|op| set_name(op, &"职".repeat(200))),
            Expect::Done,
        ),
        row(
            "several sites, radius 1 m to 10 km",
            Role::Bureau,
            |_| {
                c_registration(|op| {
                    set_sites(
                        op,
                        vec![
                            site(SITE.0, SITE.1, Some(10_000)),
                            site(30.8, 108.4, Some(1)),
                        ],
                    )
                })
            },
            Expect::Done,
        ),
        row(
            "one person may be the admin of two institutions",
            Role::Bureau,
            |_| {
                registration(
                    C,
                    "500101",
                    "万州培训中心",
                    &admin_a(),
                    vec![site(SITE.0, SITE.1, None)],
                )
            },
            Expect::Done,
        ),
        row(
            "a registered code again",
            Role::Bureau,
            |_| {
                registration(
                    A,
                    "500101",
                    "同码机构",
                    &admin_c(),
                    vec![site(SITE.0, SITE.1, None)],
                )
            },
            Expect::Refused("institution_exists"),
        ),
        row(
            "a registered code again, in another district",
            Role::Bureau,
            |_| {
                registration(
                    B,
                    "500101",
                    "同码机构",
                    &admin_b(),
                    vec![site(SITE.0, SITE.1, None)],
                )
            },
            Expect::Refused("institution_exists"),
        ),
        row(
            "a district not in the campaign",
            Role::Bureau,
            |_| c_registration(|op| set_district(op, NO_SUCH_DISTRICT)),
            Expect::Refused("unknown_district"),
        ),
        row(
            "an empty name",
            Role::Bureau,
            |_| c_registration(|op| set_name(op, "")),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a name of blanks",
            Role::Bureau,
            |_| c_registration(|op| set_name(op, "   ")),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a name of 201 characters",
            Role::Bureau,
            |_| c_registration(|op| set_name(op, &"职".repeat(201))),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a name with a control character",
            Role::Bureau,
            |_| c_registration(|op| set_name(op, "万州\n技校")),
            Expect::Refused("invalid_request"),
        ),
        row(
            "an empty phone",
            Role::Bureau,
            |_| {
                c_registration(|op| {
                    if let Op::RegisterInstitution { phone, .. } = op {
                        phone.clear();
                    }
                })
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "no training site",
            Role::Bureau,
            |_| c_registration(|op| set_sites(op, vec![])),
            Expect::Refused("invalid_request"),
        ),
        row(
            "33 training sites",
            Role::Bureau,
            |_| c_registration(|op| set_sites(op, vec![site(SITE.0, SITE.1, None); 33])),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a site outside Chongqing (Beijing)",
            Role::Bureau,
            |_| {
                c_registration(|op| {
                    set_sites(
                        op,
                        vec![site(SITE.0, SITE.1, None), site(39.9, 116.4, None)],
                    )
                })
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "a site latitude out of range",
            Role::Bureau,
            |_| c_registration(|op| set_sites(op, vec![site(91.0, SITE.1, None)])),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a site longitude that is not a number",
            Role::Bureau,
            |_| c_registration(|op| set_sites(op, vec![site(SITE.0, f64::NAN, None)])),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a site radius of 0",
            Role::Bureau,
            |_| c_registration(|op| set_sites(op, vec![site(SITE.0, SITE.1, Some(0))])),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a site radius over 10 km",
            Role::Bureau,
            |_| c_registration(|op| set_sites(op, vec![site(SITE.0, SITE.1, Some(10_001))])),
            Expect::Refused("invalid_request"),
        ),
        row(
            "malformed input is refused before the code is looked up",
            Role::Bureau,
            |_| {
                registration(
                    A,
                    "500101",
                    "",
                    &admin_a(),
                    vec![site(SITE.0, SITE.1, None)],
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "an admin ID number with a wrong check digit",
            Role::Bureau,
            |_| c_registration(|op| set_admin_id(op, &bad_id_number())),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "an admin ID number of 17 characters",
            Role::Bureau,
            |_| c_registration(|op| set_admin_id(op, &admin_c()[..17])),
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Bureau], valid));
    rows.extend(request_id_rows(Role::Bureau, valid));
    run_table("register_institution", rows);
}

fn set_district(op: &mut Op, code: &str) {
    if let Op::RegisterInstitution { district, .. } = op {
        *district = dc(code);
    }
}
fn set_name(op: &mut Op, text: &str) {
    if let Op::RegisterInstitution { name, .. } = op {
        *name = text.into();
    }
}
fn set_sites(op: &mut Op, specs: Vec<SiteSpec>) {
    if let Op::RegisterInstitution { sites, .. } = op {
        *sites = specs;
    }
}
fn set_admin_id(op: &mut Op, text: &str) {
    if let Op::RegisterInstitution {
        admin_id_number, ..
    } = op
    {
        *admin_id_number = text.into();
    }
}

fn set_institution_admin_table() {
    let new_admin = || id_number(902);
    let mut rows = vec![
        row(
            "a new admin takes over: the old admin's operators are cleared",
            Role::Bureau,
            move |_| set_admin(A, "张伟", &new_admin()),
            check(move |w, reply| {
                assert_eq!(reply, &Reply::Done {});
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.refused(Role::Gateway, w.redeem(voucher, A, OP_A), "not_authorised");
                w.refused(
                    Role::Gateway,
                    authorise(A, &admin_a(), OP_A),
                    "not_authorised",
                );
                w.refused(Role::Gateway, revoke(A, &admin_a(), OP_A), "not_authorised");
                w.ok(Role::Gateway, authorise(A, &new_admin(), OP_A));
                w.ok(Role::Gateway, w.redeem(voucher, A, OP_A));
            }),
        ),
        row(
            "the same admin under a new name keeps the operators",
            Role::Bureau,
            |_| set_admin(A, "刘路（更名）", &admin_a()),
            check(|w, _| {
                w.ok(
                    Role::Gateway,
                    w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A),
                );
            }),
        ),
        row(
            "an unknown institution",
            Role::Bureau,
            move |_| set_admin(NO_SUCH_INSTITUTION, "张伟", &new_admin()),
            Expect::Refused("unknown_institution"),
        ),
        row(
            "an empty admin name",
            Role::Bureau,
            move |_| set_admin(A, "", &new_admin()),
            Expect::Refused("invalid_request"),
        ),
        row(
            "an admin name of 201 characters",
            Role::Bureau,
            move |_| set_admin(A, &"张".repeat(201), &new_admin()),
            Expect::Refused("invalid_request"),
        ),
        row(
            "an admin ID number with a wrong check digit",
            Role::Bureau,
            |_| set_admin(A, "张伟", &bad_id_number()),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "an admin ID number with a letter inside",
            Role::Bureau,
            |_| set_admin(A, "张伟", "50010119900101A012"),
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Bureau], move |_| {
        set_admin(A, "张伟", &new_admin())
    }));
    rows.extend(request_id_rows(Role::Bureau, move |_| {
        set_admin(A, "张伟", &new_admin())
    }));
    run_table("set_institution_admin", rows);
}

fn authorise_operator_table() {
    let mut rows = vec![
        row(
            "the admin authorises an operator, who may then redeem",
            Role::Gateway,
            |_| authorise(A, &admin_a(), "op-new"),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, w.redeem(voucher, A, "op-new"));
            }),
        ),
        row(
            "authorising an authorised operator again",
            Role::Gateway,
            |_| authorise(A, &admin_a(), OP_A),
            Expect::Done,
        ),
        row(
            "a revoked operator is authorised again",
            Role::Gateway,
            |w| {
                w.ok(Role::Gateway, revoke(A, &admin_a(), OP_A));
                authorise(A, &admin_a(), OP_A)
            },
            check(|w, _| {
                w.ok(
                    Role::Gateway,
                    w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A),
                );
            }),
        ),
        row(
            "the admin of another institution",
            Role::Gateway,
            |_| authorise(A, &admin_b(), "op-x"),
            Expect::Refused("not_authorised"),
        ),
        row(
            "a valid ID number that is not the admin's",
            Role::Gateway,
            |_| authorise(A, &p1(), "op-x"),
            Expect::Refused("not_authorised"),
        ),
        row(
            "the former admin after an admin change",
            Role::Gateway,
            |w| {
                w.ok(Role::Bureau, set_admin(A, "张伟", &id_number(902)));
                authorise(A, &admin_a(), OP_A)
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "an unknown institution",
            Role::Gateway,
            |_| authorise(NO_SUCH_INSTITUTION, &admin_a(), "op-x"),
            Expect::Refused("unknown_institution"),
        ),
        row(
            "an admin ID number with a wrong check digit",
            Role::Gateway,
            |_| authorise(A, &bad_id_number(), "op-x"),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "an ID number is checked before the institution is looked up",
            Role::Gateway,
            |_| authorise(NO_SUCH_INSTITUTION, &bad_id_number(), "op-x"),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "a 1001st operator (an institution authorises at most 1000)",
            Role::Gateway,
            |w| {
                for n in 1..1000 {
                    w.ok(Role::Gateway, authorise(A, &admin_a(), &format!("op-{n}")));
                }
                authorise(A, &admin_a(), "op-1000")
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |_| {
        authorise(A, &admin_a(), "op-x")
    }));
    rows.extend(request_id_rows(Role::Gateway, |_| {
        authorise(A, &admin_a(), "op-x")
    }));
    run_table("authorise_operator", rows);
}

fn revoke_operator_table() {
    let mut rows = vec![
        row(
            "the admin revokes an operator, who may no longer redeem",
            Role::Gateway,
            |_| revoke(A, &admin_a(), OP_A),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.refused(Role::Gateway, w.redeem(voucher, A, OP_A), "not_authorised");
                assert_eq!(w.view(voucher).state, VoucherState::Claimed);
            }),
        ),
        row(
            "an operator never authorised",
            Role::Gateway,
            |_| revoke(A, &admin_a(), "op-never"),
            Expect::Refused("not_authorised"),
        ),
        row(
            "another institution's operator",
            Role::Gateway,
            |_| revoke(A, &admin_a(), OP_B),
            Expect::Refused("not_authorised"),
        ),
        row(
            "an operator revoked already",
            Role::Gateway,
            |w| {
                w.ok(Role::Gateway, revoke(A, &admin_a(), OP_A));
                revoke(A, &admin_a(), OP_A)
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "not the institution's admin",
            Role::Gateway,
            |_| revoke(A, &admin_b(), OP_A),
            Expect::Refused("not_authorised"),
        ),
        row(
            "an unknown institution",
            Role::Gateway,
            |_| revoke(NO_SUCH_INSTITUTION, &admin_a(), OP_A),
            Expect::Refused("unknown_institution"),
        ),
        row(
            "an admin ID number with a wrong check digit",
            Role::Gateway,
            |_| revoke(A, &bad_id_number(), OP_A),
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |_| {
        revoke(A, &admin_a(), OP_A)
    }));
    rows.extend(request_id_rows(Role::Gateway, |_| {
        revoke(A, &admin_a(), OP_A)
    }));
    run_table("revoke_operator", rows);
}

fn issue_table() {
    let mut rows = vec![
        row(
            "a voucher is issued",
            Role::Bureau,
            |_| issue(&p1(), Kind::EmploymentSkills),
            check(|w, reply| {
                let Reply::Issued { voucher } = reply else {
                    panic!("{reply:?}")
                };
                let view = w.view(*voucher);
                assert_eq!(view.voucher, *voucher);
                assert_eq!(view.state, VoucherState::Issued);
                assert_eq!(view.kind, Kind::EmploymentSkills);
                assert_eq!(view.category, Category::RuralMigrant);
                assert_eq!(view.channel, Channel::Wechat);
                assert_eq!(view.face_value_fen, FACE);
                assert_eq!(view.year, YEAR, "the current campaign by default");
                assert_eq!(view.district, dc("500101"));
                assert_eq!(
                    (
                        view.institution,
                        view.checkins,
                        view.score,
                        view.settled_fen
                    ),
                    (None, 0, None, None)
                );
                assert_eq!(w.figures("500101"), (1, 0, 0));
            }),
        ),
        row(
            "the campaign year given explicitly",
            Role::Bureau,
            |_| issue_full(&p1(), FACE, "500101", Some(YEAR)),
            check(|w, reply| {
                let Reply::Issued { voucher } = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(w.view(*voucher).year, YEAR);
            }),
        ),
        row(
            "re-issue (补发) of a kind the person holds",
            Role::Bureau,
            |w| {
                w.issued(&p1(), Kind::EmploymentSkills);
                issue(&p1(), Kind::EmploymentSkills)
            },
            check(|w, _| assert_eq!(w.figures("500101").0, 2)),
        ),
        row(
            "the largest face value (100,000 yuan)",
            Role::Bureau,
            |_| issue_full(&p1(), 10_000_000, "500101", None),
            accepted(),
        ),
        row(
            "a face value of 1 fen",
            Role::Bureau,
            |_| issue_full(&p1(), 1, "500101", None),
            accepted(),
        ),
        row(
            "a person registered in a functional zone (LJXQ)",
            Role::Bureau,
            |_| issue_full(&p1(), FACE, "LJXQ", None),
            check(|w, _| assert_eq!(w.figures("LJXQ"), (1, 0, 0))),
        ),
        row(
            "an ID number with a lowercase x check digit",
            Role::Bureau,
            |_| issue("11010519491231002x", Kind::Entrepreneurship),
            accepted(),
        ),
        row(
            "at the deadline itself (inclusive)",
            Role::Bureau,
            |w| {
                w.h.clock.set(DEADLINE);
                issue(&p1(), Kind::EmploymentSkills)
            },
            accepted(),
        ),
        row(
            "after the deadline",
            Role::Bureau,
            |w| {
                w.past_deadline();
                issue(&p1(), Kind::EmploymentSkills)
            },
            Expect::Refused("expired"),
        ),
        row(
            "a district not in the campaign",
            Role::Bureau,
            |_| issue_full(&p1(), FACE, NO_SUCH_DISTRICT, None),
            Expect::Refused("unknown_district"),
        ),
        row(
            "a face value of 0",
            Role::Bureau,
            |_| issue_full(&p1(), 0, "500101", None),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a face value over 100,000 yuan",
            Role::Bureau,
            |_| issue_full(&p1(), 10_000_001, "500101", None),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a year with no campaign (2021)",
            Role::Bureau,
            |_| issue_full(&p1(), FACE, "500101", Some(2021)),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a year with no campaign (next year)",
            Role::Bureau,
            |_| issue_full(&p1(), FACE, "500101", Some(YEAR + 1)),
            Expect::Refused("invalid_request"),
        ),
        row(
            "malformed input is refused before the district is looked up",
            Role::Bureau,
            |_| issue_full(&p1(), 0, NO_SUCH_DISTRICT, None),
            Expect::Refused("invalid_request"),
        ),
        row(
            "an ID number with a wrong check digit",
            Role::Bureau,
            |_| issue(&bad_id_number(), Kind::EmploymentSkills),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "an ID number of 19 characters",
            Role::Bureau,
            |_| issue(&format!("{}0", p1()), Kind::EmploymentSkills),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "an empty ID number",
            Role::Bureau,
            |_| issue("", Kind::EmploymentSkills),
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Bureau], |_| {
        issue(&p1(), Kind::EmploymentSkills)
    }));
    rows.extend(request_id_rows(Role::Bureau, |_| {
        issue(&p1(), Kind::EmploymentSkills)
    }));
    run_table("issue", rows);
}

fn claim_table() {
    let mut rows = vec![
        row(
            "the holder claims the voucher",
            Role::Gateway,
            |w| claim(w.issued(&p1(), Kind::EmploymentSkills), &p1()),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                assert_eq!(w.view(VoucherId(1)).state, VoucherState::Claimed);
                assert_eq!(w.figures("500101"), (1, 1, 0));
            }),
        ),
        row(
            "all eleven kinds may be held at once",
            Role::Gateway,
            |w| {
                for &kind in &Kind::ALL[1..] {
                    w.claimed(&p1(), kind);
                }
                claim(w.issued(&p1(), Kind::ALL[0]), &p1())
            },
            check(|w, _| assert_eq!(w.figures("500101"), (11, 11, 0))),
        ),
        row(
            "another person claims the same kind",
            Role::Gateway,
            |w| {
                w.claimed(&p1(), Kind::EmploymentSkills);
                claim(w.issued(&p2(), Kind::EmploymentSkills), &p2())
            },
            Expect::Done,
        ),
        row(
            "at the deadline itself (inclusive)",
            Role::Gateway,
            |w| {
                let voucher = w.issued(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(DEADLINE);
                claim(voucher, &p1())
            },
            Expect::Done,
        ),
        row(
            "a second voucher of a kind claimed this year",
            Role::Gateway,
            |w| {
                w.claimed(&p1(), Kind::EmploymentSkills);
                claim(w.issued(&p1(), Kind::EmploymentSkills), &p1())
            },
            Expect::Refused("kind_already_claimed"),
        ),
        row(
            "a second voucher of a kind whose first was released",
            Role::Gateway,
            |w| {
                w.released(&p1(), Kind::EmploymentSkills);
                claim(w.issued(&p1(), Kind::EmploymentSkills), &p1())
            },
            Expect::Refused("kind_already_claimed"),
        ),
        row(
            "the same voucher claimed twice",
            Role::Gateway,
            |w| claim(w.claimed(&p1(), Kind::EmploymentSkills), &p1()),
            Expect::Refused("kind_already_claimed"),
        ),
        row(
            "someone else's voucher",
            Role::Gateway,
            |w| claim(w.issued(&p1(), Kind::EmploymentSkills), &p2()),
            Expect::Refused("not_holder"),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| claim(NO_SUCH_VOUCHER, &p1()),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.issued(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                claim(voucher, &p1())
            },
            Expect::Refused("expired"),
        ),
        row(
            "a voucher expire has expired",
            Role::Gateway,
            |w| {
                let voucher = w.issued(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                claim(voucher, &p1())
            },
            Expect::Refused("expired"),
        ),
        row(
            "an ID number with a wrong check digit",
            Role::Gateway,
            |w| claim(w.issued(&p1(), Kind::EmploymentSkills), &bad_id_number()),
            Expect::Refused("invalid_id_number"),
        ),
        row(
            "an ID number is checked before the voucher is looked up",
            Role::Gateway,
            |_| claim(NO_SUCH_VOUCHER, &bad_id_number()),
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |w| {
        claim(w.issued(&p1(), Kind::EmploymentSkills), &p1())
    }));
    rows.extend(request_id_rows(Role::Gateway, |w| {
        claim(w.issued(&p1(), Kind::EmploymentSkills), &p1())
    }));
    run_table("claim", rows);
}

fn redeem_table() {
    let mut rows = vec![
        row(
            "an authorised operator scans a claimed voucher",
            Role::Gateway,
            |w| w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Redeemed { uses_this_year: 1 });
                let view = w.view(VoucherId(1));
                assert_eq!(
                    (view.state, view.institution),
                    (VoucherState::Redeemed, Some(code(A)))
                );
                assert_eq!(w.figures("500101"), (1, 1, 1));
                assert_eq!(w.uses(&p1()), 1);
                let coverage = w.city().coverage;
                assert_eq!(
                    (
                        coverage.districts_used,
                        coverage.institutions_used,
                        coverage.used
                    ),
                    (1, 1, 1)
                );
            }),
        ),
        row(
            "used counts by the institution's district, issued by the person's",
            Role::Gateway,
            |w| w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), B, OP_B),
            check(|w, _| {
                assert_eq!(w.figures("500101"), (1, 1, 0));
                assert_eq!(w.figures("500102"), (0, 0, 1));
                let stats = w.city();
                let fuling = stats
                    .districts
                    .iter()
                    .find(|d| d.code == dc("500102"))
                    .unwrap();
                assert_eq!(
                    fuling.percent_of_target, 0.03,
                    "1 of 4000 is 0.025 %, rounded"
                );
            }),
        ),
        row(
            "the third use of the year",
            Role::Gateway,
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.redeemed_at_b(&p1(), Kind::Entrepreneurship);
                w.redeem(w.claimed(&p1(), Kind::HrServices), A, OP_A)
            },
            Expect::Reply(Reply::Redeemed { uses_this_year: 3 }),
        ),
        row(
            "a released voucher is redeemed again elsewhere",
            Role::Gateway,
            |w| w.redeem(w.released(&p1(), Kind::EmploymentSkills), B, OP_B),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Redeemed { uses_this_year: 1 });
                assert_eq!(w.view(VoucherId(1)).institution, Some(code(B)));
            }),
        ),
        row(
            "a class no one opened, even at an institution that opened none (D51)",
            Role::Gateway,
            |w| {
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Bureau, register("5000009", "500101", &admin_c()));
                w.ok(Role::Gateway, authorise("5000009", &admin_c(), "op-9"));
                redeem_in(voucher, "5000009", "op-9", "电工初级 2026 冬")
            },
            Expect::Refused("unknown_class"),
        ),
        row(
            "at the deadline itself (inclusive)",
            Role::Gateway,
            |w| {
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(DEADLINE);
                w.redeem(voucher, A, OP_A)
            },
            accepted(),
        ),
        row(
            "a fourth use in the year",
            Role::Gateway,
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.redeemed(&p1(), Kind::Entrepreneurship);
                w.completed(&p1(), Kind::HrServices);
                w.redeem(w.claimed(&p1(), Kind::DomesticServices), B, OP_B)
            },
            Expect::Refused("use_limit_reached"),
        ),
        row(
            "a voucher redeemed already",
            Role::Gateway,
            |w| w.redeem(w.redeemed(&p1(), Kind::EmploymentSkills), A, OP_A),
            Expect::Refused("already_redeemed"),
        ),
        row(
            "a voucher redeemed already, at another institution",
            Role::Gateway,
            |w| w.redeem(w.redeemed(&p1(), Kind::EmploymentSkills), B, OP_B),
            Expect::Refused("already_redeemed"),
        ),
        row(
            "a completed voucher",
            Role::Gateway,
            |w| w.redeem(w.completed(&p1(), Kind::EmploymentSkills), A, OP_A),
            Expect::Refused("already_redeemed"),
        ),
        row(
            "a settled voucher",
            Role::Gateway,
            |w| w.redeem(w.settled(&p1(), Kind::EmploymentSkills), A, OP_A),
            Expect::Refused("already_redeemed"),
        ),
        row(
            "a voucher not claimed",
            Role::Gateway,
            |w| w.redeem(w.issued(&p1(), Kind::EmploymentSkills), A, OP_A),
            Expect::Refused("not_claimed"),
        ),
        row(
            "an operator the institution never authorised",
            Role::Gateway,
            |w| w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, "op-stranger"),
            Expect::Refused("not_authorised"),
        ),
        row(
            "another institution's operator",
            Role::Gateway,
            |w| w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_B),
            Expect::Refused("not_authorised"),
        ),
        row(
            "a revoked operator",
            Role::Gateway,
            |w| {
                w.ok(Role::Gateway, revoke(A, &admin_a(), OP_A));
                w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A)
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "an operator of the former admin",
            Role::Gateway,
            |w| {
                w.ok(Role::Bureau, set_admin(A, "张伟", &id_number(902)));
                w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A)
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| redeem(NO_SUCH_VOUCHER, A, OP_A),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "an unknown institution",
            Role::Gateway,
            |w| {
                w.redeem(
                    w.claimed(&p1(), Kind::EmploymentSkills),
                    NO_SUCH_INSTITUTION,
                    OP_A,
                )
            },
            Expect::Refused("unknown_institution"),
        ),
        row(
            "after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.redeem(voucher, A, OP_A)
            },
            Expect::Refused("expired"),
        ),
        row(
            "a voucher expire has expired",
            Role::Gateway,
            |w| {
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                w.redeem(voucher, A, OP_A)
            },
            Expect::Refused("expired"),
        ),
        row(
            "an empty class",
            Role::Gateway,
            |w| redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), " "),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a class name of 201 characters",
            Role::Gateway,
            |w| redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), &"电".repeat(201)),
            Expect::Refused("invalid_request"),
        ),
        row(
            "malformed input is refused before the voucher is looked up",
            Role::Gateway,
            |_| redeem_class(NO_SUCH_VOUCHER, ""),
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |w| {
        w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A)
    }));
    rows.extend(request_id_rows(Role::Gateway, |w| {
        w.redeem(w.claimed(&p1(), Kind::EmploymentSkills), A, OP_A)
    }));
    run_table("redeem", rows);
}

fn checkin_table() {
    let checked_in = |session: &str, checkins: u32| {
        Expect::Reply(Reply::CheckedIn {
            session: session.into(),
            checkins,
        })
    };
    let mut rows = vec![
        row(
            "the first check-in, at the site",
            Role::Gateway,
            |w| checkin(w.redeemed(&p1(), Kind::EmploymentSkills), SITE),
            check(|w, reply| {
                assert_eq!(
                    reply,
                    &Reply::CheckedIn {
                        session: "2026-11-29".into(),
                        checkins: 1
                    }
                );
                assert_eq!(w.view(VoucherId(1)).checkins, 1);
                assert_eq!(w.city().coverage.used_with_checkin, 1);
            }),
        ),
        row(
            "the next day (24 h later, before the deadline)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.h.clock.advance_s(24 * HOUR);
                checkin(voucher, SITE)
            },
            checked_in("2026-11-30", 2),
        ),
        row(
            "one second after local midnight",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(Timestamp(NOW.0 + 15 * HOUR - 1)); // 2026-11-29 23:59:59 +08:00
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.h.clock.advance_s(1);
                checkin(voucher, SITE)
            },
            checked_in("2026-11-30", 2),
        ),
        row(
            "a new local day on the same UTC day (23:00 then 07:00 +08:00)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(Timestamp(NOW.0 + 14 * HOUR)); // 2026-11-29 23:00 +08:00
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.h.clock.set(Timestamp(NOW.0 + 22 * HOUR)); // 2026-11-30 07:00 +08:00
                checkin(voucher, SITE)
            },
            checked_in("2026-11-30", 2),
        ),
        row(
            "at the deadline itself (inclusive)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(DEADLINE);
                checkin(voucher, SITE)
            },
            checked_in("2026-11-30", 1),
        ),
        row(
            "400 m from the site (default radius 500 m)",
            Role::Gateway,
            |w| {
                checkin(
                    w.redeemed(&p1(), Kind::EmploymentSkills),
                    (SITE.0 + 0.0036, SITE.1),
                )
            },
            checked_in("2026-11-29", 1),
        ),
        row(
            "at the second of two sites",
            Role::Gateway,
            |w| {
                w.institution_c(vec![site(29.7, 106.6, None), site(FAR.0, FAR.1, Some(50))]);
                checkin(w.h.redeemed(&p1(), Kind::EmploymentSkills, C, OP_C), FAR)
            },
            checked_in("2026-11-29", 1),
        ),
        row(
            "2 km away from a site of radius 2.5 km",
            Role::Gateway,
            |w| {
                w.institution_c(vec![site(SITE.0, SITE.1, Some(2_500))]);
                checkin(w.h.redeemed(&p1(), Kind::EmploymentSkills, C, OP_C), FAR)
            },
            checked_in("2026-11-29", 1),
        ),
        row(
            "2 km away from the site",
            Role::Gateway,
            |w| checkin(w.redeemed(&p1(), Kind::EmploymentSkills), FAR),
            Expect::Refused("outside_site"),
        ),
        row(
            "600 m from the site (default radius 500 m)",
            Role::Gateway,
            |w| {
                checkin(
                    w.redeemed(&p1(), Kind::EmploymentSkills),
                    (SITE.0 + 0.0054, SITE.1),
                )
            },
            Expect::Refused("outside_site"),
        ),
        row(
            "at another institution's site, not the redeeming one's",
            Role::Gateway,
            |w| {
                w.institution_c(vec![site(FAR.0, FAR.1, Some(50))]);
                checkin(w.redeemed(&p1(), Kind::EmploymentSkills), FAR)
            },
            Expect::Refused("outside_site"),
        ),
        row(
            "a second check-in the same local day",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.h.clock.set(Timestamp(NOW.0 + 15 * HOUR - 1)); // 23:59:59 +08:00
                checkin(voucher, SITE)
            },
            Expect::Refused("duplicate_checkin"),
        ),
        row(
            "the same local day on a new UTC day (07:00 then 09:00 +08:00)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(Timestamp(NOW.0 + 22 * HOUR)); // 2026-11-30 07:00 +08:00 = 11-29 23:00Z
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.h.clock.set(Timestamp(NOW.0 + 24 * HOUR)); // 2026-11-30 09:00 +08:00 = 11-30 01:00Z
                checkin(voucher, SITE)
            },
            Expect::Refused("duplicate_checkin"),
        ),
        row(
            "a claimed voucher",
            Role::Gateway,
            |w| checkin(w.claimed(&p1(), Kind::EmploymentSkills), SITE),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "an issued voucher",
            Role::Gateway,
            |w| checkin(w.issued(&p1(), Kind::EmploymentSkills), SITE),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "a released voucher",
            Role::Gateway,
            |w| checkin(w.released(&p1(), Kind::EmploymentSkills), SITE),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "a completed voucher",
            Role::Gateway,
            |w| checkin(w.completed(&p1(), Kind::EmploymentSkills), SITE),
            Expect::Refused("already_completed"),
        ),
        row(
            "a settled voucher",
            Role::Gateway,
            |w| checkin(w.settled(&p1(), Kind::EmploymentSkills), SITE),
            Expect::Refused("already_completed"),
        ),
        row(
            "after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                checkin(voucher, SITE)
            },
            Expect::Refused("expired"),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| checkin(NO_SUCH_VOUCHER, SITE),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "a latitude over 90",
            Role::Gateway,
            |w| checkin(w.redeemed(&p1(), Kind::EmploymentSkills), (90.5, SITE.1)),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a longitude under -180",
            Role::Gateway,
            |w| checkin(w.redeemed(&p1(), Kind::EmploymentSkills), (SITE.0, -180.5)),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a latitude that is not a number",
            Role::Gateway,
            |w| {
                checkin(
                    w.redeemed(&p1(), Kind::EmploymentSkills),
                    (f64::NAN, SITE.1),
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "an infinite longitude",
            Role::Gateway,
            |w| {
                checkin(
                    w.redeemed(&p1(), Kind::EmploymentSkills),
                    (SITE.0, f64::INFINITY),
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "malformed input is refused before the voucher is looked up",
            Role::Gateway,
            |_| checkin(NO_SUCH_VOUCHER, (91.0, 0.0)),
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |w| {
        checkin(w.redeemed(&p1(), Kind::EmploymentSkills), SITE)
    }));
    rows.extend(request_id_rows(Role::Gateway, |w| {
        checkin(w.redeemed(&p1(), Kind::EmploymentSkills), SITE)
    }));
    run_table("checkin", rows);
}

fn complete_table() {
    let mut rows = vec![
        row(
            "the redeeming institution reports the training finished",
            Role::Gateway,
            |w| complete(w.redeemed(&p1(), Kind::EmploymentSkills), A),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                assert_eq!(w.view(VoucherId(1)).state, VoucherState::Completed);
                assert_eq!(
                    w.figures("500101"),
                    (1, 1, 1),
                    "a completed voucher stays used"
                );
                assert_eq!(w.uses(&p1()), 1);
            }),
        ),
        row(
            "a voucher checked in twice",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.h.clock.advance_s(24 * HOUR);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                complete(voucher, A)
            },
            check(|w, _| assert_eq!(w.view(VoucherId(1)).checkins, 2)),
        ),
        row(
            "at the deadline itself (inclusive)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(DEADLINE);
                complete(voucher, A)
            },
            Expect::Done,
        ),
        row(
            "another institution",
            Role::Gateway,
            |w| complete(w.redeemed(&p1(), Kind::EmploymentSkills), B),
            Expect::Refused("wrong_institution"),
        ),
        row(
            "completed already",
            Role::Gateway,
            |w| complete(w.completed(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("already_completed"),
        ),
        row(
            "a settled voucher",
            Role::Gateway,
            |w| complete(w.settled(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("already_completed"),
        ),
        row(
            "completed already, after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.completed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                complete(voucher, A)
            },
            Expect::Refused("already_completed"),
        ),
        row(
            "a claimed voucher",
            Role::Gateway,
            |w| complete(w.claimed(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "an issued voucher",
            Role::Gateway,
            |w| complete(w.issued(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "a released voucher",
            Role::Gateway,
            |w| complete(w.released(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "a redeemed voucher after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                complete(voucher, A)
            },
            Expect::Refused("expired"),
        ),
        row(
            "a voucher expire has expired",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                complete(voucher, A)
            },
            Expect::Refused("expired"),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| complete(NO_SUCH_VOUCHER, A),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "an operator the institution never authorised",
            Role::Gateway,
            |w| complete_by(w.redeemed(&p1(), Kind::EmploymentSkills), A, "op-stranger"),
            Expect::Refused("not_authorised"),
        ),
        row(
            "another institution's operator",
            Role::Gateway,
            |w| complete_by(w.redeemed(&p1(), Kind::EmploymentSkills), A, OP_B),
            Expect::Refused("not_authorised"),
        ),
        row(
            "an operator the admin revoked",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, revoke(A, &admin_a(), OP_A));
                complete_by(voucher, A, OP_A)
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "an institution never registered",
            Role::Gateway,
            |w| complete_by(w.redeemed(&p1(), Kind::EmploymentSkills), "5999999", OP_A),
            Expect::Refused("unknown_institution"),
        ),
        row(
            "an operator id holding an ID number",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                complete_by(voucher, A, &format!("op-{}", p2()))
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |w| {
        complete(w.redeemed(&p1(), Kind::EmploymentSkills), A)
    }));
    rows.extend(request_id_rows(Role::Gateway, |w| {
        complete(w.redeemed(&p1(), Kind::EmploymentSkills), A)
    }));
    run_table("complete", rows);
}

fn evaluate_table() {
    let mut rows = vec![
        row(
            "the trainee rates a completed training",
            Role::Gateway,
            |w| {
                evaluate(
                    w.completed(&p1(), Kind::EmploymentSkills),
                    &p1(),
                    5,
                    Some("老师很好".into()),
                )
            },
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                assert_eq!(w.view(VoucherId(1)).score, Some(5));
            }),
        ),
        row(
            "score 1, no comment",
            Role::Gateway,
            |w| evaluate(w.completed(&p1(), Kind::EmploymentSkills), &p1(), 1, None),
            check(|w, _| assert_eq!(w.view(VoucherId(1)).score, Some(1))),
        ),
        row(
            "an empty comment",
            Role::Gateway,
            |w| {
                evaluate(
                    w.completed(&p1(), Kind::EmploymentSkills),
                    &p1(),
                    3,
                    Some(String::new()),
                )
            },
            Expect::Done,
        ),
        row(
            "a comment of 200 Chinese characters (600 bytes)",
            Role::Gateway,
            |w| {
                evaluate(
                    w.completed(&p1(), Kind::EmploymentSkills),
                    &p1(),
                    4,
                    Some("好".repeat(200)),
                )
            },
            Expect::Done,
        ),
        row(
            "a settled voucher",
            Role::Gateway,
            |w| evaluate(w.settled(&p1(), Kind::EmploymentSkills), &p1(), 4, None),
            check(|w, _| {
                let view = w.view(VoucherId(1));
                assert_eq!((view.state, view.score), (VoucherState::Settled, Some(4)));
            }),
        ),
        row(
            "a completed voucher after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.completed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                evaluate(voucher, &p1(), 2, None)
            },
            Expect::Done,
        ),
        row(
            "rated already",
            Role::Gateway,
            |w| {
                let voucher = w.completed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, evaluate(voucher, &p1(), 5, None));
                evaluate(voucher, &p1(), 1, None)
            },
            Expect::Refused("already_evaluated"),
        ),
        row(
            "a redeemed voucher (training not completed)",
            Role::Gateway,
            |w| evaluate(w.redeemed(&p1(), Kind::EmploymentSkills), &p1(), 5, None),
            Expect::Refused("not_completed"),
        ),
        row(
            "a claimed voucher",
            Role::Gateway,
            |w| evaluate(w.claimed(&p1(), Kind::EmploymentSkills), &p1(), 5, None),
            Expect::Refused("not_completed"),
        ),
        row(
            "an expired voucher",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                evaluate(voucher, &p1(), 5, None)
            },
            Expect::Refused("not_completed"),
        ),
        row(
            "someone else's voucher",
            Role::Gateway,
            |w| evaluate(w.completed(&p1(), Kind::EmploymentSkills), &p2(), 5, None),
            Expect::Refused("not_holder"),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| evaluate(NO_SUCH_VOUCHER, &p1(), 5, None),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "score 0",
            Role::Gateway,
            |w| evaluate(w.completed(&p1(), Kind::EmploymentSkills), &p1(), 0, None),
            Expect::Refused("invalid_request"),
        ),
        row(
            "score 6",
            Role::Gateway,
            |w| evaluate(w.completed(&p1(), Kind::EmploymentSkills), &p1(), 6, None),
            Expect::Refused("invalid_request"),
        ),
        row(
            "a comment of 201 Chinese characters",
            Role::Gateway,
            |w| {
                evaluate(
                    w.completed(&p1(), Kind::EmploymentSkills),
                    &p1(),
                    4,
                    Some("好".repeat(201)),
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "a comment of 201 ASCII characters",
            Role::Gateway,
            |w| {
                evaluate(
                    w.completed(&p1(), Kind::EmploymentSkills),
                    &p1(),
                    4,
                    Some("a".repeat(201)),
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "malformed input is refused before the voucher is looked up",
            Role::Gateway,
            |_| evaluate(NO_SUCH_VOUCHER, &p1(), 9, None),
            Expect::Refused("invalid_request"),
        ),
        row(
            "an ID number with a wrong check digit",
            Role::Gateway,
            |w| {
                evaluate(
                    w.completed(&p1(), Kind::EmploymentSkills),
                    &bad_id_number(),
                    5,
                    None,
                )
            },
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |w| {
        evaluate(w.completed(&p1(), Kind::EmploymentSkills), &p1(), 5, None)
    }));
    rows.extend(request_id_rows(Role::Gateway, |w| {
        evaluate(w.completed(&p1(), Kind::EmploymentSkills), &p1(), 5, None)
    }));
    run_table("evaluate", rows);
}

fn settle_table() {
    let mut rows = vec![
        row(
            "the agency of the institution's district records the subsidy",
            district("500101"),
            |w| settle(w.completed(&p1(), Kind::EmploymentSkills), 60_000),
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                let view = w.view(VoucherId(1));
                assert_eq!(
                    (view.state, view.settled_fen),
                    (VoucherState::Settled, Some(60_000))
                );
                assert_eq!(
                    w.figures("500101"),
                    (1, 1, 1),
                    "a settled voucher stays used"
                );
            }),
        ),
        row(
            "the whole face value",
            district("500101"),
            |w| settle(w.completed(&p1(), Kind::EmploymentSkills), FACE),
            Expect::Done,
        ),
        row(
            "nothing (0 fen)",
            district("500101"),
            |w| settle(w.completed(&p1(), Kind::EmploymentSkills), 0),
            check(|w, _| assert_eq!(w.view(VoucherId(1)).settled_fen, Some(0))),
        ),
        row(
            "the institution's district, not the person's",
            district("500102"),
            |w| {
                let voucher = w.redeemed_at_b(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, complete(voucher, B));
                settle(voucher, 50_000)
            },
            Expect::Done,
        ),
        row(
            "a completed voucher after the deadline and expiry",
            district("500101"),
            |w| {
                let voucher = w.completed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                settle(voucher, 60_000)
            },
            Expect::Done,
        ),
        row(
            "another district's agency",
            district("500102"),
            |w| settle(w.completed(&p1(), Kind::EmploymentSkills), 60_000),
            Expect::Refused("forbidden_role"),
        ),
        row(
            "the person's district agency, when the institution is elsewhere",
            district("500101"),
            |w| {
                let voucher = w.redeemed_at_b(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, complete(voucher, B));
                settle(voucher, 50_000)
            },
            Expect::Refused("forbidden_role"),
        ),
        row(
            "settled already",
            district("500101"),
            |w| settle(w.settled(&p1(), Kind::EmploymentSkills), 60_000),
            Expect::Refused("already_settled"),
        ),
        row(
            "a redeemed voucher (training not completed)",
            district("500101"),
            |w| settle(w.redeemed(&p1(), Kind::EmploymentSkills), 60_000),
            Expect::Refused("not_completed"),
        ),
        row(
            "a claimed voucher",
            district("500101"),
            |w| settle(w.claimed(&p1(), Kind::EmploymentSkills), 60_000),
            Expect::Refused("not_completed"),
        ),
        row(
            "an expired voucher",
            district("500101"),
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                settle(voucher, 60_000)
            },
            Expect::Refused("not_completed"),
        ),
        row(
            "one fen over the face value",
            district("500101"),
            |w| settle(w.completed(&p1(), Kind::EmploymentSkills), FACE + 1),
            Expect::Refused("amount_exceeds_face_value"),
        ),
        row(
            "an unknown voucher",
            district("500101"),
            |_| settle(NO_SUCH_VOUCHER, 60_000),
            Expect::Refused("unknown_voucher"),
        ),
    ];
    rows.extend(forbidden_rows(&[district("500101")], |w| {
        settle(w.completed(&p1(), Kind::EmploymentSkills), 60_000)
    }));
    rows.extend(request_id_rows(district("500101"), |w| {
        settle(w.completed(&p1(), Kind::EmploymentSkills), 60_000)
    }));
    run_table("settle", rows);
}

fn release_table() {
    let mut rows = vec![
        row(
            "a cancelled enrollment returns the voucher to claimed",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                release(voucher, A)
            },
            check(|w, reply| {
                assert_eq!(reply, &Reply::Done {});
                let view = w.view(VoucherId(1));
                assert_eq!(
                    (view.state, view.institution, view.checkins),
                    (VoucherState::Claimed, None, 0),
                    "the enrollment's check-ins go with it"
                );
                assert_eq!(w.figures("500101"), (1, 1, 0), "claimed stays, used leaves");
                let coverage = w.city().coverage;
                assert_eq!(
                    (
                        coverage.used,
                        coverage.used_with_checkin,
                        coverage.institutions_used
                    ),
                    (0, 0, 0)
                );
                assert_eq!(w.uses(&p1()), 0);
            }),
        ),
        row(
            "the person gets the use back",
            Role::Gateway,
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.redeemed(&p1(), Kind::Entrepreneurship);
                let third = w.redeemed(&p1(), Kind::HrServices);
                release(third, A)
            },
            check(|w, _| {
                assert_eq!(w.uses(&p1()), 2);
                let fourth = w.claimed(&p1(), Kind::DomesticServices);
                assert_eq!(
                    w.ok(Role::Gateway, w.redeem(fourth, B, OP_B)),
                    Reply::Redeemed { uses_this_year: 3 }
                );
            }),
        ),
        row(
            "at the deadline itself (inclusive)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.h.clock.set(DEADLINE);
                release(voucher, A)
            },
            Expect::Done,
        ),
        row(
            "a completed voucher",
            Role::Gateway,
            |w| release(w.completed(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("already_completed"),
        ),
        row(
            "a settled voucher",
            Role::Gateway,
            |w| release(w.settled(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("already_completed"),
        ),
        row(
            "a completed voucher after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.completed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                release(voucher, A)
            },
            Expect::Refused("already_completed"),
        ),
        row(
            "another institution",
            Role::Gateway,
            |w| release(w.redeemed(&p1(), Kind::EmploymentSkills), B),
            Expect::Refused("wrong_institution"),
        ),
        row(
            "a claimed voucher",
            Role::Gateway,
            |w| release(w.claimed(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "an issued voucher",
            Role::Gateway,
            |w| release(w.issued(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "released already",
            Role::Gateway,
            |w| release(w.released(&p1(), Kind::EmploymentSkills), A),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "a redeemed voucher after the deadline",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                release(voucher, A)
            },
            Expect::Refused("expired"),
        ),
        row(
            "a voucher expire has expired",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                release(voucher, A)
            },
            Expect::Refused("expired"),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| release(NO_SUCH_VOUCHER, A),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "an operator the institution never authorised",
            Role::Gateway,
            |w| release_by(w.redeemed(&p1(), Kind::EmploymentSkills), A, "op-stranger"),
            Expect::Refused("not_authorised"),
        ),
        row(
            "another institution's operator",
            Role::Gateway,
            |w| release_by(w.redeemed(&p1(), Kind::EmploymentSkills), A, OP_B),
            Expect::Refused("not_authorised"),
        ),
        row(
            "an operator the admin revoked",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, revoke(A, &admin_a(), OP_A));
                release_by(voucher, A, OP_A)
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "an institution never registered",
            Role::Gateway,
            |w| release_by(w.redeemed(&p1(), Kind::EmploymentSkills), "5999999", OP_A),
            Expect::Refused("unknown_institution"),
        ),
        row(
            "an operator id holding an ID number",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                release_by(voucher, A, &format!("op-{}", p2()))
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |w| {
        release(w.redeemed(&p1(), Kind::EmploymentSkills), A)
    }));
    rows.extend(request_id_rows(Role::Gateway, |w| {
        release(w.redeemed(&p1(), Kind::EmploymentSkills), A)
    }));
    run_table("release", rows);
}

/// p1's vouchers 1 issued, 2 redeemed at A with a check-in, 3 completed at
/// A: before the deadline 500101 counts (issued, claimed, used) (3, 2, 2).
fn unfinished_and_completed(w: &World) {
    w.issued(&p1(), Kind::EmploymentSkills);
    let redeemed = w.redeemed(&p1(), Kind::Entrepreneurship);
    w.ok(Role::Gateway, checkin(redeemed, SITE));
    w.completed(&p1(), Kind::HrServices);
    assert_eq!(w.figures("500101"), (3, 2, 2));
}

/// What the reads answer past the deadline for `unfinished_and_completed`,
/// whether or not `expire` has run (API.md): the unfinished vouchers show
/// `expired` (get_voucher, list_vouchers) and leave `used`, at the city, the
/// district, the institution and in the coverage.
fn assert_reads_as_expired(w: &World) {
    let want = [
        VoucherState::Expired,
        VoucherState::Expired,
        VoucherState::Completed,
    ];
    let states: Vec<VoucherState> = (1..=3).map(|n| w.view(VoucherId(n)).state).collect();
    assert_eq!(states, want, "get_voucher");
    let listed: Vec<VoucherState> = listed(&w.ok(Role::Gateway, list(&p1(), None)))
        .iter()
        .map(|summary| summary.state)
        .collect();
    assert_eq!(listed, want, "list_vouchers");
    assert_eq!(w.figures("500101"), (3, 2, 1), "issued and claimed stay");
    let stats = w.city();
    assert_eq!(stats.city.used, 1);
    assert_eq!(stats.coverage.used, 1);
    assert_eq!(stats.coverage.institutions_used, 1);
    let a = stats
        .institutions
        .iter()
        .find(|i| i.code == code(A))
        .expect("A is registered");
    assert_eq!(a.used, 1);
    let checked_in = w.view(VoucherId(3)).checkins > 0;
    assert_eq!(stats.coverage.used_with_checkin, u64::from(checked_in));
}

fn expire_table() {
    let after_deadline = |w: &World| {
        w.past_deadline();
        expire(YEAR)
    };
    let mut rows = vec![
        row(
            "after the deadline, every unfinished voucher expires",
            Role::Bureau,
            |w| {
                w.issued(&p1(), Kind::EmploymentSkills);
                w.claimed(&p1(), Kind::Entrepreneurship);
                w.redeemed(&p1(), Kind::HrServices);
                w.completed(&p1(), Kind::DomesticServices);
                w.settled(&p2(), Kind::DomesticServices);
                w.past_deadline();
                expire(YEAR)
            },
            check(|w, reply| {
                assert_eq!(reply, &Reply::Expired { expired: 3 });
                let states: Vec<VoucherState> =
                    (1..=5).map(|n| w.view(VoucherId(n)).state).collect();
                assert_eq!(
                    states,
                    [
                        VoucherState::Expired,
                        VoucherState::Expired,
                        VoucherState::Expired,
                        VoucherState::Completed,
                        VoucherState::Settled
                    ]
                );
            }),
        ),
        row(
            "past the deadline the reads show expiry before it is written, and the same after",
            Role::Bureau,
            |w| {
                unfinished_and_completed(w);
                w.past_deadline();
                assert_reads_as_expired(w);
                // Start-up recounts what expiry will take away.
                let reopened = World {
                    h: Harness::on(w.h.journal.clone()),
                };
                reopened.past_deadline();
                assert_reads_as_expired(&reopened);
                expire(YEAR)
            },
            check(|w, reply| {
                assert_eq!(reply, &Reply::Expired { expired: 2 });
                assert_reads_as_expired(w);
                let reopened = World {
                    h: Harness::on(w.h.journal.clone()),
                };
                reopened.past_deadline();
                assert_reads_as_expired(&reopened);
            }),
        ),
        row(
            "with nothing to expire",
            Role::Bureau,
            after_deadline,
            Expect::Reply(Reply::Expired { expired: 0 }),
        ),
        row(
            "a second run",
            Role::Bureau,
            |w| {
                w.claimed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                assert_eq!(
                    w.ok(Role::Bureau, expire(YEAR)),
                    Reply::Expired { expired: 1 }
                );
                expire(YEAR)
            },
            Expect::Reply(Reply::Expired { expired: 0 }),
        ),
        row(
            "before the deadline",
            Role::Bureau,
            |w| {
                w.claimed(&p1(), Kind::EmploymentSkills);
                expire(YEAR)
            },
            Expect::Refused("campaign_open"),
        ),
        row(
            "at the deadline itself (vouchers are valid through it)",
            Role::Bureau,
            |w| {
                w.h.clock.set(DEADLINE);
                expire(YEAR)
            },
            Expect::Refused("campaign_open"),
        ),
        row(
            "a year with no campaign",
            Role::Bureau,
            |w| {
                w.past_deadline();
                expire(2021)
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Bureau], after_deadline));
    rows.extend(request_id_rows(Role::Bureau, after_deadline));
    run_table("expire", rows);
}

fn get_voucher_table() {
    let settled_view = |_: &World, reply: &Reply| {
        let Reply::Voucher(view) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(view.voucher, VoucherId(1));
        assert_eq!(view.state, VoucherState::Settled);
        assert_eq!(view.kind, Kind::EmploymentSkills);
        assert_eq!(view.face_value_fen, FACE);
        assert_eq!(view.year, YEAR);
        assert_eq!(view.institution, Some(code(A)));
        assert_eq!(view.district, dc("500101"));
        assert_eq!(view.checkins, 1);
        assert_eq!(view.score, Some(4));
        assert_eq!(view.settled_fen, Some(60_000));
        let json = Answer {
            id: "x".into(),
            outcome: Ok(reply.clone()),
        }
        .to_json();
        for field in [
            "state",
            "kind",
            "face_value_fen",
            "year",
            "institution",
            "district",
            "checkins",
            "score",
            "settled_fen",
        ] {
            assert!(
                json.get(field).is_some(),
                "get_voucher answers {field}: {json}"
            );
        }
        assert_eq!(json["state"], "settled");
    };
    let settled = |w: &World| {
        let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
        w.ok(Role::Gateway, checkin(voucher, SITE));
        w.ok(Role::Gateway, complete(voucher, A));
        w.ok(Role::Gateway, evaluate(voucher, &p1(), 4, None));
        w.ok(district("500101"), settle(voucher, 60_000));
        get(voucher)
    };
    let mut rows: Vec<Row> = roles()
        .into_iter()
        .chain([district("500102")])
        .map(|role| {
            row(
                format!("any caller may read ({role})"),
                role,
                settled,
                check(settled_view),
            )
        })
        .collect();
    rows.extend([
        row(
            "past the deadline, before any expire, an unfinished voucher is expired",
            Role::Auditor,
            |w| {
                unfinished_and_completed(w);
                w.past_deadline();
                get(VoucherId(2))
            },
            check(|w, reply| {
                let Reply::Voucher(view) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(view.state, VoucherState::Expired);
                assert_eq!(view.institution, Some(code(A)));
                assert_reads_as_expired(w);
            }),
        ),
        row(
            "the class and the time of each step done (RFC 3339, +08:00)",
            Role::Gateway,
            |w| {
                let start = w.h.clock.now().0;
                let step = |minutes: i64| w.h.clock.set(Timestamp(start + minutes * 60));
                let voucher = w.issued(&p1(), Kind::EmploymentSkills);
                step(1);
                w.ok(Role::Gateway, claim(voucher, &p1()));
                step(2);
                for class in ["电工初级 1班", "电工初级 2班"] {
                    let op = open_class(class, Kind::EmploymentSkills, NOVEMBER, ClassMode::Onsite);
                    w.ok(Role::Gateway, op);
                }
                w.ok(Role::Gateway, redeem_class(voucher, "电工初级 1班"));
                w.ok(Role::Gateway, release(voucher, A));
                step(3);
                w.ok(Role::Gateway, redeem_class(voucher, "电工初级 2班"));
                step(4);
                w.ok(Role::Gateway, complete(voucher, A));
                step(5);
                w.ok(district("500101"), settle(voucher, 60_000));
                get(voucher)
            },
            check(|w, reply| {
                let Reply::Voucher(view) = reply else {
                    panic!("{reply:?}")
                };
                let start = w.h.clock.now().0 - 5 * 60;
                let at =
                    |minutes: i64| Some(Timestamp(start + minutes * 60).local_rfc3339(8 * 3600));
                assert_eq!(
                    view.class.as_deref(),
                    Some("电工初级 2班"),
                    "the latest enrollment's"
                );
                let s = &view.steps;
                assert_eq!(
                    (
                        &s.issued_at,
                        &s.claimed_at,
                        &s.redeemed_at,
                        &s.completed_at,
                        &s.settled_at
                    ),
                    (&at(0), &at(1), &at(3), &at(4), &at(5))
                );
                assert!(at(0).unwrap().ends_with("+08:00"));
                let json = Answer {
                    id: "x".into(),
                    outcome: Ok(reply.clone()),
                }
                .to_json();
                assert_eq!(json["class"], "电工初级 2班");
                assert_eq!(json["redeemed_at"], at(3).unwrap().as_str());
                // Reopened from the journal: the same view.
                let reopened = Harness::on(w.h.journal.clone());
                assert_eq!(&reopened.ok(Role::Auditor, get(view.voucher)), reply);
            }),
        ),
        row(
            "a released voucher shows no class and no redemption time",
            Role::Gateway,
            |w| get(w.released(&p1(), Kind::EmploymentSkills)),
            check(|_, reply| {
                let Reply::Voucher(view) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(view.class, None);
                assert!(view.steps.issued_at.is_some() && view.steps.claimed_at.is_some());
                assert_eq!(view.steps.redeemed_at, None);
                let json = Answer {
                    id: "x".into(),
                    outcome: Ok(reply.clone()),
                }
                .to_json();
                for absent in ["redeemed_at", "completed_at", "settled_at"] {
                    assert!(json.get(absent).is_none(), "{absent}: {json}");
                }
            }),
        ),
        row(
            "an issued voucher",
            Role::Gateway,
            |w| get(w.issued(&p1(), Kind::EmploymentSkills)),
            check(|_, reply| {
                let Reply::Voucher(view) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(
                    (view.state, view.institution, view.score, view.settled_fen),
                    (VoucherState::Issued, None, None, None)
                );
            }),
        ),
        row(
            "an expired voucher",
            Role::Auditor,
            |w| {
                let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                get(voucher)
            },
            check(|_, reply| {
                let Reply::Voucher(view) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(view.state, VoucherState::Expired);
            }),
        ),
        row(
            "an unknown voucher",
            Role::Gateway,
            |_| get(NO_SUCH_VOUCHER),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "an unknown voucher (auditor)",
            Role::Auditor,
            |_| get(VoucherId(5)),
            Expect::Refused("unknown_voucher"),
        ),
    ]);
    rows.extend(request_id_rows(Role::Auditor, settled));
    run_table("get_voucher", rows);
}

fn stats_table() {
    let with_uses = |w: &World| {
        w.claimed(&p1(), Kind::EmploymentSkills);
        w.redeemed_at_b(&p1(), Kind::Entrepreneurship);
        let voucher = w.redeemed(&p2(), Kind::EmploymentSkills);
        w.ok(Role::Gateway, checkin(voucher, SITE));
        w.issued(&p2(), Kind::HrServices);
    };
    let mut rows = vec![
        row(
            "past the deadline, before any expire, unfinished vouchers leave used",
            Role::Bureau,
            |w| {
                unfinished_and_completed(w);
                w.past_deadline();
                stats(None)
            },
            check(|w, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(stats.city.used, 1);
                assert_eq!(stats.city.issued, 3);
                assert_reads_as_expired(w);
            }),
        ),
        row(
            "the bureau sees every district, the city and the coverage",
            Role::Bureau,
            move |w| {
                with_uses(w);
                stats(None)
            },
            check(|w, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(stats.year, YEAR);
                assert_eq!(stats.districts.len(), 41);
                assert_eq!(w.figures("500101"), (4, 3, 1));
                assert_eq!(w.figures("500102"), (0, 0, 1));
                let wanzhou = &stats
                    .districts
                    .iter()
                    .find(|d| d.code == dc("500101"))
                    .unwrap();
                assert_eq!((wanzhou.name.as_str(), wanzhou.target), ("万州区", 7000));
                assert_eq!(
                    wanzhou.percent_of_target, 0.01,
                    "1 of 7000 is 0.014 %, rounded"
                );
                let city = &stats.city;
                assert_eq!(
                    (city.target, city.issued, city.claimed, city.used),
                    (120_000, 4, 3, 2)
                );
                assert_eq!((city.issued_goal, city.used_goal), (300_000, 120_000));
                let c = &stats.coverage;
                assert_eq!((c.districts_used, c.districts_total), (2, 41));
                assert_eq!((c.institutions_used, c.institutions_registered), (2, 2));
                assert_eq!((c.used_with_checkin, c.used), (1, 2));
            }),
        ),
        row(
            "the auditor sees every district",
            Role::Auditor,
            move |w| {
                with_uses(w);
                stats(None)
            },
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!((stats.districts.len(), stats.city.used), (41, 2));
            }),
        ),
        row(
            "the bureau asks for one district",
            Role::Bureau,
            move |w| {
                with_uses(w);
                stats(Some("500102"))
            },
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(stats.districts.len(), 1);
                let fuling = &stats.districts[0];
                assert_eq!(
                    (fuling.code, fuling.issued, fuling.claimed, fuling.used),
                    (dc("500102"), 0, 0, 1)
                );
            }),
        ),
        row(
            "a district agency sees its own district by default",
            district("500101"),
            move |w| {
                with_uses(w);
                stats(None)
            },
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(stats.districts.len(), 1);
                let own = &stats.districts[0];
                assert_eq!(
                    (own.code, own.issued, own.claimed, own.used),
                    (dc("500101"), 4, 3, 1)
                );
            }),
        ),
        row(
            "a district agency's coverage is within its own district",
            district("500102"),
            move |w| {
                with_uses(w);
                stats(None)
            },
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                let c = &stats.coverage;
                // 500102 holds B (one use, no check-in); A's use and check-in are 500101's.
                assert_eq!((c.districts_used, c.districts_total), (1, 1));
                assert_eq!((c.institutions_used, c.institutions_registered), (1, 1));
                assert_eq!((c.used_with_checkin, c.used), (0, 1));
                assert_eq!(stats.city.used, 2, "the city totals stay the city's");
            }),
        ),
        row(
            "subsidies settled per district, per institution and for the city",
            Role::Bureau,
            |w| {
                w.settled(&p1(), Kind::EmploymentSkills);
                w.settled(&p2(), Kind::EmploymentSkills);
                let at_b = w.redeemed_at_b(&p1(), Kind::Entrepreneurship);
                w.ok(Role::Gateway, complete(at_b, B));
                w.ok(district("500102"), settle(at_b, 12_345));
                w.completed(&p2(), Kind::HrServices);
                stats(None)
            },
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                let of = |code: &str| {
                    stats
                        .districts
                        .iter()
                        .find(|d| d.code == dc(code))
                        .unwrap()
                        .settled_fen
                };
                assert_eq!(
                    (of("500101"), of("500102"), of("500103")),
                    (120_000, 12_345, 0)
                );
                assert_eq!(stats.city.settled_fen, 132_345);
                let by_institution: Vec<(InstitutionCode, u64)> = stats
                    .institutions
                    .iter()
                    .map(|i| (i.code, i.settled_fen))
                    .collect();
                assert_eq!(by_institution, vec![(code(A), 120_000), (code(B), 12_345)]);
                let json = Answer {
                    id: "x".into(),
                    outcome: Ok(reply.clone()),
                }
                .to_json();
                assert_eq!(json["city"]["settled_fen"], 132_345);
                assert_eq!(json["districts"][0]["settled_fen"], 120_000);
                assert_eq!(json["institutions"][1]["settled_fen"], 12_345);
            }),
        ),
        row(
            "a district agency names its own district",
            district("500102"),
            |_| stats(Some("500102")),
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(stats.districts.len(), 1);
                assert_eq!(stats.districts[0].code, dc("500102"));
            }),
        ),
        row(
            "a functional zone's agency (LJXQ)",
            district("LJXQ"),
            |_| stats(None),
            check(|_, reply| {
                let Reply::Stats(stats) = reply else {
                    panic!("{reply:?}")
                };
                assert_eq!(stats.districts[0].code, dc("LJXQ"));
            }),
        ),
        row(
            "a district agency asks for another district",
            district("500101"),
            |_| stats(Some("500102")),
            Expect::Refused("forbidden_role"),
        ),
        row(
            "the bureau asks for a district not in the campaign",
            Role::Bureau,
            |_| stats(Some(NO_SUCH_DISTRICT)),
            Expect::Refused("unknown_district"),
        ),
        row(
            "an agency of a district not in the campaign",
            district(NO_SUCH_DISTRICT),
            |_| stats(None),
            Expect::Refused("unknown_district"),
        ),
        row(
            "a year with no campaign",
            Role::Bureau,
            |_| Op::Stats {
                district: None,
                year: Some(2021),
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(
        &[Role::Bureau, district("500101"), Role::Auditor],
        |_| stats(None),
    ));
    rows.extend(request_id_rows(Role::Bureau, |_| stats(None)));
    run_table("stats", rows);
}

fn list(person: &str, year: Option<u16>) -> Op {
    Op::ListVouchers {
        id_number: person.into(),
        year,
    }
}

fn listed(reply: &Reply) -> Vec<VoucherSummary> {
    match reply {
        Reply::Vouchers { vouchers } => vouchers.clone(),
        other => panic!("list_vouchers answered {other:?}"),
    }
}

fn list_vouchers_table() {
    let summary = |voucher: u64, kind: Kind, state: VoucherState| VoucherSummary {
        voucher: VoucherId(voucher),
        kind,
        state,
        face_value_fen: FACE,
        year: YEAR,
    };
    let mut rows = vec![
        row(
            "past the deadline, before any expire, unfinished vouchers are listed expired",
            Role::Gateway,
            |w| {
                unfinished_and_completed(w);
                w.past_deadline();
                list(&p1(), None)
            },
            check(|w, reply| {
                let states: Vec<VoucherState> = listed(reply).iter().map(|s| s.state).collect();
                assert_eq!(
                    states,
                    [
                        VoucherState::Expired,
                        VoucherState::Expired,
                        VoucherState::Completed
                    ]
                );
                assert_reads_as_expired(w);
            }),
        ),
        row(
            "a person's vouchers in voucher id order, with kind, state, face value and year",
            Role::Gateway,
            |w| {
                w.issued(&p1(), Kind::EmploymentSkills);
                w.issued(&p2(), Kind::EmploymentSkills);
                w.redeemed(&p1(), Kind::Entrepreneurship);
                w.claimed(&p1(), Kind::HrServices);
                list(&p1(), None)
            },
            check(move |w, reply| {
                let want = vec![
                    summary(1, Kind::EmploymentSkills, VoucherState::Issued),
                    summary(3, Kind::Entrepreneurship, VoucherState::Redeemed),
                    summary(4, Kind::HrServices, VoucherState::Claimed),
                ];
                assert_eq!(listed(reply), want);
                let json = Answer {
                    id: "x".into(),
                    outcome: Ok(reply.clone()),
                }
                .to_json();
                assert_eq!(
                    json["vouchers"][1],
                    serde_json::json!({"voucher": "V0000000003", "kind": "entrepreneurship",
                        "state": "redeemed", "face_value_fen": FACE, "year": YEAR})
                );
                // The person index is rebuilt from the journal on reopening.
                let reopened = Harness::on(w.h.journal.clone());
                assert_eq!(listed(&reopened.ok(Role::Gateway, list(&p1(), None))), want);
            }),
        ),
        row(
            "one year asked",
            Role::Gateway,
            |w| {
                w.issued(&p1(), Kind::EmploymentSkills);
                list(&p1(), Some(YEAR))
            },
            check(move |_, reply| {
                assert_eq!(
                    listed(reply),
                    vec![summary(1, Kind::EmploymentSkills, VoucherState::Issued)]
                );
            }),
        ),
        row(
            "a year without a campaign holds none",
            Role::Gateway,
            |w| {
                w.issued(&p1(), Kind::EmploymentSkills);
                list(&p1(), Some(YEAR - 1))
            },
            check(|_, reply| assert_eq!(listed(reply), vec![])),
        ),
        row(
            "a person holding none: an empty list",
            Role::Gateway,
            |w| {
                w.issued(&p1(), Kind::EmploymentSkills);
                list(&p2(), None)
            },
            check(|_, reply| {
                let json = Answer {
                    id: "x".into(),
                    outcome: Ok(reply.clone()),
                }
                .to_json();
                assert_eq!(json["vouchers"], serde_json::json!([]));
            }),
        ),
        row(
            "an ID number whose check digit fails",
            Role::Gateway,
            |_| list(&bad_id_number(), None),
            Expect::Refused("invalid_id_number"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], |_| list(&p1(), None)));
    rows.extend(request_id_rows(Role::Gateway, |_| list(&p1(), None)));
    run_table("list_vouchers", rows);
}

fn audit_head_table() {
    let head_matches = |w: &World, reply: &Reply| {
        let Reply::AuditHead {
            seq,
            hash,
            state_digest,
        } = reply
        else {
            panic!("{reply:?}")
        };
        let (live_seq, live_hash, live_digest) = w.h.ledger.head();
        assert_eq!(*seq, live_seq);
        assert_eq!(hash, &hex::encode(live_hash));
        assert_eq!(hash.len(), 64);
        assert_eq!(state_digest, &live_digest);
        assert!(state_digest.chars().all(|c| c.is_ascii_hexdigit()) && !state_digest.is_empty());
    };
    let mut rows: Vec<Row> = roles()
        .into_iter()
        .map(|role| {
            row(
                format!("any caller may read ({role})"),
                role,
                |_| Op::AuditHead,
                check(head_matches),
            )
        })
        .collect();
    rows.extend([
        row(
            "the head counts every accepted change",
            Role::Auditor,
            |w| {
                w.settled(&p1(), Kind::EmploymentSkills);
                Op::AuditHead
            },
            check(move |w, reply| {
                head_matches(w, reply);
                let Reply::AuditHead { seq, .. } = reply else {
                    unreachable!()
                };
                assert_eq!(
                    *seq,
                    WORLD_RECORDS + 5,
                    "issue, claim, redeem, complete, settle"
                );
            }),
        ),
        row(
            "refusals add nothing to the chain",
            Role::Auditor,
            |w| {
                w.h.run(Role::Gateway, claim(NO_SUCH_VOUCHER, &p1()));
                w.h.run(Role::Auditor, issue(&p1(), Kind::EmploymentSkills));
                Op::AuditHead
            },
            check(move |w, reply| {
                head_matches(w, reply);
                let Reply::AuditHead { seq, .. } = reply else {
                    unreachable!()
                };
                assert_eq!(*seq, WORLD_RECORDS);
            }),
        ),
    ]);
    rows.extend(request_id_rows(Role::Gateway, |_| Op::AuditHead));
    run_table("audit_head", rows);
}

fn events_op(after: u64, institution: Option<&str>, district: Option<&str>) -> Op {
    Op::Events {
        after,
        limit: None,
        institution: institution.map(code),
        district: district.map(dc),
        wait_ms: None,
    }
}

fn events_limited(after: u64, limit: u32) -> Op {
    Op::Events {
        after,
        limit: Some(limit),
        institution: None,
        district: None,
        wait_ms: None,
    }
}

fn page(reply: &Reply) -> (Vec<serde_json::Value>, u64) {
    match reply {
        Reply::Events { events, next } => (
            events
                .iter()
                .map(|event| serde_json::to_value(event).unwrap())
                .collect(),
            *next,
        ),
        other => panic!("events answered {other:?}"),
    }
}

/// The `op` of each event, in order.
fn ops_of(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["op"].as_str().unwrap().to_owned())
        .collect()
}

/// No event names an ID number or a keyed hash of one (of the people the
/// world and the rows use).
fn no_person_data(events: &[serde_json::Value]) {
    let text = serde_json::to_string(events).unwrap();
    for person in [p1(), p2(), admin_a(), admin_b(), admin_c()] {
        let key = hex::encode(IdNumber::parse(&person).unwrap().key(&secret()).0);
        assert!(!text.contains(&person), "an event holds an ID number");
        assert!(
            !text.contains(&person[..14]),
            "an event holds most of an ID number"
        );
        assert!(!text.contains(&key), "an event holds a person key");
    }
}

fn events_table() {
    let mut rows = vec![
        row(
            "the training system reads every step of a voucher, in order, with the step's data",
            Role::Training,
            |w| {
                let voucher = w.completed(&p1(), Kind::EmploymentSkills);
                w.ok(
                    Role::Gateway,
                    evaluate(voucher, &p1(), 4, Some("好".into())),
                );
                w.ok(district("500101"), settle(voucher, 60_000));
                events_op(0, None, None)
            },
            check(|w, reply| {
                let (events, next) = page(reply);
                assert_eq!(
                    ops_of(&events),
                    ["issue", "claim", "redeem", "complete", "evaluate", "settle"],
                    "registrations and authorisations make no event"
                );
                let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
                assert_eq!(
                    seqs,
                    (WORLD_RECORDS + 1..=WORLD_RECORDS + 6).collect::<Vec<_>>()
                );
                assert_eq!(next, WORLD_RECORDS + 6, "next is the last event's seq");
                let issue = &events[0];
                assert_eq!(issue["voucher"], "V0000000001");
                assert_eq!(issue["kind"], "employment_skills");
                assert_eq!(issue["district"], "500101");
                assert_eq!(issue["face_value_fen"], FACE);
                assert_eq!(issue["year"], YEAR);
                assert!(issue.get("institution").is_none() && issue.get("class").is_none());
                assert!(issue["at"].as_str().unwrap().ends_with("+08:00"));
                let redeem = &events[2];
                assert_eq!(redeem["institution"], A);
                assert_eq!(redeem["class"], KIT_CLASS);
                assert_eq!(redeem["operator"], OP_A);
                assert_eq!(events[4]["score"], 4);
                assert_eq!(events[4]["comment"], "好");
                assert_eq!(events[5]["amount_fen"], 60_000);
                assert_eq!(events[5]["class"], KIT_CLASS);
                no_person_data(&events);
                // The index is rebuilt from the chain: a reopened ledger answers the same.
                let reopened = Harness::on(w.h.journal.clone());
                assert_eq!(
                    &reopened.ok(Role::Training, events_op(0, None, None)),
                    reply
                );
            }),
        ),
        row(
            "a check-in carries its session and count; a release names the institution left",
            Role::Auditor,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                w.ok(Role::Gateway, release(voucher, A));
                w.ok(Role::Gateway, w.redeem(voucher, B, OP_B));
                w.ok(Role::Gateway, release(voucher, B));
                events_op(WORLD_RECORDS + 3, None, None)
            },
            check(|w, reply| {
                let (events, _) = page(reply);
                assert_eq!(ops_of(&events), ["checkin", "release", "redeem", "release"]);
                assert_eq!(events[0]["checkins"], 1);
                assert!(events[0]["session"].as_str().unwrap().starts_with("20"));
                assert!(events[0].get("lat").is_none(), "no position");
                assert_eq!(
                    events[0]["institution"], A,
                    "a step shows the enrollment of its time, not a later one"
                );
                assert_eq!(events[1]["institution"], A);
                assert_eq!(events[1]["district"], "500101");
                assert_eq!(events[2]["institution"], B);
                assert_eq!(
                    events[2]["district"], "500102",
                    "the institution's district"
                );
                assert_eq!(events[3]["institution"], B);
                // The index is rebuilt from the chain: a reopened ledger answers the same.
                let reopened = Harness::on(w.h.journal.clone());
                assert_eq!(
                    &reopened.ok(Role::Auditor, events_op(WORLD_RECORDS + 3, None, None)),
                    reply
                );
            }),
        ),
        row(
            "by institution: only the steps while enrolled there",
            Role::Training,
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.redeemed_at_b(&p2(), Kind::EmploymentSkills);
                events_op(0, Some(B), None)
            },
            check(|_, reply| {
                let (events, next) = page(reply);
                assert_eq!(ops_of(&events), ["redeem"]);
                assert_eq!(events[0]["voucher"], "V0000000002");
                assert_eq!(next, events[0]["seq"].as_u64().unwrap());
            }),
        ),
        row(
            "by district: the voucher's own before enrollment, the institution's after",
            Role::Training,
            |w| {
                w.redeemed_at_b(&p1(), Kind::EmploymentSkills);
                events_op(0, None, Some("500101"))
            },
            check(|w, reply| {
                let (events, _) = page(reply);
                assert_eq!(ops_of(&events), ["issue", "claim"]);
                let (theirs, _) = page(&w.ok(Role::Training, events_of_district("500102")));
                assert_eq!(ops_of(&theirs), ["redeem"]);
            }),
        ),
        row(
            "the same cursor gives the same events; limit pages them",
            Role::Training,
            |w| {
                w.completed(&p1(), Kind::EmploymentSkills);
                events_limited(WORLD_RECORDS + 1, 2)
            },
            check(|w, reply| {
                let (first, next) = page(reply);
                assert_eq!(ops_of(&first), ["claim", "redeem"]);
                assert_eq!(next, WORLD_RECORDS + 3);
                assert_eq!(
                    &w.ok(Role::Training, events_limited(WORLD_RECORDS + 1, 2)),
                    reply
                );
                let (rest, last) = page(&w.ok(Role::Training, events_limited(next, 2)));
                assert_eq!(ops_of(&rest), ["complete"]);
                let (none, same) = page(&w.ok(Role::Training, events_limited(last, 2)));
                assert!(none.is_empty());
                assert_eq!(same, last, "no event: next is the cursor itself");
            }),
        ),
        row(
            "the bureau's expire of a campaign is one event every filter shows",
            Role::Training,
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.past_deadline();
                w.ok(Role::Bureau, expire(YEAR));
                events_op(WORLD_RECORDS + 3, Some(B), None)
            },
            check(|w, reply| {
                let (events, _) = page(reply);
                assert_eq!(ops_of(&events), ["expire"]);
                assert_eq!(events[0]["year"], YEAR);
                assert_eq!(events[0]["expired"], 1);
                assert!(events[0].get("voucher").is_none());
                let (all, _) =
                    page(&w.ok(Role::Training, events_op(WORLD_RECORDS + 3, None, None)));
                assert_eq!(&all, &events);
            }),
        ),
        row(
            "the daemon's expiry batches: one event per voucher they expire",
            Role::Training,
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.claimed(&p2(), Kind::EmploymentSkills);
                w.completed(&p2(), Kind::Entrepreneurship);
                w.past_deadline();
                w.h.ledger.expire_due(YEAR).unwrap();
                events_op(WORLD_RECORDS + 9, None, None)
            },
            check(|w, reply| {
                let (events, _) = page(reply);
                assert_eq!(
                    ops_of(&events),
                    ["expire", "expire"],
                    "not the completed one"
                );
                assert_eq!(events[0]["voucher"], "V0000000001");
                assert_eq!(events[0]["institution"], A);
                assert_eq!(events[1]["voucher"], "V0000000002");
                assert!(events[1].get("institution").is_none());
                let (at_a, _) =
                    page(&w.ok(Role::Training, events_op(WORLD_RECORDS + 9, Some(A), None)));
                assert_eq!(ops_of(&at_a), ["expire"]);
            }),
        ),
        row(
            "a district agency without a filter reads its own district",
            district("500102"),
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                w.redeemed_at_b(&p2(), Kind::EmploymentSkills);
                events_op(0, None, None)
            },
            check(|_, reply| {
                let (events, _) = page(reply);
                assert_eq!(ops_of(&events), ["redeem"]);
                assert_eq!(events[0]["district"], "500102");
            }),
        ),
        row(
            "a district agency reads its own institutions",
            district("500101"),
            |w| {
                w.redeemed(&p1(), Kind::EmploymentSkills);
                events_op(0, Some(A), None)
            },
            check(|_, reply| assert_eq!(ops_of(&page(reply).0), ["redeem"])),
        ),
        row(
            "a district agency may not read another district's institution",
            district("500101"),
            |_| events_op(0, Some(B), None),
            Expect::Refused("forbidden_role"),
        ),
        row(
            "a district agency may not read another district",
            district("500101"),
            |_| events_op(0, None, Some("500102")),
            Expect::Refused("forbidden_role"),
        ),
        row(
            "an online platform may not read events",
            Role::Platform,
            |_| events_op(0, None, None),
            Expect::Refused("forbidden_role"),
        ),
        row(
            "an institution never registered",
            Role::Training,
            |_| events_op(0, Some(NO_SUCH_INSTITUTION), None),
            Expect::Refused("unknown_institution"),
        ),
        row(
            "a district of no campaign",
            Role::Training,
            |_| events_op(0, None, Some(NO_SUCH_DISTRICT)),
            Expect::Refused("unknown_district"),
        ),
        row(
            "institution and district at once",
            Role::Training,
            |_| events_op(0, Some(A), Some("500101")),
            Expect::Refused("invalid_request"),
        ),
        row(
            "limit 0",
            Role::Training,
            |_| events_limited(0, 0),
            Expect::Refused("invalid_request"),
        ),
        row(
            "limit 1025",
            Role::Training,
            |_| events_limited(0, 1025),
            Expect::Refused("invalid_request"),
        ),
        row(
            "limit 1024",
            Role::Training,
            |_| events_limited(0, 1024),
            accepted(),
        ),
        row(
            "wait_ms over 30,000",
            Role::Training,
            |_| Op::Events {
                after: 0,
                limit: None,
                institution: None,
                district: None,
                wait_ms: Some(30_001),
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    rows.extend(forbidden_rows(
        &[Role::Bureau, district("500101"), Role::Auditor],
        |_| events_op(0, None, None),
    ));
    rows.extend(request_id_rows(Role::Training, |_| {
        events_op(0, None, None)
    }));
    run_table("events", rows);
}

fn events_of_district(code: &str) -> Op {
    events_op(0, None, Some(code))
}

// ---------------------------------------------------------------------------
// Sequences: retries, the deadline, the use limit, check-in days, admins,
// backpressure, refusals.

/// One valid request of each changing operation (the first of a pair), and a
/// different valid one of the same operation (the second; `expire` has none:
/// its one field is the year of the one campaign), on a world prepared for
/// both; with the role allowed to run them.
type WritePair = (&'static str, Role, fn(&World) -> (Op, Option<Op>));

fn write_pairs() -> Vec<WritePair> {
    vec![
        ("register_institution", Role::Bureau, |_| {
            (
                c_registration(|_| {}),
                Some(registration(
                    "5000004",
                    "500102",
                    "涪陵培训中心",
                    &admin_c(),
                    vec![site(SITE.0, SITE.1, None)],
                )),
            )
        }),
        ("set_institution_admin", Role::Bureau, |_| {
            (
                set_admin(A, "张伟", &id_number(902)),
                Some(set_admin(A, "李娜", &id_number(904))),
            )
        }),
        ("authorise_operator", Role::Gateway, |_| {
            (
                authorise(A, &admin_a(), "op-new"),
                Some(authorise(A, &admin_a(), "op-other")),
            )
        }),
        ("revoke_operator", Role::Gateway, |w| {
            w.ok(Role::Gateway, authorise(A, &admin_a(), "op-new"));
            (
                revoke(A, &admin_a(), OP_A),
                Some(revoke(A, &admin_a(), "op-new")),
            )
        }),
        ("issue", Role::Bureau, |_| {
            (
                issue(&p1(), Kind::EmploymentSkills),
                Some(issue(&p2(), Kind::EmploymentSkills)),
            )
        }),
        ("claim", Role::Gateway, |w| {
            let first = w.issued(&p1(), Kind::EmploymentSkills);
            let second = w.issued(&p1(), Kind::Entrepreneurship);
            (claim(first, &p1()), Some(claim(second, &p1())))
        }),
        ("redeem", Role::Gateway, |w| {
            let first = w.claimed(&p1(), Kind::EmploymentSkills);
            let second = w.claimed(&p1(), Kind::Entrepreneurship);
            (w.redeem(first, A, OP_A), Some(w.redeem(second, A, OP_A)))
        }),
        ("checkin", Role::Gateway, |w| {
            let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
            (
                checkin(voucher, SITE),
                Some(checkin(voucher, (SITE.0 + 0.001, SITE.1))),
            )
        }),
        ("complete", Role::Gateway, |w| {
            let first = w.redeemed(&p1(), Kind::EmploymentSkills);
            let second = w.redeemed(&p1(), Kind::Entrepreneurship);
            (complete(first, A), Some(complete(second, A)))
        }),
        ("evaluate", Role::Gateway, |w| {
            let voucher = w.completed(&p1(), Kind::EmploymentSkills);
            (
                evaluate(voucher, &p1(), 5, None),
                Some(evaluate(voucher, &p1(), 4, None)),
            )
        }),
        ("settle", district("500101"), |w| {
            let voucher = w.completed(&p1(), Kind::EmploymentSkills);
            (settle(voucher, 60_000), Some(settle(voucher, 50_000)))
        }),
        ("release", Role::Gateway, |w| {
            let first = w.redeemed(&p1(), Kind::EmploymentSkills);
            let second = w.redeemed(&p1(), Kind::Entrepreneurship);
            (release(first, A), Some(release(second, A)))
        }),
        ("expire", Role::Bureau, |w| {
            w.claimed(&p1(), Kind::EmploymentSkills);
            w.past_deadline();
            (expire(YEAR), None)
        }),
    ]
}

/// Every changing operation: a retry (same id, same content) answers the stored
/// answer and changes nothing; the same id with other content is refused
/// `request_id_reused` and changes nothing.
fn retries_and_reused_ids() {
    for (name, role, prepare) in write_pairs() {
        let w = World::new();
        let (first, second) = prepare(&w);
        assert_eq!(first.name(), name);
        let answer = w.run_id(role, "retry-1", first.clone());
        assert!(answer.outcome.is_ok(), "{name}: {answer:?}");
        let head = w.h.ledger.head();
        let figures = w.city();
        let again = w.run_id(role, "retry-1", first.clone());
        assert_eq!(again, answer, "{name}: a retry answers the stored answer");
        assert_eq!(w.h.ledger.head(), head, "{name}: a retry is applied once");
        assert_eq!(w.city(), figures, "{name}: a retry moves no figure");
        // The audit head read through the API agrees that nothing moved.
        let Reply::AuditHead { seq, .. } = w.ok(Role::Auditor, Op::AuditHead) else {
            panic!()
        };
        assert_eq!(seq, head.0, "{name}");
        if let Some(second) = second {
            assert_eq!(second.name(), name);
            let reused = w.run_id(role, "retry-1", second);
            check_refusal(&reused, role, "request_id_reused", name);
            assert_eq!(
                w.h.ledger.head(),
                head,
                "{name}: request_id_reused changes nothing"
            );
        }
    }

    // Applied once, in detail: a retried issue does not issue twice, a retried
    // redeem does not count a second use.
    let w = World::new();
    let first = w.run_id(Role::Bureau, "issue-1", issue(&p1(), Kind::HrServices));
    let Ok(Reply::Issued { voucher }) = first.outcome else {
        panic!("{first:?}")
    };
    let Reply::AuditHead { seq, .. } = w.ok(Role::Auditor, Op::AuditHead) else {
        panic!()
    };
    assert_eq!(
        w.run_id(Role::Bureau, "issue-1", issue(&p1(), Kind::HrServices)),
        first
    );
    let Reply::AuditHead { seq: seq_after, .. } = w.ok(Role::Auditor, Op::AuditHead) else {
        panic!()
    };
    assert_eq!(seq_after, seq, "audit_head seq does not move on a retry");
    assert_eq!(w.figures("500101"), (1, 0, 0));
    w.ok(Role::Gateway, claim(voucher, &p1()));
    let redeemed = w.run_id(Role::Gateway, "redeem-1", w.redeem(voucher, A, OP_A));
    assert_eq!(redeemed.outcome, Ok(Reply::Redeemed { uses_this_year: 1 }));
    assert_eq!(
        w.run_id(Role::Gateway, "redeem-1", w.redeem(voucher, A, OP_A)),
        redeemed
    );
    assert_eq!(w.uses(&p1()), 1);

    // A refusal is remembered too: the retry answers it even once the request
    // would now be accepted.
    let later = w.issued(&p2(), Kind::HrServices);
    let refused = w.run_id(Role::Gateway, "redeem-2", w.redeem(later, A, OP_A));
    check_refusal(
        &refused,
        Role::Gateway,
        "not_claimed",
        "redeem before claim",
    );
    w.ok(Role::Gateway, claim(later, &p2()));
    let head = w.h.ledger.head();
    assert_eq!(
        w.run_id(Role::Gateway, "redeem-2", w.redeem(later, A, OP_A)),
        refused
    );
    assert_eq!(w.h.ledger.head(), head);
    assert_eq!(w.view(later).state, VoucherState::Claimed);

    // A retry after the deadline answers what was decided before it.
    w.past_deadline();
    assert_eq!(
        w.run_id(Role::Gateway, "redeem-1", w.redeem(voucher, A, OP_A)),
        redeemed
    );
    assert_eq!(
        w.run_id(Role::Bureau, "issue-1", issue(&p1(), Kind::HrServices)),
        first
    );

    // Within one batch: a repeat is answered the same and applied once; other
    // content under the same id is refused.
    let w = World::new();
    let v1 = w.issued(&p1(), Kind::EmploymentSkills);
    let v2 = w.issued(&p1(), Kind::Entrepreneurship);
    let head = w.h.ledger.head();
    let batch = [
        Request {
            id: "batch-1".into(),
            op: claim(v1, &p1()),
        },
        Request {
            id: "batch-1".into(),
            op: claim(v1, &p1()),
        },
        Request {
            id: "batch-1".into(),
            op: claim(v2, &p1()),
        },
    ];
    let answers = w.h.ledger.execute(Role::Gateway, &batch);
    assert_eq!(answers[0].outcome, Ok(Reply::Done {}));
    assert_eq!(answers[1], answers[0]);
    check_refusal(
        &answers[2],
        Role::Gateway,
        "request_id_reused",
        "a batch reusing an id",
    );
    assert_eq!(w.h.ledger.head().0, head.0 + 1, "one claim applied");
    assert_eq!(w.view(v2).state, VoucherState::Issued);
}

/// The campaign deadline: refusals after it, `expire` and what it changes.
fn expiry_at_the_deadline() {
    let w = World::new();
    let issued = w.issued(&p1(), Kind::EmploymentSkills);
    let claimed = w.claimed(&p1(), Kind::Entrepreneurship);
    let redeemed = w.redeemed(&p2(), Kind::HrServices);
    w.ok(Role::Gateway, checkin(redeemed, SITE));
    let completed = w.completed(&p1(), Kind::DomesticServices);
    let settled = w.settled(&p2(), Kind::PreCompetition);
    let at_b = w.redeemed_at_b(&p2(), Kind::Apprenticeship);
    assert_eq!((w.uses(&p1()), w.uses(&p2())), (1, 3));
    assert_eq!(w.figures("500101"), (6, 5, 3));
    assert_eq!(w.figures("500102"), (0, 0, 1));

    // Before and at the deadline the campaign is open.
    w.refused(Role::Bureau, expire(YEAR), "campaign_open");
    w.h.clock.set(DEADLINE);
    w.refused(Role::Bureau, expire(YEAR), "campaign_open");
    let last = w.issued(&p1(), Kind::Adaptability);

    // After it, unfinished vouchers are refused `expired` even before expire runs.
    w.past_deadline();
    w.refused(Role::Gateway, claim(issued, &p1()), "expired");
    w.refused(Role::Gateway, claim(last, &p1()), "expired");
    w.refused(Role::Gateway, w.redeem(claimed, A, OP_A), "expired");
    w.refused(Role::Bureau, issue(&p1(), Kind::WorkForTraining), "expired");
    w.refused(Role::Gateway, checkin(redeemed, SITE), "expired");
    w.refused(Role::Gateway, complete(redeemed, A), "expired");
    w.refused(Role::Gateway, release(redeemed, A), "expired");

    // expire: issued, claimed and redeemed vouchers expire; completed and settled stay.
    assert_eq!(
        w.ok(Role::Bureau, expire(YEAR)),
        Reply::Expired { expired: 5 }
    );
    for voucher in [issued, claimed, redeemed, at_b, last] {
        assert_eq!(w.view(voucher).state, VoucherState::Expired, "{voucher}");
    }
    assert_eq!(w.view(completed).state, VoucherState::Completed);
    assert_eq!(w.view(settled).state, VoucherState::Settled);
    // Expired vouchers leave `used`; issued and claimed are cumulative.
    assert_eq!(w.figures("500101"), (7, 5, 2));
    assert_eq!(w.figures("500102"), (0, 0, 0));
    let stats = w.city();
    assert_eq!(
        (stats.city.issued, stats.city.claimed, stats.city.used),
        (7, 5, 2)
    );
    let c = &stats.coverage;
    assert_eq!(
        (
            c.used,
            c.used_with_checkin,
            c.districts_used,
            c.institutions_used
        ),
        (2, 0, 1, 1)
    );
    // The holders get their uses back (p2: HR services at A and apprenticeship at B).
    assert_eq!((w.uses(&p1()), w.uses(&p2())), (1, 1));
    // The release of an expired voucher does not give a use back twice.
    w.refused(Role::Gateway, release(redeemed, A), "expired");
    assert_eq!(w.uses(&p2()), 1);

    // A second run answers 0 and changes no voucher.
    assert_eq!(
        w.ok(Role::Bureau, expire(YEAR)),
        Reply::Expired { expired: 0 }
    );
    assert_eq!(w.figures("500101"), (7, 5, 2));

    // Expired vouchers refuse every step.
    w.refused(Role::Gateway, claim(issued, &p1()), "expired");
    w.refused(Role::Gateway, w.redeem(claimed, A, OP_A), "expired");
    w.refused(Role::Gateway, checkin(redeemed, SITE), "expired");
    w.refused(Role::Gateway, complete(redeemed, A), "expired");
    w.refused(
        Role::Gateway,
        evaluate(redeemed, &p2(), 5, None),
        "not_completed",
    );
    w.refused(district("500101"), settle(redeemed, 1), "not_completed");

    // Completed vouchers are not expired: still rated and settled after the deadline.
    w.ok(Role::Gateway, evaluate(completed, &p1(), 4, None));
    w.ok(district("500101"), settle(completed, FACE));
    let view = w.view(completed);
    assert_eq!(
        (view.state, view.settled_fen, view.score),
        (VoucherState::Settled, Some(FACE), Some(4))
    );
    assert_eq!(w.figures("500101"), (7, 5, 2));
}

/// The third use is the last; release gives one back.
fn use_limit_and_release() {
    let w = World::new();
    let vouchers: Vec<VoucherId> = Kind::ALL[..5]
        .iter()
        .map(|&kind| w.claimed(&p1(), kind))
        .collect();
    for (n, &voucher) in vouchers[..3].iter().enumerate() {
        let (institution, op) = if n == 1 { (B, OP_B) } else { (A, OP_A) };
        let uses = u8::try_from(n + 1).unwrap();
        assert_eq!(
            w.ok(Role::Gateway, w.redeem(voucher, institution, op)),
            Reply::Redeemed {
                uses_this_year: uses
            }
        );
    }
    w.refused(
        Role::Gateway,
        w.redeem(vouchers[3], A, OP_A),
        "use_limit_reached",
    );
    w.refused(
        Role::Gateway,
        w.redeem(vouchers[4], B, OP_B),
        "use_limit_reached",
    );
    assert_eq!(w.view(vouchers[3]).state, VoucherState::Claimed);
    // Another person is not affected.
    assert_eq!(
        w.ok(
            Role::Gateway,
            w.redeem(w.claimed(&p2(), Kind::EmploymentSkills), A, OP_A)
        ),
        Reply::Redeemed { uses_this_year: 1 }
    );
    // Release gives the use back; the fourth voucher may then be used.
    w.ok(Role::Gateway, release(vouchers[1], B));
    assert_eq!(w.uses(&p1()), 2);
    assert_eq!(
        w.ok(Role::Gateway, w.redeem(vouchers[3], A, OP_A)),
        Reply::Redeemed { uses_this_year: 3 }
    );
    // The released voucher itself now counts against the limit again.
    w.refused(
        Role::Gateway,
        w.redeem(vouchers[1], A, OP_A),
        "use_limit_reached",
    );
    // Completion does not give a use back.
    w.ok(Role::Gateway, complete(vouchers[0], A));
    w.refused(
        Role::Gateway,
        w.redeem(vouchers[4], A, OP_A),
        "use_limit_reached",
    );
    w.refused(Role::Gateway, release(vouchers[0], A), "already_completed");
    assert_eq!(w.uses(&p1()), 3);
}

/// One check-in per voucher per local day (UTC+8).
fn checkin_days() {
    let w = World::new();
    let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
    let checked = |session: &str, checkins: u32| Reply::CheckedIn {
        session: session.into(),
        checkins,
    };
    w.refused(Role::Gateway, checkin(voucher, FAR), "outside_site");
    assert_eq!(
        w.ok(Role::Gateway, checkin(voucher, SITE)),
        checked("2026-11-29", 1)
    );
    w.refused(Role::Gateway, checkin(voucher, SITE), "duplicate_checkin");
    w.h.clock.advance_s(14 * HOUR); // 23:00 +08:00, same day
    w.refused(Role::Gateway, checkin(voucher, SITE), "duplicate_checkin");
    w.h.clock.set(NOW);
    w.h.clock.advance_s(24 * HOUR); // 2026-11-30 09:00 +08:00, before the deadline
    w.refused(Role::Gateway, checkin(voucher, FAR), "outside_site");
    assert_eq!(
        w.ok(Role::Gateway, checkin(voucher, SITE)),
        checked("2026-11-30", 2)
    );
    w.refused(Role::Gateway, checkin(voucher, SITE), "duplicate_checkin");
    assert_eq!(w.view(voucher).checkins, 2);
    // Release clears the enrollment's check-ins; a new enrollment starts over.
    w.ok(Role::Gateway, release(voucher, A));
    w.ok(Role::Gateway, w.redeem(voucher, A, OP_A));
    assert_eq!(
        w.ok(Role::Gateway, checkin(voucher, SITE)),
        checked("2026-11-30", 1)
    );
}

/// Operators belong to the admin that authorised them.
fn admins_and_operators() {
    let w = World::new();
    let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
    let new_admin = id_number(902);
    w.refused(
        Role::Gateway,
        authorise(A, &new_admin, "op-x"),
        "not_authorised",
    );
    w.ok(Role::Bureau, set_admin(A, "张伟", &new_admin));
    w.refused(Role::Gateway, w.redeem(voucher, A, OP_A), "not_authorised");
    w.refused(
        Role::Gateway,
        authorise(A, &admin_a(), OP_A),
        "not_authorised",
    );
    w.refused(Role::Gateway, revoke(A, &new_admin, OP_A), "not_authorised");
    w.ok(Role::Gateway, authorise(A, &new_admin, "op-x"));
    assert_eq!(
        w.ok(Role::Gateway, w.redeem(voucher, A, "op-x")),
        Reply::Redeemed { uses_this_year: 1 }
    );
    w.ok(Role::Gateway, revoke(A, &new_admin, "op-x"));
    let other = w.claimed(&p1(), Kind::Entrepreneurship);
    w.refused(Role::Gateway, w.redeem(other, A, "op-x"), "not_authorised");
    // B is untouched by A's change.
    w.ok(Role::Gateway, w.redeem(other, B, OP_B));
    // The admin change is recorded: back to the first admin, who starts with no operators.
    w.ok(Role::Bureau, set_admin(A, "刘路", &admin_a()));
    let third = w.claimed(&p1(), Kind::HrServices);
    w.refused(Role::Gateway, w.redeem(third, A, OP_A), "not_authorised");
}

/// A full journal refuses writes `overloaded`, changes nothing, remembers
/// nothing; the same request succeeds once there is room.
fn overloaded_journal() {
    let w = World::new();
    let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
    let head = w.h.ledger.head();
    let figures = w.city();
    w.h.journal.set_full(true);
    let answer = w.run_id(Role::Gateway, "full-1", w.redeem(voucher, A, OP_A));
    check_refusal(
        &answer,
        Role::Gateway,
        "overloaded",
        "redeem on a full journal",
    );
    let issued = w.run_id(Role::Bureau, "full-2", issue(&p2(), Kind::EmploymentSkills));
    check_refusal(
        &issued,
        Role::Bureau,
        "overloaded",
        "issue on a full journal",
    );
    // A request the rules refuse cannot be remembered either: also overloaded.
    let unknown = w.run_id(Role::Gateway, "full-3", claim(NO_SUCH_VOUCHER, &p1()));
    check_refusal(
        &unknown,
        Role::Gateway,
        "overloaded",
        "a refusal on a full journal",
    );
    // Nothing changed; reads still answer.
    assert_eq!(w.h.ledger.head(), head);
    assert_eq!(w.view(voucher).state, VoucherState::Claimed);
    assert_eq!(w.city(), figures);
    assert_eq!(w.uses(&p1()), 0);
    let Reply::AuditHead { seq, .. } = w.ok(Role::Auditor, Op::AuditHead) else {
        panic!()
    };
    assert_eq!(seq, head.0);
    // Room again: the same request ids are decided afresh.
    w.h.journal.set_full(false);
    let retried = w.run_id(Role::Gateway, "full-1", w.redeem(voucher, A, OP_A));
    assert_eq!(retried.outcome, Ok(Reply::Redeemed { uses_this_year: 1 }));
    assert_eq!(w.h.ledger.head().0, head.0 + 1);
    assert!(matches!(
        w.run_id(Role::Bureau, "full-2", issue(&p2(), Kind::EmploymentSkills))
            .outcome,
        Ok(Reply::Issued { .. })
    ));
    let unknown = w.run_id(Role::Gateway, "full-3", claim(NO_SUCH_VOUCHER, &p1()));
    check_refusal(
        &unknown,
        Role::Gateway,
        "unknown_voucher",
        "the refusal once there is room",
    );
    assert_eq!(w.figures("500101"), (2, 1, 1));
}

/// A standby (replicated mode) refuses every request `not_leader` with the
/// message it was given (naming the leader), changes nothing and remembers
/// nothing: once it serves, the same ids are decided afresh.
fn standby_not_leader() {
    let w = World::new();
    let voucher = w.claimed(&p1(), Kind::EmploymentSkills);
    let head = w.h.ledger.head();
    w.h.ledger
        .set_standby(Some("not the leader: leader=127.0.0.1:7443".into()));
    assert!(w.h.ledger.is_standby());
    let answer = w.run_id(Role::Gateway, "standby-1", w.redeem(voucher, A, OP_A));
    check_refusal(&answer, Role::Gateway, "not_leader", "redeem on a standby");
    let Err(refusal) = &answer.outcome else {
        unreachable!()
    };
    assert!(refusal.message.contains("leader=127.0.0.1:7443"));
    let read = w.run_id(Role::Auditor, "standby-2", Op::AuditHead);
    check_refusal(&read, Role::Auditor, "not_leader", "a read on a standby");
    assert_eq!(w.h.ledger.head(), head);
    w.h.ledger.set_standby(None);
    let retried = w.run_id(Role::Gateway, "standby-1", w.redeem(voucher, A, OP_A));
    assert_eq!(retried.outcome, Ok(Reply::Redeemed { uses_this_year: 1 }));
}

/// A handful of refusals, each compared in full: audit head (seq, chain hash,
/// state digest), the voucher, the figures and the holder's uses.
fn refusals_change_nothing() {
    let w = World::new();
    let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
    w.ok(Role::Gateway, checkin(voucher, SITE));
    w.redeemed(&p1(), Kind::Entrepreneurship);
    w.redeemed(&p1(), Kind::HrServices);
    let fourth = w.claimed(&p1(), Kind::DomesticServices);
    let snapshot = |w: &World| {
        (
            w.h.ledger.head(),
            w.view(voucher),
            w.view(fourth),
            w.city(),
            w.uses(&p1()),
        )
    };
    let before = snapshot(&w);
    let refusals: [(Role, Op, &'static str); 11] = [
        (
            Role::Gateway,
            w.redeem(voucher, A, OP_A),
            "already_redeemed",
        ),
        (
            Role::Gateway,
            w.redeem(fourth, A, OP_A),
            "use_limit_reached",
        ),
        (Role::Gateway, checkin(voucher, SITE), "duplicate_checkin"),
        (Role::Gateway, checkin(voucher, FAR), "outside_site"),
        (Role::Gateway, release(voucher, B), "wrong_institution"),
        (
            Role::Gateway,
            evaluate(voucher, &p1(), 5, None),
            "not_completed",
        ),
        (district("500102"), settle(voucher, 1), "forbidden_role"),
        (Role::Auditor, release(voucher, A), "forbidden_role"),
        (Role::Gateway, claim(fourth, &p2()), "not_holder"),
        (Role::Bureau, expire(YEAR), "campaign_open"),
        (
            Role::Gateway,
            evaluate(voucher, &p1(), 5, Some("差".repeat(201))),
            "invalid_request",
        ),
    ];
    for (role, op, code) in refusals {
        let answer = w.h.run(role, op.clone());
        check_refusal(&answer, role, code, &format!("{op:?}"));
        assert_eq!(snapshot(&w), before, "refused {op:?} changed something");
    }
}

/// API.md: "Completed vouchers are not expired and can still be settled after
/// the deadline"; the README: "Past the deadline, a voucher that is not
/// completed is treated as expired by every rule" and "Check-in ...
/// (completed: `already_completed`)". A completed or settled voucher is
/// therefore answered by its state after the deadline too, as `complete` and
/// `release` already do. Collects every wrong answer before failing.
fn completed_vouchers_are_not_expired() {
    let w = World::new();
    let completed = w.completed(&p1(), Kind::EmploymentSkills);
    let settled = w.settled(&p1(), Kind::Entrepreneurship);
    w.past_deadline();
    let mut wrong = Vec::new();
    for expire_ran in [false, true] {
        if expire_ran {
            assert_eq!(
                w.ok(Role::Bureau, expire(YEAR)),
                Reply::Expired { expired: 0 }
            );
        }
        for voucher in [completed, settled] {
            assert_ne!(w.view(voucher).state, VoucherState::Expired);
            let cases = [
                (complete(voucher, A), "already_completed"),
                (release(voucher, A), "already_completed"),
                (checkin(voucher, SITE), "already_completed"),
                (w.redeem(voucher, A, OP_A), "already_redeemed"),
                (claim(voucher, &p1()), "kind_already_claimed"),
            ];
            for (op, want) in cases {
                let head = w.h.ledger.head();
                let got = match w.h.run(Role::Gateway, op.clone()).outcome {
                    Ok(reply) => format!("accepted {reply:?}"),
                    Err(refusal) => refusal.reason.as_str().to_owned(),
                };
                assert_eq!(w.h.ledger.head(), head);
                if got != want {
                    let state = w.view(voucher).state;
                    wrong.push(format!(
                        "{} of a {state:?} voucher (expire ran: {expire_ran}): {got}, want {want}",
                        op.name()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "after the deadline:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn register_institution_rules() {
    register_institution_table();
}

#[test]
fn set_institution_admin_rules() {
    set_institution_admin_table();
}

#[test]
fn authorise_operator_rules() {
    authorise_operator_table();
}

#[test]
fn revoke_operator_rules() {
    revoke_operator_table();
}

#[test]
fn issue_rules() {
    issue_table();
}

#[test]
fn claim_rules() {
    claim_table();
}

#[test]
fn redeem_rules() {
    redeem_table();
}

#[test]
fn checkin_rules() {
    checkin_table();
}

#[test]
fn complete_rules() {
    complete_table();
}

#[test]
fn evaluate_rules() {
    evaluate_table();
}

#[test]
fn settle_rules() {
    settle_table();
}

#[test]
fn release_rules() {
    release_table();
}

#[test]
fn expire_rules() {
    expire_table();
}

#[test]
fn get_voucher_rules() {
    get_voucher_table();
}

#[test]
fn stats_rules() {
    stats_table();
}

#[test]
fn list_vouchers_rules() {
    list_vouchers_table();
}

#[test]
fn events_rules() {
    events_table();
}

#[test]
fn audit_head_rules() {
    audit_head_table();
}

#[test]
fn a_retry_is_applied_once_and_a_reused_id_is_refused() {
    retries_and_reused_ids();
}

#[test]
fn the_deadline_expires_unfinished_vouchers() {
    expiry_at_the_deadline();
}

#[test]
fn a_person_uses_three_vouchers_a_year() {
    use_limit_and_release();
}

#[test]
fn one_checkin_per_local_day() {
    checkin_days();
}

#[test]
fn operators_belong_to_the_current_admin() {
    admins_and_operators();
}

#[test]
fn a_full_journal_refuses_overloaded_and_changes_nothing() {
    overloaded_journal();
}

#[test]
fn a_refused_operation_changes_nothing() {
    refusals_change_nothing();
}

#[test]

fn completed_vouchers_are_not_refused_expired() {
    completed_vouchers_are_not_expired();
}

// ---------------------------------------------------------------------------
// Classes (开班) and online check-ins (docs/decisions.md D50–D53).

/// Class days around `NOW` (2026-11-29 09:00 +08:00, deadline 2026-11-30).
const NOVEMBER: (&str, &str) = ("2026-11-01", "2026-11-30");

/// `open_class` of A by `op-a`, with the institution's sites when onsite.
fn open_class(class: &str, kind: Kind, (first, last): (&str, &str), mode: ClassMode) -> Op {
    open_class_at(A, OP_A, class, kind, (first, last), mode)
}

fn open_class_at(
    institution: &str,
    by: &str,
    class: &str,
    kind: Kind,
    days: (&str, &str),
    mode: ClassMode,
) -> Op {
    crate::common::open_class(institution, by, class, kind, days, mode)
}

fn with_sites(mut op: Op, specs: Vec<SiteSpec>) -> Op {
    if let Op::OpenClass { sites, .. } = &mut op {
        *sites = Some(specs);
    }
    op
}

fn online(voucher: VoucherId) -> Op {
    Op::CheckinOnline {
        voucher,
        online: true,
    }
}

impl World {
    /// A opens `class` for `kind`.
    fn class(&self, class: &str, kind: Kind, days: (&str, &str), mode: ClassMode) {
        self.ok(Role::Gateway, open_class(class, kind, days, mode));
    }

    /// Claimed by `person` and redeemed at A into `class`.
    fn enrolled(&self, person: &str, kind: Kind, class: &str) -> VoucherId {
        let voucher = self.claimed(person, kind);
        self.ok(Role::Gateway, redeem_class(voucher, class));
        voucher
    }

    /// A opens an onsite and an online employment-skills class for
    /// November; `person` enrolls in the one of `mode`.
    fn enrolled_in(&self, person: &str, mode: ClassMode) -> VoucherId {
        self.class(
            "电工-现场",
            Kind::EmploymentSkills,
            NOVEMBER,
            ClassMode::Onsite,
        );
        self.class(
            "电工-线上",
            Kind::EmploymentSkills,
            NOVEMBER,
            ClassMode::Online,
        );
        let class = match mode {
            ClassMode::Onsite => "电工-现场",
            ClassMode::Online => "电工-线上",
        };
        self.enrolled(person, Kind::EmploymentSkills, class)
    }
}

fn open_class_table() {
    let onsite = |_: &World| {
        open_class(
            "电工初级",
            Kind::EmploymentSkills,
            NOVEMBER,
            ClassMode::Onsite,
        )
    };
    let mut rows = vec![
        row(
            "an onsite class with the institution's sites",
            Role::Gateway,
            onsite,
            Expect::Done,
        ),
        row(
            "an online class",
            Role::Gateway,
            |_| {
                open_class(
                    "电商-线上",
                    Kind::Entrepreneurship,
                    NOVEMBER,
                    ClassMode::Online,
                )
            },
            Expect::Done,
        ),
        row(
            "an onsite class with its own site",
            Role::Gateway,
            |_| {
                with_sites(
                    open_class("叉车", Kind::EmployeeSafety, NOVEMBER, ClassMode::Onsite),
                    vec![site(FAR.0, FAR.1, Some(300))],
                )
            },
            Expect::Done,
        ),
        row(
            "one day (first = last)",
            Role::Gateway,
            |_| {
                open_class(
                    "一日班",
                    Kind::EmploymentSkills,
                    ("2026-11-29", "2026-11-29"),
                    ClassMode::Onsite,
                )
            },
            Expect::Done,
        ),
        row(
            "days already past (recorded late)",
            Role::Gateway,
            |_| {
                open_class(
                    "十月班",
                    Kind::EmploymentSkills,
                    ("2026-10-01", "2026-10-31"),
                    ClassMode::Onsite,
                )
            },
            Expect::Done,
        ),
        row(
            "the code another institution opened",
            Role::Gateway,
            |w| {
                w.ok(
                    Role::Gateway,
                    open_class_at(
                        B,
                        OP_B,
                        "电工初级",
                        Kind::EmploymentSkills,
                        NOVEMBER,
                        ClassMode::Onsite,
                    ),
                );
                open_class(
                    "电工初级",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                )
            },
            Expect::Done,
        ),
        row(
            "366 days",
            Role::Gateway,
            |_| {
                open_class(
                    "全年班",
                    Kind::EmploymentSkills,
                    ("2026-01-01", "2027-01-01"),
                    ClassMode::Online,
                )
            },
            Expect::Done,
        ),
        row(
            "367 days",
            Role::Gateway,
            |_| {
                open_class(
                    "超长班",
                    Kind::EmploymentSkills,
                    ("2026-01-01", "2027-01-02"),
                    ClassMode::Online,
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "last_day before first_day",
            Role::Gateway,
            |_| {
                open_class(
                    "倒序班",
                    Kind::EmploymentSkills,
                    ("2026-11-30", "2026-11-29"),
                    ClassMode::Onsite,
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "a first_day that is no date",
            Role::Gateway,
            |_| {
                open_class(
                    "错日班",
                    Kind::EmploymentSkills,
                    ("2026-02-30", "2026-11-29"),
                    ClassMode::Onsite,
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "a last_day in another form",
            Role::Gateway,
            |_| {
                open_class(
                    "错式班",
                    Kind::EmploymentSkills,
                    ("2026-11-01", "2026/11/29"),
                    ClassMode::Onsite,
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "sites for an online class",
            Role::Gateway,
            |_| {
                with_sites(
                    open_class(
                        "线上班",
                        Kind::EmploymentSkills,
                        NOVEMBER,
                        ClassMode::Online,
                    ),
                    vec![site(SITE.0, SITE.1, None)],
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "a site outside Chongqing",
            Role::Gateway,
            |_| {
                with_sites(
                    open_class(
                        "北京班",
                        Kind::EmploymentSkills,
                        NOVEMBER,
                        ClassMode::Onsite,
                    ),
                    vec![site(39.9, 116.4, None)],
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "a class code holding an ID number",
            Role::Gateway,
            |_| {
                open_class(
                    &format!("班{}", p1()),
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                )
            },
            Expect::Refused("invalid_request"),
        ),
        row(
            "the same code again",
            Role::Gateway,
            move |w| {
                w.ok(Role::Gateway, onsite(w));
                open_class("电工初级", Kind::HrServices, NOVEMBER, ClassMode::Online)
            },
            Expect::Refused("class_exists"),
        ),
        row(
            "an unknown institution",
            Role::Gateway,
            |_| {
                open_class_at(
                    NO_SUCH_INSTITUTION,
                    OP_A,
                    "电工",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                )
            },
            Expect::Refused("unknown_institution"),
        ),
        row(
            "an operator of another institution",
            Role::Gateway,
            |_| {
                open_class_at(
                    A,
                    OP_B,
                    "电工",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                )
            },
            Expect::Refused("not_authorised"),
        ),
        row(
            "an online platform may not open classes",
            Role::Platform,
            onsite,
            Expect::Refused("forbidden_role"),
        ),
    ];
    rows.extend(forbidden_rows(&[Role::Gateway], onsite));
    rows.extend(request_id_rows(Role::Gateway, onsite));
    run_table("open_class", rows);
}

/// `redeem` at an institution that opened classes (D50: one that opened
/// none still takes a free-text class, see `redeem_table`).
fn class_redeem_table() {
    let rows = vec![
        row(
            "into an open class of the voucher's kind",
            Role::Gateway,
            |w| {
                w.class(
                    "电工初级",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "电工初级")
            },
            check(|w, reply| {
                assert_eq!(reply, &Reply::Redeemed { uses_this_year: 1 });
                assert_eq!(w.view(VoucherId(1)).class.as_deref(), Some("电工初级"));
            }),
        ),
        row(
            "before the class's first day (enrolling early)",
            Role::Gateway,
            |w| {
                w.class(
                    "十二月班",
                    Kind::EmploymentSkills,
                    ("2026-12-01", "2026-12-20"),
                    ClassMode::Onsite,
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "十二月班")
            },
            Expect::Reply(Reply::Redeemed { uses_this_year: 1 }),
        ),
        row(
            "on the class's last day",
            Role::Gateway,
            |w| {
                w.class(
                    "末日班",
                    Kind::EmploymentSkills,
                    ("2026-11-01", "2026-11-29"),
                    ClassMode::Onsite,
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "末日班")
            },
            Expect::Reply(Reply::Redeemed { uses_this_year: 1 }),
        ),
        row(
            "a class the institution did not open",
            Role::Gateway,
            |w| {
                w.class(
                    "电工初级",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "电工中级")
            },
            Expect::Refused("unknown_class"),
        ),
        row(
            "a class another institution opened",
            Role::Gateway,
            |w| {
                w.class(
                    "电工初级",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                );
                w.ok(
                    Role::Gateway,
                    open_class_at(
                        B,
                        OP_B,
                        "B班",
                        Kind::EmploymentSkills,
                        NOVEMBER,
                        ClassMode::Onsite,
                    ),
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "B班")
            },
            Expect::Refused("unknown_class"),
        ),
        row(
            "a class for another kind",
            Role::Gateway,
            |w| {
                w.class(
                    "家政班",
                    Kind::DomesticServices,
                    NOVEMBER,
                    ClassMode::Onsite,
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "家政班")
            },
            Expect::Refused("wrong_kind"),
        ),
        row(
            "a class whose last day has passed",
            Role::Gateway,
            |w| {
                w.class(
                    "十月班",
                    Kind::EmploymentSkills,
                    ("2026-10-01", "2026-11-28"),
                    ClassMode::Onsite,
                );
                redeem_class(w.claimed(&p1(), Kind::EmploymentSkills), "十月班")
            },
            Expect::Refused("class_closed"),
        ),
        row(
            "a voucher not claimed names the voucher's problem first",
            Role::Gateway,
            |w| {
                w.class(
                    "电工初级",
                    Kind::EmploymentSkills,
                    NOVEMBER,
                    ClassMode::Onsite,
                );
                redeem_class(w.issued(&p1(), Kind::EmploymentSkills), "电工中级")
            },
            Expect::Refused("not_claimed"),
        ),
    ];
    run_table("redeem", rows);
}

/// `checkin` with a position, for vouchers enrolled in a class.
fn class_checkin_table() {
    let rows = vec![
        row(
            "at the institution's site, on a class day",
            Role::Gateway,
            |w| checkin(w.enrolled_in(&p1(), ClassMode::Onsite), SITE),
            Expect::Reply(Reply::CheckedIn {
                session: "2026-11-29".into(),
                checkins: 1,
            }),
        ),
        row(
            "at the class's own site",
            Role::Gateway,
            |w| {
                w.ok(
                    Role::Gateway,
                    with_sites(
                        open_class("叉车", Kind::EmployeeSafety, NOVEMBER, ClassMode::Onsite),
                        vec![site(FAR.0, FAR.1, None)],
                    ),
                );
                checkin(w.enrolled(&p1(), Kind::EmployeeSafety, "叉车"), FAR)
            },
            accepted(),
        ),
        row(
            "at the institution's site when the class has its own",
            Role::Gateway,
            |w| {
                w.ok(
                    Role::Gateway,
                    with_sites(
                        open_class("叉车", Kind::EmployeeSafety, NOVEMBER, ClassMode::Onsite),
                        vec![site(FAR.0, FAR.1, None)],
                    ),
                );
                checkin(w.enrolled(&p1(), Kind::EmployeeSafety, "叉车"), SITE)
            },
            Expect::Refused("outside_site"),
        ),
        row(
            "before the class's first day",
            Role::Gateway,
            |w| {
                w.class(
                    "月底班",
                    Kind::EmploymentSkills,
                    ("2026-11-30", "2026-12-10"),
                    ClassMode::Onsite,
                );
                checkin(w.enrolled(&p1(), Kind::EmploymentSkills, "月底班"), SITE)
            },
            Expect::Refused("class_closed"),
        ),
        row(
            "after the class's last day",
            Role::Gateway,
            |w| {
                w.class(
                    "短班",
                    Kind::EmploymentSkills,
                    ("2026-11-01", "2026-11-29"),
                    ClassMode::Onsite,
                );
                let voucher = w.enrolled(&p1(), Kind::EmploymentSkills, "短班");
                w.h.clock.advance_s(24 * HOUR); // 2026-11-30 09:00 +08:00
                checkin(voucher, SITE)
            },
            Expect::Refused("class_closed"),
        ),
        row(
            "a position for an online class",
            Role::Gateway,
            |w| checkin(w.enrolled_in(&p1(), ClassMode::Online), SITE),
            Expect::Refused("wrong_mode"),
        ),
        row(
            "a positioned check-in sent by the platform",
            Role::Platform,
            |w| checkin(w.enrolled_in(&p1(), ClassMode::Onsite), SITE),
            Expect::Refused("forbidden_role"),
        ),
        row(
            "twice on a class day",
            Role::Gateway,
            |w| {
                let voucher = w.enrolled_in(&p1(), ClassMode::Onsite);
                w.ok(Role::Gateway, checkin(voucher, SITE));
                checkin(voucher, SITE)
            },
            Expect::Refused("duplicate_checkin"),
        ),
        row(
            "an enrolled voucher checks in at its class whatever A opens later \
             (a free-text enrollment of records before D51 is replayed by the golden fixtures)",
            Role::Gateway,
            |w| {
                let voucher = w.redeemed(&p1(), Kind::EmploymentSkills);
                w.class(
                    "电工初级 2026 冬",
                    Kind::HrServices,
                    ("2026-12-01", "2026-12-02"),
                    ClassMode::Online,
                );
                checkin(voucher, SITE)
            },
            accepted(),
        ),
    ];
    run_table("checkin", rows);
}

/// `checkin` with `"online": true`, sent by an online platform.
fn online_checkin_table() {
    let on_day = |w: &World| online(w.enrolled_in(&p1(), ClassMode::Online));
    let mut rows = vec![
        row(
            "for an online class, on a class day",
            Role::Platform,
            on_day,
            check(|w, reply| {
                assert_eq!(
                    reply,
                    &Reply::CheckedIn {
                        session: "2026-11-29".into(),
                        checkins: 1
                    }
                );
                assert_eq!(w.view(VoucherId(1)).checkins, 1);
                assert_eq!(w.city().coverage.used_with_checkin, 1);
            }),
        ),
        row(
            "the next day",
            Role::Platform,
            |w| {
                let voucher = w.enrolled_in(&p1(), ClassMode::Online);
                w.ok(Role::Platform, online(voucher));
                w.h.clock.advance_s(24 * HOUR);
                online(voucher)
            },
            Expect::Reply(Reply::CheckedIn {
                session: "2026-11-30".into(),
                checkins: 2,
            }),
        ),
        row(
            "twice the same day",
            Role::Platform,
            |w| {
                let voucher = w.enrolled_in(&p1(), ClassMode::Online);
                w.ok(Role::Platform, online(voucher));
                online(voucher)
            },
            Expect::Refused("duplicate_checkin"),
        ),
        row(
            "before the class's first day",
            Role::Platform,
            |w| {
                w.class(
                    "网课",
                    Kind::EmploymentSkills,
                    ("2026-11-30", "2026-12-10"),
                    ClassMode::Online,
                );
                online(w.enrolled(&p1(), Kind::EmploymentSkills, "网课"))
            },
            Expect::Refused("class_closed"),
        ),
        row(
            "for an onsite class",
            Role::Platform,
            |w| online(w.enrolled_in(&p1(), ClassMode::Onsite)),
            Expect::Refused("wrong_mode"),
        ),
        row(
            "for a voucher redeemed with a free-text class",
            Role::Platform,
            |w| online(w.redeemed(&p1(), Kind::EmploymentSkills)),
            Expect::Refused("wrong_mode"),
        ),
        row(
            "for a voucher not redeemed",
            Role::Platform,
            |w| online(w.claimed(&p1(), Kind::EmploymentSkills)),
            Expect::Refused("not_redeemed"),
        ),
        row(
            "an unknown voucher",
            Role::Platform,
            |_| online(NO_SUCH_VOUCHER),
            Expect::Refused("unknown_voucher"),
        ),
        row(
            "online: false",
            Role::Platform,
            |w| Op::CheckinOnline {
                voucher: w.enrolled_in(&p1(), ClassMode::Online),
                online: false,
            },
            Expect::Refused("invalid_request"),
        ),
    ];
    // A gateway sends positioned check-ins only, so every role of `roles()` is refused.
    rows.extend(forbidden_rows(&[], on_day));
    rows.extend(request_id_rows(Role::Platform, on_day));
    run_table("checkin_online", rows);
}

/// Classes and enrollments are state: they survive a reopen (recovery) and
/// a release ends the enrollment, so the voucher re-enrolls by name.
fn classes_after_reopen_and_release() {
    let w = World::new();
    let voucher = w.enrolled_in(&p1(), ClassMode::Online);
    // Request ids of their own: a reopened harness counts ids from 0 again.
    let ids = std::cell::Cell::new(0);
    let send = |h: &Harness, role: Role, op: Op| -> Result<Reply, &'static str> {
        ids.set(ids.get() + 1);
        let request = Request {
            id: format!("after-reopen-{}", ids.get()),
            op,
        };
        let answer = h.ledger.execute(role, &[request]).remove(0);
        answer.outcome.map_err(|refusal| refusal.reason.as_str())
    };
    let checked_in = Ok(Reply::CheckedIn {
        session: "2026-11-29".into(),
        checkins: 1,
    });
    let reopened = Harness::on(w.h.journal.clone());
    assert_eq!(reopened.head(), w.h.head());
    assert_eq!(
        send(&reopened, Role::Gateway, checkin(voucher, SITE)),
        Err("wrong_mode")
    );
    assert_eq!(send(&reopened, Role::Platform, online(voucher)), checked_in);
    let again = open_class(
        "电工-线上",
        Kind::EmploymentSkills,
        NOVEMBER,
        ClassMode::Online,
    );
    assert_eq!(send(&reopened, Role::Gateway, again), Err("class_exists"));
    assert_eq!(
        send(&reopened, Role::Gateway, release(voucher, A)),
        Ok(Reply::Done {})
    );
    assert_eq!(
        send(
            &reopened,
            Role::Gateway,
            redeem_class(voucher, "电工初级 2026 冬")
        ),
        Err("unknown_class")
    );
    assert_eq!(
        send(&reopened, Role::Gateway, redeem_class(voucher, "电工-现场")),
        Ok(Reply::Redeemed { uses_this_year: 1 })
    );
    let third = Harness::on(w.h.journal.clone());
    assert_eq!(third.head(), reopened.head());
    assert_eq!(
        send(&third, Role::Platform, online(voucher)),
        Err("wrong_mode")
    );
    assert_eq!(
        send(&third, Role::Gateway, checkin(voucher, SITE)),
        checked_in
    );
}

#[test]
fn open_class_rules() {
    open_class_table();
}

#[test]
fn redeem_into_a_class_rules() {
    class_redeem_table();
}

#[test]
fn checkin_in_a_class_rules() {
    class_checkin_table();
}

#[test]
fn online_checkin_rules() {
    online_checkin_table();
}

#[test]
fn classes_survive_a_reopen_and_a_release_ends_the_enrollment() {
    classes_after_reopen_and_release();
}

/// Every table and sequence of this file.
const ALL: [fn(); 30] = [
    register_institution_table,
    set_institution_admin_table,
    authorise_operator_table,
    revoke_operator_table,
    issue_table,
    claim_table,
    redeem_table,
    checkin_table,
    complete_table,
    evaluate_table,
    settle_table,
    release_table,
    expire_table,
    get_voucher_table,
    stats_table,
    audit_head_table,
    events_table,
    retries_and_reused_ids,
    expiry_at_the_deadline,
    use_limit_and_release,
    checkin_days,
    admins_and_operators,
    overloaded_journal,
    standby_not_leader,
    refusals_change_nothing,
    open_class_table,
    class_redeem_table,
    class_checkin_table,
    online_checkin_table,
    classes_after_reopen_and_release,
];

#[test]
fn every_reason_code_is_exercised() {
    SEEN.with(|seen| seen.borrow_mut().clear());
    for run in ALL {
        run();
    }
    let seen = SEEN.with(|seen| seen.borrow().clone());
    // Storage failures are the disk tests' (`disk::a_failed_sync_is_outcome_unknown_then_the_retry_tells`).
    let untestable = [
        Reason::ShuttingDown,
        Reason::StorageUnavailable,
        Reason::OutcomeUnknown,
    ];
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|reason| !untestable.contains(reason))
        .filter(|reason| !crate::common::NOT_YET_BUILT.contains(reason))
        .map(|reason| reason.as_str())
        .filter(|code| !seen.contains(code))
        .collect();
    assert!(
        missing.is_empty(),
        "reason codes no test of this file observed: {missing:?}"
    );
    assert!(seen.contains("overloaded"));
}

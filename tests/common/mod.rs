//! Shared helpers for the integration tests: a ledger on a memory journal with
//! a hand-moved clock, valid ID numbers, and request builders.
#![allow(dead_code)]

use std::sync::Arc;

use voucherd::domain::campaign::{Campaign, Campaigns};
use voucherd::domain::enums::{Category, Channel, InstitutionType, Kind};
use voucherd::domain::ids::{DistrictCode, InstitutionCode, OperatorId, PersonSecret, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec};
use voucherd::domain::time::{ManualClock, Timestamp};
use voucherd::journal::MemoryJournal;
use voucherd::ledger::{Ledger, LedgerConfig};

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
        let config = LedgerConfig { campaigns: campaigns(), secret: secret(), clock: clock.clone() };
        let ledger = Arc::new(Ledger::open(config, journal.clone()).expect("ledger opens"));
        Harness { ledger, journal, clock, next_request: Default::default() }
    }

    pub fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("req-{n}")
    }

    /// Runs one operation as `role` with a fresh request id.
    pub fn run(&self, role: Role, op: Op) -> Answer {
        let request = Request { id: self.request_id(), op };
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
        self.ok(Role::Gateway, Op::Claim { voucher, id_number: person.into() });
        voucher
    }

    /// Issues, claims and redeems at `institution` by `operator`.
    pub fn redeemed(&self, person: &str, kind: Kind, institution: &str, operator: &str) -> VoucherId {
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
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let body = format!("50010119900101{:03}", n % 1000);
    let body = format!("{}{:03}", &body[..11], n / 1000 % 1000) + &body[14..];
    let body = &body[..17];
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    format!("{body}{}", CHECK[(sum % 11) as usize] as char)
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
        sites: vec![SiteSpec { lat: SITE.0, lon: SITE.1, radius_m: None }],
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

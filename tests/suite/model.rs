//! Model-based randomized test: seeded concurrent operations on the ledger
//! (memory and RocksDB) checked, in audit order, against a simple reference
//! model written here, not `domain::rules` (docs/reliability.md; `VOUCHERD_SEEDS`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;

use crate::common::{
    bad_id_number, campaigns, id_number, open_class, Disk, Drive, Harness, DEADLINE, FAR, SITE,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use voucherd::audit::{self, AuditRecord};
use voucherd::domain::campaign::Campaign;
use voucherd::domain::enums::{Category, Channel, ClassMode, Kind, VoucherState};
use voucherd::domain::ids::{InstitutionCode, VoucherId};
use voucherd::domain::op::{
    Answer, CityStats, Coverage, DistrictStats, InstitutionStats, Op, Reply, Request, Role,
    SiteSpec, StatsView, StepTimes, VoucherView,
};
use voucherd::domain::time::Timestamp;
use voucherd::ledger::Ledger;
use voucherd::store::journal::{Journal, Table};

/// Threads that send operations at the same time.
const THREADS: usize = 4;
/// Operations each thread sends per round; rounds per seed.
const OPS_PER_THREAD: usize = 6;
const ROUNDS: usize = 8;
/// Persons of a run (ID numbers `id_number(1..=PERSONS)`).
const PERSONS: u64 = 4;
/// The institutions registered at the start: code, district.
const INSTITUTIONS: [(&str, &str); 3] = [
    ("5000001", "500101"),
    ("5000002", "500102"),
    ("5000003", "LJXQ"),
];
const UNKNOWN_INSTITUTION: &str = "5000099";
const OPERATORS: [&str; 3] = ["op-a", "op-b", "op-c"];
/// A district the campaign does not have.
const FOREIGN_DISTRICT: &str = "500199";

// ---------------------------------------------------------------------------
// The reference model.

/// The rules' constants, read from the campaign configuration (not from code).
#[derive(Clone, Debug)]
struct Rules {
    year: u16,
    deadline: i64,
    utc_offset_s: i64,
    uses_max: usize,
    issued_goal: u64,
    used_goal: u64,
    /// (code, name, target) in campaign order.
    districts: Vec<(String, String, u64)>,
}

impl Rules {
    fn of(campaign: &Campaign) -> Rules {
        Rules {
            year: campaign.year,
            deadline: campaign.deadline.0,
            utc_offset_s: i64::from(campaign.utc_offset_s),
            uses_max: usize::from(campaign.uses_per_person_max),
            issued_goal: campaign.issued_goal,
            used_goal: campaign.used_goal,
            districts: campaign
                .districts
                .iter()
                .map(|d| (d.code.to_string(), d.name.clone(), d.target))
                .collect(),
        }
    }

    fn has_district(&self, code: &str) -> bool {
        self.districts.iter().any(|(c, _, _)| c == code)
    }
}

#[derive(Clone, Debug)]
struct ModelInstitution {
    name: String,
    district: String,
    /// The admin's ID number.
    admin: String,
    operators: BTreeSet<String>,
    /// Classes opened, by code.
    classes: BTreeMap<String, ModelClass>,
}

#[derive(Clone, Debug)]
struct ModelClass {
    kind: Kind,
    /// YYYY-MM-DD (compared as text).
    first_day: String,
    last_day: String,
    online: bool,
}

/// The classes each institution but the last opens in round 0, for kind
/// `Kind::ALL[n]` (the kinds the generator issues): code, first and last
/// day, online. The last institution opens none: its redeems take a
/// free-text class (D50).
fn planned_classes() -> Vec<(String, usize, &'static str, &'static str, bool)> {
    let mut classes = Vec::new();
    for n in 0..6 {
        classes.push((format!("班-{n}"), n, "2026-11-01", "2026-11-30", n % 2 == 1));
    }
    classes.push(("月末班".into(), 0, "2026-11-30", "2026-12-31", false));
    classes.push(("十月班".into(), 1, "2026-10-01", "2026-10-31", false));
    classes
}

/// The class codes the generator names (some never opened).
const CLASS_CODES: [&str; 9] = [
    "班-0",
    "班-1",
    "班-2",
    "班-3",
    "班-4",
    "班-5",
    "月末班",
    "十月班",
    "无此班",
];

#[derive(Clone, Debug)]
struct ModelVoucher {
    holder: String,
    kind: Kind,
    category: Category,
    channel: Channel,
    face: u64,
    district: String,
    state: VoucherState,
    ever_claimed: bool,
    institution: Option<String>,
    checkins: u32,
    last_checkin_date: Option<String>,
    score: Option<u8>,
    settled: Option<u64>,
    /// The class of the latest redemption.
    class: Option<String>,
    /// Whether that class is one the institution opened (else free text).
    enrolled: bool,
    /// When each step was last done: issued, claimed, redeemed, completed, settled.
    times: [Option<i64>; 5],
}

#[derive(Clone, Debug)]
struct Model {
    rules: Rules,
    institutions: BTreeMap<String, ModelInstitution>,
    vouchers: BTreeMap<VoucherId, ModelVoucher>,
}

type Outcome = Result<Reply, &'static str>;

fn is_used(state: VoucherState) -> bool {
    matches!(
        state,
        VoucherState::Redeemed | VoucherState::Completed | VoucherState::Settled
    )
}

fn finished(state: VoucherState) -> bool {
    matches!(state, VoucherState::Completed | VoucherState::Settled)
}

/// GB 11643 / ISO 7064 MOD 11-2, written out again.
fn valid_id_number(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() != 18 || !chars[..17].iter().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0;
    for (c, w) in chars[..17].iter().zip(weights) {
        sum += c.to_digit(10).unwrap() * w;
    }
    let check = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][(sum % 11) as usize];
    chars[17].to_ascii_uppercase() == check
}

/// Great-circle distance in metres (haversine, mean Earth radius).
fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let r = 6_371_008.8;
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let dla = la2 - la1;
    let dlo = (b.1 - a.1).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * r * h.sqrt().asin()
}

fn role_may(role: Role, op: &Op) -> bool {
    match op {
        Op::RegisterInstitution { .. }
        | Op::SetInstitutionAdmin { .. }
        | Op::Issue { .. }
        | Op::Expire { .. } => role == Role::Bureau,
        Op::Settle { .. } => matches!(role, Role::District(_)),
        Op::Stats { .. } => role != Role::Gateway,
        Op::GetVoucher { .. } | Op::AuditHead => true,
        Op::AuditRead { .. } => matches!(role, Role::Bureau | Role::Auditor),
        Op::CheckinOnline { .. } => role == Role::Platform,
        _ => role == Role::Gateway,
    }
}

impl Model {
    fn new(rules: Rules) -> Model {
        Model {
            rules,
            institutions: BTreeMap::new(),
            vouchers: BTreeMap::new(),
        }
    }

    fn uses(&self, holder: &str) -> usize {
        self.vouchers
            .values()
            .filter(|v| v.holder == holder && is_used(v.state))
            .count()
    }

    fn kind_claimed(&self, holder: &str, kind: Kind) -> bool {
        self.vouchers
            .values()
            .any(|v| v.holder == holder && v.kind == kind && v.ever_claimed)
    }

    fn expired(&self, voucher: &ModelVoucher, now: i64) -> bool {
        voucher.state == VoucherState::Expired
            || (!finished(voucher.state) && now > self.rules.deadline)
    }

    /// The local date (YYYY-MM-DD) at `now`.
    fn date(&self, now: i64) -> String {
        chrono::DateTime::from_timestamp(now + self.rules.utc_offset_s, 0)
            .unwrap()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string()
    }

    fn voucher(&self, id: VoucherId) -> Result<&ModelVoucher, &'static str> {
        self.vouchers.get(&id).ok_or("unknown_voucher")
    }

    /// The state answers show: past the deadline an unfinished voucher reads
    /// as expired whether or not `expire` has been written (API.md).
    fn shown(&self, v: &ModelVoucher, now: i64) -> VoucherState {
        match self.expired(v, now) {
            true => VoucherState::Expired,
            false => v.state,
        }
    }

    fn view(&self, id: VoucherId, now: i64) -> Option<VoucherView> {
        let v = self.vouchers.get(&id)?;
        Some(VoucherView {
            voucher: id,
            state: self.shown(v, now),
            kind: v.kind,
            category: v.category,
            channel: v.channel,
            face_value_fen: v.face,
            year: self.rules.year,
            institution: v.institution.as_ref().map(|c| c.parse().unwrap()),
            district: v.district.parse().unwrap(),
            checkins: v.checkins,
            score: v.score,
            settled_fen: v.settled,
            class: v.institution.as_ref().and(v.class.clone()),
            steps: {
                let at = |step: usize, shown: bool| {
                    v.times[step].filter(|_| shown).map(|t| {
                        chrono::DateTime::from_timestamp(t, 0)
                            .unwrap()
                            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
                            .to_rfc3339()
                    })
                };
                let completed = matches!(v.state, VoucherState::Completed | VoucherState::Settled);
                StepTimes {
                    issued_at: at(0, true),
                    claimed_at: at(1, v.ever_claimed),
                    redeemed_at: at(2, v.institution.is_some()),
                    completed_at: at(3, completed),
                    settled_at: at(4, v.settled.is_some()),
                }
            },
        })
    }

    fn stats(&self, now: i64) -> StatsView {
        let is_used = |v: &ModelVoucher| is_used(self.shown(v, now));
        let percent = |used: u64, target: u64| {
            if target == 0 {
                0.0
            } else {
                (used as f64 * 10_000.0 / target as f64).round() / 100.0
            }
        };
        let district_of_institution = |code: &String| self.institutions[code].district.clone();
        let mut districts = Vec::new();
        for (code, name, target) in &self.rules.districts {
            let issued = self
                .vouchers
                .values()
                .filter(|v| &v.district == code)
                .count() as u64;
            let claimed = self
                .vouchers
                .values()
                .filter(|v| &v.district == code && v.ever_claimed)
                .count() as u64;
            let used = self
                .vouchers
                .values()
                .filter(|v| is_used(v))
                .filter(|v| {
                    v.institution.as_ref().map(district_of_institution).as_ref() == Some(code)
                })
                .count() as u64;
            let settled_fen = self
                .vouchers
                .values()
                .filter(|v| {
                    v.institution.as_ref().map(district_of_institution).as_ref() == Some(code)
                })
                .filter_map(|v| v.settled)
                .sum();
            districts.push(DistrictStats {
                code: code.parse().unwrap(),
                name: name.clone(),
                target: *target,
                issued,
                claimed,
                used,
                percent_of_target: percent(used, *target),
                settled_fen,
            });
        }
        let target = districts.iter().map(|d| d.target).sum();
        let used = districts.iter().map(|d| d.used).sum();
        let used_vouchers: Vec<&ModelVoucher> =
            self.vouchers.values().filter(|v| is_used(v)).collect();
        let institutions_used: BTreeSet<&String> = used_vouchers
            .iter()
            .filter_map(|v| v.institution.as_ref())
            .collect();
        // Per institution, in code order: vouchers used there, evaluations
        // of vouchers redeemed there and their mean score (2 decimals).
        let institutions = self
            .institutions
            .iter()
            .map(|(code, institution)| {
                let here: Vec<&ModelVoucher> = self
                    .vouchers
                    .values()
                    .filter(|v| v.institution.as_deref() == Some(code.as_str()))
                    .collect();
                let scores: Vec<u64> = here.iter().filter_map(|v| v.score).map(u64::from).collect();
                InstitutionStats {
                    code: code.parse().unwrap(),
                    name: institution.name.clone(),
                    district: institution.district.parse().unwrap(),
                    used: here.iter().filter(|v| is_used(v)).count() as u64,
                    evaluations: scores.len() as u64,
                    average_score: (!scores.is_empty()).then(|| {
                        (scores.iter().sum::<u64>() as f64 * 100.0 / scores.len() as f64).round()
                            / 100.0
                    }),
                    settled_fen: here.iter().filter_map(|v| v.settled).sum(),
                }
            })
            .collect();
        StatsView {
            at: String::new(),
            seq: 0,
            institutions,
            year: self.rules.year,
            city: CityStats {
                target,
                issued: districts.iter().map(|d| d.issued).sum(),
                claimed: districts.iter().map(|d| d.claimed).sum(),
                used,
                percent_of_target: percent(used, target),
                issued_goal: self.rules.issued_goal,
                used_goal: self.rules.used_goal,
                settled_fen: districts.iter().map(|d| d.settled_fen).sum(),
            },
            coverage: Coverage {
                districts_used: districts.iter().filter(|d| d.used > 0).count() as u64,
                districts_total: districts.len() as u64,
                institutions_used: institutions_used.len() as u64,
                institutions_registered: self.institutions.len() as u64,
                used_with_checkin: used_vouchers.iter().filter(|v| v.checkins > 0).count() as u64,
                used,
            },
            districts,
        }
    }

    /// Checks the fields of a request (before anything is looked up).
    fn validate(&self, op: &Op) -> Result<(), &'static str> {
        let id_ok = |text: &str| {
            if valid_id_number(text) {
                Ok(())
            } else {
                Err("invalid_id_number")
            }
        };
        match op {
            Op::Issue {
                id_number,
                face_value_fen,
                year,
                ..
            } => {
                if *face_value_fen == 0 || *face_value_fen > 10_000_000 {
                    return Err("invalid_request");
                }
                if year.is_some_and(|y| y != self.rules.year) {
                    return Err("invalid_request");
                }
                id_ok(id_number)
            }
            Op::Evaluate {
                id_number,
                score,
                comment,
                ..
            } => {
                if !(1..=5).contains(score) {
                    return Err("invalid_request");
                }
                if comment.as_ref().is_some_and(|c| c.chars().count() > 200) {
                    return Err("invalid_request");
                }
                id_ok(id_number)
            }
            Op::Claim { id_number, .. } => id_ok(id_number),
            Op::RegisterInstitution {
                admin_id_number, ..
            }
            | Op::SetInstitutionAdmin {
                admin_id_number, ..
            }
            | Op::AuthoriseOperator {
                admin_id_number, ..
            }
            | Op::RevokeOperator {
                admin_id_number, ..
            } => id_ok(admin_id_number),
            Op::Expire { year } if *year != self.rules.year => Err("invalid_request"),
            Op::OpenClass {
                first_day,
                last_day,
                mode,
                sites,
                ..
            } => {
                let date = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
                match (date(first_day), date(last_day)) {
                    (Some(first), Some(last)) if first <= last => {}
                    _ => return Err("invalid_request"),
                }
                if *mode == ClassMode::Online && sites.is_some() {
                    return Err("invalid_request");
                }
                Ok(())
            }
            Op::CheckinOnline { online, .. } if !online => Err("invalid_request"),
            _ => Ok(()),
        }
    }

    /// Applies one request at time `now`. `issued` is the id the ledger gave a
    /// new voucher (ids are allocated, not derived). Refusals change nothing.
    fn apply(&mut self, role: Role, op: &Op, now: i64, issued: Option<VoucherId>) -> Outcome {
        if !role_may(role, op) {
            return Err("forbidden_role");
        }
        self.validate(op)?;
        let done = Ok(Reply::Done {});
        match op {
            Op::RegisterInstitution {
                code,
                name,
                district,
                admin_id_number,
                ..
            } => {
                let code = code.to_string();
                if self.institutions.contains_key(&code) {
                    return Err("institution_exists");
                }
                if !self.rules.has_district(&district.to_string()) {
                    return Err("unknown_district");
                }
                self.institutions.insert(
                    code,
                    ModelInstitution {
                        name: name.clone(),
                        district: district.to_string(),
                        admin: admin_id_number.clone(),
                        operators: BTreeSet::new(),
                        classes: BTreeMap::new(),
                    },
                );
                done
            }
            Op::SetInstitutionAdmin {
                institution,
                admin_id_number,
                ..
            } => {
                let found = self
                    .institutions
                    .get_mut(&institution.to_string())
                    .ok_or("unknown_institution")?;
                if &found.admin != admin_id_number {
                    found.admin = admin_id_number.clone();
                    found.operators.clear();
                }
                done
            }
            Op::AuthoriseOperator {
                institution,
                admin_id_number,
                operator,
            }
            | Op::RevokeOperator {
                institution,
                admin_id_number,
                operator,
            } => {
                let found = self
                    .institutions
                    .get_mut(&institution.to_string())
                    .ok_or("unknown_institution")?;
                if &found.admin != admin_id_number {
                    return Err("not_authorised");
                }
                if matches!(op, Op::AuthoriseOperator { .. }) {
                    found.operators.insert(operator.to_string());
                } else if !found.operators.remove(operator.as_str()) {
                    return Err("not_authorised");
                }
                done
            }
            Op::Issue {
                id_number,
                category,
                kind,
                face_value_fen,
                channel,
                district,
                ..
            } => {
                if !self.rules.has_district(&district.to_string()) {
                    return Err("unknown_district");
                }
                if now > self.rules.deadline {
                    return Err("expired");
                }
                let id = issued.expect("an accepted issue names its voucher");
                assert!(
                    !self.vouchers.contains_key(&id),
                    "voucher id {id} was given twice"
                );
                self.vouchers.insert(
                    id,
                    ModelVoucher {
                        holder: id_number.clone(),
                        kind: *kind,
                        category: *category,
                        channel: *channel,
                        face: *face_value_fen,
                        district: district.to_string(),
                        state: VoucherState::Issued,
                        ever_claimed: false,
                        institution: None,
                        checkins: 0,
                        last_checkin_date: None,
                        score: None,
                        settled: None,
                        class: None,
                        enrolled: false,
                        times: [Some(now), None, None, None, None],
                    },
                );
                Ok(Reply::Issued { voucher: id })
            }
            Op::Claim { voucher, id_number } => {
                let v = self.voucher(*voucher)?;
                if &v.holder != id_number {
                    return Err("not_holder");
                }
                if self.expired(v, now) {
                    return Err("expired");
                }
                if v.state != VoucherState::Issued || self.kind_claimed(id_number, v.kind) {
                    return Err("kind_already_claimed");
                }
                let v = self.vouchers.get_mut(voucher).unwrap();
                v.state = VoucherState::Claimed;
                v.ever_claimed = true;
                v.times[1] = Some(now);
                done
            }
            Op::Redeem {
                voucher,
                institution,
                operator,
                class,
            } => {
                let v = self.voucher(*voucher)?;
                let at = self
                    .institutions
                    .get(&institution.to_string())
                    .ok_or("unknown_institution")?;
                if !at.operators.contains(operator.as_str()) {
                    return Err("not_authorised");
                }
                if self.expired(v, now) {
                    return Err("expired");
                }
                match v.state {
                    VoucherState::Issued => return Err("not_claimed"),
                    VoucherState::Claimed => {}
                    _ => return Err("already_redeemed"),
                }
                // Every new redeem names an opened class (D51).
                let enrolled = true;
                let class_of = at.classes.get(class.as_str()).ok_or("unknown_class")?;
                if class_of.kind != v.kind {
                    return Err("wrong_kind");
                }
                if self.date(now) > class_of.last_day {
                    return Err("class_closed");
                }
                let uses = self.uses(&v.holder);
                if uses >= self.rules.uses_max {
                    return Err("use_limit_reached");
                }
                let v = self.vouchers.get_mut(voucher).unwrap();
                v.state = VoucherState::Redeemed;
                v.institution = Some(institution.to_string());
                v.class = Some(class.trim().to_owned());
                v.enrolled = enrolled;
                v.times[2] = Some(now);
                Ok(Reply::Redeemed {
                    uses_this_year: (uses + 1) as u8,
                })
            }
            Op::OpenClass {
                institution,
                operator,
                class,
                kind,
                first_day,
                last_day,
                mode,
                ..
            } => {
                let at = self
                    .institutions
                    .get_mut(&institution.to_string())
                    .ok_or("unknown_institution")?;
                if !at.operators.contains(operator.as_str()) {
                    return Err("not_authorised");
                }
                if at.classes.contains_key(class.as_str()) {
                    return Err("class_exists");
                }
                at.classes.insert(
                    class.to_string(),
                    ModelClass {
                        kind: *kind,
                        first_day: first_day.clone(),
                        last_day: last_day.clone(),
                        online: *mode == ClassMode::Online,
                    },
                );
                done
            }
            Op::Checkin { voucher, .. } | Op::CheckinOnline { voucher, .. } => {
                let v = self.voucher(*voucher)?;
                if self.expired(v, now) {
                    return Err("expired");
                }
                if finished(v.state) {
                    return Err("already_completed");
                }
                if v.state != VoucherState::Redeemed {
                    return Err("not_redeemed");
                }
                let date = self.date(now);
                let class = match (&v.institution, &v.class) {
                    (Some(at), Some(class)) if v.enrolled => {
                        Some(&self.institutions[at].classes[class])
                    }
                    _ => None,
                };
                let online = class.is_some_and(|class| class.online);
                let position = match op {
                    Op::Checkin { lat, lon, .. } => Some((*lat, *lon)),
                    _ => None,
                };
                if online != position.is_none() {
                    return Err("wrong_mode");
                }
                if let Some(class) = class {
                    if date < class.first_day || date > class.last_day {
                        return Err("class_closed");
                    }
                }
                // Every institution of the test has one site at SITE, radius
                // 500 m, and its classes check in there.
                if position.is_some_and(|at| distance_m(SITE, at) > 500.0) {
                    return Err("outside_site");
                }
                if v.last_checkin_date.as_ref() == Some(&date) {
                    return Err("duplicate_checkin");
                }
                let v = self.vouchers.get_mut(voucher).unwrap();
                v.checkins += 1;
                v.last_checkin_date = Some(date.clone());
                Ok(Reply::CheckedIn {
                    session: date,
                    checkins: v.checkins,
                })
            }
            Op::Complete {
                voucher,
                institution,
                operator,
            }
            | Op::Release {
                voucher,
                institution,
                operator,
            } => {
                let v = self.voucher(*voucher)?;
                let named = self
                    .institutions
                    .get(&institution.to_string())
                    .ok_or("unknown_institution")?;
                if !named.operators.contains(operator.as_str()) {
                    return Err("not_authorised");
                }
                let at_it = v.institution.as_deref() == Some(&institution.to_string());
                if finished(v.state) {
                    return Err(if at_it {
                        "already_completed"
                    } else {
                        "wrong_institution"
                    });
                }
                if self.expired(v, now) {
                    return Err("expired");
                }
                if v.state != VoucherState::Redeemed {
                    return Err("not_redeemed");
                }
                if !at_it {
                    return Err("wrong_institution");
                }
                let v = self.vouchers.get_mut(voucher).unwrap();
                if matches!(op, Op::Complete { .. }) {
                    v.state = VoucherState::Completed;
                    v.times[3] = Some(now);
                } else {
                    v.state = VoucherState::Claimed;
                    v.institution = None;
                    v.enrolled = false;
                    v.checkins = 0;
                    v.last_checkin_date = None;
                }
                done
            }
            Op::Evaluate {
                voucher,
                id_number,
                score,
                ..
            } => {
                let v = self.voucher(*voucher)?;
                if &v.holder != id_number {
                    return Err("not_holder");
                }
                if !finished(v.state) {
                    return Err("not_completed");
                }
                if v.score.is_some() {
                    return Err("already_evaluated");
                }
                self.vouchers.get_mut(voucher).unwrap().score = Some(*score);
                done
            }
            Op::Settle {
                voucher,
                amount_fen,
            } => {
                let Role::District(agency) = role else {
                    unreachable!("checked above")
                };
                let v = self.voucher(*voucher)?;
                let Some(institution) = &v.institution else {
                    return Err("not_completed");
                };
                if self.institutions[institution].district != agency.to_string() {
                    return Err("forbidden_role");
                }
                match v.state {
                    VoucherState::Settled => return Err("already_settled"),
                    VoucherState::Completed => {}
                    _ => return Err("not_completed"),
                }
                if *amount_fen > v.face {
                    return Err("amount_exceeds_face_value");
                }
                let v = self.vouchers.get_mut(voucher).unwrap();
                v.state = VoucherState::Settled;
                v.settled = Some(*amount_fen);
                v.times[4] = Some(now);
                done
            }
            Op::Expire { .. } => {
                if now <= self.rules.deadline {
                    return Err("campaign_open");
                }
                let mut expired = 0;
                for v in self.vouchers.values_mut() {
                    if matches!(
                        v.state,
                        VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
                    ) {
                        v.state = VoucherState::Expired;
                        expired += 1;
                    }
                }
                Ok(Reply::Expired { expired })
            }
            Op::GetVoucher { voucher } => match self.view(*voucher, now) {
                Some(view) => Ok(Reply::Voucher(Box::new(view))),
                None => Err("unknown_voucher"),
            },
            Op::Stats { .. } => Ok(Reply::Stats(Box::new(self.stats(now)))),
            Op::AuditHead | Op::AuditRead { .. } | Op::ListVouchers { .. } | Op::Events { .. } => {
                unreachable!("the generator sends no audit reads, lists or events")
            }
        }
    }

    /// The invariants of DOMAIN.md, on the model's own state.
    fn check_invariants(&self) {
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for (id, v) in &self.vouchers {
            if is_used(v.state) {
                *uses.entry(&v.holder).or_default() += 1;
                assert!(
                    v.institution.is_some(),
                    "used voucher {id} has an institution"
                );
            }
        }
        for (holder, count) in uses {
            assert!(
                count <= self.rules.uses_max,
                "person {holder} has {count} uses"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The generator: random requests, mostly aimed at records in a fitting state.

/// One request a thread sends, and what it expects when it is not fresh.
#[derive(Clone, Debug)]
struct Planned {
    role: Role,
    request: Request,
    /// A retry of an earlier request: the earlier answer.
    retry_of: Option<Answer>,
    /// An earlier request id with different content: `request_id_reused`.
    reuses_id: bool,
}

/// One request as it ran: the audit head just before and just after.
#[derive(Clone, Debug)]
struct Ran {
    planned: Planned,
    answer: Answer,
    head_before: u64,
    head_after: u64,
}

struct Generator {
    rng: StdRng,
    seed: u64,
    next: u64,
    /// Earlier requests (of previous rounds) and their answers.
    history: Vec<(Role, Request, Answer)>,
}

impl Generator {
    fn person(&mut self) -> String {
        id_number(self.rng.gen_range(1..=PERSONS))
    }

    fn admin(at: usize) -> String {
        id_number(900 + at as u64)
    }

    fn id(&mut self) -> String {
        self.next += 1;
        format!("m{}-{}", self.seed, self.next)
    }

    fn pick_voucher(&mut self, model: &Model, wanted: &[VoucherState]) -> VoucherId {
        if model.vouchers.is_empty() || self.rng.gen_bool(0.03) {
            return VoucherId(900_000 + self.rng.gen_range(0..10));
        }
        let fitting: Vec<VoucherId> = model
            .vouchers
            .iter()
            .filter(|(_, v)| wanted.contains(&v.state))
            .map(|(id, _)| *id)
            .collect();
        if !fitting.is_empty() && self.rng.gen_bool(0.85) {
            return *fitting.choose(&mut self.rng).unwrap();
        }
        **model
            .vouchers
            .keys()
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .unwrap()
    }

    fn holder(&mut self, model: &Model, voucher: VoucherId) -> String {
        match model.vouchers.get(&voucher) {
            Some(v) if self.rng.gen_bool(0.9) => v.holder.clone(),
            _ => self.person(),
        }
    }

    /// The voucher's institution (mostly), or any (sometimes unknown).
    fn institution(&mut self, model: &Model, voucher: VoucherId) -> InstitutionCode {
        let at = model
            .vouchers
            .get(&voucher)
            .and_then(|v| v.institution.clone());
        let code = match at {
            Some(code) if self.rng.gen_bool(0.85) => code,
            _ if self.rng.gen_bool(0.05) => UNKNOWN_INSTITUTION.to_owned(),
            _ => INSTITUTIONS.choose(&mut self.rng).unwrap().0.to_owned(),
        };
        code.parse().unwrap()
    }

    fn plan(&mut self, role: Role, op: Op) -> Planned {
        Planned {
            role,
            request: Request { id: self.id(), op },
            retry_of: None,
            reuses_id: false,
        }
    }

    /// One random request, valid or not.
    fn next(&mut self, model: &Model) -> Planned {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=14 => {
                let id_number = if self.rng.gen_bool(0.03) {
                    bad_id_number()
                } else {
                    self.person()
                };
                let district = if self.rng.gen_bool(0.04) {
                    FOREIGN_DISTRICT
                } else {
                    INSTITUTIONS.choose(&mut self.rng).unwrap().1
                };
                let op = Op::Issue {
                    id_number,
                    category: *Category::ALL.choose(&mut self.rng).unwrap(),
                    kind: *Kind::ALL[..6].choose(&mut self.rng).unwrap(),
                    face_value_fen: if self.rng.gen_bool(0.03) {
                        0
                    } else {
                        self.rng.gen_range(1..=10) * 10_000
                    },
                    channel: *Channel::ALL.choose(&mut self.rng).unwrap(),
                    district: district.parse().unwrap(),
                    year: if self.rng.gen_bool(0.03) {
                        Some(model.rules.year + 1)
                    } else {
                        None
                    },
                };
                self.plan(Role::Bureau, op)
            }
            15..=27 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Issued]);
                let id_number = self.holder(model, voucher);
                self.plan(Role::Gateway, Op::Claim { voucher, id_number })
            }
            28..=44 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Claimed]);
                let institution = if self.rng.gen_bool(0.04) {
                    UNKNOWN_INSTITUTION
                } else {
                    INSTITUTIONS.choose(&mut self.rng).unwrap().0
                };
                let operator = *OPERATORS.choose(&mut self.rng).unwrap();
                // Mostly the open class of the voucher's kind.
                let fitting = model.vouchers.get(&voucher).and_then(|v| {
                    let n = Kind::ALL.iter().position(|&kind| kind == v.kind)?;
                    (n < 6).then(|| format!("班-{n}"))
                });
                let class = match fitting {
                    Some(class) if self.rng.gen_bool(0.8) => class,
                    _ => CLASS_CODES.choose(&mut self.rng).unwrap().to_string(),
                };
                let op = Op::Redeem {
                    voucher,
                    institution: institution.parse().unwrap(),
                    operator: operator.parse().unwrap(),
                    class,
                };
                self.plan(Role::Gateway, op)
            }
            45..=54 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Redeemed]);
                let online_class = model.vouchers.get(&voucher).is_some_and(|v| {
                    v.enrolled
                        && model.institutions[v.institution.as_ref().unwrap()].classes
                            [v.class.as_ref().unwrap()]
                        .online
                });
                // Mostly the form the class takes; sometimes the other one,
                // or the right one from the wrong role.
                let online = online_class != self.rng.gen_bool(0.1);
                let (lat, lon) = if self.rng.gen_bool(0.85) { SITE } else { FAR };
                let (role, op) = match online {
                    true => (
                        Role::Platform,
                        Op::CheckinOnline {
                            voucher,
                            online: true,
                        },
                    ),
                    false => (Role::Gateway, Op::Checkin { voucher, lat, lon }),
                };
                let role = match self.rng.gen_bool(0.04) {
                    true if role == Role::Platform => Role::Gateway,
                    true => Role::Platform,
                    false => role,
                };
                self.plan(role, op)
            }
            55..=62 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Redeemed]);
                let institution = self.institution(model, voucher);
                let operator = OPERATORS.choose(&mut self.rng).unwrap().parse().unwrap();
                self.plan(
                    Role::Gateway,
                    Op::Complete {
                        voucher,
                        institution,
                        operator,
                    },
                )
            }
            63..=68 => {
                let voucher =
                    self.pick_voucher(model, &[VoucherState::Completed, VoucherState::Settled]);
                let id_number = self.holder(model, voucher);
                let score = match self.rng.gen_range(0..40) {
                    0 => 0,
                    1 => 6,
                    _ => self.rng.gen_range(1..=5),
                };
                let comment = match self.rng.gen_range(0..5) {
                    0 => Some("很好".to_owned()),
                    1 => Some("好".repeat(self.rng.gen_range(199..=201))),
                    _ => None,
                };
                let op = Op::Evaluate {
                    voucher,
                    id_number,
                    score,
                    comment,
                };
                self.plan(Role::Gateway, op)
            }
            69..=75 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Completed]);
                let district = match model
                    .vouchers
                    .get(&voucher)
                    .and_then(|v| v.institution.as_ref())
                {
                    Some(code) if self.rng.gen_bool(0.85) => {
                        model.institutions[code].district.clone()
                    }
                    _ => INSTITUTIONS.choose(&mut self.rng).unwrap().1.to_owned(),
                };
                let face = model.vouchers.get(&voucher).map_or(10_000, |v| v.face);
                let amount_fen = if self.rng.gen_bool(0.06) {
                    face + 1
                } else {
                    self.rng.gen_range(0..=face)
                };
                self.plan(
                    Role::District(district.parse().unwrap()),
                    Op::Settle {
                        voucher,
                        amount_fen,
                    },
                )
            }
            76..=83 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Redeemed]);
                let institution = self.institution(model, voucher);
                let operator = OPERATORS.choose(&mut self.rng).unwrap().parse().unwrap();
                self.plan(
                    Role::Gateway,
                    Op::Release {
                        voucher,
                        institution,
                        operator,
                    },
                )
            }
            84..=87 => {
                let at = self.rng.gen_range(0..INSTITUTIONS.len());
                let code = INSTITUTIONS[at].0;
                let admin = match model.institutions.get(code) {
                    Some(found) if self.rng.gen_bool(0.85) => found.admin.clone(),
                    _ => Generator::admin(self.rng.gen_range(0..6)),
                };
                let institution = code.parse().unwrap();
                let operator = OPERATORS.choose(&mut self.rng).unwrap().parse().unwrap();
                let op = if self.rng.gen_bool(0.6) {
                    Op::AuthoriseOperator {
                        institution,
                        admin_id_number: admin,
                        operator,
                    }
                } else {
                    Op::RevokeOperator {
                        institution,
                        admin_id_number: admin,
                        operator,
                    }
                };
                self.plan(Role::Gateway, op)
            }
            88 if self.rng.gen_bool(0.5) => {
                // A class: mostly one already opened (class_exists) or with
                // days in the wrong order; sometimes a new one.
                let at = INSTITUTIONS.choose(&mut self.rng).unwrap().0;
                let class = match self.rng.gen_range(0..3) {
                    0 => CLASS_CODES.choose(&mut self.rng).unwrap().to_string(),
                    _ => format!("新班-{}", self.rng.gen_range(0..20)),
                };
                let (first, last) = match self.rng.gen_bool(0.1) {
                    true => ("2026-11-30", "2026-11-01"),
                    false => ("2026-11-01", "2026-12-31"),
                };
                let op = open_class(
                    at,
                    OPERATORS.choose(&mut self.rng).unwrap(),
                    &class,
                    *Kind::ALL[..6].choose(&mut self.rng).unwrap(),
                    (first, last),
                    mode(self.rng.gen_bool(0.5)),
                );
                self.plan(Role::Gateway, op)
            }
            88 => {
                let code = INSTITUTIONS.choose(&mut self.rng).unwrap().0;
                let admin = Generator::admin(self.rng.gen_range(0..6));
                let op = Op::SetInstitutionAdmin {
                    institution: code.parse().unwrap(),
                    admin_name: "王芳".into(),
                    admin_id_number: admin,
                };
                self.plan(Role::Bureau, op)
            }
            89 => {
                let (code, district) = match self.rng.gen_range(0..3) {
                    0 => (INSTITUTIONS[0].0.to_owned(), INSTITUTIONS[0].1),
                    1 => (
                        format!("50001{:02}", self.rng.gen_range(0..100)),
                        FOREIGN_DISTRICT,
                    ),
                    _ => (
                        format!("50002{:02}", self.rng.gen_range(0..100)),
                        INSTITUTIONS.choose(&mut self.rng).unwrap().1,
                    ),
                };
                let admin = Generator::admin(7);
                self.plan(Role::Bureau, register(&code, district, &admin))
            }
            90 => {
                let year = if self.rng.gen_bool(0.8) {
                    model.rules.year
                } else {
                    model.rules.year + 1
                };
                self.plan(Role::Bureau, Op::Expire { year })
            }
            91 => {
                // A role that may not run the operation.
                let voucher = self.pick_voucher(model, &[VoucherState::Issued]);
                let id_number = self.holder(model, voucher);
                let role = *[Role::Auditor, Role::Bureau].choose(&mut self.rng).unwrap();
                self.plan(role, Op::Claim { voucher, id_number })
            }
            92..=94 => {
                let voucher = self.pick_voucher(model, &[VoucherState::Redeemed]);
                self.plan(Role::Auditor, Op::GetVoucher { voucher })
            }
            95 => self.plan(
                Role::Bureau,
                Op::Stats {
                    district: None,
                    year: None,
                },
            ),
            _ => match self.history.choose(&mut self.rng).cloned() {
                // A retry of an earlier request: same role, id and content.
                Some((role, request, answer)) if roll < 99 => Planned {
                    role,
                    request,
                    retry_of: Some(answer),
                    reuses_id: false,
                },
                // An earlier accepted change's id with other content.
                Some((role, request, answer)) if answer.outcome.is_ok() => {
                    let op = match role {
                        Role::Bureau => Op::Expire {
                            year: model.rules.year,
                        },
                        Role::District(_) => Op::Settle {
                            voucher: VoucherId(900_001),
                            amount_fen: 1,
                        },
                        Role::Platform => Op::CheckinOnline {
                            voucher: VoucherId(900_001),
                            online: true,
                        },
                        _ => Op::Claim {
                            voucher: VoucherId(900_001),
                            id_number: id_number(1),
                        },
                    };
                    Planned {
                        role,
                        request: Request { id: request.id, op },
                        retry_of: None,
                        reuses_id: true,
                    }
                }
                _ => self.plan(
                    Role::Bureau,
                    Op::Stats {
                        district: None,
                        year: None,
                    },
                ),
            },
        }
    }
}

/// The class mode of the generator's coin (`true`: online).
fn mode(online: bool) -> ClassMode {
    if online {
        ClassMode::Online
    } else {
        ClassMode::Onsite
    }
}

fn register(code: &str, district: &str, admin: &str) -> Op {
    Op::RegisterInstitution {
        code: code.parse().unwrap(),
        name: format!("培训机构 {code}"),
        district: district.parse().unwrap(),
        address: "重庆市渝中区解放碑".into(),
        phone: "023-88126902".into(),
        kind: voucherd::domain::enums::InstitutionType::Other,
        admin_name: "刘路".into(),
        admin_id_number: admin.into(),
        sites: vec![SiteSpec {
            lat: SITE.0,
            lon: SITE.1,
            radius_m: None,
        }],
    }
}

// ---------------------------------------------------------------------------
// Running and checking.

fn audit_records(journal: &dyn Journal, after_seq: u64) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    journal
        .scan(Table::Audit, &mut |_, entry| {
            let (record, _) = audit::open(entry).expect("stored audit entries open");
            if record.seq > after_seq {
                records.push(record);
            }
            Ok(())
        })
        .expect("audit scan");
    records
}

/// A reply without what the model does not know: the time and audit
/// sequence a `stats` answer was read at.
fn comparable(reply: &Reply) -> Reply {
    match reply {
        Reply::Stats(stats) => Reply::Stats(Box::new(StatsView {
            at: String::new(),
            seq: 0,
            ..(**stats).clone()
        })),
        other => other.clone(),
    }
}

fn reason_of(answer: &Answer) -> Result<&Reply, &'static str> {
    answer.outcome.as_ref().map_err(|r| r.reason.as_str())
}

/// What the checks covered, summed over seeds and printed.
#[derive(Default, Debug)]
struct Covered {
    seeds: u64,
    accepted_changes: u64,
    refusals: u64,
    reads: u64,
    retries: u64,
    reused_ids: u64,
    /// Refusals by reason code.
    reasons: BTreeMap<&'static str, u64>,
}

impl Covered {
    fn add(&mut self, other: &Covered) {
        self.seeds += other.seeds;
        self.accepted_changes += other.accepted_changes;
        self.refusals += other.refusals;
        self.reads += other.reads;
        self.retries += other.retries;
        self.reused_ids += other.reused_ids;
        for (reason, count) in &other.reasons {
            *self.reasons.entry(reason).or_default() += count;
        }
    }
}

/// Runs one round: the plans of each thread at once, each request with the
/// audit head read just before and just after it.
fn run_round(ledger: &Ledger, plans: Vec<Vec<Planned>>) -> Vec<Ran> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                scope.spawn(move || {
                    plan.into_iter()
                        .map(|planned| {
                            let head_before = ledger.head().0;
                            let answer = ledger
                                .execute(planned.role, std::slice::from_ref(&planned.request))
                                .remove(0);
                            let head_after = ledger.head().0;
                            Ran {
                                planned,
                                answer,
                                head_before,
                                head_after,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    })
}

/// Checks one round against the model and moves the model to its end. The
/// audit sequence is the commit order: the model applies the round's records in
/// it and must give each the same reply; a refusal or read (no record) must
/// match the model in one of the states between the audit heads read just
/// before and after its call (linearizability).
fn check_round(
    model: &mut Model,
    journal: &dyn Journal,
    seq_start: u64,
    now: i64,
    ran: &[Ran],
    applied: &mut HashSet<(String, String)>,
    covered: &mut Covered,
) {
    let records = audit_records(journal, seq_start);
    let by_key: HashMap<(String, String), &Ran> = ran
        .iter()
        .filter(|r| r.planned.retry_of.is_none() && !r.planned.reuses_id)
        .map(|r| {
            (
                (r.planned.role.to_string(), r.planned.request.id.clone()),
                r,
            )
        })
        .collect();
    // Accepted changes, in commit order: the model must answer the same.
    let mut snapshots = vec![model.clone()];
    for (n, record) in records.iter().enumerate() {
        assert_eq!(record.seq, seq_start + n as u64 + 1, "audit seqs follow on");
        assert_eq!(record.time, Timestamp(now), "record {} time", record.seq);
        let key = (record.caller.role.to_string(), record.request_id.clone());
        assert!(
            applied.insert(key.clone()),
            "request {key:?} was applied twice (again at seq {})",
            record.seq
        );
        let ran = by_key.get(&key).unwrap_or_else(|| {
            panic!(
                "record {} ({key:?}) is no fresh request of this round",
                record.seq
            )
        });
        let reply = ran
            .answer
            .outcome
            .as_ref()
            .unwrap_or_else(|r| panic!("{key:?} has a record but was refused {}", r.reason));
        assert_eq!(&record.reply, reply, "record {} reply", record.seq);
        assert!(
            ran.head_before < record.seq && record.seq <= ran.head_after,
            "{key:?} committed at seq {} outside its call ({}..{}]",
            record.seq,
            ran.head_before,
            ran.head_after
        );
        let issued = match reply {
            Reply::Issued { voucher } => Some(*voucher),
            _ => None,
        };
        let expected = model.apply(record.caller.role, &ran.planned.request.op, now, issued);
        assert_eq!(
            expected.as_ref(),
            Ok(reply),
            "seq {}: {:?} as {} — the model answers {expected:?}, the ledger {reply:?}",
            record.seq,
            ran.planned.request.op,
            record.caller.role
        );
        model.check_invariants();
        snapshots.push(model.clone());
        covered.accepted_changes += 1;
    }
    // Everything else: retries answer as before, reused ids are refused, and
    // refusals and reads match the model somewhere within their call.
    for r in ran {
        let key = (r.planned.role.to_string(), r.planned.request.id.clone());
        let context = || {
            format!(
                "{:?} as {} (head {}..{}) answered {:?}",
                r.planned.request.op, r.planned.role, r.head_before, r.head_after, r.answer.outcome
            )
        };
        if let Some(earlier) = &r.planned.retry_of {
            assert_eq!(
                &r.answer,
                earlier,
                "a retry answers as before: {}",
                context()
            );
            covered.retries += 1;
            continue;
        }
        if r.planned.reuses_id {
            assert_eq!(
                reason_of(&r.answer).err(),
                Some("request_id_reused"),
                "{}",
                context()
            );
            covered.reused_ids += 1;
            continue;
        }
        if r.answer.outcome.is_ok() && !r.planned.request.op.is_read() {
            assert!(
                records
                    .iter()
                    .any(
                        |record| (record.caller.role.to_string(), record.request_id.clone()) == key
                    ),
                "an accepted change has no audit record: {}",
                context()
            );
            continue;
        }
        let low = (r.head_before - seq_start) as usize;
        let high = (r.head_after - seq_start) as usize;
        let got = reason_of(&r.answer);
        match got {
            Ok(_) => covered.reads += 1,
            Err(reason) => {
                covered.refusals += 1;
                *covered.reasons.entry(reason).or_default() += 1;
            }
        }
        let got = got.map(comparable);
        let fits = (low..=high).any(|at| {
            let mut state = snapshots[at].clone();
            let expected = state.apply(r.planned.role, &r.planned.request.op, now, None);
            expected.as_ref().map(comparable).map_err(|e| *e) == got
        });
        assert!(
            fits,
            "no model state in its call gives this answer: {}; the model says {:?}",
            context(),
            (low..=high)
                .map(|at| snapshots[at].clone().apply(
                    r.planned.role,
                    &r.planned.request.op,
                    now,
                    None
                ))
                .collect::<Vec<_>>()
        );
    }
}

/// One seed on one ledger: setup, rounds, then the final comparison.
fn run_seed<D: Drive>(d: &D, journal: &dyn Journal, seed: u64) -> Covered {
    // The model's clock stands still through thousands of refusals; the
    // bounds on remembered refusals are tested in `request_ids`.
    d.ledger()
        .set_refusal_limits(voucherd::ledger::RefusalLimits::UNLIMITED);
    let mut covered = Covered {
        seeds: 1,
        ..Covered::default()
    };
    let campaign = campaigns().current().clone();
    let mut model = Model::new(Rules::of(&campaign));
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(seed),
        seed,
        next: 0,
        history: Vec::new(),
    };
    let mut applied = HashSet::new();
    // Round 0, one thread: the institutions and their first operators.
    let mut setup = Vec::new();
    for (at, (code, district)) in INSTITUTIONS.iter().enumerate() {
        let admin = Generator::admin(at);
        setup.push(generator.plan(Role::Bureau, register(code, district, &admin)));
        for operator in &OPERATORS[..2] {
            let op = Op::AuthoriseOperator {
                institution: code.parse().unwrap(),
                admin_id_number: admin.clone(),
                operator: operator.parse().unwrap(),
            };
            setup.push(generator.plan(Role::Gateway, op));
        }
        if at + 1 < INSTITUTIONS.len() {
            for (class, kind, first, last, online) in planned_classes() {
                let op = open_class(
                    code,
                    OPERATORS[0],
                    &class,
                    Kind::ALL[kind],
                    (first, last),
                    mode(online),
                );
                setup.push(generator.plan(Role::Gateway, op));
            }
        }
    }
    let mut plans = vec![setup];
    for round in 0..=ROUNDS {
        let now = d.clock().now_seconds();
        let seq_start = d.ledger().head().0;
        let ran = run_round(d.ledger(), plans);
        check_round(
            &mut model,
            journal,
            seq_start,
            now,
            &ran,
            &mut applied,
            &mut covered,
        );
        for r in ran {
            if !r.planned.request.op.is_read() && !r.planned.reuses_id {
                generator
                    .history
                    .push((r.planned.role, r.planned.request, r.answer));
            }
        }
        // Time moves between rounds; sometimes the last round is past the deadline.
        let advance = generator.rng.gen_range(0..=30_000);
        let mut next = (now + advance).min(DEADLINE.0);
        if round + 1 == ROUNDS && generator.rng.gen_bool(0.3) {
            next = DEADLINE.0 + generator.rng.gen_range(1..=3_600);
        }
        d.clock().set(Timestamp(next));
        plans = (0..THREADS)
            .map(|_| {
                (0..OPS_PER_THREAD)
                    .map(|_| generator.next(&model))
                    .collect()
            })
            .collect();
    }
    compare_final(d, journal, &model);
    covered
}

/// Every voucher, the figures, the chain and the replay agree with the model.
fn compare_final<D: Drive>(d: &D, journal: &dyn Journal, model: &Model) {
    model.check_invariants();
    let now = d.clock().now_seconds();
    assert_eq!(
        d.ledger().sizes().0,
        model.vouchers.len(),
        "vouchers held by the ledger"
    );
    for id in model.vouchers.keys() {
        assert_eq!(Some(d.view(*id)), model.view(*id, now), "voucher {id}");
    }
    let stats = StatsView {
        at: String::new(),
        seq: 0,
        ..d.city_stats()
    };
    assert_eq!(stats, model.stats(now), "stats");
    let (seq, hash, digest) = d.ledger().head();
    let verified = voucherd::admin::offline::verify_journal(journal)
        .expect("scan")
        .expect("the audit chain verifies");
    assert_eq!((verified.records, verified.head_hash), (seq, hash));
    let texts = vec![campaigns().current().to_toml()];
    let mut export = Vec::new();
    voucherd::admin::offline::export_journal(journal, &texts, &mut export).expect("export");
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .expect("replay runs")
        .expect("replay matches every record");
    assert_eq!(
        replayed.state_digest, digest,
        "replay gives the live digest"
    );
}

/// Runs `seeds` one after another; a failure names its seed.
fn each_seed(seeds: &[u64], journal_name: &str, run: impl Fn(u64) -> Covered) {
    let mut total = Covered::default();
    for &seed in seeds {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(seed))) {
            Ok(covered) => total.add(&covered),
            Err(panic) => {
                eprintln!(
                    "model test failed on the {journal_name} ledger with seed {seed}: rerun with VOUCHERD_SEED={seed}"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "model test on the {journal_name} ledger: {} seeds agree; checked {} accepted changes in commit order, {} refusals and {} reads within their calls, {} retries, {} reused ids; refusals by reason {:?}",
        total.seeds, total.accepted_changes, total.refusals, total.reads, total.retries, total.reused_ids, total.reasons
    );
    // A run of many seeds must reach most rules (a guard against a generator
    // that quietly stops aiming at anything).
    assert!(
        total.seeds < 20
            || (total.accepted_changes > total.seeds * 10
                && total.retries > 0
                && total.reasons.len() >= 20),
        "the generator must reach far: {total:?}"
    );
}

/// The seeds to run: a numeric `VOUCHERD_SEED` alone (to replay one), or
/// `count` from a printed base (`common::seed()`: fixed, or the clock with
/// `VOUCHERD_SEED=time`).
fn seeds(count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("VOUCHERD_SEED")
        .unwrap_or_default()
        .trim()
        .parse()
    {
        return vec![seed];
    }
    let base = crate::common::seed() % 1_000_000_000;
    (0..count).map(|n| base + n).collect()
}

fn seed_count(default: u64) -> u64 {
    std::env::var("VOUCHERD_SEEDS")
        .ok()
        .map(|text| text.trim().parse().expect("VOUCHERD_SEEDS is a count"))
        .unwrap_or(default)
}

trait Seconds {
    fn now_seconds(&self) -> i64;
}

impl Seconds for voucherd::domain::time::ManualClock {
    fn now_seconds(&self) -> i64 {
        use voucherd::domain::time::Clock;
        self.now().0
    }
}

#[test]
fn ledger_on_memory_journal_agrees_with_the_model() {
    let seeds = seeds(seed_count(100));
    each_seed(&seeds, "memory", |seed| {
        let h = Harness::new();
        run_seed(&h, &*h.journal, seed)
    });
}

#[test]
fn ledger_on_rocksdb_agrees_with_the_model() {
    let seeds = seeds((seed_count(100) / 10).max(1));
    each_seed(&seeds, "RocksDB", |seed| {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = Disk::open(&dir.path().join("data"), "model");
        let covered = run_seed(&disk, &*disk.store, seed);
        // What was acknowledged is what a reopened store holds.
        let head = disk.ledger.head();
        drop(disk);
        let reopened = Disk::open(&dir.path().join("data"), "reopened");
        assert_eq!(reopened.ledger.head(), head, "head after reopening");
        covered
    });
}

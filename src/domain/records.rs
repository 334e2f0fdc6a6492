//! The ledger's records: vouchers, persons' yearly use, institutions, their
//! classes, and the
//! figures derived from vouchers. Written to RocksDB as they are (bincode, one
//! version byte in front); memory holds vouchers packed (`ledger::index`).

use std::collections::BTreeSet;

use bincode::{Decode, Encode};

use super::enums::{Category, Channel, ClassMode, InstitutionType, Kind, VoucherState};
use super::ids::{ClassCode, DistrictCode, InstitutionCode, OperatorId, PersonKey, VoucherId};
use super::op::VoucherView;
use super::time::Timestamp;

/// A voucher as the rules see it. When each step happened is in the audit
/// chain (every record carries its time, command and reply); the voucher holds
/// only what the rules read, so tens of millions fit in memory.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Voucher {
    pub id: VoucherId,
    pub holder: PersonKey,
    pub year: u16,
    pub kind: Kind,
    pub category: Category,
    pub channel: Channel,
    /// Where the holder's social security is registered (counts issued/claimed).
    pub district: DistrictCode,
    pub face_value_fen: u64,
    pub state: VoucherState,
    /// The institution it is redeemed at, and that institution's district (counts used).
    pub institution: Option<(InstitutionCode, DistrictCode)>,
    /// Whether it was ever claimed (an expired voucher may or may not have been).
    pub claimed: bool,
    /// Check-ins during the current enrollment and the local day of the last one.
    pub checkins: u32,
    pub last_checkin_day: Option<i32>,
    pub score: Option<u8>,
    pub settled_fen: Option<u64>,
}

impl Voucher {
    pub fn view(&self) -> VoucherView {
        VoucherView {
            voucher: self.id,
            state: self.state,
            kind: self.kind,
            category: self.category,
            channel: self.channel,
            face_value_fen: self.face_value_fen,
            year: self.year,
            institution: self.institution.map(|(code, _)| code),
            district: self.district,
            checkins: self.checkins,
            score: self.score,
            settled_fen: self.settled_fen,
            class: None,
            steps: Default::default(),
        }
    }
}

/// What the ledger knows of one person in one campaign year.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct PersonYear {
    /// Vouchers of this year now redeemed, completed or settled.
    pub uses: u8,
    /// One bit per `Kind` claimed this year.
    pub kinds_claimed: u16,
}

/// A training site where trainees check in.
#[derive(Clone, Debug, PartialEq, Encode, Decode, serde::Serialize)]
pub struct Site {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: u32,
}

/// A training institution (attachment 2) and who may scan for it.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Institution {
    pub code: InstitutionCode,
    pub name: String,
    pub district: DistrictCode,
    pub address: String,
    pub phone: String,
    pub kind: InstitutionType,
    /// The institution's one admin (机构专员).
    pub admin_name: String,
    pub admin: PersonKey,
    /// How many times the admin was changed (上报变更).
    pub admin_changes: u32,
    pub sites: Vec<Site>,
    /// Operators the current admin authorised.
    pub operators: BTreeSet<OperatorId>,
    pub registered_at: Timestamp,
}

/// A class (培训班次) an institution opened: reference data of the
/// institution, never changed once opened. Vouchers enroll in it (redeem)
/// and check in on its days, at its sites or online.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Class {
    pub institution: InstitutionCode,
    pub code: ClassCode,
    pub kind: Kind,
    /// First and last day, local day numbers (`Timestamp::local_day`), both included.
    pub first_day: i32,
    pub last_day: i32,
    pub mode: ClassMode,
    /// Where trainees check in: the sites given at opening, or the
    /// institution's sites as they were then; empty for an online class.
    pub sites: Vec<Site>,
    /// The operator who opened it, and when.
    pub opened_by: OperatorId,
    pub opened_at: Timestamp,
}

/// A counter the ledger keeps, derived from vouchers (see `figure_contributions`).
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum Figure {
    /// Vouchers ever issued, by the voucher's district.
    Issued(u16, DistrictCode),
    /// Vouchers ever claimed, by the voucher's district.
    Claimed(u16, DistrictCode),
    /// Vouchers now used, by the redeeming institution's district.
    Used(u16, DistrictCode),
    /// Used vouchers with at least one check-in, by the institution's district.
    UsedWithCheckin(u16, DistrictCode),
    /// Vouchers now used at one institution.
    InstitutionUsed(u16, InstitutionCode),
    /// Evaluations an institution received, and the sum of their scores.
    InstitutionEvaluations(u16, InstitutionCode),
    InstitutionScoreSum(u16, InstitutionCode),
    /// Institutions registered (all years).
    Registered,
    /// Subsidies settled (fen), by the district of the institution that trained.
    SettledFen(u16, DistrictCode),
    /// Subsidies settled (fen) for vouchers used at one institution.
    InstitutionSettledFen(u16, InstitutionCode),
}

impl Figure {
    /// Figures added after stores were first written: a store written before
    /// them has no counter for them (see `ledger::recovery`).
    pub fn is_later_addition(self) -> bool {
        matches!(
            self,
            Figure::SettledFen(..) | Figure::InstitutionSettledFen(..)
        )
    }
}

/// The figures one voucher adds to; a change adds the new voucher's and takes
/// away the old one's, so figures always equal a recount over all vouchers.
/// (At most nine, gathered without allocating: start-up calls this per voucher.)
pub fn figure_contributions(voucher: &Voucher) -> impl Iterator<Item = (Figure, u64)> {
    let year = voucher.year;
    let mut figures = [None; 9];
    let mut count = 0;
    let mut push = |figure: Figure, amount: u64| {
        figures[count] = Some((figure, amount));
        count += 1;
    };
    push(Figure::Issued(year, voucher.district), 1);
    if voucher.claimed {
        push(Figure::Claimed(year, voucher.district), 1);
    }
    if let Some((institution, district)) = voucher.institution {
        if voucher.state.is_used() {
            push(Figure::Used(year, district), 1);
            push(Figure::InstitutionUsed(year, institution), 1);
            if voucher.checkins > 0 {
                push(Figure::UsedWithCheckin(year, district), 1);
            }
        }
        if let Some(score) = voucher.score {
            push(Figure::InstitutionEvaluations(year, institution), 1);
            push(
                Figure::InstitutionScoreSum(year, institution),
                u64::from(score),
            );
        }
        // A counter never holds 0 (its row is deleted), so 0 fen adds nothing.
        if let Some(fen) = voucher.settled_fen.filter(|&fen| fen > 0) {
            push(Figure::SettledFen(year, district), fen);
            push(Figure::InstitutionSettledFen(year, institution), fen);
        }
    }
    figures.into_iter().flatten()
}

/// An issued voucher for unit tests: 2021, district 500101, 800 yuan.
#[cfg(test)]
impl Voucher {
    pub(crate) fn issued_example() -> Voucher {
        Voucher {
            id: VoucherId(1),
            holder: PersonKey([1; 32]),
            year: 2021,
            kind: Kind::EmploymentSkills,
            category: Category::Unemployed,
            channel: Channel::Wechat,
            district: "500101".parse().expect("a district code"),
            face_value_fen: 80_000,
            state: VoucherState::Issued,
            institution: None,
            claimed: false,
            checkins: 0,
            last_checkin_day: None,
            score: None,
            settled_fen: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_rated_voucher_with_check_ins_adds_to_all_nine_figures() {
        let district: DistrictCode = "500101".parse().expect("a code");
        let institution = InstitutionCode(5_000_001);
        let issued = Voucher::issued_example();
        let voucher = Voucher {
            state: VoucherState::Settled,
            institution: Some((institution, district)),
            claimed: true,
            checkins: 2,
            last_checkin_day: Some(1),
            score: Some(4),
            settled_fen: Some(80_000),
            ..issued.clone()
        };
        let figures: Vec<_> = figure_contributions(&voucher).collect();
        assert_eq!(
            figures,
            vec![
                (Figure::Issued(2021, district), 1),
                (Figure::Claimed(2021, district), 1),
                (Figure::Used(2021, district), 1),
                (Figure::InstitutionUsed(2021, institution), 1),
                (Figure::UsedWithCheckin(2021, district), 1),
                (Figure::InstitutionEvaluations(2021, institution), 1),
                (Figure::InstitutionScoreSum(2021, institution), 4),
                (Figure::SettledFen(2021, district), 80_000),
                (Figure::InstitutionSettledFen(2021, institution), 80_000),
            ]
        );
        assert_eq!(
            figure_contributions(&issued).collect::<Vec<_>>(),
            vec![(Figure::Issued(2021, district), 1)]
        );
    }
}

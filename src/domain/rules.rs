//! The rules of DOMAIN.md, one function per operation, pure.
//!
//! Each takes the records the operation touches (as they are now), the
//! command, and the injected time, and returns the records as they must become
//! or a refusal. No I/O, no clock, no locks: the ledger brings and stores records.

use super::campaign::{Campaign, Campaigns};
use super::command::{ClassOpening, Registration};
use super::enums::{Category, Channel, ClassMode, Kind, VoucherState};
use super::geo;
use super::ids::{DistrictCode, InstitutionCode, OperatorId, PersonKey, VoucherId};
use super::records::{figure_contributions, Class, Figure, Institution, PersonYear, Voucher};
use super::time::Timestamp;
use crate::error::{refuse, Reason, Refusal};
use crate::limits::{CLASSES_PER_INSTITUTION_MAX, OPERATORS_PER_INSTITUTION_MAX};

/// What every rule may consult besides the records: the campaigns and "now".
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub campaigns: &'a Campaigns,
    pub now: Timestamp,
}

impl Context<'_> {
    fn campaign(&self, year: u16) -> Result<&Campaign, Refusal> {
        match self.campaigns.year(year) {
            Some(campaign) => Ok(campaign),
            None => refuse(
                Reason::InvalidRequest,
                format!("no campaign for year {year}"),
            ),
        }
    }

    /// True for an expired voucher, and for an unfinished one (not completed
    /// or settled) once its campaign's deadline has passed.
    fn is_expired(&self, voucher: &Voucher) -> Result<bool, Refusal> {
        Ok(match voucher.state {
            VoucherState::Expired => true,
            VoucherState::Completed | VoucherState::Settled => false,
            _ => self.campaign(voucher.year)?.has_ended(self.now),
        })
    }
}

fn known(voucher: Option<&Voucher>, id: VoucherId) -> Result<&Voucher, Refusal> {
    voucher.ok_or_else(|| Refusal::new(Reason::UnknownVoucher, format!("no voucher {id}")))
}

fn known_institution(
    institution: Option<&Institution>,
    code: InstitutionCode,
) -> Result<&Institution, Refusal> {
    institution
        .ok_or_else(|| Refusal::new(Reason::UnknownInstitution, format!("no institution {code}")))
}

/// The operator an institution's admin authorised, acting for it (redeem,
/// complete, release): the institution must exist and list the operator.
fn authorised<'i>(
    institution: Option<&'i Institution>,
    code: InstitutionCode,
    operator: &OperatorId,
) -> Result<&'i Institution, Refusal> {
    let institution = known_institution(institution, code)?;
    if !institution.operators.contains(operator) {
        return refuse(
            Reason::NotAuthorised,
            format!("operator {operator} is not authorised by institution {code}"),
        );
    }
    Ok(institution)
}

/// Who reports a completion or a release: an operator and the institution
/// named (looked up), or `None` for a record written before `complete` and
/// `release` named an operator (replayed as it was accepted).
pub type Acting<'a> = Option<(&'a OperatorId, Option<&'a Institution>)>;

fn expired(voucher: &Voucher) -> Result<Voucher, Refusal> {
    refuse(
        Reason::Expired,
        format!("voucher {} has expired", voucher.id),
    )
}

fn expired_pair<T>(voucher: &Voucher) -> Result<T, Refusal> {
    refuse(
        Reason::Expired,
        format!("voucher {} has expired", voucher.id),
    )
}

fn not_redeemed<T>(voucher: &Voucher) -> Result<T, Refusal> {
    refuse(
        Reason::NotRedeemed,
        format!("voucher {} is not redeemed", voucher.id),
    )
}

fn check_institution(voucher: &Voucher, institution: InstitutionCode) -> Result<(), Refusal> {
    match voucher.institution {
        Some((code, _)) if code == institution => Ok(()),
        _ => refuse(
            Reason::WrongInstitution,
            format!("voucher {} is not redeemed at {institution}", voucher.id),
        ),
    }
}

pub fn register_institution(
    context: Context,
    existing: Option<&Institution>,
    registration: &Registration,
) -> Result<Institution, Refusal> {
    if existing.is_some() {
        return refuse(
            Reason::InstitutionExists,
            format!("institution {} is registered", registration.code),
        );
    }
    if context
        .campaigns
        .current()
        .district(registration.district)
        .is_none()
    {
        return refuse(
            Reason::UnknownDistrict,
            format!(
                "district {} is not in the current campaign",
                registration.district
            ),
        );
    }
    Ok(Institution {
        code: registration.code,
        name: registration.name.clone(),
        district: registration.district,
        address: registration.address.clone(),
        phone: registration.phone.clone(),
        kind: registration.kind,
        admin_name: registration.admin_name.clone(),
        admin: registration.admin,
        admin_changes: 0,
        sites: registration.sites.clone(),
        operators: Default::default(),
        registered_at: context.now,
    })
}

/// A new admin takes over with no operators: operators are authorised by the
/// admin, so the new admin authorises again. Same admin: only the name changes.
pub fn set_institution_admin(
    institution: Option<&Institution>,
    code: InstitutionCode,
    admin_name: &str,
    admin: PersonKey,
) -> Result<Institution, Refusal> {
    let mut changed = known_institution(institution, code)?.clone();
    if changed.admin != admin {
        changed.admin = admin;
        changed.admin_changes += 1;
        changed.operators.clear();
    }
    changed.admin_name = admin_name.to_owned();
    Ok(changed)
}

fn check_admin(institution: &Institution, admin: PersonKey) -> Result<(), Refusal> {
    if institution.admin == admin {
        Ok(())
    } else {
        refuse(
            Reason::NotAuthorised,
            format!("not the current admin of institution {}", institution.code),
        )
    }
}

pub fn authorise_operator(
    institution: Option<&Institution>,
    code: InstitutionCode,
    admin: PersonKey,
    operator: &OperatorId,
) -> Result<Institution, Refusal> {
    let institution = known_institution(institution, code)?;
    check_admin(institution, admin)?;
    let mut changed = institution.clone();
    if !changed.operators.contains(operator)
        && changed.operators.len() >= OPERATORS_PER_INSTITUTION_MAX
    {
        return refuse(
            Reason::InvalidRequest,
            format!("an institution authorises at most {OPERATORS_PER_INSTITUTION_MAX} operators"),
        );
    }
    changed.operators.insert(operator.clone());
    Ok(changed)
}

pub fn revoke_operator(
    institution: Option<&Institution>,
    code: InstitutionCode,
    admin: PersonKey,
    operator: &OperatorId,
) -> Result<Institution, Refusal> {
    let institution = known_institution(institution, code)?;
    check_admin(institution, admin)?;
    let mut changed = institution.clone();
    if !changed.operators.remove(operator) {
        return refuse(
            Reason::NotAuthorised,
            format!("operator {operator} is not authorised by institution {code}"),
        );
    }
    Ok(changed)
}

/// 开班: an authorised operator opens a class of the institution. Its sites
/// are the ones given or, onsite without any, the institution's as they are
/// now; an online class has none. A class may be opened with days already
/// past (recorded late). `opened`: how many classes the institution has.
pub fn open_class(
    context: Context,
    institution: Option<&Institution>,
    existing: Option<&Class>,
    opened: u32,
    opening: &ClassOpening,
) -> Result<Class, Refusal> {
    let institution = authorised(institution, opening.institution, &opening.operator)?;
    if existing.is_some() {
        return refuse(
            Reason::ClassExists,
            format!(
                "institution {} already opened class {}",
                opening.institution, opening.class
            ),
        );
    }
    if opened >= CLASSES_PER_INSTITUTION_MAX {
        return refuse(
            Reason::InvalidRequest,
            format!("an institution opens at most {CLASSES_PER_INSTITUTION_MAX} classes"),
        );
    }
    assert!(
        opening.first_day <= opening.last_day,
        "class days are validated before the rules"
    );
    let sites = match (opening.mode, &opening.sites) {
        (ClassMode::Online, _) => Vec::new(),
        (ClassMode::Onsite, Some(sites)) => sites.clone(),
        (ClassMode::Onsite, None) => institution.sites.clone(),
    };
    Ok(Class {
        institution: opening.institution,
        code: opening.class.clone(),
        kind: opening.kind,
        first_day: opening.first_day,
        last_day: opening.last_day,
        mode: opening.mode,
        sites,
        opened_by: opening.operator.clone(),
        opened_at: context.now,
    })
}

/// The class a redeem names, as the ledger found it (under the
/// institution's lock, so no class opens meanwhile).
#[derive(Clone, Copy, Debug)]
pub enum Naming<'a> {
    /// A record sealed before every redeem had to name an opened class
    /// (audit record version 1 or 2), at an institution that had opened no
    /// class: the name is free text, as it was decided (docs/decisions.md
    /// D51). Never for a new request.
    FreeText,
    /// The opened class of that code, if any (`unknown_class` otherwise).
    Class(Option<&'a Class>),
}

/// The fields of an `issue` command.
pub struct Issue {
    pub holder: PersonKey,
    pub category: Category,
    pub kind: Kind,
    pub face_value_fen: u64,
    pub channel: Channel,
    pub district: DistrictCode,
    pub year: u16,
}

pub fn issue(context: Context, issue: &Issue, id: VoucherId) -> Result<Voucher, Refusal> {
    let campaign = context.campaign(issue.year)?;
    if campaign.district(issue.district).is_none() {
        return refuse(
            Reason::UnknownDistrict,
            format!(
                "district {} is not in the {} campaign",
                issue.district, issue.year
            ),
        );
    }
    // Issued only while the campaign is open (API.md: an issue with no
    // campaign open is `expired`, also before the opening).
    if campaign.has_ended(context.now) {
        return refuse(
            Reason::Expired,
            format!(
                "the {} campaign ended {}",
                issue.year,
                campaign.deadline_text()
            ),
        );
    }
    if !campaign.is_open(context.now) {
        return refuse(
            Reason::Expired,
            format!(
                "the {} campaign is not open: it opens {}",
                issue.year,
                campaign.opens_text()
            ),
        );
    }
    Ok(Voucher {
        id,
        holder: issue.holder,
        year: issue.year,
        kind: issue.kind,
        category: issue.category,
        channel: issue.channel,
        district: issue.district,
        face_value_fen: issue.face_value_fen,
        state: VoucherState::Issued,
        institution: None,
        claimed: false,
        checkins: 0,
        last_checkin_day: None,
        score: None,
        settled_fen: None,
    })
}

pub fn claim(
    context: Context,
    voucher: Option<&Voucher>,
    id: VoucherId,
    holder: PersonKey,
    person: PersonYear,
) -> Result<(Voucher, PersonYear), Refusal> {
    let voucher = known(voucher, id)?;
    if voucher.holder != holder {
        return refuse(
            Reason::NotHolder,
            format!("voucher {id} belongs to someone else"),
        );
    }
    if context.is_expired(voucher)? {
        return expired_pair(voucher);
    }
    if voucher.state != VoucherState::Issued || person.kinds_claimed & voucher.kind.bit() != 0 {
        return refuse(
            Reason::KindAlreadyClaimed,
            format!(
                "a {} voucher was already claimed in {}",
                super::enums::wire_name(voucher.kind),
                voucher.year
            ),
        );
    }
    let mut claimed = voucher.clone();
    claimed.state = VoucherState::Claimed;
    claimed.claimed = true;
    let mut person = person;
    person.kinds_claimed |= voucher.kind.bit();
    Ok((claimed, person))
}

/// Where a redeem enrolls the voucher: the institution named (as found),
/// its code, the operator who scans, and the class named.
pub struct Enrolling<'a> {
    pub institution: Option<&'a Institution>,
    pub code: InstitutionCode,
    pub operator: &'a OperatorId,
    pub class: Naming<'a>,
}

/// Redeem (核销): the checks run in this order, so each refusal names the first problem.
pub fn redeem(
    context: Context,
    voucher: Option<&Voucher>,
    id: VoucherId,
    person: PersonYear,
    at: Enrolling,
) -> Result<(Voucher, PersonYear), Refusal> {
    let Enrolling {
        institution,
        code,
        operator,
        class: naming,
    } = at;
    let voucher = known(voucher, id)?;
    let institution = authorised(institution, code, operator)?;
    if context.is_expired(voucher)? {
        return expired_pair(voucher);
    }
    match voucher.state {
        VoucherState::Issued => {
            return refuse(Reason::NotClaimed, format!("voucher {id} is not claimed"))
        }
        VoucherState::Claimed => {}
        _ => {
            return refuse(
                Reason::AlreadyRedeemed,
                format!("voucher {id} is already redeemed"),
            )
        }
    }
    let campaign = context.campaign(voucher.year)?;
    if let Naming::Class(class) = naming {
        let Some(class) = class else {
            return refuse(
                Reason::UnknownClass,
                format!("institution {code} opened no such class"),
            );
        };
        if class.kind != voucher.kind {
            return refuse(
                Reason::WrongKind,
                format!(
                    "class {} is for {}, voucher {id} for {}",
                    class.code,
                    super::enums::wire_name(class.kind),
                    super::enums::wire_name(voucher.kind)
                ),
            );
        }
        let today = context.now.local_day(campaign.utc_offset_s);
        if today > class.last_day {
            return refuse(
                Reason::ClassClosed,
                format!(
                    "class {} ended on {}",
                    class.code,
                    super::time::day_text(class.last_day)
                ),
            );
        }
    }
    let uses_max = campaign.uses_per_person_max;
    if person.uses >= uses_max {
        return refuse(
            Reason::UseLimitReached,
            format!(
                "the holder used {uses_max} vouchers in {} already",
                voucher.year
            ),
        );
    }
    let mut redeemed = voucher.clone();
    redeemed.state = VoucherState::Redeemed;
    redeemed.institution = Some((code, institution.district));
    let mut person = person;
    person.uses += 1;
    assert!(
        person.uses <= uses_max,
        "a person's uses never exceed the limit"
    );
    Ok((redeemed, person))
}

/// Check-in (打卡): returns the voucher and the session (local day) checked in.
/// `class` is the class the voucher is enrolled in, `None` for a voucher
/// redeemed with a free-text class (D50: at the institution's sites, any
/// day, as before classes); `position` is `None` for an online check-in.
pub fn checkin(
    context: Context,
    voucher: Option<&Voucher>,
    id: VoucherId,
    institution: Option<&Institution>,
    class: Option<&Class>,
    position: Option<(f64, f64)>,
) -> Result<(Voucher, i32), Refusal> {
    let voucher = known(voucher, id)?;
    if context.is_expired(voucher)? {
        return expired_pair(voucher);
    }
    match voucher.state {
        VoucherState::Redeemed => {}
        VoucherState::Completed | VoucherState::Settled => {
            return refuse(
                Reason::AlreadyCompleted,
                format!("voucher {id} completed its training"),
            )
        }
        _ => return not_redeemed(voucher),
    }
    let institution = institution.expect("a redeemed voucher's institution is registered");
    let campaign = context.campaign(voucher.year)?;
    let day = context.now.local_day(campaign.utc_offset_s);
    let mode = class.map_or(ClassMode::Onsite, |class| class.mode);
    match (mode, position) {
        (ClassMode::Onsite, None) => {
            return refuse(
                Reason::WrongMode,
                format!("voucher {id} is enrolled onsite: a check-in carries a position"),
            )
        }
        (ClassMode::Online, Some(_)) => {
            return refuse(
                Reason::WrongMode,
                format!("voucher {id} is enrolled in an online class: the platform checks it in"),
            )
        }
        _ => {}
    }
    if let Some(class) = class {
        if day < class.first_day || day > class.last_day {
            return refuse(
                Reason::ClassClosed,
                format!(
                    "class {} runs from {} to {}, not on {}",
                    class.code,
                    super::time::day_text(class.first_day),
                    super::time::day_text(class.last_day),
                    super::time::day_text(day)
                ),
            );
        }
    }
    if let Some((lat, lon)) = position {
        let sites = class.map_or(&institution.sites, |class| &class.sites);
        let inside = sites
            .iter()
            .any(|site| geo::distance_m(site.lat, site.lon, lat, lon) <= f64::from(site.radius_m));
        if !inside {
            let place = match class {
                Some(class) => format!("class {}", class.code),
                None => format!("institution {}", institution.code),
            };
            return refuse(
                Reason::OutsideSite,
                format!("({lat}, {lon}) is not at a training site of {place}"),
            );
        }
    }
    // One check-in per session (local day), and sessions only move forward:
    // a day not after the last check-in's (the same day, or an earlier one
    // after the clock stepped back) is a duplicate.
    if let Some(last_day) = voucher.last_checkin_day {
        if day <= last_day {
            return refuse(
                Reason::DuplicateCheckin,
                format!(
                    "voucher {id} checked in on {} already; a check-in on {} is not after it",
                    super::time::day_text(last_day),
                    super::time::day_text(day)
                ),
            );
        }
    }
    let mut checked = voucher.clone();
    checked.checkins += 1;
    checked.last_checkin_day = Some(day);
    Ok((checked, day))
}

/// Complete (完成培训), reported by an authorised operator of the institution.
pub fn complete(
    context: Context,
    voucher: Option<&Voucher>,
    id: VoucherId,
    institution: InstitutionCode,
    acting: Acting,
) -> Result<Voucher, Refusal> {
    let voucher = known(voucher, id)?;
    if let Some((operator, named)) = acting {
        authorised(named, institution, operator)?;
    }
    match voucher.state {
        VoucherState::Completed | VoucherState::Settled => {
            check_institution(voucher, institution)?;
            refuse(
                Reason::AlreadyCompleted,
                format!("voucher {id} is already completed"),
            )
        }
        _ if context.is_expired(voucher)? => expired(voucher),
        VoucherState::Redeemed => {
            check_institution(voucher, institution)?;
            let mut completed = voucher.clone();
            completed.state = VoucherState::Completed;
            Ok(completed)
        }
        _ => not_redeemed(voucher),
    }
}

pub fn evaluate(
    context: Context,
    voucher: Option<&Voucher>,
    id: VoucherId,
    holder: PersonKey,
    score: u8,
) -> Result<Voucher, Refusal> {
    let voucher = known(voucher, id)?;
    if voucher.holder != holder {
        return refuse(
            Reason::NotHolder,
            format!("voucher {id} belongs to someone else"),
        );
    }
    if !matches!(
        voucher.state,
        VoucherState::Completed | VoucherState::Settled
    ) {
        return refuse(
            Reason::NotCompleted,
            format!("voucher {id} has not completed training"),
        );
    }
    if voucher.score.is_some() {
        return refuse(
            Reason::AlreadyEvaluated,
            format!("voucher {id} was already evaluated"),
        );
    }
    assert!(
        (1..=5).contains(&score),
        "scores are validated before the rules"
    );
    let _ = context;
    let mut evaluated = voucher.clone();
    evaluated.score = Some(score);
    Ok(evaluated)
}

/// Settle (补贴): only the agency of the redeeming institution's district.
pub fn settle(
    voucher: Option<&Voucher>,
    id: VoucherId,
    agency: DistrictCode,
    amount_fen: u64,
) -> Result<Voucher, Refusal> {
    let voucher = known(voucher, id)?;
    let Some((_, district)) = voucher.institution else {
        return refuse(
            Reason::NotCompleted,
            format!("voucher {id} has not completed training"),
        );
    };
    if district != agency {
        return refuse(
            Reason::ForbiddenRole,
            format!("voucher {id} was used in district {district}, not {agency}"),
        );
    }
    match voucher.state {
        VoucherState::Settled => {
            return refuse(
                Reason::AlreadySettled,
                format!("voucher {id} is already settled"),
            )
        }
        VoucherState::Completed => {}
        _ => {
            return refuse(
                Reason::NotCompleted,
                format!("voucher {id} has not completed training"),
            )
        }
    }
    if amount_fen > voucher.face_value_fen {
        return refuse(
            Reason::AmountExceedsFaceValue,
            format!(
                "{amount_fen} fen exceeds the face value of {} fen",
                voucher.face_value_fen
            ),
        );
    }
    let mut settled = voucher.clone();
    settled.state = VoucherState::Settled;
    settled.settled_fen = Some(amount_fen);
    Ok(settled)
}

/// Release, by an authorised operator of the institution: a cancelled enrollment returns the voucher to claimed and the use
/// to the person; the enrollment's check-ins go with it.
pub fn release(
    context: Context,
    voucher: Option<&Voucher>,
    id: VoucherId,
    person: PersonYear,
    institution: InstitutionCode,
    acting: Acting,
) -> Result<(Voucher, PersonYear), Refusal> {
    let voucher = known(voucher, id)?;
    if let Some((operator, named)) = acting {
        authorised(named, institution, operator)?;
    }
    match voucher.state {
        VoucherState::Completed | VoucherState::Settled => {
            check_institution(voucher, institution)?;
            return refuse(
                Reason::AlreadyCompleted,
                format!("voucher {id} is already completed"),
            );
        }
        _ if context.is_expired(voucher)? => return expired_pair(voucher),
        VoucherState::Redeemed => check_institution(voucher, institution)?,
        _ => return not_redeemed(voucher),
    }
    let mut released = voucher.clone();
    released.state = VoucherState::Claimed;
    released.institution = None;
    released.checkins = 0;
    released.last_checkin_day = None;
    let mut person = person;
    assert!(
        person.uses > 0,
        "a redeemed voucher counts as one of its holder's uses"
    );
    person.uses -= 1;
    Ok((released, person))
}

/// Expire may run only once the year's deadline has passed.
pub fn check_expire(context: Context, year: u16) -> Result<(), Refusal> {
    let campaign = context.campaign(year)?;
    if !campaign.has_ended(context.now) {
        return refuse(
            Reason::CampaignOpen,
            format!(
                "the {year} campaign runs until {}",
                campaign.deadline_text()
            ),
        );
    }
    Ok(())
}

/// One voucher at expiry: unfinished vouchers of the year become expired and
/// give their use back. Returns `None` for vouchers expiry leaves alone.
pub fn expire_voucher(voucher: &Voucher, year: u16) -> Option<(Voucher, bool)> {
    let unfinished = matches!(
        voucher.state,
        VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
    );
    if voucher.year != year || !unfinished {
        return None;
    }
    let mut expired = voucher.clone();
    expired.state = VoucherState::Expired;
    Some((expired, voucher.state == VoucherState::Redeemed))
}

/// The state answers show (API.md, DOMAIN.md "Expire"): from the campaign
/// deadline on, a voucher not yet completed is expired, whether or not an
/// `expire` has written it down yet. `deadline` is its campaign's; "on" is
/// `Campaign::has_ended` (after the deadline's last second), as for the rules.
pub fn shown_state(stored: VoucherState, deadline: Timestamp, now: Timestamp) -> VoucherState {
    let unfinished = matches!(
        stored,
        VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
    );
    if unfinished && now > deadline {
        VoucherState::Expired
    } else {
        stored
    }
}

/// What expiring one voucher takes away from the figures (its contributions
/// now, less those it keeps once expired): for a redeemed voucher its use
/// (`Used`, `InstitutionUsed`, `UsedWithCheckin`), nothing for the others.
/// Reads past the deadline subtract these sums, so `stats` answers as if
/// `expire` had run. At most nine, gathered without allocating.
pub fn expiry_withdrawals(voucher: &Voucher) -> impl Iterator<Item = (Figure, u64)> {
    let mut withdrawn = [None; 9];
    if let Some((expired, _)) = expire_voucher(voucher, voucher.year) {
        let mut after = [None; 9];
        for (slot, contribution) in after.iter_mut().zip(figure_contributions(&expired)) {
            *slot = Some(contribution);
        }
        for (slot, (figure, amount)) in withdrawn.iter_mut().zip(figure_contributions(voucher)) {
            let remains = after
                .iter()
                .flatten()
                .find(|(other, _)| *other == figure)
                .map_or(0, |(_, amount)| *amount);
            if amount > remains {
                *slot = Some((figure, amount - remains));
            }
        }
    }
    withdrawn.into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::super::campaign::Campaign;
    use super::super::enums::InstitutionType;
    use super::super::records::Site;
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp(
            chrono::DateTime::parse_from_rfc3339(rfc3339)
                .expect("a test instant")
                .timestamp(),
        )
    }

    /// The embedded default campaign in force at `now`.
    fn campaigns_at(now: Timestamp) -> Campaigns {
        Campaigns::new(vec![Campaign::default_for(now)]).expect("one campaign")
    }

    /// Institution 5000001 in district 500101, one site at 解放碑 (radius 500 m).
    fn institution() -> Institution {
        Institution {
            code: InstitutionCode(5_000_001),
            name: "重庆示例职业培训学校".into(),
            district: "500101".parse().expect("a district code"),
            address: "渝中区解放碑".into(),
            phone: "023-12345678".into(),
            kind: InstitutionType::PrivateSchool,
            admin_name: "张三".into(),
            admin: PersonKey([9; 32]),
            admin_changes: 0,
            sites: vec![Site {
                lat: 29.5576,
                lon: 106.5775,
                radius_m: 500,
            }],
            operators: Default::default(),
            registered_at: Timestamp(0),
        }
    }

    /// Checks that check-in sessions only move forward: day 1 and day 2 are
    /// accepted; day 1 again (the clock stepped back) and day 2 again are
    /// `duplicate_checkin`; day 3 is accepted. Before the fix only the very
    /// same day as the last check-in was refused, so day 1 again went through.
    #[test]
    fn a_checkin_on_a_day_not_after_the_last_one_is_a_duplicate() {
        let day_1 = at("2026-06-01T10:00:00+08:00");
        let day_2 = at("2026-06-02T10:00:00+08:00");
        let day_3 = at("2026-06-03T09:00:00+08:00");
        let campaigns = campaigns_at(day_1);
        let institution = institution();
        let redeemed = Voucher {
            year: campaigns.current().year,
            state: VoucherState::Redeemed,
            claimed: true,
            institution: Some((institution.code, institution.district)),
            ..Voucher::issued_example()
        };
        let check_in = |voucher: &Voucher, now: Timestamp| {
            let context = Context {
                campaigns: &campaigns,
                now,
            };
            checkin(
                context,
                Some(voucher),
                voucher.id,
                Some(&institution),
                None,
                Some((29.5577, 106.5776)),
            )
        };
        let (after_day_1, session_1) = check_in(&redeemed, day_1).expect("day 1 is accepted");
        let (after_day_2, session_2) = check_in(&after_day_1, day_2).expect("day 2 is accepted");
        assert_eq!(session_2, session_1 + 1);
        assert_eq!(after_day_2.checkins, 2);
        let stepped_back = check_in(&after_day_2, day_1).expect_err("day 1 again is refused");
        assert_eq!(stepped_back.reason, Reason::DuplicateCheckin);
        let same_day = check_in(&after_day_2, day_2).expect_err("day 2 again is refused");
        assert_eq!(same_day.reason, Reason::DuplicateCheckin);
        let (after_day_3, _) = check_in(&after_day_2, day_3).expect("day 3 is accepted");
        assert_eq!(after_day_3.checkins, 3);
    }

    fn issue_into(year: u16) -> Issue {
        Issue {
            holder: PersonKey([1; 32]),
            category: Category::Unemployed,
            kind: Kind::EmploymentSkills,
            face_value_fen: 80_000,
            channel: Channel::Wechat,
            district: "500101".parse().expect("a district code"),
            year,
        }
    }

    /// Checks that an issue goes only into a campaign open now: with 2026
    /// open and 2027 loaded but opening only on 2027-01-01 (configured), an
    /// issue into 2026 is accepted and one into 2027 is `expired` (not open
    /// yet); in the gap between them (none open) both are `expired`; and
    /// that a 2026 voucher is not expired before 2026's deadline, though
    /// 2027 is loaded. Before the fix a campaign was open from the epoch on,
    /// so the not-yet-open 2027 took issues.
    #[test]
    fn an_issue_into_a_campaign_not_open_is_expired() {
        let campaigns = Campaigns::new(vec![
            Campaign::example(2026, None),
            Campaign::example(2027, Some("2027-01-01T00:00:00+08:00")),
        ])
        .expect("two campaigns");
        let issued = |year: u16, now: &str| {
            let context = Context {
                campaigns: &campaigns,
                now: at(now),
            };
            issue(context, &issue_into(year), VoucherId(1)).map_err(|refusal| refusal.reason)
        };
        let open_2026 = "2026-11-20T10:00:00+08:00";
        assert_eq!(issued(2026, open_2026).map(|v| v.year), Ok(2026));
        assert_eq!(issued(2027, open_2026), Err(Reason::Expired));
        let gap = "2026-12-15T10:00:00+08:00";
        assert_eq!(issued(2026, gap), Err(Reason::Expired));
        assert_eq!(issued(2027, gap), Err(Reason::Expired));
        assert_eq!(
            issued(2027, "2027-01-01T00:00:00+08:00").map(|v| v.year),
            Ok(2027)
        );
        let context = Context {
            campaigns: &campaigns,
            now: at(open_2026),
        };
        let voucher = Voucher {
            year: 2026,
            ..Voucher::issued_example()
        };
        assert!(!context.is_expired(&voucher).expect("2026 is known"));
        assert_eq!(
            check_expire(context, 2026).map_err(|r| r.reason),
            Err(Reason::CampaignOpen)
        );
    }

    /// `shown_state`: before or at the deadline the stored state shows; after
    /// it issued, claimed and redeemed show as expired, while completed,
    /// settled and (already) expired vouchers show as stored.
    #[test]
    fn unfinished_vouchers_show_as_expired_after_the_deadline() {
        let deadline = at("2021-11-30T23:59:59+08:00");
        let after = at("2021-12-01T00:00:00+08:00");
        for stored in [
            VoucherState::Issued,
            VoucherState::Claimed,
            VoucherState::Redeemed,
            VoucherState::Completed,
            VoucherState::Settled,
            VoucherState::Expired,
        ] {
            assert_eq!(shown_state(stored, deadline, deadline), stored);
            let unfinished = matches!(
                stored,
                VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
            );
            let expected = if unfinished {
                VoucherState::Expired
            } else {
                stored
            };
            assert_eq!(shown_state(stored, deadline, after), expected, "{stored:?}");
        }
    }

    /// `expiry_withdrawals`: a redeemed voucher with a check-in gives back its
    /// three use figures; an issued or a completed one gives back nothing; and
    /// the figures after withdrawing equal those of the expired voucher.
    #[test]
    fn expiry_withdraws_only_the_uses_of_redeemed_vouchers() {
        let issued = Voucher::issued_example();
        assert_eq!(expiry_withdrawals(&issued).count(), 0);
        let institution: InstitutionCode = "1000001".parse().expect("a code");
        let redeemed = Voucher {
            state: VoucherState::Redeemed,
            claimed: true,
            institution: Some((institution, issued.district)),
            checkins: 1,
            ..issued.clone()
        };
        let mut withdrawn: Vec<_> = expiry_withdrawals(&redeemed).collect();
        withdrawn.sort();
        assert_eq!(
            withdrawn,
            vec![
                (Figure::Used(2021, issued.district), 1),
                (Figure::UsedWithCheckin(2021, issued.district), 1),
                (Figure::InstitutionUsed(2021, institution), 1),
            ]
        );
        let (expired, _) = expire_voucher(&redeemed, 2021).expect("redeemed expires");
        let mut after: Vec<_> = figure_contributions(&redeemed)
            .filter(|f| !withdrawn.contains(f))
            .collect();
        after.sort();
        let mut expected: Vec<_> = figure_contributions(&expired).collect();
        expected.sort();
        assert_eq!(after, expected);
        let completed = Voucher {
            state: VoucherState::Completed,
            ..redeemed
        };
        assert_eq!(expiry_withdrawals(&completed).count(), 0);
    }
}

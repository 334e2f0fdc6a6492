//! Validation: an `Op` as the caller sent it becomes a `Command` the rules
//! apply, or a refusal. Every field is checked here before anything is looked
//! up; ID numbers are checked and replaced by their keyed hash.

use bincode::{Decode, Encode};

use super::campaign::Campaigns;
use super::enums::{Category, Channel, ClassMode, Kind};
use super::geo;
use super::ids::{
    ClassCode, DistrictCode, IdNumber, InstitutionCode, OperatorId, PersonKey, PersonSecret,
    VoucherId,
};
use super::op::{Op, OpName, Role};
use super::records::Site;
use super::time::{parse_day, Timestamp};
use crate::error::{refuse, Reason, Refusal};
use crate::limits::{
    CLASS_DAYS_MAX, COMMENT_CHARS_MAX, EVENTS_PAGE_MAX, EVENTS_WAIT_MS_MAX, FACE_VALUE_FEN_MAX,
    REQUEST_ID_BYTES_MAX, SITES_PER_INSTITUTION_MAX, SITE_RADIUS_M_DEFAULT, SITE_RADIUS_M_MAX,
    TEXT_CHARS_MAX,
};

/// A registration as the rules see it: ID number hashed, sites checked.
#[derive(Clone, Debug, PartialEq, Encode, Decode, serde::Serialize)]
pub struct Registration {
    pub code: InstitutionCode,
    pub name: String,
    pub district: DistrictCode,
    pub address: String,
    pub phone: String,
    pub kind: super::enums::InstitutionType,
    pub admin_name: String,
    pub admin: PersonKey,
    pub sites: Vec<Site>,
}

/// An `open_class` as the rules see it: days as day numbers, sites checked.
#[derive(Clone, Debug, PartialEq, Encode, Decode, serde::Serialize)]
pub struct ClassOpening {
    pub institution: InstitutionCode,
    pub operator: OperatorId,
    pub class: ClassCode,
    pub kind: Kind,
    /// Local day numbers (`Timestamp::local_day`), `first_day <= last_day`.
    pub first_day: i32,
    pub last_day: i32,
    pub mode: ClassMode,
    /// The sites given (onsite); `None`: the institution's (onsite) or none (online).
    pub sites: Option<Vec<Site>>,
}

/// A validated change. This is what the audit log records (no ID number in clear).
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(Clone, Debug, PartialEq, Encode, Decode, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    RegisterInstitution(Box<Registration>),
    SetInstitutionAdmin {
        institution: InstitutionCode,
        admin_name: String,
        admin: PersonKey,
    },
    AuthoriseOperator {
        institution: InstitutionCode,
        admin: PersonKey,
        operator: OperatorId,
    },
    RevokeOperator {
        institution: InstitutionCode,
        admin: PersonKey,
        operator: OperatorId,
    },
    Issue {
        holder: PersonKey,
        category: Category,
        kind: Kind,
        face_value_fen: u64,
        channel: Channel,
        district: DistrictCode,
        year: u16,
    },
    Claim {
        voucher: VoucherId,
        holder: PersonKey,
    },
    Redeem {
        voucher: VoucherId,
        institution: InstitutionCode,
        operator: OperatorId,
        class: String,
    },
    Checkin {
        voucher: VoucherId,
        lat: f64,
        lon: f64,
    },
    Complete {
        voucher: VoucherId,
        institution: InstitutionCode,
    },
    Evaluate {
        voucher: VoucherId,
        holder: PersonKey,
        score: u8,
        comment: Option<String>,
    },
    Settle {
        voucher: VoucherId,
        amount_fen: u64,
    },
    Release {
        voucher: VoucherId,
        institution: InstitutionCode,
    },
    Expire {
        year: u16,
    },
    /// A campaign's rules entering the chain (its TOML text, as recorded in
    /// `meta/campaign/<year>`): written by the daemon when it first runs
    /// with the campaign, before any change under it, so that a replay
    /// needs nothing but the chain. Never a request.
    RecordCampaign {
        year: u16,
        text: String,
    },
    /// `complete` naming the operator who reports it (the form written since
    /// 2026-12; `Complete` above is kept for replaying older records).
    #[serde(rename = "complete")]
    CompleteByOperator {
        voucher: VoucherId,
        institution: InstitutionCode,
        operator: OperatorId,
    },
    /// `release` naming the operator (see `CompleteByOperator`).
    #[serde(rename = "release")]
    ReleaseByOperator {
        voucher: VoucherId,
        institution: InstitutionCode,
        operator: OperatorId,
    },
    /// One bounded batch of the daemon's own expiry after the deadline
    /// (docs/decisions.md D41): the listed vouchers of the year that are
    /// still unfinished become expired, as `Expire` does for all of them.
    /// Written by the daemon as the bureau (its name is `expire`); never a
    /// request. At most `EXPIRE_BATCH_VOUCHERS_MAX` vouchers. (New variants
    /// go last: bincode stores a variant by its position.)
    ExpireBatch {
        year: u16,
        vouchers: Vec<VoucherId>,
    },
    /// 开班: an institution opens a class (docs/decisions.md D50).
    OpenClass(Box<ClassOpening>),
    /// API.md's `checkin` with `online`, reported by an online platform for
    /// a voucher enrolled in an online class (its name is `checkin`).
    #[serde(rename = "checkin")]
    CheckinOnline {
        voucher: VoucherId,
    },
}

/// A request id: 1 to 64 printable ASCII characters.
pub fn check_request_id(id: &str) -> Result<(), Refusal> {
    let printable = id.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if !id.is_empty() && id.len() <= REQUEST_ID_BYTES_MAX && printable {
        Ok(())
    } else {
        refuse(
            Reason::InvalidRequest,
            format!("request id must be 1 to {REQUEST_ID_BYTES_MAX} printable ASCII characters"),
        )
    }
}

/// An ID number's keyed hash, after the full check as of `now` (without the
/// "up to today" bound when the caller passes no time).
fn person(
    text: &str,
    field: &str,
    secret: &PersonSecret,
    now: Option<Timestamp>,
) -> Result<PersonKey, Refusal> {
    let parsed = match now {
        Some(now) => IdNumber::parse_at(text, now),
        None => IdNumber::parse(text),
    };
    match parsed {
        Ok(id_number) => Ok(id_number.key(secret)),
        Err(why) => refuse(Reason::InvalidIdNumber, format!("{field}: {why}")),
    }
}

/// A one-line free-text field: no control characters at all.
fn text(
    value: &str,
    field: &str,
    required: bool,
    now: Option<Timestamp>,
) -> Result<String, Refusal> {
    free_text(value, field, required, false, now)
}

/// A free-text field; `line_breaks` lets it hold line breaks (`\n`, `\r\n`,
/// `\r`) and tabs (an evaluation comment), never other control characters.
/// It may not hold an ID number (checked as of `now`, see `no_id_number`).
fn free_text(
    value: &str,
    field: &str,
    required: bool,
    line_breaks: bool,
    now: Option<Timestamp>,
) -> Result<String, Refusal> {
    let value = value.trim();
    let chars = value.chars().count();
    if required && chars == 0 {
        return refuse(Reason::InvalidRequest, format!("{field} is required"));
    }
    if chars > TEXT_CHARS_MAX {
        return refuse(
            Reason::InvalidRequest,
            format!("{field} is longer than {TEXT_CHARS_MAX} characters"),
        );
    }
    let allowed = |c: char| line_breaks && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        let which = if line_breaks {
            "control characters other than line breaks and tabs"
        } else {
            "control characters"
        };
        return refuse(Reason::InvalidRequest, format!("{field} contains {which}"));
    }
    no_id_number(value, field, now)?;
    Ok(value.to_owned())
}

/// Free text holding a resident ID number is refused, so no field stores
/// one in clear (DOMAIN.md): the ledger keeps free text as sent, in its
/// tables and the audit log. The message never repeats the number.
fn no_id_number(value: &str, field: &str, now: Option<Timestamp>) -> Result<(), Refusal> {
    if IdNumber::found_in(value, now) {
        return refuse(
            Reason::InvalidRequest,
            format!("{field}: an ID number may not appear in free text"),
        );
    }
    Ok(())
}

/// An operator id (printable ASCII, checked when parsed) is free text too.
fn operator_id(operator: &OperatorId, now: Option<Timestamp>) -> Result<OperatorId, Refusal> {
    no_id_number(operator.as_str(), "operator", now)?;
    Ok(operator.clone())
}

fn sites(specs: &[super::op::SiteSpec]) -> Result<Vec<Site>, Refusal> {
    if specs.is_empty() || specs.len() > SITES_PER_INSTITUTION_MAX {
        return refuse(
            Reason::InvalidRequest,
            format!("an institution has 1 to {SITES_PER_INSTITUTION_MAX} training sites"),
        );
    }
    specs
        .iter()
        .map(|spec| {
            if !geo::is_valid_position(spec.lat, spec.lon)
                || !geo::is_in_chongqing(spec.lat, spec.lon)
            {
                return refuse(
                    Reason::InvalidRequest,
                    format!("site ({}, {}) is not inside Chongqing", spec.lat, spec.lon),
                );
            }
            let radius_m = spec.radius_m.unwrap_or(SITE_RADIUS_M_DEFAULT);
            if radius_m == 0 || radius_m > SITE_RADIUS_M_MAX {
                return refuse(
                    Reason::InvalidRequest,
                    format!("site radius_m must be 1 to {SITE_RADIUS_M_MAX}"),
                );
            }
            Ok(Site {
                lat: spec.lat,
                lon: spec.lon,
                radius_m,
            })
        })
        .collect()
}

/// Checks every field of a `register_institution` as of `now`, the injected
/// time (the admin's ID number's birth date is at most today).
pub fn check_registration_at(
    op: &Op,
    secret: &PersonSecret,
    now: Timestamp,
) -> Result<Registration, Refusal> {
    registration(op, secret, Some(now))
}

/// Transitional, for callers that pass no time yet (the institution import
/// checks form rows with it before sending them): `check_registration_at`
/// without the "up to today" bound on the admin's birth date. The daemon
/// checks the row again with the time when it arrives.
pub fn check_registration(op: &Op, secret: &PersonSecret) -> Result<Registration, Refusal> {
    registration(op, secret, None)
}

fn registration(
    op: &Op,
    secret: &PersonSecret,
    now: Option<Timestamp>,
) -> Result<Registration, Refusal> {
    let Op::RegisterInstitution {
        code,
        name,
        district,
        address,
        phone,
        kind,
        admin_name,
        admin_id_number,
        sites: site_specs,
    } = op
    else {
        return refuse(
            Reason::InvalidRequest,
            format!("{} is not register_institution", op.name()),
        );
    };
    Ok(Registration {
        code: *code,
        name: text(name, "name", true, now)?,
        district: *district,
        address: text(address, "address", true, now)?,
        phone: text(phone, "phone", true, now)?,
        kind: *kind,
        admin_name: text(admin_name, "admin_name", true, now)?,
        admin: person(admin_id_number, "admin_id_number", secret, now)?,
        sites: sites(site_specs)?,
    })
}

impl Command {
    /// The operation this command was validated from; `None` for a
    /// campaign record, which no request makes.
    /// The institution the command acts at or on, if any.
    pub fn institution(&self) -> Option<InstitutionCode> {
        match self {
            Command::RegisterInstitution(registration) => Some(registration.code),
            Command::SetInstitutionAdmin { institution, .. }
            | Command::AuthoriseOperator { institution, .. }
            | Command::RevokeOperator { institution, .. }
            | Command::Redeem { institution, .. }
            | Command::Complete { institution, .. }
            | Command::Release { institution, .. }
            | Command::CompleteByOperator { institution, .. }
            | Command::ReleaseByOperator { institution, .. } => Some(*institution),
            _ => None,
        }
    }

    pub fn op_name(&self) -> Option<OpName> {
        Some(match self {
            Command::RegisterInstitution(_) => OpName::RegisterInstitution,
            Command::SetInstitutionAdmin { .. } => OpName::SetInstitutionAdmin,
            Command::AuthoriseOperator { .. } => OpName::AuthoriseOperator,
            Command::RevokeOperator { .. } => OpName::RevokeOperator,
            Command::Issue { .. } => OpName::Issue,
            Command::Claim { .. } => OpName::Claim,
            Command::Redeem { .. } => OpName::Redeem,
            Command::Checkin { .. } => OpName::Checkin,
            Command::Complete { .. } => OpName::Complete,
            Command::Evaluate { .. } => OpName::Evaluate,
            Command::Settle { .. } => OpName::Settle,
            Command::Release { .. } => OpName::Release,
            Command::Expire { .. } | Command::ExpireBatch { .. } => OpName::Expire,
            Command::CompleteByOperator { .. } => OpName::Complete,
            Command::ReleaseByOperator { .. } => OpName::Release,
            Command::OpenClass(_) => OpName::OpenClass,
            Command::CheckinOnline { .. } => OpName::CheckinOnline,
            Command::RecordCampaign { .. } => return None,
        })
    }

    /// The command's name in records and messages (`redeem`, `record_campaign`).
    pub fn name(&self) -> &'static str {
        self.op_name().map_or("record_campaign", <&str>::from)
    }

    /// Whether `role` may run this command (API.md's role table): checked
    /// again for every replayed record, which a request never passed.
    /// A campaign record is the bureau's configuration, sealed by the daemon.
    pub fn allows(&self, role: Role) -> bool {
        match self.op_name() {
            Some(name) => name.allows(role),
            None => role == Role::Bureau,
        }
    }

    /// Checks every field of a changing operation as of `now`, the injected
    /// time the operation is applied at (an ID number's birth date is at
    /// most today in UTC+8). Reads (`get_voucher`, `stats`, `audit_head`,
    /// `audit_read`) are not commands: this checks their fields and returns
    /// `None` for them.
    pub fn from_op(
        op: &Op,
        secret: &PersonSecret,
        campaigns: &Campaigns,
        now: Timestamp,
    ) -> Result<Option<Command>, Refusal> {
        Command::validated(op, secret, campaigns, Some(now))
    }

    fn validated(
        op: &Op,
        secret: &PersonSecret,
        campaigns: &Campaigns,
        now: Option<Timestamp>,
    ) -> Result<Option<Command>, Refusal> {
        let command = match op {
            Op::RegisterInstitution { .. } => {
                Command::RegisterInstitution(Box::new(registration(op, secret, now)?))
            }
            Op::SetInstitutionAdmin {
                institution,
                admin_name,
                admin_id_number,
            } => Command::SetInstitutionAdmin {
                institution: *institution,
                admin_name: text(admin_name, "admin_name", true, now)?,
                admin: person(admin_id_number, "admin_id_number", secret, now)?,
            },
            Op::AuthoriseOperator {
                institution,
                admin_id_number,
                operator,
            } => Command::AuthoriseOperator {
                institution: *institution,
                admin: person(admin_id_number, "admin_id_number", secret, now)?,
                operator: operator_id(operator, now)?,
            },
            Op::RevokeOperator {
                institution,
                admin_id_number,
                operator,
            } => Command::RevokeOperator {
                institution: *institution,
                admin: person(admin_id_number, "admin_id_number", secret, now)?,
                operator: operator_id(operator, now)?,
            },
            Op::Issue {
                id_number,
                category,
                kind,
                face_value_fen,
                channel,
                district,
                year,
            } => {
                if *face_value_fen == 0 || *face_value_fen > FACE_VALUE_FEN_MAX {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("face_value_fen must be 1 to {FACE_VALUE_FEN_MAX}"),
                    );
                }
                // Without year: the campaign open now (an issue at a time
                // with none open goes to one that is not, and the rules
                // refuse it `expired`, remembered like any refusal).
                let year = match (year, now) {
                    (Some(year), _) => *year,
                    (None, Some(now)) => campaigns.for_issue(now).year,
                    (None, None) => campaigns.current().year,
                };
                if campaigns.year(year).is_none() {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("no campaign for year {year}"),
                    );
                }
                Command::Issue {
                    holder: person(id_number, "id_number", secret, now)?,
                    category: *category,
                    kind: *kind,
                    face_value_fen: *face_value_fen,
                    channel: *channel,
                    district: *district,
                    year,
                }
            }
            Op::Claim { voucher, id_number } => Command::Claim {
                voucher: *voucher,
                holder: person(id_number, "id_number", secret, now)?,
            },
            Op::Redeem {
                voucher,
                institution,
                operator,
                class,
            } => Command::Redeem {
                voucher: *voucher,
                institution: *institution,
                operator: operator_id(operator, now)?,
                class: text(class, "class", true, now)?,
            },
            Op::Checkin { voucher, lat, lon } => {
                if !geo::is_valid_position(*lat, *lon) {
                    return refuse(
                        Reason::InvalidRequest,
                        "lat must be within ±90 and lon within ±180",
                    );
                }
                Command::Checkin {
                    voucher: *voucher,
                    lat: *lat,
                    lon: *lon,
                }
            }
            Op::Complete {
                voucher,
                institution,
                operator,
            } => Command::CompleteByOperator {
                voucher: *voucher,
                institution: *institution,
                operator: operator_id(operator, now)?,
            },
            Op::Evaluate {
                voucher,
                id_number,
                score,
                comment,
            } => {
                if !(1..=5).contains(score) {
                    return refuse(Reason::InvalidRequest, "score must be 1 to 5");
                }
                let comment = match comment {
                    Some(comment) if comment.chars().count() > COMMENT_CHARS_MAX => {
                        return refuse(
                            Reason::InvalidRequest,
                            format!("comment is longer than {COMMENT_CHARS_MAX} characters"),
                        )
                    }
                    Some(comment) => Some(free_text(comment, "comment", false, true, now)?),
                    None => None,
                };
                Command::Evaluate {
                    voucher: *voucher,
                    holder: person(id_number, "id_number", secret, now)?,
                    score: *score,
                    comment,
                }
            }
            Op::Settle {
                voucher,
                amount_fen,
            } => Command::Settle {
                voucher: *voucher,
                amount_fen: *amount_fen,
            },
            Op::Release {
                voucher,
                institution,
                operator,
            } => Command::ReleaseByOperator {
                voucher: *voucher,
                institution: *institution,
                operator: operator_id(operator, now)?,
            },
            Op::Expire { year } => {
                if campaigns.year(*year).is_none() {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("no campaign for year {year}"),
                    );
                }
                Command::Expire { year: *year }
            }
            Op::OpenClass {
                institution,
                operator,
                class,
                kind,
                first_day,
                last_day,
                mode,
                sites: site_specs,
            } => {
                let day = |text: &str, field: &str| {
                    parse_day(text).ok_or_else(|| {
                        Refusal::new(
                            Reason::InvalidRequest,
                            format!("{field} must be a date YYYY-MM-DD, not {text:?}"),
                        )
                    })
                };
                let (first_day, last_day) =
                    (day(first_day, "first_day")?, day(last_day, "last_day")?);
                if last_day < first_day {
                    return refuse(Reason::InvalidRequest, "last_day is before first_day");
                }
                if last_day - first_day + 1 > CLASS_DAYS_MAX {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("a class lasts at most {CLASS_DAYS_MAX} days"),
                    );
                }
                no_id_number(class.as_str(), "class", now)?;
                let sites = match (mode, site_specs) {
                    (ClassMode::Online, Some(_)) => {
                        return refuse(Reason::InvalidRequest, "an online class has no sites")
                    }
                    (_, Some(specs)) => Some(sites(specs)?),
                    (_, None) => None,
                };
                Command::OpenClass(Box::new(ClassOpening {
                    institution: *institution,
                    operator: operator_id(operator, now)?,
                    class: class.clone(),
                    kind: *kind,
                    first_day,
                    last_day,
                    mode: *mode,
                    sites,
                }))
            }
            Op::CheckinOnline { voucher, online } => {
                if !online {
                    return refuse(
                        Reason::InvalidRequest,
                        "online must be true (a check-in without it carries lat and lon)",
                    );
                }
                Command::CheckinOnline { voucher: *voucher }
            }
            Op::AuditRead { from, limit } => {
                if *from == 0 {
                    return refuse(Reason::InvalidRequest, "audit sequence numbers start at 1");
                }
                if *limit == Some(0) {
                    return refuse(Reason::InvalidRequest, "limit must be at least 1");
                }
                return Ok(None);
            }
            Op::ListVouchers { id_number, .. } => {
                person(id_number, "id_number", secret, now)?;
                return Ok(None);
            }
            Op::Events {
                limit,
                institution,
                district,
                wait_ms,
                ..
            } => {
                if limit.is_some_and(|limit| limit == 0 || limit > EVENTS_PAGE_MAX) {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("limit must be 1 to {EVENTS_PAGE_MAX}"),
                    );
                }
                if wait_ms.is_some_and(|wait_ms| wait_ms > EVENTS_WAIT_MS_MAX) {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("wait_ms must be at most {EVENTS_WAIT_MS_MAX}"),
                    );
                }
                if institution.is_some() && district.is_some() {
                    return refuse(
                        Reason::InvalidRequest,
                        "filter by institution or by district, not both",
                    );
                }
                return Ok(None);
            }
            Op::GetVoucher { .. } | Op::Stats { .. } | Op::AuditHead => return Ok(None),
        };
        Ok(Some(command))
    }
}

#[cfg(test)]
mod tests {
    use super::super::campaign::Campaign;
    use super::*;

    /// 2026-06-01T10:00:00+08:00.
    const NOW: Timestamp = Timestamp(1_780_279_200);

    fn secret() -> PersonSecret {
        PersonSecret([7; 32])
    }

    fn campaigns() -> Campaigns {
        Campaigns::new(vec![Campaign::default_for(NOW)]).expect("one campaign")
    }

    fn validate(op: &Op) -> Result<Option<Command>, Refusal> {
        Command::from_op(op, &secret(), &campaigns(), NOW)
    }

    /// An ID number of region 500101 born on `birth` (YYYYMMDD), check digit right.
    fn born_on(birth: &str) -> String {
        let body = format!("500101{birth}123");
        format!("{body}{}", IdNumber::check_digit(body.as_bytes()) as char)
    }

    fn issue_to(id_number: &str) -> Op {
        Op::Issue {
            id_number: id_number.into(),
            category: Category::Unemployed,
            kind: Kind::EmploymentSkills,
            face_value_fen: 80_000,
            channel: Channel::Wechat,
            district: "500101".parse().expect("a district code"),
            year: None,
        }
    }

    fn evaluate(comment: &str) -> Op {
        Op::Evaluate {
            voucher: VoucherId(1),
            id_number: "11010519491231002X".into(),
            score: 4,
            comment: Some(comment.into()),
        }
    }

    fn refusal_reason(op: &Op) -> Option<Reason> {
        validate(op).err().map(|refusal| refusal.reason)
    }

    /// Checks that an evaluation comment may hold line breaks (`\n`, `\r\n`,
    /// a lone `\r`) and tabs, kept as sent, while other control characters
    /// (NUL, ESC, DEL, U+0085) are still `invalid_request`; and that one-line
    /// fields (a class code) still refuse a line break. Before the fix every
    /// comment with a line break was refused as holding control characters.
    #[test]
    fn comments_may_hold_line_breaks_and_tabs_but_no_other_control_characters() {
        for comment in [
            "好老师\n实操多",
            "good\r\nteacher",
            "old mac\rline",
            "score:\t4",
        ] {
            match validate(&evaluate(comment)) {
                Ok(Some(Command::Evaluate {
                    comment: Some(kept),
                    ..
                })) => assert_eq!(kept, comment),
                other => panic!("{comment:?} must be accepted, got {other:?}"),
            }
        }
        for comment in [
            "bell\u{7}",
            "nul\0",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "nel\u{85}x",
        ] {
            assert_eq!(
                refusal_reason(&evaluate(comment)),
                Some(Reason::InvalidRequest),
                "{comment:?}"
            );
        }
        let class_with_line_break = Op::Redeem {
            voucher: VoucherId(1),
            institution: InstitutionCode(5_000_001),
            operator: "op-1".parse().expect("an operator"),
            class: "电工\n2026".into(),
        };
        assert_eq!(
            refusal_reason(&class_with_line_break),
            Some(Reason::InvalidRequest)
        );
    }

    /// Checks that validation reads "today" from the time it is given, in
    /// UTC+8: at 2026-06-01T10:00+08:00 a person born 2026-06-01 may be
    /// issued a voucher and one born 2026-06-02 is `invalid_id_number`; at
    /// 00:30 in Chongqing (still 31 May in UTC) 1 June is already today. And
    /// that every field holding an ID number gets the full check (region,
    /// real birth date): `issue`, `claim`, `evaluate`, `register_institution`,
    /// `set_institution_admin`, `authorise_operator`. Before the fix only the
    /// check digit was checked, so all of these were accepted.
    #[test]
    fn id_numbers_get_the_full_check_with_today_from_the_given_time() {
        assert!(validate(&issue_to(&born_on("20260601"))).is_ok());
        assert_eq!(
            refusal_reason(&issue_to(&born_on("20260602"))),
            Some(Reason::InvalidIdNumber)
        );
        let just_after_midnight = Timestamp(NOW.0 - 9 * 3600 - 30 * 60);
        assert_eq!(
            just_after_midnight.local_rfc3339(8 * 3600),
            "2026-06-01T00:30:00+08:00"
        );
        assert!(Command::from_op(
            &issue_to(&born_on("20260601")),
            &secret(),
            &campaigns(),
            just_after_midnight
        )
        .is_ok());
        let month_13 = "500101199913450016";
        let wrong = [
            "000000000000000001",
            month_13,
            "999999999999999993",
            &born_on("20230229"),
        ];
        for id_number in wrong {
            let ops = [
                issue_to(id_number),
                Op::Claim {
                    voucher: VoucherId(1),
                    id_number: id_number.into(),
                },
                Op::Evaluate {
                    voucher: VoucherId(1),
                    id_number: id_number.into(),
                    score: 5,
                    comment: None,
                },
                Op::SetInstitutionAdmin {
                    institution: InstitutionCode(5_000_001),
                    admin_name: "李四".into(),
                    admin_id_number: id_number.into(),
                },
                Op::AuthoriseOperator {
                    institution: InstitutionCode(5_000_001),
                    admin_id_number: id_number.into(),
                    operator: "op-1".parse().expect("an operator"),
                },
                registration_with_admin(id_number),
            ];
            for op in ops {
                assert_eq!(
                    refusal_reason(&op),
                    Some(Reason::InvalidIdNumber),
                    "{} with {id_number}",
                    op.name()
                );
            }
            assert_eq!(
                check_registration_at(&registration_with_admin(id_number), &secret(), NOW)
                    .map_err(|refusal| refusal.reason),
                Err(Reason::InvalidIdNumber)
            );
        }
        assert!(validate(&registration_with_admin(&born_on("19800229"))).is_ok());
    }

    fn registration_with_admin(admin_id_number: &str) -> Op {
        Op::RegisterInstitution {
            code: InstitutionCode(5_000_001),
            name: "重庆示例职业培训学校".into(),
            district: "500101".parse().expect("a district code"),
            address: "渝中区解放碑".into(),
            phone: "023-12345678".into(),
            kind: super::super::enums::InstitutionType::PrivateSchool,
            admin_name: "张三".into(),
            admin_id_number: admin_id_number.into(),
            sites: vec![super::super::op::SiteSpec {
                lat: 29.5576,
                lon: 106.5775,
                radius_m: None,
            }],
        }
    }

    /// Checks that every free-text field of a command (institution name,
    /// address, phone, admin name, operator, class, comment) refuses a valid
    /// ID number anywhere in it, a lowercase `x` too, with `invalid_request`
    /// and a message that says so without repeating the number; and that
    /// digit runs that are no valid ID number (wrong check digit, month 13,
    /// 17 digits) still pass. Before the fix all of these were accepted and
    /// stored in clear.
    #[test]
    fn free_text_may_not_hold_an_id_number() {
        let valid = [
            "11010519491231002X",
            "11010519491231002x",
            &born_on("19800229"),
        ];
        for id_number in valid {
            let inside = format!("班级{id_number}号");
            let operator: OperatorId = format!("op-{id_number}").parse().expect("an operator");
            let mut registrations = Vec::new();
            for field in ["name", "address", "phone", "admin_name"] {
                let mut op = registration_with_admin(&born_on("19800101"));
                if let Op::RegisterInstitution {
                    name,
                    address,
                    phone,
                    admin_name,
                    ..
                } = &mut op
                {
                    let target = match field {
                        "name" => name,
                        "address" => address,
                        "phone" => phone,
                        _ => admin_name,
                    };
                    *target = inside.clone();
                }
                registrations.push(op);
            }
            let ops = registrations.into_iter().chain([
                Op::SetInstitutionAdmin {
                    institution: InstitutionCode(5_000_001),
                    admin_name: inside.clone(),
                    admin_id_number: born_on("19800101"),
                },
                Op::AuthoriseOperator {
                    institution: InstitutionCode(5_000_001),
                    admin_id_number: born_on("19800101"),
                    operator: operator.clone(),
                },
                Op::RevokeOperator {
                    institution: InstitutionCode(5_000_001),
                    admin_id_number: born_on("19800101"),
                    operator: operator.clone(),
                },
                Op::Redeem {
                    voucher: VoucherId(1),
                    institution: InstitutionCode(5_000_001),
                    operator: operator.clone(),
                    class: "电工".into(),
                },
                Op::Redeem {
                    voucher: VoucherId(1),
                    institution: InstitutionCode(5_000_001),
                    operator: "op-1".parse().expect("an operator"),
                    class: inside.clone(),
                },
                evaluate(&format!("很好\n{id_number}")),
            ]);
            for op in ops {
                let refusal = validate(&op).expect_err(op.name());
                assert_eq!(refusal.reason, Reason::InvalidRequest, "{op:?}");
                assert!(
                    refusal
                        .message
                        .contains("an ID number may not appear in free text"),
                    "{}",
                    refusal.message
                );
                assert!(
                    !refusal.message.contains(&id_number[..17]),
                    "{}",
                    refusal.message
                );
            }
        }
        for harmless in [
            "电工 110105194912310021",
            "500101199913450016",
            "订单 12345678901234567",
            "电话 023-12345678",
        ] {
            assert!(validate(&evaluate(harmless)).is_ok(), "{harmless}");
            let class = Op::Redeem {
                voucher: VoucherId(1),
                institution: InstitutionCode(5_000_001),
                operator: "op-1".parse().expect("an operator"),
                class: harmless.into(),
            };
            assert!(validate(&class).is_ok(), "{harmless}");
        }
    }

    /// Checks the brief's case: with the 2026 campaign open and the 2027
    /// campaign loaded early (it opens after 2026's deadline), an `issue`
    /// without year goes to 2026, not to the newest year; once 2026 has
    /// ended it goes to 2027; an explicit year is kept. Before the fix the
    /// newest loaded year always won.
    #[test]
    fn an_issue_without_year_goes_to_the_campaign_open_now() {
        let campaigns = Campaigns::new(vec![
            Campaign::example(2026, None),
            Campaign::example(2027, None),
        ])
        .expect("two campaigns");
        assert_eq!(campaigns.current().year, 2027);
        let issued_year =
            |op: &Op, now: Timestamp| match Command::from_op(op, &secret(), &campaigns, now) {
                Ok(Some(Command::Issue { year, .. })) => year,
                other => panic!("an issue, got {other:?}"),
            };
        let person = born_on("19800101");
        assert_eq!(issued_year(&issue_to(&person), NOW), 2026);
        let after_2026 = Timestamp(1_796_054_400); // 2026-12-01T00:00:00+08:00
        assert_eq!(
            after_2026.local_rfc3339(8 * 3600),
            "2026-12-01T00:00:00+08:00"
        );
        assert_eq!(issued_year(&issue_to(&person), after_2026), 2027);
        let mut explicit = issue_to(&person);
        if let Op::Issue { year, .. } = &mut explicit {
            *year = Some(2027);
        }
        assert_eq!(issued_year(&explicit, NOW), 2027);
    }
}

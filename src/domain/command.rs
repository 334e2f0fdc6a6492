//! Validation: an `Op` as the caller sent it becomes a `Command` the rules
//! apply, or a refusal. Every field is checked here before anything is looked
//! up; ID numbers are checked and replaced by their keyed hash.

use bincode::{Decode, Encode};

use super::campaign::Campaigns;
use super::enums::{Category, Channel, Kind};
use super::geo;
use super::ids::{
    DistrictCode, IdNumber, InstitutionCode, OperatorId, PersonKey, PersonSecret, VoucherId,
};
use super::op::Op;
use super::records::Site;
use crate::error::{refuse, Reason, Refusal};
use crate::limits::{
    COMMENT_CHARS_MAX, FACE_VALUE_FEN_MAX, REQUEST_ID_BYTES_MAX, SITES_PER_INSTITUTION_MAX,
    SITE_RADIUS_M_DEFAULT, SITE_RADIUS_M_MAX, TEXT_CHARS_MAX,
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

fn person(text: &str, field: &str, secret: &PersonSecret) -> Result<PersonKey, Refusal> {
    match IdNumber::parse(text) {
        Ok(id_number) => Ok(id_number.key(secret)),
        Err(why) => refuse(Reason::InvalidIdNumber, format!("{field}: {why}")),
    }
}

fn text(value: &str, field: &str, required: bool) -> Result<String, Refusal> {
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
    if value.chars().any(char::is_control) {
        return refuse(
            Reason::InvalidRequest,
            format!("{field} contains control characters"),
        );
    }
    Ok(value.to_owned())
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

/// Checks every field of a `register_institution` (the institution import
/// checks form rows with it before sending them).
pub fn check_registration(op: &Op, secret: &PersonSecret) -> Result<Registration, Refusal> {
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
        name: text(name, "name", true)?,
        district: *district,
        address: text(address, "address", true)?,
        phone: text(phone, "phone", true)?,
        kind: *kind,
        admin_name: text(admin_name, "admin_name", true)?,
        admin: person(admin_id_number, "admin_id_number", secret)?,
        sites: sites(site_specs)?,
    })
}

impl Command {
    /// Checks every field of a changing operation. Reads (`get_voucher`,
    /// `stats`, `audit_head`, `audit_read`) are not commands: this checks
    /// their fields and returns `None` for them.
    pub fn from_op(
        op: &Op,
        secret: &PersonSecret,
        campaigns: &Campaigns,
    ) -> Result<Option<Command>, Refusal> {
        let command = match op {
            Op::RegisterInstitution { .. } => {
                Command::RegisterInstitution(Box::new(check_registration(op, secret)?))
            }
            Op::SetInstitutionAdmin {
                institution,
                admin_name,
                admin_id_number,
            } => Command::SetInstitutionAdmin {
                institution: *institution,
                admin_name: text(admin_name, "admin_name", true)?,
                admin: person(admin_id_number, "admin_id_number", secret)?,
            },
            Op::AuthoriseOperator {
                institution,
                admin_id_number,
                operator,
            } => Command::AuthoriseOperator {
                institution: *institution,
                admin: person(admin_id_number, "admin_id_number", secret)?,
                operator: operator.clone(),
            },
            Op::RevokeOperator {
                institution,
                admin_id_number,
                operator,
            } => Command::RevokeOperator {
                institution: *institution,
                admin: person(admin_id_number, "admin_id_number", secret)?,
                operator: operator.clone(),
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
                let year = year.unwrap_or(campaigns.current().year);
                if campaigns.year(year).is_none() {
                    return refuse(
                        Reason::InvalidRequest,
                        format!("no campaign for year {year}"),
                    );
                }
                Command::Issue {
                    holder: person(id_number, "id_number", secret)?,
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
                holder: person(id_number, "id_number", secret)?,
            },
            Op::Redeem {
                voucher,
                institution,
                operator,
                class,
            } => Command::Redeem {
                voucher: *voucher,
                institution: *institution,
                operator: operator.clone(),
                class: text(class, "class", true)?,
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
            } => Command::Complete {
                voucher: *voucher,
                institution: *institution,
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
                    Some(comment) => Some(text(comment, "comment", false)?),
                    None => None,
                };
                Command::Evaluate {
                    voucher: *voucher,
                    holder: person(id_number, "id_number", secret)?,
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
            } => Command::Release {
                voucher: *voucher,
                institution: *institution,
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
            Op::AuditRead { from, limit } => {
                if *from == 0 {
                    return refuse(Reason::InvalidRequest, "audit sequence numbers start at 1");
                }
                if *limit == Some(0) {
                    return refuse(Reason::InvalidRequest, "limit must be at least 1");
                }
                return Ok(None);
            }
            Op::GetVoucher { .. } | Op::Stats { .. } | Op::AuditHead => return Ok(None),
        };
        Ok(Some(command))
    }
}

//! Requests and answers: the operations of API.md as typed values.
//!
//! `Op` is what a caller sends (JSON with an `"op"` tag, or bincode on the
//! wire); `Answer` is what it gets back. `Role` is who is calling.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use strum::VariantArray;

use super::enums::{Category, Channel, ClassMode, InstitutionType, Kind, VoucherState};
use super::ids::{ClassCode, DistrictCode, InstitutionCode, OperatorId, VoucherId};
use crate::error::{Reason, Refusal};

/// Who is calling, taken from the client certificate. A role's name is
/// strum's snake_case name of its variant (`RoleName`); a district agency's
/// is `district:<code>`.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(RoleName),
    doc = "A role without its district: the names of `Role`.",
    derive(strum::IntoStaticStr, strum::VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum Role {
    Gateway,
    Bureau,
    /// A district agency (区县经办机构) of one district.
    District(DistrictCode),
    Auditor,
    /// An online training platform: reports online check-ins.
    Platform,
    /// The training system reading its data back (`events`).
    Training,
}

impl RoleName {
    /// The name as `--as` and the certificates write it (`district:<code>`).
    fn usage(self) -> &'static str {
        match self {
            RoleName::District => "district:<code>",
            other => other.into(),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name: &'static str = RoleName::from(self).into();
        match self {
            Role::District(code) => write!(f, "{name}:{code}"),
            _ => f.write_str(name),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Role, String> {
        let (name, code) = match text.split_once(':') {
            Some((name, code)) => (name, Some(code)),
            None => (text, None),
        };
        let named = RoleName::VARIANTS
            .iter()
            .copied()
            .find(|&role| <&str>::from(role) == name);
        match (named, code) {
            (Some(RoleName::Gateway), None) => Ok(Role::Gateway),
            (Some(RoleName::Bureau), None) => Ok(Role::Bureau),
            (Some(RoleName::Auditor), None) => Ok(Role::Auditor),
            (Some(RoleName::Platform), None) => Ok(Role::Platform),
            (Some(RoleName::Training), None) => Ok(Role::Training),
            (Some(RoleName::District), Some(code)) => Ok(Role::District(code.parse()?)),
            _ => {
                let names: Vec<&str> = RoleName::VARIANTS.iter().map(|r| r.usage()).collect();
                Err(format!("unknown role {text:?} ({})", names.join(", ")))
            }
        }
    }
}

/// A training site as given in a request; `radius_m` defaults to 500.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct SiteSpec {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<u32>,
}

impl SiteSpec {
    /// `LAT,LON` or `LAT,LON,RADIUS_M`, as `voucherctl --site` and the
    /// institution form write a site. Any float parses; the rules judge it.
    pub fn parse(text: &str) -> Result<SiteSpec, String> {
        let number = |part: &str| {
            let part = part.trim();
            part.parse::<f64>()
                .map_err(|_| format!("{part:?} is not a number"))
        };
        match text.split(',').collect::<Vec<&str>>().as_slice() {
            [lat, lon] => Ok(SiteSpec {
                lat: number(lat)?,
                lon: number(lon)?,
                radius_m: None,
            }),
            [lat, lon, radius] => Ok(SiteSpec {
                lat: number(lat)?,
                lon: number(lon)?,
                radius_m: Some(radius.trim().parse().map_err(|_| {
                    format!("radius {:?} is not a whole number of metres", radius.trim())
                })?),
            }),
            _ => Err(format!("{text:?} is not LAT,LON or LAT,LON,RADIUS_M")),
        }
    }
}

/// One operation of API.md with its fields. Its name (the JSON `"op"` tag)
/// is strum's snake_case name of the variant (`OpName`), held equal to
/// serde's by a test.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
///
/// serde's derive is `remote = "Self"` so that `Serialize`/`Deserialize`
/// below can give API.md's `checkin` with `"online": true` its own variant
/// (`CheckinOnline`, name `checkin_online`): one JSON name, two layouts.
#[derive(
    Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode, strum::EnumDiscriminants,
)]
#[serde(remote = "Self", tag = "op", rename_all = "snake_case")]
#[strum_discriminants(
    name(OpName),
    doc = "An operation without its fields: the names of `Op`, one list.",
    derive(strum::IntoStaticStr, strum::VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum Op {
    RegisterInstitution {
        code: InstitutionCode,
        name: String,
        district: DistrictCode,
        address: String,
        phone: String,
        #[serde(rename = "type")]
        kind: InstitutionType,
        admin_name: String,
        admin_id_number: String,
        sites: Vec<SiteSpec>,
    },
    SetInstitutionAdmin {
        institution: InstitutionCode,
        admin_name: String,
        admin_id_number: String,
    },
    AuthoriseOperator {
        institution: InstitutionCode,
        admin_id_number: String,
        operator: OperatorId,
    },
    RevokeOperator {
        institution: InstitutionCode,
        admin_id_number: String,
        operator: OperatorId,
    },
    Issue {
        id_number: String,
        category: Category,
        kind: Kind,
        face_value_fen: u64,
        channel: Channel,
        district: DistrictCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        year: Option<u16>,
    },
    Claim {
        voucher: VoucherId,
        id_number: String,
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
        operator: OperatorId,
    },
    Evaluate {
        voucher: VoucherId,
        id_number: String,
        score: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    Settle {
        voucher: VoucherId,
        amount_fen: u64,
    },
    Release {
        voucher: VoucherId,
        institution: InstitutionCode,
        operator: OperatorId,
    },
    Expire {
        year: u16,
    },
    GetVoucher {
        voucher: VoucherId,
    },
    Stats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        district: Option<DistrictCode>,
        /// Addition to API.md: the campaign year (default: the current campaign).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        year: Option<u16>,
    },
    AuditHead,
    /// Addition to API.md: audit records from sequence number `from` on, at
    /// most `limit` (default and ceiling `AUDIT_PAGE_RECORDS_MAX`); auditor or bureau.
    AuditRead {
        from: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// A person's vouchers (all campaign years, or one), for the e-card page.
    ListVouchers {
        id_number: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        year: Option<u16>,
    },
    /// 开班: an institution's operator opens a class for one kind of voucher.
    OpenClass {
        institution: InstitutionCode,
        operator: OperatorId,
        class: ClassCode,
        kind: Kind,
        /// YYYY-MM-DD, checked when validated (`last_day` not before `first_day`).
        first_day: String,
        last_day: String,
        mode: ClassMode,
        /// Onsite only; default the institution's sites.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sites: Option<Vec<SiteSpec>>,
    },
    /// API.md's `checkin` of an online class, sent by the platform: JSON
    /// `{"op": "checkin", "voucher", "online": true}` (no position).
    #[serde(rename(serialize = "checkin", deserialize = "checkin_online"))]
    CheckinOnline {
        voucher: VoucherId,
        online: bool,
    },
    /// The training system's data return (数据回流): the events after the
    /// cursor `after` (an audit sequence number), at most `limit`, of one
    /// institution or district or all; `wait_ms` waits for new ones.
    Events {
        #[serde(default)]
        after: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        institution: Option<InstitutionCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        district: Option<DistrictCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u32>,
    },
}

impl Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Op::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Op {
    /// API.md's form: a `checkin` carrying `online` is an online check-in
    /// (`CheckinOnline`); one carrying both `online` and a position is refused.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Op, D::Error> {
        use serde::de::Error;
        let mut value = serde_json::Value::deserialize(deserializer)?;
        if let Some(object) = value.as_object_mut() {
            let online = object.contains_key("online");
            if object.get("op").and_then(|op| op.as_str()) == Some("checkin") && online {
                if object.contains_key("lat") || object.contains_key("lon") {
                    return Err(D::Error::custom(
                        "a checkin carries a position (lat, lon) or online, not both",
                    ));
                }
                object.insert("op".into(), "checkin_online".into());
            }
        }
        Op::deserialize(value).map_err(D::Error::custom)
    }
}

impl Op {
    /// Whether the operation is decided from a few records in memory and at
    /// most one point read: quick enough to apply on an async worker.
    /// `expire` walks a whole campaign, `stats` every figure, `audit_read`
    /// a range of the audit table, and `get_voucher` waits for durability
    /// before it reads the voucher's texts.
    pub fn is_point(&self) -> bool {
        !matches!(
            self,
            Op::Expire { .. }
                | Op::Stats { .. }
                | Op::AuditRead { .. }
                | Op::GetVoucher { .. }
                | Op::Events { .. }
        )
    }

    /// The operation's name (`"redeem"`, …; `"checkin_online"` for the
    /// online form of API.md's `checkin`).
    pub fn name(&self) -> &'static str {
        OpName::from(self).into()
    }

    /// Reads whose cost grows with the ledger: `stats` walks every figure
    /// under the audit tail's lock, `audit_read` reads up to
    /// `AUDIT_PAGE_BYTES_MAX` of records. The daemon caps how many of them a
    /// connection and a certificate have in flight (`HEAVY_READS_*`).
    pub fn is_heavy_read(&self) -> bool {
        matches!(self, Op::Stats { .. } | Op::AuditRead { .. })
    }

    /// Reads change nothing, are not audited and are not remembered by request id.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Op::GetVoucher { .. }
                | Op::Stats { .. }
                | Op::AuditHead
                | Op::AuditRead { .. }
                | Op::ListVouchers { .. }
                | Op::Events { .. }
        )
    }

    /// API.md's role table (`OpName::allows`).
    pub fn allows(&self, role: Role) -> bool {
        OpName::from(self).allows(role)
    }
}

impl OpName {
    /// API.md's role table, kept once for requests and for replayed
    /// records. Finer checks (a district settles only its own district's
    /// vouchers, sees only its own stats) happen in the ledger.
    pub fn allows(self, role: Role) -> bool {
        match self {
            OpName::RegisterInstitution | OpName::SetInstitutionAdmin | OpName::Issue => {
                role == Role::Bureau
            }
            OpName::Expire => role == Role::Bureau,
            OpName::AuthoriseOperator
            | OpName::RevokeOperator
            | OpName::Claim
            | OpName::Redeem
            | OpName::Checkin
            | OpName::Complete
            | OpName::Evaluate
            | OpName::Release
            | OpName::ListVouchers
            | OpName::OpenClass => role == Role::Gateway,
            OpName::CheckinOnline => role == Role::Platform,
            OpName::Settle => matches!(role, Role::District(_)),
            OpName::Stats => matches!(role, Role::Bureau | Role::District(_) | Role::Auditor),
            OpName::GetVoucher => !matches!(role, Role::Platform | Role::Training),
            OpName::AuditHead => true,
            OpName::AuditRead => matches!(role, Role::Bureau | Role::Auditor),
            OpName::Events => matches!(
                role,
                Role::Training | Role::Auditor | Role::Bureau | Role::District(_)
            ),
        }
    }
}

/// Who sends a request: the role its client certificate names and that
/// certificate's SHA-256 fingerprint (of its DER). Request ids belong to a
/// caller, so two gateways with their own certificates never collide; the
/// audit chain names the caller of each change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Caller {
    pub role: Role,
    pub certificate: [u8; 32],
}

impl Caller {
    /// The certificate of callers made from a bare role (`Caller::test`):
    /// tests and in-process tools that have no certificate.
    pub const TEST_CERTIFICATE: [u8; 32] = [0x7e; 32];
    /// The certificate of the caller of a version 1 audit record, which
    /// named the role only: unknown.
    pub const UNKNOWN_CERTIFICATE: [u8; 32] = [0; 32];
    /// The certificate of records the daemon writes by itself (campaign
    /// records, with the bureau's role: the campaign is its configuration).
    pub const DAEMON_CERTIFICATE: [u8; 32] = [0xff; 32];

    pub fn new(role: Role, certificate: [u8; 32]) -> Caller {
        Caller { role, certificate }
    }

    /// A caller with the fixed test certificate (tests, in-process tools).
    pub fn test(role: Role) -> Caller {
        Caller::new(role, Caller::TEST_CERTIFICATE)
    }
}

/// A bare role is a caller with the fixed test certificate (`Caller::test`),
/// so tests that only have a role can call the ledger. The server always
/// passes the real certificate.
impl From<Role> for Caller {
    fn from(role: Role) -> Caller {
        Caller::test(role)
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role, hex::encode(self.certificate))
    }
}

/// A request: the caller's request id and one operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct Request {
    pub id: String,
    #[serde(flatten)]
    pub op: Op,
}

/// What an accepted operation answers, besides `ok`.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[serde(untagged)]
pub enum Reply {
    Issued {
        voucher: VoucherId,
    },
    Redeemed {
        uses_this_year: u8,
    },
    CheckedIn {
        session: String,
        checkins: u32,
    },
    Expired {
        expired: u64,
    },
    Voucher(Box<VoucherView>),
    Stats(Box<StatsView>),
    AuditHead {
        seq: u64,
        hash: String,
        state_digest: String,
    },
    AuditRecords(Box<AuditPage>),
    Done {},
    /// `list_vouchers`' answer. (After `Done` for bincode's positions; JSON
    /// answers are written by `Answer::to_json`, never parsed back as a `Reply`.)
    Vouchers {
        vouchers: Vec<VoucherSummary>,
    },
    /// `events`' answer: the events in sequence order and the cursor to ask
    /// from next (the last event's `seq`, or `after` itself when none).
    Events {
        events: Vec<Event>,
        next: u64,
    },
}

/// One event of the data return (数据回流): one accepted change of a voucher,
/// as the training system reads it back. Never an ID number or a keyed hash
/// of one. A field the step has not is absent. A campaign's `expire` by the
/// bureau is one event with no voucher (`year`, `expired`): it concerns every
/// institution and district, and every filter shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct Event {
    /// The audit sequence number of the change (several events share it
    /// when one record expires a batch of vouchers).
    pub seq: u64,
    /// The change's time, RFC 3339 with +08:00.
    pub at: String,
    /// The operation's name (`issue`, `claim`, `redeem`, `checkin`,
    /// `complete`, `evaluate`, `settle`, `release`, `expire`).
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher: Option<VoucherId>,
    /// Where the voucher is enrolled at the change (absent when it is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution: Option<InstitutionCode>,
    /// The class of that enrollment (the redeem's class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The institution's district when enrolled, else the voucher's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<DistrictCode>,
    /// The step's own fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_value_fen: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorId>,
    /// A check-in's session (its day) and the enrollment's check-ins so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `true` for an online check-in (reported by a platform, no position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkins: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_fen: Option<u64>,
    /// The bureau's `expire` of a whole campaign: how many it expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<u64>,
}

impl Event {
    /// An event of `op` at `seq` and `at` with every other field absent.
    pub fn new(seq: u64, at: String, op: &str) -> Event {
        Event {
            seq,
            at,
            op: op.to_owned(),
            voucher: None,
            institution: None,
            class: None,
            kind: None,
            district: None,
            year: None,
            face_value_fen: None,
            channel: None,
            operator: None,
            session: None,
            online: None,
            checkins: None,
            score: None,
            comment: None,
            amount_fen: None,
            expired: None,
        }
    }
}

/// One voucher of `list_vouchers`' answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct VoucherSummary {
    pub voucher: VoucherId,
    pub kind: Kind,
    pub state: VoucherState,
    pub face_value_fen: u64,
    pub year: u16,
}

/// `audit_read`'s answer: stored entries (record bytes + blake3 hash, the
/// form of the binary export) from `from` on, the chain's head when read, and
/// the campaigns (TOML texts) a replay needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct AuditPage {
    pub head_seq: u64,
    pub campaigns: Vec<String>,
    #[serde(with = "hex_entries")]
    pub entries: Vec<Vec<u8>>,
}

/// JSON carries audit entries as hex strings.
mod hex_entries {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(entries: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(entries.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| hex::decode(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// `get_voucher`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct VoucherView {
    pub voucher: VoucherId,
    pub state: VoucherState,
    pub kind: Kind,
    pub category: Category,
    pub channel: Channel,
    pub face_value_fen: u64,
    pub year: u16,
    /// Where the voucher was redeemed (absent before redemption).
    pub institution: Option<InstitutionCode>,
    /// The district where the person's social security is registered.
    pub district: DistrictCode,
    pub checkins: u32,
    pub score: Option<u8>,
    pub settled_fen: Option<u64>,
    /// The class it is enrolled in (absent when not redeemed).
    pub class: Option<String>,
    /// When each step was done (RFC 3339, +08:00); a step not done, or done
    /// before this version stored step times, has no field.
    #[serde(flatten)]
    pub steps: StepTimes,
}

/// The time of each step of a voucher, for `get_voucher`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct StepTimes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
}

/// `stats`' answer: per district, the city, the coverage figures, and (an
/// addition to API.md) per institution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct StatsView {
    pub year: u16,
    pub districts: Vec<DistrictStats>,
    pub city: CityStats,
    pub coverage: Coverage,
    /// Registered institutions (of the district asked, if any), by code.
    #[serde(default)]
    pub institutions: Vec<InstitutionStats>,
    /// When the figures were read (RFC 3339, +08:00) and the audit sequence
    /// number of the last change they include.
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub seq: u64,
}

/// One institution's figures for the year asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct InstitutionStats {
    pub code: InstitutionCode,
    pub name: String,
    pub district: DistrictCode,
    /// Vouchers now used (redeemed, completed or settled) at this institution.
    pub used: u64,
    /// Evaluations received, and their mean score rounded to 2 decimals
    /// (`None` without evaluations).
    pub evaluations: u64,
    pub average_score: Option<f64>,
    /// Subsidies settled for vouchers used at this institution (sum of audited amounts).
    pub settled_fen: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct DistrictStats {
    pub code: DistrictCode,
    pub name: String,
    pub target: u64,
    pub issued: u64,
    pub claimed: u64,
    pub used: u64,
    pub percent_of_target: f64,
    /// Subsidies settled for vouchers used in this district (by the
    /// institution's district, like `used`).
    pub settled_fen: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct CityStats {
    pub target: u64,
    pub issued: u64,
    pub claimed: u64,
    pub used: u64,
    pub percent_of_target: f64,
    pub issued_goal: u64,
    pub used_goal: u64,
    pub settled_fen: u64,
}

/// Coverage of the districts shown: the city's, or one district's when the
/// caller is a district agency (or names a district).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct Coverage {
    pub districts_used: u64,
    pub districts_total: u64,
    pub institutions_used: u64,
    pub institutions_registered: u64,
    pub used_with_checkin: u64,
    pub used: u64,
}

/// The answer to one request, in the order requests came.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Answer {
    pub id: String,
    pub outcome: Result<Reply, Refusal>,
}

impl Answer {
    /// Reads an answer object of API.md's JSON form back, for the request
    /// `op` it answers (the operation says which result fields to expect).
    pub fn from_json(op: &Op, value: serde_json::Value) -> Result<Answer, String> {
        fn field<T: serde::de::DeserializeOwned>(
            value: &serde_json::Value,
            name: &str,
        ) -> Result<T, String> {
            let found = value.get(name).cloned().unwrap_or(serde_json::Value::Null);
            serde_json::from_value(found).map_err(|e| format!("answer field {name}: {e}"))
        }
        fn whole<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
            serde_json::from_value(value).map_err(|e| format!("answer: {e}"))
        }
        let id: String = field(&value, "id")?;
        if !field::<bool>(&value, "ok")? {
            let refusal = Refusal::new(
                field(&value, "reason")?,
                field::<String>(&value, "message")?,
            );
            return Ok(Answer {
                id,
                outcome: Err(refusal),
            });
        }
        let reply = match op {
            Op::Issue { .. } => Reply::Issued {
                voucher: field(&value, "voucher")?,
            },
            Op::Redeem { .. } => Reply::Redeemed {
                uses_this_year: field(&value, "uses_this_year")?,
            },
            Op::Checkin { .. } | Op::CheckinOnline { .. } => Reply::CheckedIn {
                session: field(&value, "session")?,
                checkins: field(&value, "checkins")?,
            },
            Op::Expire { .. } => Reply::Expired {
                expired: field(&value, "expired")?,
            },
            Op::GetVoucher { .. } => Reply::Voucher(Box::new(whole(value)?)),
            Op::Stats { .. } => Reply::Stats(Box::new(whole(value)?)),
            Op::AuditHead => Reply::AuditHead {
                seq: field(&value, "seq")?,
                hash: field(&value, "hash")?,
                state_digest: field(&value, "state_digest")?,
            },
            Op::AuditRead { .. } => Reply::AuditRecords(Box::new(whole(value)?)),
            Op::ListVouchers { .. } => Reply::Vouchers {
                vouchers: field(&value, "vouchers")?,
            },
            Op::Events { .. } => Reply::Events {
                events: field(&value, "events")?,
                next: field(&value, "next")?,
            },
            Op::RegisterInstitution { .. }
            | Op::SetInstitutionAdmin { .. }
            | Op::AuthoriseOperator { .. }
            | Op::RevokeOperator { .. }
            | Op::Claim { .. }
            | Op::Complete { .. }
            | Op::Evaluate { .. }
            | Op::Settle { .. }
            | Op::Release { .. }
            | Op::OpenClass { .. } => Reply::Done {},
        };
        Ok(Answer {
            id,
            outcome: Ok(reply),
        })
    }

    pub fn refused(id: &str, reason: Reason, message: impl Into<String>) -> Answer {
        Answer {
            id: id.to_owned(),
            outcome: Err(Refusal::new(reason, message)),
        }
    }

    /// API.md's JSON form: `{"id", "ok": true, ...}` or `{"id", "ok": false, "reason", "message"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("id".into(), self.id.clone().into());
        match &self.outcome {
            Ok(reply) => {
                object.insert("ok".into(), true.into());
                match serde_json::to_value(reply).expect("replies serialise") {
                    serde_json::Value::Object(fields) => object.extend(fields),
                    other => unreachable!("replies are objects, got {other}"),
                }
            }
            Err(refusal) => {
                object.insert("ok".into(), false.into());
                object.insert("reason".into(), refusal.reason.as_str().into());
                object.insert("message".into(), refusal.message.clone().into());
            }
        }
        serde_json::Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_is_lat_lon_and_an_optional_radius() {
        let site = |lat, lon, radius_m| SiteSpec { lat, lon, radius_m };
        assert_eq!(
            SiteSpec::parse("29.5576,106.5775"),
            Ok(site(29.5576, 106.5775, None))
        );
        assert_eq!(
            SiteSpec::parse(" 29.5 , 106.5 ,300"),
            Ok(site(29.5, 106.5, Some(300)))
        );
        assert!(SiteSpec::parse("29.5").is_err());
        assert!(SiteSpec::parse("29.5,106.5,300,1").is_err());
        assert!(SiteSpec::parse("north,106.5").is_err());
        assert!(
            SiteSpec::parse("29.5,106.5,-3").is_err(),
            "a radius is whole metres"
        );
    }

    #[test]
    fn whole_campaign_range_and_waiting_operations_leave_the_async_workers() {
        let op = |json: &str| serde_json::from_str::<Request>(json).unwrap().op;
        for point in [
            r#"{"id":"a","op":"redeem","voucher":"V0000000007","institution":"5000001","operator":"op-1","class":"c"}"#,
            r#"{"id":"c","op":"audit_head"}"#,
            r#"{"id":"g","op":"list_vouchers","id_number":"11010519491231002X"}"#,
        ] {
            assert!(op(point).is_point(), "{point}");
        }
        for heavy in [
            r#"{"id":"d","op":"expire","year":2021}"#,
            r#"{"id":"e","op":"stats"}"#,
            r#"{"id":"f","op":"audit_read","from":1}"#,
            r#"{"id":"b","op":"get_voucher","voucher":"V0000000007"}"#,
            r#"{"id":"h","op":"events","institution":"5000001","wait_ms":1000}"#,
        ] {
            assert!(!op(heavy).is_point(), "{heavy}");
        }
    }

    #[test]
    fn requests_parse_from_api_json() {
        let line = r#"{"id":"r1","op":"redeem","voucher":"V0000000007","institution":"5000001","operator":"op-1","class":"电工 2026-12"}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        assert_eq!(request.id, "r1");
        assert_eq!(request.op.name(), "redeem");
        let back = serde_json::to_value(&request).unwrap();
        assert_eq!(back["op"], "redeem");
        assert_eq!(back["voucher"], "V0000000007");
        let head: Request = serde_json::from_str(r#"{"id":"h","op":"audit_head"}"#).unwrap();
        assert_eq!(head.op, Op::AuditHead);
    }

    #[test]
    fn malformed_fields_do_not_parse() {
        for line in [
            r#"{"id":"x","op":"redeem","voucher":"7","institution":"5000001","operator":"o","class":"c"}"#,
            r#"{"id":"x","op":"issue","id_number":"1","category":"alien","kind":"hr_services","face_value_fen":1,"channel":"wechat","district":"500101"}"#,
            r#"{"id":"x","op":"teleport"}"#,
            r#"{"id":"x","op":"evaluate","voucher":"V1","id_number":"1","score":300}"#,
        ] {
            assert!(serde_json::from_str::<Request>(line).is_err(), "{line}");
        }
    }

    #[test]
    fn answers_print_in_api_form() {
        let ok = Answer {
            id: "a".into(),
            outcome: Ok(Reply::Issued {
                voucher: VoucherId(3),
            }),
        };
        assert_eq!(
            ok.to_json(),
            serde_json::json!({"id": "a", "ok": true, "voucher": "V0000000003"})
        );
        let done = Answer {
            id: "b".into(),
            outcome: Ok(Reply::Done {}),
        };
        assert_eq!(done.to_json(), serde_json::json!({"id": "b", "ok": true}));
        let refused = Answer::refused(
            "c",
            Reason::AlreadyRedeemed,
            "voucher V0000000003 is redeemed",
        );
        assert_eq!(refused.to_json()["reason"], "already_redeemed");
        assert_eq!(refused.to_json()["ok"], false);
    }

    /// One operation of each name, with arbitrary fields. The match is
    /// exhaustive, so a new operation must add its sample here.
    fn sample(name: OpName) -> Op {
        let voucher = VoucherId(7);
        let institution: InstitutionCode = "5000001".parse().unwrap();
        let district: DistrictCode = "500101".parse().unwrap();
        let operator: OperatorId = "op-1".parse().unwrap();
        let id_number = String::from("500101199001011234");
        match name {
            OpName::RegisterInstitution => Op::RegisterInstitution {
                code: institution,
                name: "培训中心".into(),
                district,
                address: "解放碑".into(),
                phone: "023-1234567".into(),
                kind: InstitutionType::Other,
                admin_name: "张伟".into(),
                admin_id_number: id_number,
                sites: vec![],
            },
            OpName::SetInstitutionAdmin => Op::SetInstitutionAdmin {
                institution,
                admin_name: "李娜".into(),
                admin_id_number: id_number,
            },
            OpName::AuthoriseOperator => Op::AuthoriseOperator {
                institution,
                admin_id_number: id_number,
                operator,
            },
            OpName::RevokeOperator => Op::RevokeOperator {
                institution,
                admin_id_number: id_number,
                operator,
            },
            OpName::Issue => Op::Issue {
                id_number,
                category: Category::Unemployed,
                kind: Kind::HrServices,
                face_value_fen: 100,
                channel: Channel::Wechat,
                district,
                year: None,
            },
            OpName::Claim => Op::Claim { voucher, id_number },
            OpName::Redeem => Op::Redeem {
                voucher,
                institution,
                operator,
                class: "电工".into(),
            },
            OpName::Checkin => Op::Checkin {
                voucher,
                lat: 29.5,
                lon: 106.5,
            },
            OpName::Complete => Op::Complete {
                voucher,
                institution,
                operator,
            },
            OpName::Evaluate => Op::Evaluate {
                voucher,
                id_number,
                score: 5,
                comment: None,
            },
            OpName::Settle => Op::Settle {
                voucher,
                amount_fen: 100,
            },
            OpName::Release => Op::Release {
                voucher,
                institution,
                operator,
            },
            OpName::Expire => Op::Expire { year: 2021 },
            OpName::GetVoucher => Op::GetVoucher { voucher },
            OpName::Stats => Op::Stats {
                district: None,
                year: None,
            },
            OpName::AuditHead => Op::AuditHead,
            OpName::AuditRead => Op::AuditRead {
                from: 1,
                limit: None,
            },
            OpName::ListVouchers => Op::ListVouchers {
                id_number,
                year: Some(2021),
            },
            OpName::OpenClass => Op::OpenClass {
                institution,
                operator,
                class: "电工初级 2026 冬".parse().unwrap(),
                kind: Kind::EmploymentSkills,
                first_day: "2026-12-01".into(),
                last_day: "2026-12-31".into(),
                mode: ClassMode::Onsite,
                sites: Some(vec![SiteSpec {
                    lat: 29.5,
                    lon: 106.5,
                    radius_m: None,
                }]),
            },
            OpName::CheckinOnline => Op::CheckinOnline {
                voucher,
                online: true,
            },
            OpName::Events => Op::Events {
                after: 12,
                limit: Some(100),
                institution: Some(institution),
                district: None,
                wait_ms: Some(1_000),
            },
        }
    }

    #[test]
    fn operation_names_are_serde_names() {
        for &name in OpName::VARIANTS {
            let op = sample(name);
            assert_eq!(OpName::from(&op), name);
            let json = serde_json::to_value(&op).unwrap();
            let api_name = match name {
                OpName::CheckinOnline => "checkin",
                _ => op.name(),
            };
            assert_eq!(json["op"], api_name, "{name:?}");
            assert_eq!(serde_json::from_value::<Op>(json).unwrap(), op);
        }
    }

    /// Checks API.md's two forms of `checkin`: with a position it is
    /// `Checkin`, with `"online": true` it is `CheckinOnline` and prints
    /// back as `checkin` with `online`; both at once is not a request.
    #[test]
    fn a_checkin_is_positioned_or_online() {
        let parse = |json: &str| serde_json::from_str::<Request>(json).map(|r| r.op);
        assert_eq!(
            parse(r#"{"id":"a","op":"checkin","voucher":"V1","lat":29.5,"lon":106.5}"#).unwrap(),
            Op::Checkin {
                voucher: VoucherId(1),
                lat: 29.5,
                lon: 106.5
            }
        );
        let online = parse(r#"{"id":"b","op":"checkin","voucher":"V1","online":true}"#).unwrap();
        assert_eq!(
            online,
            Op::CheckinOnline {
                voucher: VoucherId(1),
                online: true
            }
        );
        assert_eq!(
            serde_json::to_value(&online).unwrap(),
            serde_json::json!({"op": "checkin", "voucher": "V0000000001", "online": true})
        );
        assert!(parse(
            r#"{"id":"c","op":"checkin","voucher":"V1","online":true,"lat":29.5,"lon":106.5}"#
        )
        .is_err());
        assert!(parse(r#"{"id":"d","op":"checkin","voucher":"V1"}"#).is_err());
    }

    #[test]
    fn role_names_print_and_parse() {
        let district: DistrictCode = "500101".parse().unwrap();
        for &name in RoleName::VARIANTS {
            let role = match name {
                RoleName::Gateway => Role::Gateway,
                RoleName::Bureau => Role::Bureau,
                RoleName::District => Role::District(district),
                RoleName::Auditor => Role::Auditor,
                RoleName::Platform => Role::Platform,
                RoleName::Training => Role::Training,
            };
            assert_eq!(RoleName::from(role), name);
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::Value::from(role.to_string())
            );
        }
        assert_eq!(Role::District(district).to_string(), "district:500101");
        assert_eq!(
            "admin".parse::<Role>(),
            Err(String::from(
                "unknown role \"admin\" (gateway, bureau, district:<code>, auditor, platform, training)"
            ))
        );
    }

    #[test]
    fn roles_parse_and_print() {
        for text in [
            "gateway",
            "bureau",
            "auditor",
            "district:500101",
            "district:LJXQ",
        ] {
            assert_eq!(text.parse::<Role>().unwrap().to_string(), text);
        }
        assert!("admin".parse::<Role>().is_err());
        assert!("district:".parse::<Role>().is_err());
        assert!("district".parse::<Role>().is_err());
        assert!("gateway:500101".parse::<Role>().is_err());
        assert!("Gateway".parse::<Role>().is_err());
    }
}

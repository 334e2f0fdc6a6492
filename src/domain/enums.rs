//! The enumerations of API.md: voucher kinds, person categories, issuing
//! channels, institution types and voucher states, with their wire names and
//! (where the forms use them) their Chinese names.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// The subsidised programmes a voucher pays for (notice, section 二（一）).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    EmploymentSkills,
    Entrepreneurship,
    HrServices,
    DomesticServices,
    PreCompetition,
    Apprenticeship,
    EmployeePreJob,
    EmployeeSafety,
    EmployeeGeneral,
    Adaptability,
    WorkForTraining,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::EmploymentSkills,
        Kind::Entrepreneurship,
        Kind::HrServices,
        Kind::DomesticServices,
        Kind::PreCompetition,
        Kind::Apprenticeship,
        Kind::EmployeePreJob,
        Kind::EmployeeSafety,
        Kind::EmployeeGeneral,
        Kind::Adaptability,
        Kind::WorkForTraining,
    ];

    /// This kind's bit in a person's claimed-kinds mask.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Who the person is (培训对象类别).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    EnterpriseEmployee,
    CollegeGraduate,
    RuralMigrant,
    Unemployed,
    PovertyAlleviated,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::EnterpriseEmployee,
        Category::CollegeGraduate,
        Category::RuralMigrant,
        Category::Unemployed,
        Category::PovertyAlleviated,
    ];
}

/// Where the voucher was issued (发券渠道).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    CqHrssApp,
    Wechat,
    Yukuaiban,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::CqHrssApp, Channel::Wechat, Channel::Yukuaiban];
}

/// Institution types of attachment 2 (机构类型).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionType {
    HigherVocational,
    SecondaryVocational,
    TechnicianCollege,
    IndustryBody,
    EnterpriseCentre,
    PrivateSchool,
    Other,
}

impl InstitutionType {
    pub const ALL: [InstitutionType; 7] = [
        InstitutionType::HigherVocational,
        InstitutionType::SecondaryVocational,
        InstitutionType::TechnicianCollege,
        InstitutionType::IndustryBody,
        InstitutionType::EnterpriseCentre,
        InstitutionType::PrivateSchool,
        InstitutionType::Other,
    ];

    /// The type's name on the attachment 2 form (机构类型).
    pub fn chinese_name(self) -> &'static str {
        match self {
            InstitutionType::HigherVocational => "高职院校",
            InstitutionType::SecondaryVocational => "中职院校",
            InstitutionType::TechnicianCollege => "技工院校",
            InstitutionType::IndustryBody => "行业培训机构",
            InstitutionType::EnterpriseCentre => "企业培训中心",
            InstitutionType::PrivateSchool => "民办职业培训学校",
            InstitutionType::Other => "其他类培训机构",
        }
    }

    /// The type a form names: its Chinese name, a common short form
    /// (中职学校, 其他), or its wire name (`technician_college`).
    pub fn from_chinese_name(text: &str) -> Option<InstitutionType> {
        let text = text.trim();
        let short = match text {
            "中职学校" => Some(InstitutionType::SecondaryVocational),
            "其他" | "其它" | "其他类" => Some(InstitutionType::Other),
            _ => None,
        };
        short.or_else(|| {
            InstitutionType::ALL
                .into_iter()
                .find(|kind| kind.chinese_name() == text || wire_name(kind) == text)
        })
    }
}

/// Where a voucher is in its life cycle.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum VoucherState {
    Issued,
    Claimed,
    Redeemed,
    Completed,
    Settled,
    Expired,
}

impl VoucherState {
    /// States that count as a use (用券): redeemed, completed or settled.
    pub fn is_used(self) -> bool {
        matches!(
            self,
            VoucherState::Redeemed | VoucherState::Completed | VoucherState::Settled
        )
    }
}

/// The wire (snake_case) name of any of these enums, for messages and reports.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => unreachable!("enumerations serialise as strings"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn institution_types_read_from_the_form() {
        for kind in InstitutionType::ALL {
            assert_eq!(
                InstitutionType::from_chinese_name(kind.chinese_name()),
                Some(kind)
            );
            assert_eq!(
                InstitutionType::from_chinese_name(&wire_name(&kind)),
                Some(kind)
            );
        }
        assert_eq!(
            InstitutionType::from_chinese_name(" 中职学校 "),
            Some(InstitutionType::SecondaryVocational)
        );
        assert_eq!(
            InstitutionType::from_chinese_name("其他"),
            Some(InstitutionType::Other)
        );
        assert_eq!(InstitutionType::from_chinese_name("大学"), None);
        assert_eq!(InstitutionType::from_chinese_name(""), None);
    }
}

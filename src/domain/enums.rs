//! The enumerations of API.md: voucher kinds, person categories, issuing
//! channels, institution types and voucher states, with their wire names and
//! (where the forms use them) their Chinese names.
//!
//! Each list is written once, as the variants: strum derives the wire names
//! (`IntoStaticStr`, held equal to serde's names by a test per enum) and the
//! `ALL` lists (`VariantArray`). The explicit discriminants are the stored
//! bytes, held equal to bincode's encoding by a test per enum.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use strum::{IntoStaticStr, VariantArray};

/// The subsidised programmes a voucher pays for (notice, section 二（一）).
/// The discriminant is also the kind's bit in the stored claimed-kinds mask.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Encode,
    Decode,
    Serialize,
    Deserialize,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    EmploymentSkills = 0,
    Entrepreneurship = 1,
    HrServices = 2,
    DomesticServices = 3,
    PreCompetition = 4,
    Apprenticeship = 5,
    EmployeePreJob = 6,
    EmployeeSafety = 7,
    EmployeeGeneral = 8,
    Adaptability = 9,
    WorkForTraining = 10,
}

impl Kind {
    /// Every variant, in declaration order.
    pub const ALL: &'static [Kind] = <Kind as VariantArray>::VARIANTS;

    /// This kind's bit in a person's claimed-kinds mask.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Who the person is (培训对象类别).
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Encode,
    Decode,
    Serialize,
    Deserialize,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Category {
    EnterpriseEmployee = 0,
    CollegeGraduate = 1,
    RuralMigrant = 2,
    Unemployed = 3,
    PovertyAlleviated = 4,
}

impl Category {
    /// Every variant, in declaration order.
    pub const ALL: &'static [Category] = <Category as VariantArray>::VARIANTS;
}

/// Where the voucher was issued (发券渠道).
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Encode,
    Decode,
    Serialize,
    Deserialize,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Channel {
    CqHrssApp = 0,
    Wechat = 1,
    Yukuaiban = 2,
}

impl Channel {
    /// Every variant, in declaration order.
    pub const ALL: &'static [Channel] = <Channel as VariantArray>::VARIANTS;
}

/// Institution types of attachment 2 (机构类型).
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Encode,
    Decode,
    Serialize,
    Deserialize,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum InstitutionType {
    HigherVocational = 0,
    SecondaryVocational = 1,
    TechnicianCollege = 2,
    IndustryBody = 3,
    EnterpriseCentre = 4,
    PrivateSchool = 5,
    Other = 6,
}

impl InstitutionType {
    /// Every variant, in declaration order.
    pub const ALL: &'static [InstitutionType] = <InstitutionType as VariantArray>::VARIANTS;

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
                .iter()
                .copied()
                .find(|&kind| kind.chinese_name() == text || wire_name(kind) == text)
        })
    }
}

/// Where a voucher is in its life cycle.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Encode,
    Decode,
    Serialize,
    Deserialize,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum VoucherState {
    Issued = 0,
    Claimed = 1,
    Redeemed = 2,
    Completed = 3,
    Settled = 4,
    Expired = 5,
}

impl VoucherState {
    /// Every variant, in declaration order.
    pub const ALL: &'static [VoucherState] = <VoucherState as VariantArray>::VARIANTS;

    /// States that count as a use (用券): redeemed, completed or settled.
    pub fn is_used(self) -> bool {
        matches!(
            self,
            VoucherState::Redeemed | VoucherState::Completed | VoucherState::Settled
        )
    }
}

/// How a class is taught (API.md's class mode): at training sites, where
/// trainees check in with a position, or online, where a platform reports
/// attendance.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Encode,
    Decode,
    Serialize,
    Deserialize,
    IntoStaticStr,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ClassMode {
    Onsite = 0,
    Online = 1,
}

impl ClassMode {
    /// Every variant, in declaration order.
    pub const ALL: &'static [ClassMode] = <ClassMode as VariantArray>::VARIANTS;
}

/// The wire (snake_case) name of any of these enumerations, for messages and
/// reports: strum's name, which the tests hold equal to serde's.
pub fn wire_name<T: Into<&'static str>>(value: T) -> &'static str {
    value.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::assert_encoded_as_discriminants;

    /// strum's name of every variant is the name serde writes and reads.
    fn assert_names_are_serde_names<T>(variants: &[T])
    where
        T: Copy + std::fmt::Debug + PartialEq + Serialize + serde::de::DeserializeOwned,
        &'static str: From<T>,
    {
        for &variant in variants {
            let name = wire_name(variant);
            assert_eq!(
                serde_json::to_value(variant).unwrap(),
                serde_json::Value::from(name),
                "{variant:?}"
            );
            assert_eq!(serde_json::from_value::<T>(name.into()).unwrap(), variant);
        }
    }

    #[test]
    fn kind_names_are_serde_names() {
        assert_names_are_serde_names(Kind::ALL);
    }

    #[test]
    fn category_names_are_serde_names() {
        assert_names_are_serde_names(Category::ALL);
    }

    #[test]
    fn channel_names_are_serde_names() {
        assert_names_are_serde_names(Channel::ALL);
    }

    #[test]
    fn institution_type_names_are_serde_names() {
        assert_names_are_serde_names(InstitutionType::ALL);
    }

    #[test]
    fn voucher_state_names_are_serde_names() {
        assert_names_are_serde_names(VoucherState::ALL);
    }

    #[test]
    fn class_mode_names_are_serde_names() {
        assert_names_are_serde_names(ClassMode::ALL);
    }

    #[test]
    fn class_modes_are_stored_as_their_discriminants() {
        assert_encoded_as_discriminants(ClassMode::ALL, |mode| mode as u32);
    }

    #[test]
    fn kinds_are_stored_as_their_discriminants() {
        assert_encoded_as_discriminants(Kind::ALL, |kind| kind as u32);
        for &kind in Kind::ALL {
            assert_eq!(kind.bit(), 1 << (kind as u32), "{kind:?}");
        }
    }

    #[test]
    fn categories_are_stored_as_their_discriminants() {
        assert_encoded_as_discriminants(Category::ALL, |category| category as u32);
    }

    #[test]
    fn channels_are_stored_as_their_discriminants() {
        assert_encoded_as_discriminants(Channel::ALL, |channel| channel as u32);
    }

    #[test]
    fn institution_types_are_stored_as_their_discriminants() {
        assert_encoded_as_discriminants(InstitutionType::ALL, |kind| kind as u32);
    }

    #[test]
    fn voucher_states_are_stored_as_their_discriminants() {
        assert_encoded_as_discriminants(VoucherState::ALL, |state| state as u32);
    }

    #[test]
    fn institution_types_read_from_the_form() {
        for &kind in InstitutionType::ALL {
            assert_eq!(
                InstitutionType::from_chinese_name(kind.chinese_name()),
                Some(kind)
            );
            assert_eq!(
                InstitutionType::from_chinese_name(wire_name(kind)),
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

//! Identifier types: vouchers, institutions, districts, operators, classes,
//! persons.
//!
//! Each id parses from and prints to the text form of API.md, so malformed ids
//! are refused at the edge. Resident ID numbers are checked (GB 11643) and only
//! ever kept as a keyed blake3 hash (`PersonKey`).

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use chrono::Datelike;

use super::time::Timestamp;
use crate::limits::{CLASS_CODE_CHARS_MAX, OPERATOR_BYTES_MAX};

/// A voucher, printed as `V` and ten or more digits (`V0000000042`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VoucherId(pub u64);

impl fmt::Display for VoucherId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{:010}", self.0)
    }
}

impl std::str::FromStr for VoucherId {
    type Err = String;
    fn from_str(text: &str) -> Result<VoucherId, String> {
        let digits = text
            .strip_prefix('V')
            .ok_or_else(|| format!("voucher id {text:?} must start with V"))?;
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("voucher id {text:?} must be V and 1 to 20 digits"));
        }
        digits
            .parse()
            .map(VoucherId)
            .map_err(|_| format!("voucher id {text:?} is out of range"))
    }
}

/// A 7-digit institution code (attachment 2), leading zeros kept.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct InstitutionCode(pub u32);

impl fmt::Display for InstitutionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:07}", self.0)
    }
}

impl std::str::FromStr for InstitutionCode {
    type Err = String;
    fn from_str(text: &str) -> Result<InstitutionCode, String> {
        if text.len() != 7 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "institution code {text:?} must be exactly 7 digits"
            ));
        }
        Ok(InstitutionCode(text.parse().expect("7 digits fit in u32")))
    }
}

impl InstitutionCode {
    /// The largest code: seven nines.
    pub const MAX: u32 = 9_999_999;

    fn checked(code: u32) -> Result<InstitutionCode, String> {
        if code > InstitutionCode::MAX {
            return Err(format!("institution code {code} has more than 7 digits"));
        }
        Ok(InstitutionCode(code))
    }
}

/// A district code: GB/T 2260 digits (`500101`) or a zone's letters (`LJXQ`).
/// Stored inline (at most 8 ASCII letters or digits), so it is `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DistrictCode([u8; 8]);

impl DistrictCode {
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(8);
        std::str::from_utf8(&self.0[..len]).expect("district codes are ASCII")
    }
}

impl fmt::Display for DistrictCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DistrictCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistrictCode({})", self.as_str())
    }
}

impl std::str::FromStr for DistrictCode {
    type Err = String;
    fn from_str(text: &str) -> Result<DistrictCode, String> {
        if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "district code {text:?} must be 1 to 8 ASCII letters or digits"
            ));
        }
        let mut bytes = [0u8; 8];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(DistrictCode(bytes))
    }
}

impl DistrictCode {
    /// The inline form read back (wire, storage): 1 to 8 ASCII letters or
    /// digits, then zeros.
    fn checked(bytes: [u8; 8]) -> Result<DistrictCode, String> {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(8);
        if len == 0
            || !bytes[..len].iter().all(u8::is_ascii_alphanumeric)
            || !bytes[len..].iter().all(|&b| b == 0)
        {
            return Err(format!(
                "district code bytes {bytes:?} are not 1 to 8 ASCII letters or digits"
            ));
        }
        Ok(DistrictCode(bytes))
    }
}

/// An operator (核券人员) an institution's admin authorises to scan vouchers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorId(String);

impl OperatorId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for OperatorId {
    type Err = String;
    fn from_str(text: &str) -> Result<OperatorId, String> {
        if !is_printable_ascii(text, OPERATOR_BYTES_MAX) {
            return Err(format!(
                "operator must be 1 to {OPERATOR_BYTES_MAX} printable ASCII characters"
            ));
        }
        Ok(OperatorId(text.to_owned()))
    }
}

/// A class (培训班次) an institution opened: its code, unique within the
/// institution, 1 to `CLASS_CODE_CHARS_MAX` characters without control
/// characters or surrounding spaces (`电工初级 2026 冬`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClassCode(String);

impl ClassCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClassCode {
    type Err = String;
    fn from_str(text: &str) -> Result<ClassCode, String> {
        let chars = text.chars().count();
        if chars == 0 || chars > CLASS_CODE_CHARS_MAX {
            return Err(format!(
                "class must be 1 to {CLASS_CODE_CHARS_MAX} characters"
            ));
        }
        if text.chars().any(char::is_control) || text.trim() != text {
            return Err("class may not hold control characters or surrounding spaces".into());
        }
        Ok(ClassCode(text.to_owned()))
    }
}

/// True for 1..=max bytes of printable ASCII (space excluded).
pub fn is_printable_ascii(text: &str, bytes_max: usize) -> bool {
    !text.is_empty() && text.len() <= bytes_max && text.bytes().all(|b| b.is_ascii_graphic())
}

macro_rules! string_conversions {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<$name, String> {
                text.parse()
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    )*};
}
string_conversions!(
    VoucherId,
    InstitutionCode,
    DistrictCode,
    OperatorId,
    ClassCode
);

/// Ids decoded from bincode (the wire, stored records, audit exports) are
/// checked like ids parsed from text, so no edge lets a malformed id in.
macro_rules! checked_decode {
    ($($name:ident($inner:ty) => $check:expr),* $(,)?) => {$(
        impl<Context> Decode<Context> for $name {
            fn decode<D: bincode::de::Decoder<Context = Context>>(
                decoder: &mut D,
            ) -> Result<$name, bincode::error::DecodeError> {
                let inner: $inner = Decode::decode(decoder)?;
                let check: fn($inner) -> Result<$name, String> = $check;
                check(inner).map_err(bincode::error::DecodeError::OtherString)
            }
        }
        bincode::impl_borrow_decode!($name);
    )*};
}

checked_decode!(
    VoucherId(u64) => |id| Ok(VoucherId(id)),
    InstitutionCode(u32) => InstitutionCode::checked,
    DistrictCode([u8; 8]) => DistrictCode::checked,
    OperatorId(String) => |text| text.parse(),
    ClassCode(String) => |text| text.parse(),
);

/// Offset of the calendar an ID number's birth date is read in: China
/// Standard Time (API.md: "up to today" is today in UTC+8), seconds.
pub const ID_NUMBER_UTC_OFFSET_S: i32 = 8 * 3600;

/// A resident ID number (居民身份证号码) that passes the checks of DOMAIN.md:
/// GB 11643 check digit, region (first digit 1 to 8) and a real birth date.
/// Held only long enough to hash it; never stored, logged or printed.
pub struct IdNumber([u8; 18]);

impl IdNumber {
    /// The full check of DOMAIN.md as of `now`: 18 characters, 17 digits
    /// then a digit or `X` (a lowercase `x` is accepted), the check digit
    /// (ISO 7064 MOD 11-2), the first digit (region) 1 to 8, and digits 7 to
    /// 14 a real date (YYYYMMDD) from 1900-01-01 up to today in UTC+8,
    /// inclusive. `now` is the injected time, never the OS clock.
    pub fn parse_at(text: &str, now: Timestamp) -> Result<IdNumber, String> {
        IdNumber::checked(text.as_bytes(), latest_birth_day(Some(now)))
    }

    /// The check of `parse_at` without its "up to today" bound, for tools,
    /// benchmarks and fixtures that have no clock. The ledger validates with
    /// `parse_at`.
    pub fn parse(text: &str) -> Result<IdNumber, String> {
        IdNumber::checked(text.as_bytes(), None)
    }

    /// True when `text` holds a resident ID number anywhere (free text must
    /// not: DOMAIN.md, "never stores an ID number in clear"): 18 characters
    /// that pass the full check as of `now` (`None`: without the "up to
    /// today" bound), a lowercase `x` included. Only runs of 17 ASCII digits
    /// followed by a digit or `X`/`x` are checked, so text without long digit
    /// runs costs one pass over its bytes.
    pub fn found_in(text: &str, now: Option<Timestamp>) -> bool {
        let latest = latest_birth_day(now);
        let bytes = text.as_bytes();
        let mut digits_before = 0usize;
        for (position, &byte) in bytes.iter().enumerate() {
            let last = byte.is_ascii_digit() || byte == b'X' || byte == b'x';
            if digits_before >= 17
                && last
                && IdNumber::checked(&bytes[position - 17..=position], latest).is_ok()
            {
                return true;
            }
            digits_before = if byte.is_ascii_digit() {
                digits_before + 1
            } else {
                0
            };
        }
        false
    }

    /// `latest_birth_day`: the last birth date accepted (days since
    /// 1970-01-01), `None` for no upper bound.
    fn checked(bytes: &[u8], latest_birth_day: Option<i32>) -> Result<IdNumber, String> {
        if bytes.len() != 18 {
            return Err("an ID number has 18 characters".into());
        }
        let mut normal = [0u8; 18];
        normal.copy_from_slice(bytes);
        normal[17] = normal[17].to_ascii_uppercase();
        if !normal[..17].iter().all(u8::is_ascii_digit) {
            return Err("an ID number's first 17 characters are digits".into());
        }
        if normal[17] != IdNumber::check_digit(&normal[..17]) {
            return Err("the ID number's check digit does not match".into());
        }
        if !(b'1'..=b'8').contains(&normal[0]) {
            return Err("an ID number's first digit (its region) is 1 to 8".into());
        }
        let birth_day = birth_day(&normal[6..14])
            .ok_or("the ID number's birth date (digits 7 to 14) is not a real date")?;
        if birth_day < BIRTH_DAY_MIN {
            return Err("the ID number's birth date is before 1900-01-01".into());
        }
        if latest_birth_day.is_some_and(|latest| birth_day > latest) {
            return Err("the ID number's birth date is after today".into());
        }
        Ok(IdNumber(normal))
    }

    /// The GB 11643 check character of a body of 17 ASCII digits.
    pub fn check_digit(body: &[u8]) -> u8 {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: &[u8; 11] = b"10X98765432";
        let sum: u32 = body
            .iter()
            .zip(WEIGHTS)
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        CHECK[(sum % 11) as usize]
    }

    /// The `n`-th synthetic ID number under `prefix` (10 digits: region code
    /// and birth year), for load tests and fixtures; distinct for `n` modulo
    /// 10 million. The region code, a birth date `n / 1000` days (modulo
    /// 10,000, about 27 years) after 1 January of the prefix's year, `n`
    /// modulo 1,000 as the 3-digit sequence, the check digit. The birth date
    /// is a real date, so the number passes `parse` (and `parse_at` when the
    /// prefix's year is 27 years or more before today).
    pub fn synthetic(prefix: &str, n: u64) -> String {
        assert!(
            prefix.len() == 10 && prefix.bytes().all(|b| b.is_ascii_digit()),
            "a synthetic ID number's prefix is 10 digits"
        );
        assert!(
            (b'1'..=b'8').contains(&prefix.as_bytes()[0]),
            "a synthetic ID number's region starts with 1 to 8"
        );
        let year: i32 = prefix[6..].parse().expect("4 digits");
        let first = chrono::NaiveDate::from_ymd_opt(year, 1, 1)
            .filter(|first| first.year() >= 1900)
            .expect("a synthetic ID number's birth year is 1900 or later");
        let n = n % 10_000_000;
        let born = first + chrono::Duration::days(i64::try_from(n / 1000).expect("under 10,000"));
        let body = format!("{}{}{:03}", &prefix[..6], born.format("%Y%m%d"), n % 1000);
        assert!(body.len() == 17, "a synthetic birth date has 8 digits");
        let check = IdNumber::check_digit(body.as_bytes());
        format!("{body}{}", check as char)
    }

    /// The keyed hash under which the ledger knows this person.
    pub fn key(&self, secret: &PersonSecret) -> PersonKey {
        PersonKey(*blake3::keyed_hash(&secret.0, &self.0).as_bytes())
    }
}

/// Today in UTC+8 at `now` (days since 1970-01-01), the last birth date an
/// ID number may carry; `None` without a time.
fn latest_birth_day(now: Option<Timestamp>) -> Option<i32> {
    now.map(|now| now.local_day(ID_NUMBER_UTC_OFFSET_S))
}

/// 1900-01-01, the earliest birth date an ID number may carry, in days since 1970-01-01.
const BIRTH_DAY_MIN: i32 = -25_567;

/// The birth date of 8 ASCII digits (YYYYMMDD), in days since 1970-01-01, or
/// `None` when it is no real date (month 13, 30 February, 29 February of a
/// year that is not a leap year).
fn birth_day(digits: &[u8]) -> Option<i32> {
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
    };
    let year = i32::try_from(number(0..4)).expect("4 digits fit i32");
    let date = chrono::NaiveDate::from_ymd_opt(year, number(4..6), number(6..8))?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
    i32::try_from((date - epoch).num_days()).ok()
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdNumber(<redacted>)")
    }
}

/// The per-deployment secret that keys ID-number hashes (a file created on first start).
#[derive(Clone)]
pub struct PersonSecret(pub [u8; 32]);

impl fmt::Debug for PersonSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonSecret(<redacted>)")
    }
}

/// A person (or an institution admin) as the ledger knows them: blake3 keyed hash of the ID number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct PersonKey(pub [u8; 32]);

/// In JSON (audit exports) a person key is its hex form.
impl Serialize for PersonKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonKey({})", hex::encode(&self.0[..6]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: Decode<()>>(value: &impl Encode) -> Result<T, String> {
        crate::codec::decode_plain(&crate::codec::encode_plain(value))
    }

    /// A class code is 1 to 32 characters (not bytes), without control
    /// characters or surrounding spaces, from text and from bincode alike.
    #[test]
    fn class_codes_are_1_to_32_characters() {
        for good in ["A", "电工初级 2026 冬", &"班".repeat(32)] {
            let code: ClassCode = good.parse().expect(good);
            assert_eq!(code.as_str(), good);
            assert_eq!(decode::<ClassCode>(&good.to_owned()), Ok(code));
        }
        for bad in [
            "",
            &"班".repeat(33),
            " 电工",
            "电工 ",
            "电工\n初级",
            "电\u{7}工",
        ] {
            assert!(bad.parse::<ClassCode>().is_err(), "{bad:?}");
            assert!(decode::<ClassCode>(&bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<ClassCode>("\"\"").is_err());
    }

    /// Fuzzing finding (wire_requests): bincode decoding took any bytes as a
    /// district code (`","`, or non-ASCII bytes that made printing it panic),
    /// any u32 as an institution code and any string as an operator; and
    /// voucher ids over 19 digits printed but did not parse back.
    #[test]
    fn decoding_checks_ids_like_parsing() {
        let mut comma = [0u8; 8];
        comma[0] = b',';
        assert!(decode::<DistrictCode>(&comma).is_err());
        assert!(decode::<DistrictCode>(&[0xffu8; 8]).is_err());
        assert!(decode::<DistrictCode>(&[0u8; 8]).is_err(), "empty");
        assert!(
            decode::<DistrictCode>(&[b'5', 0, b'1', 0, 0, 0, 0, 0]).is_err(),
            "bytes after the end"
        );
        let good: DistrictCode = "500101".parse().unwrap();
        assert_eq!(decode::<DistrictCode>(&good), Ok(good));
        assert!(decode::<InstitutionCode>(&10_000_000u32).is_err());
        assert_eq!(
            decode::<InstitutionCode>(&9_999_999u32),
            Ok(InstitutionCode(9_999_999))
        );
        assert!(decode::<OperatorId>(&String::new()).is_err());
        assert!(decode::<OperatorId>(&String::from("a b")).is_err());
        assert_eq!(
            decode::<OperatorId>(&String::from("op-1")),
            Ok("op-1".parse().unwrap())
        );
        let largest = VoucherId(u64::MAX);
        assert_eq!(largest.to_string().parse::<VoucherId>(), Ok(largest));
        assert!("V18446744073709551616".parse::<VoucherId>().is_err());
        assert!("V000000000000000000001".parse::<VoucherId>().is_err());
    }

    #[test]
    fn id_number_check_digit_follows_gb11643() {
        assert!(IdNumber::parse("11010519491231002X").is_ok());
        assert!(IdNumber::parse("11010519491231002x").is_ok());
        assert!(
            IdNumber::parse("110105194912310021").is_err(),
            "wrong check digit"
        );
        assert!(
            IdNumber::parse("11010519491231002").is_err(),
            "17 characters"
        );
        assert!(
            IdNumber::parse("1101051949123100AX").is_err(),
            "letter in body"
        );
    }

    /// `body` (17 digits) and its right check digit.
    fn with_check_digit(body: &str) -> String {
        format!("{body}{}", IdNumber::check_digit(body.as_bytes()) as char)
    }

    /// 2026-12-03T10:00:00+08:00.
    const NOW: Timestamp = Timestamp(1_796_263_200);

    /// Checks the region and birth-date rules of DOMAIN.md on numbers whose
    /// check digit is right: the first digit is 1 to 8 (`000000000000000001`
    /// and `999999999999999993` are refused), digits 7 to 14 are a real date
    /// (month 13, 31 April, 29 February 1900 and 2023 refused; 29 February
    /// 2000 and 2024 accepted), from 1900-01-01 up to today in UTC+8
    /// inclusive, today taken from the given time. Before the fix all of
    /// these passed on the check digit alone.
    #[test]
    fn id_numbers_have_a_region_and_a_real_birth_date_up_to_today() {
        let born = |date: &str| with_check_digit(&format!("500101{date}123"));
        for refused in [
            "000000000000000001".to_owned(),
            "999999999999999993".to_owned(),
            "500101199913450016".to_owned(),
            with_check_digit("90010119900101123"),
            with_check_digit("00010119900101123"),
            born("19991345"),
            born("19990431"),
            born("19990100"),
            born("19000229"),
            born("20230229"),
            born("18991231"),
            born("00000000"),
        ] {
            assert!(IdNumber::parse(&refused).is_err(), "{refused}");
            assert!(IdNumber::parse_at(&refused, NOW).is_err(), "{refused}");
        }
        for accepted in [
            born("19000101"),
            born("20000229"),
            born("20240229"),
            born("19991231"),
            born("20261203"),
            with_check_digit("10010119900101123"),
            with_check_digit("80010119900101123"),
        ] {
            assert!(IdNumber::parse_at(&accepted, NOW).is_ok(), "{accepted}");
        }
        // Today is read in UTC+8: 2026-12-02T16:00:00Z is already 3 December there.
        let tomorrow = born("20261204");
        assert!(IdNumber::parse_at(&tomorrow, NOW).is_err());
        assert!(IdNumber::parse(&tomorrow).is_ok(), "parse has no today");
        let midnight_cst = Timestamp(1_796_227_200);
        assert_eq!(midnight_cst.local_rfc3339(0), "2026-12-02T16:00:00+00:00");
        assert!(IdNumber::parse_at(&born("20261203"), midnight_cst).is_ok());
        assert!(IdNumber::parse_at(&born("20261203"), Timestamp(midnight_cst.0 - 1)).is_err());
    }

    /// Checks that synthetic ID numbers (the fixtures of the tests and the
    /// load generator) pass the full check, birth date included, and stay
    /// distinct for 10 million `n`: before, `n` below 10,000 gave month 00.
    #[test]
    fn synthetic_id_numbers_are_valid_and_distinct() {
        let first = IdNumber::synthetic("5001011980", 12_345);
        assert_eq!(&first[..17], "50010119800113345");
        assert_ne!(first, IdNumber::synthetic("5001011980", 12_346));
        let mut seen = std::collections::HashSet::new();
        for n in (0..10_000_000)
            .step_by(997)
            .chain([9_999_999, 10_000_000 + 5])
        {
            let synthetic = IdNumber::synthetic("5001011990", n);
            assert!(IdNumber::parse_at(&synthetic, NOW).is_ok(), "{synthetic}");
            assert!(seen.insert(synthetic), "n {n}");
        }
        assert_eq!(
            IdNumber::synthetic("5001011990", 5),
            IdNumber::synthetic("5001011990", 10_000_005),
            "n is taken modulo 10 million"
        );
        assert_eq!(
            &IdNumber::synthetic("5001011980", 9_999_999)[6..14],
            "20070518"
        );
    }

    #[test]
    fn person_key_depends_on_the_secret_and_normalises_x() {
        let a = PersonSecret([1; 32]);
        let b = PersonSecret([2; 32]);
        let upper = IdNumber::parse("11010519491231002X").unwrap();
        let lower = IdNumber::parse("11010519491231002x").unwrap();
        assert_eq!(upper.key(&a), lower.key(&a));
        assert_ne!(upper.key(&a), upper.key(&b));
    }

    #[test]
    fn ids_round_trip_through_text() {
        let voucher: VoucherId = "V0000000042".parse().unwrap();
        assert_eq!(voucher, VoucherId(42));
        assert_eq!(voucher.to_string(), "V0000000042");
        assert!("X12".parse::<VoucherId>().is_err());
        assert!("V".parse::<VoucherId>().is_err());
        let code: InstitutionCode = "0012345".parse().unwrap();
        assert_eq!(code.to_string(), "0012345");
        assert!("123456".parse::<InstitutionCode>().is_err());
        assert!("12345678".parse::<InstitutionCode>().is_err());
        let district: DistrictCode = "LJXQ".parse().unwrap();
        assert_eq!(district.as_str(), "LJXQ");
        assert!("50-101".parse::<DistrictCode>().is_err());
        assert!("".parse::<OperatorId>().is_err());
        assert!("op 1".parse::<OperatorId>().is_err());
    }

    /// Checks the free-text scan: a valid ID number is found anywhere in a
    /// text (alone, inside words, inside a longer digit run, with a lowercase
    /// `x`, after multi-byte characters), and digit runs that are no valid ID
    /// number (wrong check digit, region 9, month 13, born after today) are
    /// not. Before the fix free text was not scanned at all.
    #[test]
    fn id_numbers_are_found_anywhere_in_free_text() {
        let valid = "11010519491231002X";
        for text in [
            valid.to_owned(),
            "11010519491231002x".to_owned(),
            format!("张三{valid}李四"),
            format!("a-{valid}-b"),
            format!("99{valid}"),
            format!("{}00", &with_check_digit("50010119800229123")),
        ] {
            assert!(IdNumber::found_in(&text, Some(NOW)), "{text}");
            assert!(IdNumber::found_in(&text, None), "{text}");
        }
        let tomorrow = with_check_digit("50010120261204123");
        for text in [
            "",
            "110105194912310021",
            "1101051949123100X2",
            "11010519491231002",
            "999999999999999993",
            "500101199913450016",
            "班级 2026-12 电工",
            tomorrow.as_str(),
        ] {
            assert!(!IdNumber::found_in(text, Some(NOW)), "{text}");
        }
        assert!(
            IdNumber::found_in(&tomorrow, None),
            "no today, no upper bound"
        );
    }
}

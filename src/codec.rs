//! How records become bytes: bincode (standard config, size-limited on
//! decode) behind one version byte, so a future layout can be told apart and
//! anything unknown read back is reported as corrupt, never guessed at.

use bincode::{Decode, Encode};

use crate::error::Error;
use crate::limits::RECORD_BYTES_MAX;

/// The layout version written in front of every stored record.
pub const RECORD_VERSION: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<RECORD_BYTES_MAX>()
}

/// Encodes a value with no version byte (keys, hashes, wire frames).
pub fn encode_plain<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, config()).expect("in-memory values always encode")
}

/// Decodes a value written by `encode_plain`; trailing bytes are an error.
pub fn decode_plain<T: Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

/// Encodes a stored record: version byte, then bincode.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    let mut bytes = vec![RECORD_VERSION];
    bincode::encode_into_std_write(value, &mut bytes, config())
        .expect("in-memory values always encode");
    bytes
}

/// Decodes a stored record, checking its version byte.
pub fn decode<T: Decode<()>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            decode_plain(body).map_err(|why| Error::Corrupt(format!("{what}: {why}")))
        }
        Some((version, _)) => Err(Error::Corrupt(format!(
            "{what}: unknown record version {version}"
        ))),
        None => Err(Error::Corrupt(format!("{what}: empty record"))),
    }
}

/// Checks a stored text record (`encode` of a `String`) as `decode` would,
/// lending the text in place instead of copying it.
pub fn decode_text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Error> {
    let corrupt = |why: String| Error::Corrupt(format!("{what}: {why}"));
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            let (text, used): (&str, usize) = bincode::borrow_decode_from_slice(body, config())
                .map_err(|e| corrupt(e.to_string()))?;
            if used != body.len() {
                return Err(corrupt(format!("{} trailing bytes", body.len() - used)));
            }
            Ok(text)
        }
        Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Test helper for unit-only enums that are stored, sent or exported: every
/// variant encodes as the varint of its explicit discriminant, one byte
/// while below 251, and decodes back. bincode's derive writes a variant's
/// position and ignores `= N`, so this fails when a variant is moved,
/// inserted anywhere but at the end, or renumbered.
#[cfg(test)]
pub(crate) fn assert_encoded_as_discriminants<T>(variants: &[T], discriminant: impl Fn(T) -> u32)
where
    T: Encode + Decode<()> + Copy + std::fmt::Debug + PartialEq,
{
    for &variant in variants {
        let number = discriminant(variant);
        assert!(
            number < 251,
            "{variant:?} = {number}: from 251 on the varint takes more than one byte"
        );
        let byte = u8::try_from(number).expect("below 251");
        assert_eq!(
            encode_plain(&variant),
            [byte],
            "{variant:?} = {number} is not encoded as its discriminant: moved or renumbered?"
        );
        assert_eq!(decode_plain::<T>(&[byte]), Ok(variant));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let value = (42u64, String::from("电工"), Some(3u8));
        let bytes = encode(&value);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(
            decode::<(u64, String, Option<u8>)>(&bytes, "t").unwrap(),
            value
        );
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(matches!(
            decode::<(u64, String, Option<u8>)>(&wrong_version, "t"),
            Err(Error::Corrupt(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<(u64, String, Option<u8>)>(&trailing, "t").is_err());
        assert!(decode::<(u64, String, Option<u8>)>(&bytes[..bytes.len() - 2], "t").is_err());
    }

    /// `decode_text` (start-up's check of the texts table) accepts exactly
    /// what `decode::<String>` accepts, and reads the same text.
    #[test]
    fn a_text_lent_in_place_is_checked_as_a_decoded_one() {
        let good = encode(&String::from("2026-12-03T08:00:00+08:00 电工初级"));
        let mut cases = vec![good.clone(), Vec::new(), vec![RECORD_VERSION]];
        for cut in 1..good.len() {
            cases.push(good[..cut].to_vec());
        }
        let mut trailing = good.clone();
        trailing.push(b'x');
        let mut version = good.clone();
        version[0] = 2;
        let mut not_utf8 = good.clone();
        not_utf8[3] = 0xff;
        let mut too_long = vec![RECORD_VERSION];
        too_long.extend(encode_plain(&u64::MAX));
        cases.extend([trailing, version, not_utf8, too_long]);
        for bytes in cases {
            let copied = decode::<String>(&bytes, "t");
            let lent = decode_text(&bytes, "t");
            match (&copied, &lent) {
                (Ok(copied), Ok(lent)) => assert_eq!(copied, lent),
                (Err(Error::Corrupt(_)), Err(Error::Corrupt(_))) => {}
                _ => panic!("{bytes:?}: decode {copied:?}, decode_text {lent:?}"),
            }
        }
        assert!(decode_text(&good, "t").is_ok());
    }
}

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
}

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

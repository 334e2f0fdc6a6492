//! Audit records: one per accepted change (and remembered refusal), sealed
//! as the versioned bincode of an `AuditRecord` followed by its 32-byte blake3
//! hash; each record names the hash of the one before it. Chain checks and the
//! auditor's JSON form of an entry live here too.

use bincode::{Decode, Encode};

use crate::codec;
use crate::domain::command::Command;
use crate::domain::op::{Caller, Reply, Role};
use crate::domain::time::Timestamp;

/// The hash before the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The audit record version written today (the byte in front of a
/// record's bincode): 3 has version 2's layout and is decided under the
/// rule that every redeem names an opened class; 2 names the caller (role
/// and certificate); 1 named the role only and is still read, with an
/// unknown certificate (`Caller::UNKNOWN_CERTIFICATE`).
pub const AUDIT_RECORD_VERSION: u8 = 3;

/// The first record version whose `redeem` must name an opened class at
/// every institution; records of older versions are decided as they were
/// sealed: an institution that had opened no class took a free-text class
/// (docs/decisions.md D51).
pub const CLASSES_REQUIRED_SINCE_VERSION: u8 = 3;

/// One accepted change as auditors see it (ID numbers only as keyed hashes).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// The version the record is (or was) sealed in: 1 to 3. Not a field of
    /// its bytes: the version byte in front of them.
    pub version: u8,
    pub seq: u64,
    pub time: Timestamp,
    pub caller: Caller,
    pub request_id: String,
    pub command: Command,
    pub reply: Reply,
    pub prev_hash: [u8; 32],
}

/// Version 1's layout: the role, no certificate.
#[derive(Encode, Decode)]
struct RecordV1 {
    seq: u64,
    time: Timestamp,
    role: Role,
    request_id: String,
    command: Command,
    reply: Reply,
    prev_hash: [u8; 32],
}

/// Version 2's layout (and version 3's): the caller (role, then the
/// certificate's 32 bytes).
#[derive(Encode, Decode)]
struct RecordV2 {
    seq: u64,
    time: Timestamp,
    caller: Caller,
    request_id: String,
    command: Command,
    reply: Reply,
    prev_hash: [u8; 32],
}

/// The record's bytes as hashed: its version byte, then its layout's bincode.
fn encode(record: &AuditRecord) -> Vec<u8> {
    let AuditRecord {
        version,
        seq,
        time,
        caller,
        request_id,
        command,
        reply,
        prev_hash,
    } = record.clone();
    let body = match version {
        1 => codec::encode_plain(&RecordV1 {
            seq,
            time,
            role: caller.role,
            request_id,
            command,
            reply,
            prev_hash,
        }),
        2 | 3 => codec::encode_plain(&RecordV2 {
            seq,
            time,
            caller,
            request_id,
            command,
            reply,
            prev_hash,
        }),
        other => panic!("audit record version {other} is never written"),
    };
    let mut bytes = Vec::with_capacity(1 + body.len());
    bytes.push(version);
    bytes.extend_from_slice(&body);
    bytes
}

/// Decodes a record's bytes (version byte first), any version ever written.
fn decode(bytes: &[u8]) -> Result<AuditRecord, String> {
    let (&version, body) = bytes.split_first().ok_or("empty record")?;
    match version {
        1 => {
            let v1: RecordV1 = codec::decode_plain(body)?;
            Ok(AuditRecord {
                version,
                seq: v1.seq,
                time: v1.time,
                caller: Caller::new(v1.role, Caller::UNKNOWN_CERTIFICATE),
                request_id: v1.request_id,
                command: v1.command,
                reply: v1.reply,
                prev_hash: v1.prev_hash,
            })
        }
        2 | 3 => {
            let v2: RecordV2 = codec::decode_plain(body)?;
            Ok(AuditRecord {
                version,
                seq: v2.seq,
                time: v2.time,
                caller: v2.caller,
                request_id: v2.request_id,
                command: v2.command,
                reply: v2.reply,
                prev_hash: v2.prev_hash,
            })
        }
        other => Err(format!("unknown audit record version {other}")),
    }
}

/// Encodes a record in its version and returns the stored entry (record
/// bytes + hash) and the hash.
pub fn seal(record: &AuditRecord) -> (Vec<u8>, [u8; 32]) {
    let mut entry = encode(record);
    let hash = *blake3::hash(&entry).as_bytes();
    entry.extend_from_slice(&hash);
    (entry, hash)
}

/// Checks an entry's own hash and decodes it.
pub fn open(entry: &[u8]) -> Result<(AuditRecord, [u8; 32]), String> {
    if entry.len() < 33 {
        return Err("entry is too short".into());
    }
    let (body, hash) = entry.split_at(entry.len() - 32);
    if blake3::hash(body).as_bytes() != hash {
        return Err("hash does not match the record".into());
    }
    let record = decode(body).map_err(|why| format!("audit record: {why}"))?;
    Ok((record, hash.try_into().expect("32 bytes")))
}

/// Follows a chain entry by entry and says where it breaks.
pub struct ChainVerifier {
    pub next_seq: u64,
    pub prev_hash: [u8; 32],
}

impl Default for ChainVerifier {
    fn default() -> ChainVerifier {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS_HASH,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry: its hash, its sequence number and its link.
    pub fn check(&mut self, entry: &[u8]) -> Result<AuditRecord, String> {
        let position = self.next_seq;
        let (record, hash) = open(entry).map_err(|why| format!("record {position}: {why}"))?;
        if record.seq != self.next_seq {
            return Err(format!(
                "record {position}: sequence number is {}",
                record.seq
            ));
        }
        if record.prev_hash != self.prev_hash {
            return Err(format!(
                "record {position}: does not link to the record before it"
            ));
        }
        self.next_seq += 1;
        self.prev_hash = hash;
        Ok(record)
    }
}

/// One stored entry as an auditor's JSON line: the record's fields, its link
/// and hash (hex), and the entry itself (hex, the bytes the hash covers plus
/// the hash) so the binary form can be rebuilt from the JSON.
pub fn entry_json(entry: &[u8]) -> Result<serde_json::Value, String> {
    let (record, hash) = open(entry)?;
    Ok(serde_json::json!({
        "seq": record.seq,
        "time": record.time.0,
        "version": record.version,
        "role": record.caller.role,
        "certificate": hex::encode(record.caller.certificate),
        "request_id": record.request_id,
        "command": record.command,
        "reply": record.reply,
        "prev_hash": hex::encode(record.prev_hash),
        "hash": hex::encode(hash),
        "entry": hex::encode(entry),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u8) -> AuditRecord {
        AuditRecord {
            version,
            seq: 7,
            time: Timestamp(1_795_914_000),
            caller: Caller::new(Role::Gateway, [5; 32]),
            request_id: "r-7".into(),
            command: Command::Expire { year: 2026 },
            reply: Reply::Expired { expired: 0 },
            prev_hash: [3; 32],
        }
    }

    /// A version 1 record has no certificate: it opens with the unknown
    /// one, and sealing it again as version 1 gives the very same bytes
    /// (so old chains replay to the same hashes). Version 2 keeps it.
    #[test]
    fn version_1_records_open_with_an_unknown_caller_and_reseal_alike() {
        let (v1, _) = seal(&record(1));
        assert_eq!(v1[0], 1);
        let (opened, _) = open(&v1).unwrap();
        assert_eq!(opened.version, 1);
        assert_eq!(
            opened.caller,
            Caller::new(Role::Gateway, Caller::UNKNOWN_CERTIFICATE)
        );
        assert_eq!(seal(&opened).0, v1);

        let (v2, _) = seal(&record(2));
        assert_eq!(v2[0], 2);
        assert_eq!(open(&v2).unwrap().0, record(2));
        assert_eq!(v2.len(), v1.len() + 32, "the certificate's 32 bytes");

        // Version 3: version 2's layout under its own version byte.
        let (v3, _) = seal(&record(AUDIT_RECORD_VERSION));
        assert_eq!(v3[0], 3);
        assert_eq!(open(&v3).unwrap().0, record(3));
        assert_eq!(v3[1..v3.len() - 32], v2[1..v2.len() - 32]);

        let mut unknown = v2.clone();
        unknown[0] = 9;
        let body = unknown.len() - 32;
        let hash = *blake3::hash(&unknown[..body]).as_bytes();
        unknown[body..].copy_from_slice(&hash);
        assert!(open(&unknown)
            .unwrap_err()
            .contains("unknown audit record version 9"));
    }
}

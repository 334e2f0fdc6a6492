//! Audit records: one per accepted change (and remembered refusal), sealed
//! as the versioned bincode of an `AuditRecord` followed by its 32-byte blake3
//! hash; each record names the hash of the one before it. Chain checks and the
//! auditor's JSON form of an entry live here too.

use bincode::{Decode, Encode};

use crate::codec;
use crate::domain::command::Command;
use crate::domain::op::{Reply, Role};
use crate::domain::time::Timestamp;

/// The hash before the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// One accepted change as auditors see it (ID numbers only as keyed hashes).
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct AuditRecord {
    pub seq: u64,
    pub time: Timestamp,
    pub role: Role,
    pub request_id: String,
    pub command: Command,
    pub reply: Reply,
    pub prev_hash: [u8; 32],
}

/// Encodes a record and returns the stored entry (record bytes + hash) and the hash.
pub fn seal(record: &AuditRecord) -> (Vec<u8>, [u8; 32]) {
    let mut entry = codec::encode(record);
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
    let record: AuditRecord = codec::decode(body, "audit record").map_err(|e| e.to_string())?;
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
        "role": record.role,
        "request_id": record.request_id,
        "command": record.command,
        "reply": record.reply,
        "prev_hash": hex::encode(record.prev_hash),
        "hash": hex::encode(hash),
        "entry": hex::encode(entry),
    }))
}

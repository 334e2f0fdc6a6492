//! The audit log: one record per accepted change, chained with blake3.
//!
//! A stored entry is the versioned bincode of an `AuditRecord` followed by its
//! 32-byte blake3 hash; each record names the hash of the one before it. This
//! module also verifies chains and reads and writes the binary export.

use std::io::{Read, Write};

use bincode::{Decode, Encode};

use crate::codec;
use crate::domain::command::Command;
use crate::domain::op::{Reply, Role};
use crate::domain::time::Timestamp;
use crate::error::Error;
use crate::limits::RECORD_BYTES_MAX;

/// The hash before the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The first bytes of a binary audit export.
pub const EXPORT_MAGIC: &[u8; 16] = b"VOUCHERD-AUDIT1\n";

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

/// Writes the binary export: magic, then each entry as u32 big-endian length and bytes.
pub struct ExportWriter<W: Write> {
    out: W,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export; the campaigns (TOML texts) travel with it so that a
    /// replay applies the same rules.
    pub fn new(mut out: W, campaigns: &[String]) -> Result<ExportWriter<W>, Error> {
        out.write_all(EXPORT_MAGIC)?;
        let mut writer = ExportWriter { out };
        writer.write(&codec::encode(&campaigns.to_vec()))?;
        Ok(writer)
    }

    pub fn write(&mut self, entry: &[u8]) -> Result<(), Error> {
        let len =
            u32::try_from(entry.len()).map_err(|_| Error::Corrupt("entry over 4 GiB".into()))?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(entry)?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, Error> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads entries back from a binary export.
pub struct ExportReader<R: Read> {
    input: R,
}

impl<R: Read> ExportReader<R> {
    /// Opens an export and reads its campaigns (TOML texts).
    pub fn new(mut input: R) -> Result<(ExportReader<R>, Vec<String>), Error> {
        let mut magic = [0u8; 16];
        input.read_exact(&mut magic)?;
        if &magic != EXPORT_MAGIC {
            return Err(Error::InvalidInput("not a voucherd audit export".into()));
        }
        let mut reader = ExportReader { input };
        let header = reader
            .next_entry()?
            .ok_or_else(|| Error::Corrupt("export ends before its campaigns".into()))?;
        let campaigns: Vec<String> = codec::decode(&header, "export campaigns")?;
        Ok((reader, campaigns))
    }

    /// The next entry, or `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > RECORD_BYTES_MAX {
            return Err(Error::Corrupt(format!(
                "export entry of {len} bytes is over the limit"
            )));
        }
        let mut entry = vec![0u8; len];
        self.input.read_exact(&mut entry)?;
        Ok(Some(entry))
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

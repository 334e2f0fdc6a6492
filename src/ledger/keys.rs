//! Storage keys of each table. Big-endian numbers so keys sort in number order.

use crate::domain::ids::{ClassCode, InstitutionCode, PersonKey, VoucherId};
use crate::domain::op::Caller;

pub fn voucher(id: VoucherId) -> Vec<u8> {
    id.0.to_be_bytes().to_vec()
}

/// Whether `key` is voucher `id`'s key (start-up's check of every row,
/// without making the key).
pub fn is_voucher(key: &[u8], id: VoucherId) -> bool {
    key == id.0.to_be_bytes()
}

pub fn person(key: PersonKey, year: u16) -> Vec<u8> {
    let mut bytes = key.0.to_vec();
    bytes.extend_from_slice(&year.to_be_bytes());
    bytes
}

pub fn institution(code: InstitutionCode) -> Vec<u8> {
    code.0.to_be_bytes().to_vec()
}

/// A class: its institution, then its code (UTF-8), so an institution's
/// classes lie together.
pub fn class(institution: InstitutionCode, code: &ClassCode) -> Vec<u8> {
    let mut bytes = institution.0.to_be_bytes().to_vec();
    bytes.extend_from_slice(code.as_str().as_bytes());
    bytes
}

/// A voucher's enrollment in a class (value: the class's key parts).
pub fn enrollment(voucher: VoucherId) -> Vec<u8> {
    voucher.0.to_be_bytes().to_vec()
}

/// Texts (a redemption's class, an evaluation's comment) are never overwritten:
/// each is keyed by the audit record that wrote it.
pub fn text(voucher: VoucherId, tag: u8, seq: u64) -> Vec<u8> {
    let mut bytes = voucher.0.to_be_bytes().to_vec();
    bytes.push(tag);
    bytes.extend_from_slice(&seq.to_be_bytes());
    bytes
}

/// The keys of every text of one voucher lie in `text_prefix(v)..text_prefix(v + 1)`.
pub fn text_prefix(voucher: VoucherId) -> Vec<u8> {
    voucher.0.to_be_bytes().to_vec()
}

pub fn audit(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// Request ids are remembered per caller: the certificate's fingerprint
/// (32 bytes), then `<role>\n<id>`, so two certificates never collide (and
/// callers sharing the test certificate still differ by role).
pub fn request(caller: &Caller, id: &str) -> Vec<u8> {
    let mut key = caller.certificate.to_vec();
    key.extend_from_slice(format!("{}\n{id}", caller.role).as_bytes());
    key
}

/// The layout of a data folder as a whole (its keys, beside each record's
/// own version byte), as the golden store dump `store-v<N>.txt` names it:
/// 1 the first; 2 request keys per certificate (`request`); 3
/// `meta/applied_seq` (the state tables are written without the WAL and
/// checkpointed; start-up re-applies the audit records after it).
pub const STORE_LAYOUT_VERSION: u8 = 3;

pub fn decode_u64(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

pub const TEXT_CLASS: u8 = b'c';
pub const TEXT_COMMENT: u8 = b'e';
/// When a step was done (RFC 3339, +08:00), one row per step done, keyed like
/// every text by the audit record that did it: the latest of each tag counts.
pub const TEXT_ISSUED_AT: u8 = b'I';
pub const TEXT_CLAIMED_AT: u8 = b'L';
pub const TEXT_REDEEMED_AT: u8 = b'R';
pub const TEXT_COMPLETED_AT: u8 = b'C';
pub const TEXT_SETTLED_AT: u8 = b'S';

/// Meta key of the state digest's running sum, written with every state change.
pub const STATE_DIGEST: &[u8] = b"state_digest";

/// Meta key of the last audit sequence the state tables reflect (see
/// `journal::APPLIED_SEQ`). Absent in a journal of layout 1 or 2, whose
/// state was written with every record: it is then the audit head.
pub use crate::store::journal::APPLIED_SEQ;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voucher_key_is_told_from_any_other() {
        for id in [1, 255, 256, u64::from(u32::MAX)] {
            let key = voucher(VoucherId(id));
            assert!(is_voucher(&key, VoucherId(id)));
            assert!(!is_voucher(&key, VoucherId(id + 1)));
            assert!(!is_voucher(&key[1..], VoucherId(id)));
            let mut longer = key.clone();
            longer.push(0);
            assert!(!is_voucher(&longer, VoucherId(id)));
        }
    }
}

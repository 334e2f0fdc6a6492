//! The state digest: an order-independent hash of every record in the ledger.
//!
//! Each (table, key, value) is hashed with blake3 and the hashes are summed as
//! 256-bit integers (AdHash); a change subtracts the old record and adds the
//! new one, so the digest is kept up to date in O(1) per change and equals the
//! digest recomputed from scratch, by recovery or by replay. Every commit also
//! stores the sum (`to_bytes`) in the meta table, so start-up can check the
//! state it read back against the state that was written.

/// The running sum; `hex()` is blake3 over it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateDigest([u64; 4]);

/// Records up to this size (with the table tag and key length) are hashed
/// from one buffer on the stack in a single call: the same bytes in, the
/// same hash out, without a streaming hasher's set-up per record (start-up
/// hashes tens of millions of small rows).
const RECORD_HASHED_AT_ONCE_BYTES_MAX: usize = 256;

fn record_hash(table: u8, key: &[u8], value: &[u8]) -> [u64; 4] {
    let length = (key.len() as u64).to_le_bytes();
    let total = 1 + length.len() + key.len() + value.len();
    let bytes = if total <= RECORD_HASHED_AT_ONCE_BYTES_MAX {
        let mut buffer = [0u8; RECORD_HASHED_AT_ONCE_BYTES_MAX];
        buffer[0] = table;
        let mut at = 1;
        for part in [&length[..], key, value] {
            buffer[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        blake3::hash(&buffer[..total])
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[table]);
        hasher.update(&length);
        hasher.update(key);
        hasher.update(value);
        hasher.finalize()
    };
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.as_bytes().chunks_exact(8)) {
        *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    limbs
}

impl StateDigest {
    pub fn add(&mut self, table: u8, key: &[u8], value: &[u8]) {
        self.merge(&StateDigest(record_hash(table, key, value)));
    }

    /// Adds another sum: the digest of the records of both.
    pub fn merge(&mut self, other: &StateDigest) {
        let mut carry = false;
        for (limb, add) in self.0.iter_mut().zip(other.0) {
            let (sum, c1) = limb.overflowing_add(add);
            let (sum, c2) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = c1 || c2;
        }
    }

    pub fn remove(&mut self, table: u8, key: &[u8], value: &[u8]) {
        self.subtract(&StateDigest(record_hash(table, key, value)));
    }

    /// Takes away another sum: the digest without the records of `other`.
    pub fn subtract(&mut self, other: &StateDigest) {
        let mut borrow = false;
        for (limb, sub) in self.0.iter_mut().zip(other.0) {
            let (diff, b1) = limb.overflowing_sub(sub);
            let (diff, b2) = diff.overflowing_sub(u64::from(borrow));
            *limb = diff;
            borrow = b1 || b2;
        }
    }

    pub fn hex(&self) -> String {
        blake3::hash(&self.to_bytes()).to_hex().to_string()
    }

    /// The running sum as stored next to the state (little-endian limbs).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        bytes
    }

    /// Reads back `to_bytes`; `None` unless exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<StateDigest> {
        if bytes.len() != 32 {
            return None;
        }
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        Some(StateDigest(limbs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_order_independent_and_reversible() {
        let mut a = StateDigest::default();
        a.add(1, b"k1", b"v1");
        a.add(2, b"k2", b"v2");
        let mut b = StateDigest::default();
        b.add(2, b"k2", b"v2");
        b.add(1, b"k1", b"v1");
        assert_eq!(a, b);
        b.remove(1, b"k1", b"v1");
        b.add(1, b"k1", b"v1'");
        assert_ne!(a.hex(), b.hex());
        b.remove(1, b"k1", b"v1'");
        b.add(1, b"k1", b"v1");
        assert_eq!(a.hex(), b.hex());
        let mut c = StateDigest::default();
        c.add(1, b"k", b"1v");
        let mut d = StateDigest::default();
        d.add(1, b"k1", b"v");
        assert_ne!(c, d, "key and value boundaries are part of the hash");
        assert_eq!(StateDigest::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(StateDigest::from_bytes(&a.to_bytes()[1..]), None);
    }

    /// The one-buffer hash of small records and the streaming hash of
    /// large ones are the same function of (table, key, value), on both
    /// sides of the size where one gives way to the other.
    #[test]
    fn a_record_hashes_the_same_whatever_its_size() {
        let streamed = |table: u8, key: &[u8], value: &[u8]| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&[table]);
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            hasher.update(value);
            let mut limbs = [0u64; 4];
            for (limb, chunk) in limbs
                .iter_mut()
                .zip(hasher.finalize().as_bytes().chunks_exact(8))
            {
                *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            }
            limbs
        };
        let key = [7u8; 40];
        let value: Vec<u8> = (0..600u32).map(|n| (n * 31 % 251) as u8).collect();
        for value_len in (0..300).chain([599, 600]) {
            let value = &value[..value_len];
            assert_eq!(
                record_hash(3, &key, value),
                streamed(3, &key, value),
                "a value of {value_len} bytes"
            );
        }
        assert_eq!(record_hash(1, b"", b""), streamed(1, b"", b""));
    }

    #[test]
    fn digests_of_parts_merge_into_the_digest_of_the_whole() {
        let mut whole = StateDigest::default();
        let mut parts = [StateDigest::default(), StateDigest::default()];
        for n in 0..1000u32 {
            let key = n.to_be_bytes();
            whole.add(1, &key, b"value");
            parts[(n % 2) as usize].add(1, &key, b"value");
        }
        let mut merged = parts[0];
        merged.merge(&parts[1]);
        assert_eq!(merged, whole);
        assert_ne!(parts[0], whole);
    }
}

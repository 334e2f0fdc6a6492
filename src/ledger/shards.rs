//! Lock-sharded maps (institutions; vouchers and persons are packed, see
//! `index`): a key picks one of `INDEX_SHARDS` read-write locks, so operations
//! on different keys run in parallel and operations on one key serialise.

use hashbrown::HashMap;
use std::hash::Hash;

use parking_lot::RwLock;

use crate::domain::ids::InstitutionCode;
use crate::limits::INDEX_SHARDS;

/// Which shard a key lives in.
pub trait ShardKey {
    fn shard(&self) -> usize;
}

impl ShardKey for InstitutionCode {
    fn shard(&self) -> usize {
        (self.0 as usize) % INDEX_SHARDS
    }
}

pub struct Shards<K, V> {
    shards: Vec<RwLock<HashMap<K, V>>>,
}

impl<K: ShardKey + Eq + Hash, V> Default for Shards<K, V> {
    fn default() -> Self {
        Shards {
            shards: (0..INDEX_SHARDS)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
        }
    }
}

impl<K: ShardKey + Eq + Hash, V> Shards<K, V> {
    /// The lock that guards `key`.
    pub fn of(&self, key: &K) -> &RwLock<HashMap<K, V>> {
        &self.shards[key.shard()]
    }

    /// Every shard, in a fixed order (lock them in this order only).
    pub fn all(&self) -> &[RwLock<HashMap<K, V>>] {
        &self.shards
    }

    /// Inserts without contention (recovery, before the ledger is shared).
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.of(&key).write().insert(key, value)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }
}

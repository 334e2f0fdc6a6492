//! The journal: where the ledger sends each accepted change to become durable.
//!
//! Contract: commits are submitted in ticket order (1, 2, 3, …) and take
//! effect in that order; `wait_durable(t)` returns once the logged part
//! (`Table::is_logged`: audit records, remembered answers) of every commit up to
//! `t` survives a crash; `wait_written(t)` returns once their state is
//! readable too (it is written just after). The state tables may lag on
//! disk: a crash keeps them as of a checkpoint (`meta/applied_seq`), and
//! start-up re-applies the audit records after it. `submit` never blocks: a
//! full queue is `overloaded`.
//! `MemoryJournal` keeps tables in memory for tests and replay.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::error::{Error, Reason, Refusal};

/// The tables (RocksDB column families) of the ledger. A table's name is its
/// column family's, strum's snake_case name of the variant.
///
/// Append only: the discriminant is the stored byte (the table's tag in the
/// state digest); see docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Table {
    Vouchers = 0,
    Persons = 1,
    Institutions = 2,
    Texts = 3,
    Counters = 4,
    Requests = 5,
    Audit = 6,
    Meta = 7,
    /// Classes institutions opened (`keys::class`), reference data of each.
    Classes = 8,
    /// The class each voucher redeemed into a class is enrolled in
    /// (`keys::enrollment`); none for a free-text class (D50).
    Enrollments = 9,
}

impl Table {
    /// Every table, in declaration order.
    pub const ALL: &'static [Table] = <Table as strum::VariantArray>::VARIANTS;

    /// Tables whose records make up the ledger state (and its digest).
    pub const STATE: [Table; 7] = [
        Table::Vouchers,
        Table::Persons,
        Table::Institutions,
        Table::Texts,
        Table::Counters,
        Table::Classes,
        Table::Enrollments,
    ];

    /// Tables written with the synced log: the audit chain (the ledger's
    /// truth) and the remembered answers. The others are written without the
    /// log and made durable by checkpoints; start-up rebuilds what a crash
    /// lost of them from the audit records (docs/storage-and-audit.md).
    pub fn is_logged(self) -> bool {
        matches!(self, Table::Audit | Table::Requests)
    }

    /// The column family name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The table's tag in the state digest.
    pub fn tag(self) -> u8 {
        self as u8
    }
}

/// Meta key of the last audit sequence the state tables reflect, u64 BE:
/// written by the ledger with every state change (store layout 3 on), and
/// by `rocks::Store::open` for a store that has none (new, or of layout 1
/// or 2, whose state was written with every record), synced, before any
/// state is written without the log.
pub const APPLIED_SEQ: &[u8] = b"applied_seq";

/// A stored (key, value) pair.
pub type Row = (Vec<u8>, Vec<u8>);

/// What `Journal::scan` calls for each row; an error stops the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), Error> + 'a;

/// One key written (or deleted, when `value` is `None`).
#[derive(Clone, Debug)]
pub struct Put {
    pub table: Table,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Everything one operation writes, applied atomically.
#[derive(Debug, Default)]
pub struct Commit {
    pub ticket: u64,
    pub puts: Vec<Put>,
}

/// The puts a group of commits leaves in effect: for each (table, key) only
/// the last write, in commit order. A group is written as one atomic batch,
/// so the earlier writes of a key (the state digest and the figures are
/// rewritten by nearly every commit) would never be seen by anyone.
pub fn last_writes(group: &[Commit]) -> Vec<&Put> {
    // foldhash, seeded per process: request ids in the keys come from callers.
    let mut seen = hashbrown::HashSet::with_capacity(group.iter().map(|c| c.puts.len()).sum());
    let mut last: Vec<&Put> = group
        .iter()
        .rev()
        .flat_map(|commit| commit.puts.iter().rev())
        .filter(|put| seen.insert((put.table, put.key.as_slice())))
        .collect();
    last.reverse();
    last
}

/// How far commits are durable, as a journal publishes it to async waiters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durability {
    /// Every commit up to this ticket is durable.
    pub ticket: u64,
    /// The journal failed: no later ticket will ever become durable.
    pub failed: bool,
}

impl Durability {
    /// Whether waiting for `ticket` is over (durable, or never will be).
    pub fn settles(&self, ticket: u64) -> bool {
        self.ticket >= ticket || self.failed
    }
}

/// Where commits go. See the module doc for the ordering and durability contract.
pub trait Journal: Send + Sync {
    /// True when `submit` would be refused `overloaded` right now.
    fn is_full(&self) -> bool;
    /// Queues a commit; its ticket is one more than the previous commit's.
    fn submit(&self, commit: Commit) -> Result<(), Refusal>;
    /// A frame of requests starts being applied: its commits follow each other
    /// closely, so a committer may wait a moment to write them in one group.
    fn frame_started(&self) {}
    /// The frame started last by this caller is applied (its commits are queued).
    fn frame_applied(&self) {}
    /// Blocks until every commit up to `ticket` is durable.
    fn wait_durable(&self, ticket: u64) -> Result<(), Refusal>;
    /// Blocks until every commit up to `ticket` is durable and its state
    /// readable by `get` and the scans: the state part of a group is written
    /// just after its answers go out (D119). Reads of the state tables wait
    /// here; answers wait in `wait_durable`.
    fn wait_written(&self, ticket: u64) -> Result<(), Refusal> {
        self.wait_durable(ticket)
    }
    /// Where async callers can await durability without holding a thread
    /// (then call `wait_durable`, which returns at once). `None` when
    /// `wait_durable` never waits long (the in-memory journal).
    fn durability(&self) -> Option<tokio::sync::watch::Receiver<Durability>> {
        None
    }
    /// Reads a key as of the last written commit (`wait_written`).
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
    /// Calls `visit` for every (key, value) of a table, in key order.
    fn scan(&self, table: Table, visit: &mut Visit) -> Result<(), Error> {
        self.scan_between(table, &[], None, visit)
    }
    /// Calls `visit` for every (key, value) of a table with `from <= key < to`
    /// (no upper end when `to` is `None`), in key order.
    fn scan_between(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit,
    ) -> Result<(), Error>;
    /// The last (key, value) of a table in key order.
    fn last(&self, table: Table) -> Result<Option<Row>, Error>;
    /// Up to `limit` rows of a table from key `from` on, in key order.
    fn range(&self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Row>, Error> {
        let mut rows = Vec::new();
        self.scan(table, &mut |key, value| {
            if key >= from && rows.len() < limit {
                rows.push((key.to_vec(), value.to_vec()));
            }
            Ok(())
        })?;
        Ok(rows)
    }
}

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

/// A journal in memory: durable as soon as submitted. For tests and replay.
#[derive(Default)]
pub struct MemoryJournal {
    tables: Mutex<BTreeMap<Table, Rows>>,
    /// (table, key bytes, value bytes) of each put of the last commit.
    last_commit: Mutex<Vec<(Table, usize, usize)>>,
    refuse_writes: std::sync::atomic::AtomicBool,
}

impl MemoryJournal {
    fn rows(&self, table: Table) -> Vec<Row> {
        let tables = self.tables.lock();
        tables
            .get(&table)
            .map(|rows| rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Flips one bit of a stored value (to test that damage is detected).
    pub fn corrupt(&self, table: Table, key: &[u8], byte: usize) {
        let mut tables = self.tables.lock();
        let value = tables
            .get_mut(&table)
            .and_then(|rows| rows.get_mut(key))
            .expect("key exists");
        value[byte] ^= 1;
    }

    /// The shape of the last commit: (table, key bytes, value bytes) per put.
    pub fn last_commit(&self) -> Vec<(Table, usize, usize)> {
        self.last_commit.lock().clone()
    }

    /// Makes `submit` refuse (to test the overloaded path).
    pub fn set_full(&self, full: bool) {
        self.refuse_writes
            .store(full, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Journal for MemoryJournal {
    fn is_full(&self) -> bool {
        self.refuse_writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn submit(&self, commit: Commit) -> Result<(), Refusal> {
        if self.is_full() {
            return Err(Refusal::new(
                Reason::Overloaded,
                "the journal is full; retry",
            ));
        }
        *self.last_commit.lock() = commit
            .puts
            .iter()
            .map(|put| {
                (
                    put.table,
                    put.key.len(),
                    put.value.as_ref().map_or(0, Vec::len),
                )
            })
            .collect();
        let mut tables = self.tables.lock();
        for put in commit.puts {
            let rows = tables.entry(put.table).or_default();
            match put.value {
                Some(value) => rows.insert(put.key, value),
                None => rows.remove(&put.key),
            };
        }
        Ok(())
    }

    fn wait_durable(&self, _ticket: u64) -> Result<(), Refusal> {
        Ok(())
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .tables
            .lock()
            .get(&table)
            .and_then(|rows| rows.get(key).cloned()))
    }

    fn scan_between(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut Visit,
    ) -> Result<(), Error> {
        for (key, value) in self.rows(table) {
            if key.as_slice() >= from && to.is_none_or(|to| key.as_slice() < to) {
                visit(&key, &value)?;
            }
        }
        Ok(())
    }

    fn range(&self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Row>, Error> {
        let tables = self.tables.lock();
        Ok(tables
            .get(&table)
            .map(|rows| {
                rows.range(from.to_vec()..)
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn last(&self, table: Table) -> Result<Option<Row>, Error> {
        let tables = self.tables.lock();
        Ok(tables
            .get(&table)
            .and_then(|rows| rows.iter().next_back())
            .map(|(k, v)| (k.clone(), v.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: Table, key: &[u8], value: Option<&[u8]>) -> Put {
        Put {
            table,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    fn shown(puts: &[&Put]) -> Vec<(Table, Vec<u8>, Option<Vec<u8>>)> {
        puts.iter()
            .map(|p| (p.table, p.key.clone(), p.value.clone()))
            .collect()
    }

    #[test]
    fn a_group_keeps_only_the_last_write_of_each_key() {
        let group = [
            Commit {
                ticket: 1,
                puts: vec![
                    put(Table::Vouchers, b"v1", Some(b"a")),
                    put(Table::Counters, b"used", Some(b"1")),
                    put(Table::Meta, b"digest", Some(b"d1")),
                ],
            },
            Commit {
                ticket: 2,
                puts: vec![
                    put(Table::Vouchers, b"v2", Some(b"b")),
                    // Same key bytes in another table: a different record.
                    put(Table::Persons, b"v1", Some(b"p")),
                    put(Table::Counters, b"used", None),
                    put(Table::Meta, b"digest", Some(b"d2")),
                ],
            },
            Commit {
                ticket: 3,
                puts: vec![put(Table::Vouchers, b"v1", Some(b"c"))],
            },
        ];
        assert_eq!(
            shown(&last_writes(&group)),
            vec![
                (Table::Vouchers, b"v2".to_vec(), Some(b"b".to_vec())),
                (Table::Persons, b"v1".to_vec(), Some(b"p".to_vec())),
                // A delete that comes last wins over the earlier put.
                (Table::Counters, b"used".to_vec(), None),
                (Table::Meta, b"digest".to_vec(), Some(b"d2".to_vec())),
                (Table::Vouchers, b"v1".to_vec(), Some(b"c".to_vec())),
            ]
        );
        assert!(last_writes(&[]).is_empty());
    }

    /// The column family names are in every data folder and the tags in
    /// every state digest: neither may change. (Table has no serde or
    /// bincode form; this pins both by value.)
    #[test]
    fn table_names_and_tags_are_pinned() {
        let pinned: Vec<(&str, u8)> = Table::ALL
            .iter()
            .map(|&table| (table.name(), table.tag()))
            .collect();
        assert_eq!(
            pinned,
            [
                ("vouchers", 0),
                ("persons", 1),
                ("institutions", 2),
                ("texts", 3),
                ("counters", 4),
                ("requests", 5),
                ("audit", 6),
                ("meta", 7),
                ("classes", 8),
                ("enrollments", 9),
            ]
        );
    }
}

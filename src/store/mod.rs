//! RocksDB behind the `Journal` contract, with group commit.
//!
//! One column family per `Table`. Commits go through a bounded crossbeam
//! channel (full: `overloaded`) to one committer thread, which gathers what is
//! queued into a single WriteBatch, writes it with the WAL synced, and only
//! then moves the durable ticket forward and wakes the waiters. If a write
//! fails, the store stops taking writes (fail-stop): memory may be ahead of
//! disk, so the daemon must restart and recover from what is on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::error::{Error, Reason, Refusal};
use crate::journal::{Commit, Journal, Table};
use crate::limits::{COMMIT_QUEUE_DEPTH_MAX, GROUP_COMMIT_BATCHES_MAX};
use crate::telemetry;

/// How far commits have become durable, and whether the store failed.
#[derive(Default)]
struct DurableState {
    ticket: u64,
    failed: Option<String>,
}

#[derive(Default)]
struct Durable {
    state: Mutex<DurableState>,
    changed: Condvar,
}

/// Figures of the committer, for metrics and benchmarks.
#[derive(Default, Clone, Copy, Debug)]
pub struct CommitterFigures {
    pub writes: u64,
    pub commits: u64,
    pub sync_ns_total: u64,
}

pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    sender: Option<Sender<Commit>>,
    durable: Arc<Durable>,
    figures: Arc<Mutex<CommitterFigures>>,
    committer: Option<JoinHandle<()>>,
}

fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_paranoid_checks(true);
    options.increase_parallelism(2);
    options
}

impl Store {
    /// Opens (or creates) the store in `path` and starts the committer.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let families = Table::ALL
            .iter()
            .map(|table| ColumnFamilyDescriptor::new(table.name(), Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&options(), path, families)?);
        let (sender, receiver) = crossbeam_channel::bounded(COMMIT_QUEUE_DEPTH_MAX);
        let durable = Arc::new(Durable::default());
        let figures = Arc::new(Mutex::new(CommitterFigures::default()));
        let committer = {
            let (db, durable, figures) =
                (Arc::clone(&db), Arc::clone(&durable), Arc::clone(&figures));
            std::thread::Builder::new()
                .name("committer".into())
                .spawn(move || run_committer(&db, &receiver, &durable, &figures))?
        };
        Ok(Store {
            db,
            path: path.to_owned(),
            sender: Some(sender),
            durable,
            figures,
            committer: Some(committer),
        })
    }

    /// Opens an existing store for reading only (audit tools while the daemon
    /// serves or is stopped); it takes no commits.
    pub fn open_read_only(path: &Path) -> Result<Store, Error> {
        let names = Table::ALL.iter().map(|table| table.name());
        let db = DB::open_cf_for_read_only(&Options::default(), path, names, false)?;
        Ok(Store {
            db: Arc::new(db),
            path: path.to_owned(),
            sender: None,
            durable: Arc::new(Durable::default()),
            figures: Arc::new(Mutex::new(CommitterFigures::default())),
            committer: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a write failed and the store refuses writes until restart.
    pub fn failed(&self) -> bool {
        self.durable.state.lock().failed.is_some()
    }

    /// Commits waiting for the committer.
    pub fn queue_depth(&self) -> usize {
        self.sender.as_ref().map_or(0, Sender::len)
    }

    pub fn committer_figures(&self) -> CommitterFigures {
        *self.figures.lock()
    }

    /// Takes a consistent on-disk copy (RocksDB checkpoint) while serving.
    pub fn checkpoint(&self, out: &Path) -> Result<(), Error> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(out)?;
        Ok(())
    }

    /// A RocksDB property of the whole database, e.g. `rocksdb.total-sst-files-size`.
    pub fn property(&self, name: &str) -> Option<u64> {
        self.db.property_int_value(name).ok().flatten()
    }

    /// Writes one meta key (not ledger state) outside the ticket order, synced.
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db
            .put_cf_opt(self.family(Table::Meta), key, value, &sync)?;
        Ok(())
    }

    fn family(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(table.name())
            .expect("every table's family is opened")
    }
}

fn run_committer(
    db: &DB,
    receiver: &Receiver<Commit>,
    durable: &Durable,
    figures: &Mutex<CommitterFigures>,
) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let mut last_ticket = 0;
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_BATCHES_MAX {
            match receiver.try_recv() {
                Ok(commit) => group.push(commit),
                Err(_) => break,
            }
        }
        let mut batch = WriteBatch::default();
        for commit in &group {
            assert_eq!(
                commit.ticket,
                last_ticket + 1,
                "commits arrive in ticket order"
            );
            last_ticket = commit.ticket;
            for put in &commit.puts {
                let family = db
                    .cf_handle(put.table.name())
                    .expect("every table's family is opened");
                match &put.value {
                    Some(value) => batch.put_cf(family, &put.key, value),
                    None => batch.delete_cf(family, &put.key),
                }
            }
        }
        let started = Instant::now();
        let written = db.write_opt(batch, &sync);
        let elapsed = started.elapsed();
        let elapsed_ns = elapsed.as_nanos() as u64;
        metrics::histogram!(telemetry::FSYNC_SECONDS).record(elapsed.as_secs_f64());
        metrics::histogram!(telemetry::COMMIT_GROUP).record(group.len() as f64);
        let mut state = durable.state.lock();
        match written {
            Ok(()) if state.failed.is_none() => {
                state.ticket = last_ticket;
                let mut figures = figures.lock();
                figures.writes += 1;
                figures.commits += group.len() as u64;
                figures.sync_ns_total += elapsed_ns;
            }
            Ok(()) => {}
            Err(error) => {
                tracing::error!(%error, "a synced write failed; the store takes no more writes");
                state.failed.get_or_insert_with(|| error.to_string());
            }
        }
        drop(state);
        durable.changed.notify_all();
    }
}

impl Journal for Store {
    fn is_full(&self) -> bool {
        self.sender.as_ref().is_none_or(Sender::is_full)
    }

    fn submit(&self, commit: Commit) -> Result<(), Refusal> {
        if let Some(why) = &self.durable.state.lock().failed {
            return Err(Refusal::new(
                Reason::StorageUnavailable,
                format!("the store failed: {why}"),
            ));
        }
        let Some(sender) = self.sender.as_ref() else {
            return Err(Refusal::new(
                Reason::StorageUnavailable,
                "the store is open read-only",
            ));
        };
        match sender.try_send(commit) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refusal::new(
                Reason::Overloaded,
                "the commit queue is full; retry",
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(Refusal::new(Reason::ShuttingDown, "the store is closing"))
            }
        }
    }

    fn wait_durable(&self, ticket: u64) -> Result<(), Refusal> {
        let mut state = self.durable.state.lock();
        loop {
            if state.ticket >= ticket {
                return Ok(());
            }
            if let Some(why) = &state.failed {
                return Err(Refusal::new(
                    Reason::StorageUnavailable,
                    format!("the store failed: {why}"),
                ));
            }
            self.durable.changed.wait(&mut state);
        }
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.db.get_cf(self.family(table), key)?)
    }

    fn scan(&self, table: Table, visit: &mut crate::journal::Visit) -> Result<(), Error> {
        for item in self.db.iterator_cf(self.family(table), IteratorMode::Start) {
            let (key, value) = item?;
            visit(&key, &value)?;
        }
        Ok(())
    }

    fn range(
        &self,
        table: Table,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<crate::journal::Row>, Error> {
        let mode = IteratorMode::From(from, rocksdb::Direction::Forward);
        let mut rows = Vec::new();
        for item in self.db.iterator_cf(self.family(table), mode).take(limit) {
            let (key, value) = item?;
            rows.push((key.to_vec(), value.to_vec()));
        }
        Ok(rows)
    }

    fn last(&self, table: Table) -> Result<Option<crate::journal::Row>, Error> {
        match self
            .db
            .iterator_cf(self.family(table), IteratorMode::End)
            .next()
        {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((key.to_vec(), value.to_vec())))
            }
            None => Ok(None),
        }
    }
}

impl Drop for Store {
    /// Lets the committer finish what is queued, then stops it.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

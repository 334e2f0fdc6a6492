//! RocksDB behind the `Journal` contract, with group commit.
//!
//! One column family per `Table`. Commits go through a bounded crossbeam
//! channel (full: `overloaded`) to one committer thread, which gathers what is
//! queued and writes the group in two parts: the logged tables (audit records,
//! remembered answers: `Table::is_logged`) as one WriteBatch with the WAL
//! synced, the only wait for the disk. Then the durable ticket moves forward
//! and the answers go out (`write_and_answer`), and the state tables follow
//! as one WriteBatch without the WAL, carrying `meta/applied_seq`, the last
//! audit sequence they reflect, before the next group (`wait_written`).
//! The state tables reach the disk by checkpoints: an atomic flush of every
//! column family (`set_atomic_flush`) every `CHECKPOINT_COMMITS_MAX` commits
//! or `CHECKPOINT_INTERVAL_MS`, so the state on disk is always one consistent
//! cut with its `applied_seq`; start-up re-applies the audit records after it.
//! If a write fails, the store stops taking writes (fail-stop): memory may be
//! ahead of disk, so the daemon must restart and recover from what is on disk.
//!
//! A full disk is kept from ever reaching that point: a watcher thread reads
//! the filesystem's free space every `SPACE_CHECK_MS`, and while it is under
//! the reserve (`STORAGE_FREE_BYTES_MIN`, or the one given to `open_with`)
//! `submit` refuses new commits with `storage_unavailable` before the ledger
//! changes anything. Commits already queued still fit in the reserve, so
//! nothing is left waiting and reads go on; once space is freed, writes are
//! taken again. A write that fails anyway still fail-stops.
//!
//! The WAL is recovered with `TolerateCorruptedTailRecords`: every logged
//! write is synced, so only a torn last record (never acknowledged) is
//! dropped; damage anywhere else stops the start with RocksDB's error naming
//! the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBRecoveryMode, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};

use crate::error::{Error, Reason, Refusal};
use crate::limits::{
    CHECKPOINT_COMMITS_MAX, CHECKPOINT_INTERVAL_MS, CHECKPOINT_TAIL_MAX, COMMIT_QUEUE_DEPTH_MAX,
    GROUP_COMMIT_BATCHES_MAX, GROUP_LINGER_US_MAX, READ_ONLY_OPEN_ATTEMPTS_MAX,
    READ_ONLY_OPEN_RETRY_MS, REPLICA_PIPELINE_GROUPS_MAX, SPACE_CHECK_MS, STORAGE_FREE_BYTES_MIN,
};
use crate::metric_names;
use crate::store::journal::{self, Commit, Durability, Journal, Put, Table};
use crate::store::replica::Replica;

/// The replica the committer hands each group to, once set (replicated mode).
type ReplicaSlot = Arc<parking_lot::RwLock<Option<Arc<dyn Replica>>>>;

/// How far commits have become durable, and whether the store failed.
#[derive(Default)]
struct DurableState {
    /// Every commit up to this ticket is durable (its logged part synced).
    ticket: u64,
    /// Every commit up to this ticket has its state in the memtables too.
    written: u64,
    failed: Option<String>,
}

#[derive(Default)]
struct Durable {
    state: Mutex<DurableState>,
    /// Wakes threads in `wait_durable`.
    changed: Condvar,
    /// Wakes threads in `wait_written`.
    state_written: Condvar,
    /// The same news for async waiters (`Journal::durability`).
    published: tokio::sync::watch::Sender<Durability>,
    /// Frames being applied now (their commits are about to arrive).
    applying: AtomicUsize,
    /// Woken each time a frame ends (`frame_applied`): a committer lingering
    /// for a group waits here, so it wakes once a frame, not once a commit.
    frame_ended: (Mutex<()>, Condvar),
    /// Held by the committer from a group's logged write to its state write,
    /// and by a backup while it flushes: a backup never holds a group's
    /// audit records without its state.
    writing: Mutex<()>,
    /// Woken when a checkpoint completes (`CommitterFigures::checkpointed_commits`
    /// moved), for a committer waiting with the tail at its bound.
    checkpointed: Condvar,
}

/// Figures of the committer, for metrics and benchmarks.
#[derive(Default, Clone, Copy, Debug)]
pub struct CommitterFigures {
    pub writes: u64,
    pub commits: u64,
    pub sync_ns_total: u64,
    /// Checkpoints started (atomic flushes of the state with `applied_seq`).
    pub checkpoints: u64,
    /// Commits the last completed checkpoint holds (of `commits`): the
    /// tail a kill -9 leaves to re-apply is `commits` less this, at most
    /// `CHECKPOINT_TAIL_MAX` and a group.
    pub checkpointed_commits: u64,
    /// Time the committer waited for a checkpoint (the tail at its bound).
    pub checkpoint_wait_ns: u64,
}

pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    sender: Option<Sender<Queued>>,
    durable: Arc<Durable>,
    figures: Arc<Mutex<CommitterFigures>>,
    committer: Option<JoinHandle<()>>,
    replica: ReplicaSlot,
    space: Arc<Space>,
    /// Dropped to stop the space watcher.
    space_stop: Option<Sender<()>>,
    space_watcher: Option<JoinHandle<()>>,
}

/// The data filesystem's free space as last measured, and the reserve.
struct Space {
    free_bytes: AtomicU64,
    free_bytes_min: u64,
}

impl Space {
    fn is_low(&self) -> bool {
        self.free_bytes.load(Ordering::Relaxed) < self.free_bytes_min
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` a buffer of the
    // type statvfs(3) fills; it is read only after a successful call.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat.assume_init()
    };
    // The field types differ between platforms (u32 on 32-bit Linux).
    #[allow(clippy::useless_conversion)]
    let (blocks, block_bytes) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(blocks.saturating_mul(block_bytes))
}

/// Measures the free space every `SPACE_CHECK_MS` until `stop` is dropped,
/// logging when it goes under the reserve and when it is back.
fn run_space_watcher(path: &Path, space: &Space, stop: &Receiver<()>) {
    loop {
        let was_low = space.is_low();
        match free_bytes(path) {
            Ok(free) => space.free_bytes.store(free, Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "cannot read the data filesystem's free space"),
        }
        let free = space.free_bytes.load(Ordering::Relaxed);
        match (was_low, space.is_low()) {
            (false, true) => tracing::error!(
                free_bytes = free,
                reserve_bytes = space.free_bytes_min,
                "the data filesystem is nearly full; writes are refused until space is freed"
            ),
            (true, false) => {
                tracing::warn!(free_bytes = free, "space freed; writes are taken again")
            }
            _ => {}
        }
        match stop.recv_timeout(Duration::from_millis(SPACE_CHECK_MS)) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// RocksDB's reason a store did not open, with the folder; its corruption
/// errors name the damaged file.
/// A corrupt WAL record is reported without its file: the write-ahead logs
/// replayed at open are then named.
fn open_error(path: &Path, error: &rocksdb::Error) -> Error {
    let mut message = format!("the store in {} does not open: {error}", path.display());
    if error.kind() != rocksdb::ErrorKind::Corruption {
        return Error::Storage(message);
    }
    if !message.contains(&format!("{}/", path.display())) {
        let mut logs: Vec<String> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".log"))
            .collect();
        logs.sort();
        message += &format!(
            " (no file named; the write-ahead logs replayed at open: {})",
            logs.join(", ")
        );
    }
    Error::Corrupt(message)
}

/// Bytes of an SST file written between two hand-overs to the disk.
const SST_BYTES_PER_SYNC: u64 = 1 << 20;

/// The database options of the store (and of the engine limit).
pub fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_paranoid_checks(true);
    options.increase_parallelism(2);
    options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    // The state tables are written without the WAL: every flush (a
    // checkpoint, or RocksDB's own when a memtable fills) writes every
    // column family at one point of the write order, so the state on disk is
    // always a whole number of groups, with their `meta/applied_seq`.
    options.set_atomic_flush(true);
    // SST files (flushes, compactions) are handed to the disk every MiB as
    // they are written. Otherwise their closing sync writes tens of MB at
    // once, and every WAL sync (so every acknowledgement) queues behind it:
    // 37 ms at the first flush of a peak here, against 0.5 ms normally.
    options.set_bytes_per_sync(SST_BYTES_PER_SYNC);
    // Flushes and compactions run in the idle scheduling class: see
    // `idle_background_threads`, called once the database is open.
    options
}

/// Puts RocksDB's background threads (flushes and compactions, named
/// `rocksdb:low` and `rocksdb:high`, a pool shared by every database of the
/// process and started when one opens) in the `SCHED_IDLE` class; returns
/// how many it found. They take what the committer and the network leave:
/// a flush is a core for 100 to 270 ms, and at normal priority the answers
/// of that second waited for it. At nice 19 (RocksDB's own "low" priority,
/// this store's choice until D120) a flush that got the CPU ran its whole
/// time slice before a woken worker, and the answers' p99.9 showed it; an
/// idle-class thread gives way at once. RocksDB is never asked to change
/// their priority, so it never sets it back. A flush starved for long
/// would fill the memtables and stall writes, which frees the CPU for it;
/// the tail bound (D115) holds either way. Their I/O keeps its class: an
/// idle I/O class could starve under a steady stream of syncs.
pub fn idle_background_threads() -> usize {
    let mut idle = 0;
    for tid in background_threads() {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param; a thread that ended
        // meanwhile makes the call fail (ESRCH), which is only logged.
        if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } == 0 {
            idle += 1;
        } else {
            tracing::warn!(
                tid,
                error = %std::io::Error::last_os_error(),
                "a RocksDB background thread stays at normal priority"
            );
        }
    }
    idle
}

/// The thread ids of RocksDB's background threads in this process.
fn background_threads() -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("rocksdb:"))
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}

/// Bytes of a data block of the tables that grow with the ledger (RocksDB's
/// default is 4 KiB): every open SST file keeps its index in memory, one
/// entry a block, so 16 KiB blocks hold a quarter of it (D116).
const BLOCK_BYTES: usize = 16 << 10;

/// Share of a `requests` memtable's size given to its whole-key bloom
/// filter (RocksDB's advice: 0.1 or less). A checkpoint every
/// `CHECKPOINT_COMMITS_MAX` commits flushes the memtable long before its
/// 64 MiB fill: 2% (1.3 MiB) is still over 70 bits a key at
/// `CHECKPOINT_TAIL_MAX` keys (one a commit).
const REQUESTS_MEMTABLE_BLOOM_RATIO: f64 = 0.02;

/// One column family per table, with its options: `BLOCK_BYTES` blocks for
/// all. Requests are the one table read by key while serving, mostly for
/// ids never seen: a bloom filter answers most of those without reading a
/// block (D116, D117). The others are read by key only for an answer's
/// details and in long scans at start-up.
pub fn families() -> impl Iterator<Item = ColumnFamilyDescriptor> {
    Table::ALL.iter().map(|table| {
        let mut options = Options::default();
        let mut blocks = BlockBasedOptions::default();
        if *table == Table::Requests {
            blocks.set_bloom_filter(10.0, false);
            // The memtables' own filter: a lookup of a new id skips the
            // skiplist walks of the active and immutable memtables (7% of
            // the daemon's CPU at its closed-loop limit without it, D119).
            options.set_memtable_prefix_bloom_ratio(REQUESTS_MEMTABLE_BLOOM_RATIO);
            options.set_memtable_whole_key_filtering(true);
        }
        blocks.set_block_size(BLOCK_BYTES);
        options.set_block_based_table_factory(&blocks);
        ColumnFamilyDescriptor::new(table.name(), options)
    })
}

impl Store {
    /// Opens (or creates) the store in `path` and starts the committer.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, STORAGE_FREE_BYTES_MIN)
    }

    /// `open` with another free-space reserve, bytes (tests use small filesystems).
    pub fn open_with(path: &Path, free_bytes_min: u64) -> Result<Store, Error> {
        Store::open_injected(path, free_bytes_min, injected()?)
    }

    fn open_injected(path: &Path, free_bytes_min: u64, injected: Injected) -> Result<Store, Error> {
        let db = DB::open_cf_descriptors(&options(), path, families())
            .map_err(|error| open_error(path, &error))?;
        idle_background_threads();
        mark_applied(&db)?;
        let db = Arc::new(db);
        let space = Arc::new(Space {
            free_bytes: AtomicU64::new(free_bytes(path)?),
            free_bytes_min,
        });
        let (space_stop, stopped) = crossbeam_channel::bounded(0);
        let space_watcher = {
            let (path, space) = (path.to_owned(), Arc::clone(&space));
            std::thread::Builder::new()
                .name("space-watcher".into())
                .spawn(move || run_space_watcher(&path, &space, &stopped))?
        };
        let (sender, receiver) = crossbeam_channel::bounded(COMMIT_QUEUE_DEPTH_MAX);
        let durable = Arc::new(Durable::default());
        let figures = Arc::new(Mutex::new(CommitterFigures::default()));
        let replica = ReplicaSlot::default();
        let committer = {
            let (db, durable, figures, replica) = (
                Arc::clone(&db),
                Arc::clone(&durable),
                Arc::clone(&figures),
                Arc::clone(&replica),
            );
            let (wanted, checkpoints) = crossbeam_channel::bounded(1);
            let checkpointer = {
                let (db, durable, figures, scratch) = (
                    Arc::clone(&db),
                    Arc::clone(&durable),
                    Arc::clone(&figures),
                    scratch_path(path),
                );
                std::thread::Builder::new()
                    .name("checkpointer".into())
                    .spawn(move || {
                        run_checkpointer(&db, &scratch, &checkpoints, &durable, &figures, injected)
                    })?
            };
            std::thread::Builder::new()
                .name("committer".into())
                .spawn(move || {
                    run_committer(
                        &db, &receiver, &durable, &figures, &replica, injected, &wanted,
                    );
                    drop(wanted);
                    let _ = checkpointer.join();
                })?
        };
        Ok(Store {
            db,
            path: path.to_owned(),
            sender: Some(sender),
            durable,
            figures,
            committer: Some(committer),
            replica,
            space,
            space_stop: Some(space_stop),
            space_watcher: Some(space_watcher),
        })
    }

    /// Opens an existing store for reading only (audit tools while the daemon
    /// serves or is stopped); it takes no commits.
    /// A folder written before a table existed (`classes`, `enrollments`)
    /// has no family for it: it is read as empty, as a daemon of this
    /// version would create it.
    ///
    /// A serving daemon checkpoints (flushes) and compacts meanwhile, and
    /// deletes the files that made obsolete: a write-ahead log once its
    /// flush is in the MANIFEST, an SST file once its compaction is. An open
    /// racing that fails on a missing file, or, worse, reads a MANIFEST from
    /// before a flush and then finds its log gone (records missing from the
    /// view). RocksDB records every such change in the MANIFEST before it
    /// deletes a file, so an open during which the MANIFEST did not change
    /// (`manifest_stamp` equal before and after) read one whole version; any
    /// other open is dropped and taken again, up to
    /// `READ_ONLY_OPEN_ATTEMPTS_MAX` times. Every table file is opened (and
    /// so held) during the open, so later deletions do not matter.
    pub fn open_read_only(path: &Path) -> Result<Store, Error> {
        let mut attempt = 1;
        loop {
            let before = manifest_stamp(path);
            let opened = Store::open_read_only_once(path);
            if manifest_stamp(path) == before {
                return opened;
            }
            if attempt >= READ_ONLY_OPEN_ATTEMPTS_MAX {
                return Err(Error::Storage(format!(
                    "the store in {} changed under each of {attempt} read-only opens \
                     (a daemon flushing it); retry",
                    path.display()
                )));
            }
            drop(opened);
            attempt += 1;
            std::thread::sleep(Duration::from_millis(READ_ONLY_OPEN_RETRY_MS));
        }
    }

    fn open_read_only_once(path: &Path) -> Result<Store, Error> {
        let present = DB::list_cf(&Options::default(), path).unwrap_or_default();
        let names: Vec<&str> = Table::ALL
            .iter()
            .map(|table| table.name())
            .filter(|name| present.iter().any(|found| found == name))
            .collect();
        let mut options = Options::default();
        options.set_paranoid_checks(true);
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        // Every table file opened at open, held while the store is read.
        options.set_max_open_files(-1);
        let db = DB::open_cf_for_read_only(&options, path, names, false)
            .map_err(|error| open_error(path, &error))?;
        Ok(Store {
            db: Arc::new(db),
            path: path.to_owned(),
            sender: None,
            durable: Arc::new(Durable::default()),
            figures: Arc::new(Mutex::new(CommitterFigures::default())),
            committer: None,
            replica: ReplicaSlot::default(),
            space: Arc::new(Space {
                free_bytes: AtomicU64::new(0),
                free_bytes_min: 0,
            }),
            space_stop: None,
            space_watcher: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands every later group to `replica` before writing it (replicated
    /// mode, `store::replica`); set once at start-up, before any commit.
    pub fn set_replica(&self, replica: Arc<dyn Replica>) {
        *self.replica.write() = Some(replica);
    }

    /// Fails the store on purpose (replicated mode stepping down): every
    /// commit waiting and every later one is answered `outcome_unknown`
    /// with `why`, as after a failed write, and nothing more is written.
    pub fn fail_stop(&self, why: &str) {
        self.durable.fail(why);
    }

    /// Whether a write failed and the store refuses writes until restart.
    pub fn failed(&self) -> bool {
        self.durable.state.lock().failed.is_some()
    }

    /// Commits waiting for the committer.
    pub fn queue_depth(&self) -> usize {
        self.sender.as_ref().map_or(0, Sender::len)
    }

    /// True while the filesystem's free space is under the reserve (new
    /// writes are refused `storage_unavailable`).
    pub fn space_is_low(&self) -> bool {
        self.space.is_low()
    }

    /// Writes every memtable to SST files in one atomic flush and waits: a
    /// checkpoint of the state (the clean stop; tests). Taken between groups.
    pub fn flush(&self) -> Result<(), Error> {
        let _writing = self.durable.writing.lock();
        checkpoint(&self.db, &scratch_path(&self.path))
    }

    pub fn committer_figures(&self) -> CommitterFigures {
        *self.figures.lock()
    }

    /// Takes a consistent on-disk copy (RocksDB checkpoint) while serving.
    /// RocksDB flushes the memtables first (one atomic flush); it is taken
    /// between groups, so the copy's state reflects every audit record in it.
    pub fn checkpoint(&self, out: &Path) -> Result<(), Error> {
        let _writing = self.durable.writing.lock();
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(out)?;
        Ok(())
    }

    /// A RocksDB property of the whole database, e.g. `rocksdb.is-write-stopped`
    /// (read on the default family, which is where RocksDB answers DB-wide ones).
    pub fn property(&self, name: &str) -> Option<u64> {
        self.db.property_int_value(name).ok().flatten()
    }

    /// A per-family RocksDB property of one table, e.g.
    /// `rocksdb.estimate-num-keys` of `requests`.
    pub fn table_property(&self, table: Table, name: &str) -> Option<u64> {
        self.db
            .property_int_value_cf(self.family(table), name)
            .ok()
            .flatten()
    }

    /// A per-family RocksDB property summed over every table's family, e.g.
    /// `rocksdb.total-sst-files-size`: the tables live in their own families,
    /// so the default family alone reads 0 while every SST file is elsewhere.
    /// None when no family answers.
    pub fn property_summed(&self, name: &str) -> Option<u64> {
        Table::ALL
            .iter()
            .filter_map(|table| self.table_property(*table, name))
            .reduce(u64::saturating_add)
    }

    /// The data filesystem's free space as last measured (every
    /// `SPACE_CHECK_MS`), bytes.
    pub fn free_bytes(&self) -> u64 {
        self.space.free_bytes.load(Ordering::Relaxed)
    }

    /// The free space under which writes are refused, bytes.
    pub fn free_bytes_min(&self) -> u64 {
        self.space.free_bytes_min
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

    /// The family to read `table` from; `None` only in a read-only store of
    /// a folder written before the table existed (`open_read_only`).
    fn read_family(&self, table: Table) -> Option<&rocksdb::ColumnFamily> {
        let family = self.db.cf_handle(table.name());
        assert!(
            family.is_some() || self.sender.is_none(),
            "a writable store opens every table's family"
        );
        family
    }
}

/// Writes `meta/applied_seq` (synced, with the log) when the store has none:
/// 0 for a new store, the audit head for a store of layout 1 or 2 (its state
/// was written with every record). From then on a crash before the first
/// checkpoint finds the sequence the state on disk reflects.
fn mark_applied(db: &DB) -> Result<(), Error> {
    let family = |table: Table| {
        db.cf_handle(table.name())
            .expect("every table's family is opened")
    };
    if db
        .get_cf(family(Table::Meta), journal::APPLIED_SEQ)?
        .is_some()
    {
        return Ok(());
    }
    let head = match db
        .iterator_cf(family(Table::Audit), IteratorMode::End)
        .next()
    {
        None => 0,
        Some(item) => {
            let (key, _) = item?;
            let bytes: [u8; 8] = key[..]
                .try_into()
                .map_err(|_| Error::Corrupt("the last audit record's key is not 8 bytes".into()))?;
            u64::from_be_bytes(bytes)
        }
    };
    if head > 0 {
        tracing::info!(
            audit_seq = head,
            "a store of layout 2 or older: its state reflects every audit record (meta/applied_seq written)"
        );
    }
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.put_cf_opt(
        family(Table::Meta),
        journal::APPLIED_SEQ,
        head.to_be_bytes(),
        &sync,
    )?;
    Ok(())
}

/// A commit in the committer's queue, with when it was submitted.
type Queued = (Instant, Commit);

/// `first` and what follows it: everything queued, and while frames are being
/// applied, what they queue until they end or `linger` (`GROUP_LINGER_US_MAX`)
/// passes. It sleeps until a frame ends rather than until the next commit: a
/// frame of 8 redeems wakes it once, not 8 times.
fn gather(
    receiver: &Receiver<Queued>,
    first: Commit,
    durable: &Durable,
    linger: Duration,
) -> Vec<Commit> {
    let mut group = vec![first];
    let started = Instant::now();
    while group.len() < GROUP_COMMIT_BATCHES_MAX {
        if let Ok((_, commit)) = receiver.try_recv() {
            group.push(commit);
            continue;
        }
        let left = linger.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let (lock, frame_ended) = &durable.frame_ended;
        let mut guard = lock.lock();
        // Checked under the lock `frame_applied` takes to notify: a frame
        // that ends after this check finds the committer waiting.
        if durable.applying.load(Ordering::SeqCst) == 0 {
            // Every frame ended: what they queued is in the channel now.
            drop(guard);
            group.extend(
                receiver
                    .try_iter()
                    .map(|(_, commit)| commit)
                    .take(GROUP_COMMIT_BATCHES_MAX - group.len()),
            );
            break;
        }
        frame_ended.wait_for(&mut guard, left);
    }
    group
}

/// One WriteBatch of `puts`.
pub fn write_batch(db: &DB, puts: &[&Put]) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for put in puts {
        let family = db
            .cf_handle(put.table.name())
            .expect("every table's family is opened");
        match &put.value {
            Some(value) => batch.put_cf(family, &put.key, value),
            None => batch.delete_cf(family, &put.key),
        }
    }
    batch
}

impl Durable {
    /// Changes the state under its lock, then tells every waiter: threads
    /// in `wait_durable` and async waiters on `published`.
    fn update(&self, change: impl FnOnce(&mut DurableState)) {
        let mut state = self.state.lock();
        change(&mut state);
        let now = Durability {
            ticket: state.ticket,
            failed: state.failed.is_some(),
        };
        drop(state);
        self.changed.notify_all();
        self.state_written.notify_all();
        self.published.send_replace(now);
    }

    /// Blocks on `condvar` until `reached` holds; Err: why the store failed
    /// first (`reached` is checked first: what it waits for may be done).
    fn wait(
        &self,
        condvar: &Condvar,
        reached: impl Fn(&DurableState) -> bool,
    ) -> Result<(), String> {
        let mut state = self.state.lock();
        loop {
            if reached(&state) {
                return Ok(());
            }
            if let Some(why) = &state.failed {
                return Err(why.clone());
            }
            condvar.wait(&mut state);
        }
    }

    /// A frame ended: its commits are queued; a lingering committer wakes.
    fn frame_applied(&self) {
        self.applying.fetch_sub(1, Ordering::SeqCst);
        let (lock, frame_ended) = &self.frame_ended;
        let _guard = lock.lock();
        frame_ended.notify_one();
    }

    /// Marks the store failed (once) and tells every waiter.
    fn fail(&self, why: &str) {
        self.update(|state| {
            state.failed.get_or_insert_with(|| why.to_owned());
        });
    }
}

/// Fails the store if the committer thread ends by a panic, so no waiter
/// waits forever for a ticket that will never be written.
struct FailOnPanic<'a>(&'a Durable);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the committer stopped by a panic");
        }
    }
}

/// Fault injection for tests of a failed sync (`VOUCHERD_INJECT_SYNC_FAILURE_AFTER=N`):
/// the synced write after N good ones reaches RocksDB but is reported failed,
/// as an `fdatasync` error would leave it (on disk or not, nobody knows).
/// Unset in production; a value that is not a count is refused at start.
const INJECT_SYNC_FAILURE_AFTER: &str = "VOUCHERD_INJECT_SYNC_FAILURE_AFTER";
/// Crash injection for tests of recovery (`VOUCHERD_INJECT_CRASH_AFTER_LOG=N`):
/// the process aborts right after its Nth synced log write, before that
/// group's state write, as a kill -9 between a group's two parts would.
const INJECT_CRASH_AFTER_LOG: &str = "VOUCHERD_INJECT_CRASH_AFTER_LOG";
/// Crash injection (`VOUCHERD_INJECT_CRASH_IN_CHECKPOINT=N`): the process
/// aborts while its Nth checkpoint's atomic flush is being written.
const INJECT_CRASH_IN_CHECKPOINT: &str = "VOUCHERD_INJECT_CRASH_IN_CHECKPOINT";
/// Test setting (`VOUCHERD_INJECT_CHECKPOINT_EVERY=N`): a checkpoint every N
/// commits instead of every `CHECKPOINT_COMMITS_MAX`, so a test reaches its
/// checkpoints in a few requests.
const INJECT_CHECKPOINT_EVERY: &str = "VOUCHERD_INJECT_CHECKPOINT_EVERY";
/// Test setting (`VOUCHERD_INJECT_CHECKPOINT_TAIL=N`): the tail bound is N
/// commits instead of `CHECKPOINT_TAIL_MAX`.
const INJECT_CHECKPOINT_TAIL: &str = "VOUCHERD_INJECT_CHECKPOINT_TAIL";
/// Fault injection (`VOUCHERD_INJECT_CHECKPOINT_DELAY_MS=N`): each
/// checkpoint starts N ms late, as a flush starved of CPU would finish.
const INJECT_CHECKPOINT_DELAY_MS: &str = "VOUCHERD_INJECT_CHECKPOINT_DELAY_MS";

/// The MANIFEST a store's `CURRENT` names, and its length: RocksDB appends
/// every flush, compaction and file deletion to it (`open_read_only`).
fn manifest_stamp(path: &Path) -> Option<(String, u64)> {
    let current = std::fs::read_to_string(path.join("CURRENT")).ok()?;
    let name = current.trim().to_owned();
    let bytes = std::fs::metadata(path.join(&name)).ok()?.len();
    Some((name, bytes))
}

/// The injected faults of one store (all `None` in production).
#[derive(Clone, Copy, Default)]
struct Injected {
    sync_failure_after: Option<u64>,
    crash_after_log: Option<u64>,
    crash_in_checkpoint: Option<u64>,
    checkpoint_every: Option<u64>,
    checkpoint_tail: Option<u64>,
    checkpoint_delay_ms: Option<u64>,
    /// Unit tests only: each group's state part is written this late.
    state_write_delay_ms: Option<u64>,
}

fn injected_count(name: &str) -> Result<Option<u64>, Error> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::InvalidInput(format!("{name}={text:?} is not a count"))),
    }
}

fn injected() -> Result<Injected, Error> {
    Ok(Injected {
        sync_failure_after: injected_count(INJECT_SYNC_FAILURE_AFTER)?,
        crash_after_log: injected_count(INJECT_CRASH_AFTER_LOG)?,
        crash_in_checkpoint: injected_count(INJECT_CRASH_IN_CHECKPOINT)?,
        checkpoint_every: injected_count(INJECT_CHECKPOINT_EVERY)?,
        checkpoint_tail: injected_count(INJECT_CHECKPOINT_TAIL)?,
        checkpoint_delay_ms: injected_count(INJECT_CHECKPOINT_DELAY_MS)?,
        state_write_delay_ms: None,
    })
}

/// One atomic flush of every column family that holds data, waited for.
/// RocksDB 7.8's C API flushes one family per call (`rocksdb_flush_cf`;
/// `rocksdb_flush_cfs` came later), and with `atomic_flush` that flushes that
/// family alone. Taking a RocksDB checkpoint flushes first, and with
/// `atomic_flush` it selects every family with data for one atomic flush: so
/// a checkpoint is made into a scratch folder beside the store (hard links,
/// a copy of the MANIFEST) and removed. Checked by
/// `a_checkpoint_writes_out_every_family_together`.
fn checkpoint(db: &DB, scratch: &Path) -> Result<(), Error> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    let made = rocksdb::checkpoint::Checkpoint::new(db)?.create_checkpoint(scratch);
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    made?;
    Ok(())
}

/// The scratch folder of the store in `path`'s checkpoints (beside it, so
/// hard links work; never inside RocksDB's own folder).
fn scratch_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoint");
    path.with_file_name(name)
}

/// Takes a checkpoint each time the committer asks (`wanted`), until the
/// channel closes. Runs beside the committer: RocksDB cuts the memtables of
/// every family between two write batches, and each state batch carries its
/// `meta/applied_seq`, so the cut is consistent whatever the committer does.
/// A completed checkpoint holds at least the commits written when it
/// started (`checkpointed_commits`, and the committer waiting on it is
/// woken). A failed one fails the store (fail-stop): the state could no
/// longer be written out, the tail would grow without bound, and a restart
/// rebuilds it from the log.
fn run_checkpointer(
    db: &DB,
    scratch: &Path,
    wanted: &Receiver<()>,
    durable: &Durable,
    figures: &Mutex<CommitterFigures>,
    injected: Injected,
) {
    while wanted.recv().is_ok() {
        if let Some(delay) = injected.checkpoint_delay_ms {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let (number, holds) = {
            let mut figures = figures.lock();
            figures.checkpoints += 1;
            (figures.checkpoints, figures.commits)
        };
        let started = Instant::now();
        if injected.crash_in_checkpoint == Some(number) {
            std::thread::scope(|scope| {
                scope.spawn(|| checkpoint(db, scratch));
                // Let the flush get under way, then die in the middle of it.
                std::thread::sleep(Duration::from_millis(5));
                tracing::error!(
                    "injected crash during a checkpoint ({INJECT_CRASH_IN_CHECKPOINT})"
                );
                std::process::abort();
            });
        }
        match checkpoint(db, scratch) {
            Ok(()) => {
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "state checkpointed"
                );
                let mut figures = figures.lock();
                figures.checkpointed_commits = figures.checkpointed_commits.max(holds);
                durable.checkpointed.notify_all();
            }
            Err(error) => {
                tracing::error!(%error, "a checkpoint failed; the store takes no more writes");
                durable.fail(&format!("a checkpoint of the state failed: {error}"));
                durable.checkpointed.notify_all();
            }
        }
    }
}

/// Waits, before a group is written, until fewer than `tail_max` commits
/// are written after the last completed checkpoint (asking for one
/// meanwhile), so the tail never passes `tail_max` and a group; false if
/// the store failed instead.
fn wait_for_tail_room(
    durable: &Durable,
    figures: &Mutex<CommitterFigures>,
    checkpoints: &Sender<()>,
    tail_max: u64,
) -> bool {
    let mut figures_now = figures.lock();
    if figures_now.commits - figures_now.checkpointed_commits < tail_max {
        return true;
    }
    metrics::counter!(metric_names::CHECKPOINT_WAITS).increment(1);
    let started = Instant::now();
    let mut warned = started;
    while figures_now.commits - figures_now.checkpointed_commits >= tail_max {
        if durable.state.lock().failed.is_some() {
            return false;
        }
        let _ = checkpoints.try_send(());
        durable.checkpointed.wait_for(
            &mut figures_now,
            Duration::from_millis(CHECKPOINT_WAIT_POLL_MS),
        );
        if warned.elapsed() >= Duration::from_secs(5) {
            tracing::warn!(
                waited_ms = started.elapsed().as_millis() as u64,
                "writes wait for a checkpoint of the state (the tail to re-apply at its bound)"
            );
            warned = Instant::now();
        }
    }
    figures_now.checkpoint_wait_ns += started.elapsed().as_nanos() as u64;
    true
}

/// How often a committer waiting for a checkpoint looks again, ms.
const CHECKPOINT_WAIT_POLL_MS: u64 = 100;

/// Writes a group's logged tables (audit records, remembered answers) in
/// one synced batch; the nanoseconds it took. Err: the store must fail (the
/// message says why).
fn write_logged(
    db: &DB,
    logged: &[&Put],
    group_len: usize,
    figures: &Mutex<CommitterFigures>,
    injected: Injected,
) -> Result<u64, String> {
    if logged.is_empty() {
        return Ok(0);
    }
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let started = Instant::now();
    let written = db.write_opt(write_batch(db, logged), &sync);
    let elapsed = started.elapsed();
    metrics::histogram!(metric_names::FSYNC_SECONDS).record(elapsed.as_secs_f64());
    metrics::histogram!(metric_names::COMMIT_GROUP).record(group_len as f64);
    if let Err(error) = written {
        tracing::error!(%error, "a synced write failed; the store takes no more writes");
        return Err(error.into_string());
    }
    let writes = figures.lock().writes;
    if injected.sync_failure_after == Some(writes) {
        tracing::error!(
            "injected sync failure ({INJECT_SYNC_FAILURE_AFTER}); the store takes no more writes"
        );
        return Err("injected sync failure".into());
    }
    if injected.crash_after_log == Some(writes + 1) {
        tracing::error!("injected crash after a synced log write ({INJECT_CRASH_AFTER_LOG})");
        std::process::abort();
    }
    Ok(elapsed.as_nanos() as u64)
}

/// A group's state is in the memtables too: the figures move (a
/// checkpoint started from now on holds it) and readers of the state
/// tables waiting in `wait_written` go on.
fn group_written(
    durable: &Durable,
    figures: &Mutex<CommitterFigures>,
    group: &[Commit],
    sync_ns: u64,
    logged: bool,
) {
    let last_ticket = group.last().map_or(0, |commit| commit.ticket);
    {
        let mut figures = figures.lock();
        figures.writes += u64::from(logged);
        figures.commits += group.len() as u64;
        figures.sync_ns_total += sync_ns;
    }
    durable.state.lock().written = last_ticket;
    durable.state_written.notify_all();
}

/// When the state was last checkpointed and how many commits were written
/// since (the committer's and, in replicated mode, the writer's writes).
struct Cadence {
    since: usize,
    at: Instant,
    commits_max: usize,
}

impl Cadence {
    /// `commits` more written: a checkpoint when enough are, or enough time passed.
    fn written(&mut self, commits: usize, checkpoints: &Sender<()>) {
        self.since += commits;
        if self.since >= self.commits_max
            || self.at.elapsed() >= Duration::from_millis(CHECKPOINT_INTERVAL_MS)
        {
            let _ = checkpoints.try_send(());
            self.since = 0;
            self.at = Instant::now();
        }
    }
}

fn run_committer(
    db: &DB,
    receiver: &Receiver<Queued>,
    durable: &Durable,
    figures: &Mutex<CommitterFigures>,
    replica: &ReplicaSlot,
    injected: Injected,
    checkpoints: &Sender<()>,
) {
    let _fail_on_panic = FailOnPanic(durable);
    let interval = Duration::from_millis(CHECKPOINT_INTERVAL_MS);
    let tail_max = injected
        .checkpoint_tail
        .unwrap_or(CHECKPOINT_TAIL_MAX as u64);
    let cadence = Mutex::new(Cadence {
        since: 0,
        at: Instant::now(),
        commits_max: injected
            .checkpoint_every
            .map_or(CHECKPOINT_COMMITS_MAX, |every| every.max(1) as usize),
    });
    // Replicated mode: groups sent to the replica go to the writer, which
    // settles them in order, then writes and answers each; a token per
    // group sent and not yet settled (`REPLICA_PIPELINE_GROUPS_MAX`).
    let (sent, unsettled) = crossbeam_channel::unbounded::<(Instant, Vec<Commit>)>();
    let (token_back, tokens) = crossbeam_channel::bounded(REPLICA_PIPELINE_GROUPS_MAX);
    for _ in 0..REPLICA_PIPELINE_GROUPS_MAX {
        token_back.send(()).expect("room for every token");
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("replica-writer".into())
            .spawn_scoped(scope, || {
                let _fail_on_panic = FailOnPanic(durable);
                for (queued_at, group) in unsettled.iter() {
                    let replica_now = replica.read().clone();
                    let settled = match &replica_now {
                        _ if durable.state.lock().failed.is_some() => Err(None),
                        Some(replica) => replica.settle().map_err(Some),
                        None => Err(Some("no replica to settle with".to_owned())),
                    };
                    match settled {
                        Ok(()) => {
                            if wait_for_tail_room(durable, figures, checkpoints, tail_max)
                                && write_and_answer(
                                    db,
                                    &group,
                                    queued_at,
                                    durable,
                                    figures,
                                    injected,
                                    replica_now.as_ref(),
                                )
                            {
                                cadence.lock().written(group.len(), checkpoints);
                            }
                        }
                        Err(Some(why)) => replication_failed(durable, &why),
                        Err(None) => {}
                    }
                    // Its token back only once it is written (or never will
                    // be): a group published and not yet in the store is
                    // among the last `REPLICA_PIPELINE_GROUPS_MAX` sent.
                    let _ = token_back.send(());
                }
            })
            .expect("the replica writer thread starts");
        let mut last_ticket = 0;
        loop {
            let wait = interval.saturating_sub(cadence.lock().at.elapsed());
            let (queued_at, first) = match receiver.recv_timeout(wait) {
                Ok(queued) => queued,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    let mut cadence = cadence.lock();
                    if cadence.since > 0 && durable.state.lock().failed.is_none() {
                        // Full: one is being taken, and it cuts after this point.
                        let _ = checkpoints.try_send(());
                        cadence.since = 0;
                    }
                    cadence.at = Instant::now();
                    continue;
                }
            };
            let linger = Duration::from_micros(GROUP_LINGER_US_MAX);
            let group = gather(receiver, first, durable, linger);
            for commit in &group {
                assert_eq!(
                    commit.ticket,
                    last_ticket + 1,
                    "commits arrive in ticket order"
                );
                last_ticket = commit.ticket;
            }
            if durable.state.lock().failed.is_some() {
                // Fail-stop: after a failed write nothing more is written, so
                // the disk never holds a later group without the one that failed.
                continue;
            }
            // Replicated mode: the group goes to the replica now and to the
            // disk once the replica holds it and every group before it, so
            // this store never holds what the replicated log lacks.
            let replica_now = replica.read().clone();
            if let Some(replica) = replica_now {
                if tokens.recv().is_err() {
                    break;
                }
                if durable.state.lock().failed.is_some() {
                    let _ = token_back.try_send(());
                    continue;
                }
                match replica.send(&group) {
                    Ok(()) => sent
                        .send((queued_at, group))
                        .expect("the writer runs while the committer does"),
                    Err(why) => {
                        let _ = token_back.try_send(());
                        replication_failed(durable, &why);
                    }
                }
                continue;
            }
            if wait_for_tail_room(durable, figures, checkpoints, tail_max)
                && write_and_answer(db, &group, queued_at, durable, figures, injected, None)
            {
                cadence.lock().written(group.len(), checkpoints);
            }
        }
        drop(sent);
    });
}

/// A group the replica did not take: it and every later group sent are
/// never written nor answered (their waiters hear `outcome_unknown`).
fn replication_failed(durable: &Durable, why: &str) {
    tracing::error!(%why, "replication failed; the store takes no more writes");
    durable.fail(&format!("replication failed: {why}"));
}

/// Writes a group and releases its answers, if the replica (when there is
/// one) still lets this node answer; false when the store failed instead.
///
/// The answers go out once the logged part is synced (D119): they rest on
/// the audit records alone, as recovery does. The state part follows
/// without the WAL, before the next group; readers of the state tables wait
/// for it (`wait_written`). Both parts are written under `writing`, so a
/// backup never holds a group's audit records without its state.
fn write_and_answer(
    db: &DB,
    group: &[Commit],
    queued_at: Instant,
    durable: &Durable,
    figures: &Mutex<CommitterFigures>,
    injected: Injected,
    replica: Option<&Arc<dyn Replica>>,
) -> bool {
    let writes = journal::last_writes(group);
    let (logged, state): (Vec<&Put>, Vec<&Put>) =
        writes.into_iter().partition(|put| put.table.is_logged());
    let _writing = durable.writing.lock();
    let sync_ns = match write_logged(db, &logged, group.len(), figures, injected) {
        Ok(sync_ns) => sync_ns,
        Err(why) => {
            durable.fail(&why);
            return false;
        }
    };
    if let Some(Err(why)) = replica.map(|replica| replica.may_answer()) {
        tracing::error!(%why, "written but not answered; the store takes no more writes");
        durable.fail(&format!("replication failed: {why}"));
        return false;
    }
    // The one place where a group becomes durable: everything that must
    // follow durability (answers, publishing the records) hangs here.
    let last_ticket = group.last().map_or(0, |commit| commit.ticket);
    // Counted before the answers go out: a scrape after an answer holds its group.
    metrics::histogram!(metric_names::COMMIT_WAIT_SECONDS)
        .record(queued_at.elapsed().as_secs_f64());
    durable.update(|state| state.ticket = last_ticket);
    if let Some(delay) = injected.state_write_delay_ms {
        std::thread::sleep(Duration::from_millis(delay));
    }
    if !state.is_empty() {
        let mut unlogged = WriteOptions::default();
        unlogged.disable_wal(true);
        if let Err(error) = db.write_opt(write_batch(db, &state), &unlogged) {
            tracing::error!(%error, "a state write failed; the store takes no more writes");
            durable.fail(&format!("a state write failed: {error}"));
            return false;
        }
    }
    drop(_writing);
    group_written(durable, figures, group, sync_ns, !logged.is_empty());
    true
}

impl Journal for Store {
    fn frame_started(&self) {
        self.durable.applying.fetch_add(1, Ordering::SeqCst);
    }

    fn frame_applied(&self) {
        self.durable.frame_applied();
    }

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
        if self.space.is_low() {
            return Err(Refusal::new(
                Reason::StorageUnavailable,
                format!(
                    "the data filesystem has {} bytes free, under the reserve of {} bytes; \
                     nothing was written; retry once space is freed",
                    self.space.free_bytes.load(Ordering::Relaxed),
                    self.space.free_bytes_min
                ),
            ));
        }
        match sender.try_send((Instant::now(), commit)) {
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
        self.durable
            .wait(&self.durable.changed, |state| state.ticket >= ticket)
            .map_err(|why| {
                // The commit was handed to the store before it failed: it may
                // be on disk (and replay at restart) or not. Nobody knows.
                Refusal::new(
                    Reason::OutcomeUnknown,
                    format!(
                        "the store failed after this change was handed to it ({why}); the daemon \
                         stops: retry the same id once it is back to get the real outcome"
                    ),
                )
            })
    }

    fn wait_written(&self, ticket: u64) -> Result<(), Refusal> {
        self.durable
            .wait(&self.durable.state_written, |state| state.written >= ticket)
            .map_err(|why| {
                Refusal::new(
                    Reason::StorageUnavailable,
                    format!("the store failed ({why}); the daemon stops"),
                )
            })
    }

    fn durability(&self) -> Option<tokio::sync::watch::Receiver<Durability>> {
        Some(self.durable.published.subscribe())
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let Some(family) = self.read_family(table) else {
            return Ok(None);
        };
        Ok(self.db.get_cf(family, key)?)
    }

    fn scan_between(
        &self,
        table: Table,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut crate::store::journal::Visit,
    ) -> Result<(), Error> {
        let mut options = rocksdb::ReadOptions::default();
        if let Some(to) = to {
            options.set_iterate_upper_bound(to.to_vec());
        }
        // A start-up scan reads everything once: keep it out of the block cache.
        options.fill_cache(false);
        let Some(family) = self.read_family(table) else {
            return Ok(());
        };
        // A raw iterator lends each row in place: no copy of key and value
        // per row (start-up reads tens of millions of them).
        let mut rows = self.db.raw_iterator_cf_opt(family, options);
        rows.seek(from);
        while let (Some(key), Some(value)) = (rows.key(), rows.value()) {
            visit(key, value)?;
            rows.next();
        }
        rows.status()?;
        Ok(())
    }

    fn range(
        &self,
        table: Table,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<crate::store::journal::Row>, Error> {
        let mode = IteratorMode::From(from, rocksdb::Direction::Forward);
        let mut rows = Vec::new();
        let Some(family) = self.read_family(table) else {
            return Ok(rows);
        };
        for item in self.db.iterator_cf(family, mode).take(limit) {
            let (key, value) = item?;
            rows.push((key.to_vec(), value.to_vec()));
        }
        Ok(rows)
    }

    fn last(&self, table: Table) -> Result<Option<crate::store::journal::Row>, Error> {
        let Some(family) = self.read_family(table) else {
            return Ok(None);
        };
        match self.db.iterator_cf(family, IteratorMode::End).next() {
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
        self.space_stop.take();
        if let Some(watcher) = self.space_watcher.take() {
            let _ = watcher.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that a folder written before the `classes` and `enrollments`
    /// tables existed (their families absent) opens read-only, with those
    /// tables read as empty and the others as stored; that a writable open
    /// then creates the families; and that an open naming only the older
    /// families then fails (a rollback needs a rebuild, D54).
    #[test]
    fn a_folder_without_the_class_tables_opens_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let older = [Table::Classes, Table::Enrollments];
        {
            let mut options = Options::default();
            options.create_if_missing(true);
            options.create_missing_column_families(true);
            let names = Table::ALL
                .iter()
                .filter(|table| !older.contains(table))
                .map(|table| table.name());
            let db = DB::open_cf(&options, dir.path(), names).unwrap();
            let meta = db.cf_handle(Table::Meta.name()).unwrap();
            db.put_cf(meta, b"key", b"value").unwrap();
        }
        let store = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(
            store.get(Table::Meta, b"key").unwrap(),
            Some(b"value".to_vec())
        );
        for table in older {
            assert_eq!(store.get(table, b"key").unwrap(), None);
            assert_eq!(store.last(table).unwrap(), None);
            assert!(store.range(table, &[], 10).unwrap().is_empty());
            let mut rows = 0;
            store
                .scan(table, &mut |_, _| {
                    rows += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!(rows, 0);
        }
        drop(store);
        let writable = Store::open_with(dir.path(), 0).unwrap();
        assert_eq!(writable.last(Table::Classes).unwrap(), None);
        drop(writable);
        // A build from before the class tables, naming only its families,
        // can no longer open the folder for writing (ops/runbook.md, Upgrade).
        let older_names = Table::ALL
            .iter()
            .filter(|table| !older.contains(table))
            .map(|table| table.name());
        assert!(DB::open_cf(&Options::default(), dir.path(), older_names).is_err());
    }

    fn commit(ticket: u64) -> Commit {
        Commit {
            ticket,
            puts: Vec::new(),
        }
    }

    /// A replica whose groups settle when the test says (`settles`), with
    /// the result it gives; counts what the committer sent.
    struct Gated {
        sent: AtomicUsize,
        settles: Receiver<Result<(), String>>,
    }

    impl Replica for Gated {
        fn send(&self, _group: &[Commit]) -> Result<(), String> {
            self.sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn settle(&self) -> Result<(), String> {
            self.settles.recv().expect("the test settles every group")
        }
        fn may_answer(&self) -> Result<(), String> {
            Ok(())
        }
    }

    fn numbered(ticket: u64) -> Commit {
        Commit {
            ticket,
            puts: vec![Put {
                table: Table::Audit,
                key: ticket.to_be_bytes().to_vec(),
                value: Some(b"record".to_vec()),
            }],
        }
    }

    /// Waits until the committer sent `count` groups to `replica`.
    fn wait_sent(replica: &Gated, count: usize) {
        let started = Instant::now();
        while replica.sent.load(Ordering::SeqCst) < count {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{count} groups not sent"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stores the commits one group each, with a replica that settles them
    /// as told: a store with the replica set and a sender of settlements.
    fn gated_store(dir: &Path) -> (Store, Arc<Gated>, Sender<Result<(), String>>) {
        let store = Store::open_with(dir, 0).unwrap();
        let (settle, settles) = crossbeam_channel::unbounded();
        let replica = Arc::new(Gated {
            sent: AtomicUsize::new(0),
            settles,
        });
        store.set_replica(replica.clone());
        (store, replica, settle)
    }

    /// Group N+1 is sent while group N is unsettled, at most
    /// `REPLICA_PIPELINE_GROUPS_MAX` groups at once; a group is written
    /// locally and answered only once settled, in order.
    #[test]
    fn the_committer_sends_ahead_and_writes_each_group_once_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let (store, replica, settle) = gated_store(dir.path());
        let groups = REPLICA_PIPELINE_GROUPS_MAX as u64 + 1;
        for ticket in 1..=groups {
            store.submit(numbered(ticket)).unwrap();
            wait_sent(&replica, (ticket as usize).min(REPLICA_PIPELINE_GROUPS_MAX));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            replica.sent.load(Ordering::SeqCst),
            REPLICA_PIPELINE_GROUPS_MAX,
            "no more groups unsettled than the bound"
        );
        assert_eq!(store.durable.state.lock().ticket, 0, "nothing answered");
        assert_eq!(store.get(Table::Audit, &1u64.to_be_bytes()).unwrap(), None);
        settle.send(Ok(())).unwrap();
        store.wait_durable(1).unwrap();
        assert!(store
            .get(Table::Audit, &1u64.to_be_bytes())
            .unwrap()
            .is_some());
        assert_eq!(store.get(Table::Audit, &2u64.to_be_bytes()).unwrap(), None);
        // Room again: the last group is sent.
        wait_sent(&replica, groups as usize);
        for _ in 1..groups {
            settle.send(Ok(())).unwrap();
        }
        store.wait_durable(groups).unwrap();
    }

    /// A group the replica fails is not written, and neither is any group
    /// sent after it: none of them is answered, the store takes no more.
    #[test]
    fn a_group_the_replica_fails_takes_every_later_group_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, replica, settle) = gated_store(dir.path());
        for ticket in 1..=3 {
            store.submit(numbered(ticket)).unwrap();
            wait_sent(&replica, ticket as usize);
        }
        settle.send(Ok(())).unwrap();
        settle
            .send(Err("refused: another leader appended".into()))
            .unwrap();
        store.wait_durable(1).unwrap();
        assert!(store.wait_durable(2).is_err());
        assert!(store.wait_durable(3).is_err());
        for ticket in [2u64, 3] {
            assert_eq!(
                store.get(Table::Audit, &ticket.to_be_bytes()).unwrap(),
                None
            );
        }
        assert_eq!(store.durable.state.lock().ticket, 1);
        assert!(store.submit(numbered(4)).is_err(), "no more writes taken");
        assert!(settle.is_empty(), "group 3 was never settled");
    }

    #[test]
    fn async_waiters_hear_of_durable_tickets_and_a_group_keeps_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), 0).unwrap();
        let mut durability = store.durability().expect("the store publishes durability");
        assert_eq!(*durability.borrow(), Durability::default());
        let digest = |value: &[u8]| Put {
            table: Table::Meta,
            key: b"state_digest".to_vec(),
            value: Some(value.to_vec()),
        };
        // Submitted together (one frame applying), so most likely one group:
        // either way the last write of the key is what is stored.
        store.frame_started();
        store
            .submit(Commit {
                ticket: 1,
                puts: vec![digest(b"first")],
            })
            .unwrap();
        store
            .submit(Commit {
                ticket: 2,
                puts: vec![digest(b"second")],
            })
            .unwrap();
        store.frame_applied();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let now = runtime
            .block_on(durability.wait_for(|now| now.settles(2)))
            .map(|now| *now)
            .unwrap();
        assert_eq!(
            now,
            Durability {
                ticket: 2,
                failed: false
            }
        );
        // Already durable and written: the blocking wait returns at once.
        store.wait_written(2).unwrap();
        assert_eq!(
            store.get(Table::Meta, b"state_digest").unwrap().as_deref(),
            Some(&b"second"[..])
        );
    }

    /// RocksDB's flushes and compactions run in the idle scheduling class,
    /// and stay there once they have run (RocksDB never resets it).
    #[test]
    fn background_threads_are_idle_class_before_and_after_a_flush() {
        let policies = || -> Vec<i32> {
            background_threads()
                .into_iter()
                // SAFETY: a plain query of a thread's policy.
                .map(|tid| unsafe { libc::sched_getscheduler(tid) })
                .filter(|policy| *policy >= 0)
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = policies();
        assert!(!before.is_empty(), "RocksDB's background threads run");
        assert!(before.iter().all(|p| *p == libc::SCHED_IDLE), "{before:?}");
        store
            .submit(Commit {
                ticket: 1,
                puts: vec![Put {
                    table: Table::Vouchers,
                    key: b"v".to_vec(),
                    value: Some(b"1".to_vec()),
                }],
            })
            .unwrap();
        store.wait_written(1).unwrap();
        store.flush().unwrap();
        let after = policies();
        assert!(after.iter().all(|p| *p == libc::SCHED_IDLE), "{after:?}");
    }

    /// Answers wait for the synced log alone; the state part follows, and a
    /// reader of the state tables waits for it (D119).
    #[test]
    fn answers_wait_for_the_log_and_readers_of_the_state_for_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let injected = Injected {
            state_write_delay_ms: Some(1_000),
            ..Injected::default()
        };
        let store = Store::open_injected(dir.path(), 0, injected).unwrap();
        store
            .submit(Commit {
                ticket: 1,
                puts: vec![
                    Put {
                        table: Table::Audit,
                        key: 1u64.to_be_bytes().to_vec(),
                        value: Some(b"record".to_vec()),
                    },
                    Put {
                        table: Table::Texts,
                        key: b"text".to_vec(),
                        value: Some(b"redeemed".to_vec()),
                    },
                ],
            })
            .unwrap();
        store.wait_durable(1).unwrap();
        assert!(store
            .get(Table::Audit, &1u64.to_be_bytes())
            .unwrap()
            .is_some());
        assert_eq!(
            store.durable.state.lock().written,
            0,
            "durable before its state is written"
        );
        store.wait_written(1).unwrap();
        assert_eq!(
            store.get(Table::Texts, b"text").unwrap().as_deref(),
            Some(&b"redeemed"[..])
        );
        assert_eq!(store.committer_figures().commits, 1);
    }

    /// A checkpoint starved of CPU (each starts 300 ms late here) does not
    /// let the tail after the last completed one grow past its bound: the
    /// committer waits for it (without the wait, 40 quick commits would all
    /// be in the tail).
    #[test]
    fn the_tail_after_the_last_checkpoint_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let injected = Injected {
            checkpoint_every: Some(4),
            checkpoint_tail: Some(10),
            checkpoint_delay_ms: Some(300),
            ..Injected::default()
        };
        let store = Store::open_injected(dir.path(), 0, injected).unwrap();
        let mut longest = 0;
        for ticket in 1..=40u64 {
            store
                .submit(Commit {
                    ticket,
                    puts: vec![Put {
                        table: Table::Vouchers,
                        key: ticket.to_be_bytes().to_vec(),
                        value: Some(b"v".to_vec()),
                    }],
                })
                .unwrap();
            store.wait_written(ticket).unwrap();
            let figures = store.committer_figures();
            longest = longest.max(figures.commits - figures.checkpointed_commits);
        }
        assert!(longest <= 10, "a tail of {longest} commits");
        let figures = store.committer_figures();
        assert_eq!(figures.commits, 40);
        assert!(
            figures.checkpoint_wait_ns > 0,
            "the committer waited for a checkpoint"
        );
    }

    /// The state tables are written without the WAL and the audit table
    /// with it; one checkpoint writes every family's memtable out together
    /// (RocksDB 7.8 with `atomic_flush`: a flush of one family flushes all
    /// that hold data), so what the disk holds is one cut of the write order.
    #[test]
    fn a_checkpoint_writes_out_every_family_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), 0).unwrap();
        let put = |table: Table, key: &[u8]| Put {
            table,
            key: key.to_vec(),
            value: Some(b"value".to_vec()),
        };
        store
            .submit(Commit {
                ticket: 1,
                puts: vec![
                    put(Table::Vouchers, b"v"),
                    put(Table::Persons, b"p"),
                    put(Table::Audit, b"a"),
                    put(Table::Requests, b"r"),
                    put(Table::Meta, b"applied_seq"),
                ],
            })
            .unwrap();
        store.wait_written(1).unwrap();
        let in_memtables = |table: Table| {
            [
                "rocksdb.num-entries-active-mem-table",
                "rocksdb.num-entries-imm-mem-tables",
            ]
            .iter()
            .map(|name| {
                store
                    .db
                    .property_int_value_cf(store.family(table), *name)
                    .unwrap()
                    .unwrap()
            })
            .sum::<u64>()
        };
        for table in [Table::Vouchers, Table::Persons, Table::Audit] {
            assert_eq!(in_memtables(table), 1, "{table:?} before");
        }
        // `applied_seq` written at open (synced), then by the commit.
        assert_eq!(in_memtables(Table::Meta), 2, "meta before");
        assert_eq!(
            store.get(Table::Vouchers, b"v").unwrap().as_deref(),
            Some(&b"value"[..]),
            "the state is read back before any checkpoint"
        );
        store.flush().unwrap();
        for &table in Table::ALL {
            assert_eq!(in_memtables(table), 0, "{table:?} after the checkpoint");
        }
        assert_eq!(store.committer_figures().writes, 1, "one synced write");
    }

    /// Read-only opens while the store is written and checkpointed every 2
    /// commits (its logs and files deleted under the opens) each see a whole
    /// prefix of the synced records, at least every one durable before the
    /// open, and never fail.
    #[test]
    fn read_only_opens_of_a_store_being_checkpointed_see_every_durable_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let injected = Injected {
            checkpoint_every: Some(2),
            ..Injected::default()
        };
        let store = Store::open_injected(&path, 0, injected).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut ticket = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    ticket += 1;
                    let puts = vec![
                        Put {
                            table: Table::Audit,
                            key: ticket.to_be_bytes().to_vec(),
                            value: Some(vec![7; 200]),
                        },
                        Put {
                            table: Table::Vouchers,
                            key: ticket.to_be_bytes().to_vec(),
                            value: Some(vec![1; 60]),
                        },
                    ];
                    store.submit(Commit { ticket, puts }).unwrap();
                    store.wait_written(ticket).unwrap();
                    // A checkpoint every 2 commits, some 50 ms apart: a
                    // busy daemon's worst, yet room for an open between two
                    // (flat out, every open raced one and none could finish).
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
            // Checked after the writer is stopped (a failed assertion here
            // would leave it writing and the scope waiting for it).
            let read = || -> Result<u32, String> {
                let started = Instant::now();
                let mut opens = 0;
                // At least a second, 20 opens and 10 checkpoints under them
                // (a loaded machine writes slower: no fixed time is enough).
                let enough = |opens: u32| {
                    started.elapsed() >= Duration::from_millis(1_000)
                        && opens >= 20
                        && store.committer_figures().checkpoints > 10
                };
                while !enough(opens) && started.elapsed() < Duration::from_secs(120) {
                    let durable = store.durable.state.lock().ticket;
                    let reader =
                        Store::open_read_only(&path).map_err(|e| format!("open {opens}: {e}"))?;
                    let mut next = 1u64;
                    let mut gap = None;
                    reader
                        .scan(Table::Audit, &mut |key, _| {
                            if key != next.to_be_bytes() && gap.is_none() {
                                gap = Some(next);
                            }
                            next += 1;
                            Ok(())
                        })
                        .map_err(|e| format!("scan {opens}: {e}"))?;
                    if let Some(missing) = gap {
                        return Err(format!("open {opens}: record {missing} missing"));
                    }
                    if next <= durable {
                        return Err(format!(
                            "open {opens}: {} records read, {durable} durable before the open",
                            next - 1
                        ));
                    }
                    opens += 1;
                }
                Ok(opens)
            };
            let outcome = read();
            stop.store(true, Ordering::SeqCst);
            outcome.unwrap();
        });
        assert!(store.committer_figures().checkpoints > 10);
    }

    #[test]
    fn a_committer_that_dies_fails_the_store_instead_of_leaving_waiters_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), 0).unwrap();
        let mut durability = store.durability().unwrap();
        // Out of ticket order: the committer's assertion panics its thread.
        store.submit(commit(5)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let now = runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    durability.wait_for(|now| now.settles(5)),
                )
                .await
                .map(|now| now.map(|now| *now))
            })
            .expect("waiters hear of the failure")
            .unwrap();
        assert!(now.failed && now.ticket == 0, "{now:?}");
        let refusal = store.wait_durable(5).unwrap_err();
        assert_eq!(
            refusal.reason,
            Reason::OutcomeUnknown,
            "a commit handed over before the failure has no known outcome"
        );
        assert!(store.failed());
        let refusal = store.submit(commit(6)).unwrap_err();
        assert_eq!(refusal.reason, Reason::StorageUnavailable);
    }

    #[test]
    fn gather_takes_what_is_queued_and_waits_only_while_frames_apply() {
        let (sender, receiver) = crossbeam_channel::bounded(16);
        let durable = Durable::default();
        let linger = Duration::from_micros(GROUP_LINGER_US_MAX);
        for ticket in 2..=4 {
            sender.send((Instant::now(), commit(ticket))).unwrap();
        }
        let group = gather(&receiver, commit(1), &durable, linger);
        let tickets: Vec<u64> = group.iter().map(|c| c.ticket).collect();
        assert_eq!(tickets, [1, 2, 3, 4], "everything queued, in order");

        // A frame is applying and queues its next commits a moment apart (as
        // `Ledger::apply` does, then says it is done): the committer waits
        // for the frame's end rather than writing ticket 5 alone. A long
        // linger, so a slow machine cannot make the test pass or fail by timing.
        durable.applying.store(1, Ordering::SeqCst);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(5));
                sender.send((Instant::now(), commit(6))).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                sender.send((Instant::now(), commit(7))).unwrap();
                durable.frame_applied();
            });
            let group = gather(&receiver, commit(5), &durable, Duration::from_secs(2));
            let tickets: Vec<u64> = group.iter().map(|c| c.ticket).collect();
            assert_eq!(
                tickets,
                [5, 6, 7],
                "the frame's later commits joined the group"
            );
        });

        // A frame applying but queuing nothing more: the wait ends at the linger.
        durable.applying.store(1, Ordering::SeqCst);
        let group = gather(&receiver, commit(8), &durable, linger);
        assert_eq!(group.len(), 1);
    }
}

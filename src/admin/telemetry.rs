//! Prometheus metrics: the exporter on its own loopback HTTP port, and the
//! sampler that copies store, audit and bureau figures into gauges once a
//! second. The names are in `metric_names`; counters are recorded where things happen.
//! Process figures (`process_resident_memory_bytes`, `process_open_fds`,
//! `process_cpu_seconds_total`, ...) come from `metrics-process`, read from
//! `/proc` at each sample.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::op::Role;
use crate::error::Error;
use crate::ledger::Ledger;
use crate::metric_names::*;
use crate::store::journal::Table;
use crate::store::Store;

/// How often the sampler refreshes the gauges.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Latency buckets (seconds): 100 µs to 10 s, finer between 0.5 and 10 ms,
/// where the answers' p99 target (5 ms) lies.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Size buckets (operations per batch, commits per group).
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Installs the global recorder (call inside the tokio runtime; one per
/// process) and returns the handle `admin::http` renders `/metrics` from.
pub fn install() -> Result<PrometheusHandle, Error> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(BATCH_OPERATIONS.into()), SIZE_BUCKETS)
        })
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMMIT_GROUP.into()), SIZE_BUCKETS))
        .and_then(|b| b.install_recorder())
        .map_err(|e| Error::InvalidInput(format!("metrics recorder: {e}")))?;
    describe();
    for name in COUNTERS_UNLABELLED {
        counter!(*name).absolute(0);
    }
    metrics_process::Collector::default().describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        OPERATIONS,
        "Operations answered, by op and outcome (ok or the reason code)."
    );
    describe_histogram!(
        OPERATION_SECONDS,
        Unit::Seconds,
        "Time from a batch's arrival to its durable answer, per operation."
    );
    describe_histogram!(BATCH_OPERATIONS, "Operations per request frame.");
    describe_counter!(
        FRAMES_REFUSED,
        "Request frames refused as unreadable or oversize."
    );
    describe_gauge!(CONNECTIONS, "Open client connections.");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused at the connection limit."
    );
    describe_histogram!(
        COMMIT_GROUP,
        "Commits written together in one synced RocksDB write."
    );
    describe_histogram!(
        FSYNC_SECONDS,
        Unit::Seconds,
        "Duration of one synced RocksDB write (WAL fsync)."
    );
    describe_histogram!(
        COMMIT_WAIT_SECONDS,
        Unit::Seconds,
        "A group's first change submitted to the committer until its answers are released \
         (queue, gathering, checkpoint room, the replica in replicated mode, synced write)."
    );
    describe_histogram!(
        FRAME_STAGE_SECONDS,
        Unit::Seconds,
        "A request frame's stages: apply (its operations decided), durable (then until \
         the task answering it sees them durable: the commit wait and the wake-up)."
    );
    describe_gauge!(COMMIT_QUEUE, "Commits waiting for the committer thread.");
    describe_gauge!(
        STORE_FAILED,
        "1 when a write failed and the store refuses writes."
    );
    describe_gauge!(AUDIT_SEQ, "Sequence number of the last audit record.");
    describe_gauge!(LEDGER_VOUCHERS, "Vouchers held in the ledger (all years).");
    describe_gauge!(LEDGER_INSTITUTIONS, "Institutions registered.");
    describe_gauge!(
        ROCKSDB_LIVE_BYTES,
        Unit::Bytes,
        "RocksDB estimate of live data size, summed over every table's column family."
    );
    describe_gauge!(
        CHECKPOINT_TAIL,
        "Commits written since the last completed checkpoint of the state: \
         what a start after kill -9 re-applies (at most CHECKPOINT_TAIL_MAX and a group)."
    );
    describe_counter!(
        CHECKPOINT_WAITS,
        "Groups of commits that waited for a checkpoint before being written \
         (the tail at its bound: the checkpoint's flush starved)."
    );
    describe_gauge!(
        ROCKSDB_MEMORY,
        Unit::Bytes,
        "Memory RocksDB holds, summed over every table's column family, by part: \
         table_readers (indexes and filters of open SST files), memtables, block_cache."
    );
    describe_gauge!(
        ROCKSDB_SST_BYTES,
        Unit::Bytes,
        "Total size of RocksDB SST files, summed over every table's column family."
    );
    describe_gauge!(
        ROCKSDB_PENDING_COMPACTION_BYTES,
        Unit::Bytes,
        "RocksDB estimate of bytes compaction still has to rewrite, summed over every table's column family."
    );
    describe_gauge!(
        ROCKSDB_WRITE_STOPPED,
        "1 while RocksDB stops writes (write stall)."
    );
    describe_gauge!(
        ROCKSDB_DELAYED_WRITE_RATE,
        "RocksDB delayed write rate in bytes per second (0: not delayed)."
    );
    describe_gauge!(
        STORAGE_FREE_BYTES,
        Unit::Bytes,
        "Free space of the data folder's filesystem, as the store last measured it."
    );
    describe_gauge!(
        STORAGE_RESERVE_BYTES,
        Unit::Bytes,
        "Free space under which the store refuses writes (storage_unavailable)."
    );
    describe_gauge!(
        REPLICA_LEADER,
        "Replicated mode: 1 while this daemon leads (serves writes), 0 as a standby."
    );
    describe_histogram!(
        REPLICA_PUBLISH_SECONDS,
        Unit::Seconds,
        "Replicated mode: time to publish one commit group to the stream until every message is acknowledged."
    );
    describe_counter!(
        REPLICA_LEASE_RENEW_FAILURES,
        "Replicated mode: lease renewals refused or unanswered (each makes the leader step down)."
    );
    describe_counter!(
        REPLICA_FENCED,
        "Replicated mode: appends the stream refused because another leader appended since (fencing)."
    );
    describe_gauge!(
        REPLICA_LAG_MESSAGES,
        "Replicated mode: stream messages (records, request rows, leader records) not yet in this daemon's store."
    );
    describe_gauge!(
        REPLICA_STREAM_BYTES,
        Unit::Bytes,
        "Replicated mode: bytes the stream holds (it keeps every record; bounded by the NATS nodes' max_file_store)."
    );
    describe_gauge!(DISTRICT_TARGET, "The campaign's use target per district.");
    describe_gauge!(
        DISTRICT_ISSUED,
        "Vouchers issued in the current campaign, by the voucher's district."
    );
    describe_gauge!(
        DISTRICT_CLAIMED,
        "Vouchers claimed in the current campaign, by the voucher's district."
    );
    describe_gauge!(
        DISTRICT_USED,
        "Vouchers now used in the current campaign, by the institution's district."
    );
    describe_gauge!(
        COVERAGE_DISTRICTS_USED,
        "Districts where vouchers are used."
    );
    describe_gauge!(
        COVERAGE_INSTITUTIONS_USED,
        "Institutions where vouchers are used."
    );
    describe_gauge!(COVERAGE_INSTITUTIONS_REGISTERED, "Institutions registered.");
    describe_gauge!(
        COVERAGE_USED_WITH_CHECKIN,
        "Used vouchers with at least one check-in."
    );
    describe_gauge!(
        REQUESTS_REMEMBERED,
        "Request ids remembered for retries, as the pruner's last full sweep of the table counted them."
    );
    describe_counter!(
        REQUESTS_PRUNED,
        "Request ids forgotten by the pruner after the retention."
    );
    describe_gauge!(
        REQUESTS_TABLE_KEYS,
        "RocksDB's estimate of the keys in the requests table (deletes not yet compacted away count)."
    );
    describe_gauge!(
        REQUESTS_TABLE_SST_BYTES,
        Unit::Bytes,
        "Bytes of the requests table's SST files."
    );
}

/// Refreshes the sampled gauges: store, audit and the bureau's figures.
pub fn sample(ledger: &Ledger, store: &Store) {
    gauge!(COMMIT_QUEUE).set(store.queue_depth() as f64);
    gauge!(STORE_FAILED).set(if store.failed() { 1.0 } else { 0.0 });
    let figures = store.committer_figures();
    gauge!(CHECKPOINT_TAIL).set((figures.commits - figures.checkpointed_commits) as f64);
    let (seq, _, _) = ledger.head();
    gauge!(AUDIT_SEQ).set(seq as f64);
    let (vouchers, _, institutions) = ledger.sizes();
    gauge!(LEDGER_VOUCHERS).set(vouchers as f64);
    gauge!(LEDGER_INSTITUTIONS).set(institutions as f64);
    let property = |name: &str| store.property(name).unwrap_or(0) as f64;
    let summed = |name: &str| store.property_summed(name).unwrap_or(0) as f64;
    gauge!(ROCKSDB_LIVE_BYTES).set(summed("rocksdb.estimate-live-data-size"));
    gauge!(ROCKSDB_SST_BYTES).set(summed("rocksdb.total-sst-files-size"));
    for (part, property) in [
        ("table_readers", "rocksdb.estimate-table-readers-mem"),
        ("memtables", "rocksdb.cur-size-all-mem-tables"),
        ("block_cache", "rocksdb.block-cache-usage"),
    ] {
        gauge!(ROCKSDB_MEMORY, "part" => part).set(summed(property));
    }
    let requests = |name: &str| store.table_property(Table::Requests, name).unwrap_or(0) as f64;
    gauge!(REQUESTS_TABLE_KEYS).set(requests("rocksdb.estimate-num-keys"));
    gauge!(REQUESTS_TABLE_SST_BYTES).set(requests("rocksdb.total-sst-files-size"));
    gauge!(ROCKSDB_PENDING_COMPACTION_BYTES)
        .set(summed("rocksdb.estimate-pending-compaction-bytes"));
    gauge!(ROCKSDB_WRITE_STOPPED).set(property("rocksdb.is-write-stopped"));
    gauge!(ROCKSDB_DELAYED_WRITE_RATE).set(property("rocksdb.actual-delayed-write-rate"));
    gauge!(STORAGE_FREE_BYTES).set(store.free_bytes() as f64);
    gauge!(STORAGE_RESERVE_BYTES).set(store.free_bytes_min() as f64);
    let Ok(stats) = ledger.stats(Role::Bureau, None, None) else {
        return;
    };
    for district in &stats.districts {
        let labels = [
            ("district", district.code.to_string()),
            ("name", district.name.clone()),
        ];
        gauge!(DISTRICT_TARGET, &labels).set(district.target as f64);
        gauge!(DISTRICT_ISSUED, &labels).set(district.issued as f64);
        gauge!(DISTRICT_CLAIMED, &labels).set(district.claimed as f64);
        gauge!(DISTRICT_USED, &labels).set(district.used as f64);
    }
    gauge!(COVERAGE_DISTRICTS_USED).set(stats.coverage.districts_used as f64);
    gauge!(COVERAGE_INSTITUTIONS_USED).set(stats.coverage.institutions_used as f64);
    gauge!(COVERAGE_INSTITUTIONS_REGISTERED).set(stats.coverage.institutions_registered as f64);
    gauge!(COVERAGE_USED_WITH_CHECKIN).set(stats.coverage.used_with_checkin as f64);
}

/// Samples every `SAMPLE_INTERVAL` until the task is dropped.
pub async fn sample_forever(ledger: Arc<Ledger>, store: Arc<Store>) {
    let process = Arc::new(metrics_process::Collector::default());
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tick.tick().await;
        let (ledger, store, process) = (
            Arc::clone(&ledger),
            Arc::clone(&store),
            Arc::clone(&process),
        );
        // Stats take the audit tail's lock and /proc is read from files;
        // keep both off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            process.collect();
            sample(&ledger, &store);
        })
        .await;
    }
}

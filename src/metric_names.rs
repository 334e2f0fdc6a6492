//! The name of every metric the daemon exports, in one leaf module so the
//! store, the server and the exporter can all use them without depending on
//! each other.

pub const OPERATIONS: &str = "voucherd_operations_total";
pub const OPERATION_SECONDS: &str = "voucherd_operation_duration_seconds";
pub const BATCH_OPERATIONS: &str = "voucherd_batch_operations";
pub const FRAMES_REFUSED: &str = "voucherd_frames_refused_total";
pub const CONNECTIONS: &str = "voucherd_connections";
pub const CONNECTIONS_REFUSED: &str = "voucherd_connections_refused_total";
pub const COMMIT_GROUP: &str = "voucherd_commit_group_commits";
pub const FSYNC_SECONDS: &str = "voucherd_fsync_duration_seconds";
/// A group's first change submitted to the committer until its answers are
/// released: the queue, the gathering, a wait for checkpoint room, the
/// replica (replicated mode) and the synced write.
pub const COMMIT_WAIT_SECONDS: &str = "voucherd_commit_wait_seconds";
/// Label `stage`: `apply` (a frame's operations decided), `durable` (then
/// until the task answering it sees them durable).
pub const FRAME_STAGE_SECONDS: &str = "voucherd_frame_stage_seconds";
pub const COMMIT_QUEUE: &str = "voucherd_commit_queue_depth";
pub const STORE_FAILED: &str = "voucherd_store_failed";
pub const AUDIT_SEQ: &str = "voucherd_audit_sequence";
pub const LEDGER_VOUCHERS: &str = "voucherd_ledger_vouchers";
pub const LEDGER_INSTITUTIONS: &str = "voucherd_ledger_institutions";
pub const ROCKSDB_LIVE_BYTES: &str = "voucherd_rocksdb_live_data_bytes";
pub const ROCKSDB_SST_BYTES: &str = "voucherd_rocksdb_sst_files_bytes";
pub const ROCKSDB_PENDING_COMPACTION_BYTES: &str = "voucherd_rocksdb_pending_compaction_bytes";
pub const ROCKSDB_WRITE_STOPPED: &str = "voucherd_rocksdb_write_stopped";
pub const ROCKSDB_DELAYED_WRITE_RATE: &str = "voucherd_rocksdb_delayed_write_rate_bytes_per_second";
/// Label `part`: `table_readers` (SST indexes and filters held open),
/// `memtables`, `block_cache`.
pub const ROCKSDB_MEMORY: &str = "voucherd_rocksdb_memory_bytes";
pub const CHECKPOINT_TAIL: &str = "voucherd_checkpoint_tail_commits";
pub const CHECKPOINT_WAITS: &str = "voucherd_checkpoint_waits_total";
pub const STORAGE_FREE_BYTES: &str = "voucherd_storage_free_bytes";
pub const STORAGE_RESERVE_BYTES: &str = "voucherd_storage_reserve_bytes";
pub const DISTRICT_TARGET: &str = "voucherd_district_target_vouchers";
pub const DISTRICT_ISSUED: &str = "voucherd_district_issued_vouchers";
pub const DISTRICT_CLAIMED: &str = "voucherd_district_claimed_vouchers";
pub const DISTRICT_USED: &str = "voucherd_district_used_vouchers";
pub const COVERAGE_DISTRICTS_USED: &str = "voucherd_coverage_districts_used";
pub const COVERAGE_INSTITUTIONS_USED: &str = "voucherd_coverage_institutions_used";
pub const COVERAGE_INSTITUTIONS_REGISTERED: &str = "voucherd_coverage_institutions_registered";
pub const COVERAGE_USED_WITH_CHECKIN: &str = "voucherd_coverage_used_with_checkin_vouchers";
pub const NOT_AUTHORISED: &str = "voucherd_not_authorised_total";
/// Replicated mode only (docs/replication.md, "Metrics").
pub const REPLICA_LEADER: &str = "voucherd_replica_leader";
pub const REPLICA_PUBLISH_SECONDS: &str = "voucherd_replica_publish_duration_seconds";
pub const REPLICA_LEASE_RENEW_FAILURES: &str = "voucherd_replica_lease_renew_failures_total";
pub const REPLICA_FENCED: &str = "voucherd_replica_fenced_publishes_total";
pub const REPLICA_LAG_MESSAGES: &str = "voucherd_replica_lag_messages";
pub const REPLICA_STREAM_BYTES: &str = "voucherd_replica_stream_bytes";
pub const REQUESTS_REMEMBERED: &str = "voucherd_requests_remembered";
pub const REQUESTS_PRUNED: &str = "voucherd_requests_pruned_total";
pub const REQUESTS_TABLE_KEYS: &str = "voucherd_requests_table_estimated_keys";
pub const REQUESTS_TABLE_SST_BYTES: &str = "voucherd_requests_table_sst_files_bytes";

/// Every metric the daemon exports (histograms add `_bucket`, `_sum`, `_count`).
pub const ALL: &[&str] = &[
    OPERATIONS,
    OPERATION_SECONDS,
    BATCH_OPERATIONS,
    FRAMES_REFUSED,
    CONNECTIONS,
    CONNECTIONS_REFUSED,
    COMMIT_GROUP,
    FSYNC_SECONDS,
    COMMIT_WAIT_SECONDS,
    FRAME_STAGE_SECONDS,
    COMMIT_QUEUE,
    STORE_FAILED,
    AUDIT_SEQ,
    LEDGER_VOUCHERS,
    LEDGER_INSTITUTIONS,
    ROCKSDB_LIVE_BYTES,
    ROCKSDB_SST_BYTES,
    ROCKSDB_PENDING_COMPACTION_BYTES,
    ROCKSDB_WRITE_STOPPED,
    ROCKSDB_DELAYED_WRITE_RATE,
    ROCKSDB_MEMORY,
    CHECKPOINT_TAIL,
    CHECKPOINT_WAITS,
    STORAGE_FREE_BYTES,
    STORAGE_RESERVE_BYTES,
    DISTRICT_TARGET,
    DISTRICT_ISSUED,
    DISTRICT_CLAIMED,
    DISTRICT_USED,
    COVERAGE_DISTRICTS_USED,
    COVERAGE_INSTITUTIONS_USED,
    COVERAGE_INSTITUTIONS_REGISTERED,
    COVERAGE_USED_WITH_CHECKIN,
    NOT_AUTHORISED,
    REPLICA_LEADER,
    REPLICA_PUBLISH_SECONDS,
    REPLICA_LEASE_RENEW_FAILURES,
    REPLICA_FENCED,
    REPLICA_LAG_MESSAGES,
    REPLICA_STREAM_BYTES,
    REQUESTS_REMEMBERED,
    REQUESTS_PRUNED,
    REQUESTS_TABLE_KEYS,
    REQUESTS_TABLE_SST_BYTES,
];

/// The process metrics `metrics-process` exports (Prometheus' standard names,
/// without the `voucherd_` prefix so stock dashboards and alerts find them).
pub const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];

/// The counters without labels: registered at 0 when the exporter starts, so
/// a scrape shows them (and `rate()` has a first sample) before any event.
pub const COUNTERS_UNLABELLED: &[&str] = &[
    FRAMES_REFUSED,
    CONNECTIONS_REFUSED,
    REQUESTS_PRUNED,
    CHECKPOINT_WAITS,
];
/// The same for replicated mode's counters, registered when it starts.
pub const REPLICA_COUNTERS: &[&str] = &[REPLICA_LEASE_RENEW_FAILURES, REPLICA_FENCED];

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus conventions: a `voucherd_` prefix, base units in the name,
    /// `_total` only (and always) on counters.
    #[test]
    fn names_follow_prometheus_conventions() {
        for name in ALL {
            assert!(name.starts_with("voucherd_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            let counter = [
                OPERATIONS,
                FRAMES_REFUSED,
                CONNECTIONS_REFUSED,
                NOT_AUTHORISED,
                REPLICA_LEASE_RENEW_FAILURES,
                REPLICA_FENCED,
                REQUESTS_PRUNED,
                CHECKPOINT_WAITS,
            ]
            .contains(name);
            assert_eq!(name.ends_with("_total"), counter, "{name}");
            assert!(
                !name.contains("millis") && !name.contains("_ms"),
                "{name}: use seconds"
            );
        }
        let mut unique = ALL.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ALL.len());
    }
}

//! Every limit the daemon enforces, in one place, units last.
//!
//! A limit here is a promise: the code that reads input or grows a queue checks
//! against one of these constants and refuses (or applies backpressure) past it.

/// Longest request id a caller may choose (printable ASCII).
pub const REQUEST_ID_BYTES_MAX: usize = 64;
/// Longest institution name, address, admin name or class name, in characters.
pub const TEXT_CHARS_MAX: usize = 200;
/// Longest evaluation comment, in characters (API.md: at most 200).
pub const COMMENT_CHARS_MAX: usize = 200;
/// Longest operator id, in bytes of printable ASCII.
pub const OPERATOR_BYTES_MAX: usize = 64;
/// Training sites one institution may register.
pub const SITES_PER_INSTITUTION_MAX: usize = 32;
/// Operators one institution may authorise at a time.
pub const OPERATORS_PER_INSTITUTION_MAX: usize = 1_000;
/// Default check-in radius around a training site, metres.
pub const SITE_RADIUS_M_DEFAULT: u32 = 500;
/// Largest check-in radius a site may declare, metres.
pub const SITE_RADIUS_M_MAX: u32 = 10_000;
/// Largest face value of one voucher, fen (100,000 yuan).
pub const FACE_VALUE_FEN_MAX: u64 = 10_000_000;
/// Districts one campaign may define.
pub const DISTRICTS_PER_CAMPAIGN_MAX: usize = 128;

/// Shards of each in-memory index (vouchers, persons, institutions).
pub const INDEX_SHARDS: usize = 256;
/// Largest voucher id (ids are sequential; memory holds vouchers in dense
/// arrays found by id). An issue past it is refused `overloaded`.
pub const VOUCHER_ID_MAX: u64 = u32::MAX as u64;
/// Threads that read the voucher, person and text tables at start-up, at
/// most (and no more than the machine's cores).
pub const RECOVERY_THREADS_MAX: usize = 8;
/// Commits the committer queue holds; when full, writers are refused `overloaded`.
pub const COMMIT_QUEUE_DEPTH_MAX: usize = 16_384;
/// Commits the committer gathers into one synced RocksDB write.
pub const GROUP_COMMIT_BATCHES_MAX: usize = 4_096;
/// Commits after which the committer starts a checkpoint (an atomic flush
/// of the state tables with `meta/applied_seq`): start-up re-applies at most
/// about this many audit records after a kill -9 (plus those of a checkpoint
/// still being written), a few seconds at most.
pub const CHECKPOINT_COMMITS_MAX: usize = 50_000;
/// Time after which the committer starts a checkpoint when anything was
/// committed since the last one, milliseconds (also when idle).
pub const CHECKPOINT_INTERVAL_MS: u64 = 10_000;
/// Audit records start-up re-applies before waiting for their state writes
/// (under `COMMIT_QUEUE_DEPTH_MAX`, so the replay never finds the queue full).
pub const RECOVERY_REPLAY_BATCH_MAX: usize = 4_096;
/// While frames are being applied, the committer waits up to this long for
/// their commits before a synced write, so a frame is written in one group
/// rather than its first operation alone, microseconds.
pub const GROUP_LINGER_US_MAX: u64 = 500;
/// Frames of at most this many operations, all point operations
/// (`Op::is_point`), are applied on the async worker that read them; larger
/// or heavier frames go to the blocking pool. A thread hand-off costs more
/// than applying a small frame.
pub const INLINE_APPLY_OPS_MAX: usize = 32;
/// How long a request id's answer is kept for retries by default, hours
/// (`request_retention_hours` in the daemon config); older ids are pruned.
pub const REQUEST_RETENTION_HOURS_DEFAULT: u32 = 24;
/// Longest retention the config accepts, hours (a year).
pub const REQUEST_RETENTION_HOURS_MAX: u32 = 24 * 366;
/// Remembered requests one pruning pass reads (and deletes at most), in
/// key order from where the last pass stopped: one bounded read and one
/// commit of deletes.
pub const REQUEST_PRUNE_BATCH_MAX: usize = 10_000;
/// Pause between pruning passes, milliseconds: at most 100,000 rows read a
/// second, so a table of 10 million remembered ids is gone through in
/// under 2 minutes and an id is forgotten at most that long after its
/// retention.
pub const REQUEST_PRUNE_INTERVAL_MS: u64 = 100;
/// Vouchers one batch of the daemon's expiry writes (one commit, one audit
/// record): the batch holds one voucher shard's write lock and its holders'
/// person shards for its time only (docs/decisions.md D41).
pub const EXPIRE_BATCH_VOUCHERS_MAX: usize = 1_000;
/// Pause between two checks for a campaign whose deadline has passed and
/// whose vouchers are not all written expired yet, milliseconds.
pub const EXPIRE_CHECK_INTERVAL_MS: u64 = 10_000;
/// Free space the store keeps on its filesystem, bytes: under it, new writes
/// are refused `storage_unavailable` (room for a memtable flush, the WAL and
/// the commits already queued).
pub const STORAGE_FREE_BYTES_MIN: u64 = 256 * 1024 * 1024;
/// How often the store measures its filesystem's free space, milliseconds.
pub const SPACE_CHECK_MS: u64 = 100;
/// Longest encoded record read back from storage or an audit export, bytes.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Audit records one `audit_read` answers at most (and by default).
pub const AUDIT_PAGE_RECORDS_MAX: u32 = 1024;
/// Bytes of audit entries one `audit_read` answers at most (one entry always
/// goes, so a page always moves forward); keeps answers far below the frame limit.
pub const AUDIT_PAGE_BYTES_MAX: usize = 1024 * 1024;
/// `audit_read`s per request frame: one, so a frame's answer stays bounded.
pub const AUDIT_READS_PER_FRAME_MAX: usize = 1;
/// `stats` per request frame: one. Each lists every district and
/// institution and walks the figures under the audit tail's lock, so a frame
/// of many would take gigabytes and stall every commit; more are refused
/// `invalid_request` in place.
pub const STATS_PER_FRAME_MAX: usize = 1;

/// Version of the wire protocol a frame carries; others are refused with a
/// reason naming both versions. 2 (2026-12-03): `complete` and `release`
/// name their operator, `list_vouchers`, and `get_voucher` and `stats`
/// answers carry class, step times and settled figures; 1 is no longer spoken.
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest frame (request or answer), bytes, length prefix excluded.
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Operations one request frame may carry.
pub const BATCH_OPS_MAX: usize = 4_096;
/// Requests (bidirectional streams) in flight on one connection.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 64;
/// Request bytes buffered at once across all streams and connections. A
/// stream pays for each piece before reading it, so senders of big or
/// unfinished frames wait (until the read timeout) instead of growing memory.
pub const REQUEST_BYTES_IN_FLIGHT_MAX: usize = 64 * 1024 * 1024;
/// Largest piece of a request frame read at once, bytes.
pub const REQUEST_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes one connection may have in flight unread (QUIC connection flow control).
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
/// Bytes one stream may have in flight unread (QUIC stream flow control).
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 1024 * 1024;
/// Connections served at once; more are refused at the handshake.
pub const CONNECTIONS_MAX: usize = 1_024;
/// A connection with no traffic for this long is closed, milliseconds.
pub const IDLE_TIMEOUT_MS: u32 = 30_000;
/// A client gives up a connection attempt that has no answer after this long
/// (a daemon not running, a wrong port, a firewall), and says so.
pub const CLIENT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Clients (`voucherctl`, `voucher-load`, the `client` module) ping an idle
/// connection this often, so a connection held through a quiet spell (a
/// gateway between scans, a bureau connection through a load peak) stays open.
pub const CLIENT_KEEP_ALIVE_MS: u64 = 2_000;
/// How long a stream may take to deliver its request frame, milliseconds.
pub const REQUEST_READ_TIMEOUT_MS: u64 = 10_000;
/// How long an answer frame may take to be taken by the client, ms; past
/// it the stream is reset, so a client that never reads cannot pin the
/// answer's memory.
pub const ANSWER_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Batches being applied or waiting for durability at once, across connections;
/// a stream that cannot get a slot within `BATCH_SLOT_WAIT_MS` is answered `overloaded`.
pub const BATCHES_IN_FLIGHT_MAX: usize = 256;
/// How long a request waits for a batch slot before `overloaded`, milliseconds.
pub const BATCH_SLOT_WAIT_MS: u64 = 2_000;
/// How long shutdown waits for in-flight requests, milliseconds.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Largest attachment 2 form `voucherctl institution import` reads, bytes.
pub const IMPORT_FILE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Institution rows one imported form may hold.
pub const IMPORT_ROWS_MAX: usize = 100_000;

/// Connections served at once on the metrics port (`/metrics`, `/report`);
/// more wait in the listen queue.
pub const HTTP_CONNECTIONS_MAX: usize = 16;
/// A metrics-port connection is closed after this long, milliseconds.
pub const HTTP_CONNECTION_TIMEOUT_MS: u64 = 10_000;
/// The live report page reloads itself this often, seconds.
pub const REPORT_PAGE_REFRESH_S: u32 = 10;

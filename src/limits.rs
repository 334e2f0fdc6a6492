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
/// A class code (开班编号) is 1 to this many characters; longer is `invalid_request`.
pub const CLASS_CODE_CHARS_MAX: usize = 32;
/// A class lasts at most this many days, first and last included; longer is
/// `invalid_request` (a campaign is one year).
pub const CLASS_DAYS_MAX: i32 = 366;
/// Classes one institution may open (all years); past it `open_class` is
/// `invalid_request`. Classes stay in memory for good (a handle each).
pub const CLASSES_PER_INSTITUTION_MAX: u32 = 10_000;
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
/// Read-only opens of a store (`audit verify`, `audit export`, `backup
/// check`) taken again when a serving daemon changed its files meanwhile,
/// at most; then the tool gives up with an error saying to retry.
pub const READ_ONLY_OPEN_ATTEMPTS_MAX: u32 = 50;
/// The pause between two such opens, milliseconds.
pub const READ_ONLY_OPEN_RETRY_MS: u64 = 20;
/// Commits after which the committer starts a checkpoint (an atomic flush
/// of the state tables with `meta/applied_seq`); start-up re-applies the
/// audit records after the last completed one, at most `CHECKPOINT_TAIL_MAX`.
pub const CHECKPOINT_COMMITS_MAX: usize = 50_000;
/// Time after which the committer starts a checkpoint when anything was
/// committed since the last one, milliseconds (also when idle).
pub const CHECKPOINT_INTERVAL_MS: u64 = 10_000;
/// Commits written after the last completed checkpoint beyond which the
/// committer waits for the checkpoint being taken before it writes more:
/// the bound of the tail start-up re-applies after a kill -9, whatever
/// starves the checkpoint's flush (it runs at the lowest CPU priority, and
/// a saturated peak left 325,000 records unflushed). About 2 s of re-apply
/// at 10 million vouchers (docs/decisions.md D115).
pub const CHECKPOINT_TAIL_MAX: usize = 150_000;
const _: () = assert!(CHECKPOINT_COMMITS_MAX < CHECKPOINT_TAIL_MAX);
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
/// The shortest retention for production, seconds (an hour: the least
/// `request_retention_hours` takes). `request_retention_seconds` may go
/// down to 1 s for development, tests and load runs; under this the daemon
/// warns at start (docs/decisions.md D84).
pub const REQUEST_RETENTION_PRODUCTION_MIN_S: i64 = 3_600;
/// Remembered requests one pruning pass reads (and deletes at most), in
/// key order from where the last pass stopped: one bounded read and one
/// commit of deletes.
pub const REQUEST_PRUNE_BATCH_MAX: usize = 10_000;
/// Pause between pruning passes, milliseconds: at most 100,000 rows read a
/// second, so a table of 10 million remembered ids is gone through in
/// under 2 minutes and an id is forgotten at most that long after its
/// retention.
pub const REQUEST_PRUNE_INTERVAL_MS: u64 = 100;
/// Refusals by a rule remembered for retries (one synced write each) per
/// client certificate per second of the ledger's clock; past it a refused
/// change is answered `overloaded` with nothing written, so a client looping
/// on refused requests cannot turn them into a stream of synced writes.
/// Generous: a deployment's gateways may share one certificate, and an
/// honest peak refuses a few percent of its requests (a load of 34,000
/// ops/s from one certificate made 1,250 refusals a second, which a bound
/// of 1,000 turned into `overloaded`: D76).
pub const REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S: u32 = 10_000;
/// `not_authorised` refusals remembered per institution per second; past it
/// `overloaded`, nothing written. Every one is counted in
/// `voucherd_not_authorised_total{institution}`.
pub const NOT_AUTHORISED_PER_INSTITUTION_PER_S: u32 = 10;
/// Vouchers one batch of the daemon's expiry writes (one commit, one audit
/// record): the batch holds one voucher shard's write lock and its holders'
/// person shards for its time only (docs/decisions.md D41).
pub const EXPIRE_BATCH_VOUCHERS_MAX: usize = 1_000;
/// Least pause of the daemon's expiry after each batch, milliseconds (the
/// pause is at least the batch's own time too), so a steady load of other
/// writes keeps its latency while a large year expires (docs/decisions.md
/// D43): at 10 million vouchers, about 10,240 batches take at least 8.5
/// minutes of pauses.
pub const EXPIRE_BATCH_PAUSE_MS: u64 = 50;
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

/// Events one `events` answer holds by default (API.md: `limit` defaults to 256).
pub const EVENTS_PAGE_DEFAULT: u32 = 256;
/// Largest `limit` of an `events` request (API.md: 1 to 1024); more is
/// `invalid_request`. A page ends before a record whose events would pass
/// it, except that its first record's events always go whole (an expiry
/// batch's, at most `EXPIRE_BATCH_VOUCHERS_MAX`), so a page always moves on.
pub const EVENTS_PAGE_MAX: u32 = 1024;
/// Audit records one `events` answer reads at most: each event's own record
/// and its enrollment's redeem record (for the class), each once per page.
/// The page ends before the event that would read more (its first record
/// always goes), so a call's work is bounded whatever the filter.
pub const EVENTS_RECORDS_READ_MAX: usize = 1024;
/// Building the events index while writes go on: once a pass over the
/// chain without locks reads fewer new records than this, the rest is read
/// under the tail lock (writers wait for at most that many records).
pub const EVENTS_INDEX_CATCH_UP_RECORDS: u64 = 4_096;
/// A data folder whose audit chain holds at most this many records gets its
/// events index built before the daemon listens (a fraction of a second);
/// a longer chain's index is built on a thread of its own while the daemon
/// serves, `events` answering `overloaded` until then (docs/decisions.md D66).
pub const EVENTS_INDEX_BUILT_BEFORE_LISTENING_RECORDS_MAX: u64 = 100_000;
/// Longest `wait_ms` of an `events` request (API.md: at most 30,000); more
/// is `invalid_request`.
pub const EVENTS_WAIT_MS_MAX: u32 = 30_000;
/// `events` requests waiting for new events at once (long polls) across
/// every connection; a frame that would wait beyond it is answered
/// `overloaded`. A waiter holds no thread, no lock and no batch slot.
pub const EVENTS_WAITERS_MAX: usize = 256;
/// `events` per request frame: one, so a frame's answer stays bounded; more
/// are refused `invalid_request` in place.
pub const EVENTS_PER_FRAME_MAX: usize = 1;

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
/// stream pays for each piece as it arrives (never for bytes a frame only
/// announces), so senders of big or unfinished frames wait (until the read
/// timeout) instead of growing memory. A frame's bytes stay paid until its
/// answer is sent, and an answer longer than its request pays the
/// difference (answers are memory too).
pub const REQUEST_BYTES_IN_FLIGHT_MAX: usize = 64 * 1024 * 1024;
/// Request and answer bytes one connection may hold at once, paid like
/// `REQUEST_BYTES_IN_FLIGHT_MAX` and before it, so one connection cannot take
/// the shared budget: room for one largest frame and its header.
pub const REQUEST_BYTES_PER_CONNECTION_MAX: usize = 8 * 1024 * 1024;
/// Largest piece of a request frame read at once, bytes: a stream waiting
/// for the budget holds at most one piece unpaid (64 streams of a
/// connection, 1 MiB).
pub const REQUEST_READ_CHUNK_BYTES: usize = 16 * 1024;
/// How long a stream may take to deliver its frame's length prefix after
/// its first byte, milliseconds; past it the stream is reset, so streams
/// that announce nothing hold a stream slot for 2 s, not the read timeout.
pub const FRAME_HEADER_TIMEOUT_MS: u64 = 2_000;
const _: () = assert!(
    REQUEST_BYTES_PER_CONNECTION_MAX >= FRAME_BYTES_MAX + 4,
    "a connection's budget holds its largest frame"
);
/// Bytes one connection may have in flight unread (QUIC connection flow control).
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
/// Bytes one stream may have in flight unread (QUIC stream flow control).
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 1024 * 1024;
/// Connections served at once, any role; a slot is taken once the
/// handshake is done and the certificate's role is known (a handshake holds
/// no slot), and more are closed with `CLOSE_BUSY`.
pub const CONNECTIONS_MAX: usize = 1_024;
/// Slots beyond `CONNECTIONS_MAX` that only gateways may take, so a flood of
/// connections from another role (or a leaked certificate) never locks the
/// training sites out.
pub const CONNECTIONS_KEPT_FOR_GATEWAYS: usize = 256;
/// Slots beyond `CONNECTIONS_MAX` that only the bureau may take.
pub const CONNECTIONS_KEPT_FOR_BUREAU: usize = 16;
/// Frames holding a heavy read (`stats`, `audit_read`: `Op::is_heavy_read`)
/// one connection may have in flight, from decoding until the answer is
/// sent (or its stream reset at `ANSWER_WRITE_TIMEOUT_MS`); a heavy read
/// past it is answered `overloaded` in place, without running. Bounds the
/// work a client can start by sending `stats` and never reading the answers.
pub const HEAVY_READS_PER_CONNECTION_MAX: usize = 4;
/// Frames holding a heavy read one client certificate may have in flight
/// across its connections, counted like `HEAVY_READS_PER_CONNECTION_MAX`;
/// past it `overloaded`. A bureau or auditor needs a few at a time.
pub const HEAVY_READS_PER_CERTIFICATE_MAX: usize = 16;
/// Connections one client certificate may hold at once (all gateways of a
/// deployment may share one certificate, so this is generous); more are
/// closed with `CLOSE_BUSY`.
pub const CONNECTIONS_PER_CERTIFICATE_MAX: usize = 256;
/// Handshakes in progress at once (a client's first packet seen, TLS not
/// finished); past it new ones are refused at once.
pub const HANDSHAKES_IN_PROGRESS_MAX: usize = 256;
/// Past this many handshakes in progress, a client whose address is not yet
/// validated gets a QUIC Retry (no state kept) and must come back with its
/// token from the address it claims: spoofed floods never come back.
pub const HANDSHAKES_BEFORE_RETRY: usize = 32;
/// A handshake not finished within this long is dropped, milliseconds.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// A refused handshake or connection is logged at most once per this long,
/// with the number refused since, milliseconds (the counter counts each).
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 1_000;
/// A connection with no traffic for this long is closed, milliseconds.
pub const IDLE_TIMEOUT_MS: u32 = 30_000;
/// A client gives up a connection attempt that has no answer after this long
/// (a daemon not running, a wrong port, a firewall), and says so.
pub const CLIENT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Clients (`voucherctl`, `voucher-load`, the `client` module) ping an idle
/// connection this often, so a connection held through a quiet spell (a
/// gateway between scans, a bureau connection through a load peak) stays open.
pub const CLIENT_KEEP_ALIVE_MS: u64 = 2_000;
/// A client's connection that hears nothing (not even the answer to a
/// keep-alive) for this long is lost, milliseconds: three keep-alives, so a
/// daemon killed mid-batch is noticed in seconds (and a leader-following
/// client moves on), not after the server's `IDLE_TIMEOUT_MS`.
pub const CLIENT_IDLE_TIMEOUT_MS: u32 = 6_000;
/// How long a stream may take to deliver its request frame, milliseconds.
pub const REQUEST_READ_TIMEOUT_MS: u64 = 10_000;
/// How long an answer frame may take to be taken by the client, ms; past
/// it the stream is reset, so a client that never reads cannot pin the
/// answer's memory.
pub const ANSWER_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Batches being applied or waiting for durability at once, across connections;
/// a stream that cannot get a slot within `BATCH_SLOT_WAIT_MS` is answered `overloaded`.
pub const BATCHES_IN_FLIGHT_MAX: usize = 256;
/// How long a frame applied on an async worker waits, without holding the
/// worker, for one of its request ids in flight in another frame (decided,
/// then durable), milliseconds; past it that request is answered
/// `overloaded` (nothing applied) and the frame goes on.
pub const INFLIGHT_WAIT_MS_MAX: u64 = 2_000;
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

/// Replicated mode (docs/replication.md). The leader's lease lives this
/// long in the JetStream key-value bucket (its `max_age`) unless renewed,
/// milliseconds: a standby takes over at most this long after the leader died.
pub const REPLICA_LEASE_MS: u64 = 3_000;
/// The leader renews its lease this often, milliseconds (six renewals per
/// lifetime); a renewal refused or unanswered makes it stop (exit 75).
pub const REPLICA_LEASE_RENEW_MS: u64 = 500;
/// How long a lease request (take, renew) waits for its answer,
/// milliseconds: well inside the lease's lifetime, so a renewal that hangs
/// is given up (and the leader stops) while the lease still holds, not
/// after `REPLICA_REQUEST_TIMEOUT_MS` when another may hold it.
pub const REPLICA_LEASE_REQUEST_TIMEOUT_MS: u64 = 1_000;
/// The leader answers only until `REPLICA_LEASE_MS` minus this after it
/// sent its last successful lease request (take or renewal), milliseconds:
/// the lease expires at least `REPLICA_LEASE_MS` after that request left,
/// and this margin covers clocks running apart and the last local write.
pub const REPLICA_LEASE_ANSWER_MARGIN_MS: u64 = 1_000;
const _: () = assert!(
    REPLICA_LEASE_RENEW_MS + REPLICA_LEASE_REQUEST_TIMEOUT_MS
        < REPLICA_LEASE_MS - REPLICA_LEASE_ANSWER_MARGIN_MS,
    "a renewal that times out is noticed before the leader must stop answering"
);
/// A standby reads the stream's end and the lease this often, milliseconds.
pub const REPLICA_POLL_MS: u64 = 100;
/// How long a publish (or any JetStream request) waits for its answer,
/// milliseconds; past it the group is not acknowledged and the daemon stops.
pub const REPLICA_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a leader keeps sending a group again after transient publish
/// failures (a NATS node lost: reconnecting, a new stream leader elected),
/// milliseconds, before it gives the group up (`outcome_unknown`, exit 75).
/// Every answer waits meanwhile.
pub const REPLICA_PUBLISH_RETRY_MS: u64 = 15_000;
/// How long the leader's committer waits for a record of the group it
/// publishes to be noted in the events index (the sealing thread notes it
/// right after queueing its commit: microseconds), milliseconds.
pub const STREAM_EVENTS_WAIT_MS: u64 = 1_000;
/// How long start-up tries to reach the stream and the lease bucket (a
/// cluster still electing its leaders times out the first requests),
/// milliseconds; then the daemon exits with the reason.
pub const REPLICA_SETUP_WAIT_MS: u64 = 30_000;
/// Messages a standby fetches at once (each at most
/// `REPLICA_MESSAGE_BYTES_MAX`: 16 MiB at most in memory).
pub const REPLICA_FOLLOW_BATCH_MAX: u64 = 64;
/// Commits a standby hands its store before it waits for them to be
/// durable (well under `COMMIT_QUEUE_DEPTH_MAX`, so a replay never finds
/// the queue full).
pub const REPLICA_FOLLOW_COMMITS_MAX: usize = 4_096;
const _: () = assert!(REPLICA_FOLLOW_COMMITS_MAX < COMMIT_QUEUE_DEPTH_MAX);
/// Bytes of one stream message's payload at most (D111): a commit group's
/// records and request ids, or one district's events of it, are split
/// into messages of this size (an entry is never split); under NATS's
/// default `max_payload` of 1 MiB.
pub const REPLICA_MESSAGE_BYTES_MAX: usize = 256 * 1024;
/// How often a node samples the stream's size and its own lag for the
/// metrics, milliseconds (one stream-info request each time).
pub const REPLICA_SAMPLE_MS: u64 = 1_000;
/// Replicas of the stream and of the lease bucket (a three-node cluster
/// keeps every acknowledged group through the loss of one node).
pub const REPLICA_STREAM_REPLICAS: usize = 3;
/// Commit groups the leader's committer has published and not yet
/// settled (every acknowledgement in, then the local write): group N+1 is
/// published while group N's acknowledgements and local write are pending.
pub const REPLICA_PIPELINE_GROUPS_MAX: usize = 4;
/// Publishes awaiting their acknowledgement at once (a publish waits for
/// room beyond it): more than a group's messages (group messages and one
/// events message per district, D111) times the groups of the pipeline.
pub const REPLICA_ACKS_IN_FLIGHT_MAX: usize =
    2 * GROUP_COMMIT_BATCHES_MAX * REPLICA_PIPELINE_GROUPS_MAX;
/// Daemon addresses a client follows the leader across (`--server A,B,C`).
pub const CLIENT_SERVERS_MAX: usize = 16;
/// How long a client keeps retrying a batch across addresses (connection
/// lost, `not_leader`) before it gives up, milliseconds: a fail-over takes
/// about `REPLICA_LEASE_MS` plus the catch-up.
pub const CLIENT_FAILOVER_WAIT_MS: u64 = 30_000;
/// The pause between two rounds over every address, milliseconds.
pub const CLIENT_FAILOVER_PAUSE_MS: u64 = 100;
/// A leader-following client (`--server A,B,C`) pings its connection this
/// often, milliseconds (D100).
pub const CLIENT_FOLLOW_KEEP_ALIVE_MS: u64 = 400;
/// A leader-following client's connection that hears nothing for this long
/// is lost and the next address is tried, milliseconds: five keep-alives,
/// and under the `REPLICA_LEASE_MS` a standby waits before taking over, so
/// the client is already asking the standbys when one leads.
pub const CLIENT_FOLLOW_IDLE_TIMEOUT_MS: u32 = 2_000;
/// How long a leader-following client waits for a handshake before it tries
/// the next address, milliseconds.
pub const CLIENT_FOLLOW_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// How long a leader-following client does not go back to an address it
/// lost on a standby's word, milliseconds: a standby names a dead leader
/// until it takes over, a lease's lifetime (`REPLICA_LEASE_MS`) and its
/// catch-up after the death, which a loaded machine stretches (5.7 s seen);
/// past it, a standby that still names the address names a live leader
/// (the connection was lost on the way) and the client goes back.
pub const CLIENT_FOLLOW_LOST_SKIP_MS: u64 = 2 * REPLICA_LEASE_MS;

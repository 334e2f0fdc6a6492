//! The QUIC service: admission in the accept loop, one task per connection,
//! one task per request stream, graceful shutdown.
//!
//! Admission, in the order it happens: handshakes in progress are capped
//! (`HANDSHAKES_IN_PROGRESS_MAX`), past `HANDSHAKES_BEFORE_RETRY` a client
//! must validate its address with a QUIC Retry, and a handshake has
//! `HANDSHAKE_TIMEOUT_MS`; only then, with the role read from the verified
//! client certificate, is a connection slot taken (`Slots`: a pool for all,
//! slots kept for gateways and the bureau, a cap per certificate). Each
//! stream carries one request frame, paid as its bytes arrive to the
//! connection's byte budget and the shared one (`Budget`), kept paid until
//! its answer is sent; the answer frame goes back on the same stream. A
//! connection that sends an unreadable frame gets a refusal, then is closed
//! with `CLOSE_PROTOCOL_ERROR`; everyone else is served on.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use crate::domain::op::{Answer, Caller, Op, Request, Role};
use crate::error::{Error, Reason, Refusal};
use crate::ledger::{FrameRun, Ledger, Pending, WaitFor};
use crate::limits::{
    ANSWER_WRITE_TIMEOUT_MS, BATCHES_IN_FLIGHT_MAX, BATCH_SLOT_WAIT_MS,
    CONNECTIONS_KEPT_FOR_BUREAU, CONNECTIONS_KEPT_FOR_GATEWAYS, CONNECTIONS_MAX,
    CONNECTIONS_PER_CERTIFICATE_MAX, CONNECTION_RECEIVE_WINDOW_BYTES, EVENTS_WAITERS_MAX,
    EVENTS_WAIT_MS_MAX, FRAME_BYTES_MAX, FRAME_HEADER_TIMEOUT_MS, HANDSHAKES_BEFORE_RETRY,
    HANDSHAKES_IN_PROGRESS_MAX, HANDSHAKE_TIMEOUT_MS, HEAVY_READS_PER_CERTIFICATE_MAX,
    HEAVY_READS_PER_CONNECTION_MAX, IDLE_TIMEOUT_MS, INFLIGHT_WAIT_MS_MAX, INLINE_APPLY_OPS_MAX,
    REFUSAL_LOG_INTERVAL_MS, REQUEST_BYTES_IN_FLIGHT_MAX, REQUEST_BYTES_PER_CONNECTION_MAX,
    REQUEST_READ_TIMEOUT_MS, SHUTDOWN_GRACE_MS, STREAMS_PER_CONNECTION_MAX,
    STREAM_RECEIVE_WINDOW_BYTES,
};
use crate::metric_names;
use crate::net::json::{self, Line};
use crate::net::reading::{read_frame, Budget, Deadlines, ReadFailure};
use crate::net::tls;
use crate::net::wire::{self, Reply};

/// Application close codes.
pub const CLOSE_SHUTDOWN: u32 = 0;
pub const CLOSE_PROTOCOL_ERROR: u32 = 1;
pub const CLOSE_NO_ROLE: u32 = 2;
pub const CLOSE_REVOKED: u32 = 3;
/// No connection slot for this role or certificate (`Slots`); retry later.
pub const CLOSE_BUSY: u32 = 4;

/// Who may connect beyond what TLS checks: certificates revoked by their
/// fingerprint (`tls::fingerprint`, SHA-256 of the DER, lowercase hex), from
/// the config's `denied_certificates`. Checked with the role, after the
/// handshake; a denied certificate is closed with `CLOSE_REVOKED` and logged.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    pub denied_fingerprints: std::collections::HashSet<String>,
}

/// The service's limits; `Limits::default()` is the constants of `limits.rs`.
/// Tests shrink them to show each one is enforced.
#[derive(Clone, Debug)]
pub struct Limits {
    pub connections_max: usize,
    pub connections_kept_for_gateways: usize,
    pub connections_kept_for_bureau: usize,
    pub connections_per_certificate_max: usize,
    pub handshakes_in_progress_max: usize,
    pub handshakes_before_retry: usize,
    pub handshake_timeout_ms: u64,
    pub streams_per_connection_max: u32,
    pub idle_timeout_ms: u32,
    pub frame_header_timeout_ms: u64,
    pub request_read_timeout_ms: u64,
    pub answer_write_timeout_ms: u64,
    pub batches_in_flight_max: usize,
    pub request_bytes_in_flight_max: usize,
    pub events_waiters_max: usize,
    pub request_bytes_per_connection_max: usize,
    pub heavy_reads_per_connection_max: usize,
    pub heavy_reads_per_certificate_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_max: CONNECTIONS_MAX,
            connections_kept_for_gateways: CONNECTIONS_KEPT_FOR_GATEWAYS,
            connections_kept_for_bureau: CONNECTIONS_KEPT_FOR_BUREAU,
            connections_per_certificate_max: CONNECTIONS_PER_CERTIFICATE_MAX,
            handshakes_in_progress_max: HANDSHAKES_IN_PROGRESS_MAX,
            handshakes_before_retry: HANDSHAKES_BEFORE_RETRY,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            frame_header_timeout_ms: FRAME_HEADER_TIMEOUT_MS,
            request_bytes_per_connection_max: REQUEST_BYTES_PER_CONNECTION_MAX,
            streams_per_connection_max: STREAMS_PER_CONNECTION_MAX,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            answer_write_timeout_ms: ANSWER_WRITE_TIMEOUT_MS,
            request_read_timeout_ms: REQUEST_READ_TIMEOUT_MS,
            batches_in_flight_max: BATCHES_IN_FLIGHT_MAX,
            request_bytes_in_flight_max: REQUEST_BYTES_IN_FLIGHT_MAX,
            events_waiters_max: EVENTS_WAITERS_MAX,
            heavy_reads_per_connection_max: HEAVY_READS_PER_CONNECTION_MAX,
            heavy_reads_per_certificate_max: HEAVY_READS_PER_CERTIFICATE_MAX,
        }
    }
}

/// Binds the QUIC endpoint with the deployment's certificates.
pub fn endpoint(listen: SocketAddr, certs: &Path) -> Result<Endpoint, Error> {
    endpoint_with(listen, certs, &Limits::default())
}

/// `endpoint` with other limits.
pub fn endpoint_with(listen: SocketAddr, certs: &Path, limits: &Limits) -> Result<Endpoint, Error> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(certs)?)
        .map_err(|e| Error::InvalidInput(format!("QUIC TLS: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(limits.streams_per_connection_max.into());
    transport.max_concurrent_uni_streams(0u8.into());
    // No datagrams: the protocol never uses them, and quinn would keep a
    // receive buffer (about 1.25 MB) per connection for them, outside every
    // budget. The peer learns datagrams are off from the transport parameters.
    transport.datagram_receive_buffer_size(None);
    transport.datagram_send_buffer_size(0);
    transport.receive_window(CONNECTION_RECEIVE_WINDOW_BYTES.into());
    transport.stream_receive_window(STREAM_RECEIVE_WINDOW_BYTES.into());
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(limits.idle_timeout_ms).into()));
    config.transport_config(Arc::new(transport));
    Endpoint::server(config, listen)
        .map_err(|e| Error::InvalidInput(format!("listen on UDP {listen}: {e}")))
}

struct Shared {
    ledger: Arc<Ledger>,
    admission: Admission,
    limits: Limits,
    batches: Semaphore,
    /// Permits are request and answer bytes, of all connections (`Budget`).
    request_bytes: Arc<Semaphore>,
    slots: Arc<Slots>,
    /// Frames holding a heavy read in flight, per certificate.
    heavy_reads: Arc<PerCertificate>,
    /// Refused handshakes and connections, for the rate-limited log line.
    refusals: RefusalLog,
    shutting_down: AtomicBool,
    /// Frames waiting for new events (long polls) now.
    events_waiters: AtomicUsize,
    /// Turns true when shutdown begins (long polls stop waiting).
    stop: watch::Receiver<bool>,
}

/// How many of something each client certificate holds, up to `max`.
struct PerCertificate {
    counts: Mutex<std::collections::HashMap<[u8; 32], usize>>,
    max: usize,
}

/// One counted by `PerCertificate`, given back when dropped.
struct Counted {
    of: Arc<PerCertificate>,
    certificate: [u8; 32],
}

impl PerCertificate {
    fn new(max: usize) -> Arc<PerCertificate> {
        Arc::new(PerCertificate {
            counts: Mutex::new(std::collections::HashMap::new()),
            max,
        })
    }

    /// Counts one more for `certificate`, or `None` when it holds `max`.
    fn enter(self: &Arc<Self>, certificate: [u8; 32]) -> Option<Counted> {
        let mut counts = self.counts.lock();
        let count = counts.entry(certificate).or_insert(0);
        if *count >= self.max {
            if *count == 0 {
                counts.remove(&certificate);
            }
            return None;
        }
        *count += 1;
        Some(Counted {
            of: Arc::clone(self),
            certificate,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.of.counts.lock();
        let count = counts
            .get_mut(&self.certificate)
            .expect("a counted certificate is in the map");
        *count -= 1;
        if *count == 0 {
            counts.remove(&self.certificate);
        }
    }
}

/// Connection slots: a pool any role may take, pools kept for gateways and
/// the bureau (tried first by them), and a count per certificate.
struct Slots {
    any: Arc<Semaphore>,
    gateways: Arc<Semaphore>,
    bureau: Arc<Semaphore>,
    per_certificate: Arc<PerCertificate>,
}

/// A connection's slot, given back when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _certificate: Counted,
}

impl Slots {
    fn new(limits: &Limits) -> Slots {
        Slots {
            any: Arc::new(Semaphore::new(limits.connections_max)),
            gateways: Arc::new(Semaphore::new(limits.connections_kept_for_gateways)),
            bureau: Arc::new(Semaphore::new(limits.connections_kept_for_bureau)),
            per_certificate: PerCertificate::new(limits.connections_per_certificate_max),
        }
    }

    /// Takes a slot for `caller`, or says why there is none.
    fn take(&self, caller: &Caller) -> Result<Slot, &'static str> {
        let certificate = self
            .per_certificate
            .enter(caller.certificate)
            .ok_or("connections per certificate")?;
        let kept = match caller.role {
            Role::Gateway => Some(&self.gateways),
            Role::Bureau => Some(&self.bureau),
            _ => None,
        };
        let permit = kept
            .and_then(|kept| Arc::clone(kept).try_acquire_owned().ok())
            .or_else(|| Arc::clone(&self.any).try_acquire_owned().ok())
            .ok_or("connections")?;
        Ok(Slot {
            _permit: permit,
            _certificate: certificate,
        })
    }
}

/// A frame's hold on the heavy reads (`Op::is_heavy_read`) of its
/// connection and certificate, from decoding until its answer is sent.
struct HeavyRead {
    _connection: OwnedSemaphorePermit,
    _certificate: Counted,
}

/// When the frame holds a heavy read, takes a hold for it on the
/// connection's count (`connection`) and the certificate's; without one,
/// its heavy reads are answered `overloaded` in place (nothing runs) and
/// the rest of the frame goes on.
fn hold_heavy_reads(
    lines: Vec<Line>,
    caller: &Caller,
    connection: &Arc<Semaphore>,
    shared: &Shared,
) -> (Vec<Line>, Option<HeavyRead>) {
    let is_heavy =
        |line: &Line| matches!(line, Line::Request(request) if request.op.is_heavy_read());
    if !lines.iter().any(is_heavy) {
        return (lines, None);
    }
    let held = Arc::clone(connection)
        .try_acquire_owned()
        .ok()
        .and_then(|connection| {
            let certificate = shared.heavy_reads.enter(caller.certificate)?;
            Some(HeavyRead {
                _connection: connection,
                _certificate: certificate,
            })
        });
    if held.is_some() {
        return (lines, held);
    }
    let lines = lines
        .into_iter()
        .map(|line| match line {
            Line::Request(request) if request.op.is_heavy_read() => {
                Line::Answered(Answer::refused(
                    &request.id,
                    Reason::Overloaded,
                    "too many stats or audit_read in flight for this connection or certificate; read the answers, then retry",
                ))
            }
            line => line,
        })
        .collect();
    (lines, None)
}

/// One warning line per `REFUSAL_LOG_INTERVAL_MS` for refused handshakes
/// and connections, with how many were refused since the last line: a flood
/// must not turn into a flood of log lines.
struct RefusalLog {
    last: Mutex<Option<Instant>>,
    since: std::sync::atomic::AtomicU64,
}

impl RefusalLog {
    fn new() -> RefusalLog {
        RefusalLog {
            last: Mutex::new(None),
            since: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one refusal and logs it if no line was written lately.
    fn refused(&self, remote: SocketAddr, why: &str) {
        metrics::counter!(metric_names::CONNECTIONS_REFUSED).increment(1);
        let count = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock();
        let due =
            last.is_none_or(|at| at.elapsed() >= Duration::from_millis(REFUSAL_LOG_INTERVAL_MS));
        if due {
            *last = Some(Instant::now());
            self.since.store(0, Ordering::Relaxed);
            warn!(%remote, why, refused = count, "limit reached; connection refused (one line per second at most, `refused` counts since the last)");
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish (up to `SHUTDOWN_GRACE_MS`), and closes the endpoint.
pub async fn serve(
    endpoint: Endpoint,
    ledger: Arc<Ledger>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_with(endpoint, ledger, Limits::default(), shutdown).await;
}

/// `serve` with other limits (the endpoint's come from `endpoint_with`).
pub async fn serve_with(
    endpoint: Endpoint,
    ledger: Arc<Ledger>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_admitting(endpoint, ledger, limits, Admission::default(), shutdown).await;
}

/// `serve_with` refusing the certificates `admission` denies.
pub async fn serve_admitting(
    endpoint: Endpoint,
    ledger: Arc<Ledger>,
    limits: Limits,
    admission: Admission,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop_sender, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        events_waiters: AtomicUsize::new(0),
        stop: stop.clone(),
        admission,
        ledger,
        batches: Semaphore::new(limits.batches_in_flight_max),
        request_bytes: Arc::new(Semaphore::new(limits.request_bytes_in_flight_max)),
        slots: Arc::new(Slots::new(&limits)),
        heavy_reads: PerCertificate::new(limits.heavy_reads_per_certificate_max),
        refusals: RefusalLog::new(),
        shutting_down: AtomicBool::new(false),
        limits,
    });
    let handshakes = Arc::new(Semaphore::new(shared.limits.handshakes_in_progress_max));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let in_progress =
                    shared.limits.handshakes_in_progress_max - handshakes.available_permits();
                // Busy: a client must show it receives at the address it
                // claims before it costs a handshake. A Retry keeps no state.
                let incoming = if in_progress >= shared.limits.handshakes_before_retry
                    && !incoming.remote_address_validated()
                {
                    match incoming.retry() {
                        Ok(()) => continue,
                        Err(error) => error.into_incoming(),
                    }
                } else {
                    incoming
                };
                match Arc::clone(&handshakes).try_acquire_owned() {
                    Ok(handshake) => {
                        let (shared, stop) = (Arc::clone(&shared), stop.clone());
                        tasks.spawn(handle_connection(incoming, handshake, shared, stop));
                    }
                    Err(_) => {
                        shared.refusals.refused(incoming.remote_address(), "handshakes in progress");
                        incoming.refuse();
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    info!("shutting down: no new connections or requests");
    shared.shutting_down.store(true, Ordering::SeqCst);
    endpoint.set_server_config(None);
    let _ = stop_sender.send(true);
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), async {
        while tasks.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        warn!("in-flight requests did not finish within the grace period");
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// Why a verified client is not served.
enum NotAdmitted {
    /// The certificate's fingerprint is on the deny-list.
    Revoked(String),
    NoRole(String),
}

fn peer_caller(connection: &Connection, admission: &Admission) -> Result<Caller, NotAdmitted> {
    let identity = connection
        .peer_identity()
        .ok_or(NotAdmitted::NoRole("no client certificate".into()))?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| NotAdmitted::NoRole("unexpected peer identity".into()))?;
    let leaf = certs
        .first()
        .ok_or(NotAdmitted::NoRole("empty certificate chain".into()))?;
    let fingerprint = tls::fingerprint(leaf);
    if admission.denied_fingerprints.contains(&fingerprint) {
        return Err(NotAdmitted::Revoked(fingerprint));
    }
    let role = tls::role_of(leaf).map_err(NotAdmitted::NoRole)?;
    Ok(Caller::new(role, tls::fingerprint_bytes(leaf)))
}

async fn handle_connection(
    incoming: quinn::Incoming,
    handshake: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let timeout_ms = shared.limits.handshake_timeout_ms;
    let handshaken = tokio::select! {
        handshaken = tokio::time::timeout(Duration::from_millis(timeout_ms), incoming) => handshaken,
        // Shutdown does not wait for handshakes (dropping one closes it).
        _ = stop.changed() => return,
    };
    drop(handshake);
    let connection = match handshaken {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            debug!(%remote, %error, "handshake failed");
            return;
        }
        Err(_) => {
            // Dropping the unfinished handshake closes it.
            debug!(%remote, "handshake not finished within {timeout_ms} ms; dropped");
            return;
        }
    };
    let caller = match peer_caller(&connection, &shared.admission) {
        Ok(caller) => caller,
        Err(NotAdmitted::Revoked(fingerprint)) => {
            warn!(%remote, fingerprint, "client certificate is on the deny-list; closed");
            connection.close(CLOSE_REVOKED.into(), b"certificate revoked");
            return;
        }
        Err(NotAdmitted::NoRole(why)) => {
            warn!(%remote, why, "client certificate carries no usable role; closed");
            connection.close(CLOSE_NO_ROLE.into(), b"certificate carries no role");
            return;
        }
    };
    let slot = match shared.slots.take(&caller) {
        Ok(slot) => slot,
        Err(why) => {
            shared.refusals.refused(remote, why);
            connection.close(CLOSE_BUSY.into(), b"connection limit reached; retry later");
            return;
        }
    };
    metrics::gauge!(metric_names::CONNECTIONS).increment(1.0);
    let encoding = Encoding::of(&connection);
    let role = caller.role;
    let span = tracing::info_span!("connection", %remote, %role, ?encoding);
    let budget = Arc::new(Semaphore::new(
        shared.limits.request_bytes_per_connection_max,
    ));
    let heavy_reads = Arc::new(Semaphore::new(shared.limits.heavy_reads_per_connection_max));
    async move {
        debug!("connected");
        let mut streams = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                stream = connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let (shared, connection) = (Arc::clone(&shared), connection.clone());
                        let budget = Budget::new(
                            Arc::clone(&budget),
                            shared.limits.request_bytes_per_connection_max,
                            Arc::clone(&shared.request_bytes),
                            shared.limits.request_bytes_in_flight_max,
                        );
                        let stream = Stream { send, recv, encoding, caller, connection, heavy_reads: Arc::clone(&heavy_reads) };
                        streams.spawn(handle_stream(stream, shared, budget).in_current_span());
                    }
                    Err(error) => {
                        debug!(%error, "connection ended");
                        break;
                    }
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        }
        while streams.join_next().await.is_some() {}
        connection.close(CLOSE_SHUTDOWN.into(), b"bye");
    }
    .instrument(span)
    .await;
    metrics::gauge!(metric_names::CONNECTIONS).decrement(1.0);
    drop(slot);
}

/// One request stream and what it belongs to.
struct Stream {
    send: SendStream,
    recv: RecvStream,
    encoding: Encoding,
    caller: Caller,
    connection: Connection,
    /// The connection's count of frames holding a heavy read.
    heavy_reads: Arc<Semaphore>,
}

async fn handle_stream(stream: Stream, shared: Arc<Shared>, mut budget: Budget) {
    let Stream {
        mut send,
        mut recv,
        encoding,
        caller,
        connection,
        heavy_reads,
    } = stream;
    let read_timeout_ms = shared.limits.request_read_timeout_ms;
    let deadlines = Deadlines {
        header: Duration::from_millis(shared.limits.frame_header_timeout_ms),
        frame: Duration::from_millis(read_timeout_ms),
    };
    let bytes = match read_frame(&mut recv, &mut budget, deadlines).await {
        Ok(bytes) => Ok(bytes),
        Err(ReadFailure::NoHeader) => {
            warn!(
                "frame header not delivered within {} ms; stream reset",
                deadlines.header.as_millis()
            );
            let _ = recv.stop(CLOSE_PROTOCOL_ERROR.into());
            let _ = send.reset(CLOSE_PROTOCOL_ERROR.into());
            return;
        }
        Err(ReadFailure::TooLong(declared)) => {
            let _ = recv.stop(CLOSE_PROTOCOL_ERROR.into());
            let refusal = Refusal::new(
                Reason::InvalidRequest,
                format!("frame of {declared} bytes is over the limit of {FRAME_BYTES_MAX}"),
            );
            Err(refusal)
        }
        Err(ReadFailure::Stream(error)) => {
            debug!(%error, "stream ended before its request");
            return;
        }
        Err(ReadFailure::Slow) => {
            warn!("request not delivered within {read_timeout_ms} ms; stream reset");
            let _ = recv.stop(CLOSE_PROTOCOL_ERROR.into());
            let _ = send.reset(CLOSE_PROTOCOL_ERROR.into());
            return;
        }
    };
    // The frame's bytes stay paid until its answer is sent: the decoded
    // batch and the answer are bounded by them (or pay the difference).
    let decoded = bytes.and_then(|bytes| decode_frame(encoding, &bytes));
    let mut heavy_read = None;
    let (reply, misbehaved) = match decoded {
        Err(refusal) => (Reply::Refused(refusal), true),
        Ok(lines) => {
            let (lines, held) = hold_heavy_reads(lines, &caller, &heavy_reads, &shared);
            heavy_read = held;
            (
                Reply::Answers(run_lines(caller, lines, &shared).await),
                false,
            )
        }
    };
    if let Reply::Refused(refusal) = &reply {
        metrics::counter!(metric_names::FRAMES_REFUSED).increment(1);
        warn!(reason = %refusal.reason, message = %refusal.message, "bad frame; closing the connection");
    }
    let answer = match encoding {
        Encoding::Binary => wire::encode_reply(&reply),
        Encoding::Json => wire::frame_json(match &reply {
            Reply::Answers(answers) => json::encode_answers(answers),
            Reply::Refused(refusal) => json::encode_refusal(refusal),
        }),
    };
    drop(reply);
    // A client that never reads its answer (a tiny receive window) would
    // hold the answer's bytes here for ever: the stream is reset instead.
    let write_timeout_ms = shared.limits.answer_write_timeout_ms;
    let write_timeout = Duration::from_millis(write_timeout_ms);
    let written = tokio::time::timeout(write_timeout, async {
        budget.pay_at_least(answer.len()).await;
        send.write_all(&answer).await
    });
    match written.await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            debug!("client went away before its answer");
            return;
        }
        Err(_) => {
            warn!("answer not taken within {write_timeout_ms} ms; stream reset");
            let _ = send.reset(CLOSE_PROTOCOL_ERROR.into());
            return;
        }
    }
    drop(answer);
    drop(budget);
    drop(heavy_read);
    if send.finish().is_err() {
        debug!("client went away before its answer");
        return;
    }
    // Wait until the peer has the whole answer, so that closing the connection
    // (a bad frame, or shutdown) never drops an answer already given.
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    if misbehaved {
        connection.close(CLOSE_PROTOCOL_ERROR.into(), b"bad frame");
    }
}

/// How a connection's frames carry their bodies, chosen by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// `voucherd/1`: bincode.
    Binary,
    /// `voucherd-json/1`: a JSON array of API.md's request objects.
    Json,
}

impl Encoding {
    fn of(connection: &Connection) -> Encoding {
        let protocol = connection
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        match protocol.as_deref() {
            Some(tls::ALPN_JSON) => Encoding::Json,
            _ => Encoding::Binary,
        }
    }
}

/// A frame's requests, each to run or already answered (a JSON item that is
/// not a valid request is answered `invalid_request` in its place).
fn decode_frame(encoding: Encoding, bytes: &[u8]) -> Result<Vec<Line>, Refusal> {
    match encoding {
        Encoding::Binary => Ok(wire::decode_requests(bytes)?
            .into_iter()
            .map(Line::Request)
            .collect()),
        Encoding::Json => json::decode_requests(wire::unframe_json(bytes)?),
    }
}

/// Runs the requests of a frame as one batch; the answers of items answered
/// at decoding keep their places.
async fn run_lines(caller: Caller, lines: Vec<Line>, shared: &Arc<Shared>) -> Vec<Answer> {
    let requests: Vec<Request> = lines
        .iter()
        .filter_map(|line| match line {
            Line::Request(request) => Some(request.clone()),
            Line::Answered(_) => None,
        })
        .collect();
    let mut answers = if requests.is_empty() {
        Vec::new()
    } else {
        run_batch(caller, requests, shared).await
    }
    .into_iter();
    lines
        .into_iter()
        .map(|line| match line {
            Line::Request(_) => answers.next().expect("one answer per request run"),
            Line::Answered(answer) => answer,
        })
        .collect()
}

fn refuse_all(
    requests: &[crate::domain::op::Request],
    reason: Reason,
    message: &str,
) -> Vec<Answer> {
    requests
        .iter()
        .map(|r| Answer::refused(&r.id, reason, message))
        .collect()
}

async fn run_batch(
    caller: Caller,
    requests: Vec<crate::domain::op::Request>,
    shared: &Arc<Shared>,
) -> Vec<Answer> {
    if shared.shutting_down.load(Ordering::SeqCst) {
        return refuse_all(
            &requests,
            Reason::ShuttingDown,
            "the daemon is shutting down; retry elsewhere or later",
        );
    }
    if let Err(refused) = wait_for_events(caller, &requests, shared).await {
        return refused;
    }
    let slot = tokio::time::timeout(
        Duration::from_millis(BATCH_SLOT_WAIT_MS),
        shared.batches.acquire(),
    )
    .await;
    let Ok(Ok(_slot)) = slot else {
        return refuse_all(
            &requests,
            Reason::Overloaded,
            "too many batches in flight; retry",
        );
    };
    let ledger = Arc::clone(&shared.ledger);
    let started = Instant::now();
    // A small frame of point operations is applied right here: it takes
    // tens of microseconds, less than handing it to another thread. It
    // never waits on this worker: a request whose id is in flight elsewhere
    // is awaited (`apply_inline`). Anything larger, and everything while an
    // `expire` runs, goes to the blocking pool.
    let inline = requests.len() <= INLINE_APPLY_OPS_MAX
        && requests.iter().all(|r| r.op.is_point())
        && !shared.ledger.is_sweeping();
    let (requests, pending) = if inline {
        let pending = apply_inline(&ledger, caller, &requests).await;
        (requests, pending)
    } else {
        match tokio::task::spawn_blocking(move || {
            let pending = ledger.apply(caller, &requests);
            (requests, pending)
        })
        .await
        {
            Ok(applied) => applied,
            Err(error) => panic!("a batch panicked: {error}"),
        }
    };
    let applied = Instant::now();
    metrics::histogram!(metric_names::FRAME_STAGE_SECONDS, "stage" => "apply")
        .record((applied - started).as_secs_f64());
    // The wait for durability holds no thread: the committer's news wakes it.
    if let Some(mut durability) = shared.ledger.durability() {
        let ticket = pending.ticket();
        // An error means the journal is gone; `finish` then answers for it.
        let _ = durability.wait_for(|now| now.settles(ticket)).await;
    }
    metrics::histogram!(metric_names::FRAME_STAGE_SECONDS, "stage" => "durable")
        .record(applied.elapsed().as_secs_f64());
    let answers = shared.ledger.finish(pending);
    record_batch(&requests, &answers, started.elapsed());
    answers
}

/// A frame holding an `events` request with `wait_ms` (a long poll) waits,
/// before it is applied, until that request would find an event, `wait_ms`
/// passes, or shutdown begins. It waits on the ledger's notice of new
/// events, holding no thread, lock or batch slot. At most
/// `Limits::events_waiters_max` frames wait at once; one more is answered
/// `overloaded` (every request of the frame), without waiting.
async fn wait_for_events(
    caller: Caller,
    requests: &[Request],
    shared: &Arc<Shared>,
) -> Result<(), Vec<Answer>> {
    let Some((op, wait_ms)) = requests.iter().find_map(|request| match request.op {
        Op::Events {
            wait_ms: Some(wait_ms),
            ..
        } if wait_ms > 0 && wait_ms <= EVENTS_WAIT_MS_MAX && request.op.allows(caller.role) => {
            Some((&request.op, wait_ms))
        }
        _ => None,
    }) else {
        return Ok(());
    };
    // Subscribed before the first look, so an event noted in between wakes it.
    let mut notice = shared.ledger.events_notice();
    if shared.ledger.events_ready(caller.role, op) {
        return Ok(());
    }
    let Some(_waiter) = Waiter::enter(&shared.events_waiters, shared.limits.events_waiters_max)
    else {
        return Err(refuse_all(
            requests,
            Reason::Overloaded,
            "too many events requests are waiting for new events; retry",
        ));
    };
    let mut stop = shared.stop.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.into());
    while !shared.ledger.events_ready(caller.role, op) && !*stop.borrow() {
        tokio::select! {
            changed = notice.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
            _ = stop.changed() => break,
        }
    }
    Ok(())
}

/// Counts a long poll as waiting until dropped.
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    /// `None` when `max` are waiting already.
    fn enter(waiters: &'a AtomicUsize, max: usize) -> Option<Waiter<'a>> {
        waiters
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                (now < max).then_some(now + 1)
            })
            .ok()
            .map(|_| Waiter(waiters))
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Pause before trying again a frame stopped by an `expire` holding every
/// shard (`WaitFor::Sweep`), milliseconds.
const SWEEP_RETRY_MS: u64 = 1;

/// Applies a frame on this async worker without ever blocking it: where a
/// request would wait for its id in flight in another frame (being decided,
/// or not durable yet) or for an `expire`, the frame stops before it and
/// this task awaits the ledger's news (`request_decided`, `durability`) or
/// a short pause, then goes on. Once the frame has waited
/// `INFLIGHT_WAIT_MS_MAX` (from its first wait), the request it waits for is
/// answered `overloaded` (nothing applied) and the frame goes on. The one wait left is an `expire` that starts
/// between the check and a request's locks (microseconds apart).
pub async fn apply_inline(ledger: &Ledger, caller: Caller, requests: &[Request]) -> Pending {
    let mut run = FrameRun::new(caller, requests);
    let mut waiting_since: Option<Instant> = None;
    loop {
        let decided = ledger.request_decided();
        tokio::pin!(decided);
        decided.as_mut().enable();
        let Some(wait) = ledger.apply_without_waiting(&mut run) else {
            return ledger.applied(run);
        };
        let since = *waiting_since.get_or_insert_with(Instant::now);
        let left = Duration::from_millis(INFLIGHT_WAIT_MS_MAX).saturating_sub(since.elapsed());
        if left.is_zero() {
            let refusal = Refusal::new(
                Reason::Overloaded,
                "the same request id is in flight; retry",
            );
            ledger.refuse_next(&mut run, refusal);
            waiting_since = None;
            continue;
        }
        let _ = tokio::time::timeout(left, async {
            match wait {
                WaitFor::Decided => decided.await,
                WaitFor::Durable(ticket) => {
                    if let Some(mut durability) = ledger.durability() {
                        let _ = durability.wait_for(|now| now.settles(ticket)).await;
                    }
                }
                WaitFor::Sweep => {
                    tokio::time::sleep(Duration::from_millis(SWEEP_RETRY_MS)).await;
                }
            }
        })
        .await;
    }
}

/// Counts a batch's answers by op and outcome and records their latency.
fn record_batch(requests: &[Request], answers: &[Answer], elapsed: Duration) {
    metrics::histogram!(metric_names::BATCH_OPERATIONS).record(requests.len() as f64);
    let seconds = elapsed.as_secs_f64();
    for (request, answer) in requests.iter().zip(answers) {
        let op = request.op.name();
        let outcome = match &answer.outcome {
            Ok(_) => "ok",
            Err(refusal) => refusal.reason.as_str(),
        };
        metrics::counter!(metric_names::OPERATIONS, "op" => op, "outcome" => outcome).increment(1);
        metrics::histogram!(metric_names::OPERATION_SECONDS, "op" => op).record(seconds);
    }
}

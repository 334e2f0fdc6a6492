//! The QUIC service: admission in the accept loop, one task per connection,
//! one task per request stream, graceful shutdown.
//!
//! Connections are capped by a semaphore (refused past `CONNECTIONS_MAX`);
//! the caller's role comes from its verified client certificate. Each stream
//! carries one request frame, read within a byte budget shared by all streams
//! (`REQUEST_BYTES_IN_FLIGHT_MAX`, paid piece by piece before reading) and the
//! QUIC flow-control windows, so memory for requests is bounded whatever the
//! clients send; the batch runs on a blocking thread (the ledger waits for
//! fsync) and the answer frame goes back on the same stream. A connection
//! that sends an unreadable frame gets a refusal, then is closed with
//! `CLOSE_PROTOCOL_ERROR`; everyone else is served on.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use crate::domain::op::{Answer, Caller, Op, Request};
use crate::error::{Error, Reason, Refusal};
use crate::ledger::Ledger;
use crate::limits::{
    ANSWER_WRITE_TIMEOUT_MS, BATCHES_IN_FLIGHT_MAX, BATCH_SLOT_WAIT_MS, CONNECTIONS_MAX,
    CONNECTION_RECEIVE_WINDOW_BYTES, EVENTS_WAITERS_MAX, EVENTS_WAIT_MS_MAX, FRAME_BYTES_MAX,
    IDLE_TIMEOUT_MS, INLINE_APPLY_OPS_MAX, REQUEST_BYTES_IN_FLIGHT_MAX, REQUEST_READ_CHUNK_BYTES,
    REQUEST_READ_TIMEOUT_MS, SHUTDOWN_GRACE_MS, STREAMS_PER_CONNECTION_MAX,
    STREAM_RECEIVE_WINDOW_BYTES,
};
use crate::metric_names;
use crate::net::json::{self, Line};
use crate::net::tls;
use crate::net::wire::{self, Reply};

/// Application close codes.
pub const CLOSE_SHUTDOWN: u32 = 0;
pub const CLOSE_PROTOCOL_ERROR: u32 = 1;
pub const CLOSE_NO_ROLE: u32 = 2;
pub const CLOSE_REVOKED: u32 = 3;

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
    pub streams_per_connection_max: u32,
    pub idle_timeout_ms: u32,
    pub request_read_timeout_ms: u64,
    pub answer_write_timeout_ms: u64,
    pub batches_in_flight_max: usize,
    pub request_bytes_in_flight_max: usize,
    pub events_waiters_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_max: CONNECTIONS_MAX,
            streams_per_connection_max: STREAMS_PER_CONNECTION_MAX,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            answer_write_timeout_ms: ANSWER_WRITE_TIMEOUT_MS,
            request_read_timeout_ms: REQUEST_READ_TIMEOUT_MS,
            batches_in_flight_max: BATCHES_IN_FLIGHT_MAX,
            request_bytes_in_flight_max: REQUEST_BYTES_IN_FLIGHT_MAX,
            events_waiters_max: EVENTS_WAITERS_MAX,
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
    /// Permits are request bytes (see `read_frame`).
    request_bytes: Semaphore,
    shutting_down: AtomicBool,
    /// Frames waiting for new events (long polls) now.
    events_waiters: AtomicUsize,
    /// Turns true when shutdown begins (long polls stop waiting).
    stop: watch::Receiver<bool>,
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
        request_bytes: Semaphore::new(limits.request_bytes_in_flight_max),
        shutting_down: AtomicBool::new(false),
        limits,
    });
    let connections = Arc::new(Semaphore::new(shared.limits.connections_max));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                match Arc::clone(&connections).try_acquire_owned() {
                    Ok(permit) => {
                        let (shared, stop) = (Arc::clone(&shared), stop.clone());
                        tasks.spawn(async move {
                            metrics::gauge!(metric_names::CONNECTIONS).increment(1.0);
                            handle_connection(incoming, shared, stop).await;
                            metrics::gauge!(metric_names::CONNECTIONS).decrement(1.0);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        warn!(remote = %incoming.remote_address(), "connection limit reached; refused");
                        metrics::counter!(metric_names::CONNECTIONS_REFUSED).increment(1);
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
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            debug!(%remote, %error, "handshake failed");
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
    let encoding = Encoding::of(&connection);
    let role = caller.role;
    let span = tracing::info_span!("connection", %remote, %role, ?encoding);
    async move {
        debug!("connected");
        let mut streams = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                stream = connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let (shared, connection) = (Arc::clone(&shared), connection.clone());
                        streams.spawn(handle_stream(send, recv, encoding, caller, shared, connection).in_current_span());
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
}

async fn handle_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    encoding: Encoding,
    caller: Caller,
    shared: Arc<Shared>,
    connection: Connection,
) {
    let read_timeout_ms = shared.limits.request_read_timeout_ms;
    let read = tokio::time::timeout(
        Duration::from_millis(read_timeout_ms),
        read_frame(&mut recv, &shared.request_bytes),
    )
    .await;
    let (bytes, budget) = match read {
        Ok(Ok((bytes, budget))) => (Ok(bytes), Some(budget)),
        Ok(Err(ReadFailure::TooLong(declared))) => {
            let _ = recv.stop(CLOSE_PROTOCOL_ERROR.into());
            let refusal = Refusal::new(
                Reason::InvalidRequest,
                format!("frame of {declared} bytes is over the limit of {FRAME_BYTES_MAX}"),
            );
            (Err(refusal), None)
        }
        Ok(Err(ReadFailure::Stream(error))) => {
            debug!(%error, "stream ended before its request");
            return;
        }
        Err(_) => {
            warn!("request not delivered within {read_timeout_ms} ms; stream reset");
            let _ = recv.stop(CLOSE_PROTOCOL_ERROR.into());
            let _ = send.reset(CLOSE_PROTOCOL_ERROR.into());
            return;
        }
    };
    let decoded = bytes.and_then(|bytes| decode_frame(encoding, &bytes));
    // The frame's bytes are gone; the decoded batch is bounded by them.
    drop(budget);
    let (reply, misbehaved) = match decoded {
        Err(refusal) => (Reply::Refused(refusal), true),
        Ok(lines) => (
            Reply::Answers(run_lines(caller, lines, &shared).await),
            false,
        ),
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
    match tokio::time::timeout(write_timeout, send.write_all(&answer)).await {
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

/// Why a request frame was not read.
enum ReadFailure {
    /// The frame declares (or carries) more than `FRAME_BYTES_MAX` bytes.
    TooLong(usize),
    Stream(quinn::ReadError),
}

/// Permits of the request byte budget, given back when dropped.
struct Budget<'a> {
    semaphore: &'a Semaphore,
    bytes: usize,
}

impl Budget<'_> {
    /// Waits for `bytes` more permits.
    async fn pay(&mut self, bytes: usize) {
        let count = u32::try_from(bytes).expect("a read chunk fits u32");
        self.semaphore
            .acquire_many(count)
            .await
            .expect("the request byte budget is never closed")
            .forget();
        self.bytes += bytes;
    }

    fn refund(&mut self, bytes: usize) {
        assert!(bytes <= self.bytes, "refunding more than was paid");
        self.semaphore.add_permits(bytes);
        self.bytes -= bytes;
    }
}

impl Drop for Budget<'_> {
    fn drop(&mut self) {
        self.semaphore.add_permits(self.bytes);
    }
}

/// Reads one request frame to the end of the stream, paying the byte budget
/// for each piece before reading it: the length prefix first, then at most
/// `REQUEST_READ_CHUNK_BYTES` at a time and never more than the frame
/// declares (plus one byte, to notice a longer frame). A declared length over
/// `FRAME_BYTES_MAX` is refused before its body is read.
async fn read_frame<'a>(
    recv: &mut RecvStream,
    budget: &'a Semaphore,
) -> Result<(Vec<u8>, Budget<'a>), ReadFailure> {
    let mut paid = Budget {
        semaphore: budget,
        bytes: 0,
    };
    let mut bytes = Vec::new();
    loop {
        let expected = match bytes.get(..4) {
            None => 4,
            Some(prefix) => {
                let declared = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
                if declared > FRAME_BYTES_MAX {
                    return Err(ReadFailure::TooLong(declared));
                }
                4 + declared
            }
        };
        let want = expected
            .saturating_sub(bytes.len())
            .clamp(1, REQUEST_READ_CHUNK_BYTES);
        paid.pay(want).await;
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => {
                paid.refund(want - chunk.bytes.len());
                bytes.extend_from_slice(&chunk.bytes);
                if bytes.len() > expected && bytes.len() > 4 {
                    // Longer than declared: stop reading; decoding refuses it.
                    return Ok((bytes, paid));
                }
            }
            Ok(None) => {
                paid.refund(want);
                return Ok((bytes, paid));
            }
            Err(error) => return Err(ReadFailure::Stream(error)),
        }
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
    // tens of microseconds, less than handing it to another thread. It can
    // block this worker only for a retry of a request still being written
    // (until that write is durable), or if an `expire` starts in the
    // microseconds between this check and its locks. Anything larger, and
    // everything while an `expire` runs, goes to the blocking pool.
    let inline = requests.len() <= INLINE_APPLY_OPS_MAX
        && requests.iter().all(|r| r.op.is_point())
        && !shared.ledger.is_sweeping();
    let (requests, pending) = if inline {
        let pending = ledger.apply(caller, &requests);
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
    // The wait for durability holds no thread: the committer's news wakes it.
    if let Some(mut durability) = shared.ledger.durability() {
        let ticket = pending.ticket();
        // An error means the journal is gone; `finish` then answers for it.
        let _ = durability.wait_for(|now| now.settles(ticket)).await;
    }
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

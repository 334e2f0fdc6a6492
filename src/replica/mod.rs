//! Replicated mode: the audit log on a JetStream stream (three replicas),
//! a leader elected by a lease in a JetStream key-value bucket, and standbys
//! that replay the stream into their own store (docs/replication.md).
//!
//! `log.rs` publishes each committed group before it is written locally (the
//! `store::replica` hook) and reads the stream back; `lease.rs` holds the
//! lease; this file connects, and runs a node's life: follow, take the
//! lease, catch up, fence the old leader, serve, renew; stop when refused.

mod group;
mod lease;
mod log;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use tracing::{error, info, warn};

use crate::error::Error;
use crate::ledger::Ledger;
use crate::limits::{
    REPLICA_ACKS_IN_FLIGHT_MAX, REPLICA_LEASE_RENEW_MS, REPLICA_POLL_MS,
    REPLICA_REQUEST_TIMEOUT_MS, REPLICA_SAMPLE_MS, REPLICA_SETUP_WAIT_MS, REPLICA_STREAM_REPLICAS,
};
use crate::metric_names::{
    REPLICA_COUNTERS, REPLICA_LAG_MESSAGES, REPLICA_LEADER, REPLICA_LEASE_RENEW_FAILURES,
    REPLICA_STREAM_BYTES,
};
use crate::store::Store;

pub use log::{
    EVENTS_NONE, HEADER_AUDIT_SEQ, STREAM_DEFAULT, SUBJECT_EVENTS, SUBJECT_GROUP, SUBJECT_LEADER,
};

/// The exit code after the node lost its right to write (lease lost, an
/// append refused): the same as a failed store's, so a supervisor restarts
/// it and it comes back as a standby.
pub const EXIT_STEPPED_DOWN: u8 = 75;

/// How long the answers of a node stepping down (`outcome_unknown`) have
/// to leave before the process exits, milliseconds.
const STEP_DOWN_GRACE_MS: u64 = 500;

/// Where the replicated log lives and how this node is reached.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// NATS server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub urls: String,
    /// The stream's name; its subjects are `<prefix>.group`, `.leader`,
    /// `.events.<district>`, the lease bucket `<name>_lease`.
    pub stream: String,
    /// The address clients reach this daemon at (named in `not_leader`).
    pub advertise: SocketAddr,
}

/// Connects to JetStream, makes sure the stream and the lease bucket exist,
/// hooks the log into the store's commit path and starts the node as a
/// standby (every request is `not_leader` until it leads). Returns the task
/// that runs the node; it ends the process itself when the node must stop.
pub async fn start(
    config: ReplicaConfig,
    ledger: Arc<Ledger>,
    store: Arc<Store>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        Error::Unavailable(format!("replicated mode, {what} ({}): {e}", config.urls))
    };
    let mut addresses = Vec::new();
    for url in config
        .urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let address: async_nats::ServerAddr = url
            .parse()
            .map_err(|e| Error::InvalidInput(format!("--replicate {url}: {e}")))?;
        addresses.push(address);
    }
    if addresses.is_empty() {
        return Err(Error::InvalidInput(
            "--replicate: no NATS address given".into(),
        ));
    }
    let client = async_nats::ConnectOptions::new()
        .name(format!("voucherd {}", config.advertise))
        .connection_timeout(Duration::from_millis(REPLICA_REQUEST_TIMEOUT_MS))
        .connect(addresses)
        .await
        .map_err(|e| unavailable("connect", &e))?;
    let context = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(REPLICA_REQUEST_TIMEOUT_MS))
        .max_ack_inflight(REPLICA_ACKS_IN_FLIGHT_MAX)
        .backpressure_on_inflight(true)
        .build(client);
    let prefix = config.stream.to_ascii_lowercase();
    // A cluster that is still forming (no stream leader yet) times out the
    // first requests: tried again until `REPLICA_SETUP_WAIT_MS`.
    let started = Instant::now();
    let (stream, lease) = loop {
        let set_up = async {
            let stream = context
                .get_or_create_stream(stream::Config {
                    name: config.stream.clone(),
                    subjects: vec![format!("{prefix}.>")],
                    storage: stream::StorageType::File,
                    num_replicas: REPLICA_STREAM_REPLICAS,
                    duplicate_window: Duration::from_secs(120),
                    // Kept whole (D104): no age or size limit, and should
                    // an operator add one, appends are refused rather than
                    // the oldest records dropped.
                    retention: stream::RetentionPolicy::Limits,
                    discard: stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("stream {}: {e}", config.stream))?;
            let lease = lease::Lease::open(&context, &config.stream, config.advertise).await?;
            Ok::<_, String>((stream, lease))
        };
        match set_up.await {
            Ok(done) => break done,
            Err(why) if started.elapsed() < Duration::from_millis(REPLICA_SETUP_WAIT_MS) => {
                warn!(%why, "JetStream is not ready; trying again");
                tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
            }
            Err(why) => return Err(unavailable("set-up", &why)),
        }
    };
    if let Some(problem) = retention_problem(&stream.cached_info().config) {
        return Err(Error::InvalidInput(format!(
            "replicated mode: the stream {} {problem}; the stream is the replicated audit \
             log and must keep every record (docs/replication.md, \"Retention\")",
            config.stream
        )));
    }
    let log = Arc::new(log::Log::new(
        context,
        stream,
        &prefix,
        Arc::clone(&ledger),
        config.advertise,
        ledger.person_key_check(),
        tokio::runtime::Handle::current(),
    ));
    ledger.set_standby(Some(
        "not the leader: this daemon is a standby and no leader is known yet".into(),
    ));
    store.set_replica(log.clone());
    for name in REPLICA_COUNTERS {
        metrics::counter!(*name).absolute(0);
    }
    metrics::gauge!(REPLICA_LEADER).set(0.0);
    tokio::spawn(sample(Arc::clone(&log)));
    info!(nats = %config.urls, stream = %config.stream, "replicated mode: starting as a standby");
    Ok(tokio::spawn(run(log, lease, ledger, store)))
}

/// Refreshes the stream's gauges every `REPLICA_SAMPLE_MS`: its size, and
/// how far this node's store is behind its end (0 on the leader).
async fn sample(log: Arc<log::Log>) {
    let mut tick = tokio::time::interval(Duration::from_millis(REPLICA_SAMPLE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok((last, bytes)) = log.stream_state().await {
            metrics::gauge!(REPLICA_STREAM_BYTES).set(bytes as f64);
            metrics::gauge!(REPLICA_LAG_MESSAGES).set(last.saturating_sub(log.position()) as f64);
        }
    }
}

/// Why a stream's configuration could lose records of the audit chain, if
/// it could: a rebuilt node replays the stream from its first record, and
/// auditors read it as the replicated log (D104).
fn retention_problem(config: &stream::Config) -> Option<String> {
    if config.retention != stream::RetentionPolicy::Limits {
        return Some(
            "removes messages once consumers took them (retention is not `limits`)".into(),
        );
    }
    if !config.max_age.is_zero() {
        return Some(format!(
            "removes records older than {} s (max_age)",
            config.max_age.as_secs()
        ));
    }
    let limited =
        config.max_bytes > 0 || config.max_messages > 0 || config.max_messages_per_subject > 0;
    if limited && config.discard == stream::DiscardPolicy::Old {
        return Some(
            "drops its oldest records when it reaches its size or count limit (discard: old)"
                .into(),
        );
    }
    None
}

/// A node's life: follow until the lease is free, lead until refused.
async fn run(log: Arc<log::Log>, lease: lease::Lease, ledger: Arc<Ledger>, store: Arc<Store>) {
    let mut next = resume_point(&log, &ledger, &store).await;
    let mut known_leader = String::new();
    loop {
        match log.follow(&ledger, &mut next, None).await {
            Ok(_) => {}
            Err(log::Failed::Transient(why)) => {
                warn!(%why, "reading the stream failed; trying again");
                tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
                continue;
            }
            Err(log::Failed::Fatal(why)) => {
                stop(
                    &ledger,
                    &store,
                    &format!("following the stream failed: {why}"),
                )
                .await
            }
        }
        // A leader publishes every record's events from its events index
        // (D105): a node whose index is still being built does not lead.
        if ledger.events_index_ready() {
            match lease.take(&log.tenure).await {
                Ok(Some(revision)) => lead(&log, &lease, &ledger, &store, next, revision).await,
                Ok(None) => {}
                Err(why) => warn!(%why, "the lease could not be read; still a standby"),
            }
        }
        match lease.holder().await {
            Ok(Some(holder)) if holder != known_leader => {
                info!(leader = %holder, "following the leader");
                ledger.set_standby(Some(format!(
                    "not the leader: this daemon is a standby; leader={holder}"
                )));
                known_leader = holder;
            }
            Ok(_) => {}
            Err(why) => warn!(%why, "the lease could not be read; still a standby"),
        }
        tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
    }
}

/// Where in the stream this node's store ends (its audit head's message),
/// so following resumes there instead of at sequence 1.
async fn resume_point(log: &log::Log, ledger: &Ledger, store: &Store) -> u64 {
    let (head, _, _) = ledger.head();
    let started = Instant::now();
    loop {
        match log.resume_point(head).await {
            Ok(next) => {
                info!(
                    audit_seq = head,
                    stream_seq = next,
                    ms = started.elapsed().as_millis() as u64,
                    "following the stream from this store's head"
                );
                return next;
            }
            Err(log::Failed::Transient(why)) => {
                warn!(%why, "finding this store's head in the stream failed; trying again");
                tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
            }
            Err(log::Failed::Fatal(why)) => {
                stop(ledger, store, &format!("reading the stream failed: {why}")).await
            }
        }
    }
}

/// Leads once the lease is held: catches up to the stream's end, fences
/// every earlier leader by appending a leader record after it, seals the
/// campaigns, serves, renews. Never returns: a lost lease stops the process.
async fn lead(
    log: &log::Log,
    lease: &lease::Lease,
    ledger: &Arc<Ledger>,
    store: &Store,
    mut next: u64,
    mut revision: u64,
) -> ! {
    let started = Instant::now();
    // A long catch-up goes in passes of one renewal interval, the lease
    // renewed after each: its lifetime is shorter than a long backlog's replay.
    let pass = Duration::from_millis(REPLICA_LEASE_RENEW_MS);
    loop {
        let caught_up = match log.follow(ledger, &mut next, Some(pass)).await {
            Ok(caught_up) => caught_up,
            Err(log::Failed::Transient(why)) => {
                warn!(%why, "reading the stream failed while catching up; trying again");
                tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
                false
            }
            Err(log::Failed::Fatal(why)) => {
                stop(ledger, store, &format!("catching up failed: {why}")).await
            }
        };
        revision = renew(log, lease, ledger, store, revision, "while catching up").await;
        if !caught_up {
            continue;
        }
        // An earlier leader may still append (its lease lapsed but it does
        // not know yet): the leader record expects the end we caught up to,
        // and once it is in, every append of the earlier one is refused.
        match log.claim(next - 1).await {
            Ok(log::Claim::Claimed) => break,
            Ok(log::Claim::Moved) => continue,
            Err(log::Failed::Transient(why)) => {
                warn!(%why, "the leader record was not acknowledged; catching up and trying again");
                tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
            }
            Err(log::Failed::Fatal(why)) => {
                stop(
                    ledger,
                    store,
                    &format!("the leader record was refused: {why}"),
                )
                .await
            }
        }
    }
    let ledger_now = Arc::clone(ledger);
    match tokio::task::spawn_blocking(move || ledger_now.record_campaigns()).await {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => {
            stop(
                ledger,
                store,
                &format!("sealing the campaigns failed: {why}"),
            )
            .await
        }
        Err(why) => {
            stop(
                ledger,
                store,
                &format!("sealing the campaigns panicked: {why}"),
            )
            .await
        }
    }
    ledger.set_standby(None);
    metrics::gauge!(REPLICA_LEADER).set(1.0);
    let (seq, _, _) = ledger.head();
    info!(
        audit_seq = seq,
        ms = started.elapsed().as_millis() as u64,
        "leading: serving writes"
    );
    let mut interval = tokio::time::interval(Duration::from_millis(REPLICA_LEASE_RENEW_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        revision = renew(log, lease, ledger, store, revision, "while leading").await;
    }
}

/// Renews the lease held at `revision`: its new revision. A renewal left
/// unanswered (`REPLICA_LEASE_REQUEST_TIMEOUT_MS`) is tried again while the
/// tenure holds; a refused one, or none through before the tenure ends,
/// stops the node (answers already stopped with the tenure: `may_answer`).
async fn renew(
    log: &log::Log,
    lease: &lease::Lease,
    ledger: &Ledger,
    store: &Store,
    revision: u64,
    when: &str,
) -> u64 {
    loop {
        let why = match lease.renew(revision, &log.tenure).await {
            Ok(revision) => return revision,
            Err(lease::Renewal::Refused(why)) => format!("refused: {why}"),
            Err(lease::Renewal::Unanswered(why)) if log.tenure.holds(Instant::now()) => {
                metrics::counter!(REPLICA_LEASE_RENEW_FAILURES).increment(1);
                warn!(%why, "a lease renewal went unanswered; trying again");
                // A failure at once (a connection lost) is not retried in a
                // tight loop; a timed-out one already waited its second.
                tokio::time::sleep(Duration::from_millis(REPLICA_POLL_MS)).await;
                continue;
            }
            Err(lease::Renewal::Unanswered(why)) => format!("unanswered: {why}"),
        };
        log.tenure.end();
        metrics::counter!(REPLICA_LEASE_RENEW_FAILURES).increment(1);
        stop(
            ledger,
            store,
            &format!("the lease could not be renewed {when} ({why})"),
        )
        .await
    }
}

/// Stops the node: no request is answered as leader any more; the store
/// is failed so that every answer still waiting (a group whose publish
/// found no NATS majority, say) says `outcome_unknown` with `why` instead
/// of a lost connection; after `STEP_DOWN_GRACE_MS` for those answers to
/// leave, the process exits so that a supervisor restarts it as a standby,
/// which recovers from the stream what its store lacks.
async fn stop(ledger: &Ledger, store: &Store, why: &str) -> ! {
    metrics::gauge!(REPLICA_LEADER).set(0.0);
    error!(%why, "replicated mode: stepping down; exiting so a supervisor restarts the daemon as a standby");
    store.fail_stop(&format!("replicated mode stepped down: {why}"));
    ledger.set_standby(Some(format!(
        "not the leader: this daemon stepped down ({why})"
    )));
    tokio::time::sleep(Duration::from_millis(STEP_DOWN_GRACE_MS)).await;
    std::process::exit(EXIT_STEPPED_DOWN.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream voucherd creates keeps everything; a stream an operator
    /// configured to expire or drop records is refused at start, one that
    /// refuses appends when full is accepted (nothing acknowledged is lost).
    #[test]
    fn a_stream_that_would_drop_records_is_refused() {
        let kept = stream::Config {
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        assert_eq!(retention_problem(&kept), None);
        let full_refuses = stream::Config {
            max_bytes: 1 << 40,
            ..kept.clone()
        };
        assert_eq!(retention_problem(&full_refuses), None);
        for bad in [
            stream::Config {
                max_age: Duration::from_secs(86_400),
                ..kept.clone()
            },
            stream::Config {
                max_bytes: 1 << 40,
                discard: stream::DiscardPolicy::Old,
                ..kept.clone()
            },
            stream::Config {
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::Old,
                ..kept.clone()
            },
            stream::Config {
                retention: stream::RetentionPolicy::WorkQueue,
                ..kept.clone()
            },
        ] {
            assert!(retention_problem(&bad).is_some(), "{bad:?}");
        }
    }
}

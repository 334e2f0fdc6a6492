//! The leader's lease: one key in a JetStream key-value bucket whose
//! entries live `REPLICA_LEASE_MS`; taken by create (only when absent),
//! renewed by compare-and-set on the revision the holder last wrote, each
//! request bounded by `REPLICA_LEASE_REQUEST_TIMEOUT_MS`; and the tenure:
//! until when the holder may still answer (`Tenure`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use crate::limits::{
    REPLICA_LEASE_ANSWER_MARGIN_MS, REPLICA_LEASE_MS, REPLICA_LEASE_REQUEST_TIMEOUT_MS,
    REPLICA_STREAM_REPLICAS,
};

const KEY: &str = "leader";

pub(super) struct Lease {
    bucket: kv::Store,
    /// What this node writes as the holder: the address clients reach it at.
    holder: String,
}

/// Why a renewal did not go through.
#[derive(Debug, PartialEq)]
pub(super) enum Renewal {
    /// Someone else wrote the key since: the lease is lost.
    Refused(String),
    /// No answer within `REPLICA_LEASE_REQUEST_TIMEOUT_MS`, or another
    /// failure: the lease may or may not have been renewed.
    Unanswered(String),
}

/// `request` bounded by `REPLICA_LEASE_REQUEST_TIMEOUT_MS` (the context's
/// own timeout, `REPLICA_REQUEST_TIMEOUT_MS`, is longer than a lease).
async fn within<T, E: std::fmt::Display>(
    what: &str,
    request: impl Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, String> {
    tokio::time::timeout(
        Duration::from_millis(REPLICA_LEASE_REQUEST_TIMEOUT_MS),
        request,
    )
    .await
    .map_err(|_| format!("{what}: no answer within {REPLICA_LEASE_REQUEST_TIMEOUT_MS} ms"))
}

impl Lease {
    /// The bucket `<stream>_lease`, created when missing.
    pub(super) async fn open(
        context: &jetstream::Context,
        stream: &str,
        advertise: SocketAddr,
    ) -> Result<Lease, String> {
        let name = format!("{stream}_lease");
        let bucket = match context.get_key_value(&name).await {
            Ok(bucket) => bucket,
            Err(_) => context
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    max_age: Duration::from_millis(REPLICA_LEASE_MS),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: REPLICA_STREAM_REPLICAS,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("{name}: {e}"))?,
        };
        Ok(Lease {
            bucket,
            holder: advertise.to_string(),
        })
    }

    /// Takes the lease if nobody holds it: its revision, or `None` if held.
    /// `tenure` starts when the request left. A take whose answer was lost
    /// (no answer within the lease request timeout, or "already exists"
    /// when tried again) leaves the key holding this node's address: it is
    /// renewed on that revision, so the tenure starts from a known send time.
    pub(super) async fn take(&self, tenure: &Tenure) -> Result<Option<u64>, String> {
        let sent = Instant::now();
        let create = self.bucket.create(KEY, self.holder.clone().into());
        match within("taking the lease", create).await {
            Ok(Ok(revision)) => {
                tenure.renewed(sent);
                Ok(Some(revision))
            }
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                self.ours_already(tenure).await
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(why) => match self.ours_already(tenure).await {
                Ok(Some(revision)) => Ok(Some(revision)),
                _ => Err(why),
            },
        }
    }

    /// If the key holds this node's own address (another node never writes
    /// it; an earlier process of this address is gone, as this one holds
    /// its port), renews it: the new revision.
    async fn ours_already(&self, tenure: &Tenure) -> Result<Option<u64>, String> {
        match within("reading the lease", self.bucket.entry(KEY)).await? {
            Ok(Some(entry))
                if entry.operation == kv::Operation::Put
                    && entry.value == self.holder.as_bytes() =>
            {
                match self.renew(entry.revision, tenure).await {
                    Ok(revision) => Ok(Some(revision)),
                    Err(Renewal::Refused(_)) => Ok(None),
                    Err(Renewal::Unanswered(why)) => Err(why),
                }
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Renews the lease held at `revision`; refused when anyone wrote since.
    /// A renewal that went through moves `tenure` to when it was sent.
    pub(super) async fn renew(&self, revision: u64, tenure: &Tenure) -> Result<u64, Renewal> {
        let sent = Instant::now();
        let update = self
            .bucket
            .update(KEY, self.holder.clone().into(), revision);
        match within("renewing the lease", update).await {
            Ok(Ok(revision)) => {
                tenure.renewed(sent);
                Ok(revision)
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // A renewal of ours that timed out may have gone through:
                // the key then holds our own address at a later revision
                // (no other node writes it), and the lease is ours.
                match within("reading the lease", self.bucket.entry(KEY)).await {
                    Ok(Ok(Some(entry)))
                        if entry.operation == kv::Operation::Put
                            && entry.value == self.holder.as_bytes()
                            && entry.revision > revision =>
                    {
                        // Its send time is not known: the tenure moves
                        // with the next renewal, made on this revision.
                        Ok(entry.revision)
                    }
                    _ => Err(Renewal::Refused(e.to_string())),
                }
            }
            Ok(Err(e)) => Err(Renewal::Unanswered(e.to_string())),
            Err(why) => Err(Renewal::Unanswered(why)),
        }
    }

    /// Who holds the lease now (an address), if anyone.
    pub(super) async fn holder(&self) -> Result<Option<String>, String> {
        match within("reading the lease", self.bucket.entry(KEY)).await? {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Ok(Some(String::from_utf8_lossy(&entry.value).into_owned()))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Until when the holder may answer: `REPLICA_LEASE_MS` minus
/// `REPLICA_LEASE_ANSWER_MARGIN_MS` after its last successful lease request
/// was sent (the bucket's `max_age` counts from when the server stored it,
/// later than that). Zero before the lease is taken.
pub(super) struct Tenure {
    origin: Instant,
    /// Milliseconds after `origin` until which answers may be released.
    until_ms: AtomicU64,
}

impl Tenure {
    pub(super) fn new() -> Tenure {
        Tenure {
            origin: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    /// A lease request sent at `sent` went through.
    pub(super) fn renewed(&self, sent: Instant) {
        let until = sent.saturating_duration_since(self.origin)
            + Duration::from_millis(REPLICA_LEASE_MS - REPLICA_LEASE_ANSWER_MARGIN_MS);
        self.until_ms
            .fetch_max(until.as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether answers may still be released at `now`.
    pub(super) fn holds(&self, now: Instant) -> bool {
        (now.saturating_duration_since(self.origin).as_millis() as u64)
            < self.until_ms.load(Ordering::SeqCst)
    }

    /// Ends it at once (the node stops leading).
    pub(super) fn end(&self) {
        self.until_ms.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers stop `REPLICA_LEASE_ANSWER_MARGIN_MS` before the lease sent
    /// at the last successful request could lapse, and never before a take.
    #[test]
    fn the_tenure_ends_before_the_lease_could_lapse() {
        let tenure = Tenure::new();
        let start = Instant::now();
        assert!(!tenure.holds(start), "no answers before the lease is taken");
        tenure.renewed(start);
        let lease = Duration::from_millis(REPLICA_LEASE_MS);
        let margin = Duration::from_millis(REPLICA_LEASE_ANSWER_MARGIN_MS);
        assert!(tenure.holds(start + lease - margin - Duration::from_millis(1)));
        assert!(!tenure.holds(start + lease - margin));
        assert!(!tenure.holds(start + lease));
        // An older request's answer arriving late never shortens it.
        let later = start + Duration::from_millis(500);
        tenure.renewed(later);
        tenure.renewed(start);
        assert!(tenure.holds(later + lease - margin - Duration::from_millis(1)));
        tenure.end();
        assert!(!tenure.holds(later));
    }

    /// A lease request that hangs is given up after its own timeout, well
    /// inside the lease: before the tenure of the last renewal (sent at
    /// most `REPLICA_LEASE_RENEW_MS` before it) ends.
    #[tokio::test]
    async fn a_hanging_lease_request_is_given_up_within_the_lease() {
        let tenure = Tenure::new();
        let renewed = Instant::now();
        tenure.renewed(renewed);
        let started = tokio::time::Instant::now();
        let hung = within(
            "renewing the lease",
            std::future::pending::<Result<u64, String>>(),
        );
        let why = hung.await.expect_err("a request that never answers");
        assert!(why.contains("no answer within"), "{why}");
        let waited = started.elapsed();
        let timeout = Duration::from_millis(REPLICA_LEASE_REQUEST_TIMEOUT_MS);
        assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
        // The next renewal leaves at most `REPLICA_LEASE_RENEW_MS` after the
        // last good one; when it is given up, answers still may be released
        // (the leader stops first, it does not find itself already too late).
        let renew_every = Duration::from_millis(crate::limits::REPLICA_LEASE_RENEW_MS);
        let given_up = renewed + renew_every + timeout;
        assert!(tenure.holds(given_up));
    }
}

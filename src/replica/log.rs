//! The replicated log: each committed group published to the stream before
//! the local write (as `Replica`), with the expected last sequence (fencing)
//! and a message id (a retried publish is stored once); and the stream read
//! back and applied through `Ledger::replay` by a standby.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, stream::Stream};
use parking_lot::Mutex;

use crate::audit;
use crate::ledger::Ledger;
use crate::limits::{
    REPLICA_FOLLOW_BATCH_MAX, REPLICA_FOLLOW_COMMITS_MAX, REPLICA_PIPELINE_GROUPS_MAX,
    REPLICA_POLL_MS, REPLICA_PUBLISH_RETRY_MS,
};
use crate::metric_names::{REPLICA_FENCED, REPLICA_PUBLISH_SECONDS};
use crate::store::journal::{Commit, Table};
use crate::store::replica::Replica;

use super::group::{self, Entry};
use super::lease::Tenure;

/// The stream's default name (`--replica-stream`).
pub const STREAM_DEFAULT: &str = "VOUCHERD";
/// Subject (after the stream's prefix, its lower-case name) of a group
/// message: a commit group's sealed audit records and remembered request
/// ids in commit order (`group::pack`; a group larger than
/// `REPLICA_MESSAGE_BYTES_MAX` takes several), D111.
pub const SUBJECT_GROUP: &str = "group";
/// Subject of a leader record: the new leader's address, appended after the
/// end it caught up to, so every append of an earlier leader is refused.
pub const SUBJECT_LEADER: &str = "leader";
/// Subject of a group's events of the data return (数据回流) in one
/// district, followed by `.<district>` (`EVENTS_NONE` for campaign-wide
/// events): the payload is a JSON array of the events, each exactly as
/// `events` answers it, in chain order. The training system's consumers
/// read these; standbys skip them (D105, D111).
pub const SUBJECT_EVENTS: &str = "events";
/// The subject token of campaign-wide events (no district).
pub const EVENTS_NONE: &str = "_";
/// Header of a group message: the audit sequence of the chain's head after
/// it (its last record's, or the one before it when it holds none); of an
/// events message: its last event's `seq` (the `events` cursor after it).
pub const HEADER_AUDIT_SEQ: &str = "Voucherd-Audit-Seq";
/// Header of a leader record: the check value of the leader's person-key
/// secret (hex); a node whose own differs stops (D97).
pub const HEADER_PERSON_KEY_CHECK: &str = "Voucherd-Person-Key-Check";

/// One message to append.
struct Outgoing {
    subject: String,
    id: String,
    payload: bytes::Bytes,
    /// The `HEADER_AUDIT_SEQ` value.
    audit_seq: u64,
}

/// A published group awaiting its acknowledgements, one per message, in
/// order; `None` after a publish failed before it was sent (sent again).
struct Unsettled {
    messages: Vec<Outgoing>,
    /// The stream sequence right before the group's first message.
    last: u64,
    acks: Option<Vec<Ack>>,
    /// When it was first published (the retry window counts from there).
    started: Instant,
}

/// One message's acknowledgement, awaited by a task of its own so that its
/// in-flight permit is released whatever the committer waits for.
type Ack = tokio::task::JoinHandle<Result<PublishAck, PublishError>>;

/// Whether this node appends, and the stream's end as it knows it (after
/// every group published); `failed` once a group failed (nothing more is
/// published).
struct Appending {
    leading: bool,
    last: u64,
    /// The audit sequence of the last record published (the chain's head
    /// after every group published).
    head: u64,
    failed: bool,
    /// The audit records of the last `REPLICA_PIPELINE_GROUPS_MAX` groups
    /// published, oldest first: a group not yet written locally is among
    /// them (the committer holds a token for each until it is written), so
    /// an enrollment's redeem record is found here or in the store.
    recent: VecDeque<Vec<audit::AuditRecord>>,
}

/// What a leader record's append found.
pub(super) enum Claim {
    /// Appended right after the expected end: this node leads.
    Claimed,
    /// The stream moved on (an earlier leader appended): catch up again.
    Moved,
}

pub(super) struct Log {
    context: jetstream::Context,
    stream: Stream,
    group: String,
    leader: String,
    /// `<prefix>.events`: the leader publishes each record's events after it.
    events: String,
    /// Renders the events of a group's records (`Ledger::stream_events`).
    ledger: Arc<Ledger>,
    advertise: SocketAddr,
    /// This node's person-key check value, hex (`HEADER_PERSON_KEY_CHECK`).
    key_check: String,
    runtime: tokio::runtime::Handle,
    appending: Mutex<Appending>,
    /// The groups published and not yet settled, in order (`None`: a
    /// standby's group, or one with nothing to publish). Locked after
    /// `appending` when both are.
    unsettled: Mutex<VecDeque<Option<Unsettled>>>,
    /// Until when this node may answer as the leader (its lease).
    pub(super) tenure: Tenure,
    /// The last stream sequence this node's store holds (applied as a
    /// standby, appended as the leader): what the lag is measured from.
    position: AtomicU64,
}

/// Why an append or a catch-up failed: fatal (fenced by another leader's
/// append, a record that does not replay; never retried) or transient (a
/// NATS node lost, no answer in time: tried again).
pub(super) enum Failed {
    Fatal(String),
    Transient(String),
}

impl Failed {
    pub(super) fn into_reason(self) -> String {
        match self {
            Failed::Fatal(why) | Failed::Transient(why) => why,
        }
    }
}

fn publish_error(error: &dyn std::fmt::Display, kind: PublishErrorKind) -> Failed {
    if kind == PublishErrorKind::WrongLastSequence {
        metrics::counter!(REPLICA_FENCED).increment(1);
        Failed::Fatal(
            "the stream refused the append: another leader appended since (this daemon is deposed)"
                .into(),
        )
    } else {
        Failed::Transient(format!("JetStream did not acknowledge the append: {error}"))
    }
}

impl Log {
    pub(super) fn new(
        context: jetstream::Context,
        stream: Stream,
        prefix: &str,
        ledger: Arc<Ledger>,
        advertise: SocketAddr,
        key_check: [u8; 32],
        runtime: tokio::runtime::Handle,
    ) -> Log {
        Log {
            context,
            stream,
            group: format!("{prefix}.{SUBJECT_GROUP}"),
            leader: format!("{prefix}.{SUBJECT_LEADER}"),
            events: format!("{prefix}.{SUBJECT_EVENTS}"),
            ledger,
            advertise,
            key_check: hex::encode(key_check),
            runtime,
            appending: Mutex::new(Appending {
                leading: false,
                last: 0,
                head: 0,
                failed: false,
                recent: VecDeque::new(),
            }),
            unsettled: Mutex::new(VecDeque::new()),
            tenure: Tenure::new(),
            position: AtomicU64::new(0),
        }
    }

    /// The last stream sequence this node's store holds.
    pub(super) fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// The stream's last sequence and its size in bytes.
    pub(super) async fn stream_state(&self) -> Result<(u64, u64), String> {
        let info = self.stream.get_info().await.map_err(|e| e.to_string())?;
        Ok((info.state.last_sequence, info.state.bytes))
    }

    /// The messages of a group: its records and remembered request ids
    /// in group messages (commit order; deletes by pruning stay local),
    /// then its events, one message per district (D111).
    fn messages(
        &self,
        group: &[Commit],
        appending: &mut Appending,
    ) -> Result<Vec<Outgoing>, String> {
        let mut entries = Vec::new();
        let mut records = Vec::new();
        for commit in group {
            for put in &commit.puts {
                let Some(value) = &put.value else { continue };
                match put.table {
                    Table::Audit => {
                        let (record, _) = audit::open(value)?;
                        entries.push(Entry::Record {
                            seq: record.seq,
                            sealed: value,
                        });
                        records.push(record);
                    }
                    Table::Requests => entries.push(Entry::Request {
                        key: &put.key,
                        value,
                    }),
                    _ => {}
                }
            }
        }
        let mut messages: Vec<Outgoing> = group::pack(&entries, appending.head)
            .into_iter()
            .map(|packed| Outgoing {
                subject: self.group.clone(),
                id: format!("g.{}", blake3::hash(&packed.payload).to_hex()),
                payload: packed.payload.into(),
                audit_seq: packed.head,
            })
            .collect();
        let recent = &mut appending.recent;
        let earlier = |seq: u64| {
            recent.iter().find_map(|group| {
                let first = group.first()?.seq;
                group
                    .get(usize::try_from(seq.checked_sub(first)?).ok()?)
                    .cloned()
            })
        };
        let events = self.ledger.stream_events(&records, &earlier)?;
        if let Some(last) = records.last() {
            appending.head = last.seq;
            if recent.len() == REPLICA_PIPELINE_GROUPS_MAX {
                recent.pop_front();
            }
            recent.push_back(records);
        }
        for message in group::events_by_district(&events, EVENTS_NONE)? {
            messages.push(Outgoing {
                subject: format!("{}.{}", self.events, message.district),
                id: format!("e.{}", blake3::hash(&message.payload).to_hex()),
                payload: message.payload.into(),
                audit_seq: message.last_seq,
            });
        }
        Ok(messages)
    }

    /// Publishes `messages` right after stream sequence `last`, without
    /// waiting for their acknowledgements (awaited by tasks of their own).
    async fn publish(&self, messages: &[Outgoing], last: u64) -> Result<Vec<Ack>, Failed> {
        let mut acks = Vec::with_capacity(messages.len());
        for (offset, message) in (0u64..).zip(messages) {
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .message_id(&message.id)
                .expected_last_sequence(last + offset)
                .header(HEADER_AUDIT_SEQ, message.audit_seq.to_string().as_str());
            let ack = self
                .context
                .send_publish(message.subject.clone(), publish)
                .await
                .map_err(|e| publish_error(&e, e.kind()))?;
            acks.push(tokio::spawn(std::future::IntoFuture::into_future(ack)));
        }
        Ok(acks)
    }

    /// Waits for a group's acknowledgements, in order: each must report the
    /// sequence its message expected to get. The first failure decides (a
    /// later message's refusal may only follow from it).
    async fn acknowledged(acks: Vec<Ack>, last: u64) -> Result<(), Failed> {
        for (want, ack) in (last + 1..).zip(acks) {
            let ack = ack
                .await
                .map_err(|e| Failed::Fatal(format!("awaiting an acknowledgement: {e}")))?
                .map_err(|e| publish_error(&e, e.kind()))?;
            if ack.sequence != want {
                return Err(Failed::Fatal(format!(
                    "the stream stored the append at sequence {}, not {want}",
                    ack.sequence
                )));
            }
        }
        Ok(())
    }

    /// Appends a leader record after `last` (the end this node caught up
    /// to); on success this node appends every later group. A transient
    /// failure (no majority, no answer in time) may or may not have stored
    /// the record: the caller follows the stream again, which reads it if
    /// it is there, and claims at the new end.
    pub(super) async fn claim(&self, last: u64) -> Result<Claim, Failed> {
        let publish = PublishMessage::build()
            .payload(self.advertise.to_string().into_bytes().into())
            .message_id(format!("l.{last}.{}", self.advertise))
            .header(HEADER_PERSON_KEY_CHECK, self.key_check.as_str())
            .expected_last_sequence(last);
        let sent = self
            .context
            .send_publish(self.leader.clone(), publish)
            .await
            .map_err(|e| publish_error(&e, e.kind()))?;
        match sent.await {
            Ok(ack) if ack.sequence == last + 1 => {
                let mut appending = self.appending.lock();
                appending.leading = true;
                appending.last = last + 1;
                appending.head = self.ledger.head().0;
                self.position.store(last + 1, Ordering::Relaxed);
                Ok(Claim::Claimed)
            }
            Ok(_) => Ok(Claim::Moved),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                metrics::counter!(REPLICA_FENCED).increment(1);
                Ok(Claim::Moved)
            }
            Err(e) => Err(publish_error(&e, e.kind())),
        }
    }

    /// The stream sequence to follow from for a store whose audit head is
    /// `head`: the first group message whose head header reaches it, the
    /// one holding that record (`apply` skips it after comparing its hash,
    /// so a diverged store is still caught), found by a binary search over
    /// stream sequences (the headers grow with them), so a restarted node
    /// does not read the stream from 1 (about 2·log2 of the stream's
    /// length requests). 1 for an empty store or a head the stream does not
    /// reach (following then says what is wrong).
    pub(super) async fn resume_point(&self, head: u64) -> Result<u64, Failed> {
        if head == 0 {
            return Ok(1);
        }
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| Failed::Transient(format!("stream info: {e}")))?;
        let (mut low, mut high) = (info.state.first_sequence.max(1), info.state.last_sequence);
        let mut found_at = None;
        while low <= high {
            let middle = low + (high - low) / 2;
            let found = match self
                .stream
                .raw_message_builder()
                .sequence(middle)
                .next_by_subject(self.group.clone())
                .send()
                .await
            {
                Ok(message) => message,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                    // No group message at or after `middle`.
                    high = middle - 1;
                    continue;
                }
                Err(e) => return Err(Failed::Transient(format!("stream message {middle}: {e}"))),
            };
            let reaches = audit_seq_of(&found).map_err(|why| {
                Failed::Fatal(format!("stream message {}: {why}", found.sequence))
            })?;
            if reaches >= head {
                found_at = Some(found.sequence);
                high = middle - 1;
            } else {
                low = found.sequence + 1;
            }
        }
        Ok(found_at.unwrap_or(1))
    }

    /// Applies the stream from sequence `next` to its end as it is now,
    /// through the ledger's replay, and waits until the store holds it;
    /// `next` moves past what was applied. With a `pass` time, returns after
    /// the batch that passes it: Ok(false) when the end is not reached yet
    /// (a leader catching up renews its lease between passes).
    pub(super) async fn follow(
        &self,
        ledger: &Arc<Ledger>,
        next: &mut u64,
        pass: Option<Duration>,
    ) -> Result<bool, Failed> {
        let started = Instant::now();
        loop {
            if pass.is_some_and(|pass| started.elapsed() >= pass) {
                return Ok(false);
            }
            let last = self
                .stream
                .get_info()
                .await
                .map_err(|e| Failed::Transient(format!("stream info: {e}")))?
                .state
                .last_sequence;
            if *next > last {
                return Ok(true);
            }
            let end = last.min(*next + REPLICA_FOLLOW_BATCH_MAX - 1);
            let fetches: Vec<_> = (*next..=end)
                .map(|seq| {
                    let stream = self.stream.clone();
                    tokio::spawn(async move { (seq, stream.get_raw_message(seq).await) })
                })
                .collect();
            let mut messages = Vec::with_capacity(fetches.len());
            for fetch in fetches {
                let (seq, fetched) = fetch.await.map_err(|e| Failed::Fatal(e.to_string()))?;
                messages.push(
                    fetched.map_err(|e| Failed::Transient(format!("stream message {seq}: {e}")))?,
                );
            }
            let (ledger, subjects) = (
                Arc::clone(ledger),
                [
                    self.group.clone(),
                    self.leader.clone(),
                    format!("{}.", self.events),
                ],
            );
            let key_check = self.key_check.clone();
            tokio::task::spawn_blocking(move || apply(&ledger, &subjects, &key_check, &messages))
                .await
                .map_err(|e| Failed::Fatal(e.to_string()))?
                .map_err(Failed::Fatal)?;
            *next = end + 1;
            self.position.store(end, Ordering::Relaxed);
        }
    }
}

/// A group message's head header (`HEADER_AUDIT_SEQ`).
fn audit_seq_of(message: &StreamMessage) -> Result<u64, String> {
    message
        .headers
        .get(HEADER_AUDIT_SEQ)
        .and_then(|value| value.as_str().parse().ok())
        .ok_or_else(|| format!("no {HEADER_AUDIT_SEQ} header"))
}

/// Applies fetched messages in order: records the store already holds are
/// skipped (the last one's hash must match), the next ones replayed, the
/// request ids adopted; events (subjects under `events_prefix`: the
/// leader's for the training system) skipped, as this node's own index
/// notes its replays; any other subject refused (a stream of another
/// format: skipping its records would fork the chain). Waits for the store
/// every `REPLICA_FOLLOW_COMMITS_MAX` commits and at the end.
fn apply(
    ledger: &Ledger,
    [group_subject, leader_subject, events_prefix]: &[String; 3],
    key_check: &str,
    messages: &[StreamMessage],
) -> Result<(), String> {
    let mut commits = 0;
    for message in messages {
        let subject = message.subject.as_str();
        let at =
            |why: &dyn std::fmt::Display| format!("stream message {}: {why}", message.sequence);
        if subject == group_subject {
            for entry in group::unpack(&message.payload).map_err(|e| at(&e))? {
                if commits == REPLICA_FOLLOW_COMMITS_MAX {
                    ledger.wait_all_durable().map_err(|r| r.message)?;
                    commits = 0;
                }
                match entry {
                    Entry::Record { sealed, .. } => {
                        let (record, hash) = audit::open(sealed).map_err(|e| at(&e))?;
                        let (seq, head, _) = ledger.head();
                        if record.seq <= seq {
                            if record.seq == seq && hash != head {
                                return Err(format!(
                                    "this store's record {seq} differs from the stream's: \
                                     rebuild the data folder from the stream \
                                     (ops/runbook.md, replicated mode)"
                                ));
                            }
                            continue;
                        }
                        if record.seq != seq + 1 {
                            return Err(format!(
                                "the stream's next record is {} but this store ends at {seq}",
                                record.seq
                            ));
                        }
                        ledger.replay(&record, &hash)?;
                    }
                    Entry::Request { key, value } => {
                        ledger
                            .adopt_request(key, value)
                            .map_err(|r| at(&r.message))?;
                    }
                }
                commits += 1;
            }
        } else if subject == leader_subject {
            let theirs = message
                .headers
                .get(HEADER_PERSON_KEY_CHECK)
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default();
            if theirs != key_check {
                return Err(format!(
                    "the leader at stream sequence {} keys persons with another person.key \
                     than this node's: copy the deployment's person.key into this data folder",
                    message.sequence
                ));
            }
        } else if !subject.starts_with(events_prefix.as_str()) {
            return Err(at(&format!(
                "subject {subject} is not one this build reads (a stream written by an \
                 earlier format, D111): follow a stream of this build's format"
            )));
        }
    }
    ledger.wait_all_durable().map_err(|r| r.message)
}

impl Log {
    /// A group failed: nothing more is published, nothing unsettled settles.
    fn failed(&self, failed: Failed) -> String {
        self.appending.lock().failed = true;
        self.unsettled.lock().clear();
        failed.into_reason()
    }
}

impl Replica for Log {
    /// Publishes the group right after the groups before it (its expected
    /// last sequence is known as soon as theirs are numbered).
    fn send(&self, group: &[Commit]) -> Result<(), String> {
        let mut appending = self.appending.lock();
        if appending.failed {
            return Err("an earlier group failed to replicate".into());
        }
        if !appending.leading {
            // A standby's commits are replays of the stream itself.
            self.unsettled.lock().push_back(None);
            return Ok(());
        }
        let messages = self.messages(group, &mut appending)?;
        if messages.is_empty() {
            self.unsettled.lock().push_back(None);
            return Ok(());
        }
        let last = appending.last;
        let acks = match self.runtime.block_on(self.publish(&messages, last)) {
            Ok(acks) => Some(acks),
            // Sent again when it is settled (below).
            Err(Failed::Transient(why)) => {
                tracing::warn!(%why, "publish failed; it is sent again");
                None
            }
            Err(failed) => {
                drop(appending);
                return Err(self.failed(failed));
            }
        };
        appending.last = last + messages.len() as u64;
        self.unsettled.lock().push_back(Some(Unsettled {
            messages,
            last,
            acks,
            started: Instant::now(),
        }));
        Ok(())
    }

    /// Waits until the oldest group's messages are all acknowledged (later
    /// groups are published meanwhile). A lost NATS node or connection
    /// fails a publish while the client reconnects or the stream elects a
    /// leader: that group and every later one are sent again, in order
    /// (same ids, same expected sequences, so never stored twice nor after
    /// another leader's), until `REPLICA_PUBLISH_RETRY_MS` after the group
    /// was first published. A refusal (another leader appended) fails it
    /// and every later group.
    fn settle(&self) -> Result<(), String> {
        let Some(front) = self.unsettled.lock().pop_front() else {
            return Err("no group was sent to settle".into());
        };
        let Some(mut front) = front else {
            return Ok(());
        };
        loop {
            let waited = match front.acks.take() {
                Some(acks) => self.runtime.block_on(Self::acknowledged(acks, front.last)),
                None => Err(Failed::Transient("not sent".into())),
            };
            match waited {
                Ok(()) => {
                    metrics::histogram!(REPLICA_PUBLISH_SECONDS)
                        .record(front.started.elapsed().as_secs_f64());
                    self.position
                        .store(front.last + front.messages.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Failed::Transient(why))
                    if front.started.elapsed()
                        < Duration::from_millis(REPLICA_PUBLISH_RETRY_MS) =>
                {
                    tracing::warn!(%why, "publish failed; sending it and every later group again");
                    std::thread::sleep(Duration::from_millis(REPLICA_POLL_MS));
                    // No group is published meanwhile: the order holds.
                    let _appending = self.appending.lock();
                    let mut unsettled = self.unsettled.lock();
                    let later = unsettled.iter_mut().flatten();
                    for group in std::iter::once(&mut front).chain(later) {
                        group.acks = match self
                            .runtime
                            .block_on(self.publish(&group.messages, group.last))
                        {
                            Ok(acks) => Some(acks),
                            Err(Failed::Transient(_)) => None,
                            Err(failed) => {
                                drop((unsettled, _appending));
                                return Err(self.failed(failed));
                            }
                        };
                    }
                }
                Err(failed) => return Err(self.failed(failed)),
            }
        }
    }

    /// A leader answers only while its lease surely holds (`Tenure`); a
    /// standby's replays are answered by nobody.
    fn may_answer(&self) -> Result<(), String> {
        if !self.appending.lock().leading || self.tenure.holds(Instant::now()) {
            return Ok(());
        }
        Err("the lease may have lapsed (no renewal went through in time): answers stop".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::campaign::{Campaign, Campaigns};
    use crate::domain::enums::{Category, Channel, Kind};
    use crate::domain::ids::{IdNumber, PersonSecret};
    use crate::domain::op::{Op, Reply, Request, Role};
    use crate::domain::time::{ManualClock, Timestamp};
    use crate::ledger::LedgerConfig;
    use crate::store::journal::{Journal, MemoryJournal};
    use crate::store::Store;
    use async_nats::HeaderMap;

    const NOW: Timestamp = Timestamp(1_795_914_000);

    fn ledger(journal: Arc<dyn Journal>) -> Ledger {
        let config = LedgerConfig {
            campaigns: Campaigns::new(vec![Campaign::default_for(NOW)]).unwrap(),
            secret: PersonSecret([7; 32]),
            clock: Arc::new(ManualClock::new(NOW)),
        };
        Ledger::open(config, journal).unwrap()
    }

    fn message(subject: &str, sequence: u64, payload: Vec<u8>) -> StreamMessage {
        StreamMessage {
            subject: subject.into(),
            sequence,
            headers: HeaderMap::new(),
            payload: payload.into(),
            time: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// A standby applies the leader's records and remembered request ids
    /// from group messages holding more commits than it may hand its store
    /// at once (`REPLICA_FOLLOW_COMMITS_MAX`), into a RocksDB store: it ends
    /// at the leader's head (sequence and hash), and a request id the leader
    /// remembered gets the first answer there.
    #[test]
    fn a_standby_applies_large_group_messages_to_the_leaders_head() {
        let leader_journal = Arc::new(MemoryJournal::default());
        let leader = ledger(leader_journal.clone());
        leader.record_campaigns().unwrap();
        // More commits (a record and a request row each) than a standby
        // hands its store between two waits.
        let issues = REPLICA_FOLLOW_COMMITS_MAX as u64 / 2 + 500;
        let requests: Vec<Request> = (0..issues)
            .map(|n| Request {
                id: format!("big-{n}"),
                op: Op::Issue {
                    id_number: IdNumber::synthetic("5001011990", n),
                    category: Category::RuralMigrant,
                    kind: Kind::ALL[0],
                    face_value_fen: 80_000,
                    channel: Channel::Wechat,
                    district: "500101".parse().unwrap(),
                    year: None,
                },
            })
            .collect();
        let mut first_answer = None;
        for chunk in requests.chunks(1_000) {
            let answers = leader.execute(Role::Bureau, chunk);
            assert!(answers.iter().all(|a| a.outcome.is_ok()), "{answers:?}");
            first_answer.get_or_insert(answers[0].outcome.clone());
        }
        leader.wait_all_durable().unwrap();
        let rows = |table| {
            let mut rows = Vec::new();
            leader_journal
                .scan(table, &mut |key, value| {
                    rows.push((key.to_vec(), value.to_vec()));
                    Ok(())
                })
                .unwrap();
            rows
        };
        let (records, remembered) = (rows(Table::Audit), rows(Table::Requests));
        assert!(records.len() + remembered.len() > REPLICA_FOLLOW_COMMITS_MAX);
        let mut entries: Vec<Entry> = records
            .iter()
            .map(|(_, sealed)| Entry::Record {
                seq: audit::open(sealed).unwrap().0.seq,
                sealed,
            })
            .collect();
        entries.extend(
            remembered
                .iter()
                .map(|(key, value)| Entry::Request { key, value }),
        );
        let packed = group::pack(&entries, 0);
        assert!(packed.len() > 1, "split at REPLICA_MESSAGE_BYTES_MAX");
        let messages: Vec<StreamMessage> = (1..)
            .zip(packed)
            .map(|(sequence, p)| message("voucherd.group", sequence, p.payload))
            .collect();

        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let standby = ledger(store.clone());
        let subjects = [
            "voucherd.group".to_owned(),
            "voucherd.leader".to_owned(),
            "voucherd.events.".to_owned(),
        ];
        let key_check = hex::encode(standby.person_key_check());
        apply(&standby, &subjects, &key_check, &messages).unwrap();
        assert_eq!(standby.head(), leader.head());
        // Applying the same messages again skips what the store holds.
        apply(&standby, &subjects, &key_check, &messages).unwrap();
        assert_eq!(standby.head(), leader.head());
        let retried = standby.execute(Role::Bureau, &requests[..1]);
        assert_eq!(Some(retried[0].outcome.clone()), first_answer);
        assert!(matches!(retried[0].outcome, Ok(Reply::Issued { .. })));
        // Events are skipped; a subject of an earlier format (an audit
        // record on its own) is refused, never skipped.
        let events = message("voucherd.events.500101", 90, b"[]".to_vec());
        apply(&standby, &subjects, &key_check, &[events]).unwrap();
        let (_, sealed) = &records[records.len() - 1];
        let earlier = message("voucherd.audit", 91, sealed.clone());
        let refused = apply(&standby, &subjects, &key_check, &[earlier]).unwrap_err();
        assert!(refused.contains("voucherd.audit"), "{refused}");
        assert_eq!(standby.head(), leader.head());
    }
}

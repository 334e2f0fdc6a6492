//! Sealing and committing: under the tail lock each change gets its audit
//! sequence number, record and hash, the state digest moves, and the commit
//! goes to the journal; `finish` waits until a batch's answers are durable.

use super::*;

/// The head of the audit chain and everything that must change in chain order.
pub(super) struct Tail {
    pub(super) seq: u64,
    pub(super) hash: [u8; 32],
    /// The last record's time; the next one's is never earlier (version 2 on).
    pub(super) time: Timestamp,
    pub(super) ticket: u64,
    pub(super) digest: StateDigest,
    pub(super) figures: HashMap<Figure, u64>,
    /// What expiry will take from `figures` (`rules::expiry_withdrawals`
    /// summed over every voucher): reads past a deadline subtract it. Kept in
    /// memory only, recounted at start-up; no entry holds 0.
    pub(super) at_expiry: HashMap<Figure, u64>,
    pub(super) institutions_registered: u64,
}

/// The answers to a batch and the ticket they wait for.
pub struct Pending {
    pub answers: Vec<Answer>,
    pub(super) ticket: u64,
    pub(super) inflight: Vec<(Vec<u8>, u64)>,
}

impl Pending {
    /// The last commit the answers rest on.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }
}

/// Tells the journal a frame is being applied, until dropped (even by a panic).
pub(super) struct Applying<'a>(pub(super) &'a dyn Journal);

impl<'a> Applying<'a> {
    pub(super) fn new(journal: &'a dyn Journal) -> Applying<'a> {
        journal.frame_started();
        Applying(journal)
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.frame_applied();
    }
}

impl Ledger {
    /// Seals the change into the audit chain and submits it. Nothing in the
    /// tail changes unless the journal takes the commit.
    pub(super) fn commit(
        &self,
        origin: &Origin,
        command: &Command,
        reply: &Reply,
        change: Change,
    ) -> Result<u64, Refusal> {
        let Change {
            mut puts,
            olds,
            figures,
            at_expiry,
            texts,
            others,
        } = change;
        // What the state puts add to and take from the digest, hashed before
        // the tail lock (a sum: the order does not matter), so the two
        // workers' commits wait less on each other.
        let mut added = StateDigest::default();
        let mut removed = StateDigest::default();
        for (put, old) in puts.iter().zip(&olds) {
            if let Some(old) = old {
                removed.add(put.table.tag(), &put.key, old);
            }
            if let Some(new) = &put.value {
                added.add(put.table.tag(), &put.key, new);
            }
        }
        let mut record = AuditRecord {
            version: origin.record_version,
            seq: 0,
            time: origin.time.get(),
            caller: origin.caller,
            request_id: origin.request_id.to_owned(),
            command: command.clone(),
            reply: reply.clone(),
            prev_hash: [0; 32],
        };
        let mut tail = self.tail.lock();
        if self.journal.is_full() {
            return Err(Refusal::new(
                Reason::Overloaded,
                "the commit queue is full; retry",
            ));
        }
        let time = origin.time.get();
        if time < tail.time && origin.record_version >= 2 {
            if origin.fixed_time {
                return Err(Refusal::new(
                    Reason::InvalidRequest,
                    format!(
                        "its time {} is before the previous record's {}",
                        time.0, tail.time.0
                    ),
                ));
            }
            // A change that read its time later was sealed first: try again
            // with a new time (the rule may answer differently at it).
            origin.restamp.set(true);
            return Err(Refusal::new(
                Reason::Overloaded,
                "a later change was sealed first; retry",
            ));
        }
        let seq = tail.seq + 1;
        let mut digest = tail.digest;
        digest.merge(&added);
        digest.subtract(&removed);
        for (voucher, tag, text) in texts {
            let key = keys::text(voucher, tag, seq);
            let value = codec::encode(&text);
            digest.add(Table::Texts.tag(), &key, &value);
            puts.push(Put {
                table: Table::Texts,
                key,
                value: Some(value),
            });
        }
        let mut new_figures = Vec::new();
        for (figure, delta) in figures {
            if delta == 0 {
                continue;
            }
            let old = tail.figures.get(&figure).copied().unwrap_or(0);
            let new = u64::try_from(old as i64 + delta).expect("figures never go below zero");
            let key = codec::encode_plain(&figure);
            if old != 0 {
                digest.remove(Table::Counters.tag(), &key, &old.to_be_bytes());
            }
            if new != 0 {
                digest.add(Table::Counters.tag(), &key, &new.to_be_bytes());
            }
            puts.push(Put {
                table: Table::Counters,
                key,
                value: (new != 0).then(|| new.to_be_bytes().to_vec()),
            });
            new_figures.push((figure, new));
        }
        puts.extend(others);
        record.seq = seq;
        record.time = time;
        record.prev_hash = tail.hash;
        let (entry, hash) = audit::seal(&record);
        if !origin.logged {
            puts.push(Put {
                table: Table::Audit,
                key: keys::audit(seq),
                value: Some(entry),
            });
        }
        if let Some(content) = origin.remember {
            puts.push(self.remember_put(origin, content, Ok(reply.clone())));
        }
        // The digest of the state this commit leaves, atomically with it:
        // start-up recomputes it from the tables and compares.
        puts.push(Put {
            table: Table::Meta,
            key: keys::STATE_DIGEST.to_vec(),
            value: Some(digest.to_bytes().to_vec()),
        });
        // The audit sequence the state reflects: a checkpoint stores it with
        // the state, and start-up re-applies the records after it.
        puts.push(Put {
            table: Table::Meta,
            key: keys::APPLIED_SEQ.to_vec(),
            value: Some(seq.to_be_bytes().to_vec()),
        });
        let ticket = tail.ticket + 1;
        self.journal.submit(Commit { ticket, puts })?;
        self.note_events(seq, command, reply);
        tail.seq = seq;
        tail.hash = hash;
        tail.time = time;
        self.record_time.store(time.0, Ordering::SeqCst);
        tail.ticket = ticket;
        tail.digest = digest;
        for (figure, value) in new_figures {
            if value == 0 {
                tail.figures.remove(&figure);
            } else {
                tail.figures.insert(figure, value);
            }
            if figure == Figure::Registered {
                tail.institutions_registered = value;
            }
        }
        for (figure, delta) in at_expiry {
            let old = tail.at_expiry.get(&figure).copied().unwrap_or(0);
            let new = u64::try_from(old as i64 + delta).expect("withdrawals never go below zero");
            if new == 0 {
                tail.at_expiry.remove(&figure);
            } else {
                tail.at_expiry.insert(figure, new);
            }
        }
        self.assigned_ticket.store(ticket, Ordering::SeqCst);
        Ok(ticket)
    }

    /// Remembers a refusal for its request id (no audit record: nothing changed).
    pub(super) fn commit_refusal(
        &self,
        origin: &Origin,
        refusal: &Refusal,
    ) -> Result<u64, Refusal> {
        let content = origin
            .remember
            .expect("only remembered requests store refusals");
        let mut tail = self.tail.lock();
        if self.journal.is_full() {
            return Err(Refusal::new(
                Reason::Overloaded,
                "the commit queue is full; retry",
            ));
        }
        let ticket = tail.ticket + 1;
        let put = self.remember_put(origin, content, Err(refusal.clone()));
        self.journal.submit(Commit {
            ticket,
            puts: vec![put],
        })?;
        tail.ticket = ticket;
        self.assigned_ticket.store(ticket, Ordering::SeqCst);
        Ok(ticket)
    }

    /// Waits until every commit the batch's answers rest on is durable.
    pub fn finish(&self, mut pending: Pending) -> Vec<Answer> {
        let waited = self.journal.wait_durable(pending.ticket);
        for (key, ticket) in pending.inflight.drain(..) {
            let mut inflight = self.inflight_shard(&key).lock();
            if inflight.get(&key) == Some(&Some(ticket)) {
                inflight.remove(&key);
            }
        }
        match waited {
            Ok(()) => pending.answers,
            Err(refusal) => pending
                .answers
                .iter()
                .map(|answer| Answer {
                    id: answer.id.clone(),
                    outcome: Err(refusal.clone()),
                })
                .collect(),
        }
    }
}

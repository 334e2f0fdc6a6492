//! Start-up: rebuild the in-memory indexes, figures, digest and audit head
//! from what the journal holds, checking every record as it is read back, and
//! the digest of all of them against the one stored with the last commit.

use hashbrown::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::digest::StateDigest;
use super::index::{Packed, PersonHandle, Persons};
use super::{keys, Ledger, LedgerConfig};
use crate::audit;
use crate::codec;
use crate::domain::ids::{ClassCode, InstitutionCode, PersonKey, VoucherId};
use crate::domain::records::{
    figure_contributions, Class, Figure, Institution, PersonYear, Voucher,
};
use crate::domain::rules::expiry_withdrawals;
use crate::error::Error;
use crate::limits::{
    INDEX_SHARDS, RECOVERY_REPLAY_BATCH_MAX, RECOVERY_THREADS_MAX, VOUCHER_ID_MAX,
};
use crate::store::journal::{Journal, Table};

/// The vouchers read in one person shard: (holder's entry, voucher id).
type Holdings = Vec<(u32, u32)>;

/// What one start-up thread gathers from its part of a table.
#[derive(Default)]
struct Tally {
    digest: StateDigest,
    figures: FxHashMap<Figure, u64>,
    /// `rules::expiry_withdrawals` summed over the vouchers read.
    at_expiry: FxHashMap<Figure, u64>,
    /// Each person-year's uses, recounted from the vouchers: [shard][entry].
    uses: Vec<Vec<u8>>,
    /// Each voucher read as (holder's entry, voucher id) in its holder's
    /// person shard: [shard], in id order within a part, parts in order,
    /// so the holders' lists are built once at the end (`list_holdings`).
    held: Vec<Holdings>,
    voucher_max: u64,
    /// The holder of the last voucher read: a person's vouchers are usually
    /// issued together, so their ids (and rows) are next to each other.
    last_holder: Option<(PersonKey, u16, PersonHandle)>,
}

impl Tally {
    fn count_use(&mut self, holder: PersonHandle) {
        if self.uses.is_empty() {
            self.uses = vec![Vec::new(); INDEX_SHARDS];
        }
        let counts = &mut self.uses[holder.shard()];
        if counts.len() <= holder.entry() {
            counts.resize(holder.entry() + 1, 0);
        }
        counts[holder.entry()] = counts[holder.entry()].saturating_add(1);
    }

    fn hold(&mut self, holder: PersonHandle, voucher: VoucherId) {
        if self.held.is_empty() {
            self.held = vec![Vec::new(); INDEX_SHARDS];
        }
        let entry = u32::try_from(holder.entry()).expect("entries fit in 24 bits");
        let id = u32::try_from(voucher.0).expect("voucher ids are checked against VOUCHER_ID_MAX");
        self.held[holder.shard()].push((entry, id));
    }

    fn holder(&mut self, persons: &Persons, voucher: &Voucher) -> PersonHandle {
        match self.last_holder {
            Some((key, year, handle)) if key == voucher.holder && year == voucher.year => handle,
            _ => {
                let handle = persons.intern(voucher.holder, voucher.year);
                self.last_holder = Some((voucher.holder, voucher.year, handle));
                handle
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.digest.merge(&other.digest);
        for (figure, count) in other.figures {
            *self.figures.entry(figure).or_default() += count;
        }
        for (figure, count) in other.at_expiry {
            *self.at_expiry.entry(figure).or_default() += count;
        }
        if self.uses.is_empty() {
            self.uses = other.uses;
        } else {
            for (mine, theirs) in self.uses.iter_mut().zip(other.uses) {
                if mine.len() < theirs.len() {
                    mine.resize(theirs.len(), 0);
                }
                for (mine, theirs) in mine.iter_mut().zip(theirs) {
                    *mine = mine.saturating_add(theirs);
                }
            }
        }
        if self.held.is_empty() {
            self.held = other.held;
        } else {
            for (mine, theirs) in self.held.iter_mut().zip(other.held) {
                mine.extend(theirs);
            }
        }
        self.voucher_max = self.voucher_max.max(other.voucher_max);
    }
}

/// Gives each person-year the list of the vouchers it holds, from
/// `Tally::held` (per shard, in id order): each shard locked once, the
/// shards shared out between `threads`.
fn list_holdings(persons: &Persons, held: Vec<Holdings>, threads: usize) {
    let mut shares: Vec<Vec<(usize, Holdings)>> = (0..threads).map(|_| Vec::new()).collect();
    for (shard, pairs) in held.into_iter().enumerate() {
        shares[shard % threads].push((shard, pairs));
    }
    std::thread::scope(|scope| {
        for share in shares {
            scope.spawn(move || {
                for (shard, pairs) in share {
                    let mut lock = persons.all()[shard].write();
                    for (entry, id) in pairs {
                        lock.add_voucher_at(entry as usize, VoucherId(id.into()));
                    }
                }
            });
        }
    });
}

/// Reads a table in `bounds.len() + 1` key ranges at once, one thread each,
/// and adds up what the threads gathered.
fn scan_parts(
    journal: &dyn Journal,
    table: Table,
    bounds: &[Vec<u8>],
    visit: impl Fn(&mut Tally, &[u8], &[u8]) -> Result<(), Error> + Sync,
) -> Result<Tally, Error> {
    let visit = &visit;
    let tallies: Vec<Result<Tally, Error>> = std::thread::scope(|scope| {
        let parts: Vec<_> = (0..=bounds.len())
            .map(|part| {
                let from = part.checked_sub(1).map_or(&[][..], |b| &bounds[b][..]);
                let to = bounds.get(part).map(Vec::as_slice);
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    journal.scan_between(table, from, to, &mut |key, value| {
                        visit(&mut tally, key, value)
                    })?;
                    Ok(tally)
                })
            })
            .collect();
        parts
            .into_iter()
            .map(|part| part.join().expect("a start-up thread panicked"))
            .collect()
    });
    let mut total = Tally::default();
    for tally in tallies {
        total.merge(tally?);
    }
    Ok(total)
}

/// A thread whose end is waited for when its handle is dropped, so a
/// start-up that fails early never leaves a scan running on the journal.
struct Joined<T>(Option<std::thread::JoinHandle<T>>);

impl<T> Joined<T> {
    fn join(mut self) -> T {
        let handle = self.0.take().expect("joined once");
        handle.join().expect("a start-up thread panicked")
    }
}

impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// How many threads read the big tables at start-up.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(RECOVERY_THREADS_MAX)
}

/// Key bounds splitting tables keyed by voucher id (vouchers, texts) evenly.
fn voucher_bounds(journal: &dyn Journal, threads: usize) -> Result<Vec<Vec<u8>>, Error> {
    let last = match journal.last(Table::Vouchers)? {
        Some((key, _)) => keys::decode_u64(&key).unwrap_or(u64::MAX),
        None => 0,
    };
    Ok((1..threads as u64)
        .map(|part| (last / threads as u64 * part).to_be_bytes().to_vec())
        .collect())
}

impl Ledger {
    /// A ledger over whatever the journal holds (an empty journal: an empty
    /// ledger), its events index built before it returns.
    pub fn open(config: LedgerConfig, journal: Arc<dyn Journal>) -> Result<Ledger, Error> {
        let ledger = Ledger::open_deferring_events(config, journal)?;
        ledger.build_events_index()?;
        Ok(ledger)
    }

    /// `open` without building the events index: `events` answers
    /// `overloaded` until `build_events_index` has run (the daemon runs it
    /// on a thread of its own while it serves, docs/decisions.md D66).
    pub fn open_deferring_events(
        config: LedgerConfig,
        journal: Arc<dyn Journal>,
    ) -> Result<Ledger, Error> {
        let ledger = Ledger::empty(config, Arc::clone(&journal));
        let threads = threads();
        let started = std::time::Instant::now();
        let voucher_bounds = voucher_bounds(journal.as_ref(), threads)?;
        // The texts (a row per step done: the largest table) are read back
        // for the digest only, so they are read beside everything else:
        // the cores stay busy through the parts of start-up that are not
        // shared out between them.
        let texts = {
            let journal = Arc::clone(&journal);
            let bounds = voucher_bounds.clone();
            Joined(Some(std::thread::spawn(move || {
                let tally = scan_parts(
                    journal.as_ref(),
                    Table::Texts,
                    &bounds,
                    |tally, key, value| {
                        codec::decode_text(value, "text")?;
                        tally.digest.add(Table::Texts.tag(), key, value);
                        Ok(())
                    },
                );
                (tally, started.elapsed())
            })))
        };
        // Person keys are keyed hashes: their first byte spreads them evenly.
        let person_bounds: Vec<Vec<u8>> = (1..threads)
            .map(|part| vec![(part * 256 / threads) as u8])
            .collect();
        let persons = scan_parts(
            journal.as_ref(),
            Table::Persons,
            &person_bounds,
            |tally, key, value| {
                let person: PersonYear = codec::decode(value, "person")?;
                let (holder, year) = key.split_at(32);
                let holder = PersonKey(
                    holder
                        .try_into()
                        .map_err(|_| Error::Corrupt("person key".into()))?,
                );
                let year = u16::from_be_bytes(
                    year.try_into()
                        .map_err(|_| Error::Corrupt("person key".into()))?,
                );
                tally.digest.add(Table::Persons.tag(), key, value);
                let handle = ledger.persons.intern(holder, year);
                ledger.persons.write(handle).store(handle, person);
                Ok(())
            },
        )?;
        let persons_read = started.elapsed();
        let vouchers = scan_parts(
            journal.as_ref(),
            Table::Vouchers,
            &voucher_bounds,
            |tally, key, value| {
                let voucher: Voucher = codec::decode(value, "voucher")?;
                if !keys::is_voucher(key, voucher.id) {
                    return Err(Error::Corrupt(format!(
                        "voucher {} is stored under another key",
                        voucher.id
                    )));
                }
                if voucher.id.0 > VOUCHER_ID_MAX {
                    return Err(Error::Corrupt(format!(
                        "voucher id {} is over {VOUCHER_ID_MAX}",
                        voucher.id
                    )));
                }
                tally.digest.add(Table::Vouchers.tag(), key, value);
                for (figure, amount) in figure_contributions(&voucher) {
                    *tally.figures.entry(figure).or_default() += amount;
                }
                for (figure, amount) in expiry_withdrawals(&voucher) {
                    *tally.at_expiry.entry(figure).or_default() += amount;
                }
                let holder = tally.holder(&ledger.persons, &voucher);
                if voucher.state.is_used() {
                    tally.count_use(holder);
                }
                let packed = Packed::pack(&voucher, holder, &ledger.districts)
                    .map_err(|why| Error::Corrupt(format!("voucher {}: {why}", voucher.id)))?;
                tally.voucher_max = tally.voucher_max.max(voucher.id.0);
                ledger
                    .vouchers
                    .of(voucher.id)
                    .write()
                    .set(voucher.id, packed);
                tally.hold(holder, voucher.id);
                Ok(())
            },
        )?;
        let vouchers_read = started.elapsed();
        let no_uses = Vec::new();
        for (shard, lock) in ledger.persons.all().iter().enumerate() {
            let counts = vouchers.uses.get(shard).unwrap_or(&no_uses);
            for (n, entry) in lock.read().entries().iter().enumerate() {
                let counted = counts.get(n).copied().unwrap_or(0);
                if !entry.stored && counted > 0 {
                    return Err(Error::Corrupt("a person's uses are missing".into()));
                }
                if entry.record.uses != counted {
                    return Err(Error::Corrupt(format!(
                        "a person's uses in {} do not match their vouchers",
                        entry.year
                    )));
                }
            }
        }
        list_holdings(&ledger.persons, vouchers.held, threads);
        let voucher_max = vouchers.voucher_max;
        let mut digest = persons.digest;
        digest.merge(&vouchers.digest);
        let at_expiry: HashMap<Figure, u64> = vouchers.at_expiry.into_iter().collect();
        let mut recount: HashMap<Figure, u64> = vouchers.figures.into_iter().collect();
        journal.scan(Table::Institutions, &mut |key, value| {
            let institution: Institution = codec::decode(value, "institution")?;
            if keys::institution(institution.code) != key {
                return Err(Error::Corrupt(format!(
                    "institution {} is stored under another key",
                    institution.code
                )));
            }
            digest.add(Table::Institutions.tag(), key, value);
            *recount.entry(Figure::Registered).or_default() += 1;
            ledger.institutions.insert(institution.code, institution);
            Ok(())
        })?;
        journal.scan(Table::Classes, &mut |key, value| {
            let class: Class = codec::decode(value, "class")?;
            if keys::class(class.institution, &class.code) != key {
                return Err(Error::Corrupt(format!(
                    "class {} of institution {} is stored under another key",
                    class.code, class.institution
                )));
            }
            if ledger
                .institutions
                .of(&class.institution)
                .read()
                .get(&class.institution)
                .is_none()
            {
                return Err(Error::Corrupt(format!(
                    "class {} belongs to no registered institution ({})",
                    class.code, class.institution
                )));
            }
            digest.add(Table::Classes.tag(), key, value);
            ledger.classes.insert(class);
            Ok(())
        })?;
        journal.scan(Table::Enrollments, &mut |key, value| {
            let (institution, code): (InstitutionCode, ClassCode) =
                codec::decode(value, "enrollment")?;
            let voucher = keys::decode_u64(key)
                .map(VoucherId)
                .ok_or_else(|| Error::Corrupt("enrollment key".into()))?;
            let (handle, _) = ledger
                .classes
                .find(institution, code.as_str())
                .ok_or_else(|| {
                    Error::Corrupt(format!("voucher {voucher} is enrolled in a class never opened"))
                })?;
            let mut shard = ledger.vouchers.of(voucher).write();
            let packed = shard
                .get(voucher)
                .copied()
                .filter(|packed| packed.institution() == Some(institution))
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "voucher {voucher} is enrolled in a class of {institution} but not redeemed there"
                    ))
                })?;
            shard.set(voucher, packed.with_class(Some(handle)));
            digest.add(Table::Enrollments.tag(), key, value);
            Ok(())
        })?;
        let mut figures = HashMap::new();
        journal.scan(Table::Counters, &mut |key, value| {
            let figure: Figure = codec::decode_plain(key)
                .map_err(|why| Error::Corrupt(format!("counter key: {why}")))?;
            let count =
                keys::decode_u64(value).ok_or_else(|| Error::Corrupt("counter value".into()))?;
            digest.add(Table::Counters.tag(), key, value);
            figures.insert(figure, count);
            Ok(())
        })?;
        // Counters added by a later version (`Figure::is_later_addition`) are
        // absent from stores written before it: they are taken from the
        // recount and count in the digest as if stored; the first change of
        // each writes its row.
        let unstored: Vec<(Figure, u64)> = recount
            .iter()
            .filter(|(figure, _)| figure.is_later_addition() && !figures.contains_key(*figure))
            .map(|(figure, count)| (*figure, *count))
            .collect();
        figures.extend(unstored.iter().copied());
        if figures != recount {
            let wrong = recount
                .iter()
                .find(|(figure, count)| figures.get(*figure) != Some(count))
                .map(|(figure, _)| *figure)
                .or_else(|| figures.keys().find(|f| !recount.contains_key(*f)).copied());
            return Err(Error::Corrupt(format!(
                "stored counter {wrong:?} does not match a recount of the vouchers"
            )));
        }
        // The durable log's head, and the audit sequence the state read
        // above reflects (its checkpoint): the records between are
        // re-applied below.
        let head = match journal.last(Table::Audit)? {
            None => 0,
            Some((key, entry)) => {
                let (record, _) = audit::open(&entry)
                    .map_err(|why| Error::Corrupt(format!("last audit record: {why}")))?;
                if keys::decode_u64(&key) != Some(record.seq) {
                    return Err(Error::Corrupt(
                        "last audit record is stored under another key".into(),
                    ));
                }
                record.seq
            }
        };
        let seq = match journal.get(Table::Meta, keys::APPLIED_SEQ)? {
            None => head,
            Some(bytes) => keys::decode_u64(&bytes)
                .ok_or_else(|| Error::Corrupt("meta/applied_seq is not 8 bytes".into()))?,
        };
        if seq > head {
            return Err(Error::Corrupt(format!(
                "the state tables reflect audit record {seq} but the audit log ends at record {head}"
            )));
        }
        let (hash, time) = match seq {
            0 => (
                audit::GENESIS_HASH,
                crate::domain::time::Timestamp(i64::MIN),
            ),
            seq => {
                let entry = journal
                    .get(Table::Audit, &keys::audit(seq))?
                    .ok_or_else(|| {
                        Error::Corrupt(format!(
                            "audit record {seq}, which the state tables reflect, is missing"
                        ))
                    })?;
                let (record, hash) = audit::open(&entry)
                    .map_err(|why| Error::Corrupt(format!("audit record {seq}: {why}")))?;
                if record.seq != seq {
                    return Err(Error::Corrupt(format!(
                        "audit record {seq} is stored under another key"
                    )));
                }
                (hash, record.time)
            }
        };
        // The chain must start at record 1: a store file lost under the
        // audit table (a damaged MANIFEST dropping a flushed file) would
        // otherwise leave a chain with its start missing and a head that
        // looks right. One key read; `audit verify` checks every link.
        if seq > 0 {
            let first = journal.range(Table::Audit, &[], 1)?;
            let first_seq = first.first().and_then(|(key, _)| keys::decode_u64(key));
            if first_seq != Some(1) {
                return Err(Error::Corrupt(format!(
                    "the audit chain starts at record {} instead of 1: records before it are missing \
                     (a store file was lost: a damaged MANIFEST or a removed .sst file); restore from a backup",
                    first_seq.map_or("none".into(), |s| s.to_string())
                )));
            }
        }
        let rest_read = started.elapsed();
        let (texts, texts_read) = texts.join();
        digest.merge(&texts?.digest);
        tracing::info!(
            persons_ms = persons_read.as_millis() as u64,
            vouchers_ms = vouchers_read.as_millis() as u64,
            rest_ms = rest_read.as_millis() as u64,
            texts_ms = texts_read.as_millis() as u64,
            threads,
            "state tables read back (ms from the start: persons, then vouchers, then the rest; texts beside them)"
        );
        let mut full_digest = digest;
        for (figure, count) in &unstored {
            full_digest.add(
                Table::Counters.tag(),
                &codec::encode_plain(figure),
                &count.to_be_bytes(),
            );
        }
        check_digest(journal.as_ref(), &[digest, full_digest], seq)?;
        let digest = full_digest;
        {
            let mut tail = ledger.tail.lock();
            tail.seq = seq;
            tail.hash = hash;
            tail.time = time;
            ledger.record_time.store(time.0, Ordering::SeqCst);
            tail.digest = digest;
            tail.institutions_registered = figures.get(&Figure::Registered).copied().unwrap_or(0);
            tail.figures = figures;
            tail.at_expiry = at_expiry;
        }
        ledger.next_voucher.store(voucher_max + 1, Ordering::SeqCst);
        // The events index is built afterwards, from the chain (the
        // records re-applied here included): until then nothing is noted.
        ledger.events.lock().start_building();
        ledger.apply_logged_tail(head)?;
        super::return_freed_memory();
        Ok(ledger)
    }

    /// Re-applies, through the same rules, the audit records after the ones
    /// the state tables reflect, up to `head` (those a crash left in the
    /// durable log only). Each must give its recorded reply and hash; the
    /// state they write goes to the journal like any commit's.
    fn apply_logged_tail(&self, head: u64) -> Result<(), Error> {
        let (applied, _, _) = self.head();
        if applied == head {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut next = applied + 1;
        while next <= head {
            let rows =
                self.journal
                    .range(Table::Audit, &keys::audit(next), RECOVERY_REPLAY_BATCH_MAX)?;
            if rows.is_empty() {
                break;
            }
            for (_, entry) in rows
                .iter()
                .take_while(|(key, _)| keys::decode_u64(key).is_some_and(|seq| seq <= head))
            {
                let (record, hash) = audit::open(entry)
                    .map_err(|why| Error::Corrupt(format!("audit record {next}: {why}")))?;
                self.replay_record(&record, &hash, true).map_err(|why| {
                    Error::Corrupt(format!(
                        "re-applying the audit log after the state's checkpoint: {why}"
                    ))
                })?;
                next += 1;
            }
            self.journal
                .wait_written(self.assigned_ticket.load(Ordering::SeqCst))
                .map_err(|refusal| Error::Storage(refusal.message))?;
        }
        if next != head + 1 {
            return Err(Error::Corrupt(format!(
                "the audit log ends at record {} before its head {head}",
                next - 1
            )));
        }
        tracing::info!(
            records = head - applied,
            from = applied + 1,
            ms = started.elapsed().as_millis() as u64,
            "audit records after the state's checkpoint re-applied"
        );
        Ok(())
    }
}

/// Compares the digest recomputed from the tables with the one the last state
/// change stored. A store written before digests were stored has none; it is
/// opened with a warning.
/// `candidates`: the digest of the rows read, then with the counters a
/// later version added (a store written before them stored the first, a
/// store written since, the second).
fn check_digest(journal: &dyn Journal, candidates: &[StateDigest], seq: u64) -> Result<(), Error> {
    let digest = candidates.last().expect("a digest to check");
    let Some(stored) = journal.get(Table::Meta, keys::STATE_DIGEST)? else {
        if seq > 0 {
            tracing::warn!("no stored state digest: the state read back is not checked as a whole");
        }
        return Ok(());
    };
    let stored = StateDigest::from_bytes(&stored)
        .ok_or_else(|| Error::Corrupt("the stored state digest is not 32 bytes".into()))?;
    if !candidates.contains(&stored) {
        return Err(Error::Corrupt(format!(
            "the state read back (digest {}) is not the state written with audit record {seq} \
             (digest {}): a stored voucher, person, institution, text or counter record changed",
            digest.hex(),
            stored.hex()
        )));
    }
    Ok(())
}

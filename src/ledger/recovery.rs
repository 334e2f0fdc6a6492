//! Start-up: rebuild the in-memory indexes, figures, digest and audit head
//! from what the journal holds, checking every record as it is read back, and
//! the digest of all of them against the one stored with the last commit.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::index::Packed;
use super::{keys, Ledger, LedgerConfig};
use crate::audit;
use crate::codec;
use crate::digest::StateDigest;
use crate::domain::ids::PersonKey;
use crate::domain::records::{figure_contributions, Figure, Institution, PersonYear, Voucher};
use crate::error::Error;
use crate::journal::{Journal, Table};
use crate::limits::{INDEX_SHARDS, VOUCHER_ID_MAX};

impl Ledger {
    /// A ledger over whatever the journal holds (an empty journal: an empty ledger).
    pub fn open(config: LedgerConfig, journal: Arc<dyn Journal>) -> Result<Ledger, Error> {
        let ledger = Ledger::empty(config, Arc::clone(&journal));
        let mut digest = StateDigest::default();
        let mut recount: HashMap<Figure, u64> = HashMap::new();
        let mut voucher_max = 0;
        journal.scan(Table::Persons, &mut |key, value| {
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
            digest.add(Table::Persons.tag(), key, value);
            let handle = ledger.persons.intern(holder, year);
            let mut shard = ledger.persons.write(handle);
            let entry = shard.entry_mut(handle);
            entry.record = person;
            entry.stored = true;
            Ok(())
        })?;
        // Each person-year's uses, recounted from the vouchers: [shard][entry].
        let mut uses: Vec<Vec<u8>> = vec![Vec::new(); INDEX_SHARDS];
        journal.scan(Table::Vouchers, &mut |key, value| {
            let voucher: Voucher = codec::decode(value, "voucher")?;
            if keys::voucher(voucher.id) != key {
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
            digest.add(Table::Vouchers.tag(), key, value);
            for (figure, amount) in figure_contributions(&voucher) {
                *recount.entry(figure).or_default() += amount;
            }
            let holder = ledger.persons.intern(voucher.holder, voucher.year);
            if voucher.state.is_used() {
                let counts = &mut uses[holder.shard()];
                let entry = holder.entry();
                if counts.len() <= entry {
                    counts.resize(entry + 1, 0);
                }
                counts[entry] = counts[entry].saturating_add(1);
            }
            let packed = Packed::pack(&voucher, holder, &ledger.districts)
                .map_err(|why| Error::Corrupt(format!("voucher {}: {why}", voucher.id)))?;
            voucher_max = voucher_max.max(voucher.id.0);
            ledger
                .vouchers
                .of(voucher.id)
                .write()
                .set(voucher.id, packed);
            Ok(())
        })?;
        for (shard, counts) in ledger.persons.all().iter().zip(&uses) {
            for (n, entry) in shard.read().entries().iter().enumerate() {
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
        journal.scan(Table::Texts, &mut |key, value| {
            let _: String = codec::decode(value, "text")?;
            digest.add(Table::Texts.tag(), key, value);
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
        if figures != recount {
            let wrong = recount
                .iter()
                .find(|(figure, count)| figures.get(figure) != Some(count))
                .map(|(figure, _)| *figure)
                .or_else(|| figures.keys().find(|f| !recount.contains_key(f)).copied());
            return Err(Error::Corrupt(format!(
                "stored counter {wrong:?} does not match a recount of the vouchers"
            )));
        }
        let (seq, hash) = match journal.last(Table::Audit)? {
            None => (0, audit::GENESIS_HASH),
            Some((key, entry)) => {
                let (record, hash) = audit::open(&entry)
                    .map_err(|why| Error::Corrupt(format!("last audit record: {why}")))?;
                if keys::decode_u64(&key) != Some(record.seq) {
                    return Err(Error::Corrupt(
                        "last audit record is stored under another key".into(),
                    ));
                }
                (record.seq, hash)
            }
        };
        check_digest(journal.as_ref(), &digest, seq)?;
        {
            let mut tail = ledger.tail.lock();
            tail.seq = seq;
            tail.hash = hash;
            tail.digest = digest;
            tail.institutions_registered = figures.get(&Figure::Registered).copied().unwrap_or(0);
            tail.figures = figures;
        }
        ledger.next_voucher.store(voucher_max + 1, Ordering::SeqCst);
        Ok(ledger)
    }
}

/// Compares the digest recomputed from the tables with the one the last state
/// change stored. A store written before digests were stored has none; it is
/// opened with a warning.
fn check_digest(journal: &dyn Journal, digest: &StateDigest, seq: u64) -> Result<(), Error> {
    let Some(stored) = journal.get(Table::Meta, keys::STATE_DIGEST)? else {
        if seq > 0 {
            tracing::warn!("no stored state digest: the state read back is not checked as a whole");
        }
        return Ok(());
    };
    let stored = StateDigest::from_bytes(&stored)
        .ok_or_else(|| Error::Corrupt("the stored state digest is not 32 bytes".into()))?;
    if stored != *digest {
        return Err(Error::Corrupt(format!(
            "the state read back (digest {}) is not the state written with audit record {seq} \
             (digest {}): a stored voucher, person, institution, text or counter record changed",
            digest.hex(),
            stored.hex()
        )));
    }
    Ok(())
}

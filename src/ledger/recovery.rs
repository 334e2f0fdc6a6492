//! Start-up: rebuild the in-memory indexes, figures, digest and audit head
//! from what the journal holds, checking every record as it is read back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{keys, Ledger, LedgerConfig};
use crate::audit;
use crate::codec;
use crate::domain::ids::PersonKey;
use crate::domain::records::{figure_contributions, Figure, Institution, PersonYear, Voucher};
use crate::error::Error;
use crate::journal::{Journal, Table};

impl Ledger {
    /// A ledger over whatever the journal holds (an empty journal: an empty ledger).
    pub fn open(config: LedgerConfig, journal: Arc<dyn Journal>) -> Result<Ledger, Error> {
        let ledger = Ledger::empty(config, Arc::clone(&journal));
        let mut digest = crate::digest::StateDigest::default();
        let mut recount: HashMap<Figure, u64> = HashMap::new();
        let mut voucher_max = 0;
        let mut uses: HashMap<(PersonKey, u16), u8> = HashMap::new();
        journal.scan(Table::Vouchers, &mut |key, value| {
            let voucher: Voucher = codec::decode(value, "voucher")?;
            if keys::voucher(voucher.id) != key {
                return Err(Error::Corrupt(format!(
                    "voucher {} is stored under another key",
                    voucher.id
                )));
            }
            digest.add(Table::Vouchers.tag(), key, value);
            for (figure, amount) in figure_contributions(&voucher) {
                *recount.entry(figure).or_default() += amount;
            }
            if voucher.state.is_used() {
                *uses.entry((voucher.holder, voucher.year)).or_default() += 1;
            }
            voucher_max = voucher_max.max(voucher.id.0);
            ledger.vouchers.insert(voucher.id, voucher);
            Ok(())
        })?;
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
            if uses.get(&(holder, year)).copied().unwrap_or(0) != person.uses {
                return Err(Error::Corrupt(format!(
                    "a person's uses in {year} do not match their vouchers"
                )));
            }
            digest.add(Table::Persons.tag(), key, value);
            ledger.persons.insert((holder, year), person);
            Ok(())
        })?;
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
        if uses.len() > ledger.persons.len() {
            return Err(Error::Corrupt("a person's uses are missing".into()));
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

//! The data return (数据回流): an index of the events the audit chain holds
//! (one per accepted change of a voucher), by institution and by district,
//! noted in chain order under the tail lock and rebuilt from the chain after
//! start-up while the daemon serves; `events` answers from it, reading only
//! the records it selects.

use super::rising::Rising;
use super::*;
use crate::domain::enums::Kind;
use crate::domain::op::{Event, OpName};
use crate::domain::time::ANSWER_UTC_OFFSET_S;
use crate::limits::{
    EVENTS_INDEX_CATCH_UP_RECORDS, EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX, EVENTS_RECORDS_READ_MAX,
    EXPIRE_BATCH_VOUCHERS_MAX, STREAM_EVENTS_WAIT_MS,
};

// A page's first record always goes whole: an expiry batch's events must fit
// the largest page, and its records (its own and one redeem per voucher)
// the records a page may read.
const _: () = assert!(EXPIRE_BATCH_VOUCHERS_MAX <= EVENTS_PAGE_MAX as usize);
const _: () = assert!(EXPIRE_BATCH_VOUCHERS_MAX < EVENTS_RECORDS_READ_MAX);

/// A voucher's id as the index keeps it (ids are at most `VOUCHER_ID_MAX`).
fn entry_id(voucher: VoucherId) -> u32 {
    u32::try_from(voucher.0).expect("voucher ids fit in u32")
}

/// What the index needs of a voucher (12 bytes): fixed at issue, but the
/// enrollment and whether it is finished.
#[derive(Clone, Copy, Debug)]
struct Facts {
    /// The institution enrolled at (meaningful when `redeem` is not 0).
    institution: u32,
    /// 1 + the position of the event of the enrollment's redeem record; 0
    /// when not enrolled. An expiry keeps it (an expired voucher changes
    /// no more): its events up to the expiry show that enrollment.
    redeem: u32,
    /// The voucher's campaign year and own district, as their place in
    /// `EventIndex::issued`.
    issued: u16,
    kind: Kind,
    /// Completed, settled or expired: no expiry can take it any more.
    finished: bool,
}

impl Facts {
    fn enrollment(&self) -> Option<InstitutionCode> {
        (self.redeem != 0).then_some(InstitutionCode(self.institution))
    }

    fn leave(&mut self) {
        self.institution = 0;
        self.redeem = 0;
    }
}

/// Which events a page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Filter {
    All,
    Institution(InstitutionCode),
    District(DistrictCode),
}

/// The events of the chain, in sequence order, and lists of their
/// positions by institution and district. Memory: 6 bytes per event plus 2
/// per list it is in, 12 per voucher, and about 40 per enrollment left by a
/// release (docs/decisions.md D60, D87, D114, D117). The enrollment an event
/// shows (its redeem record: the institution and class, read with the page)
/// is not kept per event: it is the voucher's current one from its redeem
/// event on, else one it left by a release (`left`).
#[derive(Default)]
pub(super) struct EventIndex {
    /// The sequence number of each event's record, by position.
    seqs: Rising,
    /// Each event's voucher id, by position; 0 for the bureau's `expire`
    /// of a whole campaign.
    voucher_ids: Vec<u32>,
    /// Positions of campaign-wide events: every filter shows them.
    everywhere: Rising,
    by_institution: HashMap<InstitutionCode, Rising>,
    by_district: HashMap<DistrictCode, Rising>,
    institutions: HashMap<InstitutionCode, DistrictCode>,
    /// The (year, district) pairs vouchers were issued in, by
    /// `Facts::issued` (a campaign names tens of districts: a few hundred
    /// pairs in centuries of campaigns, at most 65,536).
    issued: Vec<(u16, DistrictCode)>,
    issued_places: HashMap<(u16, DistrictCode), u16>,
    /// By voucher id − 1 (ids are allocated in sequence from 1).
    vouchers: Vec<Option<Facts>>,
    /// Enrollments left by a release, by voucher id: (1 + the position of
    /// its redeem event, the position of its release event), in order. The
    /// events between show that enrollment.
    left: HashMap<u32, Vec<(u32, u32)>>,
    last_seq: u64,
    /// Being built by `Ledger::build_events_index`: empty, notes nothing.
    building: bool,
}

/// One selected event with what its answer needs beside its records.
struct Selected {
    seq: u64,
    voucher: Option<VoucherId>,
    /// The sequence number of the redeem record of its enrollment.
    redeem: Option<u64>,
    kind: Option<Kind>,
    /// The voucher's own district (the event's when not enrolled).
    own_district: Option<DistrictCode>,
}

impl EventIndex {
    /// Empties the index until `Ledger::build_events_index` hands a built one over.
    pub(super) fn start_building(&mut self) {
        *self = EventIndex {
            building: true,
            ..EventIndex::default()
        };
    }

    fn facts(&mut self, voucher: VoucherId) -> Option<&mut Facts> {
        let index = usize::try_from(voucher.0.checked_sub(1)?).ok()?;
        self.vouchers.get_mut(index)?.as_mut()
    }

    /// The place of a (year, district) pair in `issued`, given one on first sight.
    fn issued_place(&mut self, year: u16, district: DistrictCode) -> u16 {
        if let Some(&place) = self.issued_places.get(&(year, district)) {
            return place;
        }
        let place =
            u16::try_from(self.issued.len()).expect("at most 65,536 (year, district) pairs");
        self.issued.push((year, district));
        self.issued_places.insert((year, district), place);
        place
    }

    /// A voucher's campaign year and own district.
    fn issued_in(&self, facts: &Facts) -> (u16, DistrictCode) {
        self.issued[usize::from(facts.issued)]
    }

    /// The sequence number of the record of the event at `position`.
    fn seq(&self, position: usize) -> u64 {
        self.seqs.get(position)
    }

    /// The position of the first event of a record after `after`.
    fn first_after(&self, after: u64) -> usize {
        self.seqs.count_at_most(after)
    }

    /// Appends an event of record `seq` (in chain order); returns its position.
    fn push_entry(&mut self, seq: u64, voucher: u32) -> u32 {
        let position = self.position();
        self.seqs.push(seq);
        self.voucher_ids.push(voucher);
        position
    }

    /// Takes one sealed record, in chain order; returns whether it made an event.
    pub(super) fn note(&mut self, seq: u64, command: &Command, reply: &Reply) -> bool {
        assert!(
            seq > self.last_seq,
            "records are noted in chain order: {seq} after {}",
            self.last_seq
        );
        self.last_seq = seq;
        let before = self.voucher_ids.len();
        match command {
            Command::RegisterInstitution(registration) => {
                self.institutions
                    .insert(registration.code, registration.district);
            }
            Command::Issue {
                kind,
                district,
                year,
                ..
            } => {
                let Reply::Issued { voucher } = reply else {
                    unreachable!("an accepted issue answers its voucher: {reply:?}")
                };
                let index = usize::try_from(voucher.0 - 1).expect("voucher ids fit memory");
                if self.vouchers.len() <= index {
                    self.vouchers.resize(index + 1, None);
                }
                let issued = self.issued_place(*year, *district);
                self.vouchers[index] = Some(Facts {
                    institution: 0,
                    redeem: 0,
                    issued,
                    kind: *kind,
                    finished: false,
                });
                self.push(seq, *voucher);
            }
            Command::Claim { voucher, .. }
            | Command::Checkin { voucher, .. }
            | Command::CheckinOnline { voucher, .. }
            | Command::Evaluate { voucher, .. }
            | Command::Settle { voucher, .. } => self.push(seq, *voucher),
            Command::Redeem {
                voucher,
                institution,
                ..
            } => {
                // The redeem's own event starts the enrollment it shows.
                let position = self.position();
                if let Some(facts) = self.facts(*voucher) {
                    facts.institution = institution.0;
                    facts.redeem = position + 1;
                }
                self.push(seq, *voucher);
            }
            Command::Complete { voucher, .. } | Command::CompleteByOperator { voucher, .. } => {
                self.push(seq, *voucher);
                if let Some(facts) = self.facts(*voucher) {
                    facts.finished = true;
                }
            }
            Command::Release { voucher, .. } | Command::ReleaseByOperator { voucher, .. } => {
                let position = self.position();
                self.push(seq, *voucher);
                if let Some(facts) = self.facts(*voucher) {
                    let redeem = facts.redeem;
                    facts.leave();
                    if redeem != 0 {
                        self.left
                            .entry(entry_id(*voucher))
                            .or_default()
                            .push((redeem, position));
                    }
                }
            }
            Command::ExpireBatch { vouchers, .. } => {
                // The batch expired those of its list still unfinished.
                for &voucher in vouchers {
                    if self.facts(voucher).is_some_and(|facts| !facts.finished) {
                        self.push(seq, voucher);
                        self.facts(voucher).expect("just found").finished = true;
                    }
                }
            }
            Command::Expire { year } => {
                if matches!(reply, Reply::Expired { expired } if *expired > 0) {
                    let issued = &self.issued;
                    for facts in self.vouchers.iter_mut().flatten() {
                        if issued[usize::from(facts.issued)].0 == *year {
                            facts.finished = true;
                        }
                    }
                    let position = self.push_entry(seq, 0);
                    self.everywhere.push(position.into());
                }
            }
            Command::SetInstitutionAdmin { .. }
            | Command::AuthoriseOperator { .. }
            | Command::RevokeOperator { .. }
            | Command::RecordCampaign { .. }
            | Command::OpenClass(_) => {}
        }
        self.voucher_ids.len() > before
    }

    fn position(&self) -> u32 {
        u32::try_from(self.voucher_ids.len()).expect("at most 2^32 events")
    }

    /// An event of one voucher, listed under its institution (when
    /// enrolled) and its district (the institution's, else the voucher's).
    fn push(&mut self, seq: u64, voucher: VoucherId) {
        let Some(facts) = self.facts(voucher).copied() else {
            unreachable!("an accepted change of {voucher} follows its issue")
        };
        let position = self.push_entry(seq, entry_id(voucher));
        let district = self.district_of(&facts);
        if let Some(institution) = facts.enrollment() {
            self.by_institution
                .entry(institution)
                .or_default()
                .push(position.into());
        }
        self.by_district
            .entry(district)
            .or_default()
            .push(position.into());
    }

    /// An event's district: its institution's when enrolled, else the voucher's.
    fn district_of(&self, facts: &Facts) -> DistrictCode {
        facts
            .enrollment()
            .and_then(|institution| self.institutions.get(&institution).copied())
            .unwrap_or(self.issued_in(facts).1)
    }

    /// The district an institution was registered in.
    pub(super) fn institution_district(&self, code: InstitutionCode) -> Option<DistrictCode> {
        self.institutions.get(&code).copied()
    }

    /// Positions of the events `filter` shows with a sequence number above
    /// `after`, in order (a filter's list merged with the campaign-wide events).
    fn positions(&self, filter: Filter, after: u64) -> Box<dyn Iterator<Item = u32> + '_> {
        let later =
            |list: &'_ Rising| -> usize { list.partition_point(|p| self.seq(p as usize) <= after) };
        let list = match filter {
            Filter::All => {
                let start = self.first_after(after);
                return Box::new(start as u32..self.position());
            }
            Filter::Institution(code) => self.by_institution.get(&code),
            Filter::District(code) => self.by_district.get(&code),
        };
        let as_position = |p: u64| u32::try_from(p).expect("positions fit in u32");
        let mut own = list
            .map(|list| (list, later(list)))
            .into_iter()
            .flat_map(|(list, start)| list.iter_from(start))
            .map(as_position)
            .peekable();
        let mut all = self
            .everywhere
            .iter_from(later(&self.everywhere))
            .map(as_position)
            .peekable();
        Box::new(std::iter::from_fn(move || match (own.peek(), all.peek()) {
            (Some(&a), Some(&b)) if b < a => all.next(),
            (Some(_), _) => own.next(),
            (None, _) => all.next(),
        }))
    }

    /// 1 + the position of the redeem event of the enrollment the event
    /// of `voucher` at `position` shows; 0 when it was not enrolled then.
    fn enrollment_at(&self, voucher: u32, facts: Option<&Facts>, position: u32) -> u32 {
        match facts {
            Some(facts) if facts.redeem != 0 && position + 1 >= facts.redeem => facts.redeem,
            _ => self
                .left
                .get(&voucher)
                .and_then(|left| {
                    left.iter()
                        .find(|&&(redeem, release)| position + 1 >= redeem && position <= release)
                })
                .map_or(0, |&(redeem, _)| redeem),
        }
    }

    /// The event at `position` with the facts of its voucher (fixed at issue).
    fn selected(&self, position: usize) -> Selected {
        let id = self.voucher_ids[position];
        let voucher = (id != 0).then(|| VoucherId(id.into()));
        let facts = voucher.and_then(|v| self.vouchers.get((v.0 - 1) as usize).copied().flatten());
        let redeem = self.enrollment_at(id, facts.as_ref(), position as u32);
        Selected {
            seq: self.seq(position),
            voucher,
            redeem: redeem
                .checked_sub(1)
                .map(|redeem| self.seq(redeem as usize)),
            kind: facts.map(|f| f.kind),
            own_district: facts.map(|f| self.issued_in(&f).1),
        }
    }

    /// The events the record `seq` made, in order.
    fn of_record(&self, seq: u64) -> impl Iterator<Item = Selected> + '_ {
        let start = self.first_after(seq.saturating_sub(1));
        (start..self.voucher_ids.len())
            .take_while(move |&position| self.seq(position) == seq)
            .map(|position| self.selected(position))
    }

    /// The sequence number of the last event noted (0: none).
    fn last_event_seq(&self) -> u64 {
        self.seqs.last().unwrap_or(0)
    }

    /// An enrolled event's district is its institution's.
    fn place(&self, events: &mut [Event]) {
        for event in events {
            if let Some(district) = event
                .institution
                .and_then(|code| self.institution_district(code))
            {
                event.district = Some(district);
            }
        }
    }

    /// Whether `filter` shows an event after `after` (a long poll's question).
    pub(super) fn has_after(&self, filter: Filter, after: u64) -> bool {
        self.positions(filter, after).next().is_some()
    }

    /// The events `filter` shows with `after < seq <= high`, in order, of
    /// whole records only: at most `limit` events, except that the first
    /// record's events always go (at most an expiry batch's).
    fn select(&self, filter: Filter, after: u64, high: u64, limit: usize) -> Vec<Selected> {
        let mut page: Vec<Selected> = Vec::new();
        for position in self.positions(filter, after) {
            let seq = self.seq(position as usize);
            if seq > high {
                break;
            }
            let last_seq = page.last().map(|s| s.seq);
            if page.len() >= limit && last_seq != Some(seq) {
                break;
            }
            page.push(self.selected(position as usize));
        }
        if page.len() > limit {
            // The last record did not fit: it goes on the next page, unless it is the first.
            let last_seq = page.last().expect("not empty").seq;
            let whole = page.iter().position(|s| s.seq == last_seq).unwrap();
            if whole > 0 {
                page.truncate(whole);
            }
        }
        page
    }
}

impl Ledger {
    /// The filter an `events` request asks for, as its role may see it: a
    /// district agency sees its own district (and its institutions) only,
    /// and its own district when it names none.
    pub(super) fn events_filter(
        &self,
        role: Role,
        institution: Option<InstitutionCode>,
        district: Option<DistrictCode>,
    ) -> Result<Filter, Refusal> {
        let index = self.events.lock();
        if index.building {
            return Err(Refusal::new(
                Reason::Overloaded,
                "the events index is being built after start-up; retry in a few seconds",
            ));
        }
        let filter = match (institution, district) {
            (Some(code), _) => {
                let Some(registered) = index.institution_district(code) else {
                    return Err(Refusal::new(
                        Reason::UnknownInstitution,
                        format!("no institution {code}"),
                    ));
                };
                if let Role::District(own) = role {
                    if registered != own {
                        return Err(Refusal::new(
                            Reason::ForbiddenRole,
                            format!(
                                "district agency {own} may read the events of its own institutions only"
                            ),
                        ));
                    }
                }
                Filter::Institution(code)
            }
            (None, Some(code)) => {
                if let Role::District(own) = role {
                    if code != own {
                        return Err(Refusal::new(
                            Reason::ForbiddenRole,
                            format!(
                                "district agency {own} may read its own district's events only"
                            ),
                        ));
                    }
                }
                if !self.districts_known(code) {
                    return Err(Refusal::new(
                        Reason::UnknownDistrict,
                        format!("district {code} is in no campaign"),
                    ));
                }
                Filter::District(code)
            }
            (None, None) => match role {
                Role::District(own) => Filter::District(own),
                _ => Filter::All,
            },
        };
        Ok(filter)
    }

    fn districts_known(&self, code: DistrictCode) -> bool {
        self.campaigns
            .all()
            .iter()
            .any(|campaign| campaign.district(code).is_some())
    }

    /// Whether an `events` request would find something now; a long poll
    /// waits while it would not. A request its role may not make, or a
    /// malformed one, never waits: it is answered at once.
    pub fn events_ready(&self, role: Role, op: &Op) -> bool {
        let Op::Events {
            after,
            institution,
            district,
            ..
        } = op
        else {
            return true;
        };
        match self.events_filter(role, *institution, *district) {
            Ok(filter) => self.events.lock().has_after(filter, *after),
            Err(_) => true,
        }
    }

    /// Tells the sequence number of the last event noted; changes with every
    /// change that makes events (long polls wait on it).
    pub fn events_notice(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events_notice.subscribe()
    }

    /// Notes a sealed record in the index (under the tail lock, in chain order).
    /// A record the index holds already (re-applied at start-up after the
    /// state's checkpoint, D81) is passed over, and every record while the
    /// index is being built (`build_events_index` reads them from the chain).
    pub(super) fn note_events(&self, seq: u64, command: &Command, reply: &Reply) {
        let mut index = self.events.lock();
        if index.building || seq <= index.last_seq {
            return;
        }
        if index.note(seq, command, reply) {
            self.events_notice.send_replace(seq);
        }
    }

    /// Builds the index from the whole chain, while writes go on (start-up,
    /// and the measurement of its cost); returns the number of events.
    /// Until it is done, `note_events` notes nothing and `events` answers
    /// `overloaded`. It reads the durable chain in passes, without any
    /// lock, until a pass finds fewer than `EVENTS_INDEX_CATCH_UP_RECORDS`
    /// new records; then, holding the tail lock (writers wait for that
    /// long, one commit and at most that many records), it reads the rest
    /// up to the head and hands the index over, so every record is noted
    /// once, in chain order (docs/decisions.md D66).
    pub fn build_events_index(&self) -> Result<usize, Error> {
        let started = std::time::Instant::now();
        self.events.lock().start_building();
        let mut index = EventIndex::default();
        // Sized at once for the chain and the vouchers there are now (about
        // an event per record): no copies and freed blocks while it grows.
        let (records, vouchers) = (
            self.tail.lock().seq,
            self.next_voucher.load(Ordering::SeqCst) - 1,
        );
        let records = usize::try_from(records).unwrap_or(0);
        index.seqs.reserve(records);
        index.voucher_ids.reserve(records);
        index
            .vouchers
            .reserve(usize::try_from(vouchers).unwrap_or(0));
        let mut next = 1;
        loop {
            let (head, ticket) = {
                let tail = self.tail.lock();
                (tail.seq, self.assigned_ticket.load(Ordering::SeqCst))
            };
            self.journal
                .wait_durable(ticket)
                .map_err(|refusal| Error::Storage(refusal.message))?;
            let read = self.index_records(&mut index, next, head)?;
            next = head + 1;
            if read < EVENTS_INDEX_CATCH_UP_RECORDS {
                break;
            }
        }
        let tail = self.tail.lock();
        self.journal
            .wait_durable(self.assigned_ticket.load(Ordering::SeqCst))
            .map_err(|refusal| Error::Storage(refusal.message))?;
        self.index_records(&mut index, next, tail.seq)?;
        let (count, last) = (index.voucher_ids.len(), index.last_event_seq());
        *self.events.lock() = index;
        drop(tail);
        self.events_notice.send_replace(last);
        return_freed_memory();
        tracing::info!(
            events = count,
            ms = started.elapsed().as_millis() as u64,
            "events index built"
        );
        Ok(count)
    }

    /// Notes the audit records `from..=to` of the durable chain in `index`;
    /// returns how many it read.
    fn index_records(&self, index: &mut EventIndex, from: u64, to: u64) -> Result<u64, Error> {
        if from > to {
            return Ok(0);
        }
        let mut read = 0;
        let end = keys::audit(to + 1);
        self.journal.scan_between(
            Table::Audit,
            &keys::audit(from),
            Some(&end),
            &mut |_, entry| {
                if self.events_build_stop.load(Ordering::Relaxed) {
                    return Err(Error::Unavailable(
                        "the daemon is stopping: the events index was not built".into(),
                    ));
                }
                let (record, _) = audit::open(entry).map_err(Error::Corrupt)?;
                index.note(record.seq, &record.command, &record.reply);
                read += 1;
                Ok(())
            },
        )?;
        if read != to + 1 - from {
            return Err(Error::Corrupt(format!(
                "the audit chain holds {read} records from {from} to {to}"
            )));
        }
        Ok(read)
    }

    /// Makes a build of the events index still reading the chain give up
    /// at its next record (the daemon stopping: it joins the build's thread
    /// before it closes the store).
    pub fn stop_events_index_build(&self) {
        self.events_build_stop.store(true, Ordering::Relaxed);
    }

    /// Whether the events index is built (`events` answers from it).
    pub fn events_index_ready(&self) -> bool {
        !self.events.lock().building
    }

    /// `events`: a page of the events `filter` shows after the cursor
    /// `after`, read from the records of the durable chain. Same cursor,
    /// same filter and limit: same page.
    pub(super) fn events_page(
        &self,
        role: Role,
        after: u64,
        limit: Option<u32>,
        institution: Option<InstitutionCode>,
        district: Option<DistrictCode>,
    ) -> Result<Reply, Refusal> {
        let filter = self.events_filter(role, institution, district)?;
        let limit = limit.unwrap_or(EVENTS_PAGE_DEFAULT).min(EVENTS_PAGE_MAX) as usize;
        // The records sealed so far and the commit that holds the last one:
        // once it is durable, every record up to `high` can be read.
        let (high, ticket) = {
            let tail = self.tail.lock();
            (tail.seq, self.assigned_ticket.load(Ordering::SeqCst))
        };
        self.journal.wait_durable(ticket)?;
        let selected = self.events.lock().select(filter, after, high, limit);
        let mut records: HashMap<u64, AuditRecord> = HashMap::new();
        let mut events: Vec<Event> = Vec::with_capacity(selected.len());
        for record_events in selected.chunk_by(|a, b| a.seq == b.seq) {
            let seq = record_events[0].seq;
            let mut needed: Vec<u64> = std::iter::once(seq)
                .chain(record_events.iter().filter_map(|s| s.redeem))
                .filter(|seq| !records.contains_key(seq))
                .collect();
            needed.sort_unstable();
            needed.dedup();
            if !events.is_empty() && records.len() + needed.len() > EVENTS_RECORDS_READ_MAX {
                break;
            }
            for seq in needed {
                records.insert(seq, self.audit_record(seq)?);
            }
            let record = &records[&seq];
            for selected in record_events {
                let enrollment = selected
                    .redeem
                    .map(|redeem| enrollment_of(&records[&redeem]));
                events.push(event_of(record, selected, enrollment));
            }
        }
        self.events.lock().place(&mut events);
        let next = events.last().map_or(after, |event| event.seq);
        Ok(Reply::Events { events, next })
    }

    /// The events of `records` (a group being published by the leader, in
    /// chain order), each exactly as `events` shows it, for the stream
    /// (docs/replication.md, "Events on the stream"). The records are
    /// noted in the index already or about to be (the sealing thread notes
    /// a record right after queueing its commit, under the tail lock: this
    /// waits that moment). An enrollment's redeem record is taken from
    /// `records` when it is in the group, else from `earlier` (the records
    /// of groups published and not yet written locally: the replica's
    /// pipeline), else read from the store (an earlier group, written).
    pub fn stream_events(
        &self,
        records: &[AuditRecord],
        earlier: &dyn Fn(u64) -> Option<AuditRecord>,
    ) -> Result<Vec<Event>, String> {
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(Vec::new());
        };
        if records.windows(2).any(|w| w[1].seq != w[0].seq + 1) {
            return Err("a group's records follow each other".into());
        }
        let started = std::time::Instant::now();
        let selected: Vec<(usize, Selected)> = loop {
            let index = self.events.lock();
            if index.building {
                return Err("the events index is being built: no events to publish".into());
            }
            if index.last_seq >= last {
                break (0..)
                    .zip(records)
                    .flat_map(|(at, record)| index.of_record(record.seq).map(move |s| (at, s)))
                    .collect();
            }
            drop(index);
            if started.elapsed() > std::time::Duration::from_millis(STREAM_EVENTS_WAIT_MS) {
                return Err(format!("record {last} was not noted in the events index"));
            }
            std::thread::yield_now();
        };
        let mut read: HashMap<u64, AuditRecord> = HashMap::new();
        for redeem in selected.iter().filter_map(|(_, s)| s.redeem) {
            if redeem < records[0].seq && !read.contains_key(&redeem) {
                let record = match earlier(redeem) {
                    Some(record) => record,
                    None => self.audit_record(redeem).map_err(|r| r.message)?,
                };
                read.insert(redeem, record);
            }
        }
        let record = |seq: u64| match seq.checked_sub(records[0].seq) {
            Some(offset) => &records[offset as usize],
            None => &read[&seq],
        };
        let mut events = Vec::with_capacity(selected.len());
        for (at, selected) in &selected {
            let enrollment = selected.redeem.map(|r| enrollment_of(record(r)));
            events.push(event_of(&records[*at], selected, enrollment));
        }
        self.events.lock().place(&mut events);
        Ok(events)
    }

    /// One durable audit record by sequence number.
    fn audit_record(&self, seq: u64) -> Result<AuditRecord, Refusal> {
        let entry = self
            .journal
            .get(Table::Audit, &keys::audit(seq))?
            .ok_or_else(|| {
                Refusal::from(Error::Corrupt(format!("audit record {seq} is missing")))
            })?;
        let (record, _) = audit::open(&entry)
            .map_err(|why| Refusal::from(Error::Corrupt(format!("audit record {seq}: {why}"))))?;
        assert_eq!(
            record.seq, seq,
            "audit record stored under its sequence number"
        );
        Ok(record)
    }
}

/// The enrollment a redeem record starts: its institution and class.
fn enrollment_of(redeem: &AuditRecord) -> (InstitutionCode, String) {
    match &redeem.command {
        Command::Redeem {
            institution, class, ..
        } => (*institution, class.clone()),
        other => unreachable!("an enrollment starts at a redeem: {other:?}"),
    }
}

/// The event a record makes for one selected voucher (or the whole
/// campaign), with the voucher's enrollment at the change (institution and
/// class). Its district is the voucher's own here; the caller puts the
/// institution's in its place for an enrolled one.
fn event_of(
    record: &AuditRecord,
    selected: &Selected,
    enrollment: Option<(InstitutionCode, String)>,
) -> Event {
    // Both forms of a check-in are the step `checkin` (API.md's name).
    let op = match record.command {
        Command::CheckinOnline { .. } => OpName::Checkin.into(),
        _ => record.command.name(),
    };
    let mut event = Event::new(
        record.seq,
        record.time.local_rfc3339(ANSWER_UTC_OFFSET_S),
        op,
    );
    event.voucher = selected.voucher;
    if let Some((institution, class)) = enrollment {
        event.institution = Some(institution);
        event.class = Some(class);
    }
    event.kind = selected.kind;
    event.district = selected.own_district;
    match (&record.command, &record.reply) {
        (
            Command::Issue {
                face_value_fen,
                channel,
                year,
                ..
            },
            _,
        ) => {
            event.face_value_fen = Some(*face_value_fen);
            event.channel = Some(*channel);
            event.year = Some(*year);
        }
        (Command::Redeem { operator, .. }, _)
        | (Command::CompleteByOperator { operator, .. }, _)
        | (Command::ReleaseByOperator { operator, .. }, _) => {
            event.operator = Some(operator.clone());
        }
        (Command::Checkin { .. }, Reply::CheckedIn { session, checkins }) => {
            event.session = Some(session.clone());
            event.checkins = Some(*checkins);
        }
        (Command::CheckinOnline { .. }, Reply::CheckedIn { session, checkins }) => {
            event.session = Some(session.clone());
            event.online = Some(true);
            event.checkins = Some(*checkins);
        }
        (Command::Evaluate { score, comment, .. }, _) => {
            event.score = Some(*score);
            event.comment = comment.clone();
        }
        (Command::Settle { amount_fen, .. }, _) => event.amount_fen = Some(*amount_fen),
        (Command::ExpireBatch { year, .. }, _) => event.year = Some(*year),
        (Command::Expire { year }, Reply::Expired { expired }) => {
            event.year = Some(*year);
            event.expired = Some(*expired);
        }
        _ => {}
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory docs/decisions.md D60 and D117 count: per event, per
    /// list position and per voucher.
    #[test]
    fn the_index_costs_what_the_decisions_say() {
        let mut index = EventIndex::default();
        index.seqs.reserve(100_000);
        index.voucher_ids.reserve_exact(100_000);
        for position in 0..100_000u32 {
            index.push_entry(u64::from(position) * 3 + 1, position + 1);
        }
        // 6 bytes an event, and the few places where the high bits change.
        let event_bytes =
            index.voucher_ids.capacity() * std::mem::size_of::<u32>() + index.seqs.heap_bytes();
        assert!(
            (600_000..600_000 + 1_024).contains(&event_bytes),
            "{event_bytes} bytes for 100,000 events"
        );
        assert_eq!(index.seqs.last(), Some(299_998));
        assert_eq!(std::mem::size_of::<Option<Facts>>(), 12);
    }

    /// Sequence numbers are kept whole across every change of their high
    /// bits, and every search across such a change finds the same events
    /// as over full numbers.
    #[test]
    fn sequence_numbers_past_4_billion_are_kept_whole() {
        let seqs = [
            1,
            7,
            u64::from(u32::MAX) - 1,
            u64::from(u32::MAX),
            1 << 32,
            (1 << 32) + 1,
            (1 << 32) + 1,
            (3 << 32) + 2,
            (3 << 32) + 9,
        ];
        let mut index = EventIndex::default();
        for (n, &seq) in seqs.iter().enumerate() {
            assert_eq!(index.push_entry(seq, n as u32 + 1), n as u32);
        }
        for (position, &seq) in seqs.iter().enumerate() {
            assert_eq!(index.seq(position), seq);
        }
        for after in seqs
            .iter()
            .flat_map(|&s| [s - 1, s, s + 1])
            .chain([0, u64::MAX])
        {
            let expected = seqs.iter().filter(|&&seq| seq <= after).count();
            assert_eq!(index.first_after(after), expected, "after {after}");
            let listed: Vec<u32> = index.positions(Filter::All, after).collect();
            assert_eq!(
                listed,
                (expected as u32..seqs.len() as u32).collect::<Vec<_>>()
            );
        }
        let same: Vec<u64> = index.of_record((1 << 32) + 1).map(|s| s.seq).collect();
        assert_eq!(same, vec![(1 << 32) + 1; 2]);
        assert_eq!(index.last_event_seq(), (3 << 32) + 9);
    }
}

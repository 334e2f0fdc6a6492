//! The ledger: the rules applied to lock-sharded in-memory indexes, each
//! accepted change sealed into the audit chain and handed to the journal.
//!
//! An operation locks what it touches (voucher, then person, then institution,
//! then the tail), asks the pure rules, submits its commit, and only then
//! changes memory. Every answer waits until the commits it may rest on are
//! durable, so nothing acknowledged — or refused — depends on a change that
//! could still be lost.

pub mod digest;
mod index;
mod keys;
pub mod meta;
mod recovery;
mod shards;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bincode::{Decode, Encode};
use parking_lot::Mutex;

use crate::audit::{self, AuditRecord, GENESIS_HASH};
use crate::codec;
use crate::domain::campaign::Campaigns;
use crate::domain::command::{check_request_id, Command};
use crate::domain::ids::{DistrictCode, InstitutionCode, PersonKey, PersonSecret, VoucherId};
use crate::domain::op::{
    Answer, AuditPage, CityStats, Coverage, DistrictStats, InstitutionStats, Op, Reply, Request,
    Role, StatsView,
};
use crate::domain::records::{figure_contributions, Figure, Institution, PersonYear, Voucher};
use crate::domain::rules::{self, Context};
use crate::domain::time::{day_text, Clock, Timestamp};
use crate::error::{Error, Reason, Refusal};
use crate::limits::{
    AUDIT_PAGE_BYTES_MAX, AUDIT_PAGE_RECORDS_MAX, AUDIT_READS_PER_FRAME_MAX, VOUCHER_ID_MAX,
};
use crate::store::journal::{Commit, Durability, Journal, Put, Table};
use digest::StateDigest;
use index::{Districts, Packed, PersonHandle, Persons, Vouchers};
pub use keys::decode_u64;
use shards::Shards;

/// What a ledger needs besides its journal.
pub struct LedgerConfig {
    pub campaigns: Campaigns,
    pub secret: PersonSecret,
    pub clock: Arc<dyn Clock>,
}

/// The head of the audit chain and everything that must change in chain order.
struct Tail {
    seq: u64,
    hash: [u8; 32],
    ticket: u64,
    digest: StateDigest,
    figures: HashMap<Figure, u64>,
    institutions_registered: u64,
}

/// An answer kept for retries of the same request id.
#[derive(Encode, Decode)]
struct Remembered {
    content: [u8; 32],
    time: Timestamp,
    outcome: Result<Reply, Refusal>,
}

/// Who asked, when, and whether the answer is remembered for retries.
struct Origin<'a> {
    role: Role,
    request_id: &'a str,
    /// When the operation happens: read from the clock once its locks are
    /// held (so times follow the order of conflicting changes), unless fixed.
    time: std::cell::Cell<Timestamp>,
    /// Replay: the recorded time, never the clock.
    fixed_time: bool,
    /// The request's content hash, when its answer is to be remembered.
    remember: Option<[u8; 32]>,
}

/// The writes one accepted command makes, gathered before it commits.
#[derive(Default)]
struct Change {
    puts: Vec<Put>,
    /// Old value of each state put, for the digest (same order as `puts`).
    olds: Vec<Option<Vec<u8>>>,
    figures: HashMap<Figure, i64>,
    texts: Vec<(VoucherId, u8, String)>,
}

impl Change {
    fn put(&mut self, table: Table, key: Vec<u8>, old: Option<Vec<u8>>, new: Vec<u8>) {
        self.puts.push(Put {
            table,
            key,
            value: Some(new),
        });
        self.olds.push(old);
    }

    fn voucher(&mut self, old: Option<&Voucher>, new: &Voucher) {
        if let Some(old) = old {
            for (figure, amount) in figure_contributions(old) {
                *self.figures.entry(figure).or_default() -= amount as i64;
            }
        }
        for (figure, amount) in figure_contributions(new) {
            *self.figures.entry(figure).or_default() += amount as i64;
        }
        self.put(
            Table::Vouchers,
            keys::voucher(new.id),
            old.map(codec::encode),
            codec::encode(new),
        );
    }

    fn person(&mut self, key: PersonKey, year: u16, old: Option<PersonYear>, new: PersonYear) {
        self.put(
            Table::Persons,
            keys::person(key, year),
            old.map(|old| codec::encode(&old)),
            codec::encode(&new),
        );
    }

    fn institution(&mut self, old: Option<&Institution>, new: &Institution) {
        self.put(
            Table::Institutions,
            keys::institution(new.code),
            old.map(codec::encode),
            codec::encode(new),
        );
    }
}

/// The answers to a batch and the ticket they wait for.
pub struct Pending {
    pub answers: Vec<Answer>,
    ticket: u64,
    inflight: Vec<(Vec<u8>, u64)>,
}

impl Pending {
    /// The last commit the answers rest on.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }
}

/// Tells the journal a frame is being applied, until dropped (even by a panic).
struct Applying<'a>(&'a dyn Journal);

impl<'a> Applying<'a> {
    fn new(journal: &'a dyn Journal) -> Applying<'a> {
        journal.frame_started();
        Applying(journal)
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.frame_applied();
    }
}

/// Per request id: `None` while an operation is being decided, then its ticket.
type Inflight = Mutex<HashMap<Vec<u8>, Option<u64>>>;

/// How long a duplicate request id waits for the first to be decided (spins).
const INFLIGHT_SPINS_MAX: u32 = 100_000;

pub struct Ledger {
    campaigns: Campaigns,
    secret: PersonSecret,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn Journal>,
    vouchers: Vouchers,
    persons: Persons,
    /// Every campaign district; packed vouchers name districts by index here.
    districts: Districts,
    institutions: Shards<InstitutionCode, Institution>,
    tail: Mutex<Tail>,
    /// The last ticket handed to the journal; reads wait for it.
    assigned_ticket: AtomicU64,
    next_voucher: AtomicU64,
    inflight: Vec<Inflight>,
    /// Operations that lock every shard (`expire`) running now.
    sweeps: AtomicUsize,
}

/// Counts a sweep as running until dropped (even by a panic).
struct Sweeping<'a>(&'a AtomicUsize);

impl<'a> Sweeping<'a> {
    fn new(sweeps: &'a AtomicUsize) -> Sweeping<'a> {
        sweeps.fetch_add(1, Ordering::SeqCst);
        Sweeping(sweeps)
    }
}

impl Drop for Sweeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ledger {
    fn empty(config: LedgerConfig, journal: Arc<dyn Journal>) -> Ledger {
        let districts = config
            .campaigns
            .all()
            .iter()
            .flat_map(|campaign| campaign.districts.iter().map(|d| d.code))
            .collect();
        Ledger {
            campaigns: config.campaigns,
            secret: config.secret,
            clock: config.clock,
            journal,
            vouchers: Vouchers::default(),
            persons: Persons::default(),
            districts: Districts::new(districts),
            institutions: Shards::default(),
            tail: Mutex::new(Tail {
                seq: 0,
                hash: GENESIS_HASH,
                ticket: 0,
                digest: StateDigest::default(),
                figures: HashMap::new(),
                institutions_registered: 0,
            }),
            assigned_ticket: AtomicU64::new(0),
            next_voucher: AtomicU64::new(1),
            inflight: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
            sweeps: AtomicUsize::new(0),
        }
    }

    pub fn campaigns(&self) -> &Campaigns {
        &self.campaigns
    }

    /// Runs a batch of requests in order and waits until their answers are durable.
    pub fn execute(&self, role: Role, requests: &[Request]) -> Vec<Answer> {
        let pending = self.apply(role, requests);
        self.finish(pending)
    }

    /// Decides every request of a batch, in order, without waiting for durability.
    /// Call `finish` before showing any answer to anyone.
    pub fn apply(&self, role: Role, requests: &[Request]) -> Pending {
        let _applying = Applying::new(&*self.journal);
        let mut pending = Pending {
            answers: Vec::with_capacity(requests.len()),
            ticket: 0,
            inflight: Vec::new(),
        };
        let mut seen: HashMap<&str, ([u8; 32], usize)> = HashMap::new();
        let mut audit_reads = 0;
        for request in requests {
            if matches!(request.op, Op::AuditRead { .. }) {
                audit_reads += 1;
                if audit_reads > AUDIT_READS_PER_FRAME_MAX {
                    pending.answers.push(Answer::refused(
                        &request.id,
                        Reason::InvalidRequest,
                        format!("at most {AUDIT_READS_PER_FRAME_MAX} audit_read per request frame"),
                    ));
                    continue;
                }
            }
            let answer = self.apply_one(role, request, &mut seen, &mut pending);
            pending.answers.push(answer);
        }
        pending.ticket = pending
            .ticket
            .max(self.assigned_ticket.load(Ordering::SeqCst));
        pending
    }

    /// True while an operation holds every voucher and person shard
    /// (`expire`): any other operation would wait for it to finish, so the
    /// server keeps such frames off its async workers meanwhile.
    pub fn is_sweeping(&self) -> bool {
        self.sweeps.load(Ordering::SeqCst) > 0
    }

    /// Where async callers await durability before `finish` (see `Journal::durability`).
    pub fn durability(&self) -> Option<tokio::sync::watch::Receiver<Durability>> {
        self.journal.durability()
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

    fn inflight_shard(&self, key: &[u8]) -> &Inflight {
        let hash = blake3::hash(key);
        &self.inflight[usize::from(hash.as_bytes()[0]) % self.inflight.len()]
    }

    fn content_hash(&self, op: &Op) -> [u8; 32] {
        *blake3::keyed_hash(&self.secret.0, &codec::encode_plain(op)).as_bytes()
    }

    fn apply_one<'r>(
        &self,
        role: Role,
        request: &'r Request,
        seen: &mut HashMap<&'r str, ([u8; 32], usize)>,
        pending: &mut Pending,
    ) -> Answer {
        let id = request.id.as_str();
        let refused = |refusal: Refusal| Answer {
            id: id.to_owned(),
            outcome: Err(refusal),
        };
        if let Err(refusal) = check_request_id(id) {
            return refused(refusal);
        }
        if !request.op.allows(role) {
            return Answer::refused(
                id,
                Reason::ForbiddenRole,
                format!("role {role} may not run {}", request.op.name()),
            );
        }
        let now = self.clock.now();
        let command = match Command::from_op(&request.op, &self.secret, &self.campaigns) {
            Ok(Some(command)) => command,
            Ok(None) => {
                return Answer {
                    id: id.to_owned(),
                    outcome: self.read(role, &request.op),
                };
            }
            Err(refusal) => return refused(refusal),
        };
        let content = self.content_hash(&request.op);
        if let Some(&(earlier, position)) = seen.get(id) {
            return if earlier == content {
                Answer {
                    id: id.to_owned(),
                    outcome: pending.answers[position].outcome.clone(),
                }
            } else {
                Answer::refused(
                    id,
                    Reason::RequestIdReused,
                    "request id was used for another request",
                )
            };
        }
        let key = keys::request(role, id);
        match self.remembered(&key, content) {
            Ok(Some(outcome)) => {
                return Answer {
                    id: id.to_owned(),
                    outcome,
                }
            }
            Ok(None) => {}
            Err(refusal) => return refused(refusal),
        }
        let origin = Origin {
            role,
            request_id: id,
            time: std::cell::Cell::new(now),
            fixed_time: false,
            remember: Some(content),
        };
        let (outcome, ticket) = self.apply_command(&origin, &command, None);
        let mut inflight = self.inflight_shard(&key).lock();
        match ticket {
            Some(ticket) => {
                inflight.insert(key.clone(), Some(ticket));
                pending.inflight.push((key, ticket));
                pending.ticket = pending.ticket.max(ticket);
                seen.insert(id, (content, pending.answers.len()));
            }
            None => {
                inflight.remove(&key);
            }
        }
        Answer {
            id: id.to_owned(),
            outcome,
        }
    }

    /// Claims the request id for this operation, or returns the answer a
    /// previous request with that id got. Waits for an identical request in
    /// flight in another batch to become durable first.
    fn remembered(
        &self,
        key: &[u8],
        content: [u8; 32],
    ) -> Result<Option<Result<Reply, Refusal>>, Refusal> {
        let mut spins = 0;
        loop {
            let mut inflight = self.inflight_shard(key).lock();
            match inflight.get(key).copied() {
                None => {
                    inflight.insert(key.to_vec(), None);
                    break;
                }
                Some(None) => {
                    drop(inflight);
                    spins += 1;
                    if spins > INFLIGHT_SPINS_MAX {
                        return Err(Refusal::new(
                            Reason::Overloaded,
                            "the same request id is in flight; retry",
                        ));
                    }
                    std::thread::yield_now();
                }
                Some(Some(ticket)) => {
                    drop(inflight);
                    self.journal.wait_durable(ticket)?;
                    let mut inflight = self.inflight_shard(key).lock();
                    if inflight.get(key) == Some(&Some(ticket)) {
                        inflight.remove(key);
                    }
                }
            }
        }
        let stored = self.journal.get(Table::Requests, key).map_err(|e| {
            self.inflight_shard(key).lock().remove(key);
            Refusal::new(Reason::StorageUnavailable, e.to_string())
        })?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        self.inflight_shard(key).lock().remove(key);
        let remembered: Remembered = codec::decode(&stored, "remembered request")
            .map_err(|e| Refusal::new(Reason::StorageUnavailable, e.to_string()))?;
        if remembered.content != content {
            return Ok(Some(Err(Refusal::new(
                Reason::RequestIdReused,
                "request id was used for another request",
            ))));
        }
        Ok(Some(remembered.outcome))
    }

    /// Reads "now" for an operation whose locks are held (see `Origin::time`).
    fn stamp(&self, origin: &Origin) -> Timestamp {
        if !origin.fixed_time {
            origin.time.set(self.clock.now());
        }
        origin.time.get()
    }

    fn context(&self, now: Timestamp) -> Context<'_> {
        Context {
            campaigns: &self.campaigns,
            now,
        }
    }

    /// Applies one validated command. Returns the outcome and, when something
    /// was written (the change, or the remembered refusal), its ticket.
    fn apply_command(
        &self,
        origin: &Origin,
        command: &Command,
        voucher_id: Option<VoucherId>,
    ) -> (Result<Reply, Refusal>, Option<u64>) {
        let done = || Reply::Done {};
        let result = match command {
            Command::RegisterInstitution(registration) => {
                let mut shard = self.institutions.of(&registration.code).write();
                let context = self.context(self.stamp(origin));
                rules::register_institution(context, shard.get(&registration.code), registration)
                    .and_then(|institution| {
                        let mut change = Change::default();
                        change.institution(None, &institution);
                        *change.figures.entry(Figure::Registered).or_default() += 1;
                        let ticket = self.commit(origin, command, &done(), change)?;
                        shard.insert(institution.code, institution);
                        Ok((done(), ticket))
                    })
            }
            Command::SetInstitutionAdmin {
                institution,
                admin_name,
                admin,
            } => self.change_institution(origin, command, *institution, |existing| {
                rules::set_institution_admin(existing, *institution, admin_name, *admin)
            }),
            Command::AuthoriseOperator {
                institution,
                admin,
                operator,
            } => self.change_institution(origin, command, *institution, |existing| {
                rules::authorise_operator(existing, *institution, *admin, operator)
            }),
            Command::RevokeOperator {
                institution,
                admin,
                operator,
            } => self.change_institution(origin, command, *institution, |existing| {
                rules::revoke_operator(existing, *institution, *admin, operator)
            }),
            Command::Issue {
                holder,
                category,
                kind,
                face_value_fen,
                channel,
                district,
                year,
            } => {
                let id = voucher_id
                    .unwrap_or_else(|| VoucherId(self.next_voucher.fetch_add(1, Ordering::SeqCst)));
                if id.0 > VOUCHER_ID_MAX {
                    return (
                        Err(Refusal::new(
                            Reason::Overloaded,
                            format!("the ledger holds at most {VOUCHER_ID_MAX} voucher ids"),
                        )),
                        None,
                    );
                }
                let issue = rules::Issue {
                    holder: *holder,
                    category: *category,
                    kind: *kind,
                    face_value_fen: *face_value_fen,
                    channel: *channel,
                    district: *district,
                    year: *year,
                };
                let mut shard = self.vouchers.of(id).write();
                assert!(shard.get(id).is_none(), "voucher ids are never reused");
                rules::issue(self.context(self.stamp(origin)), &issue, id).and_then(|voucher| {
                    let holder = self.persons.intern(voucher.holder, voucher.year);
                    let packed = self.pack(&voucher, holder);
                    let mut change = Change::default();
                    change.voucher(None, &voucher);
                    let reply = Reply::Issued { voucher: id };
                    let ticket = self.commit(origin, command, &reply, change)?;
                    shard.set(id, packed);
                    Ok((reply, ticket))
                })
            }
            Command::Claim { voucher, holder } => self.change_voucher(
                origin,
                command,
                *voucher,
                Touch::person(),
                |context, found| {
                    let (claimed, person) =
                        rules::claim(context, found.voucher, *voucher, *holder, found.person)?;
                    Ok((claimed, Some(person), done()))
                },
            ),
            Command::Redeem {
                voucher,
                institution,
                operator,
                class,
            } => {
                let touch = Touch {
                    person: true,
                    institution: At::Given(*institution),
                    text: Some((keys::TEXT_CLASS, class)),
                };
                self.change_voucher(origin, command, *voucher, touch, |context, found| {
                    let (redeemed, person) = rules::redeem(
                        context,
                        found.voucher,
                        *voucher,
                        found.person,
                        found.institution,
                        *institution,
                        operator,
                    )?;
                    Ok((
                        redeemed,
                        Some(person),
                        Reply::Redeemed {
                            uses_this_year: person.uses,
                        },
                    ))
                })
            }
            Command::Checkin { voucher, lat, lon } => {
                let touch = Touch {
                    institution: At::Voucher,
                    ..Touch::default()
                };
                self.change_voucher(origin, command, *voucher, touch, |context, found| {
                    let (checked, day) = rules::checkin(
                        context,
                        found.voucher,
                        *voucher,
                        found.institution,
                        *lat,
                        *lon,
                    )?;
                    let reply = Reply::CheckedIn {
                        session: day_text(day),
                        checkins: checked.checkins,
                    };
                    Ok((checked, None, reply))
                })
            }
            Command::Complete {
                voucher,
                institution,
            } => self.change_voucher(
                origin,
                command,
                *voucher,
                Touch::default(),
                |context, found| {
                    Ok((
                        rules::complete(context, found.voucher, *voucher, *institution)?,
                        None,
                        done(),
                    ))
                },
            ),
            Command::Evaluate {
                voucher,
                holder,
                score,
                comment,
            } => {
                let touch = Touch {
                    text: comment.as_ref().map(|c| (keys::TEXT_COMMENT, c)),
                    ..Touch::default()
                };
                self.change_voucher(origin, command, *voucher, touch, |context, found| {
                    Ok((
                        rules::evaluate(context, found.voucher, *voucher, *holder, *score)?,
                        None,
                        done(),
                    ))
                })
            }
            Command::Settle {
                voucher,
                amount_fen,
            } => {
                let Role::District(agency) = origin.role else {
                    unreachable!("settle is refused for other roles before the rules");
                };
                self.change_voucher(origin, command, *voucher, Touch::default(), |_, found| {
                    Ok((
                        rules::settle(found.voucher, *voucher, agency, *amount_fen)?,
                        None,
                        done(),
                    ))
                })
            }
            Command::Release {
                voucher,
                institution,
            } => self.change_voucher(
                origin,
                command,
                *voucher,
                Touch::person(),
                |context, found| {
                    let (released, person) = rules::release(
                        context,
                        found.voucher,
                        *voucher,
                        found.person,
                        *institution,
                    )?;
                    Ok((released, Some(person), done()))
                },
            ),
            Command::Expire { year } => self.expire(origin, command, *year),
        };
        match result {
            Ok((reply, ticket)) => (Ok(reply), Some(ticket)),
            Err(refusal) if refusal.reason.is_transient() || origin.remember.is_none() => {
                (Err(refusal), None)
            }
            Err(refusal) => match self.commit_refusal(origin, &refusal) {
                Ok(ticket) => (Err(refusal), Some(ticket)),
                Err(transient) => (Err(transient), None),
            },
        }
    }

    /// Locks one institution, applies a rule to it, commits, stores it.
    fn change_institution(
        &self,
        origin: &Origin,
        command: &Command,
        code: InstitutionCode,
        rule: impl FnOnce(Option<&Institution>) -> Result<Institution, Refusal>,
    ) -> Result<(Reply, u64), Refusal> {
        let mut shard = self.institutions.of(&code).write();
        let old = shard.get(&code);
        self.stamp(origin);
        let new = rule(old)?;
        let mut change = Change::default();
        change.institution(old, &new);
        let ticket = self.commit(origin, command, &Reply::Done {}, change)?;
        shard.insert(code, new);
        Ok((Reply::Done {}, ticket))
    }

    /// Locks a voucher and what else the operation touches (in the fixed order
    /// voucher, person, institution), applies the rule, commits, stores.
    fn change_voucher(
        &self,
        origin: &Origin,
        command: &Command,
        id: VoucherId,
        touch: Touch,
        rule: impl FnOnce(Context, Found) -> Result<(Voucher, Option<PersonYear>, Reply), Refusal>,
    ) -> Result<(Reply, u64), Refusal> {
        let mut vouchers = self.vouchers.of(id).write();
        let packed = vouchers.get(id).copied();
        let holder = packed.map(|p| p.holder());
        let mut persons = holder
            .filter(|_| touch.person)
            .map(|holder| self.persons.write(holder));
        let voucher = packed.map(|p| {
            let key = match &persons {
                Some(guard) => guard.entry(p.holder()).key,
                None => self.persons.key(p.holder()),
            };
            p.unpack(id, key, &self.districts)
        });
        let person = match (&persons, holder) {
            (Some(guard), Some(holder)) => {
                let entry = guard.entry(holder);
                entry.stored.then_some(entry.record)
            }
            _ => None,
        };
        let voucher = voucher.as_ref();
        let code = match touch.institution {
            At::None => None,
            At::Given(code) => Some(code),
            At::Voucher => packed.and_then(|p| p.institution()),
        };
        let institutions = code.map(|code| self.institutions.of(&code).read());
        let institution = match (&institutions, code) {
            (Some(guard), Some(code)) => guard.get(&code),
            _ => None,
        };
        let found = Found {
            voucher,
            person: person.unwrap_or_default(),
            institution,
        };
        let (new_voucher, new_person, reply) = rule(self.context(self.stamp(origin)), found)?;
        let holder = holder.expect("the rules refuse an unknown voucher");
        let mut change = Change::default();
        change.voucher(voucher, &new_voucher);
        if let Some(new_person) = new_person {
            change.person(new_voucher.holder, new_voucher.year, person, new_person);
        }
        if let Some((tag, text)) = touch.text {
            change.texts.push((id, tag, text.clone()));
        }
        let packed = self.pack(&new_voucher, holder);
        let ticket = self.commit(origin, command, &reply, change)?;
        vouchers.set(id, packed);
        if let (Some(guard), Some(new_person)) = (persons.as_mut(), new_person) {
            guard.store(holder, new_person);
        }
        Ok((reply, ticket))
    }

    /// Expires every unfinished voucher of a year: locks every voucher shard,
    /// then every person shard, in index order.
    fn expire(
        &self,
        origin: &Origin,
        command: &Command,
        year: u16,
    ) -> Result<(Reply, u64), Refusal> {
        let _sweeping = Sweeping::new(&self.sweeps);
        let mut vouchers: Vec<_> = self
            .vouchers
            .all()
            .iter()
            .map(|shard| shard.write())
            .collect();
        let mut persons: Vec<_> = self
            .persons
            .all()
            .iter()
            .map(|shard| shard.write())
            .collect();
        let context = self.context(self.stamp(origin));
        rules::check_expire(context, year)?;
        let mut change = Change::default();
        let mut expired = Vec::new();
        let mut uses_back: HashMap<PersonHandle, u8> = HashMap::new();
        for (shard, guard) in vouchers.iter().enumerate() {
            for (id, packed) in guard.iter(shard) {
                if packed.year() != year {
                    continue;
                }
                let holder = packed.holder();
                let key = persons[holder.shard()].entry(holder).key;
                let voucher = packed.unpack(id, key, &self.districts);
                if let Some((new, gives_use_back)) = rules::expire_voucher(&voucher, year) {
                    change.voucher(Some(&voucher), &new);
                    if gives_use_back {
                        *uses_back.entry(holder).or_default() += 1;
                    }
                    expired.push((id, self.pack(&new, holder)));
                }
            }
        }
        let mut people = Vec::new();
        for (holder, back) in uses_back {
            let entry = persons[holder.shard()].entry(holder);
            let old = entry.record;
            assert!(
                entry.stored && old.uses >= back,
                "uses count every redeemed voucher"
            );
            let new = PersonYear {
                uses: old.uses - back,
                ..old
            };
            change.person(entry.key, entry.year, Some(old), new);
            people.push((holder, new));
        }
        let reply = Reply::Expired {
            expired: expired.len() as u64,
        };
        let ticket = self.commit(origin, command, &reply, change)?;
        for (id, packed) in expired {
            vouchers[index::shard_of(id)].set(id, packed);
        }
        for (holder, person) in people {
            persons[holder.shard()].store(holder, person);
        }
        Ok((reply, ticket))
    }

    /// The voucher as memory holds it. The rules only make vouchers of campaign
    /// districts, with face values and amounts under `FACE_VALUE_FEN_MAX`.
    fn pack(&self, voucher: &Voucher, holder: PersonHandle) -> Packed {
        Packed::pack(voucher, holder, &self.districts).expect("the rules keep vouchers packable")
    }

    /// Seals the change into the audit chain and submits it. Nothing in the
    /// tail changes unless the journal takes the commit.
    fn commit(
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
            texts,
        } = change;
        let mut tail = self.tail.lock();
        if self.journal.is_full() {
            return Err(Refusal::new(
                Reason::Overloaded,
                "the commit queue is full; retry",
            ));
        }
        let seq = tail.seq + 1;
        let mut digest = tail.digest;
        for (put, old) in puts.iter().zip(&olds) {
            if let Some(old) = old {
                digest.remove(put.table.tag(), &put.key, old);
            }
            if let Some(new) = &put.value {
                digest.add(put.table.tag(), &put.key, new);
            }
        }
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
        let record = AuditRecord {
            seq,
            time: origin.time.get(),
            role: origin.role,
            request_id: origin.request_id.to_owned(),
            command: command.clone(),
            reply: reply.clone(),
            prev_hash: tail.hash,
        };
        let (entry, hash) = audit::seal(&record);
        puts.push(Put {
            table: Table::Audit,
            key: keys::audit(seq),
            value: Some(entry),
        });
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
        let ticket = tail.ticket + 1;
        self.journal.submit(Commit { ticket, puts })?;
        tail.seq = seq;
        tail.hash = hash;
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
        self.assigned_ticket.store(ticket, Ordering::SeqCst);
        Ok(ticket)
    }

    /// Remembers a refusal for its request id (no audit record: nothing changed).
    fn commit_refusal(&self, origin: &Origin, refusal: &Refusal) -> Result<u64, Refusal> {
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

    fn remember_put(
        &self,
        origin: &Origin,
        content: [u8; 32],
        outcome: Result<Reply, Refusal>,
    ) -> Put {
        let remembered = Remembered {
            content,
            time: origin.time.get(),
            outcome,
        };
        Put {
            table: Table::Requests,
            key: keys::request(origin.role, origin.request_id),
            value: Some(codec::encode(&remembered)),
        }
    }

    /// Answers a read (`get_voucher`, `stats`, `audit_head`) from memory.
    fn read(&self, role: Role, op: &Op) -> Result<Reply, Refusal> {
        match op {
            Op::GetVoucher { voucher } => match self.vouchers.of(*voucher).read().get(*voucher) {
                Some(found) => {
                    let holder = self.persons.key(found.holder());
                    let found = found.unpack(*voucher, holder, &self.districts);
                    Ok(Reply::Voucher(Box::new(found.view())))
                }
                None => Err(Refusal::new(
                    Reason::UnknownVoucher,
                    format!("no voucher {voucher}"),
                )),
            },
            Op::Stats { district, year } => self
                .stats(role, *district, *year)
                .map(|s| Reply::Stats(Box::new(s))),
            Op::AuditRead { from, limit } => self.audit_page(*from, *limit),
            Op::AuditHead => {
                let tail = self.tail.lock();
                Ok(Reply::AuditHead {
                    seq: tail.seq,
                    hash: hex::encode(tail.hash),
                    state_digest: tail.digest.hex(),
                })
            }
            _ => unreachable!("only reads come here"),
        }
    }

    /// Durable audit entries from `from` on, bounded by `AUDIT_PAGE_RECORDS_MAX`
    /// and `AUDIT_PAGE_BYTES_MAX`, with the head and the campaigns.
    fn audit_page(&self, from: u64, limit: Option<u32>) -> Result<Reply, Refusal> {
        let limit = limit
            .unwrap_or(AUDIT_PAGE_RECORDS_MAX)
            .min(AUDIT_PAGE_RECORDS_MAX);
        let head_seq = self.tail.lock().seq;
        let unavailable =
            |error: Error| Refusal::new(Reason::StorageUnavailable, error.to_string());
        let rows = self
            .journal
            .range(Table::Audit, &keys::audit(from), limit as usize)
            .map_err(unavailable)?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for (_, entry) in rows {
            bytes += entry.len();
            if bytes > AUDIT_PAGE_BYTES_MAX && !entries.is_empty() {
                break;
            }
            entries.push(entry);
        }
        let campaigns =
            meta::recorded_campaign_texts(self.journal.as_ref()).map_err(unavailable)?;
        Ok(Reply::AuditRecords(Box::new(AuditPage {
            head_seq,
            campaigns,
            entries,
        })))
    }

    /// The bureau's figures for a campaign year, one district or all.
    pub fn stats(
        &self,
        role: Role,
        district: Option<DistrictCode>,
        year: Option<u16>,
    ) -> Result<StatsView, Refusal> {
        let district = match (role, district) {
            (Role::District(own), None) => Some(own),
            (Role::District(own), Some(asked)) if asked != own => {
                return Err(Refusal::new(
                    Reason::ForbiddenRole,
                    format!("district agency {own} may see only its own figures"),
                ))
            }
            (_, asked) => asked,
        };
        let year = year.unwrap_or(self.campaigns.current().year);
        let Some(campaign) = self.campaigns.year(year) else {
            return Err(Refusal::new(
                Reason::InvalidRequest,
                format!("no campaign for year {year}"),
            ));
        };
        if let Some(code) = district {
            if campaign.district(code).is_none() {
                return Err(Refusal::new(
                    Reason::UnknownDistrict,
                    format!("district {code} is not in the {year} campaign"),
                ));
            }
        }
        // Every institution shard, then the tail (the lock order), held together:
        // a registration commits under its shard's write lock, so the list and
        // the figures are of one state.
        let shards: Vec<_> = self.institutions.all().iter().map(|s| s.read()).collect();
        let mut registered: Vec<(InstitutionCode, String, DistrictCode)> = shards
            .iter()
            .flat_map(|shard| shard.values())
            .filter(|i| district.is_none_or(|code| i.district == code))
            .map(|i| (i.code, i.name.clone(), i.district))
            .collect();
        registered.sort_unstable_by_key(|(code, _, _)| *code);
        let tail = self.tail.lock();
        let figure = |figure: Figure| tail.figures.get(&figure).copied().unwrap_or(0);
        let percent = |used: u64, target: u64| {
            if target == 0 {
                0.0
            } else {
                (used as f64 * 10_000.0 / target as f64).round() / 100.0
            }
        };
        let all: Vec<DistrictStats> = campaign
            .districts
            .iter()
            .map(|d| {
                let used = figure(Figure::Used(year, d.code));
                DistrictStats {
                    code: d.code,
                    name: d.name.clone(),
                    target: d.target,
                    issued: figure(Figure::Issued(year, d.code)),
                    claimed: figure(Figure::Claimed(year, d.code)),
                    used,
                    percent_of_target: percent(used, d.target),
                }
            })
            .collect();
        let target: u64 = all.iter().map(|d| d.target).sum();
        let used: u64 = all.iter().map(|d| d.used).sum();
        let city = CityStats {
            target,
            issued: all.iter().map(|d| d.issued).sum(),
            claimed: all.iter().map(|d| d.claimed).sum(),
            used,
            percent_of_target: percent(used, target),
            issued_goal: campaign.issued_goal,
            used_goal: campaign.used_goal,
        };
        let institutions_used = tail
            .figures
            .keys()
            .filter(|f| matches!(f, Figure::InstitutionUsed(y, _) if *y == year))
            .count() as u64;
        let coverage = Coverage {
            districts_used: all.iter().filter(|d| d.used > 0).count() as u64,
            districts_total: all.len() as u64,
            institutions_used,
            institutions_registered: tail.institutions_registered,
            used_with_checkin: campaign
                .districts
                .iter()
                .map(|d| figure(Figure::UsedWithCheckin(year, d.code)))
                .sum(),
            used,
        };
        let districts = all
            .into_iter()
            .filter(|d| district.is_none_or(|code| d.code == code))
            .collect();
        drop(shards);
        let institutions = registered
            .into_iter()
            .map(|(code, name, district)| {
                let evaluations = figure(Figure::InstitutionEvaluations(year, code));
                let score_sum = figure(Figure::InstitutionScoreSum(year, code));
                InstitutionStats {
                    code,
                    name,
                    district,
                    used: figure(Figure::InstitutionUsed(year, code)),
                    evaluations,
                    average_score: (evaluations > 0)
                        .then(|| (score_sum as f64 * 100.0 / evaluations as f64).round() / 100.0),
                }
            })
            .collect();
        Ok(StatsView {
            year,
            districts,
            city,
            coverage,
            institutions,
        })
    }

    /// The audit chain's head: sequence number, hash, and state digest.
    pub fn head(&self) -> (u64, [u8; 32], String) {
        let tail = self.tail.lock();
        (tail.seq, tail.hash, tail.digest.hex())
    }

    /// Counts of records held (vouchers, person-years, institutions).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.vouchers.len(),
            self.persons.len(),
            self.institutions.len(),
        )
    }

    /// Re-applies one audit record (replay): same command, time, role and
    /// voucher id. The result must be the recorded reply and the same hash.
    pub fn replay(&self, record: &AuditRecord, hash: &[u8; 32]) -> Result<(), String> {
        let voucher_id = match &record.reply {
            Reply::Issued { voucher } => Some(*voucher),
            _ => None,
        };
        if let Some(id) = voucher_id {
            self.next_voucher.fetch_max(id.0 + 1, Ordering::SeqCst);
        }
        let origin = Origin {
            role: record.role,
            request_id: &record.request_id,
            time: std::cell::Cell::new(record.time),
            fixed_time: true,
            remember: None,
        };
        let (outcome, _) = self.apply_command(&origin, &record.command, voucher_id);
        match outcome {
            Ok(reply) if reply == record.reply => {}
            Ok(reply) => {
                return Err(format!(
                    "record {}: replay answered {reply:?}, log says {:?}",
                    record.seq, record.reply
                ))
            }
            Err(refusal) => {
                return Err(format!(
                    "record {}: replay refused it: {} ({})",
                    record.seq, refusal.reason, refusal.message
                ))
            }
        }
        let (seq, head, _) = self.head();
        if seq != record.seq || &head != hash {
            return Err(format!(
                "record {}: replay produced a different record",
                record.seq
            ));
        }
        Ok(())
    }
}

/// What an operation on a voucher also locks.
#[derive(Default)]
struct Touch<'a> {
    /// The holder's record for the voucher's year.
    person: bool,
    /// An institution, read-locked until the change is committed.
    institution: At,
    /// A text to store with the change (class, comment).
    text: Option<(u8, &'a String)>,
}

impl Touch<'_> {
    fn person() -> Self {
        Touch {
            person: true,
            ..Touch::default()
        }
    }
}

/// Which institution an operation reads.
#[derive(Default)]
enum At {
    #[default]
    None,
    /// The one the command names.
    Given(InstitutionCode),
    /// The one the voucher is redeemed at.
    Voucher,
}

/// The records a rule sees.
struct Found<'a> {
    voucher: Option<&'a Voucher>,
    person: PersonYear,
    institution: Option<&'a Institution>,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal::new(Reason::StorageUnavailable, error.to_string())
    }
}

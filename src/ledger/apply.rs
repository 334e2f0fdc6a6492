//! Applying one request: validate, lock what it touches (voucher, person,
//! institution), ask the pure rules, gather the writes (`Change`), commit,
//! and only then change memory.

use super::classes::ClassHandle;
use super::*;
use crate::domain::command::ClassOpening;
use crate::domain::records::Class;
use crate::domain::time::ANSWER_UTC_OFFSET_S;

/// Who asked, when, and whether the answer is remembered for retries.
pub(super) struct Origin<'a> {
    pub(super) caller: Caller,
    pub(super) request_id: &'a str,
    /// When the operation happens: read from the clock once its locks are
    /// held (so times follow the order of conflicting changes), unless fixed.
    pub(super) time: std::cell::Cell<Timestamp>,
    /// Replay: the recorded time, never the clock.
    pub(super) fixed_time: bool,
    /// Set by `commit` when a record with a later time was sealed after this
    /// operation read its time: the attempt is abandoned (nothing written)
    /// and made again with a new time, so record times never go backwards.
    pub(super) restamp: std::cell::Cell<bool>,
    /// The request's content hash, when its answer is to be remembered.
    pub(super) remember: Option<[u8; 32]>,
    /// The audit record version to seal in: today's, or a replayed record's.
    pub(super) record_version: u8,
    /// Start-up re-applying a record already in the durable log: the
    /// commit writes the state only, not the record again.
    pub(super) logged: bool,
}

/// Attempts of one operation whose time a later record overtook, at most
/// (each needs another change sealed in between); then `overloaded`.
const RESTAMPS_MAX: u32 = 1_000;

/// The writes one accepted command makes, gathered before it commits.
#[derive(Default)]
pub(super) struct Change {
    pub(super) puts: Vec<Put>,
    /// Old value of each state put, for the digest (same order as `puts`).
    pub(super) olds: Vec<Option<Vec<u8>>>,
    pub(super) figures: HashMap<Figure, i64>,
    /// Change of `Tail::at_expiry` (in memory only, nothing stored).
    pub(super) at_expiry: HashMap<Figure, i64>,
    pub(super) texts: Vec<(VoucherId, u8, String)>,
    /// Writes outside the state tables (no digest), e.g. meta keys.
    pub(super) others: Vec<Put>,
}

impl Change {
    pub(super) fn put(&mut self, table: Table, key: Vec<u8>, old: Option<Vec<u8>>, new: Vec<u8>) {
        self.puts.push(Put {
            table,
            key,
            value: Some(new),
        });
        self.olds.push(old);
    }

    pub(super) fn voucher(&mut self, old: Option<&Voucher>, new: &Voucher) {
        if let Some(old) = old {
            for (figure, amount) in figure_contributions(old) {
                *self.figures.entry(figure).or_default() -= amount as i64;
            }
            for (figure, amount) in rules::expiry_withdrawals(old) {
                *self.at_expiry.entry(figure).or_default() -= amount as i64;
            }
        }
        for (figure, amount) in rules::expiry_withdrawals(new) {
            *self.at_expiry.entry(figure).or_default() += amount as i64;
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

    pub(super) fn person(
        &mut self,
        key: PersonKey,
        year: u16,
        old: Option<PersonYear>,
        new: PersonYear,
    ) {
        self.put(
            Table::Persons,
            keys::person(key, year),
            old.map(|old| codec::encode(&old)),
            codec::encode(&new),
        );
    }

    /// A voucher's enrollment row: written when it enrolls in a class,
    /// deleted when it leaves it (release).
    pub(super) fn enrollment(
        &mut self,
        voucher: VoucherId,
        old: Option<&Class>,
        new: Option<&Class>,
    ) {
        let row = |class: &Class| codec::encode(&(class.institution, class.code.clone()));
        let (old, new) = (old.map(row), new.map(row));
        if old == new {
            return;
        }
        self.puts.push(Put {
            table: Table::Enrollments,
            key: keys::enrollment(voucher),
            value: new,
        });
        self.olds.push(old);
    }

    pub(super) fn institution(&mut self, old: Option<&Institution>, new: &Institution) {
        self.put(
            Table::Institutions,
            keys::institution(new.code),
            old.map(codec::encode),
            codec::encode(new),
        );
    }
}

/// The step whose time a command records (`get_voucher`'s `*_at`), if any.
fn step_tag(command: &Command) -> Option<u8> {
    match command {
        Command::Claim { .. } => Some(keys::TEXT_CLAIMED_AT),
        Command::Redeem { .. } => Some(keys::TEXT_REDEEMED_AT),
        Command::Complete { .. } | Command::CompleteByOperator { .. } => {
            Some(keys::TEXT_COMPLETED_AT)
        }
        Command::Settle { .. } => Some(keys::TEXT_SETTLED_AT),
        _ => None,
    }
}

/// What an operation on a voucher also locks.
#[derive(Default)]
pub(super) struct Touch<'a> {
    /// The holder's record for the voucher's year.
    pub(super) person: bool,
    /// An institution, read-locked until the change is committed.
    pub(super) institution: At,
    /// A text to store with the change (class, comment).
    pub(super) text: Option<(u8, &'a String)>,
    /// The class a redeem names (looked up under the institution's lock).
    pub(super) names_class: Option<&'a String>,
}

impl Touch<'_> {
    pub(super) fn person() -> Self {
        Touch {
            person: true,
            ..Touch::default()
        }
    }
}

/// Which institution an operation reads.
#[derive(Default)]
pub(super) enum At {
    #[default]
    None,
    /// The one the command names.
    Given(InstitutionCode),
    /// The one the voucher is redeemed at.
    Voucher,
}

/// The records a rule sees.
pub(super) struct Found<'a> {
    pub(super) voucher: Option<&'a Voucher>,
    pub(super) person: PersonYear,
    pub(super) institution: Option<&'a Institution>,
    /// The class the voucher is enrolled in (`None`: none, or free text).
    pub(super) class: Option<&'a Class>,
    /// The class a redeem names (`Touch::names_class`), else free text.
    pub(super) naming: rules::Naming<'a>,
}

impl Ledger {
    pub(super) fn apply_one<'r>(
        &self,
        caller: Caller,
        request: &'r Request,
        seen: &mut HashMap<&'r str, ([u8; 32], usize)>,
        pending: &mut Pending,
        waiting: Waiting,
    ) -> Result<Answer, WaitFor> {
        let id = request.id.as_str();
        let role = caller.role;
        let refused = |refusal: Refusal| Answer {
            id: id.to_owned(),
            outcome: Err(refusal),
        };
        if let Err(refusal) = check_request_id(id) {
            return Ok(refused(refusal));
        }
        if !request.op.allows(role) {
            return Ok(Answer::refused(
                id,
                Reason::ForbiddenRole,
                format!("role {role} may not run {}", request.op.name()),
            ));
        }
        let now = self.clock.now();
        let command = match Command::from_op(&request.op, &self.secret, &self.campaigns, now) {
            Ok(Some(command)) => command,
            Ok(None) => {
                return Ok(Answer {
                    id: id.to_owned(),
                    outcome: self.read(role, &request.op),
                });
            }
            Err(refusal) => return Ok(refused(refusal)),
        };
        let content = self.content_hash(&request.op);
        if let Some(&(earlier, position)) = seen.get(id) {
            return Ok(if earlier == content {
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
            });
        }
        let key = keys::request(&caller, id);
        match self.remembered(&key, content, waiting) {
            Ok(Some(outcome)) => {
                return Ok(Answer {
                    id: id.to_owned(),
                    outcome,
                })
            }
            Ok(None) => {}
            Err(Stop::Refused(refusal)) => return Ok(refused(refusal)),
            Err(Stop::Wait(wait)) => return Err(wait),
        }
        let origin = Origin {
            caller,
            request_id: id,
            time: std::cell::Cell::new(now),
            fixed_time: false,
            restamp: std::cell::Cell::new(false),
            remember: Some(content),
            record_version: audit::AUDIT_RECORD_VERSION,
            logged: false,
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
        drop(inflight);
        self.request_decided.notify_waiters();
        Ok(Answer {
            id: id.to_owned(),
            outcome,
        })
    }

    /// Reads "now" for an operation whose locks are held (see `Origin::time`):
    /// the clock, but never before the last sealed record's time (a clock
    /// stepped back does not move record times back).
    pub(super) fn stamp(&self, origin: &Origin) -> Timestamp {
        if !origin.fixed_time {
            let sealed = Timestamp(self.record_time.load(Ordering::SeqCst));
            origin.time.set(self.clock.now().max(sealed));
        }
        origin.time.get()
    }

    pub(super) fn context(&self, now: Timestamp) -> Context<'_> {
        Context {
            campaigns: &self.campaigns,
            now,
        }
    }

    /// Applies one validated command. Returns the outcome and, when something
    /// was written (the change, or the remembered refusal), its ticket.
    pub(super) fn apply_command(
        &self,
        origin: &Origin,
        command: &Command,
        voucher_id: Option<VoucherId>,
    ) -> (Result<Reply, Refusal>, Option<u64>) {
        // An issue's voucher id is taken once, so a restamped attempt keeps it.
        let voucher_id = match command {
            Command::Issue { .. } => voucher_id
                .or_else(|| Some(VoucherId(self.next_voucher.fetch_add(1, Ordering::SeqCst)))),
            _ => voucher_id,
        };
        let mut restamps = 0;
        let result = loop {
            origin.restamp.set(false);
            let result = self.apply_command_once(origin, command, voucher_id);
            if origin.restamp.get() && restamps < RESTAMPS_MAX {
                restamps += 1;
                continue;
            }
            break result;
        };
        match result {
            Ok((reply, ticket)) => (Ok(reply), Some(ticket)),
            Err(refusal) if refusal.reason.is_transient() || origin.remember.is_none() => {
                (Err(refusal), None)
            }
            Err(refusal) => match self
                .may_remember_refusal(origin, command, &refusal)
                .and_then(|()| self.commit_refusal(origin, &refusal))
            {
                Ok(ticket) => (Err(refusal), Some(ticket)),
                Err(transient) => (Err(transient), None),
            },
        }
    }

    /// One attempt at a command: locks, the rule, the commit. A commit that
    /// finds a later record sealed since the attempt's time was read sets
    /// `origin.restamp` (and submits nothing): `apply_command` tries again.
    fn apply_command_once(
        &self,
        origin: &Origin,
        command: &Command,
        voucher_id: Option<VoucherId>,
    ) -> Result<(Reply, u64), Refusal> {
        let done = || Reply::Done {};
        match command {
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
                    return Err(Refusal::new(
                        Reason::Overloaded,
                        format!("the ledger holds at most {VOUCHER_ID_MAX} voucher ids"),
                    ));
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
                    let at = origin.time.get().local_rfc3339(ANSWER_UTC_OFFSET_S);
                    change.texts.push((id, keys::TEXT_ISSUED_AT, at));
                    let reply = Reply::Issued { voucher: id };
                    let ticket = self.commit(origin, command, &reply, change)?;
                    shard.set(id, packed);
                    self.persons.write(holder).add_voucher(holder, id);
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
                    names_class: Some(class),
                };
                self.change_voucher(origin, command, *voucher, touch, |context, found| {
                    let at = rules::Enrolling {
                        institution: found.institution,
                        code: *institution,
                        operator,
                        class: found.naming,
                    };
                    let (redeemed, person) =
                        rules::redeem(context, found.voucher, *voucher, found.person, at)?;
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
                self.checkin(origin, command, *voucher, Some((*lat, *lon)))
            }
            Command::CheckinOnline { voucher } => self.checkin(origin, command, *voucher, None),
            Command::OpenClass(opening) => self.open_class(origin, command, opening),
            Command::Complete {
                voucher,
                institution,
            } => self.complete(origin, command, *voucher, *institution, None),
            Command::CompleteByOperator {
                voucher,
                institution,
                operator,
            } => self.complete(origin, command, *voucher, *institution, Some(operator)),
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
                // Requests of other roles are refused before the rules, and
                // so are replayed records (`Ledger::replay`); a refusal, never
                // a panic, should one come here anyway.
                let Role::District(agency) = origin.caller.role else {
                    return Err(Refusal::new(
                        Reason::ForbiddenRole,
                        format!("role {} may not run settle", origin.caller.role),
                    ));
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
            } => self.release(origin, command, *voucher, *institution, None),
            Command::ReleaseByOperator {
                voucher,
                institution,
                operator,
            } => self.release(origin, command, *voucher, *institution, Some(operator)),
            Command::Expire { year } => self.expire(origin, command, *year),
            Command::ExpireBatch { year, vouchers } => {
                self.expire_batch(origin, command, *year, vouchers)
            }
            Command::RecordCampaign { year, text } => {
                self.stamp(origin);
                // The rules as the file gives them: a campaign without
                // `opens` opens where `Campaigns` puts it (after the year
                // before), not where its file alone would (D42).
                let sealed = Campaign::from_toml(text).ok();
                match self.campaigns.year(*year) {
                    Some(campaign)
                        if sealed
                            .as_ref()
                            .is_some_and(|sealed| sealed.to_toml() == campaign.to_toml()) =>
                    {
                        let mut change = Change::default();
                        change.others.push(Put {
                            table: Table::Meta,
                            key: meta::campaign_sealed_key(*year),
                            value: Some(Vec::new()),
                        });
                        self.commit(origin, command, &done(), change)
                            .map(|ticket| (done(), ticket))
                    }
                    _ => Err(Refusal::new(
                        Reason::InvalidRequest,
                        format!("campaign {year} differs from the rules this ledger runs"),
                    )),
                }
            }
        }
    }

    /// Check-in, with a position (`checkin`) or online (`None`).
    fn checkin(
        &self,
        origin: &Origin,
        command: &Command,
        voucher: VoucherId,
        position: Option<(f64, f64)>,
    ) -> Result<(Reply, u64), Refusal> {
        let touch = Touch {
            institution: At::Voucher,
            ..Touch::default()
        };
        self.change_voucher(origin, command, voucher, touch, |context, found| {
            let (checked, day) = rules::checkin(
                context,
                found.voucher,
                voucher,
                found.institution,
                found.class,
                position,
            )?;
            let reply = Reply::CheckedIn {
                session: day_text(day),
                checkins: checked.checkins,
            };
            Ok((checked, None, reply))
        })
    }

    /// 开班: locks the institution for writing (so no redeem into it runs
    /// meanwhile), applies the rule, commits the class row, then holds it.
    fn open_class(
        &self,
        origin: &Origin,
        command: &Command,
        opening: &ClassOpening,
    ) -> Result<(Reply, u64), Refusal> {
        let code = opening.institution;
        let shard = self.institutions.of(&code).write();
        let existing = self.classes.find(code, opening.class.as_str());
        let opened = self.classes.opened_by(code);
        let context = self.context(self.stamp(origin));
        let class = rules::open_class(
            context,
            shard.get(&code),
            existing.as_ref().map(|(_, class)| &**class),
            opened,
            opening,
        )?;
        let mut change = Change::default();
        change.put(
            Table::Classes,
            keys::class(code, &class.code),
            None,
            codec::encode(&class),
        );
        let ticket = self.commit(origin, command, &Reply::Done {}, change)?;
        self.classes.insert(class);
        drop(shard);
        Ok((Reply::Done {}, ticket))
    }

    /// Complete; `operator` is `None` only for records written before
    /// `complete` named one (replay), which skip the operator check.
    fn complete(
        &self,
        origin: &Origin,
        command: &Command,
        voucher: VoucherId,
        institution: InstitutionCode,
        operator: Option<&OperatorId>,
    ) -> Result<(Reply, u64), Refusal> {
        let touch = Touch {
            institution: match operator {
                Some(_) => At::Given(institution),
                None => At::None,
            },
            ..Touch::default()
        };
        self.change_voucher(origin, command, voucher, touch, |context, found| {
            let acting = operator.map(|operator| (operator, found.institution));
            Ok((
                rules::complete(context, found.voucher, voucher, institution, acting)?,
                None,
                Reply::Done {},
            ))
        })
    }

    /// Release; `operator` as for `complete`.
    fn release(
        &self,
        origin: &Origin,
        command: &Command,
        voucher: VoucherId,
        institution: InstitutionCode,
        operator: Option<&OperatorId>,
    ) -> Result<(Reply, u64), Refusal> {
        let touch = Touch {
            person: true,
            institution: match operator {
                Some(_) => At::Given(institution),
                None => At::None,
            },
            ..Touch::default()
        };
        self.change_voucher(origin, command, voucher, touch, |context, found| {
            let acting = operator.map(|operator| (operator, found.institution));
            let (released, person) = rules::release(
                context,
                found.voucher,
                voucher,
                found.person,
                institution,
                acting,
            )?;
            Ok((released, Some(person), Reply::Done {}))
        })
    }

    /// Locks one institution, applies a rule to it, commits, stores it.
    pub(super) fn change_institution(
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
    pub(super) fn change_voucher(
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
        // Under the institution's lock: no class of it opens meanwhile.
        let enrolled = packed
            .and_then(|p| p.class())
            .map(|handle| self.classes.get(handle));
        // A free-text class only for records sealed before every redeem had
        // to name an opened class, at an institution with none (D51).
        let free_text = |code| {
            origin.record_version < audit::CLASSES_REQUIRED_SINCE_VERSION
                && self.classes.opened_by(code) == 0
        };
        let named = match (touch.names_class, code) {
            (Some(name), Some(code)) if !free_text(code) => Some(self.classes.find(code, name)),
            _ => None,
        };
        let naming = match &named {
            None => rules::Naming::FreeText,
            Some(found) => rules::Naming::Class(found.as_ref().map(|(_, class)| &**class)),
        };
        let found = Found {
            voucher,
            person: person.unwrap_or_default(),
            institution,
            class: enrolled.as_deref(),
            naming,
        };
        let (new_voucher, new_person, reply) = rule(self.context(self.stamp(origin)), found)?;
        let holder = holder.expect("the rules refuse an unknown voucher");
        // The class the voucher is enrolled in after the change: the one a
        // redeem named; none once released back to claimed; else unchanged.
        let (new_class, new_handle): (Option<&Class>, Option<ClassHandle>) =
            if touch.names_class.is_some() {
                match &named {
                    Some(Some((handle, class))) => (Some(&**class), Some(*handle)),
                    _ => (None, None),
                }
            } else if new_voucher.state == VoucherState::Claimed {
                (None, None)
            } else {
                (enrolled.as_deref(), packed.and_then(|p| p.class()))
            };
        let mut change = Change::default();
        change.voucher(voucher, &new_voucher);
        change.enrollment(id, enrolled.as_deref(), new_class);
        if let Some(new_person) = new_person {
            change.person(new_voucher.holder, new_voucher.year, person, new_person);
        }
        if let Some((tag, text)) = touch.text {
            change.texts.push((id, tag, text.clone()));
        }
        if let Some(tag) = step_tag(command) {
            let at = origin.time.get().local_rfc3339(ANSWER_UTC_OFFSET_S);
            change.texts.push((id, tag, at));
        }
        let packed = self.pack(&new_voucher, holder).with_class(new_handle);
        let ticket = self.commit(origin, command, &reply, change)?;
        vouchers.set(id, packed);
        if let (Some(guard), Some(new_person)) = (persons.as_mut(), new_person) {
            guard.store(holder, new_person);
        }
        Ok((reply, ticket))
    }

    /// Expires every unfinished voucher of a year: locks every voucher shard,
    /// then every person shard, in index order.
    pub(super) fn expire(
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
                    expired.push((id, self.pack(&new, holder).with_class(packed.class())));
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
    pub(super) fn pack(&self, voucher: &Voucher, holder: PersonHandle) -> Packed {
        Packed::pack(voucher, holder, &self.districts).expect("the rules keep vouchers packable")
    }
}

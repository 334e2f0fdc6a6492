//! Reads: `get_voucher`, `stats`, `audit_head`, `audit_read`, and the
//! figures the metrics sampler copies. Reads change nothing and wait for
//! the commits they may rest on.

use super::*;
use crate::domain::time::ANSWER_UTC_OFFSET_S;

impl Ledger {
    /// Answers a read (`get_voucher`, `stats`, `audit_head`) from memory.
    pub(super) fn read(&self, role: Role, op: &Op) -> Result<Reply, Refusal> {
        match op {
            Op::GetVoucher { voucher } => self.get_voucher(*voucher),
            Op::Stats { district, year } => self
                .stats(role, *district, *year)
                .map(|s| Reply::Stats(Box::new(s))),
            Op::AuditRead { from, limit } => self.audit_page(*from, *limit),
            Op::ListVouchers { id_number, year } => self.list_vouchers(id_number, *year),
            Op::Events {
                after,
                limit,
                institution,
                district,
                ..
            } => self.events_page(role, *after, *limit, *institution, *district),
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

    /// `get_voucher`: the voucher, its class and its step times (from the
    /// voucher's rows of the `texts` table, one short range read). Memory
    /// changes when a commit is handed to the journal, before it is written,
    /// so under the voucher's shard read lock (no change of this voucher can
    /// be handed over meanwhile) it waits until every commit handed over so
    /// far is durable and its state written (`wait_written`), then reads
    /// memory and rows of one state. The wait is one group commit at most,
    /// during which writers of this voucher shard (1/256 of the vouchers)
    /// wait too; `get_voucher` runs off the async workers for it
    /// (`Op::is_point`).
    fn get_voucher(&self, id: VoucherId) -> Result<Reply, Refusal> {
        let shard = self.vouchers.of(id).read();
        let Some(packed) = shard.get(id).copied() else {
            return Err(Refusal::new(
                Reason::UnknownVoucher,
                format!("no voucher {id}"),
            ));
        };
        self.journal
            .wait_written(self.assigned_ticket.load(Ordering::SeqCst))?;
        let voucher = packed.unpack(id, self.persons.key(packed.holder()), &self.districts);
        let mut latest = self.latest_texts(id)?;
        drop(shard);
        let done = |tag: u8| match tag {
            keys::TEXT_ISSUED_AT => true,
            keys::TEXT_CLAIMED_AT => voucher.claimed,
            keys::TEXT_REDEEMED_AT | keys::TEXT_CLASS => voucher.institution.is_some(),
            keys::TEXT_COMPLETED_AT => matches!(
                voucher.state,
                VoucherState::Completed | VoucherState::Settled
            ),
            keys::TEXT_SETTLED_AT => voucher.settled_fen.is_some(),
            _ => false,
        };
        let mut shown = |tag: u8| latest.remove(&tag).filter(|_| done(tag));
        let mut view = voucher.view();
        view.state = self.shown_state(&voucher);
        view.steps = StepTimes {
            issued_at: shown(keys::TEXT_ISSUED_AT),
            claimed_at: shown(keys::TEXT_CLAIMED_AT),
            redeemed_at: shown(keys::TEXT_REDEEMED_AT),
            completed_at: shown(keys::TEXT_COMPLETED_AT),
            settled_at: shown(keys::TEXT_SETTLED_AT),
        };
        view.class = shown(keys::TEXT_CLASS);
        Ok(Reply::Voucher(Box::new(view)))
    }

    /// The state answers show: expired from the campaign deadline on for a
    /// voucher not yet completed, whether or not `expire` has run.
    fn shown_state(&self, voucher: &Voucher) -> VoucherState {
        match self.campaigns.year(voucher.year) {
            Some(campaign) => {
                rules::shown_state(voucher.state, campaign.deadline, self.clock.now())
            }
            None => voucher.state,
        }
    }

    /// The latest text of each tag of one voucher (rows are keyed by audit
    /// sequence, so the last one read of a tag is its latest).
    fn latest_texts(&self, voucher: VoucherId) -> Result<HashMap<u8, String>, Refusal> {
        let from = keys::text_prefix(voucher);
        let to = keys::text_prefix(VoucherId(voucher.0 + 1));
        let mut latest = HashMap::new();
        self.journal
            .scan_between(Table::Texts, &from, Some(&to), &mut |key, value| {
                let tag = key[from.len()];
                latest.insert(tag, codec::decode::<String>(value, "text")?);
                Ok(())
            })?;
        Ok(latest)
    }

    /// A person's vouchers in id order, from the person index: one hash
    /// lookup per campaign year asked, then one voucher read per voucher held.
    /// A year without a campaign holds none (an empty list).
    fn list_vouchers(&self, id_number: &str, year: Option<u16>) -> Result<Reply, Refusal> {
        let holder = IdNumber::parse_at(id_number, self.clock.now())
            .map_err(|why| Refusal::new(Reason::InvalidIdNumber, format!("id_number: {why}")))?
            .key(&self.secret);
        let years: Vec<u16> = match year {
            Some(year) => vec![year],
            None => self.campaigns.all().iter().map(|c| c.year).collect(),
        };
        let mut held: Vec<VoucherId> = Vec::new();
        for year in years {
            if let Some(handle) = self.persons.find(holder, year) {
                held.extend(self.persons.read(handle).vouchers(handle));
            }
        }
        held.sort_unstable();
        let vouchers = held
            .into_iter()
            .filter_map(|id| {
                let shard = self.vouchers.of(id).read();
                let packed = shard.get(id)?;
                let voucher = packed.unpack(id, holder, &self.districts);
                Some(VoucherSummary {
                    voucher: id,
                    kind: voucher.kind,
                    state: self.shown_state(&voucher),
                    face_value_fen: voucher.face_value_fen,
                    year: voucher.year,
                })
            })
            .collect();
        Ok(Reply::Vouchers { vouchers })
    }

    /// Durable audit entries from `from` on, bounded by `AUDIT_PAGE_RECORDS_MAX`
    /// and `AUDIT_PAGE_BYTES_MAX`, with the head and the campaigns.
    pub(super) fn audit_page(&self, from: u64, limit: Option<u32>) -> Result<Reply, Refusal> {
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
        // Default: the campaign open now (else the last that opened), as for an issue.
        let year = year.unwrap_or(self.campaigns.for_issue(self.clock.now()).year);
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
        let (at, seq) = (
            self.clock.now().local_rfc3339(ANSWER_UTC_OFFSET_S),
            tail.seq,
        );
        // Past the deadline the figures read as if `expire` had run: what it
        // will take away (`Tail::at_expiry`) is taken away here already.
        let ended = campaign.has_ended(self.clock.now());
        let figure = |figure: Figure| {
            let stored = tail.figures.get(&figure).copied().unwrap_or(0);
            let withdrawn = match ended {
                true => tail.at_expiry.get(&figure).copied().unwrap_or(0),
                false => 0,
            };
            assert!(
                withdrawn <= stored,
                "expiry takes away only what was counted"
            );
            stored - withdrawn
        };
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
                    settled_fen: figure(Figure::SettledFen(year, d.code)),
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
            settled_fen: all.iter().map(|d| d.settled_fen).sum(),
        };
        // Coverage of the districts shown: the city's, or one district's
        // (DOMAIN.md: "coverage within the caller's district").
        let in_scope = |code: DistrictCode| district.is_none_or(|shown| shown == code);
        let scoped: Vec<&DistrictStats> = all.iter().filter(|d| in_scope(d.code)).collect();
        let (institutions_used, institutions_registered) = match district {
            None => (
                tail.figures
                    .keys()
                    .filter(|f| matches!(f, Figure::InstitutionUsed(y, _) if *y == year))
                    .filter(|f| figure(**f) > 0)
                    .count() as u64,
                tail.institutions_registered,
            ),
            Some(_) => (
                registered
                    .iter()
                    .filter(|(code, _, _)| figure(Figure::InstitutionUsed(year, *code)) > 0)
                    .count() as u64,
                registered.len() as u64,
            ),
        };
        let coverage = Coverage {
            districts_used: scoped.iter().filter(|d| d.used > 0).count() as u64,
            districts_total: scoped.len() as u64,
            institutions_used,
            institutions_registered,
            used_with_checkin: scoped
                .iter()
                .map(|d| figure(Figure::UsedWithCheckin(year, d.code)))
                .sum(),
            used: scoped.iter().map(|d| d.used).sum(),
        };
        let districts = all.into_iter().filter(|d| in_scope(d.code)).collect();
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
                    settled_fen: figure(Figure::InstitutionSettledFen(year, code)),
                }
            })
            .collect();
        Ok(StatsView {
            at,
            seq,
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
}

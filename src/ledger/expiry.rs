//! The daemon's own expiry after a campaign deadline (docs/decisions.md
//! D41): bounded batches that each lock one voucher shard and the person
//! shards of that batch's holders, so other writers go on between batches.
//! The daemon's driver (`expire_year_paced`) pauses between batches
//! (D43). The bureau's `expire` (all shards at once) stays as it was; once
//! the daemon is done it answers 0.

use super::*;
use crate::limits::{EXPIRE_BATCH_PAUSE_MS, EXPIRE_BATCH_VOUCHERS_MAX, INDEX_SHARDS};

/// What one pass over a voucher shard (or all of them) wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiryPass {
    /// Vouchers written expired.
    pub expired: u64,
    /// Commits (audit records) it took, each at most `EXPIRE_BATCH_VOUCHERS_MAX` vouchers.
    pub batches: u64,
    /// The longest time a batch took to be applied, µs: taking its locks,
    /// building its change and handing its commit over, the time a write
    /// waiting for one of its shards can wait at most (beside its own).
    pub longest_applying_us: u64,
    /// The longest batch in all, µs: applied and then durable.
    pub longest_batch_us: u64,
}

impl ExpiryPass {
    pub fn add(&mut self, other: ExpiryPass) {
        self.expired += other.expired;
        self.batches += other.batches;
        self.longest_applying_us = self.longest_applying_us.max(other.longest_applying_us);
        self.longest_batch_us = self.longest_batch_us.max(other.longest_batch_us);
    }
}

impl Ledger {
    /// Years whose campaign deadline has passed at the ledger's clock.
    pub fn years_past_deadline(&self) -> Vec<u16> {
        let now = self.clock.now();
        self.campaigns
            .all()
            .iter()
            .filter(|campaign| campaign.has_ended(now))
            .map(|campaign| campaign.year)
            .collect()
    }

    /// Writes the expiry of every unfinished voucher of `year` held in one
    /// voucher shard, in batches of at most `EXPIRE_BATCH_VOUCHERS_MAX`, each
    /// durable before the next. The shard is read once (under its read lock)
    /// for its unfinished vouchers; past the deadline no voucher becomes
    /// unfinished again, so the list stays true (a concurrent `expire` only
    /// makes a batch smaller).
    pub fn expire_shard(&self, year: u16, shard: usize) -> Result<ExpiryPass, Refusal> {
        let mut pass = ExpiryPass::default();
        for batch in self
            .unfinished_in_shard(year, shard)
            .chunks(EXPIRE_BATCH_VOUCHERS_MAX)
        {
            pass.add(self.expire_listed(year, batch)?);
        }
        Ok(pass)
    }

    /// The unfinished vouchers of `year` held in one voucher shard, in id
    /// order (read once under the shard's read lock).
    fn unfinished_in_shard(&self, year: u16, shard: usize) -> Vec<VoucherId> {
        assert!(shard < INDEX_SHARDS, "a voucher shard index");
        self.vouchers.all()[shard]
            .read()
            .iter(shard)
            .filter(|(_, packed)| {
                packed.year() == year
                    && matches!(
                        packed.state(),
                        VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
                    )
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// `expire_shard` over every shard, in index order, without pauses
    /// (tests, benchmarks; the daemon runs `expire_year_paced`, which walks
    /// the shards the same way on the blocking pool and pauses between
    /// batches).
    pub fn expire_due(&self, year: u16) -> Result<ExpiryPass, Refusal> {
        let mut pass = ExpiryPass::default();
        for shard in 0..INDEX_SHARDS {
            pass.add(self.expire_shard(year, shard)?);
        }
        Ok(pass)
    }

    /// One batch: an `ExpireBatch` record sealed by the daemon as the bureau,
    /// waited for until durable.
    fn expire_listed(&self, year: u16, listed: &[VoucherId]) -> Result<ExpiryPass, Refusal> {
        let command = Command::ExpireBatch {
            year,
            vouchers: listed.to_vec(),
        };
        let request_id = format!("expire/{year}/{}", listed[0]);
        let origin = Origin {
            caller: Caller::new(Role::Bureau, Caller::DAEMON_CERTIFICATE),
            request_id: &request_id,
            time: std::cell::Cell::new(self.clock.now()),
            fixed_time: false,
            restamp: std::cell::Cell::new(false),
            remember: None,
            record_version: audit::AUDIT_RECORD_VERSION,
            logged: false,
        };
        let started = std::time::Instant::now();
        let applied = self.apply_command(&origin, &command, None);
        let applying_us = started.elapsed().as_micros() as u64;
        match applied {
            (Ok(Reply::Expired { expired }), Some(ticket)) => {
                self.journal.wait_durable(ticket)?;
                Ok(ExpiryPass {
                    expired,
                    batches: 1,
                    longest_applying_us: applying_us,
                    longest_batch_us: started.elapsed().as_micros() as u64,
                })
            }
            // Nothing left of the batch (a concurrent `expire` wrote it).
            (Err(refusal), _) if refusal.reason == Reason::InvalidRequest => {
                Ok(ExpiryPass::default())
            }
            (Err(refusal), _) => Err(refusal),
            (outcome, _) => unreachable!("an expiry batch answers a count: {outcome:?}"),
        }
    }

    /// Applies an `ExpireBatch`: the listed vouchers of `year` that are
    /// still unfinished become expired and give their uses back, under the
    /// write locks of the listed vouchers' shards (index order) and then of
    /// their holders' person shards (index order), the lock order of
    /// `expire`. Refused `invalid_request` for an empty, unsorted or too
    /// long list, or when none of the listed vouchers is left to expire
    /// (nothing is written then).
    pub(super) fn expire_batch(
        &self,
        origin: &Origin,
        command: &Command,
        year: u16,
        listed: &[VoucherId],
    ) -> Result<(Reply, u64), Refusal> {
        if listed.is_empty()
            || listed.len() > EXPIRE_BATCH_VOUCHERS_MAX
            || !listed.windows(2).all(|pair| pair[0] < pair[1])
        {
            return Err(Refusal::new(
                Reason::InvalidRequest,
                format!(
                    "an expiry batch lists 1 to {EXPIRE_BATCH_VOUCHERS_MAX} vouchers in id order"
                ),
            ));
        }
        let mut voucher_shards: Vec<usize> = listed.iter().map(|id| index::shard_of(*id)).collect();
        voucher_shards.sort_unstable();
        voucher_shards.dedup();
        let mut vouchers: Vec<_> = voucher_shards
            .iter()
            .map(|&shard| self.vouchers.all()[shard].write())
            .collect();
        let guard_of = |id: VoucherId| {
            voucher_shards
                .binary_search(&index::shard_of(id))
                .expect("every listed voucher's shard is locked")
        };
        let mut person_shards: Vec<usize> = listed
            .iter()
            .filter_map(|id| vouchers[guard_of(*id)].get(*id))
            .map(|packed| packed.holder().shard())
            .collect();
        person_shards.sort_unstable();
        person_shards.dedup();
        let mut persons: Vec<_> = person_shards
            .iter()
            .map(|&shard| self.persons.all()[shard].write())
            .collect();
        let person_guard_of = |holder: PersonHandle| {
            person_shards
                .binary_search(&holder.shard())
                .expect("every holder's shard is locked")
        };
        let context = self.context(self.stamp(origin));
        rules::check_expire(context, year)?;
        let mut change = Change::default();
        let mut expired = Vec::new();
        let mut uses_back: HashMap<PersonHandle, u8> = HashMap::new();
        for &id in listed {
            let Some(packed) = vouchers[guard_of(id)].get(id).copied() else {
                continue;
            };
            let holder = packed.holder();
            let key = persons[person_guard_of(holder)].entry(holder).key;
            let voucher = packed.unpack(id, key, &self.districts);
            if let Some((new, gives_use_back)) = rules::expire_voucher(&voucher, year) {
                change.voucher(Some(&voucher), &new);
                if gives_use_back {
                    *uses_back.entry(holder).or_default() += 1;
                }
                expired.push((id, self.pack(&new, holder).with_class(packed.class())));
            }
        }
        if expired.is_empty() {
            return Err(Refusal::new(
                Reason::InvalidRequest,
                "none of the listed vouchers is left to expire",
            ));
        }
        let mut people = Vec::new();
        for (holder, back) in uses_back {
            let entry = persons[person_guard_of(holder)].entry(holder);
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
            vouchers[guard_of(id)].set(id, packed);
        }
        for (holder, person) in people {
            persons[person_guard_of(holder)].store(holder, person);
        }
        Ok((reply, ticket))
    }
}

/// The pause after an expiry batch that took `batch` (docs/decisions.md
/// D43): at least `EXPIRE_BATCH_PAUSE_MS`, and at least the batch's own
/// time, so the batches take at most half of the time while other writes
/// queue behind their locks and the commit path.
pub fn expiry_pause_after(batch: std::time::Duration) -> std::time::Duration {
    batch.max(std::time::Duration::from_millis(EXPIRE_BATCH_PAUSE_MS))
}

/// The daemon's expiry of one year: shard by shard in index order, each
/// shard read once, then written in batches on the blocking pool; after
/// every batch that wrote something, `pause(expiry_pause_after(its time))`
/// is awaited before the next one (the daemon passes `tokio::time::sleep`;
/// tests count the calls). A refused batch stops the pass (the caller tries
/// again later); the pass so far is lost only from the figures.
pub async fn expire_year_paced<P, F>(
    ledger: Arc<Ledger>,
    year: u16,
    mut pause: P,
) -> Result<ExpiryPass, Refusal>
where
    P: FnMut(std::time::Duration) -> F,
    F: std::future::Future<Output = ()>,
{
    let mut total = ExpiryPass::default();
    for shard in 0..INDEX_SHARDS {
        let reader = Arc::clone(&ledger);
        let unfinished = blocking(move || Ok(reader.unfinished_in_shard(year, shard))).await?;
        for batch in unfinished.chunks(EXPIRE_BATCH_VOUCHERS_MAX) {
            let writer = Arc::clone(&ledger);
            let batch = batch.to_vec();
            let started = std::time::Instant::now();
            let pass = blocking(move || writer.expire_listed(year, &batch)).await?;
            total.add(pass);
            if pass.batches > 0 {
                pause(expiry_pause_after(started.elapsed())).await;
            }
        }
    }
    Ok(total)
}

/// Runs `work` on the blocking pool; a panic there is re-raised here.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

//! The engine limit: how many redeems per second RocksDB alone can make
//! durable on this machine, with no rules, no locks and no network.
//!
//! It writes what an accepted redeem writes (the puts of a real redeem on an
//! in-memory ledger: same tables, same key and value sizes) in groups of
//! `group` redeems, from one thread, like the committer, in one of three
//! shapes (`WriteShape`): today's (the logged tables synced, the state
//! without the WAL), the one before issue 19 (everything in one synced
//! batch), and the floor: one audit-sized put per redeem, synced. The load
//! test reports end-to-end throughput as a ratio of these, in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use rocksdb::{WriteOptions, DB};

use voucherd::error::Error;
use voucherd::store;
use voucherd::store::journal::{self, Commit, Put, Table};

/// What one accepted redeem writes: (table, key bytes, value bytes) per put,
/// taken from a real redeem on an in-memory ledger.
pub fn redeem_shape() -> Vec<(Table, usize, usize)> {
    use std::sync::Arc;

    use voucherd::domain::campaign::{Campaign, Campaigns};
    use voucherd::domain::enums::{Category, Channel, ClassMode, InstitutionType, Kind};
    use voucherd::domain::ids::PersonSecret;
    use voucherd::domain::op::{Op, Reply, Request, Role, SiteSpec};
    use voucherd::domain::time::{Clock, ManualClock, SystemClock};
    use voucherd::ledger::{Ledger, LedgerConfig};
    use voucherd::store::journal::MemoryJournal;

    let now = SystemClock.now();
    let journal = Arc::new(MemoryJournal::default());
    let config = LedgerConfig {
        campaigns: Campaigns::new(vec![Campaign::default_for(now)]).expect("one campaign"),
        secret: PersonSecret([1; 32]),
        clock: Arc::new(ManualClock::new(now)),
    };
    let ledger = Ledger::open(config, journal.clone()).expect("an empty ledger opens");
    let person = "11010519491231002X".to_string();
    let run = |role: Role, id: &str, op: Op| {
        let answer = ledger
            .execute(role, &[Request { id: id.into(), op }])
            .remove(0);
        answer
            .outcome
            .expect("the sample redeem's steps are accepted")
    };
    run(
        Role::Bureau,
        "r1",
        Op::RegisterInstitution {
            code: "5000001".parse().expect("code"),
            name: "重庆技工学校".into(),
            district: "500101".parse().expect("district"),
            address: "万州区".into(),
            phone: "023-1".into(),
            kind: InstitutionType::TechnicianCollege,
            admin_name: "刘路".into(),
            admin_id_number: person.clone(),
            sites: vec![SiteSpec {
                lat: 30.8,
                lon: 108.4,
                radius_m: None,
            }],
        },
    );
    run(
        Role::Gateway,
        "r2",
        Op::AuthoriseOperator {
            institution: "5000001".parse().expect("code"),
            admin_id_number: person.clone(),
            operator: "operator-0001".parse().expect("operator"),
        },
    );
    // Every redeem names an opened class of the voucher's kind (D51).
    let year = Campaign::default_for(now).year;
    run(
        Role::Gateway,
        "r2b",
        Op::OpenClass {
            institution: "5000001".parse().expect("code"),
            operator: "operator-0001".parse().expect("operator"),
            class: "电工初级 2026 冬季班".parse().expect("class"),
            kind: Kind::EmploymentSkills,
            first_day: format!("{}-12-01", year - 1),
            last_day: format!("{year}-11-30"),
            mode: ClassMode::Onsite,
            sites: None,
        },
    );
    let Reply::Issued { voucher } = run(
        Role::Bureau,
        "r3",
        Op::Issue {
            id_number: person.clone(),
            category: Category::RuralMigrant,
            kind: Kind::EmploymentSkills,
            face_value_fen: 80_000,
            channel: Channel::Wechat,
            district: "500101".parse().expect("district"),
            year: None,
        },
    ) else {
        unreachable!("issue answers a voucher")
    };
    run(
        Role::Gateway,
        "r4",
        Op::Claim {
            voucher,
            id_number: person,
        },
    );
    run(
        Role::Gateway,
        "gateway-request-000000000005",
        Op::Redeem {
            voucher,
            institution: "5000001".parse().expect("code"),
            operator: "operator-0001".parse().expect("operator"),
            class: "电工初级 2026 冬季班".into(),
        },
    );
    journal.last_commit()
}

/// How a group of redeems is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteShape {
    /// The committer's: the logged tables (audit record, remembered answer)
    /// in one synced batch, then the state tables in one batch without the WAL.
    Split,
    /// Before issue 19: every put of the group in one synced batch.
    Single,
    /// The floor: only an audit-record-sized put per redeem, in one synced
    /// batch per group; what RocksDB can make durable at all.
    AuditOnly,
}

impl WriteShape {
    pub const ALL: [WriteShape; 3] = [WriteShape::Split, WriteShape::Single, WriteShape::AuditOnly];

    pub fn name(self) -> &'static str {
        match self {
            WriteShape::Split => "split",
            WriteShape::Single => "single",
            WriteShape::AuditOnly => "audit_only",
        }
    }
}

/// Result of one run.
#[derive(Clone, Copy, Debug)]
pub struct LimitRun {
    pub shape: WriteShape,
    pub group: usize,
    pub redeems: u64,
    pub elapsed: Duration,
}

impl LimitRun {
    pub fn redeems_per_s(&self) -> f64 {
        self.redeems as f64 / self.elapsed.as_secs_f64()
    }
}

/// `measure_shape` in the committer's shape (`WriteShape::Split`).
pub fn measure(dir: &Path, group: usize, duration: Duration) -> Result<LimitRun, Error> {
    measure_shape(dir, group, duration, WriteShape::Split)
}

/// Writes groups of `group` redeem-shaped record sets for `duration` into a
/// fresh store in `dir`, with the store's options and the committer's rule:
/// only the last write of a key in a group. Every redeem here updates the
/// same figures, digest and applied-sequence keys, so a group collapses to
/// at least as few puts as any real group: the limit is never lower than
/// what the committer could reach. No checkpoints are taken beyond
/// RocksDB's own flushes (the daemon's take a second thread): again the
/// limit errs high.
pub fn measure_shape(
    dir: &Path,
    group: usize,
    duration: Duration,
    write_shape: WriteShape,
) -> Result<LimitRun, Error> {
    let mut shape = redeem_shape();
    if write_shape == WriteShape::AuditOnly {
        shape.retain(|(table, _, _)| *table == Table::Audit);
        assert_eq!(shape.len(), 1, "a redeem writes one audit record");
    }
    let db = DB::open_cf_descriptors(&store::rocks::options(), dir, store::rocks::families())?;
    store::rocks::idle_background_threads();
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let mut unlogged = WriteOptions::default();
    unlogged.disable_wal(true);
    let started = Instant::now();
    let mut redeems = 0u64;
    while started.elapsed() < duration {
        let commits: Vec<Commit> = (0..group)
            .map(|_| {
                redeems += 1;
                let puts = shape
                    .iter()
                    .enumerate()
                    .map(|(index, (table, key_len, value_len))| {
                        let shared = matches!(table, Table::Counters | Table::Meta);
                        let id = if shared {
                            index as u64
                        } else {
                            redeems.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64
                        };
                        let mut key = id.to_be_bytes().to_vec();
                        key.resize((*key_len).max(8), 0);
                        Put {
                            table: *table,
                            key,
                            value: Some(vec![(redeems & 0xff) as u8; *value_len]),
                        }
                    })
                    .collect();
                Commit {
                    ticket: redeems,
                    puts,
                }
            })
            .collect();
        let writes = journal::last_writes(&commits);
        match write_shape {
            WriteShape::Single | WriteShape::AuditOnly => {
                db.write_opt(store::rocks::write_batch(&db, &writes), &sync)?;
            }
            WriteShape::Split => {
                let (logged, state): (Vec<&Put>, Vec<&Put>) =
                    writes.into_iter().partition(|put| put.table.is_logged());
                db.write_opt(store::rocks::write_batch(&db, &logged), &sync)?;
                db.write_opt(store::rocks::write_batch(&db, &state), &unlogged)?;
            }
        }
    }
    Ok(LimitRun {
        shape: write_shape,
        group,
        redeems,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redeem_writes_voucher_person_text_counters_audit_and_answer() {
        let shape = redeem_shape();
        let tables: Vec<Table> = shape.iter().map(|(table, _, _)| *table).collect();
        for table in [
            Table::Vouchers,
            Table::Persons,
            Table::Texts,
            Table::Counters,
            Table::Audit,
            Table::Requests,
        ] {
            assert!(tables.contains(&table), "{table:?} missing from {shape:?}");
        }
        assert!(
            tables.contains(&Table::Meta),
            "the digest and applied sequence: {shape:?}"
        );
        for write_shape in WriteShape::ALL {
            let dir = tempfile::tempdir().unwrap();
            let run = measure_shape(dir.path(), 4, Duration::from_millis(50), write_shape).unwrap();
            assert!(run.redeems >= 4 && run.redeems.is_multiple_of(4));
            assert_eq!(run.shape, write_shape);
        }
    }
}

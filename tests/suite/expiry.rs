//! The daemon's own expiry after the deadline (`Ledger::expire_shard`,
//! docs/decisions.md D41): it writes in bounded batches exactly what the
//! reads already showed, `expire` then answers 0, and the batches replay.
//! Also the measurement of a batch's time behind D41's figures (ignored:
//! `cargo test --test suite expiry_batch_time -- --ignored --nocapture`).

use std::time::Instant;

use crate::common::*;
use voucherd::domain::enums::{Kind, VoucherState};
use voucherd::domain::ids::VoucherId;
use voucherd::domain::op::{Op, Reply, Request, Role};
use voucherd::domain::time::Timestamp;
use voucherd::limits::{EXPIRE_BATCH_PAUSE_MS, EXPIRE_BATCH_VOUCHERS_MAX, INDEX_SHARDS};

const PERSONS: usize = 120;
const OPERATIONS: usize = 3_000;

/// The answers that must not change when the expiry is written: every
/// voucher's view and the city's figures (without their time and sequence).
fn reads(h: &Harness, vouchers: &[VoucherId]) -> (Vec<Reply>, String) {
    let views = vouchers
        .iter()
        .map(|&voucher| h.ok(Role::Auditor, Op::GetVoucher { voucher }))
        .collect();
    let Reply::Stats(mut stats) = h.ok(
        Role::Bureau,
        Op::Stats {
            district: None,
            year: None,
        },
    ) else {
        panic!("stats answers figures")
    };
    stats.at = String::new();
    stats.seq = 0;
    (views, format!("{stats:?}"))
}

/// A random workload, then past the deadline: the reads show every
/// unfinished voucher expired; the daemon's batches write that many, one
/// commit per non-empty shard batch, and the reads stay the same; `expire`
/// answers 0 and a second daemon pass writes nothing; the export replays to
/// the same state (batches are `expire` records of their own).
#[test]
fn the_daemons_expiry_writes_what_the_reads_showed_and_replays() {
    let (seed, _) = seeded_rng();
    let h = Harness::new();
    let mut work = workload(seed, PERSONS);
    work.setup(&h, 4);
    for _ in 0..OPERATIONS {
        work.step(&h);
    }
    let year = campaigns().current().year;
    let unfinished = work
        .vouchers
        .iter()
        .filter(|v| {
            matches!(
                v.state,
                VoucherState::Issued | VoucherState::Claimed | VoucherState::Redeemed
            )
        })
        .count() as u64;
    assert!(
        unfinished > 0,
        "seed {seed}: the workload leaves unfinished vouchers"
    );
    let vouchers: Vec<VoucherId> = work.vouchers.iter().map(|v| v.id).collect();
    assert_eq!(h.ledger.years_past_deadline(), Vec::<u16>::new());
    assert_eq!(
        h.ledger.expire_due(year).map_err(|r| r.reason),
        Err(voucherd::error::Reason::CampaignOpen),
        "nothing is written before the deadline"
    );

    h.clock.set(Timestamp(DEADLINE.0 + 1));
    assert_eq!(h.ledger.years_past_deadline(), vec![year]);
    let shown = reads(&h, &vouchers);
    let expired_views = shown
        .0
        .iter()
        .filter(|r| matches!(r, Reply::Voucher(v) if v.state == VoucherState::Expired))
        .count() as u64;
    assert_eq!(
        expired_views, unfinished,
        "seed {seed}: get_voucher past the deadline"
    );

    let (seq_before, _) = h.head();
    let pass = h.ledger.expire_due(year).expect("expiry batches");
    assert_eq!(pass.expired, unfinished, "seed {seed}");
    assert!(pass.batches <= INDEX_SHARDS as u64 && pass.batches > 0);
    assert_eq!(
        h.head().0,
        seq_before + pass.batches,
        "one record per batch"
    );
    assert_eq!(
        reads(&h, &vouchers),
        shown,
        "seed {seed}: the reads did not change"
    );

    assert_eq!(
        h.ok(Role::Bureau, Op::Expire { year }),
        Reply::Expired { expired: 0 }
    );
    assert_eq!(h.ledger.expire_due(year).expect("second pass").expired, 0);

    let reopened = Harness::on(h.journal.clone());
    reopened.clock.set(Timestamp(DEADLINE.0 + 1));
    assert_eq!(
        reads(&reopened, &vouchers),
        shown,
        "seed {seed}: after a restart"
    );

    let (seq, digest) = h.head();
    let campaign = campaigns().current().to_toml();
    let mut export = Vec::new();
    voucherd::admin::offline::export_journal(&*h.journal, &[campaign], &mut export)
        .expect("export");
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .expect("replay runs")
        .expect("replay matches the log");
    assert_eq!(replayed.records, seq);
    assert_eq!(replayed.state_digest, digest);
}

/// The daemon's driver pauses after every batch that wrote, before the next
/// one (D43): as many pauses as batches, each at least
/// `EXPIRE_BATCH_PAUSE_MS`, and exactly one record sealed between two
/// pauses. Counted through the pause it is given, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_expiry_pauses_between_batches() {
    let (seed, _) = seeded_rng();
    let h = Harness::new();
    let mut work = workload(seed, PERSONS);
    work.setup(&h, 4);
    for _ in 0..OPERATIONS / 10 {
        work.step(&h);
    }
    let year = campaigns().current().year;
    h.clock.set(Timestamp(DEADLINE.0 + 1));
    let (seq_before, _) = h.head();
    let seen = std::sync::Mutex::new(Vec::new());
    let pass = voucherd::ledger::expire_year_paced(h.ledger.clone(), year, |pause| {
        seen.lock().unwrap().push((pause, h.head().0));
        async {}
    })
    .await
    .expect("expiry batches");
    let seen = seen.into_inner().unwrap();
    assert!(pass.batches > 1, "seed {seed}: several batches");
    assert_eq!(
        seen.len() as u64,
        pass.batches,
        "seed {seed}: a pause per batch"
    );
    for (k, (pause, seq)) in seen.iter().enumerate() {
        assert!(
            *pause >= std::time::Duration::from_millis(EXPIRE_BATCH_PAUSE_MS),
            "seed {seed}: pause {k} is {pause:?}"
        );
        assert_eq!(
            *seq,
            seq_before + k as u64 + 1,
            "seed {seed}: one batch between pauses"
        );
    }
    let again = voucherd::ledger::expire_year_paced(h.ledger.clone(), year, |_| async {
        panic!("nothing left to write, so no pause")
    })
    .await
    .expect("second pass");
    assert_eq!(again.expired, 0);
}

/// A data folder that ran last year's default campaign opens after its
/// deadline with the next year's (the daemon's restart on 1 December), and
/// seals it: the next campaign opens where the year before ends, not where
/// its own text alone would put it, and that is no difference of rules.
#[test]
fn last_years_ledger_opens_with_the_next_default_campaign() {
    let data = tempfile::tempdir().expect("temporary folder");
    let clock = std::sync::Arc::new(voucherd::domain::time::ManualClock::new(NOW));
    let first = voucherd::domain::campaign::Campaign::default_for(NOW);
    let deadline = first.deadline;
    {
        let opened = voucherd::admin::data_dir::open(data.path(), first.clone(), clock.clone())
            .expect("opens");
        let h = opened.ledger;
        let person = id_number(1);
        let request = Request {
            id: "i-1".into(),
            op: issue(&person, Kind::EmploymentSkills),
        };
        assert!(h.execute(Role::Bureau, &[request])[0].outcome.is_ok());
    }
    clock.set(Timestamp(deadline.0 + 10));
    let next = voucherd::domain::campaign::Campaign::default_for(
        voucherd::domain::time::Clock::now(clock.as_ref()),
    );
    assert_eq!(next.year, first.year + 1);
    let opened = voucherd::admin::data_dir::open(data.path(), next, clock.clone())
        .expect("last year's ledger opens with the next year's default campaign");
    assert_eq!(opened.ledger.years_past_deadline(), vec![first.year]);
}

/// The measurement behind D41: 100,000 unfinished vouchers (a quarter of
/// them redeemed) in a ledger on the real RocksDB store, expired by the
/// daemon's batches; prints the batch count and the time of a full batch
/// (`EXPIRE_BATCH_VOUCHERS_MAX` vouchers, one commit, synced). No timed
/// assertion: the figures go to docs/decisions.md.
#[test]
#[ignore = "measurement: prints a batch's time at 100,000 vouchers"]
fn expiry_batch_time_at_100_000_vouchers() {
    let vouchers: usize = std::env::var("VOUCHERD_EXPIRY_VOUCHERS")
        .map_or(100_000, |text| text.parse().expect("a number"));
    let folder = tempfile::tempdir().expect("temporary folder");
    let disk = Disk::open(folder.path(), "expiry");
    let institution = "5000001";
    let admin = id_number(999_999);
    disk.accept(Role::Bureau, register(institution, "500101", &admin));
    disk.accept(Role::Gateway, authorise(institution, &admin, "op-a"));
    let kinds = [
        Kind::EmploymentSkills,
        Kind::Entrepreneurship,
        Kind::HrServices,
        Kind::Adaptability,
    ];
    let started = Instant::now();
    // Frames of 1,000 requests (one commit wait each): issue all, then claim
    // and redeem every fourth.
    let frame = |role: Role, ops: Vec<Op>| -> Vec<Reply> {
        let requests: Vec<Request> = ops
            .into_iter()
            .map(|op| Request {
                id: disk.fresh_request_id(),
                op,
            })
            .collect();
        disk.ledger
            .execute(role, &requests)
            .into_iter()
            .map(|answer| answer.outcome.expect("accepted"))
            .collect()
    };
    let person = |n: usize| id_number((n / kinds.len()) as u64);
    let mut redeemable = Vec::new();
    for first in (0..vouchers).step_by(1_000) {
        let ns: Vec<usize> = (first..(first + 1_000).min(vouchers)).collect();
        let ops = ns
            .iter()
            .map(|&n| issue(&person(n), kinds[n % kinds.len()]))
            .collect();
        for (n, reply) in ns.into_iter().zip(frame(Role::Bureau, ops)) {
            let Reply::Issued { voucher } = reply else {
                panic!("issue answered {reply:?}")
            };
            if n % 4 == 0 {
                redeemable.push((n, voucher));
            }
        }
    }
    for chunk in redeemable.chunks(1_000) {
        let claims = chunk
            .iter()
            .map(|&(n, voucher)| Op::Claim {
                voucher,
                id_number: person(n),
            })
            .collect();
        frame(Role::Gateway, claims);
        let redeems = chunk
            .iter()
            .map(|&(_, voucher)| redeem(voucher, institution, "op-a"))
            .collect();
        frame(Role::Gateway, redeems);
    }
    eprintln!(
        "{vouchers} vouchers made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    disk.clock.set(Timestamp(DEADLINE.0 + 1));
    let year = campaigns().current().year;
    // Shards hold about vouchers / 256 each: time the first shard's batches.
    let started = Instant::now();
    let first = disk.ledger.expire_shard(year, 0).expect("a shard");
    let shard_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rest: Vec<_> = (1..INDEX_SHARDS)
        .map(|shard| disk.ledger.expire_shard(year, shard).expect("a shard"))
        .collect();
    let all_s = shard_s + started.elapsed().as_secs_f64();
    let expired = first.expired + rest.iter().map(|p| p.expired).sum::<u64>();
    let batches = first.batches + rest.iter().map(|p| p.batches).sum::<u64>();
    assert_eq!(expired, vouchers as u64);
    eprintln!(
        "expired {expired} in {batches} batches (at most {EXPIRE_BATCH_VOUCHERS_MAX} each), \
         {all_s:.2} s in all; shard 0: {} vouchers in {} batch(es), {:.1} ms; \
         {:.1} ms per batch on average, {:.1} µs per voucher",
        first.expired,
        first.batches,
        shard_s * 1e3,
        all_s * 1e3 / batches as f64,
        all_s * 1e6 / expired as f64,
    );
}

//! Durability on the RocksDB store: what was acknowledged is there after the
//! ledger and store are dropped without a shutdown, and after the process is
//! killed mid-flight; retried request ids answer from memory of the first
//! answer. Damage to stored records is refused at start (memory journal).

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;
use strum::VariantArray;
use voucherd::codec;
use voucherd::domain::enums::Kind;
use voucherd::domain::op::{Answer, Op, OpName, Request, Role};
use voucherd::domain::time::ManualClock;
use voucherd::error::Error;
use voucherd::ledger::{Ledger, LedgerConfig};
use voucherd::store::journal::{Journal, MemoryJournal, Table};

/// Operations of the workload before the ledger is dropped.
const OPERATIONS: usize = 400;

/// The changing operations the workload must have seen accepted at least
/// once: every operation but the reads and `expire` (a finished campaign's).
fn changes() -> impl Iterator<Item = OpName> {
    let elsewhere = [
        OpName::Expire,
        OpName::GetVoucher,
        OpName::Stats,
        OpName::AuditHead,
        OpName::AuditRead,
        OpName::ListVouchers,
        OpName::Events,
    ];
    OpName::VARIANTS
        .iter()
        .copied()
        .filter(move |name| !elsewhere.contains(name))
}

fn every_kind_accepted(work: &Workload) -> Option<&'static str> {
    changes()
        .find(|&name| {
            !work
                .sent
                .iter()
                .any(|s| OpName::from(&s.request.op) == name && s.answer.outcome.is_ok())
        })
        .map(<&str>::from)
}

/// Runs at least `operations` random steps, and more (up to four times as
/// many) until every kind of change was accepted at least once.
fn run_workload<D: Drive>(work: &mut Workload, d: &D, operations: usize) {
    let mut steps = 0;
    while steps < operations || (every_kind_accepted(work).is_some() && steps < 4 * operations) {
        work.step(d);
        steps += 1;
    }
    if let Some(name) = every_kind_accepted(work) {
        panic!("the workload never had a {name} accepted in {steps} steps");
    }
}

/// Retries every changing request the workload sent: each gets its first
/// answer back and nothing is applied again.
fn assert_retries_answer_the_same(ledger: &Ledger, work: &Workload) {
    let head = ledger.head();
    let mut retried = 0;
    for sent in work.sent.iter().filter(|s| !s.request.op.is_read()) {
        let answer = ledger
            .execute(sent.role, std::slice::from_ref(&sent.request))
            .remove(0);
        assert_eq!(answer, sent.answer, "retry of {:?}", sent.request);
        retried += 1;
    }
    assert!(retried > 0);
    assert_eq!(ledger.head(), head, "retries apply nothing");
    // The same id with other content is refused, and changes nothing either.
    let first_issue = work
        .sent
        .iter()
        .find(|s| s.request.op.name() == "issue" && s.answer.outcome.is_ok())
        .expect("an issue");
    let other = Request {
        id: first_issue.request.id.clone(),
        op: issue(&id_number(1), Kind::Adaptability),
    };
    let answer = ledger.execute(Role::Bureau, &[other]).remove(0);
    assert_eq!(
        answer.outcome.map_err(|r| r.reason.as_str()),
        Err("request_id_reused")
    );
    assert_eq!(ledger.head(), head);
}

#[test]
fn acknowledged_changes_survive_dropping_the_ledger_without_shutdown() {
    let (seed, _) = seeded_rng();
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(NOW));
    let disk = Disk::open_at(dir.path(), "first", clock.clone()).expect("data folder opens");
    let mut work = workload(seed, 40);
    work.setup(&disk, 4);
    run_workload(&mut work, &disk, OPERATIONS);
    let head = disk.ledger.head();
    assert_eq!(
        head.0,
        1 + work.accepted_changes,
        "the campaign's record, then one audit record per accepted change"
    );
    work.check_views(&disk);

    // No shutdown call: drop every Arc of the ledger and the store.
    drop(disk);

    let disk = Disk::open_at(dir.path(), "second", clock.clone()).expect("data folder reopens");
    assert_eq!(
        disk.ledger.head(),
        head,
        "seq, hash and state digest survive"
    );
    work.check_views(&disk);
    assert_retries_answer_the_same(&disk.ledger, &work);
    let verified = voucherd::admin::offline::verify_journal(&*disk.store)
        .expect("scan")
        .expect("chain verifies");
    assert_eq!((verified.records, verified.head_hash), (head.0, head.1));

    // The chain goes on from where it was.
    let before = disk.ledger.head().0;
    work.apply(&disk, Role::Bureau, issue(&id_number(3), Kind::HrServices));
    assert_eq!(disk.ledger.head().0, before + 1);
    work.check_views(&disk);
}

// ---------------------------------------------------------------------------
// A crash: a child process runs the workload, logs each acknowledged answer to
// a file, and aborts (no destructors, no committer drain) while other threads
// still have commits in flight. The parent reopens the folder and checks that
// everything acknowledged is there.

const CRASH_DIR: &str = "VOUCHERD_CRASH_DIR";
const CRASH_OPERATIONS: usize = 300;
const CRASH_PERSONS: usize = 40;

fn write_frame(out: &mut impl Write, bytes: &[u8]) {
    out.write_all(&(bytes.len() as u32).to_be_bytes())
        .expect("log write");
    out.write_all(bytes).expect("log write");
}

fn read_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut input = std::fs::File::open(path).expect("answers log");
    let mut frames = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if input.read_exact(&mut len).is_err() {
            return frames;
        }
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        input.read_exact(&mut frame).expect("whole frame");
        frames.push(frame);
    }
}

/// Runs in the child process only (see `acknowledged_changes_survive_a_crash`);
/// does nothing in a normal test run.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let seed: u64 = std::env::var("VOUCHERD_SEED")
        .expect("seed")
        .parse()
        .expect("seed");
    let disk = Disk::open(&dir.join("data"), "crash");
    let mut log = std::fs::File::create(dir.join("answers.log")).expect("answers log");
    write_frame(&mut log, &seed.to_be_bytes());

    // Background load on other people and another institution, never logged.
    let admin = id_number(950_000);
    disk.accept(Role::Bureau, register("5999999", "500105", &admin));
    disk.accept(Role::Gateway, authorise("5999999", &admin, "op-bg"));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for t in 0..3u64 {
            let (disk, stop) = (&disk, &stop);
            scope.spawn(move || {
                let person = id_number(500_000 + t);
                let vouchers = disk.claimed_batch(&person, &Kind::ALL[..3]);
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let voucher = vouchers[n % vouchers.len()];
                    disk.send(Role::Gateway, redeem(voucher, "5999999", "op-bg"));
                    disk.send(
                        Role::Gateway,
                        Op::Checkin {
                            voucher,
                            lat: SITE.0,
                            lon: SITE.1,
                        },
                    );
                    disk.send(
                        Role::Gateway,
                        Op::Release {
                            voucher,
                            institution: "5999999".parse().unwrap(),
                            operator: "op-1".parse().unwrap(),
                        },
                    );
                    n += 1;
                }
            });
        }
        let mut work = workload(seed, CRASH_PERSONS);
        work.setup(&disk, 4);
        for _ in 0..CRASH_OPERATIONS {
            work.step(&disk);
        }
        for sent in &work.sent {
            let frame =
                codec::encode_plain(&(sent.role, sent.request.clone(), sent.answer.clone()));
            write_frame(&mut log, &frame);
        }
        write_frame(&mut log, b"end");
        log.flush().expect("log flush");
        // Every answer above was acknowledged; now die with commits in flight.
        std::process::abort();
    });
}

#[test]
fn acknowledged_changes_survive_a_crash() {
    let (seed, _) = seeded_rng();
    let dir = tempfile::tempdir().expect("temp dir");
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "durability::crash_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .env("VOUCHERD_SEED", seed.to_string())
        .output()
        .expect("child runs");
    assert!(
        !child.status.success() && child.status.code().is_none(),
        "the child must die by abort, not exit: {:?}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stderr)
    );
    let frames = read_frames(&dir.path().join("answers.log"));
    assert_eq!(frames[0], seed.to_be_bytes());
    assert_eq!(
        frames.last().map(Vec::as_slice),
        Some(&b"end"[..]),
        "the child logged every answer before dying"
    );
    let mut work = workload(seed, CRASH_PERSONS);
    for frame in &frames[1..frames.len() - 1] {
        let (role, request, answer): (Role, Request, Answer) =
            codec::decode_plain(frame).expect("log frame");
        work.learn(role, &request, &answer);
    }
    assert!(work.sent.len() > CRASH_OPERATIONS / 2);

    let clock = Arc::new(ManualClock::new(NOW));
    let disk = Disk::open_at(&dir.path().join("data"), "after-crash", clock)
        .expect("data folder reopens after a crash");
    let head = disk.ledger.head();
    eprintln!(
        "after the crash: {} records in the chain, {} acknowledged by the logged workload",
        head.0, work.accepted_changes
    );
    assert!(
        head.0 >= work.accepted_changes,
        "at least every acknowledged change is in the chain"
    );
    let verified = voucherd::admin::offline::verify_journal(&*disk.store)
        .expect("scan")
        .expect("chain verifies");
    assert_eq!((verified.records, verified.head_hash), (head.0, head.1));
    work.check_views(&disk);
    assert_retries_answer_the_same(&disk.ledger, &work);

    // The recovered state is exactly what its audit log replays to.
    let campaigns =
        voucherd::ledger::meta::recorded_campaign_texts(&*disk.store).expect("campaigns");
    let mut export = Vec::new();
    voucherd::admin::offline::export_journal(&*disk.store, &campaigns, &mut export)
        .expect("export");
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .expect("replay runs")
        .expect("replay matches");
    assert_eq!(replayed.state_digest, head.2);
}

// ---------------------------------------------------------------------------
// Damage to stored records, on the memory journal (RocksDB compresses and
// checksums its blocks, so flipping a byte on disk is not a practical test).

/// A ledger with vouchers in every state, returned with its journal.
fn populated() -> (Harness, Vec<voucherd::domain::ids::VoucherId>) {
    let h = Harness::new();
    let admin = id_number(900);
    h.institution("5000001", &admin, "op-1");
    let a = h.redeemed(&id_number(1), Kind::EmploymentSkills, "5000001", "op-1");
    h.ok(
        Role::Gateway,
        Op::Checkin {
            voucher: a,
            lat: SITE.0,
            lon: SITE.1,
        },
    );
    let b = h.redeemed(&id_number(1), Kind::HrServices, "5000001", "op-1");
    h.ok(
        Role::Gateway,
        Op::Complete {
            voucher: b,
            institution: "5000001".parse().unwrap(),
            operator: "op-1".parse().unwrap(),
        },
    );
    h.ok(
        Role::Gateway,
        Op::Evaluate {
            voucher: b,
            id_number: id_number(1),
            score: 4,
            comment: None,
        },
    );
    h.ok(
        district("500101"),
        Op::Settle {
            voucher: b,
            amount_fen: 50_000,
        },
    );
    let c = h.claimed(&id_number(2), Kind::Entrepreneurship);
    let d = h.issue(&id_number(2), Kind::Apprenticeship);
    (h, vec![a, b, c, d])
}

fn open_over(journal: &Arc<MemoryJournal>) -> Result<Ledger, Error> {
    let config = LedgerConfig {
        campaigns: campaigns(),
        secret: secret(),
        clock: Arc::new(ManualClock::new(NOW)),
    };
    Ledger::open(config, journal.clone())
}

/// Opens over the journal with one bit flipped in `table`/`key` at `byte`,
/// then flips it back. `None`: open panicked.
fn open_damaged(
    journal: &Arc<MemoryJournal>,
    table: Table,
    key: &[u8],
    byte: usize,
) -> Option<Result<Ledger, Error>> {
    journal.corrupt(table, key, byte);
    let opened = catch_unwind(AssertUnwindSafe(|| open_over(journal))).ok();
    journal.corrupt(table, key, byte);
    opened
}

fn stored(journal: &MemoryJournal, table: Table, key: &[u8]) -> Vec<u8> {
    journal.get(table, key).expect("get").expect("stored")
}

#[test]
fn open_refuses_a_damaged_voucher_record() {
    let (h, vouchers) = populated();
    let head = h.head();
    for voucher in vouchers {
        let key = voucher.0.to_be_bytes();
        // The version byte and the voucher id (one varint byte for small ids).
        for byte in [0, 1] {
            match open_damaged(&h.journal, Table::Vouchers, &key, byte) {
                Some(Err(Error::Corrupt(why))) => eprintln!("{voucher} byte {byte}: {why}"),
                Some(Err(other)) => {
                    panic!("{voucher} byte {byte}: not reported as corrupt: {other}")
                }
                Some(Ok(_)) => panic!("{voucher} byte {byte}: damage not noticed"),
                None => panic!("{voucher} byte {byte}: open panicked"),
            }
        }
        // No flip anywhere in the record may crash the start or go unnoticed.
        let len = stored(&h.journal, Table::Vouchers, &key).len();
        let mut unnoticed = Vec::new();
        for byte in 0..len {
            match open_damaged(&h.journal, Table::Vouchers, &key, byte) {
                Some(Err(Error::Corrupt(_))) => {}
                Some(Err(other)) => {
                    panic!("{voucher} byte {byte}: not reported as corrupt: {other}")
                }
                Some(Ok(_)) => unnoticed.push(byte),
                None => panic!("{voucher} byte {byte}: open panicked on a damaged record"),
            }
        }
        // The record checks miss some flips; the whole-state digest stored
        // with every commit catches the rest.
        assert!(
            unnoticed.is_empty(),
            "{voucher}: {} of {len} single-bit flips go unnoticed at open: {unnoticed:?}",
            unnoticed.len()
        );
    }
    assert_eq!(
        Harness::on(h.journal.clone()).head(),
        head,
        "undamaged again, it opens to the same state"
    );
}

#[test]
fn open_refuses_a_damaged_counter_or_person_record() {
    let (h, _) = populated();
    let mut counters = Vec::new();
    h.journal
        .scan(Table::Counters, &mut |key, value| {
            counters.push((key.to_vec(), value.len()));
            Ok(())
        })
        .expect("scan");
    assert!(
        counters.len() >= 5,
        "issued, claimed, used, used with check-in, registered, ..."
    );
    for (key, len) in &counters {
        for byte in 0..*len {
            match open_damaged(&h.journal, Table::Counters, key, byte) {
                Some(Err(Error::Corrupt(why))) => assert!(why.contains("counter"), "{why}"),
                Some(Err(other)) => panic!("counter byte {byte}: not reported as corrupt: {other}"),
                Some(Ok(_)) => panic!("counter {key:?} byte {byte}: damage not noticed"),
                None => panic!("counter byte {byte}: open panicked"),
            }
        }
    }
    // A person's use count (the byte after the version byte) must match their vouchers.
    let mut persons = Vec::new();
    h.journal
        .scan(Table::Persons, &mut |key, _| {
            persons.push(key.to_vec());
            Ok(())
        })
        .expect("scan");
    assert_eq!(persons.len(), 2);
    for key in &persons {
        for byte in [0, 1] {
            assert!(
                matches!(
                    open_damaged(&h.journal, Table::Persons, key, byte),
                    Some(Err(Error::Corrupt(_)))
                ),
                "person byte {byte}: damage not reported as corrupt"
            );
        }
    }
    assert!(open_over(&h.journal).is_ok());
}

#[test]
fn verify_names_the_first_damaged_audit_record() {
    let (h, _) = populated();
    let (seq, _) = h.head();
    let verified = voucherd::admin::offline::verify_journal(&*h.journal)
        .expect("scan")
        .expect("chain verifies");
    assert_eq!(verified.records, seq);
    for n in 1..=seq {
        let key = n.to_be_bytes();
        let len = stored(&h.journal, Table::Audit, &key).len();
        for byte in [0, 1, len / 2, len - 33, len - 32, len - 1] {
            h.journal.corrupt(Table::Audit, &key, byte);
            let verdict = voucherd::admin::offline::verify_journal(&*h.journal).expect("scan");
            h.journal.corrupt(Table::Audit, &key, byte);
            let why = verdict.expect_err("damage must break the chain");
            assert!(
                why.starts_with(&format!("record {n}:")),
                "record {n} byte {byte}: {why}"
            );
        }
    }
    // The last record is also checked when the ledger opens.
    let last = seq.to_be_bytes();
    let len = stored(&h.journal, Table::Audit, &last).len();
    for byte in [0, len / 2, len - 1] {
        assert!(
            matches!(
                open_damaged(&h.journal, Table::Audit, &last, byte),
                Some(Err(Error::Corrupt(_)))
            ),
            "last audit record byte {byte}"
        );
    }
    assert!(voucherd::admin::offline::verify_journal(&*h.journal)
        .expect("scan")
        .is_ok());
}

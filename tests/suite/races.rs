//! Concurrency: threads released together by a barrier race for the same
//! person's last uses, the same voucher, the same kind and the same request
//! id; a mixed race churns redeem/release/check-in while stats are read.
//! Each race runs many rounds; the printed seed (`VOUCHERD_SEED` to rerun)
//! fixes the setup and the thread start order. The same-voucher, last-uses
//! and request-id races also run on the RocksDB store (group commit).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;

use crate::common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use voucherd::domain::enums::{Kind, VoucherState};
use voucherd::domain::ids::VoucherId;
use voucherd::domain::op::{Answer, Op, Reply, Request, Role};
use voucherd::error::Refusal;

/// Rounds of each race on the memory journal (`VOUCHERD_ROUNDS` overrides;
/// `make soak` runs 300).
const ROUNDS: u64 = 100;
/// Rounds of each race on RocksDB, where every round waits for synced writes.
const DISK_ROUNDS: u64 = 30;
/// Threads racing in each round.
const THREADS: usize = 10;

fn rounds(default: u64) -> u64 {
    std::env::var("VOUCHERD_ROUNDS").map_or(default, |text| {
        text.parse().expect("VOUCHERD_ROUNDS is a number")
    })
}

type Outcome = Result<Reply, Refusal>;

/// Runs each job on its own thread; all start together. Returns the outcomes in job order.
fn race<D: Drive>(d: &D, jobs: &[(Role, Op)]) -> Vec<Outcome> {
    let barrier = Barrier::new(jobs.len());
    let barrier = &barrier;
    thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(role, op)| {
                scope.spawn(move || {
                    let request = Request {
                        id: d.fresh_request_id(),
                        op: op.clone(),
                    };
                    barrier.wait();
                    d.ledger().execute(*role, &[request]).remove(0).outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("racer panicked"))
            .collect()
    })
}

fn reason(outcome: &Outcome) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(refusal) => refusal.reason.as_str(),
    }
}

fn used_in(d: &impl Drive, district: &str) -> u64 {
    let stats = d.city_stats();
    stats
        .districts
        .iter()
        .find(|s| s.code.to_string() == district)
        .expect("district in stats")
        .used
}

/// An institution in 500101 with `operators` authorised operators, unique per round.
fn institution_for_round<D: Drive>(d: &D, round: u64, operators: usize) -> (String, Vec<String>) {
    let code = format!("{:07}", 5_000_000 + round);
    let admin = id_number(900_000 + round);
    d.accept(Role::Bureau, register(&code, "500101", &admin));
    let names: Vec<String> = (0..operators).map(|i| format!("op-{i}")).collect();
    let requests: Vec<Request> = names
        .iter()
        .map(|operator| Request {
            id: d.fresh_request_id(),
            op: authorise(&code, &admin, operator),
        })
        .collect();
    for answer in d.ledger().execute(Role::Gateway, &requests) {
        assert!(
            answer.outcome.is_ok(),
            "authorise answered {:?}",
            answer.outcome
        );
    }
    for op in kit_classes(&code, &names[0]) {
        d.accept(Role::Gateway, op);
    }
    (code, names)
}

/// A person who used 1 of 3 and holds ten more claimed vouchers; ten threads
/// redeem the ten at once: exactly two get through.
fn two_uses_left_round<D: Drive>(d: &D, rng: &mut StdRng, round: u64) {
    let (code, operators) = institution_for_round(d, round, 3);
    let person = id_number(round);
    let mut kinds = Kind::ALL.to_vec();
    kinds.shuffle(rng);
    let vouchers = d.claimed_batch(&person, &kinds);
    let first = vouchers[rng.gen_range(0..vouchers.len())];
    assert_eq!(
        d.accept(
            Role::Gateway,
            redeem_for(d.ledger(), first, &code, &operators[0])
        ),
        Reply::Redeemed { uses_this_year: 1 }
    );
    let used_before = used_in(d, "500101");
    let mut racing: Vec<VoucherId> = vouchers.iter().copied().filter(|v| *v != first).collect();
    racing.shuffle(rng);
    assert!(racing.len() >= 8);
    let jobs: Vec<(Role, Op)> = racing
        .iter()
        .map(|&voucher| {
            (
                Role::Gateway,
                redeem_for(
                    d.ledger(),
                    voucher,
                    &code,
                    operators.choose(rng).expect("operators"),
                ),
            )
        })
        .collect();
    let outcomes = race(d, &jobs);
    let context = format!(
        "round {round}: {:?}",
        outcomes.iter().map(reason).collect::<Vec<_>>()
    );
    let mut uses: Vec<u8> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Ok(Reply::Redeemed { uses_this_year }) => Some(*uses_this_year),
            Ok(other) => panic!("redeem answered {other:?}"),
            Err(_) => None,
        })
        .collect();
    uses.sort_unstable();
    assert_eq!(uses, [2, 3], "{context}");
    assert!(
        outcomes
            .iter()
            .filter(|o| o.is_err())
            .all(|o| reason(o) == "use_limit_reached"),
        "{context}"
    );
    for (voucher, outcome) in racing.iter().zip(&outcomes) {
        let expected = if outcome.is_ok() {
            VoucherState::Redeemed
        } else {
            VoucherState::Claimed
        };
        assert_eq!(d.view(*voucher).state, expected, "{context}: {voucher}");
    }
    let redeemed = vouchers
        .iter()
        .filter(|v| d.view(**v).state == VoucherState::Redeemed)
        .count();
    assert_eq!(redeemed, 3, "{context}");
    assert_eq!(
        used_in(d, "500101"),
        used_before + 2,
        "{context}: stats used"
    );
    let loser = racing
        .iter()
        .zip(&outcomes)
        .find(|(_, o)| o.is_err())
        .expect("a loser")
        .0;
    assert_eq!(
        d.outcome(
            Role::Gateway,
            redeem_for(d.ledger(), *loser, &code, &operators[0])
        ),
        "use_limit_reached",
        "{context}"
    );
}

/// Ten threads redeem one voucher at once: exactly one gets through.
fn same_voucher_round<D: Drive>(d: &D, rng: &mut StdRng, round: u64) {
    let (code, operators) = institution_for_round(d, round, 4);
    let person = id_number(round);
    let kind = *Kind::ALL.choose(rng).expect("kinds");
    let voucher = d.claimed_batch(&person, &[kind])[0];
    let used_before = used_in(d, "500101");
    let jobs: Vec<(Role, Op)> = (0..THREADS)
        .map(|_| {
            (
                Role::Gateway,
                redeem_for(
                    d.ledger(),
                    voucher,
                    &code,
                    operators.choose(rng).expect("operators"),
                ),
            )
        })
        .collect();
    let outcomes = race(d, &jobs);
    let context = format!(
        "round {round}: {:?}",
        outcomes.iter().map(reason).collect::<Vec<_>>()
    );
    let winners: Vec<&Outcome> = outcomes.iter().filter(|o| o.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{context}");
    assert_eq!(
        winners[0],
        &Ok(Reply::Redeemed { uses_this_year: 1 }),
        "{context}"
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.is_err())
            .all(|o| reason(o) == "already_redeemed"),
        "{context}"
    );
    let view = d.view(voucher);
    assert_eq!(view.state, VoucherState::Redeemed, "{context}");
    assert_eq!(
        view.institution.map(|c| c.to_string()),
        Some(code),
        "{context}"
    );
    assert_eq!(
        used_in(d, "500101"),
        used_before + 1,
        "{context}: stats used"
    );
}

/// Ten threads send one request id with one content at once: it is applied
/// once (one audit record) and every thread gets the same answer.
fn same_request_id_round<D: Drive>(d: &D, rng: &mut StdRng, round: u64) {
    let (code, operators) = institution_for_round(d, round, 1);
    let person = id_number(round);
    let kind = *Kind::ALL.choose(rng).expect("kinds");
    let voucher = d.claimed_batch(&person, &[kind])[0];
    let (seq_before, _, _) = d.ledger().head();
    let request = Request {
        id: format!("retry-{round}"),
        op: redeem_for(d.ledger(), voucher, &code, &operators[0]),
    };
    let barrier = Barrier::new(THREADS);
    let answers: Vec<Answer> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (request, barrier) = (&request, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    d.ledger()
                        .execute(Role::Gateway, std::slice::from_ref(request))
                        .remove(0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("racer panicked"))
            .collect()
    });
    for answer in &answers {
        assert_eq!(
            answer, &answers[0],
            "round {round}: every retry gets the first answer"
        );
    }
    assert_eq!(
        answers[0].outcome,
        Ok(Reply::Redeemed { uses_this_year: 1 }),
        "round {round}"
    );
    assert_eq!(
        d.ledger().head().0,
        seq_before + 1,
        "round {round}: applied once"
    );
    let reused = Request {
        id: request.id.clone(),
        op: redeem_for(d.ledger(), voucher, &code, "op-other"),
    };
    let answer = d.ledger().execute(Role::Gateway, &[reused]).remove(0);
    assert_eq!(
        reason(&answer.outcome),
        "request_id_reused",
        "round {round}"
    );
}

#[test]
fn last_two_uses_go_to_exactly_two_racers() {
    let (_, mut rng) = seeded_rng();
    for round in 0..rounds(ROUNDS) {
        two_uses_left_round(&Harness::new(), &mut rng, round);
    }
}

#[test]
fn one_voucher_is_redeemed_once_under_a_race() {
    let (_, mut rng) = seeded_rng();
    for round in 0..rounds(ROUNDS) {
        same_voucher_round(&Harness::new(), &mut rng, round);
    }
}

#[test]
fn a_request_id_raced_by_many_threads_is_applied_once() {
    let (_, mut rng) = seeded_rng();
    for round in 0..rounds(ROUNDS) {
        same_request_id_round(&Harness::new(), &mut rng, round);
    }
}

#[test]
fn one_claim_per_kind_under_a_race() {
    let (_, mut rng) = seeded_rng();
    for round in 0..rounds(ROUNDS) {
        let h = Harness::new();
        let person = id_number(round);
        let kind = *Kind::ALL.choose(&mut rng).expect("kinds");
        let vouchers = [h.issue(&person, kind), h.issue(&person, kind)];
        let mut jobs: Vec<(Role, Op)> = (0..THREADS)
            .map(|i| {
                (
                    Role::Gateway,
                    Op::Claim {
                        voucher: vouchers[i % 2],
                        id_number: person.clone(),
                    },
                )
            })
            .collect();
        jobs.shuffle(&mut rng);
        let outcomes = race(&h, &jobs);
        let context = format!(
            "round {round}: {:?}",
            outcomes.iter().map(reason).collect::<Vec<_>>()
        );
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{context}"
        );
        assert!(
            outcomes
                .iter()
                .filter(|o| o.is_err())
                .all(|o| reason(o) == "kind_already_claimed"),
            "{context}"
        );
        let states: Vec<VoucherState> = vouchers.iter().map(|v| h.view(*v).state).collect();
        let mut sorted = states.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [VoucherState::Issued, VoucherState::Claimed],
            "{context}"
        );
        let winner = jobs
            .iter()
            .zip(&outcomes)
            .find(|(_, o)| o.is_ok())
            .expect("a winner")
            .0;
        let Op::Claim { voucher, .. } = &winner.1 else {
            unreachable!()
        };
        assert_eq!(h.view(*voucher).state, VoucherState::Claimed, "{context}");
        let stats = h.city_stats();
        assert_eq!((stats.city.issued, stats.city.claimed), (2, 1), "{context}");
    }
}

/// Persons, institutions (one per district) and vouchers of the mixed race.
const MIXED_PERSONS: u64 = 6;
const MIXED_VOUCHERS_EACH: usize = 5;
const MIXED_DISTRICTS: [&str; 3] = ["500101", "500102", "LJXQ"];
const MIXED_WORKERS: usize = 8;
const MIXED_OPS_EACH: usize = 30;

#[test]
fn mixed_churn_keeps_limits_and_figures() {
    let (_, mut rng) = seeded_rng();
    for round in 0..rounds(ROUNDS) {
        mixed_round(&mut rng, round);
    }
}

fn mixed_round(rng: &mut StdRng, round: u64) {
    let h = Harness::new();
    let codes: Vec<String> = (0..MIXED_DISTRICTS.len())
        .map(|i| format!("{:07}", 5_000_000 + i))
        .collect();
    for (i, (code, district)) in codes.iter().zip(MIXED_DISTRICTS).enumerate() {
        let admin = id_number(900 + i as u64);
        h.ok(Role::Bureau, register(code, district, &admin));
        h.ok(Role::Gateway, authorise(code, &admin, "op-1"));
        for op in kit_classes(code, "op-1") {
            h.ok(Role::Gateway, op);
        }
    }
    let mut vouchers: Vec<(VoucherId, u64)> = Vec::new();
    for person in 0..MIXED_PERSONS {
        let mut kinds = Kind::ALL.to_vec();
        kinds.shuffle(rng);
        for voucher in h.claimed_batch(&id_number(person), &kinds[..MIXED_VOUCHERS_EACH]) {
            vouchers.push((voucher, person));
        }
    }
    let total = vouchers.len() as u64;
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(MIXED_WORKERS + 1);
    let seeds: Vec<u64> = (0..MIXED_WORKERS).map(|_| rng.gen()).collect();
    let (h, vouchers, codes, done, barrier) = (&h, &vouchers, &codes, &done, &barrier);
    let (worker_uses, snapshots) = thread::scope(|scope| {
        let stats = scope.spawn(move || {
            barrier.wait();
            let mut snapshots = 0;
            while !done.load(Ordering::SeqCst) || snapshots == 0 {
                let stats = h.city_stats();
                let city = &stats.city;
                assert!(
                    city.used <= 3 * MIXED_PERSONS,
                    "round {round}: used {} over the limit",
                    city.used
                );
                assert_eq!((city.issued, city.claimed), (total, total), "round {round}");
                assert_eq!(
                    city.used,
                    stats.districts.iter().map(|d| d.used).sum::<u64>(),
                    "round {round}"
                );
                assert!(
                    stats.coverage.used_with_checkin <= city.used,
                    "round {round}"
                );
                assert!(
                    stats.coverage.institutions_used <= codes.len() as u64,
                    "round {round}"
                );
                snapshots += 1;
                thread::yield_now();
            }
            snapshots
        });
        let workers: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let mut uses = Vec::new();
                    barrier.wait();
                    for _ in 0..MIXED_OPS_EACH {
                        let (voucher, _) = *vouchers.choose(&mut rng).expect("vouchers");
                        let code = codes.choose(&mut rng).expect("codes");
                        match rng.gen_range(0..10) {
                            0..=3 => {
                                let answer = h.run(
                                    Role::Gateway,
                                    redeem_for(&h.ledger, voucher, code, "op-1"),
                                );
                                if let Ok(Reply::Redeemed { uses_this_year }) = answer.outcome {
                                    uses.push(uses_this_year);
                                }
                            }
                            4..=6 => {
                                // Mostly at the institution it is redeemed at (as read just now).
                                let at = match h.view(voucher).institution {
                                    Some(at) if rng.gen_bool(0.8) => at,
                                    _ => code.parse().expect("code"),
                                };
                                h.run(
                                    Role::Gateway,
                                    Op::Release {
                                        voucher,
                                        institution: at,
                                        operator: "op-1".parse().unwrap(),
                                    },
                                );
                            }
                            _ => {
                                let (lat, lon) = if rng.gen_bool(0.9) { SITE } else { FAR };
                                h.run(Role::Gateway, Op::Checkin { voucher, lat, lon });
                            }
                        }
                    }
                    uses
                })
            })
            .collect();
        let uses: Vec<u8> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker panicked"))
            .collect();
        done.store(true, Ordering::SeqCst);
        (uses, stats.join().expect("stats reader panicked"))
    });
    assert!(snapshots > 0);
    assert!(
        worker_uses.iter().all(|&u| (1..=3).contains(&u)),
        "round {round}: uses answered {worker_uses:?}"
    );

    // Recount from get_voucher and compare with stats.
    let district_of: HashMap<String, &str> = codes.iter().cloned().zip(MIXED_DISTRICTS).collect();
    let mut per_person: HashMap<u64, u64> = HashMap::new();
    let mut used: HashMap<&str, u64> = HashMap::new();
    let mut with_checkin = 0;
    let mut institutions_used = BTreeSet::new();
    for (voucher, person) in vouchers {
        let view = h.view(*voucher);
        match view.state {
            VoucherState::Redeemed => {
                *per_person.entry(*person).or_default() += 1;
                let code = view
                    .institution
                    .expect("a redeemed voucher has its institution")
                    .to_string();
                *used.entry(district_of[&code]).or_default() += 1;
                with_checkin += u64::from(view.checkins > 0);
                institutions_used.insert(code);
            }
            VoucherState::Claimed => {
                assert_eq!(
                    (view.institution, view.checkins),
                    (None, 0),
                    "round {round}: {voucher}"
                );
            }
            other => panic!("round {round}: {voucher} is {other:?}"),
        }
    }
    assert!(
        per_person.values().all(|&n| n <= 3),
        "round {round}: uses per person {per_person:?}"
    );
    let stats = h.city_stats();
    for district in &stats.districts {
        let expected = used.get(district.code.as_str()).copied().unwrap_or(0);
        assert_eq!(
            district.used, expected,
            "round {round}: used in {}",
            district.code
        );
    }
    assert_eq!(
        stats.city.used,
        per_person.values().sum::<u64>(),
        "round {round}"
    );
    assert_eq!(
        (stats.city.issued, stats.city.claimed),
        (total, total),
        "round {round}"
    );
    assert_eq!(
        stats.coverage.used_with_checkin, with_checkin,
        "round {round}"
    );
    assert_eq!(
        stats.coverage.institutions_used,
        institutions_used.len() as u64,
        "round {round}"
    );
    assert_eq!(
        stats.coverage.districts_used,
        used.len() as u64,
        "round {round}"
    );

    // The persons' use counts agree with their vouchers, and so do the stored
    // figures: recovery recounts both from the vouchers and refuses to open if not.
    let reopened = Harness::on(h.journal.clone());
    assert_eq!(
        reopened.head(),
        h.head(),
        "round {round}: recovery rebuilds the same state"
    );
    for person in 0..MIXED_PERSONS {
        let redeemed = per_person.get(&person).copied().unwrap_or(0);
        let claimed: Vec<VoucherId> = vouchers
            .iter()
            .filter(|(v, p)| *p == person && h.view(*v).state == VoucherState::Claimed)
            .map(|(v, _)| *v)
            .collect();
        // Redeeming the claimed ones one by one stops exactly at the third use.
        let mut accepted = 0;
        for voucher in claimed {
            let request = Request {
                id: format!("after-reopen-{voucher}"),
                op: redeem_for(&h.ledger, voucher, &codes[0], "op-1"),
            };
            match reopened
                .ledger
                .execute(Role::Gateway, &[request])
                .remove(0)
                .outcome
            {
                Ok(Reply::Redeemed { uses_this_year }) => {
                    accepted += 1;
                    assert_eq!(
                        u64::from(uses_this_year),
                        redeemed + accepted,
                        "round {round}"
                    );
                }
                Ok(other) => panic!("round {round}: redeem answered {other:?}"),
                Err(refusal) => {
                    assert_eq!(
                        refusal.reason.as_str(),
                        "use_limit_reached",
                        "round {round}"
                    );
                    assert_eq!(
                        redeemed + accepted,
                        3,
                        "round {round}: refused before the third use"
                    );
                }
            }
        }
    }

    // And the audit log replays to the same state (every tenth round: it is the slow part).
    if round % 10 != 9 {
        return;
    }
    // And the audit log replays to the same state.
    let mut export = Vec::new();
    let campaign = campaigns().current().to_toml();
    voucherd::admin::offline::export_journal(&*h.journal, &[campaign], &mut export)
        .expect("export");
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .expect("replay runs")
        .expect("replay matches");
    assert_eq!(
        replayed.state_digest,
        reopened.head().1,
        "round {round}: replayed digest"
    );
}

/// Runs `round` `DISK_ROUNDS` times on a RocksDB ledger, then checks that
/// recovery after the races rebuilds the same head.
fn race_on_rocksdb_then_reopen(name: &str, round: fn(&Disk, &mut StdRng, u64)) {
    let (_, mut rng) = seeded_rng();
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = Disk::open(dir.path(), name);
    for n in 0..rounds(DISK_ROUNDS) {
        round(&disk, &mut rng, n);
    }
    let head = disk.ledger.head();
    drop(disk);
    let reopened = Disk::open(dir.path(), &format!("{name}-reopened"));
    assert_eq!(
        reopened.ledger.head(),
        head,
        "recovery after the races rebuilds the same head"
    );
}

#[test]
fn last_two_uses_race_on_rocksdb() {
    race_on_rocksdb_then_reopen("two-uses", two_uses_left_round);
}

#[test]
fn one_voucher_race_on_rocksdb() {
    race_on_rocksdb_then_reopen("same-voucher", same_voucher_round);
}

#[test]
fn request_id_race_on_rocksdb() {
    let (_, mut rng) = seeded_rng();
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = Disk::open(dir.path(), "request-id");
    for round in 0..rounds(DISK_ROUNDS) {
        same_request_id_round(&disk, &mut rng, round);
    }
}

thread_local! {
    /// Set by a thread whose next clock read must wait at the gate.
    static GATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A manual clock that can hold one thread right after it read the time, as a
/// scheduler may preempt it between reading the clock and taking its locks.
#[derive(Default)]
struct GateClock {
    now: std::sync::atomic::AtomicI64,
    /// (a gated thread has read the time, the gate is open)
    state: std::sync::Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
}

impl voucherd::domain::time::Clock for GateClock {
    fn now(&self) -> voucherd::domain::time::Timestamp {
        let now = voucherd::domain::time::Timestamp(self.now.load(Ordering::SeqCst));
        if GATED.with(|gated| gated.replace(false)) {
            let mut state = self.state.lock().expect("gate");
            state.0 = true;
            self.changed.notify_all();
            while !state.1 {
                state = self.changed.wait(state).expect("gate");
            }
        }
        now
    }
}

impl GateClock {
    fn wait_until_read(&self) {
        let mut state = self.state.lock().expect("gate");
        while !state.0 {
            state = self.changed.wait(state).expect("gate");
        }
    }

    fn open(&self) {
        self.state.lock().expect("gate").1 = true;
        self.changed.notify_all();
    }
}

/// An `issue` that read the clock at the last second of the campaign but
/// reaches the ledger after `expire` ran must not leave an unexpired voucher
/// of the closed year behind: a second `expire` answers 0 (API.md).
#[test]
fn an_issue_racing_expire_at_the_deadline_leaves_nothing_unexpired() {
    use std::sync::Arc;
    use voucherd::ledger::{Ledger, LedgerConfig};

    let clock = Arc::new(GateClock::default());
    clock.now.store(NOW.0, Ordering::SeqCst);
    let config = LedgerConfig {
        campaigns: campaigns(),
        secret: secret(),
        clock: clock.clone(),
    };
    let journal = Arc::new(voucherd::store::journal::MemoryJournal::default());
    let ledger = Ledger::open(config, journal.clone()).expect("ledger opens");
    let run = |id: &str, role: Role, op: Op| {
        let request = Request { id: id.into(), op };
        ledger.execute(role, &[request]).remove(0).outcome
    };
    assert!(run("i1", Role::Bureau, issue(&id_number(1), Kind::HrServices)).is_ok());
    let year = campaigns().current().year;

    clock.now.store(DEADLINE.0, Ordering::SeqCst);
    let (late_issue, first_expire) = thread::scope(|scope| {
        let issuing = scope.spawn(|| {
            GATED.with(|gated| gated.set(true));
            run("i2", Role::Bureau, issue(&id_number(2), Kind::HrServices))
        });
        // The issuing thread has read 23:59:59; the deadline passes and expire runs.
        clock.wait_until_read();
        clock.now.store(DEADLINE.0 + 1, Ordering::SeqCst);
        let expired = run("e1", Role::Bureau, Op::Expire { year });
        clock.open();
        (issuing.join().expect("issuing thread"), expired)
    });
    assert_eq!(first_expire, Ok(Reply::Expired { expired: 1 }));
    if let Ok(Reply::Issued { voucher }) = &late_issue {
        let Ok(Reply::Voucher(view)) =
            run("g", Role::Auditor, Op::GetVoucher { voucher: *voucher })
        else {
            panic!("the issued voucher reads back")
        };
        assert_ne!(
            view.state,
            VoucherState::Issued,
            "a {year} voucher was issued after the {year} campaign was expired (issue answered {late_issue:?})"
        );
    }
    let second_expire = run("e2", Role::Bureau, Op::Expire { year });
    assert_eq!(
        second_expire,
        Ok(Reply::Expired { expired: 0 }),
        "a second expire must find nothing left (the racing issue answered {late_issue:?})"
    );
}

/// A check-in that read the clock at 23:59:59 but reaches the ledger after
/// one at 00:00:01 must not reopen the new day's session: a further check-in
/// that day is `duplicate_checkin` (DOMAIN.md: one check-in per voucher per session).
#[test]
fn a_checkin_racing_midnight_does_not_reopen_the_new_session() {
    use std::sync::Arc;
    use voucherd::ledger::{Ledger, LedgerConfig};

    /// 2026-11-29T23:59:59+08:00 and the next second.
    const LAST_SECOND: i64 = 1_795_967_999;
    const MIDNIGHT: i64 = LAST_SECOND + 1;

    let clock = Arc::new(GateClock::default());
    clock.now.store(NOW.0, Ordering::SeqCst);
    let config = LedgerConfig {
        campaigns: campaigns(),
        secret: secret(),
        clock: clock.clone(),
    };
    let ledger = Ledger::open(
        config,
        Arc::new(voucherd::store::journal::MemoryJournal::default()),
    )
    .expect("ledger opens");
    let next = std::sync::atomic::AtomicU64::new(0);
    let run = |role: Role, op: Op| {
        let id = format!("r{}", next.fetch_add(1, Ordering::SeqCst));
        ledger
            .execute(role, &[Request { id, op }])
            .remove(0)
            .outcome
    };
    let admin = id_number(900);
    let person = id_number(1);
    assert!(run(Role::Bureau, register("5000001", "500101", &admin)).is_ok());
    assert!(run(Role::Gateway, authorise("5000001", &admin, "op-1")).is_ok());
    for op in kit_classes("5000001", "op-1") {
        assert!(run(Role::Gateway, op).is_ok());
    }
    let Ok(Reply::Issued { voucher }) = run(Role::Bureau, issue(&person, Kind::HrServices)) else {
        panic!("issue")
    };
    let claim = Op::Claim {
        voucher,
        id_number: person.clone(),
    };
    assert!(run(Role::Gateway, claim).is_ok());
    let class = kit_class(Kind::HrServices);
    assert!(run(Role::Gateway, redeem_in(voucher, "5000001", "op-1", &class)).is_ok());
    let checkin = Op::Checkin {
        voucher,
        lat: SITE.0,
        lon: SITE.1,
    };

    clock.now.store(LAST_SECOND, Ordering::SeqCst);
    let (late, after_midnight) = thread::scope(|scope| {
        let late = scope.spawn(|| {
            GATED.with(|gated| gated.set(true));
            run(Role::Gateway, checkin.clone())
        });
        clock.wait_until_read();
        clock.now.store(MIDNIGHT + 1, Ordering::SeqCst);
        let after_midnight = run(Role::Gateway, checkin.clone());
        clock.open();
        (late.join().expect("late check-in thread"), after_midnight)
    });
    assert_eq!(
        after_midnight,
        Ok(Reply::CheckedIn {
            session: "2026-11-30".into(),
            checkins: 1
        })
    );
    clock.now.store(MIDNIGHT + 2, Ordering::SeqCst);
    let again = run(Role::Gateway, checkin.clone());
    assert_eq!(
        again.as_ref().map_err(|r| r.reason.as_str()),
        Err("duplicate_checkin"),
        "a second check-in in the 2026-11-30 session was accepted (the late 23:59:59 check-in answered {late:?})"
    );
}

//! Request ids belong to the caller's certificate, are remembered for a
//! retention period and then pruned in bounded passes; a request refused
//! before the ledger looked at it is never remembered (API.md, Envelope).

use crate::common::*;
use voucherd::domain::enums::Kind;
use voucherd::domain::ids::VoucherId;
use voucherd::domain::op::{Answer, Caller, Op, Reply, Request, Role};
use voucherd::store::journal::{Journal, Table};

const HOUR_S: i64 = 3600;

fn send(h: &Harness, caller: Caller, id: &str, op: Op) -> Answer {
    let request = Request {
        id: id.to_owned(),
        op,
    };
    h.ledger.execute(caller, &[request]).remove(0)
}

fn issued(answer: &Answer) -> VoucherId {
    match &answer.outcome {
        Ok(Reply::Issued { voucher }) => *voucher,
        other => panic!("issue answered {other:?}"),
    }
}

fn reason(answer: &Answer) -> &'static str {
    match &answer.outcome {
        Err(refusal) => refusal.reason.as_str(),
        Ok(reply) => panic!("accepted: {reply:?}"),
    }
}

fn remembered_rows(h: &Harness) -> usize {
    let mut rows = 0;
    h.journal
        .scan(Table::Requests, &mut |_, _| {
            rows += 1;
            Ok(())
        })
        .unwrap();
    rows
}

/// Two bureau certificates send `issue` under the same id: both are
/// applied (two vouchers), and each one's retry gets its own first answer.
#[test]
fn two_certificates_reuse_an_id_and_both_are_applied() {
    let h = Harness::new();
    let first = Caller::new(Role::Bureau, [1; 32]);
    let second = Caller::new(Role::Bureau, [2; 32]);
    let person = id_number(1);
    let a = issued(&send(
        &h,
        first,
        "r-1",
        issue(&person, Kind::EmploymentSkills),
    ));
    let b = issued(&send(&h, second, "r-1", issue(&person, Kind::HrServices)));
    assert_ne!(a, b, "the second certificate's request was applied too");
    assert_eq!(
        issued(&send(
            &h,
            first,
            "r-1",
            issue(&person, Kind::EmploymentSkills)
        )),
        a
    );
    assert_eq!(
        issued(&send(&h, second, "r-1", issue(&person, Kind::HrServices))),
        b
    );
    assert_eq!(h.head().0, 2, "two changes, no more");
    // Within one certificate an id still means one request.
    assert_eq!(
        reason(&send(&h, first, "r-1", issue(&person, Kind::HrServices))),
        "request_id_reused"
    );
}

/// An id is kept through the retention, forgotten by a pruning pass after
/// it, and then the same id is a new request (applied again).
#[test]
fn an_id_older_than_the_retention_is_pruned_and_may_be_reused() {
    let h = Harness::new();
    let bureau = Caller::new(Role::Bureau, [3; 32]);
    let person = id_number(2);
    let op = issue(&person, Kind::EmploymentSkills);
    let first = issued(&send(&h, bureau, "daily-1", op.clone()));
    h.clock.advance_s(HOUR_S - 1);
    let kept = h.ledger.prune_requests(HOUR_S).unwrap();
    assert_eq!((kept.examined, kept.deleted), (1, 0));
    assert_eq!(issued(&send(&h, bureau, "daily-1", op.clone())), first);
    h.clock.advance_s(2);
    let pruned = h.ledger.prune_requests(HOUR_S).unwrap();
    assert_eq!((pruned.examined, pruned.deleted), (1, 1));
    assert_eq!(remembered_rows(&h), 0);
    let again = issued(&send(&h, bureau, "daily-1", op));
    assert_ne!(again, first, "a pruned id is a new request");
}

/// A steady load of remembered requests (refusals, each one put in
/// `requests`) with a pass after every step: once the retention is
/// reached the table holds the same number of rows step after step.
#[test]
fn the_requests_table_stops_growing_under_a_steady_load() {
    let h = Harness::new();
    let gateway = Caller::new(Role::Gateway, [4; 32]);
    let (step_s, per_step, steps) = (600, 50, 36);
    let mut sizes = Vec::new();
    for step in 0..steps {
        for n in 0..per_step {
            let op = Op::Claim {
                voucher: VoucherId(1_000_000 + n),
                id_number: id_number(3),
            };
            let answer = send(&h, gateway, &format!("s{step}-{n}"), op);
            assert_eq!(reason(&answer), "unknown_voucher");
        }
        let pass = h.ledger.prune_requests(HOUR_S).unwrap();
        assert!(pass.wrapped, "a table under one batch is swept in one pass");
        sizes.push(remembered_rows(&h));
        assert_eq!(
            h.ledger.requests_remembered(),
            Some(*sizes.last().unwrap() as u64),
            "the gauge counts what the sweep kept"
        );
        h.clock.advance_s(step_s);
    }
    // Ids of the last hour (7 steps of 10 minutes: the one that just
    // turned an hour old is pruned at the next pass) and no more.
    let bound = per_step as usize * (HOUR_S / step_s + 1) as usize;
    assert!(
        sizes.iter().all(|&rows| rows <= bound),
        "{sizes:?} over {bound}"
    );
    let steady = &sizes[10..];
    assert!(
        steady.iter().all(|&rows| rows == steady[0]),
        "the table keeps growing: {sizes:?}"
    );
    eprintln!("requests rows per step: {sizes:?}");
}

/// A pruning pass reads at most one batch and goes on from there: a table
/// larger than a batch takes several passes, the last one wrapping.
#[test]
fn pruning_goes_through_the_table_in_bounded_batches() {
    use voucherd::limits::REQUEST_PRUNE_BATCH_MAX;
    let h = Harness::new();
    let gateway = Caller::new(Role::Gateway, [5; 32]);
    let total = REQUEST_PRUNE_BATCH_MAX + 10;
    let requests: Vec<Request> = (0..total)
        .map(|n| Request {
            id: format!("b-{n}"),
            op: Op::Claim {
                voucher: VoucherId(1_000_000),
                id_number: id_number(4),
            },
        })
        .collect();
    // A second of the clock per chunk: refusals remembered per certificate
    // are bounded per second (`REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S`).
    let per_second = voucherd::limits::REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S as usize;
    for chunk in requests.chunks(per_second) {
        h.ledger.execute(gateway, chunk);
        h.clock.advance_s(1);
    }
    assert_eq!(remembered_rows(&h), total);
    h.clock.advance_s(2 * HOUR_S);
    let first = h.ledger.prune_requests(HOUR_S).unwrap();
    assert_eq!(first.examined, REQUEST_PRUNE_BATCH_MAX);
    assert!(!first.wrapped);
    let second = h.ledger.prune_requests(HOUR_S).unwrap();
    assert_eq!((second.examined, second.wrapped), (10, true));
    assert_eq!(remembered_rows(&h), 0);
}

/// `invalid_request`, `invalid_id_number`, `forbidden_role` and
/// `overloaded` leave no trace: the same id then runs as a new request.
/// (`shutting_down` is answered by the server before the ledger is called.)
#[test]
fn requests_refused_before_the_ledger_looked_are_not_remembered() {
    let h = Harness::new();
    let bureau = Caller::new(Role::Bureau, [6; 32]);
    let gateway = Caller::new(Role::Gateway, [7; 32]);
    let person = id_number(5);
    let mut malformed = issue(&person, Kind::EmploymentSkills);
    if let Op::Issue { face_value_fen, .. } = &mut malformed {
        *face_value_fen = u64::MAX;
    }
    assert_eq!(
        reason(&send(&h, bureau, "x-1", malformed)),
        "invalid_request"
    );
    issued(&send(
        &h,
        bureau,
        "x-1",
        issue(&person, Kind::EmploymentSkills),
    ));

    let bad = issue(&bad_id_number(), Kind::HrServices);
    assert_eq!(reason(&send(&h, bureau, "x-2", bad)), "invalid_id_number");
    issued(&send(&h, bureau, "x-2", issue(&person, Kind::HrServices)));

    let forbidden = issue(&person, Kind::Adaptability);
    assert_eq!(
        reason(&send(&h, gateway, "x-3", forbidden)),
        "forbidden_role"
    );
    let claim = Op::Claim {
        voucher: VoucherId(999_999),
        id_number: person.clone(),
    };
    assert_eq!(reason(&send(&h, gateway, "x-3", claim)), "unknown_voucher");

    h.journal.set_full(true);
    assert_eq!(
        reason(&send(&h, bureau, "x-4", issue(&person, Kind::Adaptability))),
        "overloaded"
    );
    h.journal.set_full(false);
    issued(&send(
        &h,
        bureau,
        "x-4",
        issue(&person, Kind::DomesticServices),
    ));

    // Three issues and one remembered refusal: four rows.
    assert_eq!(remembered_rows(&h), 4);
}

/// Checks (issue 17, item 6): a frame applied on an async worker never
/// blocks it while one of its request ids is in flight in another frame:
/// another task on the same single-threaded runtime keeps running, and the
/// frame is applied once the id is decided. How: a current-thread runtime;
/// the id held as being decided (`hold_request_id`); the frame applied with
/// `server::apply_inline` in a task; a ticker task counts its turns (it
/// yields after each) for 200 ms; then the id is released and the frame's
/// answer is an issue.
/// Before, the frame spun on the worker (thread yields), the ticker stood
/// still meanwhile, and the frame gave up `overloaded`.
#[test]
fn a_frame_waiting_for_its_request_id_does_not_block_the_worker() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let h = Harness::new();
    let caller = Caller::new(Role::Bureau, [3; 32]);
    let requests = vec![Request {
        id: "held".into(),
        op: issue(&id_number(7), Kind::EmploymentSkills),
    }];
    runtime.block_on(async {
        let held = h.ledger.hold_request_id(caller, "held");
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::task::yield_now().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let ledger = Arc::clone(&h.ledger);
        let frame = tokio::spawn(async move {
            let pending = voucherd::net::server::apply_inline(&ledger, caller, &requests).await;
            ledger.finish(pending)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ticked = ticks.load(Ordering::Relaxed);
        assert!(!frame.is_finished(), "the frame waits for the held id");
        assert!(
            ticked >= 100,
            "the worker kept running other tasks: {ticked} turns in 200 ms"
        );
        drop(held);
        let answers = tokio::time::timeout(Duration::from_secs(2), frame)
            .await
            .expect("applied once the id is decided")
            .unwrap();
        assert!(
            matches!(answers[0].outcome, Ok(Reply::Issued { .. })),
            "{answers:?}"
        );
        ticker.abort();
    });
}

/// Checks (issue 17, item 7): refusals remembered (a synced write each) are
/// bounded per certificate per second; past the bound a refused change is
/// `overloaded` and nothing is written, and its retry is decided afresh.
/// How: one frame of `REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S + 5` claims
/// of a voucher that does not exist, all in one second of the manual clock;
/// the remembered rows are counted; then a second later a retry of an
/// `overloaded` id gets the rule's refusal.
#[test]
fn refusals_remembered_per_certificate_are_bounded_per_second() {
    use voucherd::limits::REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S;
    let h = Harness::new();
    let caller = Caller::new(Role::Gateway, [4; 32]);
    let bound = REFUSALS_REMEMBERED_PER_CERTIFICATE_PER_S as usize;
    let claim = |i: usize| Request {
        id: format!("c-{i}"),
        op: Op::Claim {
            voucher: VoucherId(9_999_999),
            id_number: id_number(1),
        },
    };
    let rows_before = remembered_rows(&h);
    let requests: Vec<Request> = (0..bound + 5).map(claim).collect();
    let answers = h.ledger.execute(caller, &requests);
    let rule = reason(&answers[0]);
    assert_ne!(rule, "overloaded");
    assert!(answers[..bound].iter().all(|a| reason(a) == rule));
    assert!(answers[bound..].iter().all(|a| reason(a) == "overloaded"));
    assert_eq!(
        remembered_rows(&h) - rows_before,
        bound,
        "only the bound is written"
    );
    h.clock.advance_s(1);
    let retry = h.ledger.execute(caller, &[claim(bound)]).remove(0);
    assert_eq!(reason(&retry), rule, "the retry is decided afresh");
    // Another certificate was never limited.
    let other = Caller::new(Role::Gateway, [5; 32]);
    h.clock.advance_s(-1);
    assert_eq!(
        reason(&h.ledger.execute(other, &[claim(0)]).remove(0)),
        rule
    );
}

/// Checks (issue 17, item 7): `not_authorised` refusals are throttled per
/// institution: past `NOT_AUTHORISED_PER_INSTITUTION_PER_S` in a second,
/// `overloaded` with nothing written; another institution is not affected.
/// How: two institutions, one claimed voucher, a frame of redeems by an
/// operator neither authorised, at the first institution then the second.
#[test]
fn not_authorised_is_throttled_per_institution() {
    use voucherd::limits::NOT_AUTHORISED_PER_INSTITUTION_PER_S;
    let h = Harness::new();
    h.institution("5001011", &id_number(1), "op-1");
    h.institution("5001012", &id_number(2), "op-1");
    let voucher = h.claimed(&id_number(3), Kind::EmploymentSkills);
    let bound = NOT_AUTHORISED_PER_INSTITUTION_PER_S as usize;
    let redeems = |institution: &str| -> Vec<Request> {
        (0..bound + 3)
            .map(|i| Request {
                id: format!("{institution}-{i}"),
                op: redeem(voucher, institution, "op-x"),
            })
            .collect()
    };
    let rows_before = remembered_rows(&h);
    let answers = h.ledger.execute(Role::Gateway, &redeems("5001011"));
    assert!(answers[..bound]
        .iter()
        .all(|a| reason(a) == "not_authorised"));
    assert!(answers[bound..].iter().all(|a| reason(a) == "overloaded"));
    assert_eq!(remembered_rows(&h) - rows_before, bound);
    let other = h.ledger.execute(Role::Gateway, &redeems("5001012"));
    assert_eq!(reason(&other[0]), "not_authorised");
}

//! The whole life cycle once, on a memory journal: the ledger's happy path.

use crate::common::*;
use voucherd::domain::enums::{Kind, VoucherState};
use voucherd::domain::op::{Op, Reply, Role};

#[test]
fn a_voucher_goes_from_issue_to_settlement() {
    let h = Harness::new();
    let admin = id_number(900);
    let person = id_number(1);
    h.institution("5000001", &admin, "op-1");
    let voucher = h.redeemed(&person, Kind::EmploymentSkills, "5000001", "op-1");
    let checked = h.ok(
        Role::Gateway,
        Op::Checkin {
            voucher,
            lat: SITE.0,
            lon: SITE.1,
        },
    );
    assert_eq!(
        checked,
        Reply::CheckedIn {
            session: "2026-11-29".into(),
            checkins: 1
        }
    );
    h.ok(
        Role::Gateway,
        Op::Complete {
            voucher,
            institution: "5000001".parse().unwrap(),
            operator: "op-1".parse().unwrap(),
        },
    );
    h.ok(
        Role::Gateway,
        Op::Evaluate {
            voucher,
            id_number: person.clone(),
            score: 5,
            comment: Some("很好".into()),
        },
    );
    h.ok(
        district("500101"),
        Op::Settle {
            voucher,
            amount_fen: 60_000,
        },
    );
    let Reply::Voucher(view) = h.ok(Role::Auditor, Op::GetVoucher { voucher }) else {
        panic!()
    };
    assert_eq!(view.state, VoucherState::Settled);
    assert_eq!(view.settled_fen, Some(60_000));
    assert_eq!(view.score, Some(5));
    assert_eq!(view.checkins, 1);
    let Reply::Stats(stats) = h.ok(
        Role::Bureau,
        Op::Stats {
            district: Some("500101".parse().unwrap()),
            year: None,
        },
    ) else {
        panic!()
    };
    assert_eq!(
        (
            stats.districts[0].issued,
            stats.districts[0].claimed,
            stats.districts[0].used
        ),
        (1, 1, 1)
    );
    assert_eq!(stats.districts[0].percent_of_target, 0.01, "1 of 7000");
    assert_eq!(stats.coverage.used_with_checkin, 1);
    assert_eq!(stats.coverage.institutions_used, 1);
    assert_eq!(stats.coverage.institutions_registered, 1);
    assert_eq!(stats.coverage.districts_used, 1);
    assert_eq!(
        h.head().0,
        9 + Kind::ALL.len() as u64,
        "register, authorise, a class per kind, issue, claim, redeem, checkin, complete, evaluate, settle"
    );
}

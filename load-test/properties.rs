//! What the fuzz targets check, kept in the library so the stable test suite
//! replays the committed corpus (`fuzz/corpus/<target>/`) through the very same
//! code (`tests/fuzz_corpus.rs`).
//!
//! Each `check_*` takes arbitrary bytes, runs one edge of the daemon or of
//! `voucherctl` over them and panics when a property fails:
//! - `check_request_frame`: `wire::decode_requests` never panics; what it
//!   accepts is a batch of 1 to `BATCH_OPS_MAX` requests that re-encodes to an
//!   equal batch, prints, validates (`Command::from_op`) without panicking, and
//!   reads back the same through the JSON edge (one set of valid values;
//!   floats within one ulp, see `same_json`).
//! - `check_reply_frame`: `wire::decode_reply` never panics; what it accepts
//!   re-encodes to an equal reply and prints as `voucherctl` prints it.
//! - `check_ctl_line`: `json::parse_line` never panics; a request it accepts
//!   has a valid request id, reads back the same from its own JSON and crosses
//!   the wire unchanged; a line it refuses is answered `invalid_request`.
//! - `check_ledger_operations`: the ledger on an arbitrary (role, operation)
//!   sequence keeps its invariants and reopens to the same head.
//! - `check_certificate_role`: `tls::role_of` never panics on certificate bytes.
//! - `check_export_replay`: reading and replaying an export never panics.
//! - `check_frame_reading`: the frame reader on short and fragmented reads
//!   (`crate::frame_reading`).

pub use crate::frame_reading::check_frame_reading;

use voucherd::net::json::{self, Line};

/// `voucherctl`'s printing for people, the very file the binary uses.
#[path = "../src/bin/voucherctl/human.rs"]
mod human;
use voucherd::domain::campaign::{Campaign, Campaigns};
use voucherd::domain::command::{check_request_id, Command};
use voucherd::domain::ids::PersonSecret;
use voucherd::domain::op::{Answer, Op, Request, Role};
use voucherd::domain::time::Timestamp;
use voucherd::error::Reason;
use voucherd::limits::BATCH_OPS_MAX;
use voucherd::net::wire::{self, Reply};

/// The time the checks validate against: 2026-11-29 09:00 in Chongqing.
const NOW: Timestamp = Timestamp(1_795_914_000);

fn campaigns() -> Campaigns {
    Campaigns::new(vec![Campaign::default_for(NOW)]).expect("the default campaign is valid")
}

/// True if the JSON holds a `null` anywhere (a non-finite float or an absent
/// option): such a value does not read back identical, by JSON's design.
fn has_null(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.iter().any(has_null),
        serde_json::Value::Object(fields) => fields.values().any(has_null),
        _ => false,
    }
}

/// True if two JSON values are equal, floats within `FLOAT_ULPS_MAX` units
/// in the last place. serde_json's float parser (without its
/// `float_roundtrip` feature) is not correctly rounded for long mantissas: a
/// fuzzing finding (ctl_line), bounded here and in `tests/fuzz_corpus.rs`.
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => ulps_apart(x, y) <= FLOAT_ULPS_MAX,
                _ => false,
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// How far serde_json may read a float from its own output.
const FLOAT_ULPS_MAX: u64 = 1;

/// Distance of two finite floats of the same sign in representable steps.
fn ulps_apart(x: f64, y: f64) -> u64 {
    if x == y {
        return 0;
    }
    if x.is_sign_negative() != y.is_sign_negative() || !x.is_finite() || !y.is_finite() {
        return u64::MAX;
    }
    x.to_bits().abs_diff(y.to_bits())
}

/// A request the daemon would act on: it prints, validates without
/// panicking, and its JSON form reads back the same (floats within a ulp).
fn check_request(request: &Request, campaigns: &Campaigns) {
    let _ = format!("{request:?}");
    let _ = Command::from_op(&request.op, &PersonSecret([7; 32]), campaigns, NOW);
    let json = serde_json::to_value(request).expect("a request always has a JSON form");
    if !has_null(&json) {
        let back: Request = serde_json::from_value(json.clone()).unwrap_or_else(|error| {
            panic!("the wire accepted {request:?}, whose JSON {json} does not read back: {error}")
        });
        let again = serde_json::to_value(&back).expect("a request always has a JSON form");
        assert!(
            same_json(&again, &json),
            "JSON round trip of {json} gives {again}"
        );
    }
}

/// Checks the daemon's request frame decoder on arbitrary bytes.
pub fn check_request_frame(bytes: &[u8]) {
    let Ok(requests) = wire::decode_requests(bytes) else {
        return;
    };
    assert!(
        !requests.is_empty() && requests.len() <= BATCH_OPS_MAX,
        "a decoded batch carries 1 to {BATCH_OPS_MAX} requests, not {}",
        requests.len()
    );
    let again = wire::encode_requests(&requests).expect("a decoded batch encodes again");
    assert_eq!(
        wire::decode_requests(&again).expect("a re-encoded batch decodes"),
        requests
    );
    let campaigns = campaigns();
    for request in &requests {
        check_request(request, &campaigns);
    }
}

/// Checks the client's answer frame decoder on arbitrary bytes.
pub fn check_reply_frame(bytes: &[u8]) {
    let Ok(reply) = wire::decode_reply(bytes) else {
        return;
    };
    assert_eq!(
        wire::decode_reply(&wire::encode_reply(&reply)).expect("a re-encoded reply decodes"),
        reply
    );
    match &reply {
        Reply::Refused(refusal) => {
            let _ = format!("{}: {}", refusal.reason, refusal.message);
        }
        Reply::Answers(answers) => answers.iter().for_each(print_answer),
    }
}

/// Prints an answer both ways `voucherctl` does (JSON and for people).
fn print_answer(answer: &Answer) {
    let _ = answer.to_json().to_string();
    if let Ok(reply) = &answer.outcome {
        let _ = human::human(reply);
    }
}

/// Checks `voucherctl`'s JSON line parser on arbitrary bytes (as one line).
pub fn check_ctl_line(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match json::parse_line(7, text) {
        Line::Answered(answer) => {
            let refusal = answer
                .outcome
                .as_ref()
                .expect_err("a line that is not a request is answered with a refusal");
            assert_eq!(refusal.reason, Reason::InvalidRequest);
            print_answer(&answer);
        }
        Line::Request(request) => {
            assert!(
                check_request_id(&request.id).is_ok(),
                "parse_line accepted the request id {:?}",
                request.id
            );
            check_request(&request, &campaigns());
            let json = serde_json::to_string(&request).expect("a request always has a JSON form");
            if !has_null(&serde_json::from_str(&json).expect("serde_json reads its own output")) {
                match json::parse_line(7, &json) {
                    Line::Request(again) => {
                        let (again, first) = (
                            serde_json::to_value(&again).expect("JSON form"),
                            serde_json::to_value(&request).expect("JSON form"),
                        );
                        assert!(same_json(&again, &first), "re-parsing {json} gives {again}");
                    }
                    Line::Answered(answer) => {
                        panic!("{json} was accepted once, then refused: {answer:?}")
                    }
                }
            }
            let batch = [request];
            if let Ok(frame) = wire::encode_requests(&batch) {
                assert_eq!(
                    wire::decode_requests(&frame).expect("an encoded batch decodes"),
                    batch,
                    "a parsed request crosses the wire unchanged"
                );
            }
        }
    }
}

/// Operations one `check_ledger_operations` input runs at most.
pub const LEDGER_OPERATIONS_MAX: usize = 512;

/// The operation six input bytes name: a role, a kind of operation and its
/// fields drawn from a small world (four persons, two institutions, the
/// first sixteen voucher ids, two operators), so arbitrary bytes reach the
/// rules' deep states (claimed, redeemed, completed, settled, expired)
/// rather than stopping at validation.
fn ledger_operation(bytes: [u8; 6]) -> (Role, Op) {
    use crate::kit::workload::{authorise, id_number, register, SITE};
    use voucherd::domain::enums::{Category, Channel, Kind};
    use voucherd::domain::ids::VoucherId;
    let [role, kind, a, b, c, _] = bytes;
    let role = match role % 6 {
        0 => Role::Gateway,
        1 => Role::Bureau,
        2 => Role::District("500101".parse().expect("district code")),
        3 => Role::Auditor,
        4 => Role::Platform,
        _ => Role::Training,
    };
    let person = id_number(u64::from(a % 4));
    let institution = ["5001011", "5001012"][usize::from(b % 2)];
    let operator = ["op-1", "op-2"][usize::from(c % 2)];
    let voucher = VoucherId(u64::from(b % 16) + 1);
    let kinds = [
        Kind::EmploymentSkills,
        Kind::HrServices,
        Kind::Entrepreneurship,
    ];
    let op = match kind % 16 {
        0 => register(institution, "500101", &id_number(u64::from(c % 4))),
        1 => authorise(institution, &id_number(u64::from(a % 4)), operator),
        2 => Op::RevokeOperator {
            institution: institution.parse().expect("institution code"),
            admin_id_number: person,
            operator: operator.parse().expect("operator"),
        },
        3 | 4 => Op::Issue {
            id_number: person,
            category: Category::RuralMigrant,
            kind: kinds[usize::from(c % 3)],
            face_value_fen: u64::from(c) * 1_000,
            channel: Channel::Wechat,
            district: "500101".parse().expect("district code"),
            year: None,
        },
        5 => Op::Claim {
            voucher,
            id_number: person,
        },
        6 => Op::Redeem {
            voucher,
            institution: institution.parse().expect("institution code"),
            operator: operator.parse().expect("operator"),
            class: "电工初级".into(),
        },
        7 => Op::Checkin {
            voucher,
            lat: SITE.0 + f64::from(c) * 1e-4,
            lon: SITE.1,
        },
        8 => Op::Complete {
            voucher,
            institution: institution.parse().expect("institution code"),
            operator: operator.parse().expect("operator"),
        },
        9 => Op::Evaluate {
            voucher,
            id_number: person,
            score: c % 7,
            comment: None,
        },
        10 => Op::Settle {
            voucher,
            amount_fen: u64::from(c) * 1_000,
        },
        11 => Op::Release {
            voucher,
            institution: institution.parse().expect("institution code"),
            operator: operator.parse().expect("operator"),
        },
        12 => Op::Expire {
            year: campaigns().current().year,
        },
        13 => Op::GetVoucher { voucher },
        14 => Op::Stats {
            district: None,
            year: None,
        },
        _ => Op::ListVouchers {
            id_number: person,
            year: None,
        },
    };
    (role, op)
}

/// Checks the ledger on an arbitrary sequence of (role, operation): every
/// six bytes are one request (`ledger_operation`; the sixth byte moves the
/// clock on by up to a month, so the deadline passes sometimes), at most
/// `LEDGER_OPERATIONS_MAX`. Properties: nothing panics (the ledger's
/// always-on assertions hold: uses within the limit, figures never below
/// zero, the audit sequence never skipping); every request gets one answer
/// under its id; the audit head only moves forward; and a ledger reopened
/// over the same journal has the same head (state digest included).
pub fn check_ledger_operations(bytes: &[u8]) {
    use std::sync::Arc;
    use voucherd::domain::op::Caller;
    use voucherd::domain::time::ManualClock;
    use voucherd::ledger::{Ledger, LedgerConfig};
    use voucherd::store::journal::MemoryJournal;
    let journal = Arc::new(MemoryJournal::default());
    let clock = Arc::new(ManualClock::new(NOW));
    let config = || LedgerConfig {
        campaigns: campaigns(),
        secret: PersonSecret([7; 32]),
        clock: clock.clone(),
    };
    let ledger = Ledger::open(config(), journal.clone()).expect("an empty ledger opens");
    let mut head = ledger.head().0;
    for (n, chunk) in bytes
        .chunks_exact(6)
        .take(LEDGER_OPERATIONS_MAX)
        .enumerate()
    {
        let chunk: [u8; 6] = chunk.try_into().expect("six bytes");
        let (role, op) = ledger_operation(chunk);
        let request = Request {
            id: format!("f-{n}"),
            op,
        };
        let caller = Caller::new(role, [chunk[0] % 3; 32]);
        let answers = ledger.execute(caller, std::slice::from_ref(&request));
        assert_eq!(answers.len(), 1, "one answer per request");
        assert_eq!(answers[0].id, request.id, "the answer names its request");
        let now = ledger.head().0;
        assert!(now >= head, "the audit head went back from {head} to {now}");
        head = now;
        if chunk[5] >= 0xf0 {
            clock.advance_s(i64::from(chunk[5] - 0xef) * 2 * 86_400);
        }
    }
    let before = ledger.head();
    drop(ledger);
    let reopened = Ledger::open(config(), journal).expect("a ledger reopens over its journal");
    assert_eq!(
        reopened.head(),
        before,
        "recovery agrees with the ledger it reopens"
    );
}

/// Checks the client certificate role parser (`tls::role_of`, run on every
/// verified certificate) on arbitrary bytes: it never panics, and a role it
/// finds prints as a role name that parses back to it.
pub fn check_certificate_role(bytes: &[u8]) {
    let certificate = rustls::pki_types::CertificateDer::from(bytes.to_vec());
    if let Ok(role) = voucherd::net::tls::role_of(&certificate) {
        let name = role.to_string();
        assert_eq!(
            name.parse::<Role>().ok(),
            Some(role),
            "role {name} does not read back"
        );
    }
}

/// Checks reading an audit export and replaying it into an empty ledger
/// (`voucherd replay`) on arbitrary bytes: it never panics; anything it
/// does not take is an error (corrupt, truncated, a chain that does not
/// verify), and what it takes replays to a head of as many records as it
/// counted.
pub fn check_export_replay(bytes: &[u8]) {
    if let Ok(Ok(replayed)) = voucherd::admin::offline::replay(std::io::Cursor::new(bytes)) {
        assert_eq!(
            replayed.ledger.head().0,
            replayed.records,
            "a replayed chain's head is its last record"
        );
    }
}

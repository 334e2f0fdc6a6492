//! Golden bytes: every stored record kind, every frame kind and a small audit
//! export, written by a fixed session and compared byte for byte with the
//! fixtures in `tests/golden/`. bincode writes an enum variant as its
//! position, so reordering `Op`, `Reply`, `Reason`, `Table` or any enum that
//! reaches disk or the wire changes these bytes and fails here.
//!
//! Two checks per format (docs/storage-and-audit.md, "Format versions"):
//! - writing: today's code writes exactly the fixture of the current version;
//!   a change of those bytes is a new version with a new fixture, never an
//!   edit of the old one;
//! - reading: every fixture ever committed (all versions) is still read, and
//!   an export replays to the digest it was written with.
//!
//! A missing fixture of the current version is written when
//! `VOUCHERD_GOLDEN_WRITE=1` (never overwritten), then committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use voucherd::admin::offline;
use voucherd::audit::AUDIT_RECORD_VERSION;
use voucherd::domain::campaign::Campaign;
use voucherd::domain::enums::{ClassMode, Kind};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role};
use voucherd::domain::time::Timestamp;
use voucherd::error::{Reason, Refusal};
use voucherd::ledger::{Ledger, LedgerConfig, STORE_LAYOUT_VERSION};
use voucherd::limits::PROTOCOL_VERSION;
use voucherd::net::wire;
use voucherd::store::journal::{Commit, Journal, MemoryJournal, Put, Table};

/// The export fixture's version: the audit record version of its entries
/// (`audit-export-v1.bin` holds version 1 records, `-v2` version 2 ones
/// with callers and a campaign record). The container around them, magic
/// `VOUCHERD-AUDIT1\n`, is the same for both.
const EXPORT_VERSION: u8 = AUDIT_RECORD_VERSION;

/// The store fixture of today's code: its rows hold audit records, so it
/// follows the store layout and, from record version 3 on, the record
/// version too (`store-v3.txt` holds version 2 records).
fn store_fixture() -> String {
    match AUDIT_RECORD_VERSION {
        ..=2 => format!("store-v{STORE_LAYOUT_VERSION}.txt"),
        record => format!("store-v{STORE_LAYOUT_VERSION}-r{record}.txt"),
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `bytes` with the fixture `name`, or writes a missing one when asked.
fn check_golden(name: &str, bytes: &[u8]) {
    let path = golden_dir().join(name);
    match std::fs::read(&path) {
        Ok(fixture) => assert!(
            fixture == bytes,
            "{name}: today's code writes other bytes than the committed fixture \
             ({} bytes against {}). A format change is a version bump with a new \
             fixture, never an edit of this one (docs/storage-and-audit.md, Format versions).",
            bytes.len(),
            fixture.len()
        ),
        Err(_) if std::env::var("VOUCHERD_GOLDEN_WRITE").as_deref() == Ok("1") => {
            std::fs::create_dir_all(golden_dir()).expect("golden folder");
            std::fs::write(&path, bytes).expect("write fixture");
            eprintln!("wrote {}", path.display());
        }
        Err(error) => panic!(
            "{}: {error}; create it with VOUCHERD_GOLDEN_WRITE=1 and commit it",
            path.display()
        ),
    }
}

/// The fixtures of every version of one format: `<stem>-v<N>.<ext>`.
fn fixtures_of(stem: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|name| name.starts_with(&format!("{stem}-v")) && name.ends_with(ext))
        .map(|name| {
            let bytes = std::fs::read(golden_dir().join(&name)).expect("read fixture");
            (name, bytes)
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no fixture {stem}-v*{ext}");
    found
}

/// The fixed session: one institution, vouchers through every step, a
/// revoked operator, a release, a remembered refusal, then expiry after the
/// deadline. Returns the harness and every request with its answer.
fn session() -> (Harness, Vec<(Role, Request, Answer)>) {
    let h = Harness::new();
    // The campaign's rules enter the chain first, as the daemon does at start.
    h.ledger.record_campaigns().expect("campaign sealed");
    // Literal ID numbers (valid check digits, regions and birth dates), so a
    // change of the test kit's generator never moves these bytes.
    let admin = String::from("500101198001011235");
    let person = String::from("50010219920229456X");
    let other = String::from("500235197506157891");
    let mut log = Vec::new();
    let mut run = |role: Role, op: Op| -> Answer {
        let request = Request {
            id: format!("golden-{}", log.len() + 1),
            op,
        };
        let answer = h
            .ledger
            .execute(role, std::slice::from_ref(&request))
            .remove(0);
        log.push((role, request, answer.clone()));
        answer
    };
    run(Role::Bureau, register("1000001", "500101", &admin));
    run(
        Role::Bureau,
        Op::SetInstitutionAdmin {
            institution: "1000001".parse().unwrap(),
            admin_name: "王芳".into(),
            admin_id_number: admin.clone(),
        },
    );
    run(Role::Gateway, authorise("1000001", &admin, "op-1"));
    run(Role::Gateway, authorise("1000001", &admin, "op-2"));
    run(
        Role::Gateway,
        Op::RevokeOperator {
            institution: "1000001".parse().unwrap(),
            admin_id_number: admin.clone(),
            operator: "op-2".parse().unwrap(),
        },
    );
    let mut vouchers = Vec::new();
    for kind in [Kind::EmploymentSkills, Kind::HrServices, Kind::Adaptability] {
        match run(Role::Bureau, issue(&person, kind)).outcome {
            Ok(Reply::Issued { voucher }) => vouchers.push(voucher),
            other => panic!("issue answered {other:?}"),
        }
    }
    for &voucher in &vouchers {
        run(
            Role::Gateway,
            Op::Claim {
                voucher,
                id_number: person.clone(),
            },
        );
    }
    // A remembered refusal: the wrong holder.
    run(
        Role::Gateway,
        Op::Claim {
            voucher: vouchers[0],
            id_number: other.clone(),
        },
    );
    // Every redeem names an opened class (D51). The classes are opened
    // outside the logged requests, so the frame fixtures of protocol 2 keep
    // their bytes (`framed_requests`).
    for (class, kind) in [
        (FIRST_CLASS.to_owned(), Kind::EmploymentSkills),
        (kit_class(Kind::HrServices), Kind::HrServices),
    ] {
        let year = campaigns().current().year;
        let (first, last) = (format!("{}-12-01", year - 1), format!("{year}-11-30"));
        let op = open_class(
            "1000001",
            "op-1",
            &class,
            kind,
            (&first, &last),
            ClassMode::Onsite,
        );
        h.ok(Role::Gateway, op);
    }
    run(
        Role::Gateway,
        redeem_in(vouchers[0], "1000001", "op-1", FIRST_CLASS),
    );
    run(
        Role::Gateway,
        Op::Checkin {
            voucher: vouchers[0],
            lat: SITE.0,
            lon: SITE.1,
        },
    );
    run(
        Role::Gateway,
        Op::Complete {
            voucher: vouchers[0],
            institution: "1000001".parse().unwrap(),
            operator: "op-1".parse().unwrap(),
        },
    );
    run(
        Role::Gateway,
        Op::Evaluate {
            voucher: vouchers[0],
            id_number: person.clone(),
            score: 5,
            comment: Some("老师讲得清楚".into()),
        },
    );
    run(
        district("500101"),
        Op::Settle {
            voucher: vouchers[0],
            amount_fen: 75_000,
        },
    );
    run(
        Role::Gateway,
        redeem_in(vouchers[1], "1000001", "op-1", &kit_class(Kind::HrServices)),
    );
    run(
        Role::Gateway,
        Op::Release {
            voucher: vouchers[1],
            institution: "1000001".parse().unwrap(),
            operator: "op-1".parse().unwrap(),
        },
    );
    run(
        Role::Bureau,
        Op::GetVoucher {
            voucher: vouchers[0],
        },
    );
    run(Role::Auditor, Op::AuditHead);
    h.clock.set(Timestamp(DEADLINE.0 + 1));
    let year = campaigns().current().year;
    run(Role::Bureau, Op::Expire { year });
    (h, log)
}

fn campaign_texts() -> Vec<String> {
    vec![Campaign::default_for(NOW).to_toml()]
}

fn export_of(h: &Harness) -> Vec<u8> {
    let mut export = Vec::new();
    offline::export_journal(&*h.journal, &campaign_texts(), &mut export).expect("export");
    export
}

/// Every row of every table, one line each: table, key and value in hex.
fn store_dump(journal: &dyn Journal) -> Vec<u8> {
    let mut text = String::new();
    for &table in Table::ALL {
        journal
            .scan(table, &mut |key, value| {
                text += &format!(
                    "{} {} {}\n",
                    table.name(),
                    hex::encode(key),
                    hex::encode(value)
                );
                Ok(())
            })
            .expect("scan");
    }
    text.into_bytes()
}

/// A journal holding the rows of a store dump.
fn journal_from_dump(dump: &[u8]) -> Arc<MemoryJournal> {
    let journal = Arc::new(MemoryJournal::default());
    let mut puts = Vec::new();
    for line in std::str::from_utf8(dump).expect("UTF-8 dump").lines() {
        let mut fields = line.split(' ');
        let (name, key, value) = (
            fields.next().expect("table"),
            fields.next().expect("key"),
            fields.next().expect("value"),
        );
        let table = *Table::ALL
            .iter()
            .find(|table| table.name() == name)
            .unwrap_or_else(|| panic!("unknown table {name}"));
        puts.push(Put {
            table,
            key: hex::decode(key).expect("hex key"),
            value: Some(hex::decode(value).expect("hex value")),
        });
    }
    journal
        .submit(Commit { ticket: 1, puts })
        .expect("load dump");
    journal
}

/// The class every redeem of the first session named (a free text then).
const FIRST_CLASS: &str = "电工初级 2026 冬";

/// The session's requests as the frames carry them. Every redeem is pinned
/// to the class the first session named (`FIRST_CLASS`, a free text then,
/// before every redeem had to name an opened class of the voucher's kind),
/// so the frame fixtures follow the wire format, not the rules.
fn framed_requests(log: &[(Role, Request, Answer)]) -> Vec<Request> {
    log.iter()
        .map(|(_, request, _)| match &request.op {
            Op::Redeem {
                voucher,
                institution,
                operator,
                ..
            } => Request {
                id: request.id.clone(),
                op: Op::Redeem {
                    voucher: *voucher,
                    institution: *institution,
                    operator: operator.clone(),
                    class: FIRST_CLASS.into(),
                },
            },
            _ => request.clone(),
        })
        .collect()
}

fn requests_frame(log: &[(Role, Request, Answer)]) -> Vec<u8> {
    wire::encode_requests(&framed_requests(log)).expect("the session fits one frame")
}

/// The session's answers as the frames carry them. The `audit_head`
/// answer is pinned to what the first session answered (before audit
/// records named their caller and the campaign entered the chain), so the
/// frame fixtures follow the wire format, not the chain's bytes.
fn framed_answers(log: &[(Role, Request, Answer)]) -> Vec<Answer> {
    log.iter()
        .map(|(_, _, answer)| match answer.outcome {
            Ok(Reply::AuditHead { .. }) => Answer {
                id: answer.id.clone(),
                outcome: Ok(Reply::AuditHead {
                    seq: 18,
                    hash: "1803b8e04588780d52c7dca034c16a1c92732c78079f38967caff85cddffcc20".into(),
                    state_digest:
                        "e3d49734097b0cc48f6ce4132e73b005d405cc32a435cdac1fe15db3ed3111d7".into(),
                }),
            },
            _ => answer.clone(),
        })
        .collect()
}

fn answers_frame(log: &[(Role, Request, Answer)]) -> Vec<u8> {
    wire::encode_reply(&wire::Reply::Answers(framed_answers(log)))
}

fn refused_frame() -> Vec<u8> {
    wire::encode_reply(&wire::Reply::Refused(Refusal::new(
        Reason::Overloaded,
        "too many batches in flight",
    )))
}

/// The session covers what it must: every changing operation, reads, and a refusal.
#[test]
fn the_golden_session_covers_every_change_and_a_refusal() {
    let (_, log) = session();
    let mut names: Vec<&str> = log
        .iter()
        .map(|(_, request, _)| request.op.name())
        .collect();
    names.sort();
    names.dedup();
    for op in [
        "register_institution",
        "set_institution_admin",
        "authorise_operator",
        "revoke_operator",
        "issue",
        "claim",
        "redeem",
        "checkin",
        "complete",
        "evaluate",
        "settle",
        "release",
        "expire",
        "get_voucher",
        "audit_head",
    ] {
        assert!(names.contains(&op), "the golden session has no {op}");
    }
    let refused: Vec<&str> = log
        .iter()
        .filter_map(|(_, _, answer)| answer.outcome.as_ref().err().map(|r| r.reason.as_str()))
        .collect();
    assert_eq!(refused, ["not_holder"], "exactly the one planned refusal");
}

#[test]
fn stored_records_keep_their_bytes() {
    let (h, _) = session();
    check_golden(&store_fixture(), &store_dump(&*h.journal));
}

#[test]
fn frames_keep_their_bytes() {
    let (_, log) = session();
    let v = PROTOCOL_VERSION;
    check_golden(&format!("frame-requests-v{v}.bin"), &requests_frame(&log));
    check_golden(&format!("frame-answers-v{v}.bin"), &answers_frame(&log));
    check_golden(&format!("frame-refused-v{v}.bin"), &refused_frame());
}

#[test]
fn the_audit_export_keeps_its_bytes() {
    let (h, _) = session();
    check_golden(
        &format!("audit-export-v{EXPORT_VERSION}.bin"),
        &export_of(&h),
    );
}

/// Every committed export, of any version, replays with today's code to the
/// state digest its ledger had (kept beside it in the store dump's meta).
#[test]
fn every_committed_export_replays() {
    let (h, _) = session();
    let (_, _, live_digest) = h.ledger.head();
    for (name, export) in fixtures_of("audit-export", ".bin") {
        let replayed = offline::replay(std::io::Cursor::new(export.as_slice()))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|why| panic!("{name} does not replay: {why}"));
        assert!(replayed.records > 0, "{name}");
        if name == format!("audit-export-v{EXPORT_VERSION}.bin") {
            assert_eq!(replayed.state_digest, live_digest, "{name}");
        }
    }
}

/// Every committed store dump opens as a ledger (recovery checks every record
/// and the digest) and answers like the session's ledger.
#[test]
fn every_committed_store_opens() {
    let (h, log) = session();
    let voucher = log
        .iter()
        .find_map(|(_, request, _)| match request.op {
            Op::GetVoucher { voucher } => Some(voucher),
            _ => None,
        })
        .expect("the session reads a voucher");
    let read = |ledger: &Ledger| {
        let request = Request {
            id: "read".into(),
            op: Op::GetVoucher { voucher },
        };
        ledger.execute(Role::Bureau, &[request]).remove(0).outcome
    };
    for (name, dump) in fixtures_of("store", ".txt") {
        let journal = journal_from_dump(&dump);
        let config = LedgerConfig {
            campaigns: campaigns(),
            secret: secret(),
            clock: h.clock.clone(),
        };
        let ledger = Ledger::open(config, journal).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == store_fixture() {
            assert_eq!(ledger.head(), h.ledger.head(), "{name}");
            assert_eq!(read(&ledger), read(&h.ledger), "{name}");
        }
    }
}

/// Every committed frame fixture is read: those of the current version decode
/// to the very requests and answers of the session; those of a version the
/// daemon no longer speaks are refused with a reason naming the version,
/// never decoded as something else.
#[test]
fn every_committed_frame_decodes() {
    let (_, log) = session();
    let current = |stem: &str| format!("{stem}-v{PROTOCOL_VERSION}.bin");
    let retired = |name: &str, refusal: voucherd::error::Refusal| {
        assert!(
            !name.ends_with(&format!("-v{PROTOCOL_VERSION}.bin")),
            "{name}: {refusal:?}"
        );
        assert_eq!(refusal.reason, Reason::InvalidRequest, "{name}");
        assert!(
            refusal.message.contains("protocol version"),
            "{name}: {}",
            refusal.message
        );
    };
    for (name, frame) in fixtures_of("frame-requests", ".bin") {
        match wire::decode_requests(&frame) {
            Ok(requests) => {
                assert_eq!(name, current("frame-requests"));
                assert_eq!(requests, framed_requests(&log), "{name}");
            }
            Err(refusal) => retired(&name, refusal),
        }
    }
    for (name, frame) in fixtures_of("frame-answers", ".bin") {
        match wire::decode_reply(&frame) {
            Ok(reply) => {
                assert_eq!(name, current("frame-answers"));
                assert_eq!(reply, wire::Reply::Answers(framed_answers(&log)), "{name}");
            }
            Err(refusal) => retired(&name, refusal),
        }
    }
    for (name, frame) in fixtures_of("frame-refused", ".bin") {
        match wire::decode_reply(&frame) {
            Ok(reply) => assert!(matches!(reply, wire::Reply::Refused(_)), "{name}"),
            Err(refusal) => retired(&name, refusal),
        }
    }
}

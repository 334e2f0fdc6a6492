//! Replay: a seeded random workload of every changing operation, valid and
//! invalid, exported and replayed offline into the same state digest; a
//! flipped byte in record K is named as record K by replay and by verify.

use std::collections::BTreeMap;

use crate::common::*;
use rand::seq::SliceRandom;
use rand::Rng;
use voucherd::domain::enums::{Kind, VoucherState};
use voucherd::domain::op::{Op, Reply, Role};
use voucherd::domain::time::{Clock, Timestamp};
use voucherd::store::journal::{Journal, Table};

/// Operations of the workload (`VOUCHERD_OPERATIONS` overrides).
const OPERATIONS: usize = 6_000;
const PERSONS: usize = 200;
const INSTITUTIONS: usize = 6;

/// Where each entry of a binary export starts and how long it is: 16 bytes of
/// magic, then entries of u32 big-endian length and bytes; the first entry is
/// the campaigns header, the n-th after it is audit record n.
fn export_entries(export: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(&export[..16], voucherd::audit::EXPORT_MAGIC);
    let mut entries = Vec::new();
    let mut at = 16;
    while at < export.len() {
        let len = u32::from_be_bytes(export[at..at + 4].try_into().expect("4 bytes")) as usize;
        entries.push((at + 4, len));
        at += 4 + len;
    }
    assert_eq!(at, export.len(), "the export ends after a whole entry");
    entries
}

#[test]
fn a_random_workload_replays_to_the_live_state() {
    let (seed, mut rng) = seeded_rng();
    let operations = std::env::var("VOUCHERD_OPERATIONS").map_or(OPERATIONS, |text| {
        text.parse().expect("VOUCHERD_OPERATIONS is a number")
    });
    let h = Harness::new();
    let mut work = workload(seed, PERSONS);
    work.setup(&h, INSTITUTIONS);
    for _ in 0..operations {
        work.step(&h);
    }
    assert!(h.clock.now() < DEADLINE);
    work.check_views(&h);

    // Past the deadline: changes of unfinished vouchers are refused, settling
    // completed ones goes on, and expire takes every unfinished voucher.
    let year = campaigns().current().year;
    h.clock
        .set(Timestamp(DEADLINE.0 + rng.gen_range(1..86_400)));
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
    let claimed: Vec<_> = work
        .vouchers
        .iter()
        .filter(|v| v.state == VoucherState::Claimed)
        .cloned()
        .collect();
    if let Some(tracked) = claimed.choose(&mut rng) {
        let code = work.institutions[0].code.clone();
        let operator = work.institutions[0]
            .operators
            .first()
            .cloned()
            .unwrap_or_else(|| "op-x".into());
        let answer = work.apply(&h, Role::Gateway, redeem(tracked.id, &code, &operator));
        let reason = answer
            .outcome
            .expect_err("no redemption after the deadline")
            .reason
            .as_str();
        assert!(
            ["expired", "not_authorised"].contains(&reason),
            "{reason} for {tracked:?}"
        );
    }
    assert_eq!(
        work.apply(&h, Role::Bureau, issue(&id_number(1), Kind::Adaptability))
            .outcome
            .map_err(|r| r.reason.as_str()),
        Err("expired")
    );
    let completed: Vec<_> = work
        .vouchers
        .iter()
        .filter(|v| v.state == VoucherState::Completed)
        .cloned()
        .collect();
    if let Some(tracked) = completed.choose(&mut rng) {
        let district =
            &work.institutions[tracked.institution.expect("completed at an institution")].district;
        let role = Role::District(district.parse().expect("district"));
        let answer = work.apply(
            &h,
            role,
            Op::Settle {
                voucher: tracked.id,
                amount_fen: tracked.face_value_fen / 2,
            },
        );
        assert!(
            answer.outcome.is_ok(),
            "settling a completed voucher after the deadline: {answer:?}"
        );
    }
    let expired = work.apply(&h, Role::Bureau, Op::Expire { year });
    assert_eq!(
        expired.outcome,
        Ok(Reply::Expired {
            expired: unfinished
        })
    );
    let again = work.apply(&h, Role::Bureau, Op::Expire { year });
    assert_eq!(again.outcome, Ok(Reply::Expired { expired: 0 }));
    work.check_views(&h);

    let accepted: usize = work
        .sent
        .iter()
        .filter(|s| !s.request.op.is_read() && s.answer.outcome.is_ok())
        .count();
    let refused = work
        .sent
        .iter()
        .filter(|s| s.answer.outcome.is_err())
        .count();
    eprintln!(
        "{} requests: {accepted} changes accepted, {refused} refused",
        work.sent.len()
    );
    let mut tally: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for sent in &work.sent {
        let outcome = sent
            .answer
            .outcome
            .as_ref()
            .map_or_else(|r| r.reason.as_str(), |_| "ok");
        *tally.entry((sent.request.op.name(), outcome)).or_default() += 1;
    }
    eprintln!("{tally:?}");
    assert!(
        accepted > operations / 4 && refused > operations / 10,
        "a mix of accepted and refused"
    );

    let (seq, digest) = h.head();
    assert_eq!(
        seq, work.accepted_changes,
        "one audit record per accepted change"
    );

    // Export and replay offline.
    let campaign = campaigns().current().to_toml();
    let mut export = Vec::new();
    let written = voucherd::admin::offline::export_journal(&*h.journal, &[campaign], &mut export)
        .expect("export");
    assert_eq!(written, seq);
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .expect("replay runs")
        .expect("replay matches the log");
    assert_eq!(replayed.records, seq);
    assert_eq!(
        replayed.state_digest, digest,
        "replay rebuilds exactly the live state"
    );
    assert_eq!(replayed.ledger.head(), h.ledger.head());
    assert_eq!(replayed.ledger.sizes(), h.ledger.sizes());

    // One flipped byte inside record K: replay names record K.
    let entries = export_entries(&export);
    assert_eq!(
        entries.len() as u64,
        seq + 1,
        "campaigns header, then one entry per record"
    );
    for _ in 0..20 {
        let k = rng.gen_range(1..=seq);
        let (start, len) = entries[k as usize];
        let byte = rng.gen_range(0..len);
        let mut damaged = export.clone();
        damaged[start + byte] ^= 1 << rng.gen_range(0..8);
        let why = match voucherd::admin::offline::replay(std::io::Cursor::new(&damaged[..]))
            .expect("the export still frames")
        {
            Ok(_) => panic!("record {k} byte {byte}: damage not noticed by replay"),
            Err(why) => why,
        };
        assert!(
            why.starts_with(&format!("record {k}:")),
            "record {k} byte {byte}: {why}"
        );

        // The same damage in the stored chain: verify names record K too.
        h.journal.corrupt(Table::Audit, &k.to_be_bytes(), byte);
        let verdict = voucherd::admin::offline::verify_journal(&*h.journal).expect("scan");
        h.journal.corrupt(Table::Audit, &k.to_be_bytes(), byte);
        let why = verdict.expect_err("damage breaks the chain");
        assert!(
            why.starts_with(&format!("record {k}:")),
            "verify, record {k} byte {byte}: {why}"
        );
    }
    assert!(voucherd::admin::offline::verify_journal(&*h.journal)
        .expect("scan")
        .is_ok());
}

/// A crafted export whose one record has a role that may not run its
/// command (a gateway settling, a bureau claiming) is refused naming the
/// record, never a panic of the offline tool.
#[test]
fn a_record_whose_role_may_not_run_its_command_is_refused_naming_it() {
    use voucherd::audit::{seal, AuditRecord, ExportWriter, GENESIS_HASH};
    use voucherd::domain::command::Command;
    use voucherd::domain::ids::{PersonKey, VoucherId};

    let campaigns = vec![campaigns().current().to_toml()];
    let crafted = [
        (
            Role::Gateway,
            Command::Settle {
                voucher: VoucherId(1),
                amount_fen: 0,
            },
            "settle",
        ),
        (
            Role::Bureau,
            Command::Claim {
                voucher: VoucherId(1),
                holder: PersonKey([9; 32]),
            },
            "claim",
        ),
    ];
    for (role, command, name) in crafted {
        let record = AuditRecord {
            version: voucherd::audit::AUDIT_RECORD_VERSION,
            seq: 1,
            time: NOW,
            caller: role.into(),
            request_id: "crafted".into(),
            command,
            reply: Reply::Done {},
            prev_hash: GENESIS_HASH,
        };
        let (entry, _) = seal(&record);
        let mut writer = ExportWriter::new(Vec::new(), &campaigns).unwrap();
        writer.write(&entry).unwrap();
        let export = writer.finish().unwrap();
        let outcome = std::panic::catch_unwind(|| {
            voucherd::admin::offline::replay(std::io::Cursor::new(export.as_slice()))
        });
        let why = match outcome {
            Ok(Ok(Err(why))) => why,
            Ok(Ok(Ok(replayed))) => panic!("replayed {} records", replayed.records),
            Ok(Err(error)) => panic!("replay failed without naming a record: {error}"),
            Err(_) => panic!("replay of a {role} {name} record panicked"),
        };
        assert!(why.starts_with("record 1:"), "{why}");
        assert!(
            why.contains(name) && why.contains(&role.to_string()),
            "{why}"
        );
    }
}

/// The campaign's rules are a record of the chain: an export whose
/// campaign text was edited (`uses_per_person_max` 3 → 9, a district's
/// target 7000 → 9000), in the chain's record or in the export's header,
/// fails to replay naming the campaign's record. Before campaign records,
/// such an export replayed with the same digest.
#[test]
fn an_edited_campaign_text_fails_replay_naming_the_record() {
    let h = Harness::new();
    assert_eq!(h.ledger.record_campaigns().unwrap(), 1);
    assert_eq!(h.ledger.record_campaigns().unwrap(), 0, "sealed once");
    h.institution("1000001", &id_number(90), "op-1");
    let person = id_number(91);
    let voucher = h.claimed(&person, Kind::EmploymentSkills);
    h.ok(Role::Gateway, redeem(voucher, "1000001", "op-1"));
    let texts = vec![campaigns().current().to_toml()];
    let mut export = Vec::new();
    voucherd::admin::offline::export_journal(&*h.journal, &texts, &mut export).unwrap();
    let replay = |bytes: &[u8]| voucherd::admin::offline::replay(std::io::Cursor::new(bytes));
    let replayed = replay(&export)
        .unwrap()
        .expect("the untouched export replays");
    assert_eq!(replayed.state_digest, h.ledger.head().2);

    let edits: [(&[u8], &[u8]); 2] = [
        (b"uses_per_person_max = 3", b"uses_per_person_max = 9"),
        (b"target = 7000", b"target = 9000"),
    ];
    for (from, to) in edits {
        let at: Vec<usize> = export
            .windows(from.len())
            .enumerate()
            .filter(|(_, window)| *window == from)
            .map(|(at, _)| at)
            .collect();
        assert_eq!(at.len(), 2, "the text is in the header and in record 1");
        for (place, &offset) in ["header", "record"].iter().zip(&at) {
            let mut edited = export.clone();
            edited[offset..offset + to.len()].copy_from_slice(to);
            let why = match replay(&edited) {
                Ok(Err(why)) => why,
                Ok(Ok(replayed)) => panic!(
                    "an edit in the {place} replayed {} records to {}",
                    replayed.records, replayed.state_digest
                ),
                Err(error) => panic!("an edit in the {place} failed without a record: {error}"),
            };
            assert!(why.starts_with("record 1:"), "edit in the {place}: {why}");
        }
    }
}

/// Record times never go backwards along the sequence: with the clock
/// stepped back between two changes, the second record carries the first
/// one's time, and the chain replays.
#[test]
fn record_times_never_go_backwards_when_the_clock_steps_back() {
    let h = Harness::new();
    let person = id_number(92);
    h.issue(&person, Kind::EmploymentSkills);
    h.clock.set(Timestamp(NOW.0 - 3_600));
    h.issue(&person, Kind::HrServices);
    h.clock.set(Timestamp(NOW.0 + 60));
    h.issue(&person, Kind::Adaptability);
    let mut times = Vec::new();
    h.journal
        .scan(Table::Audit, &mut |_, entry| {
            times.push(voucherd::audit::open(entry).unwrap().0.time);
            Ok(())
        })
        .unwrap();
    assert_eq!(times, [NOW, NOW, Timestamp(NOW.0 + 60)]);
    let texts = vec![campaigns().current().to_toml()];
    let mut export = Vec::new();
    voucherd::admin::offline::export_journal(&*h.journal, &texts, &mut export).unwrap();
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .unwrap()
        .expect("replays");
    assert_eq!(replayed.state_digest, h.ledger.head().2);
}

/// A crafted version 2 chain whose second record is earlier than the first
/// is refused naming record 2 (times never go backwards from version 2 on).
#[test]
fn a_version_2_record_earlier_than_the_one_before_is_refused() {
    use voucherd::audit::{seal, AuditRecord, ExportWriter, GENESIS_HASH};
    use voucherd::domain::command::Command;

    let year = campaigns().current().year;
    let mut prev_hash = GENESIS_HASH;
    let mut writer = ExportWriter::new(Vec::new(), &[campaigns().current().to_toml()]).unwrap();
    for (seq, time) in [
        (1, Timestamp(DEADLINE.0 + 10)),
        (2, Timestamp(DEADLINE.0 + 9)),
    ] {
        let record = AuditRecord {
            version: voucherd::audit::AUDIT_RECORD_VERSION,
            seq,
            time,
            caller: Role::Bureau.into(),
            request_id: format!("x-{seq}"),
            command: Command::Expire { year },
            reply: Reply::Expired { expired: 0 },
            prev_hash,
        };
        let (entry, hash) = seal(&record);
        writer.write(&entry).unwrap();
        prev_hash = hash;
    }
    let export = writer.finish().unwrap();
    let why = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .unwrap()
        .err()
        .expect("refused");
    assert!(why.starts_with("record 2:"), "{why}");
    assert!(why.contains("before the previous record"), "{why}");
}

/// Under concurrency, with the clock moving forward and back meanwhile,
/// record times never go backwards along the sequence (an operation
/// overtaken by a later-stamped record runs again), and the chain replays
/// to the live digest (each record's time is the one its rule ran with).
#[test]
fn concurrent_changes_under_a_jumping_clock_keep_record_times_in_order() {
    let h = Harness::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut step = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                step += 1;
                // Mostly forward, sometimes a step back.
                h.clock.advance_s(if step % 7 == 0 { -3 } else { 1 });
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..4u64)
            .map(|worker| {
                let h = &h;
                scope.spawn(move || {
                    for n in 0..150u64 {
                        let person = id_number(1_000 + worker * 1_000 + n);
                        h.issue(&person, Kind::EmploymentSkills);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let mut times = Vec::new();
    h.journal
        .scan(Table::Audit, &mut |_, entry| {
            times.push(voucherd::audit::open(entry).unwrap().0.time);
            Ok(())
        })
        .unwrap();
    assert_eq!(times.len(), 600);
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "record times go backwards: {:?}",
        times.windows(2).find(|pair| pair[0] > pair[1])
    );
    let texts = vec![campaigns().current().to_toml()];
    let mut export = Vec::new();
    voucherd::admin::offline::export_journal(&*h.journal, &texts, &mut export).unwrap();
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export[..]))
        .unwrap()
        .expect("replays");
    assert_eq!(replayed.state_digest, h.ledger.head().2);
}

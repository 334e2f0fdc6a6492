//! Retries across a crash on RocksDB: changes decided but never answered (the
//! process aborts) are applied exactly once when retried by request id.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use voucherd::codec;
use voucherd::domain::enums::{Kind, VoucherState};
use voucherd::domain::op::{Op, Reply, Request, Role};
use voucherd::domain::time::ManualClock;
use voucherd::store::journal::{Journal, Table};

const CHILD_DIR: &str = "VOUCHERD_RETRY_CRASH_DIR";
const CHILD_ROUND: &str = "VOUCHERD_RETRY_CRASH_ROUND";
/// Crashes in a row on the same data folder; later ones wait a little longer
/// before dying, so that some changes reach the disk and some do not.
const ROUNDS: u64 = 5;
const INSTITUTION: &str = "5000001";
const OPERATOR: &str = "op-1";

fn requests_path(dir: &Path, round: u64) -> std::path::PathBuf {
    dir.join(format!("requests-{round}.bin"))
}

/// Runs in the child process only; does nothing in a normal test run.
#[test]
fn retry_crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let round: u64 = std::env::var(CHILD_ROUND)
        .expect("round")
        .parse()
        .expect("round");
    let disk = Disk::open(&dir.join("data"), &format!("setup-{round}"));
    let admin = id_number(900_001);
    if round == 0 {
        disk.accept(Role::Bureau, register(INSTITUTION, "500101", &admin));
        disk.accept(Role::Gateway, authorise(INSTITUTION, &admin, OPERATOR));
        for op in kit_classes(INSTITUTION, OPERATOR) {
            disk.accept(Role::Gateway, op);
        }
    }
    // Durable before the batch: a person with three claimed vouchers, one redeemed.
    let person = id_number(100 + round);
    let vouchers = disk.claimed_batch(&person, &Kind::ALL[..3]);
    disk.accept(
        Role::Gateway,
        redeem_for(disk.ledger(), vouchers[0], INSTITUTION, OPERATOR),
    );

    // The batch whose answers nobody will see.
    let institution = INSTITUTION.parse().unwrap();
    let batch: Vec<(Role, Op)> = vec![
        (
            Role::Gateway,
            Op::Checkin {
                voucher: vouchers[0],
                lat: SITE.0,
                lon: SITE.1,
            },
        ),
        (
            Role::Gateway,
            Op::Complete {
                voucher: vouchers[0],
                institution,
                operator: OPERATOR.parse().unwrap(),
            },
        ),
        (
            Role::Gateway,
            redeem_for(disk.ledger(), vouchers[1], INSTITUTION, OPERATOR),
        ),
        (
            Role::Gateway,
            redeem_for(disk.ledger(), vouchers[2], INSTITUTION, OPERATOR),
        ),
        (Role::Bureau, issue(&person, Kind::ALL[5])),
    ];
    let batch: Vec<(Role, Request)> = batch
        .into_iter()
        .enumerate()
        .map(|(n, (role, op))| {
            let request = Request {
                id: format!("doubt-{round}-{n}"),
                op,
            };
            (role, request)
        })
        .collect();
    let mut log = std::fs::File::create(requests_path(dir, round)).expect("requests file");
    let frame = codec::encode_plain(&batch);
    log.write_all(&(frame.len() as u32).to_be_bytes())
        .expect("write");
    log.write_all(&frame).expect("write");
    log.sync_all().expect("sync");

    // Decide each change and hand it to the committer, but never wait for it.
    let mut pending = Vec::new();
    for (role, request) in &batch {
        pending.push(disk.ledger.apply(*role, std::slice::from_ref(request)));
    }
    std::thread::sleep(Duration::from_micros(round * round * 1_000));
    std::process::abort();
}

fn read_batch(path: &Path) -> Vec<(Role, Request)> {
    let mut input = std::fs::File::open(path).expect("requests file");
    let mut len = [0u8; 4];
    input.read_exact(&mut len).expect("length");
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    input.read_exact(&mut frame).expect("frame");
    codec::decode_plain(&frame).expect("requests")
}

/// (role, request id) of every audit record.
fn audit_keys(journal: &dyn Journal) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    journal
        .scan(Table::Audit, &mut |_, entry| {
            let (record, _) = voucherd::audit::open(entry).expect("audit entry");
            keys.push((record.caller.role.to_string(), record.request_id));
            Ok(())
        })
        .expect("audit scan");
    keys
}

#[test]
fn a_request_that_got_no_answer_is_applied_once_when_retried_after_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut applied_before_crash, mut applied_on_retry) = (0, 0);
    for round in 0..ROUNDS {
        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "retry_after_crash::retry_crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .output()
            .expect("child runs");
        assert!(
            child.status.code().is_none(),
            "round {round}: the child must die by abort: {:?}\n{}",
            child.status,
            String::from_utf8_lossy(&child.stderr)
        );
        let batch = read_batch(&requests_path(dir.path(), round));

        let clock = Arc::new(ManualClock::new(NOW));
        let disk = Disk::open_at(&dir.path().join("data"), &format!("after-{round}"), clock)
            .expect("the data folder reopens after the crash");
        let before = audit_keys(&*disk.store);
        let mut answers = Vec::new();
        for (role, request) in &batch {
            let key = (role.to_string(), request.id.clone());
            if before.contains(&key) {
                applied_before_crash += 1;
            } else {
                applied_on_retry += 1;
            }
            let first = disk
                .ledger
                .execute(*role, std::slice::from_ref(request))
                .remove(0);
            let again = disk
                .ledger
                .execute(*role, std::slice::from_ref(request))
                .remove(0);
            assert_eq!(
                first, again,
                "round {round}: retries of {} differ",
                request.id
            );
            let reply = first.outcome.unwrap_or_else(|refusal| {
                panic!(
                    "round {round}: retried {} refused {} ({})",
                    request.id, refusal.reason, refusal.message
                )
            });
            answers.push(reply);
        }

        // Exactly one record per request id, and one record per retried change more.
        let after = audit_keys(&*disk.store);
        for (role, request) in &batch {
            let key = (role.to_string(), request.id.clone());
            let count = after.iter().filter(|k| **k == key).count();
            assert_eq!(
                count, 1,
                "round {round}: {} has {count} records",
                request.id
            );
        }
        let unique: std::collections::HashSet<_> = after.iter().collect();
        assert_eq!(
            unique.len(),
            after.len(),
            "round {round}: a request id applied twice"
        );

        // The effects, once each: one check-in, two more uses, one more voucher.
        let voucher_of = |n: usize| match &batch[n].1.op {
            Op::Checkin { voucher, .. } | Op::Redeem { voucher, .. } => *voucher,
            other => panic!("{other:?}"),
        };
        let first = disk.view(voucher_of(0));
        assert_eq!((first.state, first.checkins), (VoucherState::Completed, 1));
        assert_eq!(answers[2], Reply::Redeemed { uses_this_year: 2 });
        assert_eq!(answers[3], Reply::Redeemed { uses_this_year: 3 });
        for n in [2, 3] {
            assert_eq!(disk.view(voucher_of(n)).state, VoucherState::Redeemed);
        }
        let Reply::Issued { voucher } = answers[4] else {
            panic!("issue answered {:?}", answers[4]);
        };
        assert_eq!(disk.view(voucher).state, VoucherState::Issued);
        assert_eq!(
            disk.ledger.sizes().0 as u64,
            4 * (round + 1),
            "round {round}: three vouchers before the batch and one issued in it, per round"
        );
    }
    eprintln!(
        "{} requests in doubt over {ROUNDS} crashes: {applied_before_crash} were on disk before the crash, {applied_on_retry} applied on retry; each applied once",
        applied_before_crash + applied_on_retry
    );
}

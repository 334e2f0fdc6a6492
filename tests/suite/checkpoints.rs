//! Crashes between the parts of a change and of a checkpoint (issue 19): the
//! audit record is synced first, the state written without the log and
//! checkpointed later; start-up must rebuild exactly the acknowledged state.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::daemon::{serve, voucherd_ok, Daemon, Voucherctl};
use crate::common::id_number;

fn issue_json(n: u64) -> Value {
    json!({"id": format!("tail-{n}"), "op": "issue",
        "id_number": id_number(n), "category": "unemployed", "kind": "hr_services",
        "face_value_fen": 80000, "channel": "wechat", "district": "500101"})
}

/// One issue per frame until the daemon dies: the answers it gave (None once
/// voucherctl finds no daemon).
fn issue_until_the_crash(daemon: &Daemon, certs: &Path, most: u64) -> Vec<(u64, Value)> {
    let mut answered = Vec::new();
    for n in 1..=most {
        let line = format!("{}\n", issue_json(n));
        let output = daemon.ctl(certs, &["--as", "bureau", "batch"], Some(&line));
        let Some(answer) = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .and_then(|line| serde_json::from_str::<Value>(line).ok())
        else {
            return answered;
        };
        assert_eq!(answer["ok"], true, "{answer}");
        answered.push((n, answer));
    }
    panic!("the injected crash never came in {most} frames");
}

fn audit_head(daemon: &Daemon, certs: &Path) -> Value {
    let output = daemon.ctl(certs, &["--json", "audit", "head"], None);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

/// After the crash: the restarted daemon answers every acknowledged issue's
/// retry with its first answer, applies the unanswered ones at most once,
/// and its head and digest are what a replay of its audit export from an
/// empty ledger gives.
fn check_recovery(dir: &Path, acknowledged: &[(u64, Value)], sent: u64) {
    let (data, certs) = (dir.join("data"), dir.join("certs"));
    let restarted = serve(&data, &certs, &dir.join("log2"), &[], &[]);
    for (n, answer) in acknowledged {
        let retried = restarted
            .batch(&certs, "bureau", &[issue_json(*n)])
            .remove(0);
        assert_eq!(&retried, answer, "the retry of tail-{n} after the crash");
    }
    // The unanswered frame: its record may or may not be in the log; a retry
    // applies it once either way.
    let next = acknowledged.len() as u64 + 1;
    let retried = restarted
        .batch(&certs, "bureau", &[issue_json(next)])
        .remove(0);
    assert_eq!(retried["ok"], true, "{retried}");
    let again = restarted
        .batch(&certs, "bureau", &[issue_json(next)])
        .remove(0);
    assert_eq!(again, retried, "applied once, answered the same");
    let head = audit_head(&restarted, &certs);
    // The campaign record, then one record per issue applied.
    assert_eq!(head["seq"], json!(next + 1), "{head} after {sent} frames");
    restarted.stop().unwrap();
    let export = dir.join("audit.bin");
    voucherd_ok(&[
        "audit",
        "export",
        "--data",
        data.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    let replayed = voucherd_ok(&["replay", "--log", export.to_str().unwrap()]);
    let digest = head["state_digest"].as_str().unwrap();
    assert!(
        replayed.contains(digest),
        "replay from empty gives the live digest {digest}: {replayed}"
    );
    // And a third start, after a clean stop, opens the same state.
    let third = serve(&data, &certs, &dir.join("log3"), &[], &[]);
    let head_again = audit_head(&third, &certs);
    assert_eq!(
        (&head_again["seq"], &head_again["state_digest"]),
        (&head["seq"], &head["state_digest"])
    );
}

/// Checks: a kill between a group's synced audit write and its state write
/// (the state on disk is then behind the log) recovers the exact state.
/// How: `VOUCHERD_INJECT_CRASH_AFTER_LOG=5` aborts the daemon right after its
/// 5th synced log write (the campaign record is the 1st), with checkpoints
/// every 2 commits so the state on disk is a checkpoint, not empty.
#[test]
fn a_crash_between_the_audit_write_and_the_state_write_recovers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("log"),
        &[],
        &[
            ("VOUCHERD_INJECT_CRASH_AFTER_LOG", "5"),
            ("VOUCHERD_INJECT_CHECKPOINT_EVERY", "2"),
        ],
    );
    let acknowledged = issue_until_the_crash(&daemon, &certs, 10);
    assert_eq!(
        acknowledged.len(),
        3,
        "writes 2 to 4 answered, the 5th's never"
    );
    check_recovery(dir.path(), &acknowledged, 4);
}

/// Checks: a kill while a checkpoint (the atomic flush of the state with its
/// `applied_seq`) is being written recovers the exact state: either the
/// checkpoint is whole on disk or the previous one is, and the audit
/// records after it are re-applied.
/// How: checkpoints every commit (`VOUCHERD_INJECT_CHECKPOINT_EVERY=1`) and
/// an abort 5 ms into the 4th (`VOUCHERD_INJECT_CRASH_IN_CHECKPOINT=4`).
#[test]
fn a_crash_during_a_checkpoint_recovers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("log"),
        &[],
        &[
            ("VOUCHERD_INJECT_CRASH_IN_CHECKPOINT", "4"),
            ("VOUCHERD_INJECT_CHECKPOINT_EVERY", "1"),
        ],
    );
    let acknowledged = issue_until_the_crash(&daemon, &certs, 20);
    assert!(acknowledged.len() >= 2, "{acknowledged:?}");
    let sent = acknowledged.len() as u64 + 1;
    check_recovery(dir.path(), &acknowledged, sent);
}

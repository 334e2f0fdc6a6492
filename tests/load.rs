//! The load generator's small scenario against a real daemon process on port
//! 0: a few thousand operations, every answer as expected, and `stats` equal
//! to what the generator saw accepted (its exit code 0 says so).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_small_enrollment_peak_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_voucherd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--certs")
        .arg(&certs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("voucherd: listening on ")
        .expect("the daemon says where it listens")
        .to_owned();
    let report = dir.path().join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_voucher-load"))
        .args([
            "--server",
            &address,
            "--persons",
            "500",
            "--institutions",
            "30",
            "--connections",
            "4",
        ])
        .args([
            "--batch",
            "64",
            "--duration-s",
            "30",
            "--invalid-percent",
            "10",
            "--out",
        ])
        .arg(&report)
        .arg("--certs")
        .arg(&certs)
        .status()
        .unwrap();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(
        status.success(),
        "voucher-load reports a mismatch or an error: {status}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["redeems_accepted"], 1500, "500 persons × 3 uses");
    assert_eq!(report["checkins_accepted"], 500);
    assert_eq!(report["unexpected_answers"], 0);
    assert_eq!(report["consistency"]["ok"], true);
    assert!(
        report["refused"]["use_limit_reached"].as_u64().unwrap() > 0,
        "invalid operations were sent and refused"
    );
}

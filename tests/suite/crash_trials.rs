//! A few crash trials in CI: `voucher-crash` against the real `voucherd`
//! (`VOUCHERD_CRASH_TRIALS`, default 3; the seed of `common::seed()`); see docs/reliability.md.

use std::process::Command;

use crate::common::daemon::VOUCHERD;

fn voucher_crash() -> std::path::PathBuf {
    crate::common::daemon::tool("voucher-crash")
}

#[test]
fn acknowledged_operations_survive_kill_9_and_retries_apply_once() {
    let trials: u64 = std::env::var("VOUCHERD_CRASH_TRIALS")
        .ok()
        .map(|text| {
            text.trim()
                .parse()
                .expect("VOUCHERD_CRASH_TRIALS is a count")
        })
        .unwrap_or(3);
    let mut command = Command::new(voucher_crash());
    command.args([
        "--trials",
        &trials.to_string(),
        "--clients",
        "8",
        "--voucherd",
        VOUCHERD,
        "--seed",
        &crate::common::seed().to_string(),
    ]);
    let output = command.output().expect("voucher-crash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "crash trials failed (seeds above)");
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("summary: "))
        .expect("a summary line");
    assert!(
        summary.contains(&format!(
            "{trials} trials, {trials} passed, 0 failed, {trials} kills"
        )),
        "{summary}"
    );
    assert!(
        summary.contains("lost 0, invariant violations 0"),
        "{summary}"
    );
    // Item 2 happened: requests were in flight at the kills and were retried.
    let in_doubt: u64 = summary
        .split("; ")
        .find_map(|part| part.split_once(" in-doubt requests retried"))
        .and_then(|(count, _)| count.parse().ok())
        .expect("the in-doubt count");
    assert!(in_doubt > 0, "{summary}");
}

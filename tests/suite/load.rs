//! The load generator against a real daemon process on port 0.
//!
//! - The small scenario: a few thousand operations, every answer as expected,
//!   `stats` equal to what the generator saw accepted (its exit code 0 says
//!   so), and an SVG plot with one throughput point per second of the peak.
//! - `--find-max` on a tiny ladder: the steps and the step at half the maximum
//!   are reported (their figures are measured, not asserted: speed is
//!   reported, never asserted by timed tests), and the run stays consistent.
//! - `--find-max` refuses a setup too small for its steps before connecting.
//!
//! The generator's output is captured (its progress bars are hidden anyway
//! when stderr is not a terminal) and shown only when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::daemon::{describe, serve, Daemon};

fn voucher_load_binary() -> std::path::PathBuf {
    crate::common::daemon::tool("voucher-load")
}

/// A daemon on a new data folder in `dir`, and its certificate folder.
fn fresh_daemon(dir: &Path) -> (Daemon, PathBuf) {
    let certs = dir.join("certs");
    let log = dir.join("daemon.log");
    let daemon = serve(&dir.join("data"), &certs, &log, &[], &[]);
    (daemon, certs)
}

/// Runs voucher-load against `daemon` with `args`, then `--certs CERTS`.
fn voucher_load(daemon: &Daemon, certs: &Path, args: &[&str]) -> Output {
    Command::new(voucher_load_binary())
        .args(["--server", &daemon.addr.to_string()])
        .args(args)
        .arg("--certs")
        .arg(certs)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The point counts of the plot's polylines drawn in `colour` as series
/// (stroke width 2; the legend's samples are 1 px wide).
fn series_points(svg: &str, colour: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .filter(|element| element.contains(&format!("stroke=\"{colour}\" stroke-width=\"2\"")))
        .map(|element| {
            let points = element.split("points=\"").nth(1).expect("points");
            points[..points.find('"').unwrap()]
                .split_whitespace()
                .count()
        })
        .collect()
}

/// Checks the plot against the report: a valid SVG document whose throughput
/// line has one point per second of the peak, and whose p50 and p99 lines
/// have one point per second with answers.
fn check_plot(plot: &Path, report: &serde_json::Value) {
    let svg = std::fs::read_to_string(plot).expect("the plot is written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let seconds = report["per_second"].as_array().unwrap();
    let peak_s = report["peak_s"].as_f64().unwrap();
    assert_eq!(
        seconds.len(),
        (peak_s.ceil() as usize).max(1),
        "one entry per second of a {peak_s} s peak"
    );
    let answered: u64 = seconds
        .iter()
        .map(|s| s["operations"].as_u64().unwrap())
        .sum();
    assert_eq!(answered, report["operations"].as_u64().unwrap());
    let with_answers = seconds
        .iter()
        .filter(|s| !s["latency_ms"].is_null())
        .count();
    assert_eq!(series_points(&svg, "#0000FF"), vec![seconds.len()]);
    for colour in ["#00FF00", "#FF0000"] {
        assert_eq!(
            series_points(&svg, colour).iter().sum::<usize>(),
            with_answers,
            "latency line {colour}"
        );
    }
}

#[test]
fn a_small_enrollment_peak_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, certs) = fresh_daemon(dir.path());
    let report = dir.path().join("report.json");
    let plot = dir.path().join("peak.svg");
    let output = voucher_load(
        &daemon,
        &certs,
        &[
            "--persons",
            "500",
            "--institutions",
            "30",
            "--connections",
            "4",
            "--batch",
            "64",
            "--duration-s",
            "30",
            "--invalid-percent",
            "10",
            "--out",
            report.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    daemon.stop().expect("voucherd stops cleanly");
    assert!(
        output.status.success(),
        "{}",
        describe("voucher-load (mismatch or error)", &output)
    );
    let report = read_json(&report);
    assert_eq!(report["redeems_accepted"], 1500, "500 persons × 3 uses");
    assert_eq!(report["checkins_accepted"], 500);
    assert_eq!(report["unexpected_answers"], 0);
    assert_eq!(report["consistency"]["ok"], true);
    // Closed loop: a frame has no due time, so none left late.
    assert_eq!(report["departed_late_ms"]["max"], 0.0);
    assert!(
        report["refused"]["use_limit_reached"].as_u64().unwrap() > 0,
        "invalid operations were sent and refused"
    );
    check_plot(&plot, &report);
}

/// A ladder of 3 one-second steps from 200 ops/s: each step is reported; if
/// one passed, the step at half the maximum ran and its p99 is reported.
#[test]
fn find_max_reports_the_ladder_and_the_half_step() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, certs) = fresh_daemon(dir.path());
    let report = dir.path().join("report.json");
    let plot = dir.path().join("find-max.svg");
    let output = voucher_load(
        &daemon,
        &certs,
        &[
            "--persons",
            "400",
            "--institutions",
            "20",
            "--connections",
            "2",
            "--batch",
            "16",
            "--find-max",
            "--find-max-start",
            "200",
            "--find-max-steps",
            "3",
            "--step-s",
            "1",
            "--half-step-s",
            "2",
            "--p99-max-ms",
            "1000",
            "--out",
            report.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    daemon.stop().expect("voucherd stops cleanly");
    assert!(
        output.status.success(),
        "{}",
        describe("voucher-load --find-max", &output)
    );
    let report = read_json(&report);
    assert_eq!(report["consistency"]["ok"], true);
    let found = &report["find_max"];
    let ladder = found["ladder"].as_array().unwrap();
    assert!((1..=3).contains(&ladder.len()), "{found}");
    for (i, step) in ladder.iter().enumerate() {
        let target = 200.0 * 1.25f64.powi(i as i32);
        assert_eq!(step["target_ops_per_s"].as_f64().unwrap(), target);
        assert!(step["operations"].as_u64().unwrap() > 0, "step {i} sent");
        assert!(step["latency_ms"]["p99"].as_f64().is_some());
        // A frame leaves before it is answered, so how late frames left is
        // part of their latency: never above it at the same quantile.
        for q in ["p50", "p99", "max"] {
            let late = step["departed_late_ms"][q].as_f64().unwrap();
            assert!(
                late <= step["latency_ms"][q].as_f64().unwrap(),
                "{q}: {step}"
            );
        }
        // Every step but the last passed (the ladder stops at a failure).
        if i + 1 < ladder.len() {
            assert_eq!(step["passed"], true, "{step}");
        }
    }
    match found["max_sustainable_ops_per_s"].as_f64() {
        Some(max) => {
            let half = &found["half_max_step"];
            assert_eq!(half["target_ops_per_s"].as_f64().unwrap(), max / 2.0);
            // The half step runs for its own length, not the ladder's.
            assert_eq!(found["half_step_s"], 2.0);
            let wall_s = half["wall_s"].as_f64().unwrap();
            assert!((1.8..4.0).contains(&wall_s), "{half}");
            assert_eq!(found["p99_ms_at_half_max"], half["latency_ms"]["p99"]);
        }
        None => {
            assert_eq!(
                ladder.len(),
                1,
                "only a failing first step finds no maximum"
            );
            assert!(found["half_max_step"].is_null());
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("maximum sustainable rate"), "{stdout}");
    check_plot(&plot, &report);
}

/// The check happens before anything is sent: no daemon is needed.
#[test]
fn find_max_refuses_a_setup_too_small_for_its_steps() {
    let output = Command::new(voucher_load_binary())
        .args(["--server", "127.0.0.1:9", "--persons", "10", "--find-max"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe("voucher-load", &output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--find-max may need") && stderr.contains("raise --persons"),
        "{stderr}"
    );
}

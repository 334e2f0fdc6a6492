//! Metrics that tell the truth: the RocksDB sizes count every table's column
//! family, the refusal counters exist before the first refusal, the process
//! and free-space figures are there, and Prometheus' own `promtool` accepts
//! a scrape taken after load and the alert rules shipped in `ops/`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::daemon::{describe, free_port, sample, scrape, serve, Daemon};
use crate::operations::{enrol, scrape_until};
use voucherd::limits::STORAGE_FREE_BYTES_MIN;

/// Starts the daemon with metrics on a free loopback port.
fn start(dir: &Path, log: &str) -> (Daemon, u16) {
    let port = free_port();
    let daemon = serve(
        &dir.join("data"),
        &dir.join("certs"),
        &dir.join(log),
        &["--metrics", &format!("127.0.0.1:{port}")],
        &[],
    );
    (daemon, port)
}

/// `promtool` on the PATH, or None with a message saying the check is skipped
/// (`ops/install-deps.sh` installs it, so CI always has it).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!(
            "SKIPPED: promtool is absent (Debian package `prometheus`; run ops/install-deps.sh)"
        );
    }
    found.then_some("promtool")
}

/// Checks: a scrape right after start has the unlabelled counters at 0, the
/// process figures and the free-space gauge above the reserve; after writes
/// and a flush (the clean stop flushes every memtable) the next start reports
/// SST and live data sizes above 0. How: two real daemons on one data folder.
#[test]
fn sizes_grow_after_writes_and_counters_exist_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, port) = start(dir.path(), "log1");
    let first = scrape(port);
    for counter in [
        "voucherd_frames_refused_total",
        "voucherd_connections_refused_total",
    ] {
        assert_eq!(
            sample(&first, counter, &[]),
            Some(0.0),
            "{counter}:\n{first}"
        );
    }
    let body = scrape_until(port, |body| {
        for gauge in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "voucherd_storage_free_bytes",
        ] {
            match sample(body, gauge, &[]) {
                Some(value) if value > 0.0 => {}
                other => return Err(format!("{gauge} is {other:?}")),
            }
        }
        // metrics-process counts whole seconds of CPU: 0 for a new process.
        match sample(body, "process_cpu_seconds_total", &[]) {
            Some(_) => Ok(()),
            None => Err("no process_cpu_seconds_total".into()),
        }
    });
    assert_eq!(
        sample(&body, "voucherd_storage_reserve_bytes", &[]),
        Some(STORAGE_FREE_BYTES_MIN as f64)
    );
    assert!(
        sample(&body, "voucherd_storage_free_bytes", &[]).unwrap() > STORAGE_FREE_BYTES_MIN as f64
    );
    let sst_before = sample(&body, "voucherd_rocksdb_sst_files_bytes", &[]).unwrap();
    enrol(&daemon, &dir.path().join("certs"));
    daemon.stop().expect("voucherd stops cleanly");

    let (daemon, port) = start(dir.path(), "log2");
    scrape_until(port, |body| {
        for gauge in [
            "voucherd_rocksdb_sst_files_bytes",
            "voucherd_rocksdb_live_data_bytes",
        ] {
            match sample(body, gauge, &[]) {
                Some(value) if value > sst_before => {}
                other => return Err(format!("{gauge} is {other:?}, not above {sst_before}")),
            }
        }
        // Set after the sizes in the same pass of the sampler: a scrape
        // between the two can see the sizes without it.
        sample(body, "voucherd_rocksdb_pending_compaction_bytes", &[])
            .map(|_| ())
            .ok_or_else(|| "no pending compaction bytes yet".to_owned())
    });
    daemon.stop().expect("voucherd stops cleanly");
}

/// Checks: `promtool check metrics` finds nothing to say about a scrape taken
/// after operations, refusals included, and `promtool check rules` accepts
/// every rule file in `ops/prometheus`. How: the real daemon, the real tool.
#[test]
fn promtool_accepts_a_scrape_after_load_and_the_alert_rules() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (daemon, port) = start(dir.path(), "log");
    enrol(&daemon, &dir.path().join("certs"));
    let body = scrape_until(port, |body| {
        match sample(body, "voucherd_audit_sequence", &[]) {
            Some(8.0) => Ok(()),
            other => Err(format!("audit sequence {other:?}")),
        }
    });
    daemon.stop().expect("voucherd stops cleanly");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "{}\nscrape:\n{body}",
        describe("promtool check metrics", &output)
    );

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/prometheus/voucherd-alerts.yml");
    let output = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        describe("promtool check rules", &output)
    );
}

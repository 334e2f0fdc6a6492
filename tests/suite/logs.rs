//! What the daemon writes for a log collector: with `--log-json` every line
//! it prints, on stdout and stderr, is JSON (the journal mixes the two),
//! from the start to a clean stop and on a refused start; without it, no
//! ANSI colour codes reach a file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::daemon::{serve, VOUCHERD};
use voucherd_load::kit::daemon::PROCESS_TIMEOUT as DAEMON_TIMEOUT;

/// What a `voucherd serve --log-json` run printed: stdout lines, stderr
/// lines, and the exit code. `stop` sends SIGTERM once the daemon listens.
fn serve_json(dir: &Path, stop: bool) -> (Vec<String>, Vec<String>, Option<i32>) {
    let log = dir.join("json.log");
    crate::common::daemon::make_certs(&dir.join("certs"), &[]);
    let mut child = Command::new(VOUCHERD)
        .args(["serve", "--log-json", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--certs")
        .arg(dir.join("certs"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("voucherd starts");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = Vec::new();
    let pid = child.id().to_string();
    for line in stdout.lines() {
        let line = line.unwrap();
        let listening = line.contains("listening");
        out.push(line);
        if listening && stop {
            let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            assert!(status.success());
        }
    }
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DAEMON_TIMEOUT {
            let _ = child.kill();
            panic!("voucherd did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (out, err, status.code())
}

fn assert_all_json(what: &str, lines: &[String]) {
    for line in lines {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("a {what} line that is not JSON ({e}): {line}"));
    }
}

/// Checks: with `--log-json`, every stdout and stderr line of a start, a
/// clean stop and a start refused on corrupt data parses as JSON, and the
/// address and the refusal are in them. How: the real binary, both streams
/// captured, no terminal.
#[test]
fn with_log_json_every_line_on_stdout_and_stderr_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let (out, err, code) = serve_json(dir.path(), true);
    assert_eq!(code, Some(0), "stdout {out:?}\nstderr {err:?}");
    assert_all_json("stdout", &out);
    assert_all_json("stderr", &err);
    assert!(
        out.iter()
            .any(|line| line.contains("\"listening\":\"127.0.0.1:")),
        "{out:?}"
    );
    assert!(
        err.iter()
            .any(|line| line.contains("\"message\":\"listening\"")),
        "{err:?}"
    );
    assert!(err.len() > 3, "{err:?}");

    let key = dir.path().join("data").join("person.key");
    std::fs::write(&key, b"short").unwrap();
    let (out, err, code) = serve_json(dir.path(), false);
    assert_eq!(
        code,
        Some(i32::from(voucherd::admin::daemon::EXIT_CORRUPT_DATA))
    );
    assert_all_json("stdout", &out);
    assert_all_json("stderr", &err);
    assert!(
        err.iter().any(|line| line.contains("corrupt data")),
        "{err:?}"
    );
}

/// Checks: human logs written to a file carry no ANSI escape codes (colours
/// are for a terminal only). How: stderr redirected to a file, as under a
/// service manager or `2>log`.
#[test]
fn human_logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let daemon = serve(
        &dir.path().join("data"),
        &dir.path().join("certs"),
        &log,
        &[],
        &[],
    );
    daemon.stop().expect("voucherd stops cleanly");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ledger recovered"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a file:\n{text}"
    );
}

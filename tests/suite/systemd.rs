//! The daemon under systemd: the unit in `ops/systemd` passes
//! `systemd-analyze verify` and says what the daemon does (`Type=notify`, no
//! restart on corrupt data, the backup folder made before use, the runbook
//! where `Documentation=` points); the daemon sends READY=1 to
//! `$NOTIFY_SOCKET` only once it listens, STOPPING=1 at SIGTERM, and exits
//! with its own code, never ready, on corrupt data.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{describe, serve, VOUCHERD};
use voucherd::admin::daemon::EXIT_CORRUPT_DATA;
use voucherd_load::kit::daemon::PROCESS_TIMEOUT as DAEMON_TIMEOUT;

fn unit_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/systemd/voucherd.service"),
    )
    .unwrap()
}

/// The values of `key=` lines in the unit (comments skipped).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// Checks: `systemd-analyze verify` accepts the unit (with the binary path
/// it names pointing at the built daemon), and the unit's lines agree with
/// the daemon and the runbook. How: a copy of the unit in a temporary folder.
#[test]
fn the_unit_verifies_and_matches_the_daemon() {
    let unit = unit_text();
    assert_eq!(unit_values(&unit, "Type"), ["notify"]);
    assert_eq!(
        unit_values(&unit, "RestartPreventExitStatus"),
        [EXIT_CORRUPT_DATA.to_string()]
    );
    // A deposed leader exits 75 (D100 keeps that exit): the unit restarts
    // it (a failure, not prevented) and it comes back as a standby.
    assert_eq!(unit_values(&unit, "Restart"), ["on-failure"]);
    assert_ne!(
        voucherd::replica::EXIT_STEPPED_DOWN,
        EXIT_CORRUPT_DATA,
        "a stepped-down node must be restarted"
    );
    // The backup folder the runbook writes to is made before first use,
    // owned by the service user, and opened to the sandboxed daemon.
    let runbook =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/runbook.md"))
            .unwrap();
    assert!(runbook.contains("--out /var/backups/voucherd/"));
    let pre = unit_values(&unit, "ExecStartPre");
    assert!(
        pre.iter().any(
            |line| line.starts_with("+/usr/bin/install -d -o voucherd -g voucherd")
                && line.ends_with(" /var/backups/voucherd")
        ),
        "{pre:?}"
    );
    let writable = unit_values(&unit, "ReadWritePaths").join(" ");
    assert!(
        writable
            .split(' ')
            .any(|path| path == "/var/backups/voucherd"),
        "{writable}"
    );
    // The runbook is installed where Documentation= points.
    let documentation = unit_values(&unit, "Documentation");
    let doc_path = documentation[0].strip_prefix("file://").unwrap();
    assert!(
        unit.contains(&format!("install -D -m 0644 ops/runbook.md {doc_path}")),
        "no install line for {doc_path}"
    );

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is absent (Debian package `systemd`)");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("voucherd.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/voucherd", VOUCHERD)).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        describe("systemd-analyze verify", &output)
    );
}

/// A daemon process killed when the test ends, passed or not.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `voucherd serve` on `listen` with `NOTIFY_SOCKET` set, stderr to `log`.
fn serve_notifying(dir: &Path, listen: &str, socket: &Path, log: &Path) -> Serving {
    crate::common::daemon::make_certs(&dir.join("certs"), &[]);
    let child = Command::new(VOUCHERD)
        .args(["serve", "--listen", listen, "--data"])
        .arg(dir.join("data"))
        .arg("--certs")
        .arg(dir.join("certs"))
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("voucherd starts");
    Serving(child)
}

/// The next datagram on `socket`, waiting at most `DAEMON_TIMEOUT`.
fn next_notice(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(DAEMON_TIMEOUT)).unwrap();
    let mut buffer = [0u8; 4096];
    let length = socket
        .recv(&mut buffer)
        .expect("a notice from voucherd on NOTIFY_SOCKET");
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

fn wait_exit(child: &mut Serving) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < DAEMON_TIMEOUT, "voucherd did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP port on loopback free right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Checks: READY=1 arrives only after recovery and once the QUIC port is
/// bound (a socket on the same port cannot be bound any more, and the log
/// already says the ledger was recovered), STOPPING=1 follows SIGTERM, exit 0.
/// How: the test plays systemd with a Unix datagram socket.
#[test]
fn ready_is_sent_once_the_daemon_listens_and_stopping_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let port = free_udp_port();
    let log = dir.path().join("log");
    let mut child = serve_notifying(dir.path(), &format!("127.0.0.1:{port}"), &socket_path, &log);
    let notice = next_notice(&socket);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(notice.lines().any(|line| line == "READY=1"), "{notice}");
    assert!(
        notice.contains(&format!("STATUS=listening on 127.0.0.1:{port}")),
        "{notice}"
    );
    let taken = std::net::UdpSocket::bind(("127.0.0.1", port));
    assert!(
        taken.is_err(),
        "READY=1 came before the daemon bound its port; log:\n{text}"
    );
    assert!(text.contains("ledger recovered"), "{text}");
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(next_notice(&socket).trim_end(), "STOPPING=1");
    assert!(wait_exit(&mut child).success());
}

/// Checks: a start on corrupt data exits with `EXIT_CORRUPT_DATA` (the code
/// the unit's `RestartPreventExitStatus=` names) and never says READY=1.
/// How: a data folder whose person key lost a byte.
#[test]
fn corrupt_data_exits_with_its_own_code_and_never_says_ready() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = serve(
        &dir.path().join("data"),
        &dir.path().join("certs"),
        &dir.path().join("log0"),
        &[],
        &[],
    );
    daemon.stop().expect("voucherd stops cleanly");
    let key = dir.path().join("data").join("person.key");
    let bytes = std::fs::read(&key).unwrap();
    std::fs::write(&key, &bytes[..31]).unwrap();

    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let log = dir.path().join("log");
    let mut child = serve_notifying(dir.path(), "127.0.0.1:0", &socket_path, &log);
    let status = wait_exit(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_CORRUPT_DATA)),
        "log:\n{text}"
    );
    assert!(text.contains("corrupt data"), "{text}");
    socket.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 4096];
    match socket.recv(&mut buffer) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a notice from a daemon that never started: {other:?}"),
    }
}

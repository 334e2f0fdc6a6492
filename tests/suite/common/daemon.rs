//! The real binaries as child processes: `voucherd serve` on 127.0.0.1:0 with
//! extra flags and environment, and `voucherctl`/`voucherd` tool runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const VOUCHERD: &str = env!("CARGO_BIN_EXE_voucherd");
pub const VOUCHERCTL: &str = env!("CARGO_BIN_EXE_voucherctl");

/// A binary of the workspace's tool package (`voucher-load`, `voucher-crash`),
/// beside the daemon's binaries in the target folder: `cargo test --workspace`
/// builds it before any test runs (cargo gives a package's tests only its own
/// binaries' paths).
pub fn tool(name: &str) -> std::path::PathBuf {
    let path = Path::new(VOUCHERD).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins`",
        path.display()
    );
    path
}
/// How long the daemon may take to start listening or to exit.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `voucherd serve --listen 127.0.0.1:0 --data DATA --certs CERTS ARGS`
    /// with `env`, and waits for its `voucherd: listening on ADDR` line. A
    /// certificate folder without a CA gets development certificates first
    /// (`voucherd certs`, with the `--campaign` of ARGS if any).
    pub fn start(
        data: &Path,
        certs: &Path,
        log: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        make_certs(certs, args);
        let mut command = Command::new(VOUCHERD);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--certs")
            .arg(certs)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("voucherd starts");
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let started = Instant::now();
        let addr = loop {
            let left = DAEMON_TIMEOUT.saturating_sub(started.elapsed());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("voucherd: listening on ") {
                        break addr.trim().to_owned();
                    }
                }
                Err(error) => {
                    let _ = child.kill();
                    panic!(
                        "voucherd did not report its address ({error}); log:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
        };
        Daemon {
            child,
            addr,
            log: log.to_owned(),
        }
    }

    /// SIGTERM, then waits for exit 0.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "voucherd exited with {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(started.elapsed() < DAEMON_TIMEOUT, "voucherd did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > DAEMON_TIMEOUT {
                let _ = self.child.kill();
                panic!(
                    "voucherd did not exit within {DAEMON_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Runs `voucherctl --server ADDR --certs CERTS ARGS` with `stdin`.
    pub fn ctl(&self, certs: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        ctl(&self.addr, certs, args, stdin)
    }

    /// `voucherctl batch --as ROLE` over JSON lines; the JSON answers.
    pub fn batch(
        &self,
        certs: &Path,
        role: &str,
        lines: &[serde_json::Value],
    ) -> Vec<serde_json::Value> {
        let input: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let output = self.ctl(certs, &["--as", role, "batch"], Some(&input));
        assert!(
            matches!(output.status.code(), Some(0 | 3)),
            "{}",
            describe("batch", &output)
        );
        text(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

/// `voucherd certs --out CERTS` (with the `--campaign` of `serve_args`) when
/// the folder has no CA yet: `serve --certs` makes none.
pub fn make_certs(certs: &Path, serve_args: &[&str]) {
    if certs.join("ca.pem").exists() {
        return;
    }
    let mut args = vec!["certs", "--out", certs.to_str().unwrap()];
    if let Some(at) = serve_args.iter().position(|arg| *arg == "--campaign") {
        args.extend(["--campaign", serve_args[at + 1]]);
    }
    voucherd_ok(&args);
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `voucherctl --server ADDR --certs CERTS ARGS` with `stdin`.
pub fn ctl(addr: &str, certs: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(VOUCHERCTL);
    command
        .args(["--server", addr, "--certs"])
        .arg(certs)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn().expect("voucherctl starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(what: &str, output: &Output) -> String {
    format!(
        "{what}: {}\nstdout:\n{}stderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Runs `voucherd ARGS` (a tool, not the daemon) and expects exit 0; returns stdout.
pub fn voucherd_ok(args: &[&str]) -> String {
    let output = Command::new(VOUCHERD).args(args).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        describe(&format!("voucherd {args:?}"), &output)
    );
    text(&output.stdout)
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` over HTTP/1.0; the body.
pub fn scrape(port: u16) -> String {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_owned()
}

/// The value of one Prometheus sample, found by name and labels (any order).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let mut found: Vec<(String, String)> = label_text
                .split("\",")
                .filter(|part| !part.is_empty())
                .filter_map(|part| {
                    let (k, v) = part.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            let mut wanted: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            found.sort();
            wanted.sort();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
}

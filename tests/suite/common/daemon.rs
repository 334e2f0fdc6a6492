//! The real binaries as child processes: `voucherd serve` on 127.0.0.1:0 with
//! extra flags and environment (the kit's `Daemon`), and `voucherctl`/`voucherd`
//! tool runs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub use voucherd_load::kit::daemon::Daemon;
use voucherd_load::kit::daemon::Launch;

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
/// Starts `voucherd serve --listen 127.0.0.1:0 --data DATA --certs CERTS ARGS`
/// (`RUST_LOG=info`, then `env`) with stderr into `log`, and waits until it
/// listens: the kit's one process wrapper, on this package's binary.
pub fn serve(data: &Path, certs: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    Launch::new(Path::new(VOUCHERD), data, certs, log)
        .args(args)
        .envs(env)
        .start()
        .unwrap_or_else(|error| panic!("{error:#}"))
}

/// Development certificates in `certs` unless it has a CA (`voucherd certs`).
pub fn make_certs(certs: &Path, serve_args: &[&str]) {
    let args: Vec<String> = serve_args.iter().map(|arg| arg.to_string()).collect();
    voucherd_load::kit::daemon::make_certs(Path::new(VOUCHERD), certs, &args)
        .unwrap_or_else(|error| panic!("{error:#}"));
}

/// `voucherctl` against a running daemon.
pub trait Voucherctl {
    /// Runs `voucherctl --server ADDR --certs CERTS ARGS` with `stdin`.
    fn ctl(&self, certs: &Path, args: &[&str], stdin: Option<&str>) -> Output;

    /// `voucherctl batch --as ROLE` over JSON lines; the JSON answers.
    fn batch(
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

impl Voucherctl for Daemon {
    fn ctl(&self, certs: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        ctl(&self.addr.to_string(), certs, args, stdin)
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
    voucherd_load::kit::daemon::tool(Path::new(VOUCHERD), args)
        .unwrap_or_else(|error| panic!("{error:#}"))
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
    http_get(port, "/metrics")
}

/// The body of `GET path` on the metrics port (HTTP/1.0); the status must be 200.
pub fn http_get(port: u16, path: &str) -> String {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
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

/// The days of the default campaign a test daemon runs now (it reads the
/// system clock): a class over them is open for redeems (D51).
pub fn class_days_now() -> (String, String) {
    use voucherd::domain::time::Clock;
    let now = voucherd::domain::time::SystemClock.now();
    let year = voucherd::domain::campaign::Campaign::default_for(now).year;
    (format!("{}-12-01", year - 1), format!("{year}-11-30"))
}

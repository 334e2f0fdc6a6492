//! The one process wrapper of `voucherd serve`: starts it on 127.0.0.1:0 (a
//! free port the daemon picks and reports) with a data folder and
//! certificates, waits for its `voucherd: listening on ADDR` line, and kills
//! (`kill -9`), restarts, stops (SIGTERM) or waits for it. Its stderr goes to a
//! log file (kept across restarts), its stdout lines are kept in memory.
//!
//! The binary is a parameter: the tests pass `env!("CARGO_BIN_EXE_voucherd")`,
//! `voucher-crash` its `--voucherd` flag. Failures are errors carrying the
//! log; a test unwraps them.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// How long the daemon may take to report its address or to exit.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `stop` and `wait` look whether the daemon has exited.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// Lines of stdout kept (the daemon prints a handful).
const STDOUT_LINES_MAX: usize = 10_000;

/// How to start the daemon: `VOUCHERD serve --listen 127.0.0.1:0 --data DATA
/// --certs CERTS ARGS` with `RUST_LOG=info` and `env`, stderr into `log`.
#[derive(Clone, Debug)]
pub struct Launch {
    pub voucherd: PathBuf,
    pub data: PathBuf,
    pub certs: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    /// Set after `RUST_LOG=info`, so a `RUST_LOG` here wins.
    pub env: Vec<(String, String)>,
}

impl Launch {
    pub fn new(voucherd: &Path, data: &Path, certs: &Path, log: &Path) -> Launch {
        Launch {
            voucherd: voucherd.to_owned(),
            data: data.to_owned(),
            certs: certs.to_owned(),
            log: log.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds arguments after `serve`'s own.
    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Adds environment variables.
    pub fn envs(mut self, env: &[(&str, &str)]) -> Launch {
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Starts the daemon (a new log) and waits until it listens.
    /// Starts the daemon. A certificate folder without a CA first gets
    /// development certificates (`voucherd certs`, with the `--campaign` of
    /// the arguments if any): `serve --certs DIR` makes none of its own.
    pub fn start(self) -> anyhow::Result<Daemon> {
        make_certs(&self.voucherd, &self.certs, &self.args)?;
        std::fs::File::create(&self.log)
            .with_context(|| format!("create {}", self.log.display()))?;
        let (child, addr, stdout) = spawn(&self)?;
        Ok(Daemon {
            launch: self,
            child,
            addr,
            stdout,
        })
    }
}

/// Stdout lines, shared with the thread that drains the pipe.
type Lines = Arc<Mutex<Vec<String>>>;

/// A running `voucherd serve`; killed (if still running) when dropped.
pub struct Daemon {
    launch: Launch,
    child: Child,
    /// Where it listens (a new port after each restart).
    pub addr: SocketAddr,
    stdout: Lines,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr so far, every run since `start`.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.launch.log).unwrap_or_default()
    }

    /// Its stdout lines so far, of this run.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    /// SIGKILL (`kill -9`): no shutdown at all; returns once it is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("kill -9 voucherd")?;
        self.child.wait().context("wait for voucherd")?;
        Ok(())
    }

    /// Starts it again on the same data folder and certificates (after `kill`
    /// or `stop`; kills it first if it still runs), appending to the log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.kill()?;
        }
        let (child, addr, stdout) = spawn(&self.launch)?;
        (self.child, self.addr, self.stdout) = (child, addr, stdout);
        Ok(())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid")?;
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("SIGTERM: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGTERM, then waits for it to exit 0 (an error with the log otherwise).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()?;
        let status = self.wait()?;
        if !status.success() {
            bail!("voucherd exited with {status}; log:\n{}", self.log());
        }
        Ok(())
    }

    /// Its exit status if it has exited (on its own or killed), else `None`.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `PROCESS_TIMEOUT` for it to exit on its own (kills it then).
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > PROCESS_TIMEOUT {
                let _ = self.kill();
                bail!(
                    "voucherd did not exit within {PROCESS_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// Its resident set size, bytes (from /proc).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes_of(self.pid()).ok_or_else(|| anyhow!("no VmRSS for pid {}", self.pid()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The resident set size of process `pid`, bytes; None if it is gone.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Spawns `voucherd serve` and waits for its address; stderr appends to the log.
fn spawn(launch: &Launch) -> anyhow::Result<(Child, SocketAddr, Lines)> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("open {}", launch.log.display()))?;
    let mut command = Command::new(&launch.voucherd);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&launch.data)
        .arg("--certs")
        .arg(&launch.certs)
        .args(&launch.args)
        .env("RUST_LOG", "info")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = command
        .spawn()
        .with_context(|| format!("start {} serve", launch.voucherd.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (lines, received) = mpsc::channel();
    {
        let kept = Arc::clone(&kept);
        // Drains stdout to its end so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut kept = kept.lock().expect("stdout lines");
                    if kept.len() < STDOUT_LINES_MAX {
                        kept.push(line.clone());
                    }
                }
                let _ = lines.send(line);
            }
        });
    }
    let started = Instant::now();
    loop {
        let left = PROCESS_TIMEOUT.saturating_sub(started.elapsed());
        match received.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = listening_address(&line) {
                    let addr = addr
                        .parse()
                        .with_context(|| format!("voucherd's address in {line:?}"))?;
                    return Ok((child, addr, kept));
                }
            }
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "voucherd did not report its address ({error}); log:\n{}",
                    std::fs::read_to_string(&launch.log).unwrap_or_default()
                );
            }
        }
    }
}

/// Runs `voucherd ARGS` as a tool (not the daemon) to its end; its stdout.
/// An error, with stdout and stderr, on a non-zero exit.
pub fn tool<S: AsRef<OsStr> + std::fmt::Debug>(
    voucherd: &Path,
    args: &[S],
) -> anyhow::Result<String> {
    let output = Command::new(voucherd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run voucherd {args:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "voucherd {args:?} exited {}: stdout:\n{stdout}stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// The address in the daemon's listening line on stdout:
/// `voucherd: listening on ADDR`, or `{"listening":"ADDR"}` with `--log-json`.
pub fn listening_address(line: &str) -> Option<String> {
    if let Some(addr) = line.strip_prefix("voucherd: listening on ") {
        return Some(addr.trim().to_owned());
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(value.get("listening")?.as_str()?.to_owned())
}

/// `voucherd certs --out CERTS` (with the `--campaign` of `serve_args`) when
/// the folder has no CA yet.
pub fn make_certs(voucherd: &Path, certs: &Path, serve_args: &[String]) -> anyhow::Result<()> {
    if certs.join("ca.pem").exists() {
        return Ok(());
    }
    let mut command = Command::new(voucherd);
    command.args(["certs", "--out"]).arg(certs);
    if let Some(at) = serve_args.iter().position(|arg| arg == "--campaign") {
        if let Some(campaign) = serve_args.get(at + 1) {
            command.args(["--campaign", campaign]);
        }
    }
    let output = command
        .output()
        .with_context(|| format!("run {} certs", voucherd.display()))?;
    if !output.status.success() {
        bail!(
            "voucherd certs --out {} failed: {}",
            certs.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

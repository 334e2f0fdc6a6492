//! The one wrapper of `ops/nats-cluster.sh`: a three-node JetStream cluster
//! on loopback (its own ports and folder) for replicated mode's tests and
//! trials, stopped when dropped; single nodes can be killed and restarted.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// Tries at free ports before giving up (another test may take them first).
const PORT_TRIES_MAX: usize = 8;

/// The workspace's folder (where `ops/` and `.venv/` are).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("load-test/ is in the workspace")
        .to_owned()
}

/// The nats-server the script would run, if there is one: `./.venv`'s
/// (`ops/install-deps.sh`), else one on PATH.
pub fn server() -> Option<PathBuf> {
    let venv = workspace().join(".venv/bin/nats-server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    })
}

pub struct Cluster {
    dir: PathBuf,
    /// The first client port; nodes listen on it and the next two.
    pub port: u16,
    /// `nats://127.0.0.1:P,...`, what `voucherd serve --replicate` takes.
    pub urls: String,
}

/// A loopback port base with `port..port+3` and `port+10..port+13` free now.
fn free_base() -> u16 {
    loop {
        let base = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(20_000);
        if base > 60_000 {
            continue;
        }
        let free = (0..3)
            .chain(10..13)
            .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if free {
            return base;
        }
    }
}

impl Cluster {
    /// Starts the three nodes under `dir` on free ports and waits for a
    /// JetStream metadata leader.
    pub fn start(dir: &Path) -> anyhow::Result<Cluster> {
        let script = workspace().join("ops/nats-cluster.sh");
        let mut failure = String::new();
        for _ in 0..PORT_TRIES_MAX {
            let port = free_base();
            let output = Command::new(&script)
                .arg("start")
                .arg(dir)
                .arg(port.to_string())
                .output()
                .with_context(|| format!("run {}", script.display()))?;
            if output.status.success() {
                let urls = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                return Ok(Cluster {
                    dir: dir.to_owned(),
                    port,
                    urls,
                });
            }
            failure = String::from_utf8_lossy(&output.stderr).into_owned();
            let _ = Command::new(&script).arg("stop").arg(dir).status();
            let _ = std::fs::remove_dir_all(dir);
        }
        bail!("the NATS cluster did not start: {failure}")
    }

    /// The pid of node `n` (1 to 3) as the script wrote it.
    pub fn pid(&self, n: usize) -> anyhow::Result<u32> {
        let path = self.dir.join(format!("n{n}.pid"));
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Ok(text.trim().parse()?)
    }

    /// `kill -9` of node `n`.
    pub fn kill(&self, n: usize) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-9", &self.pid(n)?.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -9 of NATS node {n} failed");
        }
        Ok(())
    }

    /// Starts node `n` again on its own config and store.
    pub fn restart(&self, n: usize) -> anyhow::Result<()> {
        let server = server().context("nats-server is missing")?;
        let log = std::fs::File::options()
            .append(true)
            .create(true)
            .open(self.dir.join(format!("n{n}.log")))?;
        let child = Command::new(server)
            .arg("-c")
            .arg(self.dir.join(format!("n{n}.conf")))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        std::fs::write(self.dir.join(format!("n{n}.pid")), child.id().to_string())?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("ops/nats-cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

//! `voucherd`: the daemon (`serve`) and the offline tools (`audit`, `replay`, `certs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Blocks under `SMALL_BYTES_MAX` come from mimalloc, larger ones from
/// glibc's malloc (D118). A frame allocates and frees many small buffers,
/// some freed on another thread, where glibc spent about a tenth of the
/// daemon's CPU (arena locks, consolidation); the indexes' large blocks
/// (chunks, tables, lists) stay with glibc, whose `malloc_trim` hands back
/// what start-up freed: with mimalloc for every block the daemon held 125
/// bytes a voucher at 10 million instead of 96.
struct Split;

/// The largest block mimalloc serves, bytes.
const SMALL_BYTES_MAX: usize = 16 * 1024;

fn small(layout: std::alloc::Layout) -> bool {
    layout.size() <= SMALL_BYTES_MAX
}

// SAFETY: each block is freed (or grown) by the allocator that made it:
// the layout given back to `dealloc` and `realloc` is the one it was made
// with, and `small` decides by that size alone.
unsafe impl std::alloc::GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if small(layout) {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            unsafe { std::alloc::System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if small(layout) {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: std::alloc::Layout) {
        if small(layout) {
            unsafe { mimalloc::MiMalloc.dealloc(block, layout) }
        } else {
            unsafe { std::alloc::System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let grown = unsafe { std::alloc::Layout::from_size_align_unchecked(size, layout.align()) };
        match (small(layout), small(grown)) {
            (true, true) => unsafe { mimalloc::MiMalloc.realloc(block, layout, size) },
            (false, false) => unsafe { std::alloc::System.realloc(block, layout, size) },
            // Across the line: a new block from the other allocator.
            _ => unsafe {
                let new = self.alloc(grown);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(block, new, layout.size().min(size));
                    self.dealloc(block, layout);
                }
                new
            },
        }
    }
}

#[global_allocator]
static ALLOCATOR: Split = Split;

/// Hands mimalloc's free pages back to the system (after start-up's steps,
/// through `ledger::set_memory_returner`); glibc's are trimmed by the ledger.
fn collect_mimalloc() {
    // SAFETY: mi_collect only returns free pages of mimalloc, the allocator
    // of this binary's small blocks.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// What a command failed with; printed as the process exits 1.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A file error naming the file once (the OS error alone does not).
fn fail_path(what: &str, path: &std::path::Path, error: std::io::Error) -> Failure {
    format!("{what} {}: {error}", path.display()).into()
}

#[derive(Parser)]
#[command(
    name = "voucherd",
    version,
    about = "Redemption ledger for Chongqing's vocational training vouchers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: QUIC on 127.0.0.1:7443, data in ./voucherd-data,
    /// certificates in ./certs (development certificates are created there, with a
    /// warning, only when no folder is given and it has no CA).
    Serve(ServeArgs),
    /// Create a development CA, the server certificate and one client certificate per
    /// role; a folder that already has a CA is refused unless --force.
    Certs {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Campaign whose districts get a district-agency certificate each (default: embedded).
        #[arg(long)]
        campaign: Option<PathBuf>,
        /// Replace the CA and every key already in the folder (every client of a
        /// running deployment is then refused until it gets a new certificate).
        #[arg(long)]
        force: bool,
        /// Add one client certificate for this role (gateway, bureau, auditor,
        /// district:<code>), signed by the folder's existing CA; needs --name.
        #[arg(long, requires = "name", conflicts_with = "force")]
        role: Option<voucherd::domain::op::Role>,
        /// The added certificate's name: files <role>-<name>.pem/.key.
        #[arg(long, requires = "role")]
        name: Option<String>,
    },
    /// Check, export or inspect the audit chain of a data folder.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Take a consistent backup of a data folder into a new folder (0700), through
    /// the running daemon (its control socket) or directly when no daemon runs.
    /// The person key is left out unless --include-key: keep it apart.
    Backup {
        #[arg(long, default_value = "voucherd-data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Copy person.key into the backup too (it unlocks every ID-number hash).
        #[arg(long)]
        include_key: bool,
    },
    /// Check a backup, copy it into a new data folder, and check the copy.
    Restore {
        #[arg(long)]
        backup: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// The ledger's person.key, kept apart from a backup taken without it.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Rebuild the state from an audit export and print its digest.
    Replay {
        /// A binary export written by `voucherd audit export`.
        #[arg(long)]
        log: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (keys: listen, data, campaign, certs, metrics,
    /// denied_certificates, request_retention_hours, request_retention_seconds
    /// (development and load runs), replicate,
    /// replica_stream); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    data: Option<PathBuf>,
    /// Campaign file (default: the embedded 2021 rules on the next deadline to come).
    #[arg(long)]
    campaign: Option<PathBuf>,
    #[arg(long)]
    certs: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (loopback, e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Replicated mode: the JetStream cluster's NATS URLs, comma-separated
    /// (nats://HOST:PORT,...); off by default (docs/replication.md).
    #[arg(long, value_name = "URLS")]
    replicate: Option<String>,
    /// Replicated mode: the stream holding the audit log (default VOUCHERD).
    #[arg(long, value_name = "NAME")]
    replica_stream: Option<String>,
    /// Log as JSON lines instead of human text.
    #[arg(long)]
    log_json: bool,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every record's hash, sequence and link; report the first broken one.
    Verify {
        #[arg(long, default_value = "voucherd-data")]
        data: PathBuf,
    },
    /// Write the chain as a binary export (the form `replay` reads).
    Export {
        #[arg(long, default_value = "voucherd-data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    voucherd::ledger::set_memory_returner(collect_mimalloc);
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("voucherd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: never in a file or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves at SIGTERM or SIGINT. The handlers are installed now, before the
/// daemon says it is ready: a stop right after READY=1 (or the listening
/// line) is a clean stop, not the default action of a signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
    })
}

/// Tells systemd (`Type=notify`) how the start or the stop goes; nothing when
/// `NOTIFY_SOCKET` is unset (not started by systemd).
fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let json = args.log_json;
    init_logs(json);
    let mut config = match &args.config {
        Some(path) => voucherd::admin::daemon::DaemonConfig::from_file(path)?,
        None => voucherd::admin::daemon::DaemonConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Some(campaign) = args.campaign {
        config.campaign = Some(campaign);
    }
    if let Some(certs) = args.certs {
        config.certs = Some(certs);
    }
    if let Some(metrics) = args.metrics {
        config.metrics = Some(metrics);
    }
    if let Some(urls) = args.replicate {
        config.replicate = Some(urls);
    }
    if let Some(stream) = args.replica_stream {
        config.replica_stream = stream;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let shutdown = {
        let _context = runtime.enter();
        shutdown_signal()?
    };
    let served = runtime.block_on(voucherd::admin::daemon::run(
        config,
        |address| {
            tracing::info!(%address, "listening");
            // The line scripts wait for on stdout; JSON too with --log-json,
            // so a journal that mixes stdout and stderr holds only JSON.
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "listening": address.to_string() })
                );
            } else {
                println!("voucherd: listening on {address}");
            }
            // Recovery is done and the port is bound: systemd may start
            // what depends on the daemon (and `TimeoutStartSec` ends here).
            let status = format!("listening on {address}");
            notify_systemd(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&status),
            ]);
        },
        shutdown,
    ));
    let Err(error) = served else {
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        tracing::error!(%error, "voucherd stopped");
    } else {
        eprintln!("voucherd: {error}");
    }
    Ok(match error {
        // Damaged data stays damaged: a distinct code, so systemd does not
        // restart in a loop (`RestartPreventExitStatus=` in the unit).
        voucherd::error::Error::Corrupt(_) => {
            ExitCode::from(voucherd::admin::daemon::EXIT_CORRUPT_DATA)
        }
        _ => ExitCode::FAILURE,
    })
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Certs {
            out,
            role: Some(role),
            name: Some(name),
            ..
        } => {
            let cert = voucherd::net::tls::add_client(&out, role, &name)?;
            println!(
                "client certificate for {role} written to {} (key beside it, .key)",
                cert.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            out,
            campaign,
            force,
            ..
        } => {
            let config = voucherd::admin::daemon::DaemonConfig {
                campaign,
                ..Default::default()
            };
            let campaign =
                voucherd::admin::daemon::campaign(&config, &voucherd::domain::time::SystemClock)?;
            let districts: Vec<_> = campaign.districts.iter().map(|d| d.code).collect();
            if force {
                voucherd::net::tls::generate_replacing(&out, &districts)?;
            } else {
                voucherd::net::tls::generate(&out, &districts)?;
            }
            println!("development certificates written to {} (CA, server, gateway, bureau, auditor, {} districts)", out.display(), districts.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => match voucherd::admin::offline::verify(&data)? {
            Ok(verified) => {
                println!(
                    "audit chain verified: {} records, head {}",
                    verified.records,
                    hex::encode(verified.head_hash)
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(broken) => {
                println!("audit chain broken at {broken}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Audit {
            command: AuditCommand::Export { data, out },
        } => {
            let records = voucherd::admin::offline::export(&data, &out)?;
            println!("exported {records} audit records to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            data,
            out,
            include_key,
        } => {
            let manifest = voucherd::admin::backup::backup(&data, &out, include_key)?;
            println!(
                "backup of {} in {}: audit record {} (hash {})",
                data.display(),
                out.display(),
                manifest.audit_seq,
                manifest.audit_hash
            );
            if !include_key {
                println!(
                    "person.key is not in the backup: keep a copy of {} apart from the backups (restore --key FILE)",
                    data.join(voucherd::admin::data_dir::SECRET_FILE).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { backup, data, key } => {
            let checked = voucherd::admin::backup::restore(&backup, &data, key.as_deref())?;
            println!(
                "restored {} into {}: audit record {} (hash {}), {} vouchers, state_digest {}",
                backup.display(),
                data.display(),
                checked.manifest.audit_seq,
                checked.manifest.audit_hash,
                checked.vouchers,
                checked.state_digest
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { log } => {
            let file = std::io::BufReader::new(
                std::fs::File::open(&log).map_err(|e| fail_path("replay --log", &log, e))?,
            );
            match voucherd::admin::offline::replay(file)? {
                Ok(replayed) => {
                    println!("replayed {} records", replayed.records);
                    println!("state_digest {}", replayed.state_digest);
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("replay failed at {why}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SMALL_BYTES_MAX;

    /// This test binary allocates through `Split` too: a block grown across
    /// the line moves from mimalloc to glibc (and back when shrunk) with its
    /// bytes, and each is freed by the allocator that made it.
    #[test]
    fn blocks_keep_their_bytes_across_the_allocators_line() {
        let mut bytes: Vec<u8> = (0..SMALL_BYTES_MAX / 2).map(|i| i as u8).collect();
        bytes.extend((SMALL_BYTES_MAX / 2..SMALL_BYTES_MAX * 4).map(|i| i as u8));
        assert!(bytes.capacity() > SMALL_BYTES_MAX);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == i as u8));
        bytes.truncate(100);
        bytes.shrink_to_fit();
        assert!(bytes.capacity() <= SMALL_BYTES_MAX);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == i as u8));
        let zeroed = vec![0u64; SMALL_BYTES_MAX];
        assert!(zeroed.iter().all(|&word| word == 0));
    }
}

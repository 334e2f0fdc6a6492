//! The daemon's configuration (flags over a TOML file over defaults) and its
//! start-up: campaign, data folder, certificates, endpoint, serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use tracing::{info, warn};

use crate::admin::data_dir;
use crate::admin::telemetry;
use crate::domain::campaign::Campaign;
use crate::domain::time::{Clock, OffsetClock, SystemClock};
use crate::error::Error;
use crate::limits::{
    EXPIRE_CHECK_INTERVAL_MS, REQUEST_PRUNE_INTERVAL_MS, REQUEST_RETENTION_HOURS_DEFAULT,
    REQUEST_RETENTION_HOURS_MAX, REQUEST_RETENTION_PRODUCTION_MIN_S,
};
use crate::net::server;
use crate::net::tls::CertPaths;

pub const LISTEN_DEFAULT: &str = "127.0.0.1:7443";
pub const DATA_DEFAULT: &str = "voucherd-data";
pub const CERTS_DEFAULT: &str = "certs";

/// `voucherd serve`'s exit code when stored data failed a check (`Error::Corrupt`):
/// restarting cannot help, so the unit lists it in `RestartPreventExitStatus=`
/// (65 is sysexits' EX_DATAERR; 1 is any other failure, 2 a usage error).
pub const EXIT_CORRUPT_DATA: u8 = 65;

/// Everything `voucherd serve` needs. Every field has a default.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// UDP address to listen on (loopback by default).
    pub listen: SocketAddr,
    /// Data folder: RocksDB store, person-key secret, recorded campaigns.
    pub data: PathBuf,
    /// Campaign file; absent: the embedded 2021 rules on the next deadline to come.
    pub campaign: Option<PathBuf>,
    /// Certificate folder (ca.pem, server.pem/key). Absent: `./certs`, where
    /// development certificates are made (with a warning) when it has no CA.
    /// A folder given here or with `--certs` must hold a CA.
    pub certs: Option<PathBuf>,
    /// Loopback HTTP address of the Prometheus `/metrics` endpoint; absent: no metrics.
    pub metrics: Option<SocketAddr>,
    /// Revoked client certificates: SHA-256 of each one's DER, hex
    /// (`openssl x509 -in FILE -outform DER | sha256sum`). Refused at connection.
    pub denied_certificates: Vec<String>,
    /// How long a request id is remembered for retries, hours (1 to a
    /// year); older ids are pruned in the background and may be reused.
    pub request_retention_hours: u32,
    /// Development, tests and load runs only: the retention in seconds (1
    /// to a year), overriding `request_retention_hours`, so a run of
    /// minutes can show ids pruned. Under `REQUEST_RETENTION_PRODUCTION_MIN_S`
    /// start-up logs a warning: a gateway retrying later than that would
    /// have its request applied again (docs/decisions.md D84).
    pub request_retention_seconds: Option<u32>,
    /// Replicated mode (docs/replication.md): NATS URLs of the JetStream
    /// cluster, comma-separated. Absent (the default): the embedded
    /// single-node ledger, no NATS.
    pub replicate: Option<String>,
    /// Replicated mode: the JetStream stream holding the audit log.
    pub replica_stream: String,
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            listen: LISTEN_DEFAULT.parse().expect("literal"),
            data: DATA_DEFAULT.into(),
            campaign: None,
            certs: None,
            metrics: None,
            denied_certificates: Vec::new(),
            request_retention_hours: REQUEST_RETENTION_HOURS_DEFAULT,
            request_retention_seconds: None,
            replicate: None,
            replica_stream: crate::replica::STREAM_DEFAULT.to_owned(),
        }
    }
}

impl DaemonConfig {
    /// The deny-list as the server checks it; a malformed fingerprint is refused.
    pub fn admission(&self) -> Result<server::Admission, Error> {
        let mut denied = std::collections::HashSet::new();
        for fingerprint in &self.denied_certificates {
            let normal = fingerprint.replace(':', "").to_ascii_lowercase();
            if normal.len() != 64 || !normal.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::InvalidInput(format!(
                    "denied_certificates: {fingerprint:?} is not a SHA-256 fingerprint (64 hex digits)"
                )));
            }
            denied.insert(normal);
        }
        Ok(server::Admission {
            denied_fingerprints: denied,
        })
    }

    /// The request-id retention, seconds: `request_retention_seconds` when
    /// given (1 s to a year), else `request_retention_hours` (1 h to a
    /// year); out of range is refused.
    pub fn request_retention_s(&self) -> Result<i64, Error> {
        let max_s = REQUEST_RETENTION_HOURS_MAX * 3600;
        if let Some(seconds) = self.request_retention_seconds {
            if !(1..=max_s).contains(&seconds) {
                return Err(Error::InvalidInput(format!(
                    "request_retention_seconds: {seconds} is not between 1 and {max_s}"
                )));
            }
            return Ok(i64::from(seconds));
        }
        let hours = self.request_retention_hours;
        if !(1..=REQUEST_RETENTION_HOURS_MAX).contains(&hours) {
            return Err(Error::InvalidInput(format!(
                "request_retention_hours: {hours} is not between 1 and {REQUEST_RETENTION_HOURS_MAX}"
            )));
        }
        Ok(i64::from(hours) * 3600)
    }

    /// Reads a TOML config file (unknown keys are refused).
    pub fn from_file(path: &Path) -> Result<DaemonConfig, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidInput(format!("config {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
    }
}

/// The campaign the daemon runs: the file's, or the embedded default.
pub fn campaign(config: &DaemonConfig, clock: &dyn Clock) -> Result<Campaign, Error> {
    match &config.campaign {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::InvalidInput(format!("campaign {}: {e}", path.display())))?;
            Campaign::from_toml(&text)
                .map_err(|why| Error::InvalidInput(format!("{}: {why}", path.display())))
        }
        None => Ok(Campaign::default_for(clock.now())),
    }
}

/// Moves the daemon's clock (and voucher-load's) by this many seconds: a
/// measurement injection like `VOUCHERD_INJECT_CRASH_AFTER_LOG` (D42, D83),
/// so a deadline can pass on a real daemon. Unset in production.
pub const INJECT_CLOCK_OFFSET_ENV: &str = "VOUCHERD_INJECT_CLOCK_OFFSET_S";

/// The system clock, moved by `VOUCHERD_INJECT_CLOCK_OFFSET_S` when it is
/// set (with a warning); a value that is not a number is refused.
pub fn clock() -> Result<Arc<dyn Clock>, Error> {
    match std::env::var(INJECT_CLOCK_OFFSET_ENV) {
        Err(_) => Ok(Arc::new(SystemClock)),
        Ok(text) => {
            let offset_s: i64 = text.parse().map_err(|_| {
                Error::InvalidInput(format!(
                    "{INJECT_CLOCK_OFFSET_ENV}={text:?} is not a number of seconds"
                ))
            })?;
            warn!(
                offset_s,
                "the clock is moved by {INJECT_CLOCK_OFFSET_ENV}: for measurements only"
            );
            Ok(Arc::new(OffsetClock(offset_s)))
        }
    }
}

/// Runs the daemon until `shutdown` resolves. `ready` gets the bound address
/// once recovery is done and the endpoint (and the metrics port) listen.
pub async fn run(
    config: DaemonConfig,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let clock = clock()?;
    let admission = config.admission()?;
    let retention_s = config.request_retention_s()?;
    if retention_s < REQUEST_RETENTION_PRODUCTION_MIN_S {
        warn!(
            retention_s,
            "request ids are remembered for less than an hour (request_retention_seconds): \
             for development, tests and load runs only; a retry later than that is applied again"
        );
    }
    if !admission.denied_fingerprints.is_empty() {
        info!(
            denied = admission.denied_fingerprints.len(),
            "client certificates on the deny-list"
        );
    }
    let campaign = campaign(&config, clock.as_ref())?;
    let certs = config
        .certs
        .clone()
        .unwrap_or_else(|| PathBuf::from(CERTS_DEFAULT));
    let ca = CertPaths { dir: certs.clone() }.ca_cert();
    if !ca.exists() {
        if config.certs.is_some() {
            return Err(Error::InvalidInput(format!(
                "{} has no CA ({} is missing): make the deployment's certificates there, \
                 or `voucherd certs --out {}` for development ones",
                certs.display(),
                ca.display(),
                certs.display()
            )));
        }
        let districts: Vec<_> = campaign.districts.iter().map(|d| d.code).collect();
        crate::net::tls::generate(&certs, &districts)?;
        warn!(certs = %certs.display(), "created development certificates in the default folder; never use them in production");
    }
    info!(
        year = campaign.year,
        name = %campaign.name,
        deadline = %campaign.deadline_text(),
        districts = campaign.districts.len(),
        "campaign"
    );
    // The ports are bound before recovery, so a clash fails in a second,
    // not after recovering a large ledger; clients that arrive during
    // recovery wait in the endpoint's queue.
    let endpoint = server::endpoint(config.listen, &certs)?;
    let metrics_port = match config.metrics {
        Some(listen) => Some((
            listen,
            tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Error::InvalidInput(format!("metrics port {listen}: {e}")))?,
        )),
        None => None,
    };
    // Replicated mode seals the campaigns once it leads: a standby's chain
    // is the stream's, record for record.
    let mut opened = match &config.replicate {
        None => data_dir::open(&config.data, campaign, clock)?,
        Some(_) => data_dir::open_unsealed(&config.data, campaign, clock)?,
    };
    let fail_stop = tokio::spawn(exit_when_storage_fails(Arc::clone(&opened.ledger)));
    let (vouchers, persons, institutions) = opened.ledger.sizes();
    let (seq, _, digest) = opened.ledger.head();
    info!(vouchers, persons, institutions, audit_seq = seq, state_digest = %digest, data = %config.data.display(), "ledger recovered");
    let sampler = match metrics_port {
        Some((listen, port)) => {
            let handle = telemetry::install()?;
            info!(%listen, "metrics at http://{listen}/metrics, live report at http://{listen}/report");
            let sampler =
                telemetry::sample_forever(Arc::clone(&opened.ledger), Arc::clone(&opened.store));
            let http = crate::admin::http::serve(port, handle, Arc::clone(&opened.ledger));
            Some(tokio::spawn(async move {
                tokio::join!(sampler, http);
            }))
        }
        None => None,
    };
    let pruner = tokio::spawn(prune_requests_forever(
        Arc::clone(&opened.ledger),
        retention_s,
    ));
    let expirer = tokio::spawn(expire_forever(Arc::clone(&opened.ledger)));
    let control = tokio::spawn({
        let (data, store) = (config.data.clone(), Arc::clone(&opened.store));
        async move {
            if let Err(error) = crate::admin::backup::serve_control(data, store).await {
                tracing::error!(%error, "control socket stopped; online backups are unavailable");
            }
        }
    });
    let address = endpoint.local_addr()?;
    let replica = match &config.replicate {
        Some(urls) => Some(
            crate::replica::start(
                crate::replica::ReplicaConfig {
                    urls: urls.clone(),
                    stream: config.replica_stream.clone(),
                    advertise: address,
                },
                Arc::clone(&opened.ledger),
                Arc::clone(&opened.store),
            )
            .await?,
        ),
        None => None,
    };
    ready(address);
    server::serve_admitting(
        endpoint,
        Arc::clone(&opened.ledger),
        server::Limits::default(),
        admission,
        shutdown,
    )
    .await;
    for task in sampler
        .into_iter()
        .chain(replica)
        .chain([control, pruner, fail_stop, expirer])
    {
        task.abort();
        let _ = task.await;
    }
    let _ = std::fs::remove_file(config.data.join(crate::admin::backup::CONTROL_SOCKET));
    // An events index still being built stops reading the store before it
    // closes (exiting under a thread in RocksDB aborted the process).
    opened.ledger.stop_events_index_build();
    if let Some(thread) = opened.events_index.take() {
        let _ = thread.join();
    }
    // A clean stop writes the memtables to SST files, so the next start has
    // no write-ahead log to replay (everything was already durable in it).
    let flushed = Instant::now();
    match opened.store.flush() {
        Ok(()) => info!(
            ms = flushed.elapsed().as_millis() as u64,
            "memtables flushed"
        ),
        Err(error) => warn!(%error, "flush at stop failed; the next start replays the log"),
    }
    drop(opened);
    info!("stopped; every acknowledged change is on disk");
    Ok(())
}

/// Forgets request ids older than the retention, forever: one bounded
/// pass (`Ledger::prune_requests`) every `REQUEST_PRUNE_INTERVAL_MS`, on the
/// blocking pool. Writes go on meanwhile: a pass locks nothing while it
/// reads and takes the tail lock only to submit its deletes.
async fn prune_requests_forever(ledger: Arc<crate::ledger::Ledger>, retention_s: i64) {
    let mut interval =
        tokio::time::interval(std::time::Duration::from_millis(REQUEST_PRUNE_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let ledger = Arc::clone(&ledger);
        match tokio::task::spawn_blocking(move || ledger.prune_requests(retention_s)).await {
            Ok(Ok(pruned)) if pruned.deleted > 0 => {
                tracing::debug!(
                    examined = pruned.examined,
                    deleted = pruned.deleted,
                    "request ids pruned"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(refusal)) => {
                tracing::debug!(reason = %refusal.reason, message = %refusal.message, "request pruning skipped a pass");
            }
            Err(error) => {
                tracing::error!(%error, "request pruning panicked; ids are no longer pruned");
                return;
            }
        }
    }
}

/// The exit code after a storage failure: a supervisor restarts the daemon
/// (it is not in the unit's `RestartPreventExitStatus=`), and recovery then
/// decides what reached the disk.
pub const EXIT_STORAGE_FAILED: u8 = 75;

/// How long the answers of a failed store (`outcome_unknown`) have to leave
/// before the process exits, milliseconds.
const STORAGE_FAILED_EXIT_GRACE_MS: u64 = 500;

/// Fail-stop: once a synced write has failed, nothing more is written and
/// every answer waiting on it says `outcome_unknown`; the process then exits
/// so that a supervisor restarts it and recovery settles what is on disk.
/// A retry of the same request id afterwards gets the real outcome.
async fn exit_when_storage_fails(ledger: Arc<crate::ledger::Ledger>) {
    let Some(mut durability) = ledger.durability() else {
        return;
    };
    if durability.wait_for(|now| now.failed).await.is_err() {
        return;
    }
    tracing::error!(
        "storage failed: stopping, so a supervisor restarts the daemon; \
         clients retry unanswered ids once it is back"
    );
    tokio::time::sleep(std::time::Duration::from_millis(
        STORAGE_FAILED_EXIT_GRACE_MS,
    ))
    .await;
    std::process::exit(EXIT_STORAGE_FAILED.into());
}

/// Writes the expiry of a campaign whose deadline has passed, by itself
/// (API.md: "the daemon runs one by itself at the deadline"): every
/// `EXPIRE_CHECK_INTERVAL_MS` (and at start-up), each year past its deadline
/// and not yet done this run is gone through one voucher shard at a time on
/// the blocking pool (`ledger::expire_year_paced`: batches of at most
/// `EXPIRE_BATCH_VOUCHERS_MAX`, each holding one voucher shard's lock and
/// its holders' person shards), pausing after each batch at least
/// `EXPIRE_BATCH_PAUSE_MS` and the batch's own time (D43), so other writes
/// go on between batches with their latency. A
/// failed batch (overloaded, storage) is logged and the year is gone through
/// again at the next check; after a restart each ended year is read once
/// more and, already written, costs no commit.
async fn expire_forever(ledger: Arc<crate::ledger::Ledger>) {
    let mut done: Vec<u16> = Vec::new();
    let mut interval =
        tokio::time::interval(std::time::Duration::from_millis(EXPIRE_CHECK_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if ledger.is_standby() {
            // Replicated mode: only the leader writes; a standby replays.
            continue;
        }
        for year in ledger.years_past_deadline() {
            if done.contains(&year) {
                continue;
            }
            let started = Instant::now();
            let paced = crate::ledger::expire_year_paced(Arc::clone(&ledger), year, |pause| {
                tokio::time::sleep(pause)
            });
            let (total, failed) = match paced.await {
                Ok(total) => (total, false),
                Err(refusal) => {
                    warn!(year, reason = %refusal.reason, message = %refusal.message, "expiry stopped; tried again at the next check");
                    (crate::ledger::ExpiryPass::default(), true)
                }
            };
            if !failed {
                done.push(year);
                if total.expired > 0 {
                    info!(
                        year,
                        expired = total.expired,
                        batches = total.batches,
                        ms = started.elapsed().as_millis() as u64,
                        longest_batch_applying_us = total.longest_applying_us,
                        longest_batch_us = total.longest_batch_us,
                        "vouchers expired after the deadline"
                    );
                }
            }
        }
    }
}

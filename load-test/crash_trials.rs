//! `voucher-crash`: crash trials. Starts the real daemon, loads it from many
//! clients that record every answer, `kill -9`s it, restarts it, retries what got
//! no answer, and checks nothing acknowledged was lost (docs/reliability.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use voucherd::audit::{self, ExportReader};
use voucherd::domain::command::Command as Validated;
use voucherd::domain::enums::VoucherState;
use voucherd::domain::ids::{PersonKey, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, StatsView};
use voucherd::net::client::{Client, ClientError};
use voucherd_load::kit::daemon::{tool, Launch};
use voucherd_load::kit::workload::{id_number, open_classes, register, Sent, Workload};

#[derive(Parser, Clone)]
#[command(
    name = "voucher-crash",
    about = "Crash trials: kill -9 voucherd under load, restart, check nothing acknowledged was lost"
)]
struct Args {
    /// Number of trials (each: start, load, kill -9, restart, check).
    #[arg(long, default_value_t = 10)]
    trials: u64,
    /// Seed of the first trial; trial i uses SEED + i (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients (each with its own connections and its own persons).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// The daemon binary (default: `voucherd` next to this binary).
    #[arg(long)]
    voucherd: Option<PathBuf>,
    /// The kill comes at a random moment up to this long after the load starts.
    #[arg(long, default_value_t = 1_500)]
    kill_within_ms: u64,
    /// Keep each trial's folder (data, logs, export) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// Operations a client sends at most before the kill (the kill normally comes first).
const CLIENT_BATCHES_MAX: usize = 20_000;
/// Vouchers a client issues at most (keeps the read-back bounded).
const CLIENT_VOUCHERS_MAX: usize = 60;
/// Persons per client; each is issued vouchers of several kinds.
const CLIENT_PERSONS: usize = 5;
/// A person's uses per year (the 2021 rules the default campaign applies).
const USES_PER_PERSON_MAX: u8 = 3;
/// Requests per read-back frame (below `BATCH_OPS_MAX`).
const CHECK_BATCH_OPS: usize = 1_000;
/// Tries for a request refused `overloaded` during the checks.
const TRANSIENT_RETRIES_MAX: u32 = 50;

/// The institutions every client uses: code, district; one site at the kit's `SITE`.
const INSTITUTIONS: [(&str, &str); 4] = [
    ("5100001", "500101"),
    ("5100002", "500102"),
    ("5100003", "500103"),
    ("5100004", "LJXQ"),
];
/// The operator every institution authorises at setup; the workload only
/// churns operators named `op-{code}-{n}`, so it is never revoked.
const OPERATOR: &str = "op-main";

fn admin_number(institution: usize) -> String {
    id_number(9_000_000 + institution as u64)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("voucher-crash: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Figures summed over the trials.
#[derive(Default)]
struct Totals {
    trials: u64,
    kills: u64,
    acknowledged: u64,
    acknowledged_changes: u64,
    accepted_changes: u64,
    vouchers_checked: u64,
    audit_records: u64,
    in_doubt: u64,
    in_doubt_applied_before_kill: u64,
    lost: u64,
    violations: u64,
}

fn run(args: Args) -> anyhow::Result<bool> {
    let voucherd = match &args.voucherd {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no folder around this binary"))?
            .join("voucherd"),
    };
    anyhow::ensure!(
        voucherd.exists(),
        "{} not found (build it, or pass --voucherd)",
        voucherd.display()
    );
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    let first_seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64
            % 1_000_000_000_000
    });
    let base = tempfile::Builder::new().prefix("voucher-crash").tempdir()?;
    let certs = base.path().join("certs");
    tool(
        &voucherd,
        &[OsStr::new("certs"), OsStr::new("--out"), certs.as_os_str()],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    let started = Instant::now();
    for trial in 0..args.trials {
        let seed = first_seed.wrapping_add(trial);
        let folder = base.path().join(format!("trial-{trial}"));
        std::fs::create_dir_all(&folder)?;
        let outcome = runtime.block_on(run_trial(
            &args,
            &voucherd,
            &certs,
            &folder,
            seed,
            &mut totals.kills,
        ));
        totals.trials += 1;
        match outcome {
            Ok(report) => {
                println!(
                    "trial {trial} seed {seed}: ok; kill -9 after {} ms; {} answers before the kill; {} changes re-sent and answered the same ({} accepted, each once in the log); {} vouchers read back; {} audit records; {} in doubt retried ({} applied before the kill)",
                    report.kill_after_ms,
                    report.acknowledged,
                    report.acknowledged_changes,
                    report.accepted_changes,
                    report.vouchers_checked,
                    report.audit_records,
                    report.in_doubt,
                    report.in_doubt_applied_before_kill
                );
                totals.acknowledged += report.acknowledged;
                totals.acknowledged_changes += report.acknowledged_changes;
                totals.accepted_changes += report.accepted_changes;
                totals.vouchers_checked += report.vouchers_checked;
                totals.audit_records += report.audit_records;
                totals.in_doubt += report.in_doubt;
                totals.in_doubt_applied_before_kill += report.in_doubt_applied_before_kill;
                if !args.keep {
                    let _ = std::fs::remove_dir_all(&folder);
                }
            }
            Err(failure) => {
                println!(
                    "trial {trial} seed {seed}: FAILED (rerun: voucher-crash --trials 1 --clients {} --seed {seed}); folder kept at {}",
                    args.clients,
                    folder.display()
                );
                println!("{failure:#}");
                if failure.to_string().contains("lost") {
                    totals.lost += 1;
                } else {
                    totals.violations += 1;
                }
                failed.push(seed);
            }
        }
    }
    println!(
        "summary: {} trials, {} passed, {} failed, {} kills (kill -9); {} answers acknowledged before the kills; {} acknowledged changes re-sent after restart and answered the same ({} accepted, each found once in the audit log with the same reply); {} voucher read-backs; {} audit records verified and replayed; {} in-doubt requests retried with the same id ({} had been applied before the kill); lost {}, invariant violations {}; {:.1} s",
        totals.trials,
        totals.trials - failed.len() as u64,
        failed.len(),
        totals.kills,
        totals.acknowledged,
        totals.acknowledged_changes,
        totals.accepted_changes,
        totals.vouchers_checked,
        totals.audit_records,
        totals.in_doubt,
        totals.in_doubt_applied_before_kill,
        totals.lost,
        totals.violations,
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        println!("failed seeds: {failed:?}");
        // Keep the folders of failed trials for inspection.
        let kept = base.keep();
        println!("trial folders kept under {}", kept.display());
        return Ok(false);
    }
    if args.keep {
        let kept = base.keep();
        println!("trial folders kept under {}", kept.display());
    }
    Ok(true)
}

/// One concurrent client: its own persons, vouchers (the shared workload and
/// its model), connections and history.
struct Lane {
    trial_seed: u64,
    index: usize,
    work: Workload,
    next_request: u64,
    /// The batch that was in flight when the daemon died.
    in_doubt: Option<(Role, Vec<Request>)>,
}

impl Lane {
    fn new(trial_seed: u64, index: usize) -> Lane {
        let seed = trial_seed ^ ((index as u64 + 1) << 40);
        let mut work = Workload::new(seed, CLIENT_PERSONS, campaign_year_now());
        work.person_base = index as u64 * 100 + 1;
        work.institution_base = 5_200_000 + (index as u32 % 100) * 1_000;
        work.vouchers_max = CLIENT_VOUCHERS_MAX;
        for (at, (code, district)) in INSTITUTIONS.iter().enumerate() {
            work.know(code, district, &admin_number(at), &[OPERATOR]);
        }
        Lane {
            trial_seed,
            index,
            work,
            next_request: 0,
            in_doubt: None,
        }
    }

    fn request(&mut self, op: Op) -> Request {
        self.next_request += 1;
        Request {
            id: format!("s{}-c{}-{}", self.trial_seed, self.index, self.next_request),
            op,
        }
    }
}

/// The year of the campaign a daemon on defaults runs now.
fn campaign_year_now() -> u16 {
    use voucherd::domain::time::{Clock, SystemClock};
    voucherd::domain::campaign::Campaign::default_for(SystemClock.now()).year
}

/// One connection per role, opened when first needed.
struct Connections {
    addr: SocketAddr,
    certs: PathBuf,
    clients: HashMap<Role, Client>,
}

impl Connections {
    fn new(addr: SocketAddr, certs: &Path) -> Connections {
        Connections {
            addr,
            certs: certs.to_owned(),
            clients: HashMap::new(),
        }
    }

    async fn execute(
        &mut self,
        role: Role,
        requests: &[Request],
    ) -> Result<Vec<Answer>, ClientError> {
        if !self.clients.contains_key(&role) {
            let client = Client::connect(self.addr, &self.certs, role)
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            self.clients.insert(role, client);
        }
        self.clients[&role].execute(requests).await
    }

    /// Sends a batch until no answer is transient (`overloaded`); bounded tries.
    async fn settled(&mut self, role: Role, requests: &[Request]) -> anyhow::Result<Vec<Answer>> {
        for _ in 0..TRANSIENT_RETRIES_MAX {
            let answers = self
                .execute(role, requests)
                .await
                .map_err(|e| anyhow!("{role} batch failed after the restart: {e}"))?;
            if !answers.iter().any(is_transient) {
                return Ok(answers);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{role} batch still refused as transient after {TRANSIENT_RETRIES_MAX} tries")
    }

    async fn close(self) {
        for (_, client) in self.clients {
            client.close().await;
        }
    }
}

fn is_transient(answer: &Answer) -> bool {
    matches!(&answer.outcome, Err(refusal) if refusal.reason.is_transient())
}

/// Runs one client until the daemon dies (or its bounds are reached).
async fn drive(
    mut lane: Lane,
    addr: SocketAddr,
    certs: PathBuf,
    mut killed: watch::Receiver<bool>,
) -> Lane {
    let mut connections = Connections::new(addr, &certs);
    for _ in 0..CLIENT_BATCHES_MAX {
        if *killed.borrow() {
            break;
        }
        let (role, first) = lane.work.next_op();
        let mut ops = vec![first];
        // Sometimes a few more operations of the same role in one frame.
        if lane.work.rng.gen_bool(0.15) {
            for _ in 0..lane.work.rng.gen_range(1..=3) {
                let (next_role, op) = lane.work.next_op();
                if next_role == role {
                    ops.push(op);
                }
            }
        }
        let requests: Vec<Request> = ops.into_iter().map(|op| lane.request(op)).collect();
        let outcome = tokio::select! {
            biased;
            outcome = connections.execute(role, &requests) => Some(outcome),
            _ = killed.wait_for(|dead| *dead) => None,
        };
        match outcome {
            Some(Ok(answers)) => {
                for (request, answer) in requests.iter().zip(&answers) {
                    lane.work.learn(role, request, answer);
                }
            }
            // The kill came first (or the connection broke because of it).
            Some(Err(_)) | None => {
                lane.in_doubt = Some((role, requests));
                break;
            }
        }
    }
    // The connections may be dead: drop them without waiting for a goodbye.
    drop(connections);
    lane
}

/// What one trial measured.
struct TrialReport {
    kill_after_ms: u64,
    acknowledged: u64,
    acknowledged_changes: u64,
    accepted_changes: u64,
    vouchers_checked: u64,
    audit_records: u64,
    in_doubt: u64,
    in_doubt_applied_before_kill: u64,
}

async fn run_trial(
    args: &Args,
    voucherd: &Path,
    certs: &Path,
    folder: &Path,
    seed: u64,
    kills: &mut u64,
) -> anyhow::Result<TrialReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = folder.join("data");
    let log = folder.join("voucherd.log");
    let mut daemon = Launch::new(voucherd, &data, certs, &log)
        .envs(&[("RUST_LOG", "warn")])
        .start()?;

    // Setup (acknowledged before the load): the shared institutions and operator.
    let mut setup = Connections::new(daemon.addr, certs);
    let mut setup_sent = Vec::new();
    for (at, (code, district)) in INSTITUTIONS.iter().enumerate() {
        let admin = admin_number(at);
        let mut ops = vec![
            (Role::Bureau, register(code, district, &admin)),
            (
                Role::Gateway,
                Op::AuthoriseOperator {
                    institution: code.parse().map_err(|e: String| anyhow!(e))?,
                    admin_id_number: admin.clone(),
                    operator: OPERATOR.parse().map_err(|e: String| anyhow!(e))?,
                },
            ),
        ];
        // The classes the lanes' redeems name (one per kind).
        for op in open_classes(code, OPERATOR, campaign_year_now()) {
            ops.push((Role::Gateway, op));
        }
        for (role, op) in ops {
            let requests = vec![Request {
                id: format!("s{seed}-setup-{}", setup_sent.len()),
                op,
            }];
            let mut answers = setup.settled(role, &requests).await?;
            if let Err(refusal) = &answers[0].outcome {
                bail!("setup {:?} refused: {}", requests[0].op, refusal.reason);
            }
            setup_sent.push(Sent {
                role,
                request: requests.into_iter().next().expect("one"),
                answer: answers.remove(0),
            });
        }
    }
    setup.close().await;

    // The load, and the kill at a random moment.
    let (kill, killed) = watch::channel(false);
    let kill_after_ms = rng.gen_range(50..=args.kill_within_ms.max(50));
    let tasks: Vec<_> = (0..args.clients)
        .map(|index| {
            tokio::spawn(drive(
                Lane::new(seed, index),
                daemon.addr,
                certs.to_owned(),
                killed.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
    daemon.kill()?;
    *kills += 1;
    kill.send(true)?;
    let mut lanes = Vec::new();
    for task in tasks {
        lanes.push(task.await?);
    }
    let acknowledged: u64 = lanes
        .iter()
        .map(|lane| lane.work.sent.len() as u64)
        .sum::<u64>()
        + setup_sent.len() as u64;

    // Restart on the same data and note the head before anything new runs.
    daemon
        .restart()
        .context("voucherd restarts after kill -9")?;
    let mut check = Connections::new(daemon.addr, certs);
    let (seq_at_restart, _) = audit_head(&mut check).await?;

    let mut problems = Problems::default();

    // Item 2: each request that got no answer is retried with the same id,
    // and retried once more: both answers must be the same.
    let mut in_doubt = 0u64;
    let mut retried: Vec<(Role, Request, Answer)> = Vec::new();
    for lane in &mut lanes {
        let Some((role, requests)) = lane.in_doubt.take() else {
            continue;
        };
        in_doubt += requests.len() as u64;
        let answers = check.settled(role, &requests).await?;
        let again = check.settled(role, &requests).await?;
        for ((request, answer), second) in requests.iter().zip(&answers).zip(&again) {
            if !request.op.is_read() && answer != second {
                problems.violation(format!(
                    "retry of {} answered {:?}, then {:?}",
                    request.id, answer.outcome, second.outcome
                ));
            }
            lane.work.learn(role, request, answer);
            retried.push((role, request.clone(), answer.clone()));
        }
    }

    // Every acknowledged change (and each retried one) answers the same again.
    let mut by_role: BTreeMap<String, (Role, Vec<(Request, Answer)>)> = BTreeMap::new();
    for sent in lanes
        .iter()
        .flat_map(|lane| &lane.work.sent)
        .chain(&setup_sent)
    {
        if sent.request.op.is_read() || is_transient(&sent.answer) {
            continue;
        }
        by_role
            .entry(sent.role.to_string())
            .or_insert_with(|| (sent.role, Vec::new()))
            .1
            .push((sent.request.clone(), sent.answer.clone()));
    }
    let mut acknowledged_changes = 0u64;
    let mut accepted: HashMap<(String, String), Reply> = HashMap::new();
    for (role, pairs) in by_role.values() {
        for chunk in pairs.chunks(CHECK_BATCH_OPS) {
            let requests: Vec<Request> = chunk.iter().map(|(r, _)| r.clone()).collect();
            let answers = check.settled(*role, &requests).await?;
            for ((request, first), again) in chunk.iter().zip(&answers) {
                acknowledged_changes += 1;
                if first != again {
                    problems.lost(format!(
                        "{role} {} ({}) was answered {:?}, after the restart {:?}",
                        request.id,
                        request.op.name(),
                        first.outcome,
                        again.outcome
                    ));
                }
                if let Ok(reply) = &first.outcome {
                    accepted.insert((role.to_string(), request.id.clone()), reply.clone());
                }
            }
        }
    }

    // Every voucher reads back as its answers said.
    let mut vouchers_checked = 0u64;
    for lane in &lanes {
        for chunk in lane.work.vouchers.chunks(CHECK_BATCH_OPS) {
            let requests: Vec<Request> = chunk
                .iter()
                .map(|tracked| Request {
                    id: format!("read-{}", tracked.id),
                    op: Op::GetVoucher {
                        voucher: tracked.id,
                    },
                })
                .collect();
            let answers = check.settled(Role::Auditor, &requests).await?;
            for (tracked, answer) in chunk.iter().zip(answers) {
                vouchers_checked += 1;
                match answer.outcome {
                    Ok(Reply::Voucher(view)) => {
                        if let Some(difference) = lane.work.difference(tracked, &view) {
                            problems.lost(difference);
                        }
                    }
                    other => {
                        problems.lost(format!("get_voucher {} answered {other:?}", tracked.id))
                    }
                }
            }
        }
        // No person over the use limit, as read back.
        let mut uses: HashMap<usize, u8> = HashMap::new();
        for tracked in &lane.work.vouchers {
            if tracked.state.is_used() {
                *uses.entry(tracked.holder).or_default() += 1;
            }
        }
        for (person, used) in uses {
            if used > USES_PER_PERSON_MAX {
                problems.violation(format!(
                    "client {} person {person} holds {used} used vouchers",
                    lane.index
                ));
            }
        }
    }

    // The bureau's figures equal a recount of every client's vouchers.
    let stats = match check
        .settled(
            Role::Bureau,
            &[Request {
                id: "stats".into(),
                op: Op::Stats {
                    district: None,
                    year: None,
                },
            }],
        )
        .await?
        .remove(0)
        .outcome
    {
        Ok(Reply::Stats(stats)) => *stats,
        other => bail!("stats answered {other:?}"),
    };
    compare_stats(&lanes, &stats, &mut problems);

    // The audit chain: verify, export, replay to the live digest; then read the
    // export to check the history.
    let (seq, state_digest) = audit_head(&mut check).await?;
    let export = folder.join("audit.bin");
    let verified = tool(
        voucherd,
        &[
            OsStr::new("audit"),
            OsStr::new("verify"),
            OsStr::new("--data"),
            data.as_os_str(),
        ],
    );
    match verified {
        Ok(text) if text.contains(&format!("{seq} records")) => {}
        Ok(text) => problems.violation(format!("audit verify: {text} (head seq {seq})")),
        Err(error) => problems.violation(format!("audit verify failed: {error:#}")),
    }
    tool(
        voucherd,
        &[
            OsStr::new("audit"),
            OsStr::new("export"),
            OsStr::new("--data"),
            data.as_os_str(),
            OsStr::new("--out"),
            export.as_os_str(),
        ],
    )?;
    match tool(
        voucherd,
        &[
            OsStr::new("replay"),
            OsStr::new("--log"),
            export.as_os_str(),
        ],
    ) {
        Ok(text) => {
            let replayed = text
                .lines()
                .find_map(|line| line.strip_prefix("state_digest "))
                .unwrap_or("");
            if replayed.trim() != state_digest {
                problems.violation(format!(
                    "replay gives state digest {replayed}, audit_head {state_digest}"
                ));
            }
        }
        Err(error) => problems.violation(format!("replay failed: {error:#}")),
    }
    let history = check_history(&export, &accepted, &mut problems)?;
    if history.records != seq {
        problems.violation(format!(
            "export holds {} records, audit_head says {seq}",
            history.records
        ));
    }
    let mut in_doubt_applied_before_kill = 0u64;
    for (role, request, answer) in &retried {
        if request.op.is_read() || answer.outcome.is_err() {
            continue;
        }
        match history.seq_of.get(&(role.to_string(), request.id.clone())) {
            Some(&at) if at <= seq_at_restart => in_doubt_applied_before_kill += 1,
            Some(_) => {}
            None => problems.lost(format!("retried {} is not in the audit log", request.id)),
        }
    }
    check.close().await;
    drop(daemon);
    problems.into_result()?;
    Ok(TrialReport {
        kill_after_ms,
        acknowledged,
        acknowledged_changes,
        accepted_changes: accepted.len() as u64,
        vouchers_checked,
        audit_records: history.records,
        in_doubt,
        in_doubt_applied_before_kill,
    })
}

async fn audit_head(check: &mut Connections) -> anyhow::Result<(u64, String)> {
    let request = Request {
        id: "head".into(),
        op: Op::AuditHead,
    };
    match check
        .settled(Role::Auditor, &[request])
        .await?
        .remove(0)
        .outcome
    {
        Ok(Reply::AuditHead {
            seq, state_digest, ..
        }) => Ok((seq, state_digest)),
        other => bail!("audit_head answered {other:?}"),
    }
}

/// What a trial found wrong, split into lost acknowledged effects and other
/// invariant violations.
#[derive(Default)]
struct Problems {
    lost: Vec<String>,
    violations: Vec<String>,
}

impl Problems {
    fn lost(&mut self, what: String) {
        self.lost.push(what);
    }
    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }
    fn into_result(self) -> anyhow::Result<()> {
        if self.lost.is_empty() && self.violations.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        if !self.lost.is_empty() {
            text += &format!("{} acknowledged effects lost:\n", self.lost.len());
            for line in self.lost.iter().take(20) {
                text += &format!("  {line}\n");
            }
        }
        if !self.violations.is_empty() {
            text += &format!("{} invariant violations:\n", self.violations.len());
            for line in self.violations.iter().take(20) {
                text += &format!("  {line}\n");
            }
        }
        Err(anyhow!(text))
    }
}

fn compare_stats(lanes: &[Lane], stats: &StatsView, problems: &mut Problems) {
    #[derive(Default, Debug, PartialEq)]
    struct Figures {
        issued: u64,
        claimed: u64,
        used: u64,
    }
    let mut expected: BTreeMap<String, Figures> = BTreeMap::new();
    let mut used_with_checkin = 0u64;
    let mut institutions_used = HashSet::new();
    for lane in lanes {
        for tracked in &lane.work.vouchers {
            expected.entry(tracked.district.clone()).or_default().issued += 1;
            if tracked.state != VoucherState::Issued {
                expected
                    .entry(tracked.district.clone())
                    .or_default()
                    .claimed += 1;
            }
            if tracked.state.is_used() {
                let at = tracked
                    .institution
                    .expect("used vouchers have an institution");
                let institution = &lane.work.institutions[at];
                expected
                    .entry(institution.district.clone())
                    .or_default()
                    .used += 1;
                institutions_used.insert(institution.code.clone());
                if tracked.checkins > 0 {
                    used_with_checkin += 1;
                }
            }
        }
    }
    for district in &stats.districts {
        let want = expected
            .remove(&district.code.to_string())
            .unwrap_or_default();
        let got = Figures {
            issued: district.issued,
            claimed: district.claimed,
            used: district.used,
        };
        if got != want {
            problems.lost(format!(
                "stats for {}: {got:?}, the answers add up to {want:?}",
                district.code
            ));
        }
    }
    if !expected.is_empty() {
        problems.violation(format!("stats lack districts {:?}", expected.keys()));
    }
    let registered = INSTITUTIONS.len() as u64
        + lanes
            .iter()
            .flat_map(|lane| &lane.work.institutions)
            .filter(|institution| institution.owned)
            .count() as u64;
    let coverage = &stats.coverage;
    if coverage.used_with_checkin != used_with_checkin
        || coverage.institutions_used != institutions_used.len() as u64
        || coverage.institutions_registered != registered
    {
        problems.lost(format!(
            "coverage {coverage:?}; the answers add up to used_with_checkin {used_with_checkin}, institutions_used {}, institutions_registered {registered}",
            institutions_used.len()
        ));
    }
}

/// What the exported audit log shows.
struct History {
    records: u64,
    /// (role, request id) → the seq of its record.
    seq_of: HashMap<(String, String), u64>,
}

/// Reads the export: each request id at most once; each acknowledged accepted
/// change present with the same reply; along the whole history no voucher is
/// redeemed while redeemed and no person goes over the use limit.
fn check_history(
    export: &Path,
    accepted: &HashMap<(String, String), Reply>,
    problems: &mut Problems,
) -> anyhow::Result<History> {
    let file = BufReader::new(std::fs::File::open(export)?);
    let (mut reader, _) = ExportReader::new(file)?;
    let mut seq_of = HashMap::new();
    let mut holder_of: HashMap<VoucherId, (PersonKey, u16)> = HashMap::new();
    let mut redeemed: HashSet<VoucherId> = HashSet::new();
    let mut uses: HashMap<(PersonKey, u16), u8> = HashMap::new();
    let mut records = 0u64;
    while let Some(entry) = reader.next_entry()? {
        let (record, _) = audit::open(&entry).map_err(|why| anyhow!("export: {why}"))?;
        records += 1;
        if matches!(record.command, Validated::RecordCampaign { .. }) {
            // A campaign's rules, sealed by the daemon at start: no client's change.
            continue;
        }
        let key = (record.caller.role.to_string(), record.request_id.clone());
        // Every request in doubt was retried, so every record must be one
        // the clients saw accepted.
        match accepted.get(&key) {
            Some(expected) if expected != &record.reply => problems.lost(format!(
                "{} {}: acknowledged {expected:?}, the log says {:?}",
                key.0, key.1, record.reply
            )),
            Some(_) => {}
            None => problems.violation(format!(
                "seq {} ({} {}) is no change any client saw accepted",
                record.seq, key.0, key.1
            )),
        }
        if seq_of.insert(key.clone(), record.seq).is_some() {
            problems.violation(format!(
                "{} {} was applied twice (second at seq {})",
                key.0, key.1, record.seq
            ));
        }
        match (&record.command, &record.reply) {
            (Validated::Issue { holder, year, .. }, Reply::Issued { voucher }) => {
                holder_of.insert(*voucher, (*holder, *year));
            }
            (Validated::Redeem { voucher, .. }, _) => {
                if !redeemed.insert(*voucher) {
                    problems.violation(format!(
                        "voucher {voucher} redeemed a second time at seq {}",
                        record.seq
                    ));
                }
                let Some(&person) = holder_of.get(voucher) else {
                    problems.violation(format!("seq {}: redeems unissued {voucher}", record.seq));
                    continue;
                };
                let count = uses.entry(person).or_default();
                *count += 1;
                if *count > USES_PER_PERSON_MAX {
                    problems.violation(format!(
                        "a person's use number {count} at seq {} (voucher {voucher})",
                        record.seq
                    ));
                }
            }
            (
                Validated::Release { voucher, .. } | Validated::ReleaseByOperator { voucher, .. },
                _,
            ) => {
                if !redeemed.remove(voucher) {
                    problems
                        .violation(format!("seq {}: releases unredeemed {voucher}", record.seq));
                }
                if let Some(&person) = holder_of.get(voucher) {
                    let count = uses.entry(person).or_default();
                    *count = count.saturating_sub(1);
                }
            }
            // Completed and settled vouchers stay used and never redeem again;
            // `expire` never succeeds before the deadline.
            _ => {}
        }
    }
    for key in accepted.keys() {
        let change_in_log = seq_of.contains_key(key);
        if !change_in_log {
            problems.lost(format!(
                "{} {} was acknowledged but is not in the audit log",
                key.0, key.1
            ));
        }
    }
    Ok(History { records, seq_of })
}

//! `voucher-crash`: crash trials. Starts the real daemon, loads it from many
//! clients that record every answer, `kill -9`s it, restarts it, retries what got
//! no answer, and checks nothing acknowledged was lost (docs/reliability.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use voucherd::audit::{self, ExportReader};
use voucherd::domain::command::Command as Validated;
use voucherd::domain::enums::{Category, Channel, InstitutionType, Kind, VoucherState};
use voucherd::domain::ids::{IdNumber, PersonKey, VoucherId};
use voucherd::domain::op::{Answer, Op, Reply, Request, Role, SiteSpec, StatsView, VoucherView};
use voucherd::net::client::{Client, ClientError};

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

/// How long the daemon may take to report its address or a tool to finish.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
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

/// The institutions every client uses: code, district; one site at `SITE`.
const INSTITUTIONS: [(&str, &str); 4] = [
    ("5100001", "500101"),
    ("5100002", "500102"),
    ("5100003", "500103"),
    ("5100004", "LJXQ"),
];
/// The operator every institution authorises at setup and never revokes.
const OPERATOR: &str = "op-main";
const SITE: (f64, f64) = (29.5576, 106.5775);
/// 2 km north of the site: outside its 500 m radius.
const FAR: (f64, f64) = (29.5756, 106.5775);

/// The n-th synthetic resident ID number, with a valid GB 11643 check digit.
fn id_number(n: u64) -> String {
    IdNumber::synthetic("5001011985", n)
}

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
    tool(&voucherd, &["certs", "--out"], &[&certs])?;
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

/// Runs a `voucherd` tool to its end; returns its stdout. Fails on a non-zero exit.
fn tool(voucherd: &Path, args: &[&str], paths: &[&Path]) -> anyhow::Result<String> {
    let mut command = Command::new(voucherd);
    command.args(args);
    for path in paths {
        command.arg(path);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run voucherd {args:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "voucherd {args:?} {paths:?} exited {}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// A `voucherd serve` child on 127.0.0.1:0.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(voucherd: &Path, data: &Path, certs: &Path, log: &Path) -> anyhow::Result<Daemon> {
        let mut child = Command::new(voucherd)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--certs")
            .arg(certs)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(log)?,
            )
            .spawn()
            .context("start voucherd serve")?;
        let stdout = child.stdout.take().expect("piped");
        let (lines, received) = std::sync::mpsc::channel();
        // Drains stdout to its end so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let started = Instant::now();
        loop {
            let left = PROCESS_TIMEOUT.saturating_sub(started.elapsed());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("voucherd: listening on ") {
                        let addr = addr.trim().parse()?;
                        return Ok(Daemon { child, addr });
                    }
                }
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "voucherd did not report its address ({error}); log:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// SIGKILL (`kill -9`): no shutdown at all.
    fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
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

/// What a client knows of one of its vouchers, from the answers it got.
#[derive(Clone, Debug, PartialEq)]
struct Tracked {
    id: VoucherId,
    holder: usize,
    kind: Kind,
    face_value_fen: u64,
    district: String,
    state: VoucherState,
    /// Index into `INSTITUTIONS`.
    institution: Option<usize>,
    checkins: u32,
    score: Option<u8>,
    settled_fen: Option<u64>,
}

/// One request batch and the answers it got.
struct Sent {
    role: Role,
    requests: Vec<Request>,
    answers: Vec<Answer>,
}

/// One concurrent client: its own persons, vouchers, connections and history.
struct Lane {
    trial_seed: u64,
    index: usize,
    rng: StdRng,
    vouchers: Vec<Tracked>,
    index_of: HashMap<VoucherId, usize>,
    /// Institutions this client registered (beyond the four shared ones).
    registered: Vec<String>,
    next_request: u64,
    /// Acknowledged batches (answers received), in order.
    sent: Vec<Sent>,
    /// The batch that was in flight when the daemon died.
    in_doubt: Option<(Role, Vec<Request>)>,
}

impl Lane {
    fn new(trial_seed: u64, index: usize) -> Lane {
        Lane {
            trial_seed,
            index,
            rng: StdRng::seed_from_u64(trial_seed ^ ((index as u64 + 1) << 40)),
            vouchers: Vec::new(),
            index_of: HashMap::new(),
            registered: Vec::new(),
            next_request: 0,
            sent: Vec::new(),
            in_doubt: None,
        }
    }

    fn person(&self, n: usize) -> String {
        id_number(self.index as u64 * 100 + n as u64 + 1)
    }

    fn request(&mut self, op: Op) -> Request {
        self.next_request += 1;
        Request {
            id: format!("s{}-c{}-{}", self.trial_seed, self.index, self.next_request),
            op,
        }
    }

    /// A voucher: mostly one in a wanted state, sometimes any, rarely unknown.
    fn pick(&mut self, wanted: &[VoucherState]) -> VoucherId {
        if self.vouchers.is_empty() || self.rng.gen_bool(0.03) {
            return VoucherId(8_000_000_000 + self.rng.gen_range(0..1_000));
        }
        if self.rng.gen_bool(0.85) {
            let fitting: Vec<VoucherId> = self
                .vouchers
                .iter()
                .filter(|v| wanted.contains(&v.state))
                .map(|v| v.id)
                .collect();
            if let Some(id) = fitting.choose(&mut self.rng) {
                return *id;
            }
        }
        self.vouchers.choose(&mut self.rng).expect("not empty").id
    }

    fn tracked(&self, voucher: VoucherId) -> Option<&Tracked> {
        self.index_of.get(&voucher).map(|&at| &self.vouchers[at])
    }

    fn holder_of(&mut self, voucher: VoucherId) -> String {
        let holder = match self.tracked(voucher) {
            Some(tracked) => tracked.holder,
            None => 0,
        };
        if self.rng.gen_bool(0.92) {
            self.person(holder)
        } else {
            self.person((holder + 1) % CLIENT_PERSONS)
        }
    }

    /// The voucher's institution (mostly), or any of the four.
    fn institution_of(&mut self, voucher: VoucherId) -> usize {
        match self.tracked(voucher).and_then(|t| t.institution) {
            Some(at) if self.rng.gen_bool(0.9) => at,
            _ => self.rng.gen_range(0..INSTITUTIONS.len()),
        }
    }

    /// One random operation, valid or not, and the role that sends it.
    fn next_op(&mut self) -> (Role, Op) {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=13 if self.vouchers.len() < CLIENT_VOUCHERS_MAX => {
                let person = self.rng.gen_range(0..CLIENT_PERSONS);
                let id_number = if self.rng.gen_bool(0.03) {
                    let good = self.person(person);
                    let last = if good.ends_with('0') { '1' } else { '0' };
                    format!("{}{last}", &good[..17])
                } else {
                    self.person(person)
                };
                let district = if self.rng.gen_bool(0.03) {
                    "500199"
                } else {
                    INSTITUTIONS.choose(&mut self.rng).expect("four").1
                };
                let face_value_fen = if self.rng.gen_bool(0.02) {
                    0
                } else {
                    self.rng.gen_range(1..=20) * 10_000
                };
                let op = Op::Issue {
                    id_number,
                    category: *Category::ALL.choose(&mut self.rng).expect("categories"),
                    kind: *Kind::ALL[..6].choose(&mut self.rng).expect("kinds"),
                    face_value_fen,
                    channel: *Channel::ALL.choose(&mut self.rng).expect("channels"),
                    district: district.parse().expect("district code"),
                    year: None,
                };
                (Role::Bureau, op)
            }
            0..=26 => {
                let voucher = self.pick(&[VoucherState::Issued]);
                let id_number = self.holder_of(voucher);
                (Role::Gateway, Op::Claim { voucher, id_number })
            }
            27..=44 => {
                let voucher = self.pick(&[VoucherState::Claimed]);
                let at = self.rng.gen_range(0..INSTITUTIONS.len());
                let operator = match self.rng.gen_range(0..20) {
                    0 => "op-nobody".to_owned(),
                    1..=3 => format!("op-client-{}", self.index),
                    _ => OPERATOR.to_owned(),
                };
                let op = Op::Redeem {
                    voucher,
                    institution: INSTITUTIONS[at].0.parse().expect("code"),
                    operator: operator.parse().expect("operator"),
                    class: format!("班级 {}", self.rng.gen_range(0..20)),
                };
                (Role::Gateway, op)
            }
            45..=54 => {
                let voucher = self.pick(&[VoucherState::Redeemed]);
                let (lat, lon) = if self.rng.gen_bool(0.85) { SITE } else { FAR };
                (Role::Gateway, Op::Checkin { voucher, lat, lon })
            }
            55..=63 => {
                let voucher = self.pick(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = INSTITUTIONS[at].0.parse().expect("code");
                (
                    Role::Gateway,
                    Op::Complete {
                        voucher,
                        institution,
                    },
                )
            }
            64..=70 => {
                let voucher = self.pick(&[VoucherState::Completed, VoucherState::Settled]);
                let id_number = self.holder_of(voucher);
                let score = if self.rng.gen_bool(0.03) {
                    0
                } else {
                    self.rng.gen_range(1..=5)
                };
                let comment = match self.rng.gen_range(0..4) {
                    0 => Some("老师讲得很好".to_owned()),
                    1 => Some("好".repeat(self.rng.gen_range(190..=205))),
                    _ => None,
                };
                let op = Op::Evaluate {
                    voucher,
                    id_number,
                    score,
                    comment,
                };
                (Role::Gateway, op)
            }
            71..=78 => {
                let voucher = self.pick(&[VoucherState::Completed]);
                let at = self.institution_of(voucher);
                let face = self.tracked(voucher).map_or(100_000, |t| t.face_value_fen);
                let amount_fen = if self.rng.gen_bool(0.05) {
                    face + 1
                } else {
                    self.rng.gen_range(0..=face)
                };
                let role = Role::District(INSTITUTIONS[at].1.parse().expect("district"));
                (
                    role,
                    Op::Settle {
                        voucher,
                        amount_fen,
                    },
                )
            }
            79..=88 => {
                let voucher = self.pick(&[VoucherState::Redeemed]);
                let at = self.institution_of(voucher);
                let institution = INSTITUTIONS[at].0.parse().expect("code");
                (
                    Role::Gateway,
                    Op::Release {
                        voucher,
                        institution,
                    },
                )
            }
            89..=92 => {
                // This client's own operator, at any institution; sometimes the wrong admin.
                let at = self.rng.gen_range(0..INSTITUTIONS.len());
                let admin = if self.rng.gen_bool(0.9) {
                    admin_number(at)
                } else {
                    id_number(8_000_000 + self.index as u64)
                };
                let institution = INSTITUTIONS[at].0.parse().expect("code");
                let operator = format!("op-client-{}", self.index)
                    .parse()
                    .expect("operator");
                let op = if self.rng.gen_bool(0.6) {
                    Op::AuthoriseOperator {
                        institution,
                        admin_id_number: admin,
                        operator,
                    }
                } else {
                    Op::RevokeOperator {
                        institution,
                        admin_id_number: admin,
                        operator,
                    }
                };
                (Role::Gateway, op)
            }
            93 => {
                // A new institution of this client, or a duplicate of a shared one.
                let code = if self.rng.gen_bool(0.7) {
                    format!("52{:02}{:03}", self.index % 100, self.registered.len())
                } else {
                    INSTITUTIONS[0].0.to_owned()
                };
                let district = INSTITUTIONS.choose(&mut self.rng).expect("four").1;
                let admin = id_number(8_500_000 + self.index as u64);
                (Role::Bureau, registration(&code, district, &admin))
            }
            94 => {
                // Before the deadline: refused `campaign_open`.
                let year = campaign_year_now();
                (Role::Bureau, Op::Expire { year })
            }
            95 => {
                // A role that may not run the operation.
                let voucher = self.pick(&[VoucherState::Redeemed]);
                (
                    Role::Bureau,
                    Op::Release {
                        voucher,
                        institution: INSTITUTIONS[0].0.parse().expect("code"),
                    },
                )
            }
            96..=97 => {
                let voucher = self.pick(&[VoucherState::Redeemed]);
                (Role::Gateway, Op::GetVoucher { voucher })
            }
            _ => (
                Role::Bureau,
                Op::Stats {
                    district: None,
                    year: None,
                },
            ),
        }
    }

    /// Updates what the client knows from one answered request.
    fn learn(&mut self, request: &Request, answer: &Answer) {
        let Ok(reply) = &answer.outcome else { return };
        match (&request.op, reply) {
            (
                Op::Issue {
                    id_number,
                    kind,
                    face_value_fen,
                    district,
                    ..
                },
                Reply::Issued { voucher },
            ) => {
                let holder = (0..CLIENT_PERSONS)
                    .find(|&n| &self.person(n) == id_number)
                    .expect("clients issue to their own persons");
                self.index_of.insert(*voucher, self.vouchers.len());
                self.vouchers.push(Tracked {
                    id: *voucher,
                    holder,
                    kind: *kind,
                    face_value_fen: *face_value_fen,
                    district: district.to_string(),
                    state: VoucherState::Issued,
                    institution: None,
                    checkins: 0,
                    score: None,
                    settled_fen: None,
                });
            }
            (Op::Claim { voucher, .. }, _) => self.change(*voucher).state = VoucherState::Claimed,
            (
                Op::Redeem {
                    voucher,
                    institution,
                    ..
                },
                Reply::Redeemed { .. },
            ) => {
                let at = INSTITUTIONS
                    .iter()
                    .position(|(code, _)| *code == institution.to_string());
                let tracked = self.change(*voucher);
                tracked.state = VoucherState::Redeemed;
                tracked.institution = at;
            }
            (Op::Checkin { voucher, .. }, Reply::CheckedIn { checkins, .. }) => {
                self.change(*voucher).checkins = *checkins
            }
            (Op::Complete { voucher, .. }, _) => {
                self.change(*voucher).state = VoucherState::Completed
            }
            (Op::Evaluate { voucher, score, .. }, _) => self.change(*voucher).score = Some(*score),
            (
                Op::Settle {
                    voucher,
                    amount_fen,
                },
                _,
            ) => {
                let tracked = self.change(*voucher);
                tracked.state = VoucherState::Settled;
                tracked.settled_fen = Some(*amount_fen);
            }
            (Op::Release { voucher, .. }, _) => {
                let tracked = self.change(*voucher);
                tracked.state = VoucherState::Claimed;
                tracked.institution = None;
                tracked.checkins = 0;
            }
            (Op::RegisterInstitution { code, .. }, _) => self.registered.push(code.to_string()),
            _ => {}
        }
    }

    fn change(&mut self, voucher: VoucherId) -> &mut Tracked {
        let at = self.index_of[&voucher];
        &mut self.vouchers[at]
    }
}

/// The year of the campaign a daemon on defaults runs now.
fn campaign_year_now() -> u16 {
    use voucherd::domain::time::{Clock, SystemClock};
    voucherd::domain::campaign::Campaign::default_for(SystemClock.now()).year
}

fn registration(code: &str, district: &str, admin: &str) -> Op {
    Op::RegisterInstitution {
        code: code.parse().expect("code"),
        name: format!("培训机构 {code}"),
        district: district.parse().expect("district"),
        address: "重庆市渝中区解放碑".into(),
        phone: "023-88126902".into(),
        kind: InstitutionType::PrivateSchool,
        admin_name: "刘路".into(),
        admin_id_number: admin.into(),
        sites: vec![SiteSpec {
            lat: SITE.0,
            lon: SITE.1,
            radius_m: None,
        }],
    }
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
        let (role, first) = lane.next_op();
        let mut ops = vec![first];
        // Sometimes a few more operations of the same role in one frame.
        if lane.rng.gen_bool(0.15) {
            for _ in 0..lane.rng.gen_range(1..=3) {
                let (next_role, op) = lane.next_op();
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
                    lane.learn(request, answer);
                }
                lane.sent.push(Sent {
                    role,
                    requests,
                    answers,
                });
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
    let mut daemon = Daemon::start(voucherd, &data, certs, &log)?;

    // Setup (acknowledged before the load): the shared institutions and operator.
    let mut setup = Connections::new(daemon.addr, certs);
    let mut setup_sent = Vec::new();
    for (at, (code, district)) in INSTITUTIONS.iter().enumerate() {
        let admin = admin_number(at);
        for (role, op) in [
            (Role::Bureau, registration(code, district, &admin)),
            (
                Role::Gateway,
                Op::AuthoriseOperator {
                    institution: code.parse().map_err(|e: String| anyhow!(e))?,
                    admin_id_number: admin.clone(),
                    operator: OPERATOR.parse().map_err(|e: String| anyhow!(e))?,
                },
            ),
        ] {
            let requests = vec![Request {
                id: format!("s{seed}-setup-{}", setup_sent.len()),
                op,
            }];
            let answers = setup.settled(role, &requests).await?;
            if let Err(refusal) = &answers[0].outcome {
                bail!("setup {:?} refused: {}", requests[0].op, refusal.reason);
            }
            setup_sent.push(Sent {
                role,
                requests,
                answers,
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
        .flat_map(|lane| &lane.sent)
        .map(|sent| sent.requests.len() as u64)
        .sum::<u64>()
        + setup_sent.len() as u64;

    // Restart on the same data and note the head before anything new runs.
    let daemon =
        Daemon::start(voucherd, &data, certs, &log).context("voucherd restarts after kill -9")?;
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
            lane.learn(request, answer);
            retried.push((role, request.clone(), answer.clone()));
        }
        lane.sent.push(Sent {
            role,
            requests,
            answers,
        });
    }

    // Every acknowledged change (and each retried one) answers the same again.
    let mut by_role: BTreeMap<String, (Role, Vec<(Request, Answer)>)> = BTreeMap::new();
    for sent in lanes.iter().flat_map(|lane| &lane.sent).chain(&setup_sent) {
        for (request, answer) in sent.requests.iter().zip(&sent.answers) {
            if request.op.is_read() || is_transient(answer) {
                continue;
            }
            by_role
                .entry(sent.role.to_string())
                .or_insert_with(|| (sent.role, Vec::new()))
                .1
                .push((request.clone(), answer.clone()));
        }
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
        for chunk in lane.vouchers.chunks(CHECK_BATCH_OPS) {
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
                    Ok(Reply::Voucher(view)) => compare_view(tracked, &view, &mut problems),
                    other => {
                        problems.lost(format!("get_voucher {} answered {other:?}", tracked.id))
                    }
                }
            }
        }
        // No person over the use limit, as read back.
        let mut uses: HashMap<usize, u8> = HashMap::new();
        for tracked in &lane.vouchers {
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
    let verified = tool(voucherd, &["audit", "verify", "--data"], &[&data]);
    match verified {
        Ok(text) if text.contains(&format!("{seq} records")) => {}
        Ok(text) => problems.violation(format!("audit verify: {text} (head seq {seq})")),
        Err(error) => problems.violation(format!("audit verify failed: {error:#}")),
    }
    tool(
        voucherd,
        &["audit", "export", "--data"],
        &[&data, Path::new("--out"), &export],
    )?;
    match tool(voucherd, &["replay", "--log"], &[&export]) {
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

fn compare_view(tracked: &Tracked, view: &VoucherView, problems: &mut Problems) {
    let institution = tracked.institution.map(|at| INSTITUTIONS[at].0.to_owned());
    let same = view.state == tracked.state
        && view.kind == tracked.kind
        && view.face_value_fen == tracked.face_value_fen
        && view.district.to_string() == tracked.district
        && view.institution.map(|code| code.to_string()) == institution
        && view.checkins == tracked.checkins
        && view.score == tracked.score
        && view.settled_fen == tracked.settled_fen;
    if !same {
        problems.lost(format!(
            "voucher {}: answers said {tracked:?}, reads back {view:?}",
            tracked.id
        ));
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
    for tracked in lanes.iter().flat_map(|lane| &lane.vouchers) {
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
            expected
                .entry(INSTITUTIONS[at].1.to_owned())
                .or_default()
                .used += 1;
            institutions_used.insert(at);
            if tracked.checkins > 0 {
                used_with_checkin += 1;
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
    let registered =
        INSTITUTIONS.len() as u64 + lanes.iter().map(|l| l.registered.len() as u64).sum::<u64>();
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
        let key = (record.role.to_string(), record.request_id.clone());
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
            (Validated::Release { voucher, .. }, _) => {
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

//! One peak phase of the load generator: `connections` gateway workers send
//! batches of redeems and check-ins (and a share of invalid operations that
//! must be refused with their reason code) for persons taken from the shared
//! pool, closed loop or open loop at a target rate, until a deadline or the
//! pool runs out. It owns the checks of every answer, the phase's tally
//! (latency histogram, accepted and refused counts) and the per-second
//! timeline that the report and the plot are drawn from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use voucherd::domain::enums::Kind;
use voucherd::domain::ids::{InstitutionCode, VoucherId};
use voucherd::domain::op::{Answer, Op, Request, Role};
use voucherd::error::Reason;
use voucherd::net::client::{Client, ClientError, Encoding};
use voucherd::net::leader::LeaderClient;

use crate::pace::Pacer;
use voucherd_load::kit::workload::class_code;

/// Operations a person brings to the peak at least: 3 redeems and 1 check-in.
pub const PERSON_OPERATIONS_MIN: u64 = 4;
/// Operations a person brings at most: also a 4th use, a double redemption
/// and a check-in outside the site.
pub const PERSON_OPERATIONS_MAX: usize = 7;
/// Latency histograms cover 1 µs to 60 s.
const LATENCY_US_MAX: u64 = 60_000_000;

pub struct Institution {
    pub code: InstitutionCode,
    pub site: (f64, f64),
}

/// One connection of the load: to one daemon, or, with several addresses
/// (`--server A,B,C`: a replicated deployment), following its leader: a
/// frame lost with a killed leader, or refused `not_leader`, is sent again
/// with the same request ids to the next leader (`LeaderClient`), so it is
/// applied once and answered as first decided.
pub enum Connection {
    One(Client),
    Following(LeaderClient),
}

impl Connection {
    /// Connects as `role` to `servers` (one address: directly, in
    /// `encoding`; several: following the leader, binary frames).
    pub async fn open(
        servers: &[String],
        certs: &Path,
        role: Role,
        encoding: Encoding,
    ) -> anyhow::Result<Connection> {
        if let [server] = servers {
            let server: SocketAddr = server
                .parse()
                .map_err(|e| anyhow::anyhow!("--server {server}: {e}"))?;
            return Ok(Connection::One(
                Client::connect_encoded(server, certs, role, encoding).await?,
            ));
        }
        anyhow::ensure!(
            encoding == Encoding::Binary,
            "--json takes one --server address (a leader-following connection sends binary frames)"
        );
        Ok(Connection::Following(
            LeaderClient::connect(servers, certs, role).await?,
        ))
    }

    pub async fn execute(&self, requests: &[Request]) -> Result<Vec<Answer>, ClientError> {
        match self {
            Connection::One(client) => client.execute(requests).await,
            Connection::Following(client) => client.execute(requests).await,
        }
    }

    /// Frames sent again after a fail-over (`not_leader`, a lost leader).
    pub async fn retries(&self) -> u64 {
        match self {
            Connection::One(_) => 0,
            Connection::Following(client) => client.retries().await,
        }
    }

    pub async fn close(self) {
        match self {
            Connection::One(client) => client.close().await,
            Connection::Following(client) => client.close().await,
        }
    }
}

/// What the setup phase prepared and every peak phase draws from.
pub struct Workload {
    /// The daemon's address, or a replicated deployment's daemons'.
    pub servers: Vec<String>,
    pub certs: PathBuf,
    pub connections: usize,
    /// Operations per request frame.
    pub batch: usize,
    /// The peak's frames: binary or JSON.
    pub encoding: Encoding,
    pub invalid_percent: u32,
    pub hot_percent: u32,
    pub seed: u64,
    pub run_tag: String,
    /// Each person's 4 claimed vouchers, one of each kind.
    pub vouchers: Vec<[VoucherId; 4]>,
    pub institutions: Vec<Institution>,
    /// The next person of `vouchers` not yet taken by a phase.
    pub next_person: AtomicU64,
}

impl Workload {
    pub fn persons_left(&self) -> u64 {
        (self.vouchers.len() as u64).saturating_sub(self.next_person.load(Ordering::Relaxed))
    }

    /// Operations one frame can hold: at least one whole person.
    fn batch_operations_max(&self) -> usize {
        self.batch.max(PERSON_OPERATIONS_MAX)
    }
}

/// One phase: open loop at `rate_ops_per_s` (each batch due at its share of
/// the rate, latency measured from that due time, so a late answer delays no
/// later measurement: corrected for coordinated omission), or closed loop
/// (`None`: each connection sends its next batch when the last is answered).
pub struct Phase {
    /// Distinguishes the request ids of the phases of one run.
    pub index: u32,
    pub rate_ops_per_s: Option<f64>,
    pub duration: Duration,
}

/// What the generator expects an operation to answer.
#[derive(Clone, Copy)]
enum Expect {
    Ok,
    Refused(Reason),
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub struct Tally {
    pub latency_us: Histogram<u64>,
    /// Open loop: how long after its due time each operation's frame left:
    /// the pacing's own delay, or the connection's previous frame still
    /// unanswered (one frame in flight per connection). Part of `latency_us`.
    pub departed_late_us: Histogram<u64>,
    pub accepted: BTreeMap<&'static str, u64>,
    pub refused: BTreeMap<&'static str, u64>,
    pub unexpected: u64,
    pub connection_errors: u64,
    /// Frames sent again with their ids after a fail-over (several
    /// `--server` addresses; `Connection::retries`).
    pub resent: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("histogram"),
            departed_late_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("histogram"),
            accepted: BTreeMap::new(),
            refused: BTreeMap::new(),
            unexpected: 0,
            connection_errors: 0,
            resent: 0,
        }
    }

    /// Operations answered, accepted or refused.
    pub fn operations(&self) -> u64 {
        self.accepted.values().sum::<u64>() + self.refused.values().sum::<u64>()
    }

    pub fn accepted(&self, op: &str) -> u64 {
        self.accepted.get(op).copied().unwrap_or(0)
    }

    /// Latency at quantile `q`, milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        ms(self.latency_us.value_at_quantile(q))
    }

    pub fn latency_json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.latency_ms(0.5),
            "p90": self.latency_ms(0.9),
            "p99": self.latency_ms(0.99),
            "p99.9": self.latency_ms(0.999),
            "max": ms(self.latency_us.max()),
        })
    }

    /// Departure lateness at quantile `q`, milliseconds (0 in closed loop).
    pub fn departed_late_ms(&self, q: f64) -> f64 {
        ms(self.departed_late_us.value_at_quantile(q))
    }

    pub fn departed_late_json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.departed_late_ms(0.5),
            "p99": self.departed_late_ms(0.99),
            "max": ms(self.departed_late_us.max()),
        })
    }

    pub fn add(&mut self, other: &Tally) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        self.departed_late_us
            .add(&other.departed_late_us)
            .expect("same bounds");
        for (op, n) in &other.accepted {
            *self.accepted.entry(op).or_default() += n;
        }
        for (reason, n) in &other.refused {
            *self.refused.entry(reason).or_default() += n;
        }
        self.unexpected += other.unexpected;
        self.connection_errors += other.connection_errors;
        self.resent += other.resent;
    }

    fn check(&mut self, answer: &Answer, expect: Expect, op: &'static str, progress: &ProgressBar) {
        match (&answer.outcome, expect) {
            (Ok(_), Expect::Ok) => *self.accepted.entry(op).or_default() += 1,
            (Err(refusal), Expect::Refused(reason)) if refusal.reason == reason => {
                *self.refused.entry(refusal.reason.as_str()).or_default() += 1
            }
            (outcome, _) => {
                if let Err(refusal) = outcome {
                    *self.refused.entry(refusal.reason.as_str()).or_default() += 1;
                }
                self.unexpected += 1;
                if self.unexpected <= 5 {
                    progress
                        .suspend(|| eprintln!("unexpected answer to {op}: {:?}", answer.to_json()));
                }
            }
        }
    }
}

/// Answers per second of the whole peak (all phases), by the second in which
/// they came, counted from the start of the first phase.
#[derive(Default)]
pub struct Timeline {
    origin: Option<Instant>,
    seconds: Vec<Second>,
}

struct Second {
    operations: u64,
    latency_us: Histogram<u64>,
}

/// One second of the timeline as reported and plotted.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondFigures {
    pub second: u64,
    /// Operations answered in this second, divided by the part of the second
    /// that lies within the peak (the last second may be partial).
    pub operations_per_s: f64,
    pub operations: u64,
    /// p50 and p99 latency of the operations answered in this second,
    /// milliseconds; `None` when none was.
    pub latency_ms: Option<(f64, f64)>,
}

impl Timeline {
    /// Marks the start of a phase: the first one is the timeline's origin.
    pub fn begin(&mut self, at: Instant) {
        let _ = self.origin.get_or_insert(at);
    }

    /// Seconds from the first phase's start to `end` (0 before any phase).
    pub fn span_s(&self, end: Instant) -> f64 {
        self.origin.map_or(0.0, |origin| {
            end.saturating_duration_since(origin).as_secs_f64()
        })
    }

    fn record(&mut self, at: Instant, operations: u64, latency_us: u64) {
        let origin = self.origin.expect("a phase has begun");
        let second = at.saturating_duration_since(origin).as_secs() as usize;
        while self.seconds.len() <= second {
            self.seconds.push(Second {
                operations: 0,
                // 2 significant digits: about 20 KiB per second of peak.
                latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).expect("histogram"),
            });
        }
        let slot = &mut self.seconds[second];
        slot.operations += operations;
        slot.latency_us
            .record_n(latency_us.clamp(1, LATENCY_US_MAX), operations)
            .expect("in bounds");
    }

    /// The figures of every second from the origin to `end` (and any later
    /// second that has answers), gaps included; none before any phase.
    pub fn figures(&self, end: Instant) -> Vec<SecondFigures> {
        if self.origin.is_none() {
            return Vec::new();
        }
        let total_s = self.span_s(end);
        let count = (total_s.ceil() as usize).max(self.seconds.len()).max(1);
        (0..count)
            .map(|second| {
                let within_s = (total_s - second as f64).clamp(0.0, 1.0);
                let (operations, latency_ms) = match self.seconds.get(second) {
                    Some(slot) if slot.operations > 0 => (
                        slot.operations,
                        Some((
                            ms(slot.latency_us.value_at_quantile(0.5)),
                            ms(slot.latency_us.value_at_quantile(0.99)),
                        )),
                    ),
                    _ => (0, None),
                };
                SecondFigures {
                    second: second as u64,
                    operations_per_s: if within_s > 0.0 {
                        operations as f64 / within_s
                    } else {
                        0.0
                    },
                    operations,
                    latency_ms,
                }
            })
            .collect()
    }
}

pub struct Outcome {
    pub tally: Tally,
    /// From the phase's start to the last answer, seconds.
    pub wall_s: f64,
    /// The pool of persons ran out before the deadline.
    pub ran_out: bool,
}

/// Runs one phase. `progress` counts operations answered (its length is set
/// by the caller, e.g. the target operations of an open-loop step).
pub async fn run(
    workload: &Arc<Workload>,
    phase: Phase,
    timeline: &Arc<Mutex<Timeline>>,
    progress: &ProgressBar,
) -> anyhow::Result<Outcome> {
    let mut clients = Vec::with_capacity(workload.connections);
    for _ in 0..workload.connections {
        clients.push(
            Connection::open(
                &workload.servers,
                &workload.certs,
                Role::Gateway,
                workload.encoding,
            )
            .await?,
        );
    }
    let tally = Arc::new(Mutex::new(Tally::new()));
    let pacer = Arc::new(Pacer::start()?);
    let ran_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    timeline.lock().begin(started);
    let deadline = started + phase.duration;
    let mut workers = Vec::new();
    for (worker, client) in clients.into_iter().enumerate() {
        let (workload, tally, pacer, timeline, ran_out, progress) = (
            Arc::clone(workload),
            Arc::clone(&tally),
            Arc::clone(&pacer),
            Arc::clone(timeline),
            Arc::clone(&ran_out),
            progress.clone(),
        );
        let (phase_index, rate) = (phase.index, phase.rate_ops_per_s);
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                workload.seed ^ (u64::from(phase_index) << 32) ^ (worker as u64 + 1),
            );
            let connections = workload.connections as f64;
            // Open loop: the connections' first batches are spread over one
            // nominal interval so they do not all leave at once.
            let mut due = match rate {
                Some(rate) => {
                    let nominal_s = connections * workload.batch_operations_max() as f64 / rate;
                    started + Duration::from_secs_f64(nominal_s * worker as f64 / connections)
                }
                None => started,
            };
            let mut sequence = 0u64;
            loop {
                if Instant::now() >= deadline || (rate.is_some() && due >= deadline) {
                    break;
                }
                let batch = compose(&workload, &mut rng, phase_index, worker, &mut sequence);
                if batch.is_empty() {
                    ran_out.store(true, Ordering::Relaxed);
                    break;
                }
                match rate {
                    Some(_) => pacer.until(due).await,
                    None => due = Instant::now(),
                }
                let requests: Vec<Request> = batch.iter().map(|(r, _, _)| r.clone()).collect();
                let departed_late_us =
                    Instant::now().saturating_duration_since(due).as_micros() as u64;
                let result = client.execute(&requests).await;
                let answered = Instant::now();
                let latency_us = answered.saturating_duration_since(due).as_micros() as u64;
                {
                    let mut tally = tally.lock();
                    match result {
                        Ok(answers) => {
                            for (answer, (_, expect, name)) in answers.iter().zip(&batch) {
                                tally.check(answer, *expect, name, &progress);
                            }
                            let operations = answers.len() as u64;
                            tally
                                .latency_us
                                .record_n(latency_us.clamp(1, LATENCY_US_MAX), operations)
                                .expect("in bounds");
                            if rate.is_some() {
                                tally
                                    .departed_late_us
                                    .record_n(departed_late_us.clamp(1, LATENCY_US_MAX), operations)
                                    .expect("in bounds");
                            }
                            timeline.lock().record(answered, operations, latency_us);
                            progress.inc(operations);
                        }
                        Err(error) => {
                            tally.connection_errors += 1;
                            progress.suspend(|| eprintln!("batch failed: {error}"));
                        }
                    }
                }
                if let Some(rate) = rate {
                    due += Duration::from_secs_f64(batch.len() as f64 * connections / rate);
                }
            }
            client
        }));
    }
    let mut clients = Vec::with_capacity(workers.len());
    for worker in workers {
        clients.push(worker.await?);
    }
    let wall_s = started.elapsed().as_secs_f64();
    // Connections close once every worker is done: a close while others
    // still send is not part of the phase, nor of its wall time.
    let mut resent = 0;
    for client in &clients {
        resent += client.retries().await;
    }
    let mut closing: tokio::task::JoinSet<()> =
        clients.into_iter().map(Connection::close).collect();
    while closing.join_next().await.is_some() {}
    let mut tally = std::mem::take(&mut *tally.lock());
    tally.resent += resent;
    Ok(Outcome {
        tally,
        wall_s,
        ran_out: ran_out.load(Ordering::Relaxed),
    })
}

/// The next frame of one worker: whole persons, each redeeming 3 vouchers at
/// one institution (a few hot ones take `hot_percent` of the traffic) and
/// checking in once; `invalid_percent` of them also try a 4th use, a double
/// redemption and a check-in 5 km from the site. Empty when the pool is out.
fn compose(
    workload: &Workload,
    rng: &mut rand::rngs::StdRng,
    phase_index: u32,
    worker: usize,
    sequence: &mut u64,
) -> Vec<(Request, Expect, &'static str)> {
    let mut batch: Vec<(Request, Expect, &'static str)> = Vec::new();
    let institutions = &workload.institutions;
    while batch.len() + PERSON_OPERATIONS_MAX <= workload.batch_operations_max() {
        let p = workload.next_person.fetch_add(1, Ordering::Relaxed);
        if p >= workload.vouchers.len() as u64 {
            break;
        }
        let four = workload.vouchers[p as usize];
        let hot = rng.gen_range(0..100) < workload.hot_percent;
        let at = if hot {
            rng.gen_range(0..5.min(institutions.len()))
        } else {
            rng.gen_range(0..institutions.len())
        };
        let institution = &institutions[at];
        let mut push = |op: Op, expect: Expect, name: &'static str| {
            *sequence += 1;
            batch.push((
                Request {
                    id: format!(
                        "load-{}-{phase_index}-{worker}-{sequence}",
                        workload.run_tag
                    ),
                    op,
                },
                expect,
                name,
            ));
        };
        // Voucher k of a person is of kind `Kind::ALL[k]` (setup), enrolled
        // in the institution's class of that kind.
        let redeem = |k: usize| Op::Redeem {
            voucher: four[k],
            institution: institution.code,
            operator: format!("op-{at}").parse().expect("operator"),
            class: class_code(Kind::ALL[k]),
        };
        for k in 0..3 {
            push(redeem(k), Expect::Ok, "redeem");
        }
        push(
            Op::Checkin {
                voucher: four[0],
                lat: institution.site.0,
                lon: institution.site.1,
            },
            Expect::Ok,
            "checkin",
        );
        if rng.gen_range(0..100) < workload.invalid_percent {
            push(
                redeem(3),
                Expect::Refused(Reason::UseLimitReached),
                "redeem",
            );
            push(
                redeem(0),
                Expect::Refused(Reason::AlreadyRedeemed),
                "redeem",
            );
            push(
                Op::Checkin {
                    voucher: four[1],
                    lat: institution.site.0 + 0.05,
                    lon: institution.site.1,
                },
                Expect::Refused(Reason::OutsideSite),
                "checkin",
            );
        }
    }
    assert!(
        batch.len() <= workload.batch_operations_max(),
        "a frame holds at most the batch size"
    );
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline puts answers in the second they came and divides the last,
    /// partial second by its length; a second without answers has no latency.
    #[test]
    fn timeline_figures_per_second() {
        let origin = Instant::now();
        let mut timeline = Timeline::default();
        assert!(timeline.figures(origin).is_empty());
        timeline.begin(origin);
        timeline.record(origin + Duration::from_millis(100), 10, 2_000);
        timeline.record(origin + Duration::from_millis(900), 10, 4_000);
        timeline.record(origin + Duration::from_millis(2_200), 5, 1_000);
        let figures = timeline.figures(origin + Duration::from_millis(2_500));
        assert_eq!(figures.len(), 3);
        assert_eq!(figures[0].operations, 20);
        assert_eq!(figures[0].operations_per_s, 20.0);
        let (p50, p99) = figures[0].latency_ms.unwrap();
        assert!(
            (p50 - 2.0).abs() < 0.05 && (p99 - 4.0).abs() < 0.05,
            "{p50} {p99}"
        );
        assert_eq!(figures[1].operations, 0);
        assert_eq!(figures[1].latency_ms, None);
        assert_eq!(figures[2].operations, 5);
        assert!(
            (figures[2].operations_per_s - 10.0).abs() < 1e-9,
            "5 in 0.5 s"
        );
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally::new();
        a.accepted.insert("redeem", 3);
        a.latency_us.record(1_000).unwrap();
        let mut b = Tally::new();
        b.accepted.insert("redeem", 2);
        b.refused.insert("outside_site", 1);
        b.latency_us.record(3_000).unwrap();
        b.departed_late_us.record(700).unwrap();
        a.add(&b);
        assert_eq!(a.accepted("redeem"), 5);
        assert_eq!(a.operations(), 6);
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!(a.departed_late_us.len(), 1);
        assert_eq!(a.departed_late_json()["max"], 0.7);
    }
}

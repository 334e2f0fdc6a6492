//! Replicated mode on a three-node JetStream cluster that each test starts
//! and stops itself (`kit::nats`): a standby answers `not_leader` naming the
//! leader; kill -9 of the leader under writes, a standby takes over, every
//! acknowledged change is there (and a retry of its id answers the same),
//! and the chains verify and agree. The soak tier repeats the kill 30 times
//! (fail-over times measured), kills a NATS node, and SIGSTOPs a leader.
//! Skipped, saying so, only when nats-server is missing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::daemon::{free_port, sample, scrape, serve, voucherd_ok, Daemon};
use crate::common::*;
use voucherd::admin::data_dir;
use voucherd::domain::enums::Kind;
use voucherd::domain::ids::{PersonSecret, VoucherId};
use voucherd::domain::op::{Op, Reply, Request, Role};
use voucherd::error::Reason;
use voucherd::net::client::Client;
use voucherd::net::leader::LeaderClient;
use voucherd_load::kit::nats::{self, Cluster};

/// How long a node may take to lead (lease lapse plus catch-up).
const LEAD_WAIT: Duration = Duration::from_secs(30);

fn nats_present() -> bool {
    if nats::server().is_none() {
        eprintln!("SKIPPED: nats-server is missing (ops/install-deps.sh installs it into ./.venv)");
        return false;
    }
    true
}

/// A data folder holding the deployment's person-key secret (every node of
/// a replicated deployment shares it: records carry keyed person ids).
fn node_folder(dir: &Path, name: &str, secret: &PersonSecret) -> PathBuf {
    let data = dir.join(name);
    data_dir::create_private_dir(&data).unwrap();
    let key = data.join(data_dir::SECRET_FILE);
    if !key.exists() {
        data_dir::write_secret(&key, secret).unwrap();
    }
    data
}

fn start_node(dir: &Path, name: &str, cluster: &Cluster, secret: &PersonSecret) -> Daemon {
    start_node_with(dir, name, cluster, secret, &[])
}

/// A test's folder and cluster with two daemons of one person key on it:
/// "a" leading, then "b" its standby. Bound in this order, the folder is
/// dropped last.
async fn leader_and_standby(key: u8) -> (tempfile::TempDir, Cluster, PathBuf, Daemon, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("nats")).unwrap();
    let certs = dir.path().join("certs");
    let secret = PersonSecret([key; 32]);
    let mut leader = start_node(dir.path(), "a", &cluster, &secret);
    wait_leading(&mut leader, &certs).await;
    let standby = start_node(dir.path(), "b", &cluster, &secret);
    (dir, cluster, certs, leader, standby)
}

fn start_node_with(
    dir: &Path,
    name: &str,
    cluster: &Cluster,
    secret: &PersonSecret,
    args: &[&str],
) -> Daemon {
    let data = node_folder(dir, name, secret);
    let mut all = vec!["--replicate", &cluster.urls];
    all.extend_from_slice(args);
    serve(
        &data,
        &dir.join("certs"),
        &dir.join(format!("{name}.log")),
        &all,
        &[],
    )
}

/// A node with its metrics on a port of its own: the daemon and the port.
fn start_node_scraped(
    dir: &Path,
    name: &str,
    cluster: &Cluster,
    secret: &PersonSecret,
) -> (Daemon, u16) {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let daemon = start_node_with(dir, name, cluster, secret, &["--metrics", &metrics]);
    (daemon, port)
}

/// Scrapes `port` until `check` accepts the body (the gauges are sampled
/// once a second), or panics with the last reason after `LEAD_WAIT`.
fn scrape_until_ok(port: u16, check: impl Fn(&str) -> Result<(), String>) {
    let started = Instant::now();
    loop {
        let body = scrape(port);
        match check(&body) {
            Ok(()) => return,
            Err(why) if started.elapsed() > LEAD_WAIT => panic!("{why}; scrape:\n{body}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The replication figures a scrape must show for a node in `role`
/// (1 leader, 0 standby) that is no further behind than `lag_max`.
fn replica_metrics(body: &str, role: f64, lag_max: f64) -> Result<(), String> {
    let value = |name: &str| sample(body, name, &[]).ok_or(format!("no {name}"));
    if value("voucherd_replica_leader")? != role {
        return Err(format!("voucherd_replica_leader is not {role}"));
    }
    if value("voucherd_replica_lag_messages")? > lag_max {
        return Err(format!("lag above {lag_max}"));
    }
    if value("voucherd_replica_stream_bytes")? <= 0.0 {
        return Err("an empty stream".into());
    }
    if value("voucherd_replica_fenced_publishes_total")? != 0.0 {
        return Err("voucherd_replica_fenced_publishes_total is not 0".into());
    }
    // A renewal unanswered within its second is sent again (D107): on a
    // loaded machine a live leader may count some.
    value("voucherd_replica_lease_renew_failures_total")?;
    Ok(())
}

/// `audit_head` of one daemon (no following): the head, or the refusal.
async fn head_of(addr: std::net::SocketAddr, certs: &Path) -> Result<Reply, (Reason, String)> {
    let client = Client::connect(addr, certs, Role::Auditor)
        .await
        .map_err(|e| (Reason::ShuttingDown, e.to_string()))?;
    let answers = client
        .execute(&[Request {
            id: "head".into(),
            op: Op::AuditHead,
        }])
        .await
        .map_err(|e| (Reason::ShuttingDown, e.to_string()))?;
    client.close().await;
    answers[0]
        .outcome
        .clone()
        .map_err(|r| (r.reason, r.message))
}

/// Waits until `node` serves (answers `audit_head` instead of
/// `not_leader`); panics with its log after `LEAD_WAIT`. A node that
/// stepped down (exit 75: a lease renewal or an append not acknowledged in
/// time, which a loaded machine can cause) is started again, as its
/// supervisor would (ops/voucherd.service, `Restart=on-failure`).
async fn wait_leading(node: &mut Daemon, certs: &Path) -> Reply {
    let started = Instant::now();
    loop {
        if let Some(status) = node.try_status() {
            assert_eq!(
                status.code(),
                Some(i32::from(voucherd::replica::EXIT_STEPPED_DOWN)),
                "{} exited with {status}; its log:\n{}",
                node.addr,
                node.log()
            );
            eprintln!(
                "{} stepped down; started again as its supervisor would; its log:\n{}",
                node.addr,
                node.log()
            );
            node.restart().unwrap();
        }
        match head_of(node.addr, certs).await {
            Ok(head) => return head,
            Err(why) if started.elapsed() > LEAD_WAIT => panic!(
                "{} did not lead within {LEAD_WAIT:?}: {why:?}; its log:\n{}",
                node.addr,
                node.log()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn issue_request(n: u64) -> Request {
    Request {
        id: format!("fo-{n}"),
        op: issue(&id_number(n), Kind::ALL[0]),
    }
}

/// What the writer saw: each acknowledged issue (its number and voucher),
/// and when each was acknowledged.
#[derive(Default)]
struct Acknowledged {
    vouchers: Vec<(u64, VoucherId, Instant)>,
}

/// Issues vouchers one request at a time through a leader-following
/// client until `stop`, numbering persons from `first`.
async fn write_until(
    servers: Vec<String>,
    certs: PathBuf,
    first: u64,
    acknowledged: Arc<Mutex<Acknowledged>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    stop_on_error: bool,
) -> Option<String> {
    let client = LeaderClient::connect(&servers, &certs, Role::Bureau)
        .await
        .unwrap();
    let mut n = first;
    let mut failure = None;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let answers = match client.execute(&[issue_request(n)]).await {
            Ok(answers) => answers,
            Err(e) if stop_on_error => {
                failure = Some(format!("writer stops at issue {n}: {e}"));
                break;
            }
            Err(e) => panic!("issue {n}: {e}"),
        };
        if stop_on_error && answers[0].outcome.is_err() {
            failure = Some(format!(
                "writer stops at issue {n}: {:?}",
                answers[0].outcome
            ));
            break;
        }
        match &answers[0].outcome {
            Ok(Reply::Issued { voucher }) => {
                acknowledged
                    .lock()
                    .unwrap()
                    .vouchers
                    .push((n, *voucher, Instant::now()));
            }
            other => panic!("issue {n}: {other:?}"),
        }
        n += 1;
    }
    client.close().await;
    if let Some(failure) = &failure {
        eprintln!("{failure}");
    }
    failure
}

/// `write_until` on a task of its own: what it acknowledged so far, and
/// the flag that stops it.
struct Writer {
    acknowledged: Arc<Mutex<Acknowledged>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Writer {
    fn start(servers: Vec<String>, certs: &Path, first: u64, stop_on_error: bool) -> Writer {
        let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(write_until(
            servers,
            certs.to_path_buf(),
            first,
            Arc::clone(&acknowledged),
            Arc::clone(&stop),
            stop_on_error,
        ));
        Writer {
            acknowledged,
            stop,
            task,
        }
    }

    /// Writes acknowledged so far.
    fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().vouchers.len()
    }

    /// Stops it: every write it had acknowledged, and the failure it
    /// stopped at before (`stop_on_error`), if any.
    async fn finish(self) -> (Acknowledged, Option<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let failure = self.task.await.unwrap();
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        (acknowledged, failure)
    }
}

/// Every acknowledged issue, retried with its id on the leader behind
/// `servers`, answers the same voucher (it is there, and once).
async fn check_acknowledged(servers: &[String], certs: &Path, acknowledged: &Acknowledged) {
    let client = LeaderClient::connect(servers, certs, Role::Bureau)
        .await
        .unwrap();
    for chunk in acknowledged.vouchers.chunks(64) {
        let requests: Vec<Request> = chunk.iter().map(|(n, _, _)| issue_request(*n)).collect();
        let answers = client.execute(&requests).await.unwrap();
        for ((n, voucher, _), answer) in chunk.iter().zip(&answers) {
            assert_eq!(
                answer.outcome,
                Ok(Reply::Issued { voucher: *voucher }),
                "issue {n} was acknowledged as {voucher} but the leader now answers otherwise"
            );
        }
    }
    client.close().await;
}

/// What one kill -9 of the leader under writes measured, milliseconds from
/// the kill: until the standby serves a fresh connection (`takeover_ms`),
/// and until the writer's first accepted write (`first_write_ms`: its own
/// connection to the dead leader must first time out, `CLIENT_IDLE_TIMEOUT_MS`).
struct Failover {
    takeover_ms: u128,
    first_write_ms: u128,
    acknowledged: Acknowledged,
    /// The leader's metrics scraped just before the kill (when asked).
    leader_scrape: String,
}

/// The trial both tiers run: writes through a leader-following client, a
/// kill -9 of the leader after `before` acknowledgements, then `after` more.
async fn kill_leader_under_writes(
    leader: &mut Daemon,
    standby: &mut Daemon,
    certs: &Path,
    first: u64,
    before: usize,
    after: usize,
    leader_metrics: Option<u16>,
) -> Failover {
    let servers = vec![leader.addr.to_string(), standby.addr.to_string()];
    let writer = Writer::start(servers, certs, first, false);
    let count = || writer.count();
    let started = Instant::now();
    while count() < before {
        assert!(started.elapsed() < LEAD_WAIT, "no writes acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let leader_scrape = leader_metrics.map(scrape).unwrap_or_default();
    leader.kill().unwrap();
    let killed = Instant::now();
    wait_leading(standby, certs).await;
    let takeover_ms = killed.elapsed().as_millis();
    let at_kill = count();
    while count() < at_kill + after {
        assert!(
            killed.elapsed() < LEAD_WAIT * 2,
            "writes did not resume after the kill; standby log:\n{}",
            standby.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (acknowledged, _) = writer.finish().await;
    let first_after = acknowledged
        .vouchers
        .iter()
        .map(|(_, _, at)| *at)
        .find(|at| *at > killed)
        .expect("writes after the kill");
    Failover {
        takeover_ms,
        first_write_ms: (first_after - killed).as_millis(),
        acknowledged,
        leader_scrape,
    }
}

/// Sends `frames` frames of `per_frame` issues at once to `addr` (persons
/// numbered from `first`), each answered whole: what they acknowledged.
async fn burst(
    addr: std::net::SocketAddr,
    certs: &Path,
    first: u64,
    frames: u64,
    per_frame: u64,
) -> Acknowledged {
    let client = Arc::new(Client::connect(addr, certs, Role::Bureau).await.unwrap());
    let sends: Vec<_> = (0..frames)
        .map(|frame| {
            let client = Arc::clone(&client);
            let from = first + frame * per_frame;
            tokio::spawn(async move {
                let requests: Vec<Request> = (from..from + per_frame).map(issue_request).collect();
                let answers = client.execute(&requests).await.unwrap();
                (from..)
                    .zip(answers)
                    .map(|(n, answer)| match answer.outcome {
                        Ok(Reply::Issued { voucher }) => (n, voucher, Instant::now()),
                        other => panic!("issue {n}: {other:?}"),
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acknowledged = Acknowledged::default();
    for send in sends {
        acknowledged.vouchers.extend(send.await.unwrap());
    }
    acknowledged
}

/// The head a serving daemon answers.
async fn head_seq_hash(node: &mut Daemon, certs: &Path) -> (u64, String) {
    match wait_leading(node, certs).await {
        Reply::AuditHead { seq, hash, .. } => (seq, hash),
        other => panic!("audit_head answered {other:?}"),
    }
}

/// `voucherd audit verify` of a stopped node's data folder.
fn verify_offline(data: &Path, seq: u64) {
    let verified = voucherd_ok(&["audit", "verify", "--data", &data.display().to_string()]);
    assert!(
        verified.contains(&format!("{seq} records")),
        "audit verify: {verified}"
    );
}

fn median_and_max(values: &mut [u128]) -> (u128, u128) {
    values.sort_unstable();
    (values[values.len() / 2], values[values.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_after_kill_9_of_the_leader_with_every_acknowledged_change() {
    if !nats_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("nats")).unwrap();
    let certs = dir.path().join("certs");
    let secret = PersonSecret([7; 32]);
    let (mut first, first_metrics) = start_node_scraped(dir.path(), "a", &cluster, &secret);
    wait_leading(&mut first, &certs).await;
    // Frames of a thousand issues at once (commit groups of hundreds of
    // records in one stream message, D111), before the standby starts: it
    // catches up through them in batches larger than it may hand its store
    // at once (`REPLICA_FOLLOW_COMMITS_MAX`).
    let burst = burst(first.addr, &certs, 100_000, 4, 1_000).await;
    let (mut second, second_metrics) = start_node_scraped(dir.path(), "b", &cluster, &secret);

    // A standby refuses with the leader's address (what clients follow).
    let started = Instant::now();
    let refusal = loop {
        match head_of(second.addr, &certs).await {
            Err((Reason::NotLeader, message)) if message.contains("leader=") => break message,
            other if started.elapsed() > LEAD_WAIT => panic!("standby answered {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(
        refusal.contains(&format!("leader={}", first.addr)),
        "the standby names the leader: {refusal}"
    );
    scrape_until_ok(second_metrics, |body| replica_metrics(body, 0.0, 0.0));

    let failover = kill_leader_under_writes(
        &mut first,
        &mut second,
        &certs,
        1,
        30,
        30,
        Some(first_metrics),
    )
    .await;
    // The new leader's figures; the killed one's, read just before, came
    // from a leader that had published.
    scrape_until_ok(second_metrics, |body| replica_metrics(body, 1.0, 0.0));
    let published = failover.leader_scrape;
    assert!(
        sample(
            &published,
            "voucherd_replica_publish_duration_seconds_count",
            &[]
        )
        .is_some_and(|groups| groups > 0.0),
        "the leader's publish latency histogram:\n{published}"
    );
    replica_metrics(&published, 1.0, f64::INFINITY).unwrap();
    eprintln!(
        "fail-over: {} ms from kill -9 of the leader until the standby serves, {} ms until the writer's first accepted write; {} writes acknowledged",
        failover.takeover_ms,
        failover.first_write_ms,
        failover.acknowledged.vouchers.len()
    );
    // How soon is measured, not asserted here (a shared machine's timing is
    // no test): the soak tier's thirty kills hold the 5 s bound; the
    // leader-following client skipping a lost leader is unit-tested (net::leader).
    let mut acknowledged = failover.acknowledged;
    acknowledged.vouchers.extend(burst.vouchers);
    check_acknowledged(&[second.addr.to_string()], &certs, &acknowledged).await;
    let (seq, hash) = head_seq_hash(&mut second, &certs).await;

    // The new leader's chain verifies offline; the old leader, restarted,
    // catches up from the stream and leads with the very same chain.
    second.stop().unwrap();
    verify_offline(&dir.path().join("b"), seq);
    first.restart().unwrap();
    assert_eq!(
        head_seq_hash(&mut first, &certs).await,
        (seq, hash),
        "both chains agree"
    );
    check_acknowledged(&[first.addr.to_string()], &certs, &acknowledged).await;
    // It followed from its own head, not from the stream's first message.
    let (audit_seq, stream_seq) = resumed_from(&first.log());
    assert!(
        audit_seq >= 4_030 && stream_seq > 1,
        "the restarted node resumes at its head: audit {audit_seq}, stream {stream_seq}"
    );
    drop(cluster);
}

/// Where the last start logged in `log` resumed following: its store's
/// audit head and that record's stream sequence.
fn resumed_from(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rfind(|line| line.contains("following the stream from this store's head"))
        .unwrap_or_else(|| panic!("no resume line in the log:\n{log}"));
    eprintln!("resumed: {line}");
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("audit_seq="), field("stream_seq="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 30 kill -9 of the leader under writes, fail-over times measured (minutes)"]
async fn thirty_leader_kills_each_taken_over_with_every_acknowledged_change() {
    if !nats_present() {
        return;
    }
    let trials: usize = std::env::var("VOUCHERD_FAILOVER_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(30);
    let (dir, cluster, certs, mut leader, mut standby) = leader_and_standby(9).await;
    let mut names = ("a", "b");
    let (mut takeovers, mut first_writes) = (Vec::new(), Vec::new());
    let mut all = Acknowledged::default();
    for trial in 0..trials {
        let first = 1 + (trial as u64) * 1_000;
        let failover =
            kill_leader_under_writes(&mut leader, &mut standby, &certs, first, 10, 10, None).await;
        eprintln!(
            "trial {trial}: takeover {} ms, first write {} ms",
            failover.takeover_ms, failover.first_write_ms
        );
        takeovers.push(failover.takeover_ms);
        first_writes.push(failover.first_write_ms);
        all.vouchers.extend(failover.acknowledged.vouchers);
        // The killed node comes back as the standby.
        leader.restart().unwrap();
        std::mem::swap(&mut leader, &mut standby);
        names = (names.1, names.0);
    }
    check_acknowledged(&[leader.addr.to_string()], &certs, &all).await;
    let (seq, hash) = head_seq_hash(&mut leader, &certs).await;
    let (takeover_median, takeover_max) = median_and_max(&mut takeovers);
    let (write_median, write_max) = median_and_max(&mut first_writes);
    eprintln!(
        "{trials} leader kills: takeover median {takeover_median} ms, max {takeover_max} ms; \
         first accepted write median {write_median} ms, max {write_max} ms; {} writes acknowledged",
        all.vouchers.len()
    );
    // The issue's bound: kill to first accepted write at most 5 s.
    assert!(
        write_max <= 5_000,
        "first accepted write {write_max} ms after a kill"
    );
    leader.stop().unwrap();
    verify_offline(&dir.path().join(names.0), seq);
    standby.restart().unwrap();
    assert_eq!(head_seq_hash(&mut standby, &certs).await, (seq, hash));
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: a SIGSTOPped leader is fenced by the stream and steps down"]
async fn a_sigstopped_leader_is_fenced_and_steps_down_without_acknowledging() {
    if !nats_present() {
        return;
    }
    let (dir, cluster, certs, mut first, mut second) = leader_and_standby(5).await;
    let writer = Writer::start(
        vec![first.addr.to_string(), second.addr.to_string()],
        &certs,
        1,
        false,
    );
    let count = || writer.count();
    while count() < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = libc::pid_t::try_from(first.pid()).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    wait_leading(&mut second, &certs).await;
    let at_takeover = count();
    while count() < at_takeover + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let status = first.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(75),
        "the deposed leader steps down (exit 75); log:\n{}",
        first.log()
    );
    let (acknowledged, _) = writer.finish().await;
    check_acknowledged(&[second.addr.to_string()], &certs, &acknowledged).await;
    // Restarted as the unit does (exit 75 is restarted), it is a standby
    // that names the new leader and follows its writes.
    first.restart().unwrap();
    let started = Instant::now();
    loop {
        match head_of(first.addr, &certs).await {
            Err((Reason::NotLeader, message))
                if message.contains(&format!("leader={}", second.addr)) =>
            {
                break
            }
            other if started.elapsed() > LEAD_WAIT => {
                panic!("the restarted node answered {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let writer = Writer::start(vec![second.addr.to_string()], &certs, 10_000, false);
    while writer.count() < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (later, _) = writer.finish().await;
    let (seq, hash) = head_seq_hash(&mut second, &certs).await;
    assert!(
        first
            .log()
            .contains("following the stream from this store's head"),
        "{}",
        first.log()
    );
    second.stop().unwrap();
    verify_offline(&dir.path().join("b"), seq);
    assert_eq!(head_seq_hash(&mut first, &certs).await, (seq, hash));
    check_acknowledged(&[first.addr.to_string()], &certs, &later).await;
    drop(cluster);
}

/// NATS node kills under writes (issue 20): one node killed, writes go
/// on; two killed, nothing more is acknowledged (no majority holds it),
/// the writer is refused with the reason, and once one of them returns
/// writes resume; all three killed at once and restarted, every
/// acknowledged write is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: kill -9 of one NATS node, then two, then all three, under writes"]
async fn nats_node_kills_lose_no_acknowledged_change() {
    if !nats_present() {
        return;
    }
    let (_dir, cluster, certs, mut first, mut second) = leader_and_standby(3).await;
    let mut all = Acknowledged::default();
    // (killed, returned before the writer stops): the writer stops at its
    // first failure.
    let rounds = [
        (vec![1], vec![]),
        (vec![1, 2], vec![1]),
        (vec![1, 2, 3], vec![1, 2, 3]),
    ];
    for (round, (killed_nodes, returned)) in rounds.into_iter().enumerate() {
        let writer = Writer::start(
            servers_now(&first, &second),
            &certs,
            1 + round as u64 * 10_000,
            true,
        );
        let count = || writer.count();
        let started = Instant::now();
        while count() < 20 {
            assert!(started.elapsed() < LEAD_WAIT, "no writes acknowledged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for &n in &killed_nodes {
            cluster.kill(n).unwrap();
        }
        let killed = count();
        let majority = killed_nodes.len() == 1;
        if majority {
            tokio::time::sleep(Duration::from_secs(20)).await;
        } else {
            // No majority: the writer is refused (its leader's publish or
            // lease renewal unanswered), directly or after its client's
            // fail-over wait.
            let started = Instant::now();
            while !writer.task.is_finished() {
                assert!(
                    started.elapsed() < 3 * LEAD_WAIT,
                    "the writer is still answered without a NATS majority"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let after = count() - killed;
        eprintln!("NATS nodes {killed_nodes:?} killed: {after} writes acknowledged after");
        for &n in &returned {
            cluster.restart(n).unwrap();
        }
        let (acknowledged, failure) = writer.finish().await;
        if majority {
            // Writes go on; or, when the lease bucket's own stream leader
            // was on the killed node, renewals went unanswered during its
            // election and the leader stepped down (D107, D112): then a
            // standby takes over and writes go on there (below).
            if after == 0 {
                let failure = failure.expect("no write acknowledged, none refused");
                assert!(failure.contains("stepped down"), "{failure}");
            }
        } else {
            // The one write in flight at the kill may have been on a
            // majority already; nothing later can be. Refused with the
            // reason: the leader stepped down, its waiting write
            // `outcome_unknown` (D112).
            assert!(after <= 1, "{after} writes acknowledged without a majority");
            let failure = failure.expect("the writer was refused");
            assert!(failure.contains("stepped down"), "{failure}");
        }
        // A daemon still retrying its publish decides within that time.
        tokio::time::sleep(Duration::from_secs(20)).await;
        all.vouchers.extend(acknowledged.vouchers);
        // A daemon that stopped (its appends unacknowledged: exit 75) is
        // restarted as a supervisor would.
        for node in [&mut first, &mut second] {
            if let Some(status) = node.try_status() {
                assert_eq!(status.code(), Some(75), "log:\n{}", node.log());
                node.restart().unwrap();
            }
        }
        if returned != killed_nodes {
            // A majority (one node down, or one of two back): writes go on.
            let first_n = 5_001 + round as u64 * 10_000;
            let servers = servers_now(&first, &second);
            all.vouchers
                .extend(writes_resume(servers, &certs, first_n, &returned).await);
            for &n in killed_nodes.iter().filter(|n| !returned.contains(n)) {
                cluster.restart(n).unwrap();
            }
        }
    }
    check_acknowledged(&servers_now(&first, &second), &certs, &all).await;
    drop(cluster);
}

/// A new writer gets 20 writes acknowledged within two lease waits (a
/// standby may first take over): what it acknowledged.
async fn writes_resume(
    servers: Vec<String>,
    certs: &Path,
    first_n: u64,
    returned: &[usize],
) -> Vec<(u64, VoucherId, Instant)> {
    let writer = Writer::start(servers, certs, first_n, false);
    let started = Instant::now();
    while writer.count() < 20 {
        assert!(
            started.elapsed() < 2 * LEAD_WAIT,
            "writes did not go on with two NATS nodes of three"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "two NATS nodes of three (returned: {returned:?}): 20 writes acknowledged {} ms after a \
         new writer started",
        started.elapsed().as_millis()
    );
    writer.finish().await.0.vouchers
}

fn servers_now(first: &Daemon, second: &Daemon) -> Vec<String> {
    vec![first.addr.to_string(), second.addr.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: replicated against single-node throughput, same run"]
async fn replicated_throughput_beside_single_node() {
    if !nats_present() {
        return;
    }
    let rounds: usize = std::env::var("VOUCHERD_THROUGHPUT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let secret = PersonSecret([4; 32]);
    // Both run throughout; their measurements alternate.
    let single = serve(
        &node_folder(dir.path(), "single", &secret),
        &certs,
        &dir.path().join("single.log"),
        &[],
        &[],
    );
    let cluster = Cluster::start(&dir.path().join("nats")).unwrap();
    let mut leader = start_node(dir.path(), "a", &cluster, &secret);
    wait_leading(&mut leader, &certs).await;
    let (mut singles, mut replicated) = (Vec::new(), Vec::new());
    let (connections, batch) = throughput_shape();
    for round in 0..rounds {
        // Persons of a round: 100,000 a connection at most.
        let first = 1 + round as u64 * 100_000;
        assert!((round as u64 + 1) * 100_000 <= 9_000_000 / connections);
        let (single_rate, single_p99) = issue_rate(single.addr, &certs, first).await;
        let (replicated_rate, replicated_p99) = issue_rate(leader.addr, &certs, first).await;
        eprintln!(
            "round {round}: issues per second, {connections} connections x batches of \
             {batch} for {THROUGHPUT_SECONDS} s each: single-node {single_rate:.0} \
             (frame p99 {single_p99:.1} ms), replicated {replicated_rate:.0} (frame p99 \
             {replicated_p99:.1} ms), {:.0}%",
            100.0 * replicated_rate / single_rate
        );
        assert!(replicated_rate > 0.0 && single_rate > 0.0);
        singles.push(single_rate);
        replicated.push(replicated_rate);
    }
    let (single_sum, replicated_sum): (f64, f64) = (singles.iter().sum(), replicated.iter().sum());
    eprintln!(
        "{rounds} rounds: single-node {:.0} issues/s, replicated {:.0} issues/s on average: {:.0}%",
        single_sum / rounds as f64,
        replicated_sum / rounds as f64,
        100.0 * replicated_sum / single_sum
    );
    single.stop().unwrap();
    drop(cluster);
}

const THROUGHPUT_SECONDS: u64 = 10;

/// Connections and issues per frame of the throughput comparison (closed
/// loop: their product is what is in flight), 8 and 32 unless
/// `VOUCHERD_THROUGHPUT_SHAPE=CONNECTIONSxBATCH` says otherwise.
fn throughput_shape() -> (u64, u64) {
    std::env::var("VOUCHERD_THROUGHPUT_SHAPE")
        .ok()
        .and_then(|shape| {
            let (connections, batch) = shape.split_once('x')?;
            Some((connections.parse().ok()?, batch.parse().ok()?))
        })
        .unwrap_or((8, 32))
}

/// Accepted issues per second over `THROUGHPUT_SECONDS`, and the 99th
/// percentile of a frame's round trip, milliseconds.
async fn issue_rate(addr: std::net::SocketAddr, certs: &Path, first: u64) -> (f64, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let (connections, batch) = throughput_shape();
    for connection in 0..connections {
        let certs = certs.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(addr, &certs, Role::Bureau).await.unwrap();
            let (mut accepted, mut round_trips) = (0u64, Vec::new());
            // ID numbers wrap at 10 million: each connection has its share.
            let mut n = first + connection * (9_000_000 / connections);
            while started.elapsed() < Duration::from_secs(THROUGHPUT_SECONDS) {
                let requests: Vec<Request> = (n..n + batch).map(issue_request).collect();
                n += batch;
                let sent = Instant::now();
                let answers = client.execute(&requests).await.unwrap();
                round_trips.push(sent.elapsed().as_secs_f64() * 1_000.0);
                accepted += answers.iter().filter(|a| a.outcome.is_ok()).count() as u64;
            }
            client.close().await;
            (accepted, round_trips)
        }));
    }
    let (mut accepted, mut round_trips) = (0, Vec::new());
    for task in tasks {
        let (count, times) = task.await.unwrap();
        accepted += count;
        round_trips.extend(times);
    }
    round_trips.sort_by(f64::total_cmp);
    let p99 = round_trips[(round_trips.len() * 99 / 100).min(round_trips.len() - 1)];
    (accepted as f64 / started.elapsed().as_secs_f64(), p99)
}

/// Every node must key persons with the deployment's one `person.key`
/// (D97): a standby with another one stops (exit 75) at the leader's
/// record, naming the file, before it could ever lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_with_another_person_key_stops_at_the_leader_record() {
    if !nats_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("nats")).unwrap();
    let certs = dir.path().join("certs");
    let mut leader = start_node(dir.path(), "a", &cluster, &PersonSecret([1; 32]));
    wait_leading(&mut leader, &certs).await;
    let mut stranger = start_node(dir.path(), "b", &cluster, &PersonSecret([2; 32]));
    let status = stranger.wait().unwrap();
    assert_eq!(status.code(), Some(75), "log:\n{}", stranger.log());
    assert!(
        stranger.log().contains("another person.key"),
        "log:\n{}",
        stranger.log()
    );
    wait_leading(&mut leader, &certs).await;
    drop(cluster);
}

/// Frames sent by `accepted` (each request id once).
static FRAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs one frame of `ops` as `client`'s role; every answer accepted.
async fn accepted(client: &Client, ops: Vec<Op>) -> Vec<Reply> {
    let requests: Vec<Request> = ops
        .into_iter()
        .enumerate()
        .map(|(n, op)| Request {
            id: format!(
                "ev-{}-{n}",
                FRAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            op,
        })
        .collect();
    let answers = client.execute(&requests).await.unwrap();
    answers
        .into_iter()
        .zip(&requests)
        .map(|(answer, request)| {
            answer
                .outcome
                .unwrap_or_else(|r| panic!("{:?} refused: {r:?}", request.op))
        })
        .collect()
}

/// Every event `events` answers for (`institution`, `district`), page by page.
async fn events_by_operation(
    training: &Client,
    institution: Option<&str>,
    district: Option<&str>,
) -> Vec<voucherd::domain::op::Event> {
    let (mut all, mut after) = (Vec::new(), 0);
    loop {
        let op = Op::Events {
            after,
            limit: Some(3),
            institution: institution.map(|code| code.parse().unwrap()),
            district: district.map(|code| code.parse().unwrap()),
            wait_ms: None,
        };
        match accepted(training, vec![op]).await.remove(0) {
            Reply::Events { events, next } if events.is_empty() => {
                assert_eq!(next, after);
                return all;
            }
            Reply::Events { events, next } => {
                all.extend(events);
                after = next;
            }
            other => panic!("events answered {other:?}"),
        }
    }
}

/// One message a JetStream consumer delivered: its stream sequence, the
/// payload and the events it holds (a JSON array; its cursor header checked).
struct Delivered {
    stream_seq: u64,
    payload: Vec<u8>,
    events: Vec<serde_json::Value>,
}

/// What a consumer of `subjects` starting at stream sequence `from` gets
/// (an ephemeral pull consumer, as the training system would create one),
/// until the stream's end.
async fn consume(
    stream: &async_nats::jetstream::stream::Stream,
    subjects: &[String],
    from: u64,
) -> Vec<Delivered> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures_util::StreamExt;
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subjects: subjects.to_vec(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await.unwrap();
    let mut delivered = Vec::new();
    while delivered.len() < pending {
        let message = tokio::time::timeout(LEAD_WAIT, messages.next())
            .await
            .expect("the consumer delivers")
            .unwrap()
            .unwrap();
        let cursor: u64 = message
            .headers
            .as_ref()
            .and_then(|h| h.get(voucherd::replica::HEADER_AUDIT_SEQ))
            .expect("an event carries its cursor")
            .as_str()
            .parse()
            .unwrap();
        let events: Vec<serde_json::Value> = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            events.last().expect("a message holds events")["seq"],
            cursor,
            "the cursor header is the message's last event's seq"
        );
        delivered.push(Delivered {
            stream_seq: message.info().unwrap().stream_sequence,
            payload: message.payload.to_vec(),
            events,
        });
    }
    delivered
}

/// The events of `delivered`, in delivery order, those `keep` selects.
fn events_of(
    delivered: &[Delivered],
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    delivered
        .iter()
        .flat_map(|d| d.events.iter().filter(|e| keep(e)).cloned())
        .collect()
}

/// The consumer's events equal `expected` as JSON, in order.
fn same_events(got: &[serde_json::Value], expected: &[voucherd::domain::op::Event], what: &str) {
    let want: Vec<serde_json::Value> = expected
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(got, want, "{what}: the stream's events and `events`'s");
}

/// The data return on the stream (D105, D111): a replicated leader, two
/// institutions in two districts at work (a redeem and its check-in in one
/// frame, so in one commit group); a JetStream consumer filtered on one
/// district's subject gets exactly what `events --district` answers (same
/// JSON, same order), and keeping one institution's events of its
/// district's subject gives what `events --institution` answers; resuming
/// from a stream sequence in the middle gives the rest; every event is on
/// `events.>` once; no message holds an ID number, most of one, or a keyed
/// person hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_training_system_reads_events_from_jetstream_as_events_answers_them() {
    use voucherd::domain::ids::IdNumber;
    use voucherd::replica::SUBJECT_EVENTS;
    if !nats_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("nats")).unwrap();
    let certs = dir.path().join("certs");
    let secret = PersonSecret([7; 32]);
    let mut node = start_node(dir.path(), "a", &cluster, &secret);
    wait_leading(&mut node, &certs).await;
    let connect = |role| Client::connect(node.addr, &certs, role);
    let (bureau, gateway, training) = (
        connect(Role::Bureau).await.unwrap(),
        connect(Role::Gateway).await.unwrap(),
        connect(Role::Training).await.unwrap(),
    );
    let (a, b) = ("5000001", "5000002");
    let (admin_a, admin_b) = (id_number(11), id_number(12));
    accepted(
        &bureau,
        vec![
            register(a, "500101", &admin_a),
            register(b, "500102", &admin_b),
        ],
    )
    .await;
    accepted(
        &gateway,
        vec![
            authorise(a, &admin_a, "op-a"),
            authorise(b, &admin_b, "op-b"),
        ],
    )
    .await;
    // Every redeem names an opened class (D51): one per kind at each, over
    // the days of the campaign open now (the daemon's embedded default).
    let year = {
        use voucherd::domain::time::Clock;
        voucherd::domain::campaign::Campaign::default_for(voucherd::domain::time::SystemClock.now())
            .year
    };
    let mut classes = kit_classes_of(a, "op-a", year);
    classes.extend(kit_classes_of(b, "op-b", year));
    accepted(&gateway, classes).await;
    let persons: Vec<String> = (20..26).map(id_number).collect();
    let mut vouchers = Vec::new();
    for person in &persons {
        let voucher = match accepted(&bureau, vec![issue(person, Kind::ALL[0])]).await[0] {
            Reply::Issued { voucher } => voucher,
            ref other => panic!("issue answered {other:?}"),
        };
        let claim = Op::Claim {
            voucher,
            id_number: person.clone(),
        };
        accepted(&gateway, vec![claim]).await;
        vouchers.push(voucher);
    }
    let (lat, lon) = SITE;
    for (n, &voucher) in vouchers.iter().enumerate() {
        let (institution, operator) = if n % 2 == 0 { (a, "op-a") } else { (b, "op-b") };
        // A redeem and its check-in in one frame: one commit group, the
        // check-in's enrollment read from the group in hand.
        accepted(
            &gateway,
            vec![
                redeem(voucher, institution, operator),
                Op::Checkin { voucher, lat, lon },
            ],
        )
        .await;
    }
    // One moves from B to A: its events are B's, then A's.
    let moved = vouchers[1];
    accepted(
        &gateway,
        vec![Op::Release {
            voucher: moved,
            institution: b.parse().unwrap(),
            operator: "op-b".parse().unwrap(),
        }],
    )
    .await;
    accepted(&gateway, vec![redeem(moved, a, "op-a")]).await;

    let urls: Vec<async_nats::ServerAddr> = cluster
        .urls
        .split(',')
        .map(|url| url.parse().unwrap())
        .collect();
    let client = async_nats::connect(urls).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream(voucherd::replica::STREAM_DEFAULT)
        .await
        .unwrap();
    let subject = |rest: &str| format!("voucherd.{SUBJECT_EVENTS}.{rest}");
    // Campaign-wide events (a whole year's `expire`) are on `_`: every
    // filter of `events` shows them, so every consumer takes that subject too.
    let everywhere = subject("_");

    let of_b_district = events_by_operation(&training, None, Some("500102")).await;
    assert_eq!(
        of_b_district.len(),
        3 * 2 + 1,
        "district 500102: B's redeems, check-ins, a release"
    );
    let district_subjects = [subject("500102"), everywhere.clone()];
    let by_district = consume(&stream, &district_subjects, 1).await;
    same_events(
        &events_of(&by_district, |_| true),
        &of_b_district,
        "district 500102",
    );

    // An institution's events: its district's subject, its own kept.
    let of_a = events_by_operation(&training, Some(a), None).await;
    assert_eq!(
        of_a.len(),
        3 * 2 + 1,
        "A: three redeems and check-ins, the moved one's redeem"
    );
    let a_subjects = [subject("500101"), everywhere.clone()];
    let is_a = |e: &serde_json::Value| e["institution"] == a || e.get("voucher").is_none();
    let by_a = consume(&stream, &a_subjects, 1).await;
    same_events(&events_of(&by_a, is_a), &of_a, "institution A");

    // The training system resumes after the last message it took.
    let middle = by_a.len() / 2;
    let taken = events_of(&by_a[..=middle], is_a).len();
    let rest = consume(&stream, &a_subjects, by_a[middle].stream_seq + 1).await;
    same_events(
        &events_of(&rest, is_a),
        &of_a[taken..],
        "institution A resumed",
    );

    // Every event on the stream once: what `events` answers without a
    // filter (in chain order per district; across districts by `seq`), and
    // nothing personal in any of them.
    let every = consume(&stream, &[subject(">")], 1).await;
    let mut all = events_of(&every, |_| true);
    all.sort_by_key(|e| e["seq"].as_u64().unwrap());
    let of_all = events_by_operation(&training, None, None).await;
    same_events(&all, &of_all, "every event");
    for person in persons.iter().chain([&admin_a, &admin_b]) {
        let key = IdNumber::parse(person).unwrap().key(&secret).0;
        let key_hex = hex::encode(key);
        for message in &every {
            let text = String::from_utf8(message.payload.clone()).unwrap();
            assert!(
                !text.contains(&person[..14]),
                "an event holds (most of) an ID number: {text}"
            );
            assert!(
                !text.contains(&key_hex),
                "an event holds a person key: {text}"
            );
            assert!(
                !message.payload.windows(key.len()).any(|w| w == key),
                "an event holds a person key's bytes"
            );
        }
    }
    for client in [bureau, gateway, training] {
        client.close().await;
    }
    drop(node);
    drop(cluster);
}

/// A nats-server of its own (one node, JetStream) for a test, killed when
/// dropped.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects to `port` as `user`, retrying while the server starts.
async fn connect_as(port: u16, user: &str, password: &str) -> async_nats::Client {
    let started = Instant::now();
    loop {
        match async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .connect(format!("nats://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return client,
            Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("{user}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The authorization example of `ops/nats-cluster.example.conf`, as it is,
/// on a real nats-server: the node user creates the stream and appends; the
/// training user reads the events subjects through a named consumer (one
/// filter inside `voucherd.events.>`), and is refused a consumer on the
/// group messages (audit records, request rows), reading a message
/// directly, and publishing anything to the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_training_user_of_the_nats_example_reads_events_only() {
    use async_nats::jetstream::{self, consumer::pull, stream};
    use futures_util::StreamExt;
    use voucherd::replica::{STREAM_DEFAULT, SUBJECT_EVENTS, SUBJECT_GROUP};
    let Some(server) = nats::server() else {
        eprintln!("SKIPPED: nats-server is missing (ops/install-deps.sh installs it into ./.venv)");
        return;
    };
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/nats-cluster.example.conf"),
    )
    .unwrap();
    let placeholder = "\"$2a$11$REPLACE_WITH_BCRYPT_HASH\"";
    let authorization = &example[example.find("authorization {").expect("the block")..];
    assert_eq!(
        authorization.matches(placeholder).count(),
        2,
        "{authorization}"
    );
    let authorization = authorization
        .replacen(placeholder, "\"node-secret\"", 1)
        .replacen(placeholder, "\"training-secret\"", 1);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("n.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{authorization}",
            dir.path().join("js").display()
        ),
    )
    .unwrap();
    let _node = Node(
        std::process::Command::new(server)
            .arg("-c")
            .arg(&config)
            .stdout(std::fs::File::create(dir.path().join("n.log")).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prefix = STREAM_DEFAULT.to_ascii_lowercase();
    let subject = |name: &str| format!("{prefix}.{name}");
    let event = format!("{prefix}.{SUBJECT_EVENTS}.500102");

    // The nodes' user: the stream as the daemon creates it, one message of each kind.
    let node = jetstream::new(connect_as(port, "voucherd", "node-secret").await);
    let stream = node
        .get_or_create_stream(stream::Config {
            name: STREAM_DEFAULT.into(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    for name in [subject(SUBJECT_GROUP), event.clone()] {
        node.publish(name, "payload".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // The training system's user, with short waits: a refused request is
    // never answered (the server tells the connection, not the request).
    let mut training = jetstream::new(connect_as(port, "training", "training-secret").await);
    training.set_timeout(Duration::from_millis(250));
    let theirs = training.get_stream(STREAM_DEFAULT).await.unwrap();
    let named = |name: &str, filter: String| pull::Config {
        name: Some(name.into()),
        filter_subject: filter,
        ..Default::default()
    };
    let consumer = theirs
        .create_consumer(named("district", event.clone()))
        .await
        .expect("a consumer on the events of a district");
    let mut messages = consumer.fetch().max_messages(10).messages().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("the event is delivered")
        .unwrap()
        .unwrap();
    assert_eq!(first.subject.as_str(), event);
    assert!(theirs
        .create_consumer(named("every-event", format!("{prefix}.{SUBJECT_EVENTS}.>")))
        .await
        .is_ok());
    for refused in [subject(SUBJECT_GROUP), format!("{prefix}.>")] {
        let created = theirs
            .create_consumer(named("refused", refused.clone()))
            .await;
        assert!(created.is_err(), "a consumer on {refused} is refused");
    }
    assert!(theirs.get_raw_message(1).await.is_err(), "no direct reads");
    // Publishing: nothing reaches the stream (2 messages before, 2 after).
    for name in [event.clone(), subject(SUBJECT_GROUP)] {
        if let Ok(ack) = training.publish(name, "forged".into()).await {
            assert!(
                ack.await.is_err(),
                "a publish by the training user is refused"
            );
        }
    }
    let mut stream = stream;
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
}

/// voucher-load given both daemons' addresses goes on through a kill -9 of
/// the leader in the middle of its peak (open loop): its frames are sent
/// again with their ids on the new leader, and its end-of-run checks hold
/// (every answer as expected, `stats` moved by exactly the redeems and
/// check-ins it saw accepted, no connection error); the new leader's chain
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: voucher-load through a kill -9 of the leader mid-run (about 30 s)"]
async fn voucher_load_follows_the_leader_through_a_kill_mid_run() {
    use std::io::BufRead;
    if !nats_present() {
        return;
    }
    let (dir, cluster, certs, mut leader, mut standby) = leader_and_standby(6).await;
    let report = dir.path().join("load.json");
    let mut load = std::process::Command::new(crate::common::daemon::tool("voucher-load"))
        .args(["--server", &format!("{},{}", leader.addr, standby.addr)])
        .args([
            "--persons",
            "1500",
            "--institutions",
            "20",
            "--connections",
            "4",
        ])
        .args(["--batch", "16", "--rate", "300", "--duration-s", "16"])
        .arg("--certs")
        .arg(&certs)
        .arg("--out")
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its peak begins once the setup is done; the leader dies 4 s into it.
    let stderr = load.stderr.take().unwrap();
    let (peak_began, began) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        let mut told = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("voucher-load: {line}");
            if !told && line.contains("setup done") {
                let _ = peak_began.send(());
                told = true;
            }
        }
    });
    began
        .recv_timeout(Duration::from_secs(180))
        .expect("the setup ends");
    tokio::time::sleep(Duration::from_secs(4)).await;
    leader.kill().unwrap();
    let output = tokio::task::spawn_blocking(move || load.wait_with_output().unwrap())
        .await
        .unwrap();
    echo.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(output.status.success(), "voucher-load failed: {stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["consistency"]["ok"], true, "{report}");
    assert_eq!(report["connection_errors"], 0, "{report}");
    assert_eq!(report["unexpected_answers"], 0, "{report}");
    let resent = report["frames_resent_after_failover"].as_u64().unwrap();
    assert!(
        resent > 0,
        "the leader died mid-run: frames were sent again"
    );
    let (seq, _) = head_seq_hash(&mut standby, &certs).await;
    standby.stop().unwrap();
    verify_offline(&dir.path().join("b"), seq);
    drop(cluster);
}

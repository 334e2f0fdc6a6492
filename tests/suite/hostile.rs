//! Hostile clients against the real daemon (`voucherd serve` as a child
//! process, default limits): a connection flood past `CONNECTIONS_MAX`, slow
//! clients that open every stream they may and never finish a frame, big
//! frames sent up to the flow-control limits and left unfinished, oversize
//! frames, and certificates from another CA, all at once.
//!
//! Asserted: a well-behaved client connected before the attack gets correct
//! answers throughout; connections past the limit are refused; unfinished
//! requests are reset after the read timeout; oversize frames are refused and
//! their connections closed; foreign certificates never reach an operation;
//! the daemon's resident memory stays under a generous bound (the attackers
//! try to make it buffer far more). Measured and printed, never asserted: the
//! well-behaved client's latency with and without the attack, and the RSS
//! before, during and after.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, Endpoint};
use voucherd::domain::enums::{Category, Channel, Kind, VoucherState};
use voucherd::domain::op::{Op, Reply, Request, Role};
use voucherd::error::Reason;
use voucherd::limits::{CONNECTIONS_MAX, FRAME_BYTES_MAX, STREAMS_PER_CONNECTION_MAX};
use voucherd::net::client::Client;
use voucherd::net::tls::{self, CertPaths};
use voucherd::net::wire;
use voucherd_load::kit::daemon::rss_bytes_of;

use crate::common::daemon::serve;
use crate::common::id_number;

/// Connections the flood tries to open on top of everything else.
const FLOOD_CONNECTIONS: usize = CONNECTIONS_MAX + 100;
/// Connections whose every stream starts a frame and never finishes it.
const SLOW_CONNECTIONS: usize = 4;
/// Connections sending `BIG_STREAMS` frames of `BIG_FRAME_BYTES` each, stalling
/// before the end: 512 MiB the daemon would hold if it buffered them all.
const BIG_CONNECTIONS: usize = 16;
const BIG_STREAMS: usize = 16;
const BIG_FRAME_BYTES: usize = 2 * 1024 * 1024;
const OVERSIZE_CONNECTIONS: usize = 20;
const FOREIGN_CONNECTIONS: usize = 50;
/// Requests the well-behaved client times, with and without the attack.
const SAMPLES: u64 = 150;
/// The daemon's RSS may grow by at most this much during the attack.
const RSS_GROWTH_BYTES_MAX: u64 = 384 * 1024 * 1024;

fn client_config(certs: &Path, role: Role) -> rustls::ClientConfig {
    let paths = CertPaths {
        dir: certs.to_owned(),
    };
    tls::client_config(
        &paths.ca_cert(),
        &paths.client_cert(role),
        &paths.client_key(role),
    )
    .unwrap()
}

/// One client endpoint for many attacking connections.
fn endpoint(config: rustls::ClientConfig) -> Endpoint {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

async fn connect(endpoint: &Endpoint, addr: SocketAddr) -> Option<Connection> {
    let connecting = endpoint.connect(addr, "localhost").ok()?;
    tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .ok()?
        .ok()
}

fn issue(person: u64) -> Op {
    Op::Issue {
        id_number: id_number(person),
        category: Category::RuralMigrant,
        kind: Kind::HrServices,
        face_value_fen: 80_000,
        channel: Channel::Wechat,
        district: "500101".parse().unwrap(),
        year: None,
    }
}

/// Issues a voucher to `person` and reads it back; returns the two latencies.
async fn well_behaved_round(client: &Client, person: u64) -> [Duration; 2] {
    let started = Instant::now();
    let answers = client
        .execute(&[Request {
            id: format!("issue-{person}"),
            op: issue(person),
        }])
        .await
        .expect("the well-behaved client is answered");
    let issued = started.elapsed();
    let voucher = match &answers[0].outcome {
        Ok(Reply::Issued { voucher }) => *voucher,
        other => panic!("issue to person {person} answered {other:?}"),
    };
    let started = Instant::now();
    let answers = client
        .execute(&[Request {
            id: format!("get-{person}"),
            op: Op::GetVoucher { voucher },
        }])
        .await
        .expect("the well-behaved client is answered");
    let read = started.elapsed();
    match &answers[0].outcome {
        Ok(Reply::Voucher(view)) => {
            assert_eq!(view.voucher, voucher);
            assert_eq!(view.state, VoucherState::Issued);
        }
        other => panic!("get_voucher {voucher} answered {other:?}"),
    }
    [issued, read]
}

/// Latencies of `SAMPLES` rounds from person `first` on.
async fn measure(client: &Client, first: u64) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for person in first..first + SAMPLES {
        latencies.extend(well_behaved_round(client, person).await);
    }
    latencies.sort();
    latencies
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn describe(sorted: &[Duration]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(sorted, 0.5).as_secs_f64() * 1e3,
        quantile(sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().unwrap().as_secs_f64() * 1e3
    )
}

/// Opens every stream a connection may and sends a length prefix promising
/// 1000 bytes, then nothing. Returns how many streams the daemon reset.
async fn slow_client(connection: Connection) -> usize {
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..STREAMS_PER_CONNECTION_MAX {
        let Ok((mut send, mut recv)) = connection.open_bi().await else {
            break;
        };
        send.write_all(&1000u32.to_be_bytes()).await.unwrap();
        streams.spawn(async move {
            let read = tokio::time::timeout(Duration::from_secs(30), recv.read_to_end(1024)).await;
            drop(send);
            matches!(read, Ok(Err(_)))
        });
    }
    let mut reset = 0;
    while let Some(result) = streams.join_next().await {
        reset += usize::from(result.unwrap());
    }
    reset
}

/// Sends `BIG_STREAMS` frames declaring `FRAME_BYTES_MAX` bytes, each
/// `BIG_FRAME_BYTES` long and unfinished. Returns the bytes the daemon took.
async fn big_client(connection: Connection, sent: Arc<AtomicU64>) {
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..BIG_STREAMS {
        let Ok((mut send, recv)) = connection.open_bi().await else {
            break;
        };
        let sent = Arc::clone(&sent);
        streams.spawn(async move {
            let mut frame = (FRAME_BYTES_MAX as u32).to_be_bytes().to_vec();
            frame.resize(BIG_FRAME_BYTES, 7);
            for piece in frame.chunks(64 * 1024) {
                let written = tokio::time::timeout(Duration::from_secs(15), send.write_all(piece));
                match written.await {
                    Ok(Ok(())) => {
                        sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            // Hold the stream unfinished until the daemon gives up on it.
            tokio::time::sleep(Duration::from_secs(15)).await;
            drop((send, recv));
        });
    }
    while streams.join_next().await.is_some() {}
}

/// Sends a frame whose length prefix is over the limit; expects a refusal (or
/// a reset) and the connection closed.
async fn oversize_client(connection: Connection) {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let mut frame = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
    frame.resize(256 * 1024, 0);
    let _ = send.write_all(&frame).await;
    let _ = send.finish();
    match tokio::time::timeout(Duration::from_secs(20), recv.read_to_end(1024 * 1024)).await {
        Ok(Ok(bytes)) => match wire::decode_reply(&bytes) {
            Ok(wire::Reply::Refused(refusal)) => {
                assert_eq!(refusal.reason, Reason::InvalidRequest);
                assert!(refusal.message.contains("over the limit"), "{refusal:?}");
            }
            other => panic!("an oversize frame answered {other:?}"),
        },
        Ok(Err(_)) => {}
        Err(_) => panic!("an oversize frame got no answer and no reset"),
    }
    let closed = tokio::time::timeout(Duration::from_secs(20), connection.closed()).await;
    assert!(
        closed.is_ok(),
        "the daemon closes a connection that sent an oversize frame"
    );
}

/// Presents a certificate of another CA (trusting ours); must never get an answer.
async fn foreign_client(endpoint: Endpoint, addr: SocketAddr) -> bool {
    let Some(connection) = connect(&endpoint, addr).await else {
        return true;
    };
    let frame = wire::encode_requests(&[Request {
        id: "foreign".into(),
        op: Op::AuditHead,
    }])
    .unwrap();
    let answered = async {
        let (mut send, mut recv) = connection.open_bi().await.ok()?;
        send.write_all(&frame).await.ok()?;
        send.finish().ok()?;
        recv.read_to_end(1024 * 1024).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(20), answered)
        .await
        .ok()
        .flatten()
        .is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 30 s of attacks; make soak"]
async fn hostile_clients_do_not_stop_well_behaved_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("daemon.log"),
        &[],
        &[("RUST_LOG", "error")],
    );
    let good = Client::connect(daemon.addr, &certs, Role::Bureau)
        .await
        .unwrap();
    well_behaved_round(&good, 0).await; // warm up
    let quiet = measure(&good, 1_000).await;
    let rss_before = daemon.rss_bytes().unwrap();

    // Sample the daemon's RSS all along.
    let rss_max = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (rss_max, sampling) = (Arc::clone(&rss_max), Arc::clone(&sampling));
        let pid = daemon.pid();
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(bytes) = rss_bytes_of(pid) {
                    rss_max.fetch_max(bytes, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let attack_started = Instant::now();
    // The well-behaved client keeps working, and is timed, all through the attack.
    let good = Arc::new(good);
    let attack_on = Arc::new(AtomicBool::new(true));
    let under_attack = {
        let (good, attack_on) = (Arc::clone(&good), Arc::clone(&attack_on));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut person = 100_000;
            while attack_on.load(Ordering::Relaxed) {
                latencies.extend(well_behaved_round(&good, person).await);
                person += 1;
            }
            latencies.sort();
            latencies
        })
    };
    let ours = endpoint(client_config(&certs, Role::Bureau));
    // Slow and big-frame attackers first, so the flood cannot lock them out.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..SLOW_CONNECTIONS {
        let connection = connect(&ours, daemon.addr)
            .await
            .expect("slow client connects");
        slow.spawn(slow_client(connection));
    }
    let big_sent = Arc::new(AtomicU64::new(0));
    let mut big = tokio::task::JoinSet::new();
    for _ in 0..BIG_CONNECTIONS {
        let connection = connect(&ours, daemon.addr)
            .await
            .expect("big client connects");
        big.spawn(big_client(connection, Arc::clone(&big_sent)));
    }
    let mut oversize = tokio::task::JoinSet::new();
    for _ in 0..OVERSIZE_CONNECTIONS {
        let connection = connect(&ours, daemon.addr)
            .await
            .expect("oversize client connects");
        oversize.spawn(oversize_client(connection));
    }
    let foreign_certs = dir.path().join("foreign");
    tls::generate(&foreign_certs, &["500101".parse().unwrap()]).unwrap();
    let foreign_config = {
        let (ours, theirs) = (
            CertPaths { dir: certs.clone() },
            CertPaths {
                dir: foreign_certs.clone(),
            },
        );
        tls::client_config(
            &ours.ca_cert(),
            &theirs.client_cert(Role::Bureau),
            &theirs.client_key(Role::Bureau),
        )
        .unwrap()
    };
    let foreign = endpoint(foreign_config);
    let mut foreigners = tokio::task::JoinSet::new();
    for _ in 0..FOREIGN_CONNECTIONS {
        foreigners.spawn(foreign_client(foreign.clone(), daemon.addr));
    }
    // The flood: every connection it gets is held open to the end.
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..FLOOD_CONNECTIONS {
        let (ours, addr) = (ours.clone(), daemon.addr);
        flood.spawn(async move {
            // A slot is taken after the handshake: a connection without one
            // is closed (code 4) right after it.
            let connection = connect(&ours, addr).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            connection.close_reason().is_none().then_some(connection)
        });
    }
    let mut flooding = Vec::new();
    let mut flood_refused = 0;
    while let Some(result) = flood.join_next().await {
        match result.unwrap() {
            Some(connection) => flooding.push(connection),
            None => flood_refused += 1,
        }
    }
    eprintln!(
        "flood: {} of {FLOOD_CONNECTIONS} connections admitted, {flood_refused} refused ({:.1} s)",
        flooding.len(),
        attack_started.elapsed().as_secs_f64()
    );

    let mut reset = 0;
    while let Some(result) = slow.join_next().await {
        reset += result.unwrap();
    }
    while let Some(result) = oversize.join_next().await {
        result.unwrap();
    }
    let mut foreign_unanswered = 0;
    while let Some(result) = foreigners.join_next().await {
        foreign_unanswered += usize::from(result.unwrap());
    }
    while big.join_next().await.is_some() {}
    attack_on.store(false, Ordering::Relaxed);
    let attacked = under_attack.await.unwrap();
    eprintln!(
        "attack over after {:.1} s; {} well-behaved requests answered during it",
        attack_started.elapsed().as_secs_f64(),
        attacked.len()
    );
    let rss_during = rss_max.load(Ordering::Relaxed);
    // The daemon still serves after the attack, and still correctly.
    let after = measure(&good, 3_000).await;
    let flood_admitted = flooding.len();
    for connection in &flooding {
        connection.close(0u32.into(), b"done");
    }
    drop(flooding);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss_after = daemon.rss_bytes().unwrap();

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let ratio = quantile(&attacked, 0.5).as_secs_f64() / quantile(&quiet, 0.5).as_secs_f64();
    eprintln!("well-behaved latency, quiet:        {}", describe(&quiet));
    eprintln!(
        "well-behaved latency, under attack: {}",
        describe(&attacked)
    );
    eprintln!("well-behaved latency, after:        {}", describe(&after));
    eprintln!("p50 ratio under attack / quiet: {ratio:.2}");
    eprintln!(
        "slow streams reset: {reset} of {}",
        SLOW_CONNECTIONS * STREAMS_PER_CONNECTION_MAX as usize
    );
    eprintln!(
        "big frames: {:.1} MiB written by the attackers (their send buffers included) of {:.1} MiB tried",
        mib(big_sent.load(Ordering::Relaxed)),
        mib((BIG_CONNECTIONS * BIG_STREAMS * BIG_FRAME_BYTES) as u64)
    );
    eprintln!("foreign certificates unanswered: {foreign_unanswered} of {FOREIGN_CONNECTIONS}");
    eprintln!(
        "daemon RSS: before {:.1} MiB, max during {:.1} MiB, after {:.1} MiB",
        mib(rss_before),
        mib(rss_during),
        mib(rss_after)
    );

    // The well-behaved connection is held all along, the other attackers'
    // only for part of the flood.
    assert!(
        flood_admitted < CONNECTIONS_MAX && flood_refused > FLOOD_CONNECTIONS - CONNECTIONS_MAX,
        "connections past the limit are refused ({flood_refused} refused)"
    );
    assert_eq!(
        reset,
        SLOW_CONNECTIONS * STREAMS_PER_CONNECTION_MAX as usize,
        "every unfinished request is reset after the read timeout"
    );
    assert_eq!(
        foreign_unanswered, FOREIGN_CONNECTIONS,
        "no foreign certificate reaches an operation"
    );
    assert!(
        rss_during < rss_before + RSS_GROWTH_BYTES_MAX,
        "the daemon's memory stays bounded: {:.1} MiB during, {:.1} MiB before",
        mib(rss_during),
        mib(rss_before)
    );
}

/// How long each attack of `each_attack_alone` runs.
const ATTACK_SECONDS: u64 = 10;

/// One bounded attack of `each_attack_alone`, run until `on` is cleared.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// Connection attempts through a relay that drops the daemon's answers
    /// (spoofed Initial packets): 50 new ones every 100 ms.
    HandshakeFlood,
    /// 16 connections whose every stream announces a largest frame and
    /// sends nothing more, opened again as the daemon resets them.
    AnnouncedFrames,
    /// 16 connections with a 1 KiB receive window sending `stats` on every
    /// stream and never reading the answers.
    UnreadAnswers,
    /// 4 gateway connections sending frames of 100 claims of vouchers that
    /// do not exist (each refusal remembered: a synced write), flat out.
    RefusalSpam,
}

/// Runs one attack; `sent` counts what it sends (connection attempts,
/// streams or frames).
async fn attack(
    kind: Attack,
    certs: PathBuf,
    addr: SocketAddr,
    on: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    match kind {
        Attack::HandshakeFlood => {
            let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let relay_addr = relay.local_addr().unwrap();
            tasks.spawn(async move {
                let mut buffer = vec![0u8; 65_536];
                while let Ok((length, from)) = relay.recv_from(&mut buffer).await {
                    if from != addr {
                        let _ = relay.send_to(&buffer[..length], addr).await;
                    }
                }
            });
            let endpoint = endpoint(client_config(&certs, Role::Gateway));
            let mut attempts = Vec::new();
            while on.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    attempts.push(endpoint.connect(relay_addr, "localhost").unwrap());
                }
                sent.fetch_add(50, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(attempts);
        }
        Attack::AnnouncedFrames => {
            let endpoint = endpoint(client_config(&certs, Role::Auditor));
            for _ in 0..16 {
                let (endpoint, on, sent) = (endpoint.clone(), Arc::clone(&on), Arc::clone(&sent));
                tasks.spawn(async move {
                    let Some(connection) = connect(&endpoint, addr).await else {
                        return;
                    };
                    let mut held = Vec::new();
                    while on.load(Ordering::Relaxed) {
                        let opened =
                            tokio::time::timeout(Duration::from_millis(200), connection.open_bi());
                        match opened.await {
                            Ok(Ok((mut send, recv))) => {
                                let prefix = (FRAME_BYTES_MAX as u32).to_be_bytes();
                                let _ = send.write_all(&prefix).await;
                                sent.fetch_add(1, Ordering::Relaxed);
                                held.push((send, recv));
                            }
                            Ok(Err(_)) => return,
                            Err(_) => held.clear(),
                        }
                    }
                });
            }
        }
        Attack::UnreadAnswers => {
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(
                &certs,
                Role::Bureau,
            ))
            .unwrap();
            let mut config = quinn::ClientConfig::new(Arc::new(crypto));
            let mut transport = quinn::TransportConfig::default();
            transport.stream_receive_window(1024u32.into());
            config.transport_config(Arc::new(transport));
            let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(config);
            let frame = wire::encode_requests(&[Request {
                id: "stats".into(),
                op: Op::Stats {
                    district: None,
                    year: None,
                },
            }])
            .unwrap();
            for _ in 0..16 {
                let (endpoint, on, frame, sent) = (
                    endpoint.clone(),
                    Arc::clone(&on),
                    frame.clone(),
                    Arc::clone(&sent),
                );
                tasks.spawn(async move {
                    let Some(connection) = connect(&endpoint, addr).await else {
                        return;
                    };
                    let mut held = Vec::new();
                    while on.load(Ordering::Relaxed) {
                        let opened =
                            tokio::time::timeout(Duration::from_millis(200), connection.open_bi());
                        match opened.await {
                            Ok(Ok((mut send, recv))) => {
                                let _ = send.write_all(&frame).await;
                                let _ = send.finish();
                                sent.fetch_add(1, Ordering::Relaxed);
                                held.push((send, recv));
                            }
                            Ok(Err(_)) => return,
                            Err(_) => held.clear(),
                        }
                    }
                });
            }
        }
        Attack::RefusalSpam => {
            for worker in 0..4u64 {
                let (certs, on, sent) = (certs.clone(), Arc::clone(&on), Arc::clone(&sent));
                tasks.spawn(async move {
                    let client = Client::connect(addr, &certs, Role::Gateway).await.unwrap();
                    let mut n = 0u64;
                    while on.load(Ordering::Relaxed) {
                        let frame: Vec<Request> = (0..100)
                            .map(|i| Request {
                                id: format!("spam-{worker}-{n}-{i}"),
                                op: Op::Claim {
                                    voucher: voucherd::domain::ids::VoucherId(9_000_000_000 + i),
                                    id_number: id_number(1),
                                },
                            })
                            .collect();
                        let _ = client.execute(&frame).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                });
            }
        }
    }
    while on.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Measured, never asserted beyond "served": a well-behaved gateway's claim
/// latency (p50, p99) and the daemon's largest resident memory, quiet and
/// during each attack alone (`Attack`, `ATTACK_SECONDS` each), one daemon
/// with default limits. The figures go in docs/reliability.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 50 s of attacks one at a time; make soak"]
async fn each_attack_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("daemon.log"),
        &[],
        &[("RUST_LOG", "error")],
    );
    let bureau = Client::connect(daemon.addr, &certs, Role::Bureau)
        .await
        .unwrap();
    let gateway = Client::connect(daemon.addr, &certs, Role::Gateway)
        .await
        .unwrap();
    // Vouchers for the gateway to claim: more than it can claim in all phases.
    const VOUCHERS: u64 = 20_000;
    let mut vouchers = Vec::new();
    for first in (0..VOUCHERS).step_by(1_000) {
        let frame: Vec<Request> = (first..first + 1_000)
            .map(|person| Request {
                id: format!("issue-{person}"),
                op: issue(person),
            })
            .collect();
        for answer in bureau.execute(&frame).await.unwrap() {
            match answer.outcome {
                Ok(Reply::Issued { voucher }) => vouchers.push(voucher),
                other => panic!("issue answered {other:?}"),
            }
        }
    }
    let mut next = 0usize;
    let phases = [
        None,
        Some(Attack::HandshakeFlood),
        Some(Attack::AnnouncedFrames),
        Some(Attack::UnreadAnswers),
        Some(Attack::RefusalSpam),
    ];
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    for phase in phases {
        let on = Arc::new(AtomicBool::new(true));
        let attack_sent = Arc::new(AtomicU64::new(0));
        let attacker = phase.map(|kind| {
            tokio::spawn(attack(
                kind,
                certs.clone(),
                daemon.addr,
                Arc::clone(&on),
                Arc::clone(&attack_sent),
            ))
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_max = Arc::new(AtomicU64::new(daemon.rss_bytes().unwrap()));
        let sampler = {
            let (rss_max, on, pid) = (Arc::clone(&rss_max), Arc::clone(&on), daemon.pid());
            tokio::spawn(async move {
                while on.load(Ordering::Relaxed) {
                    if let Some(bytes) = rss_bytes_of(pid) {
                        rss_max.fetch_max(bytes, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let started = Instant::now();
        let mut latencies = Vec::new();
        while started.elapsed() < Duration::from_secs(ATTACK_SECONDS) {
            let voucher = vouchers[next];
            let person = next as u64;
            next += 1;
            let sent = Instant::now();
            let answers = gateway
                .execute(&[Request {
                    id: format!("claim-{person}"),
                    op: Op::Claim {
                        voucher,
                        id_number: id_number(person),
                    },
                }])
                .await
                .expect("the well-behaved gateway is answered");
            latencies.push(sent.elapsed());
            assert!(
                answers[0].outcome.is_ok(),
                "claim {voucher:?}: {:?}",
                answers[0]
            );
        }
        on.store(false, Ordering::Relaxed);
        if let Some(attacker) = attacker {
            attacker.await.unwrap();
        }
        sampler.await.unwrap();
        latencies.sort();
        eprintln!(
            "{:<16} gateway claims: {:>5} in {ATTACK_SECONDS} s, {}; daemon RSS max {:.1} MiB; attack sent {}",
            phase.map_or("quiet".to_string(), |kind| format!("{kind:?}")),
            latencies.len(),
            describe(&latencies),
            mib(rss_max.load(Ordering::Relaxed)),
            attack_sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

//! The service's limits, each shrunk so a test can show it is enforced:
//! connections, streams per connection, idle timeout, request read timeout,
//! batches in flight, long polls waiting for events. Well-behaved clients
//! keep being served throughout.

use std::sync::Arc;
use std::time::Duration;

use voucherd::domain::campaign::Campaign;
use voucherd::domain::op::{Op, Reply, Request, Role};
use voucherd::domain::time::{Clock, SystemClock};
use voucherd::error::Reason;
use voucherd::net::client::Client;
use voucherd::net::server::{self, Limits};

struct Running {
    address: std::net::SocketAddr,
    certs: tempfile::TempDir,
    _data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Running {
    let certs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let campaign = Campaign::default_for(clock.now());
    let districts: Vec<_> = campaign.districts.iter().map(|d| d.code).collect();
    voucherd::net::tls::generate(certs.path(), &districts[..1]).unwrap();
    let opened = voucherd::admin::data_dir::open(data.path(), campaign, clock).unwrap();
    let endpoint =
        server::endpoint_with("127.0.0.1:0".parse().unwrap(), certs.path(), &limits).unwrap();
    let address = endpoint.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ledger = Arc::clone(&opened.ledger);
    let task = tokio::spawn(async move {
        server::serve_with(endpoint, ledger, limits, async {
            let _ = stopped.await;
        })
        .await;
        drop(opened);
    });
    Running {
        address,
        certs,
        _data: data,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn client(&self) -> Client {
        Client::connect(self.address, self.certs.path(), Role::Auditor)
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

fn head() -> Vec<Request> {
    vec![Request {
        id: "h".into(),
        op: Op::AuditHead,
    }]
}

async fn served(client: &Client) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.execute(&head())).await,
        Ok(Ok(answers)) if answers[0].outcome.is_ok()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused() {
    let running = start(Limits {
        connections_max: 2,
        ..Limits::default()
    })
    .await;
    let first = running.client().await;
    let second = running.client().await;
    assert!(served(&first).await && served(&second).await);
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(running.address, running.certs.path(), Role::Auditor),
    )
    .await;
    let refused = match third {
        Err(_) | Ok(Err(_)) => true,
        Ok(Ok(client)) => !served(&client).await,
    };
    assert!(refused, "a third connection is refused while two are open");
    assert!(
        served(&first).await,
        "the admitted connections are still served"
    );
    second.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = running.client().await;
    assert!(
        served(&again).await,
        "a slot freed by a closed connection is reused"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let running = start(Limits {
        idle_timeout_ms: 300,
        ..Limits::default()
    })
    .await;
    let client = running.client().await;
    assert!(served(&client).await);
    let closed = tokio::time::timeout(Duration::from_secs(5), client.connection().closed()).await;
    assert!(
        closed.is_ok(),
        "an idle connection is closed after the idle timeout"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_keeps_its_connection_by_pinging() {
    let idle_timeout_ms = voucherd::limits::CLIENT_KEEP_ALIVE_MS as u32 + 1_000;
    let running = start(Limits {
        idle_timeout_ms,
        ..Limits::default()
    })
    .await;
    let client = running.client().await;
    assert!(served(&client).await);
    // Quiet for twice the daemon's idle timeout: the client's pings keep it open.
    let quiet = Duration::from_millis(2 * u64::from(idle_timeout_ms));
    let closed = tokio::time::timeout(quiet, client.connection().closed()).await;
    assert!(closed.is_err(), "closed while quiet: {closed:?}");
    assert!(served(&client).await);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_capped_and_slow_requests_reset() {
    let running = start(Limits {
        streams_per_connection_max: 2,
        request_read_timeout_ms: 500,
        ..Limits::default()
    })
    .await;
    let slow = running.client().await;
    // Two streams that start a frame and never finish it hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) = slow.connection().open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 9]).await.unwrap();
        held.push((send, recv));
    }
    let third = tokio::time::timeout(Duration::from_millis(200), slow.connection().open_bi()).await;
    assert!(third.is_err(), "a third stream waits while two are open");
    let other = running.client().await;
    assert!(
        served(&other).await,
        "other clients are served while one is slow"
    );
    // The daemon gives up on the unfinished requests after the read timeout.
    for (_, mut recv) in held {
        let read = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
        assert!(
            matches!(read, Ok(Err(_))),
            "an unfinished request's stream is reset"
        );
    }
    assert!(served(&slow).await, "the slots are free again");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_batch_slot_means_overloaded_and_nothing_runs() {
    let running = start(Limits {
        batches_in_flight_max: 0,
        ..Limits::default()
    })
    .await;
    let client = running.client().await;
    let answers = client.execute(&head()).await.unwrap();
    assert_eq!(
        answers[0].outcome.as_ref().unwrap_err().reason,
        Reason::Overloaded
    );
    running.stop().await;
}

/// Checks (issue 17, item 4): one `stats` per frame; a second in the same
/// frame is refused `invalid_request` in its place and the others run. How:
/// a frame of stats, audit_head, stats on a ledger with the default campaign.
#[test]
fn one_stats_per_frame() {
    let h = crate::common::Harness::new();
    let stats = |id: &str| Request {
        id: id.into(),
        op: Op::Stats {
            district: None,
            year: None,
        },
    };
    let head = Request {
        id: "head".into(),
        op: Op::AuditHead,
    };
    let answers = h
        .ledger
        .execute(Role::Bureau, &[stats("s1"), head, stats("s2")]);
    assert!(answers[0].outcome.is_ok(), "{:?}", answers[0]);
    assert!(answers[1].outcome.is_ok(), "{:?}", answers[1]);
    let refusal = answers[2].outcome.as_ref().unwrap_err();
    assert_eq!(refusal.reason.as_str(), "invalid_request");
    assert!(
        refusal.message.contains("stats per request frame"),
        "{}",
        refusal.message
    );
}

/// Checks (issue 17, item 5): the daemon takes no QUIC datagrams, so quinn
/// keeps no datagram receive buffer per connection; a client sees datagrams
/// unsupported. How: a real connection's negotiated datagram size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_no_datagrams() {
    let running = start(Limits::default()).await;
    let client = running.client().await;
    assert!(served(&client).await);
    assert_eq!(
        client.connection().max_datagram_size(),
        None,
        "datagrams must be off at the daemon"
    );
    client.close().await;
    running.stop().await;
}

/// A raw bureau connection whose streams take 1 KiB of answer unread (a
/// `stats` answer is several KiB), with its endpoint.
async fn unread_bureau_connection(running: &Running) -> (quinn::Endpoint, quinn::Connection) {
    use voucherd::net::tls::{self, CertPaths};
    let paths = CertPaths {
        dir: running.certs.path().to_owned(),
    };
    let config = tls::client_config(
        &paths.ca_cert(),
        &paths.client_cert(Role::Bureau),
        &paths.client_key(Role::Bureau),
    )
    .unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(1024u32.into());
    client_config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config);
    let connection = endpoint
        .connect(running.address, "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    (endpoint, connection)
}

fn stats_request(id: &str) -> Request {
    Request {
        id: id.into(),
        op: Op::Stats {
            district: None,
            year: None,
        },
    }
}

/// Sends a frame of one `stats` on a new stream of `connection`; the
/// stream's receiving side.
async fn send_stats(connection: &quinn::Connection) -> quinn::RecvStream {
    let frame = voucherd::net::wire::encode_requests(&[stats_request("big")]).unwrap();
    let (mut send, recv) = connection.open_bi().await.unwrap();
    send.write_all(&frame).await.unwrap();
    send.finish().unwrap();
    recv
}

/// The answer to a frame of one `stats`, read within 5 s (a refusal is far
/// under the 1 KiB window).
async fn stats_answer(connection: &quinn::Connection) -> Result<Reply, voucherd::error::Refusal> {
    let mut recv = send_stats(connection).await;
    let bytes = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20))
        .await
        .expect("the answer comes within 5 s")
        .unwrap();
    match voucherd::net::wire::decode_reply(&bytes).unwrap() {
        voucherd::net::wire::Reply::Answers(mut answers) => answers.remove(0).outcome,
        voucherd::net::wire::Reply::Refused(refusal) => panic!("frame refused: {refusal:?}"),
    }
}

/// Checks (issue 17, item 3, the cost of unread answers): frames holding a
/// heavy read (`stats`, `audit_read`) are capped in flight per connection
/// and per certificate, until their answer is sent; one more is answered
/// `overloaded` at once, without running, and point reads go on. How:
/// raw bureau connections with a 1 KiB window send `stats` (several KiB of
/// answer) never read; caps of 2 per connection and 3 per certificate; the
/// third `stats` on one connection and the second on another of the same
/// certificate are refused; after the write deadline frees them, `stats` is
/// served again. Without the cap the refused ones would be answered in full
/// and never fit the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_are_capped_per_connection_and_certificate() {
    let running = start(Limits {
        heavy_reads_per_connection_max: 2,
        heavy_reads_per_certificate_max: 3,
        answer_write_timeout_ms: 1_500,
        ..Limits::default()
    })
    .await;
    let (_first_endpoint, first) = unread_bureau_connection(&running).await;
    let _held = [send_stats(&first).await, send_stats(&first).await];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refusal = stats_answer(&first).await.unwrap_err();
    assert_eq!(refusal.reason, Reason::Overloaded, "{}", refusal.message);
    let (_second_endpoint, second) = unread_bureau_connection(&running).await;
    let _also_held = send_stats(&second).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refusal = stats_answer(&second).await.unwrap_err();
    assert_eq!(
        refusal.reason,
        Reason::Overloaded,
        "the certificate's third is in flight on the other connection: {}",
        refusal.message
    );
    let bureau = Client::connect(running.address, running.certs.path(), Role::Bureau)
        .await
        .unwrap();
    let answers = bureau
        .execute(&[
            Request {
                id: "head".into(),
                op: Op::AuditHead,
            },
            stats_request("stats"),
        ])
        .await
        .unwrap();
    assert!(answers[0].outcome.is_ok(), "a point read is served");
    assert_eq!(
        answers[1].outcome.as_ref().unwrap_err().reason,
        Reason::Overloaded,
        "the certificate's cap holds on a third connection"
    );
    // The unread answers' streams are reset at the write deadline.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let answers = bureau.execute(&[stats_request("again")]).await.unwrap();
    assert!(
        answers[0].outcome.is_ok(),
        "served once the held ones are reset: {:?}",
        answers[0]
    );
    bureau.close().await;
    first.close(0u32.into(), b"done");
    second.close(0u32.into(), b"done");
    running.stop().await;
}

/// Checks (issue 17, item 3): a client that never reads its answer (a
/// receive window far smaller than the answer) gets its stream reset after
/// the write deadline, instead of pinning the answer in the daemon for ever;
/// other clients go on being served. How: raw quinn with a 1 KiB stream
/// window, a `stats` (several KiB of answer) never read, then a read after
/// the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_never_read_is_reset_after_the_write_deadline() {
    let running = start(Limits {
        answer_write_timeout_ms: 500,
        ..Limits::default()
    })
    .await;
    let (_endpoint, connection) = unread_bureau_connection(&running).await;
    let mut recv = send_stats(&connection).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let read = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20)).await;
    assert!(
        matches!(
            read,
            Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_))))
        ),
        "the unread answer's stream is reset: {read:?}"
    );
    // Others are served meanwhile.
    let other = running.client().await;
    assert!(served(&other).await);
    other.close().await;
    connection.close(0u32.into(), b"done");
    running.stop().await;
}

fn waiting_events(wait_ms: Option<u32>) -> Vec<Request> {
    vec![Request {
        id: format!("events-{wait_ms:?}"),
        op: Op::Events {
            after: u64::MAX - 1,
            limit: None,
            institution: None,
            district: None,
            wait_ms,
        },
    }]
}

/// Long polls past `events_waiters_max` are answered `overloaded` at once,
/// while one waits; a request that does not wait is served meanwhile, and a
/// finished poll frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_past_the_waiter_limit_are_overloaded() {
    let running = start(Limits {
        events_waiters_max: 1,
        ..Limits::default()
    })
    .await;
    let waiter = Arc::new(running.client().await);
    let polling = Arc::clone(&waiter);
    let poll = tokio::spawn(async move { polling.execute(&waiting_events(Some(2_000))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the first poll waits (nothing after its cursor)"
    );
    let other = running.client().await;
    let started = std::time::Instant::now();
    let answers = other.execute(&waiting_events(Some(2_000))).await.unwrap();
    let refusal = answers[0].outcome.as_ref().unwrap_err();
    assert_eq!(refusal.reason, Reason::Overloaded, "{}", refusal.message);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "refused without waiting"
    );
    let answers = other.execute(&waiting_events(None)).await.unwrap();
    assert!(
        answers[0].outcome.is_ok(),
        "a request that does not wait is served"
    );
    let answers = poll.await.unwrap().unwrap();
    assert!(
        answers[0].outcome.is_ok(),
        "the first poll ends at its wait_ms"
    );
    let answers = other.execute(&waiting_events(Some(100))).await.unwrap();
    assert!(answers[0].outcome.is_ok(), "its place is free again");
    other.close().await;
    Arc::into_inner(waiter).unwrap().close().await;
    running.stop().await;
}

/// Handshakes that never finish: each connection attempt goes through a
/// relay that passes the client's packets to the daemon and drops every
/// answer, as a flood from spoofed addresses would. The attempts are kept
/// (a dropped attempt would send a close); dropping the flood ends them.
struct Flood {
    _attempts: Vec<quinn::Connecting>,
    _endpoint: quinn::Endpoint,
    relay: tokio::task::JoinHandle<()>,
}

impl Flood {
    async fn start(
        daemon: std::net::SocketAddr,
        certs: &std::path::Path,
        attempts: usize,
    ) -> Flood {
        use voucherd::net::tls::{self, CertPaths};
        let relay_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay_address = relay_socket.local_addr().unwrap();
        let relay = tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_536];
            loop {
                let Ok((length, from)) = relay_socket.recv_from(&mut buffer).await else {
                    return;
                };
                if from != daemon {
                    let _ = relay_socket.send_to(&buffer[..length], daemon).await;
                }
            }
        });
        let paths = CertPaths {
            dir: certs.to_owned(),
        };
        let config = tls::client_config(
            &paths.ca_cert(),
            &paths.client_cert(Role::Gateway),
            &paths.client_key(Role::Gateway),
        )
        .unwrap();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let attempts = (0..attempts)
            .map(|_| endpoint.connect(relay_address, "localhost").unwrap())
            .collect();
        Flood {
            _attempts: attempts,
            _endpoint: endpoint,
            relay,
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Checks (issue 17, item 1): handshakes that never finish do not take
/// connection slots, so a flood of them does not lock a gateway out. How:
/// four connection slots, 64 connection attempts through a relay that drops
/// the daemon's answers (they would hold every slot for the idle timeout if
/// a slot were taken at the first packet), then a gateway connects and is
/// served within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_do_not_lock_a_gateway_out() {
    let running = start(Limits {
        connections_max: 4,
        ..Limits::default()
    })
    .await;
    let flood = Flood::start(running.address, running.certs.path(), 64).await;
    // Let the daemon see every attempt's first packet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gateway = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(running.address, running.certs.path(), Role::Gateway),
    )
    .await;
    let served_now = match gateway {
        Ok(Ok(client)) => served(&client).await,
        _ => false,
    };
    assert!(served_now, "a gateway is served during a handshake flood");
    drop(flood);
    running.stop().await;
}

/// Checks (issue 17, item 2): a stream pays the request byte budget for the
/// bytes that arrive, not for the bytes its frame announces. How: a budget
/// of 256 KiB shared by all; one connection opens 16 streams that announce
/// frames of `FRAME_BYTES_MAX` and send nothing more (each used to reserve
/// 64 KiB before reading); another connection is then served within 5 s
/// (the read timeout is 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_but_unsent_bytes_do_not_starve_another_connection() {
    let running = start(Limits {
        request_bytes_in_flight_max: 256 * 1024,
        ..Limits::default()
    })
    .await;
    let attacker = running.client().await;
    let mut held = Vec::new();
    for _ in 0..16 {
        let (mut send, recv) = attacker.connection().open_bi().await.unwrap();
        let announced = voucherd::limits::FRAME_BYTES_MAX as u32;
        send.write_all(&announced.to_be_bytes()).await.unwrap();
        held.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = running.client().await;
    assert!(
        served(&other).await,
        "another connection is served while announced frames stall"
    );
    drop(held);
    running.stop().await;
}

/// Checks (issue 17, item 2): the request byte budget is per connection too,
/// so one connection that sends real bytes and stalls cannot take the whole
/// shared budget. How: 1 MiB shared, 256 KiB per connection; one connection sends 200 KiB of each of
/// 8 frames (1.6 MiB) and stalls; another connection is served within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_take_the_whole_request_budget() {
    let running = start(Limits {
        request_bytes_in_flight_max: 1024 * 1024,
        request_bytes_per_connection_max: 256 * 1024,
        ..Limits::default()
    })
    .await;
    let attacker = running.client().await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let (mut send, recv) = attacker.connection().open_bi().await.unwrap();
        let announced = voucherd::limits::FRAME_BYTES_MAX as u32;
        send.write_all(&announced.to_be_bytes()).await.unwrap();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            send.write_all(&vec![0u8; 200 * 1024]),
        )
        .await;
        held.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = running.client().await;
    assert!(
        served(&other).await,
        "another connection is served while one holds big unfinished frames"
    );
    drop(held);
    running.stop().await;
}

/// Checks (issue 17, item 1): handshakes in progress are capped and each
/// has a deadline, so unfinished ones are refused past the cap and dropped
/// after the deadline. How: at most 8 handshakes, no Retry, a 500 ms
/// deadline; 8 attempts that never finish; a gateway is refused meanwhile;
/// once the flood stops, the held handshakes are dropped by the deadline
/// (not the 30 s idle timeout) and a gateway is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_in_progress_are_capped_and_time_out() {
    let running = start(Limits {
        handshakes_in_progress_max: 8,
        handshakes_before_retry: usize::MAX,
        handshake_timeout_ms: 500,
        ..Limits::default()
    })
    .await;
    let flood = Flood::start(running.address, running.certs.path(), 8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = tokio::time::timeout(
        Duration::from_secs(3),
        Client::connect(running.address, running.certs.path(), Role::Gateway),
    )
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a ninth handshake is refused while eight are in progress"
    );
    drop(flood);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let gateway = Client::connect(running.address, running.certs.path(), Role::Gateway)
        .await
        .unwrap();
    assert!(
        served(&gateway).await,
        "the unfinished handshakes were dropped at their deadline"
    );
    running.stop().await;
}

/// Whether the daemon closed `client`'s connection for want of a slot.
async fn closed_busy(client: &Client) -> bool {
    let closed = tokio::time::timeout(Duration::from_secs(5), client.connection().closed()).await;
    matches!(
        closed,
        Ok(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == server::CLOSE_BUSY.into()
    )
}

/// Checks (issue 17, item 5): connection slots are taken after the role is
/// known and gateways and the bureau have slots kept for them. How: one
/// slot for any role, one kept for gateways, one for the bureau. An auditor
/// takes the open slot and a second auditor is closed `CLOSE_BUSY`; a
/// gateway and the bureau are still served; a second gateway takes the open
/// slot once the auditor has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_are_kept_for_gateways_and_the_bureau() {
    let running = start(Limits {
        connections_max: 1,
        connections_kept_for_gateways: 1,
        connections_kept_for_bureau: 1,
        ..Limits::default()
    })
    .await;
    let connect = |role| Client::connect(running.address, running.certs.path(), role);
    let auditor = connect(Role::Auditor).await.unwrap();
    assert!(served(&auditor).await);
    let second_auditor = connect(Role::Auditor).await.unwrap();
    assert!(
        closed_busy(&second_auditor).await,
        "no slot left for a second auditor"
    );
    let gateway = connect(Role::Gateway).await.unwrap();
    let bureau = connect(Role::Bureau).await.unwrap();
    assert!(served(&gateway).await, "a gateway takes its kept slot");
    assert!(served(&bureau).await, "the bureau takes its kept slot");
    auditor.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second_gateway = connect(Role::Gateway).await.unwrap();
    assert!(
        served(&second_gateway).await,
        "a gateway takes the open slot"
    );
    assert!(served(&gateway).await && served(&bureau).await);
    running.stop().await;
}

/// Checks (issue 17, item 5): one certificate holds at most
/// `connections_per_certificate_max` connections, whatever slots are free.
/// How: ten slots, two per certificate: two gateway connections are served,
/// a third is closed `CLOSE_BUSY`, the bureau (another certificate) is
/// served, and once a gateway connection closes another gateway gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_certificate() {
    let running = start(Limits {
        connections_max: 10,
        connections_kept_for_gateways: 0,
        connections_kept_for_bureau: 0,
        connections_per_certificate_max: 2,
        ..Limits::default()
    })
    .await;
    let connect = |role| Client::connect(running.address, running.certs.path(), role);
    let first = connect(Role::Gateway).await.unwrap();
    let second = connect(Role::Gateway).await.unwrap();
    assert!(served(&first).await && served(&second).await);
    let third = connect(Role::Gateway).await.unwrap();
    assert!(
        closed_busy(&third).await,
        "a certificate holds at most its cap"
    );
    let bureau = connect(Role::Bureau).await.unwrap();
    assert!(served(&bureau).await, "another certificate is served");
    first.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = connect(Role::Gateway).await.unwrap();
    assert!(served(&again).await, "a closed connection frees its count");
    running.stop().await;
}

/// Checks (issue 17, item 2): the bytes of a frame's length prefix have a
/// deadline of their own, shorter than the read timeout. How: a stream
/// sends one byte and stalls; it is reset after the 300 ms header deadline,
/// well before the 10 s read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_its_frame_header_is_reset_early() {
    let running = start(Limits {
        frame_header_timeout_ms: 300,
        ..Limits::default()
    })
    .await;
    let client = running.client().await;
    let (mut send, mut recv) = client.connection().open_bi().await.unwrap();
    send.write_all(&[0]).await.unwrap();
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
    assert!(matches!(read, Ok(Err(_))), "reset: {read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "reset after {:?}",
        started.elapsed()
    );
    assert!(served(&client).await);
    running.stop().await;
}

/// Checks (issue 17, item 3): an answer's bytes are paid to its
/// connection's budget until the answer is sent (the frame's budget is kept
/// till then), so a client that leaves answers unread cannot make the
/// daemon hold more than its budget. How: a 1 KiB connection budget; a raw
/// client with a 1 KiB stream window sends a `stats` (an answer over 1 KiB,
/// so it cannot be taken) and never reads it; its next request waits until the 1.5 s write
/// deadline frees the budget; another connection is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_answers_hold_their_connections_budget_until_the_write_deadline() {
    let running = start(Limits {
        request_bytes_per_connection_max: 1024,
        answer_write_timeout_ms: 1_500,
        ..Limits::default()
    })
    .await;
    let (_endpoint, connection) = unread_bureau_connection(&running).await;
    let _unread = send_stats(&connection).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = running.client().await;
    let started = std::time::Instant::now();
    assert!(served(&other).await, "another connection is served");
    // Before the unread answer's write deadline, with room for a loaded machine.
    assert!(started.elapsed() < Duration::from_millis(1_400));
    // The same connection's next request waits for the budget.
    let started = std::time::Instant::now();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&voucherd::net::wire::encode_requests(&head()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16))
        .await
        .expect("answered after the write deadline")
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "the unread answer held the connection's budget; answered after {waited:?}"
    );
    assert!(matches!(
        voucherd::net::wire::decode_reply(&answer),
        Ok(voucherd::net::wire::Reply::Answers(_))
    ));
    connection.close(0u32.into(), b"done");
    running.stop().await;
}

/// Checks (issue 17, item 1): past `handshakes_before_retry` handshakes in
/// progress, clients must validate their address with a QUIC Retry, so a
/// flood that never receives (spoofed) stops costing handshakes while a
/// gateway (quinn follows the Retry) still gets in. How: at most 8
/// handshakes, Retry past 4, the handshake deadline at 30 s (so nothing
/// frees a held handshake during the test); 64 attempts that never finish;
/// a gateway is served within 5 s. Without the Retry the 8 handshakes are
/// taken by the flood and the gateway is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_a_flood_from_taking_every_handshake() {
    let running = start(Limits {
        handshakes_in_progress_max: 8,
        handshakes_before_retry: 4,
        handshake_timeout_ms: 30_000,
        ..Limits::default()
    })
    .await;
    let flood = Flood::start(running.address, running.certs.path(), 64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gateway = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(running.address, running.certs.path(), Role::Gateway),
    )
    .await;
    let served_now = match gateway {
        Ok(Ok(client)) => served(&client).await,
        _ => false,
    };
    assert!(served_now, "a gateway is served past a flood of handshakes");
    drop(flood);
    running.stop().await;
}

/// A long poll ends when shutdown begins: it is answered at once (no event)
/// and does not hold the daemon's stop until its `wait_ms` or the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_ends_at_shutdown() {
    let running = start(Limits::default()).await;
    let waiter = Arc::new(running.client().await);
    let polling = Arc::clone(&waiter);
    let poll = tokio::spawn(async move { polling.execute(&waiting_events(Some(30_000))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the poll waits (nothing after its cursor)"
    );
    let started = std::time::Instant::now();
    running.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
    let answers = poll.await.unwrap().unwrap();
    match &answers[0].outcome {
        Ok(Reply::Events { events, .. }) => assert!(events.is_empty()),
        other => panic!("the poll answered {other:?}"),
    }
}

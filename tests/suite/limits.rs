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

/// Checks (issue 17, item 3): a client that never reads its answer (a
/// receive window far smaller than the answer) gets its stream reset after
/// the write deadline, instead of pinning the answer in the daemon for ever;
/// other clients go on being served. How: raw quinn with a 1 KiB stream
/// window, a `stats` (several KiB of answer) never read, then a read after
/// the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_never_read_is_reset_after_the_write_deadline() {
    use voucherd::net::tls::{self, CertPaths};
    let running = start(Limits {
        answer_write_timeout_ms: 500,
        ..Limits::default()
    })
    .await;
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
    let stats = vec![Request {
        id: "big".into(),
        op: Op::Stats {
            district: None,
            year: None,
        },
    }];
    let frame = voucherd::net::wire::encode_requests(&stats).unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&frame).await.unwrap();
    send.finish().unwrap();
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

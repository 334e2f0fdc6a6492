//! The real protocol against a real daemon: the QUIC server runs in-process on
//! a loopback port over a RocksDB data folder in a tempdir, with development
//! certificates; clients connect with mutual TLS as a role and speak frames.
//!
//! Covered: every operation and reason code end to end, batches in order,
//! idempotent retries, foreign certificates, bad frames, stream flow control,
//! races between connections, and graceful shutdown with durability.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    authorise, id_number, issue, kit_class, kit_classes_of, open_class, redeem, redeem_in,
    register, FAR, SITE,
};
use rand::{Rng, SeedableRng};
use strum::VariantArray;
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinHandle;
use voucherd::admin::data_dir::{self, Opened};
use voucherd::codec;
use voucherd::domain::campaign::{Campaign, CAMPAIGN_2021_TOML};
use voucherd::domain::enums::{Category, Channel, ClassMode, Kind, VoucherState};
use voucherd::domain::ids::{DistrictCode, IdNumber, InstitutionCode, PersonSecret, VoucherId};
use voucherd::domain::op::{Answer, Event, Op, OpName, Reply, Request, Role, VoucherView};
use voucherd::domain::time::{day_text, Clock, SystemClock, ANSWER_UTC_OFFSET_S};
use voucherd::error::Reason;
use voucherd::ledger::Ledger;
use voucherd::limits::{
    BATCH_OPS_MAX, FRAME_BYTES_MAX, PROTOCOL_VERSION, STREAMS_PER_CONNECTION_MAX,
};
use voucherd::net::client::{Client, ClientError, Encoding};
use voucherd::net::server::{self, CLOSE_PROTOCOL_ERROR};
use voucherd::net::tls::{self, CertPaths};
use voucherd::net::wire::{self, Reply as WireReply};

/// How long any single request may take before the test calls it a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The daemon, in-process
// ---------------------------------------------------------------------------

/// A daemon serving on a loopback port, with its folders in a tempdir.
struct Daemon {
    addr: SocketAddr,
    certs: PathBuf,
    data: PathBuf,
    opened: Option<Opened>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

/// The campaign the real daemon runs today with no campaign file.
fn today() -> Campaign {
    Campaign::default_for(SystemClock.now())
}

/// Today plus `offset` days, as a local date (UTC+8, YYYY-MM-DD).
fn local_date(offset: i64) -> String {
    day_text(SystemClock.now().local_day(ANSWER_UTC_OFFSET_S) + offset as i32)
}

fn district_code(code: &str) -> DistrictCode {
    code.parse().unwrap()
}

impl Daemon {
    /// Generates certificates, opens the ledger and serves on 127.0.0.1:0.
    async fn start(campaign: Campaign) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let data = dir.path().join("data");
        let districts: Vec<DistrictCode> = campaign.districts.iter().map(|d| d.code).collect();
        tls::generate(&certs, &districts).unwrap();
        let opened = data_dir::open(&data, campaign, Arc::new(SystemClock)).unwrap();
        let endpoint = server::endpoint("127.0.0.1:0".parse().unwrap(), &certs).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            endpoint,
            Arc::clone(&opened.ledger),
            async move {
                let _ = stopped.await;
            },
        ));
        Daemon {
            addr,
            certs,
            data,
            opened: Some(opened),
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    fn ledger(&self) -> &Arc<Ledger> {
        &self.opened.as_ref().expect("the ledger is open").ledger
    }

    /// The audit head as the ledger holds it (not over the network).
    fn head(&self) -> (u64, [u8; 32], String) {
        self.ledger().head()
    }

    async fn client(&self, role: Role) -> Client {
        Client::connect(self.addr, &self.certs, role)
            .await
            .unwrap_or_else(|e| panic!("{role} connects: {e}"))
    }

    /// Fires the shutdown and waits until `serve` has returned.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("serve returns within the grace period")
                .expect("serve does not panic");
        }
    }

    /// Shuts down, closes the ledger and store, and returns the folders.
    async fn close(mut self) -> (tempfile::TempDir, PathBuf) {
        self.shut_down().await;
        drop(self.opened.take());
        (self.dir, self.data)
    }
}

/// Opens a data folder again, waiting a little for the previous store's lock.
fn reopen(data: &Path) -> Opened {
    let started = Instant::now();
    loop {
        match data_dir::open(data, today(), Arc::new(SystemClock)) {
            Ok(opened) => return opened,
            Err(error) if started.elapsed() < Duration::from_secs(10) => {
                eprintln!("reopen: {error}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("the data folder does not reopen: {error}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(0);

fn request(op: Op) -> Request {
    Request {
        id: format!("q-{}", NEXT_REQUEST.fetch_add(1, Ordering::SeqCst)),
        op,
    }
}

async fn execute(client: &Client, requests: &[Request]) -> Vec<Answer> {
    tokio::time::timeout(REQUEST_TIMEOUT, client.execute(requests))
        .await
        .expect("answered in time")
        .expect("the batch is answered")
}

async fn one(client: &Client, op: Op) -> Answer {
    execute(client, &[request(op)]).await.remove(0)
}

async fn ok(client: &Client, op: Op) -> Reply {
    let answer = one(client, op.clone()).await;
    match answer.outcome {
        Ok(reply) => reply,
        Err(refusal) => panic!("{op:?} refused: {} ({})", refusal.reason, refusal.message),
    }
}

async fn issued(client: &Client, op: Op) -> VoucherId {
    match ok(client, op).await {
        Reply::Issued { voucher } => voucher,
        other => panic!("issue answered {other:?}"),
    }
}

async fn view(client: &Client, voucher: VoucherId) -> VoucherView {
    match ok(client, Op::GetVoucher { voucher }).await {
        Reply::Voucher(view) => *view,
        other => panic!("get_voucher answered {other:?}"),
    }
}

async fn audit_seq(client: &Client) -> (u64, String) {
    match ok(client, Op::AuditHead).await {
        Reply::AuditHead {
            seq, state_digest, ..
        } => (seq, state_digest),
        other => panic!("audit_head answered {other:?}"),
    }
}

fn issue_in(person: &str, kind: Kind, district: &str) -> Op {
    Op::Issue {
        id_number: person.into(),
        category: Category::Unemployed,
        kind,
        face_value_fen: 80_000,
        channel: Channel::CqHrssApp,
        district: district_code(district),
        year: None,
    }
}

fn reason_of(answer: &Answer) -> &'static str {
    match &answer.outcome {
        Ok(reply) => panic!("{} was accepted: {reply:?}", answer.id),
        Err(refusal) => refusal.reason.as_str(),
    }
}

// ---------------------------------------------------------------------------
// Every operation, every reason code
// ---------------------------------------------------------------------------

/// Every reason code the walk must meet end to end: all of `Reason::ALL` but
/// `expired` (its own test on a past campaign), `overloaded` and
/// `shutting_down` (load and shutdown matters), `storage_unavailable` and
/// `outcome_unknown` (the disk tests), `not_leader` (replicated mode's
/// tests, a standby over QUIC: `replication::`).
fn walked_reasons() -> Vec<&'static str> {
    let elsewhere = [
        Reason::Expired,
        Reason::Overloaded,
        Reason::ShuttingDown,
        Reason::StorageUnavailable,
        Reason::OutcomeUnknown,
        Reason::NotLeader,
    ];
    Reason::ALL
        .iter()
        .filter(|reason| !elsewhere.contains(reason))
        .filter(|reason| !crate::common::NOT_YET_BUILT.contains(reason))
        .map(|reason| reason.as_str())
        .collect()
}

/// Every operation of API.md: all of `OpName` but the addition `audit_read`
/// (the operations and model tests read the audit chain).
fn walked_operations() -> Vec<&'static str> {
    OpName::VARIANTS
        .iter()
        .filter(|&&name| name != OpName::AuditRead)
        .map(|&name| name.into())
        .collect()
}

/// One client per role and a tally of what was accepted and refused.
struct Walk {
    clients: HashMap<Role, Client>,
    accepted: BTreeSet<&'static str>,
    reasons: BTreeSet<&'static str>,
    /// `forbidden_role` seen per role (by its text).
    forbidden: BTreeSet<String>,
}

impl Walk {
    async fn new(daemon: &Daemon, roles: &[Role]) -> Walk {
        let mut clients = HashMap::new();
        for &role in roles {
            clients.insert(role, daemon.client(role).await);
        }
        Walk {
            clients,
            accepted: BTreeSet::new(),
            reasons: BTreeSet::new(),
            forbidden: BTreeSet::new(),
        }
    }

    fn client(&self, role: Role) -> &Client {
        &self.clients[&role]
    }

    async fn head(&self) -> (u64, String) {
        audit_seq(self.client(Role::Auditor)).await
    }

    async fn ok(&mut self, role: Role, op: Op) -> Reply {
        let name = op.name();
        let reply = ok(self.client(role), op).await;
        self.accepted.insert(name);
        reply
    }

    async fn voucher(&mut self, role: Role, op: Op) -> VoucherId {
        match self.ok(role, op).await {
            Reply::Issued { voucher } => voucher,
            other => panic!("issue answered {other:?}"),
        }
    }

    /// Sends `request` as `role`, expects `reason`, and checks that the
    /// refusal changed nothing (audit head and state digest).
    async fn refused_request(&mut self, role: Role, request: Request, reason: &str) {
        let before = self.head().await;
        let answers = execute(self.client(role), std::slice::from_ref(&request)).await;
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].id, request.id);
        let refusal = match &answers[0].outcome {
            Ok(reply) => panic!("{:?} as {role} was accepted: {reply:?}", request.op),
            Err(refusal) => refusal,
        };
        assert_eq!(
            refusal.reason.as_str(),
            reason,
            "{:?} as {role}: {}",
            request.op,
            refusal.message
        );
        assert!(!refusal.message.is_empty(), "a refusal explains itself");
        assert_eq!(
            self.head().await,
            before,
            "a refused {} changed the ledger",
            request.op.name()
        );
        self.reasons.insert(refusal.reason.as_str());
        if refusal.reason == Reason::ForbiddenRole {
            self.forbidden.insert(role.to_string());
        }
    }

    async fn refused(&mut self, role: Role, op: Op, reason: &str) {
        self.refused_request(role, request(op), reason).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_operation_and_reason_code_over_quic() {
    let daemon = Daemon::start(today()).await;
    let year = today().year;
    let d101 = Role::District(district_code("500101"));
    let d102 = Role::District(district_code("500102"));
    let (gateway, bureau, auditor) = (Role::Gateway, Role::Bureau, Role::Auditor);
    let platform = Role::Platform;
    let mut w = Walk::new(&daemon, &[gateway, bureau, auditor, d101, d102, platform]).await;

    // Institutions: A in 500101, B in 500102.
    let (a, b) = ("5000001", "5000002");
    let (admin_a, admin_b, admin_b2) = (id_number(1), id_number(2), id_number(3));
    w.ok(bureau, register(a, "500101", &admin_a)).await;
    w.ok(bureau, register(b, "500102", &admin_b)).await;
    w.refused(
        bureau,
        register(a, "500101", &admin_a),
        "institution_exists",
    )
    .await;
    w.refused(
        bureau,
        register("5000003", "999999", &admin_a),
        "unknown_district",
    )
    .await;
    w.refused(
        bureau,
        register("5000003", "500101", "500101199001011234"),
        "invalid_id_number",
    )
    .await;
    let mut outside = register("5000003", "500101", &admin_a);
    if let Op::RegisterInstitution { sites, .. } = &mut outside {
        sites[0].lat = 39.9; // Beijing
        sites[0].lon = 116.4;
    }
    w.refused(bureau, outside, "invalid_request").await;
    w.ok(gateway, authorise(a, &admin_a, "op-a")).await;
    for op in kit_classes_of(a, "op-a", year) {
        w.ok(gateway, op).await;
    }
    w.ok(gateway, authorise(a, &admin_a, "op-tmp")).await;
    w.ok(
        gateway,
        Op::RevokeOperator {
            institution: a.parse().unwrap(),
            admin_id_number: admin_a.clone(),
            operator: "op-tmp".parse().unwrap(),
        },
    )
    .await;
    w.refused(
        gateway,
        Op::RevokeOperator {
            institution: a.parse().unwrap(),
            admin_id_number: admin_a.clone(),
            operator: "op-tmp".parse().unwrap(),
        },
        "not_authorised",
    )
    .await;
    w.ok(
        bureau,
        Op::SetInstitutionAdmin {
            institution: b.parse().unwrap(),
            admin_name: "王芳".into(),
            admin_id_number: admin_b2.clone(),
        },
    )
    .await;
    w.refused(gateway, authorise(b, &admin_b, "op-b"), "not_authorised")
        .await;
    w.ok(gateway, authorise(b, &admin_b2, "op-b")).await;
    for op in kit_classes_of(b, "op-b", year) {
        w.ok(gateway, op).await;
    }
    w.refused(
        bureau,
        Op::SetInstitutionAdmin {
            institution: "5009999".parse().unwrap(),
            admin_name: "王芳".into(),
            admin_id_number: admin_b2.clone(),
        },
        "unknown_institution",
    )
    .await;

    // Issue and claim.
    let holder = id_number(100);
    let other = id_number(101);
    let v1 = w
        .voucher(bureau, issue(&holder, Kind::EmploymentSkills))
        .await;
    let v2 = w
        .voucher(bureau, issue(&holder, Kind::Entrepreneurship))
        .await;
    let v1_again = w
        .voucher(bureau, issue(&holder, Kind::EmploymentSkills))
        .await;
    w.refused(
        bureau,
        issue("12345", Kind::HrServices),
        "invalid_id_number",
    )
    .await;
    w.refused(
        bureau,
        issue_in(&holder, Kind::HrServices, "999999"),
        "unknown_district",
    )
    .await;
    let mut free = issue(&holder, Kind::HrServices);
    if let Op::Issue { face_value_fen, .. } = &mut free {
        *face_value_fen = 0;
    }
    w.refused(bureau, free, "invalid_request").await;
    let claim = |voucher, person: &str| Op::Claim {
        voucher,
        id_number: person.into(),
    };
    w.refused(gateway, claim(v1, &other), "not_holder").await;
    w.ok(gateway, claim(v1, &holder)).await;
    w.refused(gateway, claim(v1, &holder), "kind_already_claimed")
        .await;
    w.refused(gateway, claim(v1_again, &holder), "kind_already_claimed")
        .await;
    w.refused(
        gateway,
        claim(VoucherId(9_999_999_999), &holder),
        "unknown_voucher",
    )
    .await;
    // Validation comes before lookup: a bad ID number on an unknown voucher.
    w.refused(
        gateway,
        claim(VoucherId(9_999_999_999), "x"),
        "invalid_id_number",
    )
    .await;

    // Redeem.
    w.refused(gateway, redeem(v2, a, "op-a"), "not_claimed")
        .await;
    w.refused(gateway, redeem(v1, a, "op-nobody"), "not_authorised")
        .await;
    w.refused(
        gateway,
        redeem(v1, "5009999", "op-a"),
        "unknown_institution",
    )
    .await;
    assert_eq!(
        w.ok(gateway, redeem(v1, a, "op-a")).await,
        Reply::Redeemed { uses_this_year: 1 }
    );
    w.refused(gateway, redeem(v1, a, "op-a"), "already_redeemed")
        .await;

    // Check in.
    let checkin = |voucher, (lat, lon): (f64, f64)| Op::Checkin { voucher, lat, lon };
    w.refused(gateway, checkin(v1, FAR), "outside_site").await;
    match w.ok(gateway, checkin(v1, SITE)).await {
        Reply::CheckedIn { session, checkins } => {
            assert_eq!(checkins, 1);
            assert_eq!(session.len(), "2026-11-29".len(), "{session}");
        }
        other => panic!("checkin answered {other:?}"),
    }
    w.refused(gateway, checkin(v1, SITE), "duplicate_checkin")
        .await;
    w.refused(gateway, checkin(v2, SITE), "not_redeemed").await;
    w.refused(gateway, checkin(v1, (95.0, 106.5)), "invalid_request")
        .await;

    // Complete, evaluate.
    // The named institution's operator (a's or b's).
    let operator_of = |institution: &str| -> voucherd::domain::ids::OperatorId {
        if institution == a { "op-a" } else { "op-b" }
            .parse()
            .unwrap()
    };
    let complete = |voucher, institution: &str| Op::Complete {
        voucher,
        institution: institution.parse().unwrap(),
        operator: operator_of(institution),
    };
    let evaluate = |voucher, person: &str, score: u8| Op::Evaluate {
        voucher,
        id_number: person.into(),
        score,
        comment: Some("老师讲得很清楚".into()),
    };
    w.refused(gateway, complete(v1, b), "wrong_institution")
        .await;
    w.refused(gateway, complete(v2, a), "not_redeemed").await;
    w.refused(gateway, evaluate(v1, &holder, 5), "not_completed")
        .await;
    w.ok(gateway, complete(v1, a)).await;
    w.refused(gateway, complete(v1, a), "already_completed")
        .await;
    w.refused(gateway, evaluate(v1, &holder, 9), "invalid_request")
        .await;
    // Validation before lookup: a bad score on an unknown voucher.
    w.refused(
        gateway,
        evaluate(VoucherId(9_999_999_999), &holder, 0),
        "invalid_request",
    )
    .await;
    w.refused(gateway, evaluate(v1, &other, 4), "not_holder")
        .await;
    w.ok(gateway, evaluate(v1, &holder, 5)).await;
    w.refused(gateway, evaluate(v1, &holder, 4), "already_evaluated")
        .await;
    let mut long = evaluate(v1, &holder, 4);
    if let Op::Evaluate { comment, .. } = &mut long {
        *comment = Some("好".repeat(201));
    }
    w.refused(gateway, long, "invalid_request").await;

    // Settle: only the agency of the institution's district.
    let settle = |voucher, amount_fen| Op::Settle {
        voucher,
        amount_fen,
    };
    w.refused(d102, settle(v1, 60_000), "forbidden_role").await;
    w.refused(d101, settle(v1, 80_001), "amount_exceeds_face_value")
        .await;
    w.ok(d101, settle(v1, 60_000)).await;
    w.refused(d101, settle(v1, 60_000), "already_settled").await;

    // Release.
    let release = |voucher, institution: &str| Op::Release {
        voucher,
        institution: institution.parse().unwrap(),
        operator: operator_of(institution),
    };
    w.refused(gateway, release(v1, a), "already_completed")
        .await;
    w.refused(gateway, release(v2, a), "not_redeemed").await;
    w.ok(gateway, claim(v2, &holder)).await;
    let class = kit_class(Kind::Entrepreneurship);
    w.ok(gateway, redeem_in(v2, b, "op-b", &class)).await;
    w.refused(gateway, release(v2, a), "wrong_institution")
        .await;
    w.ok(gateway, release(v2, b)).await;
    assert_eq!(
        view(w.client(auditor), v2).await.state,
        VoucherState::Claimed
    );

    // The use limit (3 a year): a second person redeems three, the fourth is refused.
    let busy = id_number(200);
    let kinds = [
        Kind::HrServices,
        Kind::DomesticServices,
        Kind::PreCompetition,
        Kind::Apprenticeship,
    ];
    let mut busy_vouchers = Vec::new();
    for kind in kinds {
        let voucher = w.voucher(bureau, issue(&busy, kind)).await;
        w.ok(gateway, claim(voucher, &busy)).await;
        busy_vouchers.push(voucher);
    }
    for (n, &voucher) in busy_vouchers[..3].iter().enumerate() {
        let class = kit_class(kinds[n]);
        assert_eq!(
            w.ok(gateway, redeem_in(voucher, a, "op-a", &class)).await,
            Reply::Redeemed {
                uses_this_year: n as u8 + 1
            }
        );
    }
    w.refused(
        gateway,
        redeem_in(busy_vouchers[3], a, "op-a", &kit_class(kinds[3])),
        "use_limit_reached",
    )
    .await;

    // Classes at C (A and B opened one per kind: `kit_classes_of`),
    // and an online check-in by the platform's certificate.
    let c = "5000005";
    let admin_c = id_number(4);
    w.ok(bureau, register(c, "500101", &admin_c)).await;
    w.ok(gateway, authorise(c, &admin_c, "op-c")).await;
    let day = |offset: i64| local_date(offset);
    let open = |class: &str, kind, first: i64, last: i64, mode| {
        open_class(c, "op-c", class, kind, (&day(first), &day(last)), mode)
    };
    w.ok(
        gateway,
        open("网课", Kind::WorkForTraining, -1, 30, ClassMode::Online),
    )
    .await;
    w.ok(
        gateway,
        open("下月班", Kind::EmployeeGeneral, 1, 30, ClassMode::Onsite),
    )
    .await;
    w.ok(
        gateway,
        open("旧班", Kind::EmployeeSafety, -30, -1, ClassMode::Onsite),
    )
    .await;
    w.refused(
        gateway,
        open("网课", Kind::WorkForTraining, -1, 30, ClassMode::Online),
        "class_exists",
    )
    .await;
    w.refused(
        gateway,
        open("倒序班", Kind::WorkForTraining, 3, 2, ClassMode::Online),
        "invalid_request",
    )
    .await;
    w.refused(
        platform,
        open("平台班", Kind::WorkForTraining, 0, 2, ClassMode::Online),
        "forbidden_role",
    )
    .await;
    let trainee = id_number(300);
    let mut enrolled = Vec::new();
    for kind in [
        Kind::WorkForTraining,
        Kind::EmployeeGeneral,
        Kind::EmployeeSafety,
    ] {
        let voucher = w.voucher(bureau, issue(&trainee, kind)).await;
        w.ok(gateway, claim(voucher, &trainee)).await;
        enrolled.push(voucher);
    }
    let into = |voucher, class: &str| Op::Redeem {
        voucher,
        institution: c.parse().unwrap(),
        operator: "op-c".parse().unwrap(),
        class: class.into(),
    };
    w.refused(gateway, redeem(enrolled[0], c, "op-c"), "unknown_class")
        .await;
    w.refused(gateway, into(enrolled[0], "下月班"), "wrong_kind")
        .await;
    w.refused(gateway, into(enrolled[2], "旧班"), "class_closed")
        .await;
    w.ok(gateway, into(enrolled[0], "网课")).await;
    w.ok(gateway, into(enrolled[1], "下月班")).await;
    let online = |voucher| Op::CheckinOnline {
        voucher,
        online: true,
    };
    w.refused(gateway, checkin(enrolled[0], SITE), "wrong_mode")
        .await;
    w.refused(gateway, online(enrolled[0]), "forbidden_role")
        .await;
    w.refused(platform, checkin(enrolled[0], SITE), "forbidden_role")
        .await;
    match w.ok(platform, online(enrolled[0])).await {
        Reply::CheckedIn { session, checkins } => {
            assert_eq!((session, checkins), (day(0), 1));
        }
        other => panic!("online checkin answered {other:?}"),
    }
    w.refused(platform, online(enrolled[0]), "duplicate_checkin")
        .await;
    w.refused(platform, online(enrolled[1]), "wrong_mode").await;
    w.refused(gateway, checkin(enrolled[1], SITE), "class_closed")
        .await;

    // Expire while the campaign runs.
    w.refused(bureau, Op::Expire { year }, "campaign_open")
        .await;
    w.refused(bureau, Op::Expire { year: 1999 }, "invalid_request")
        .await;

    // Request ids: too long, or reused for another request.
    w.refused_request(
        bureau,
        Request {
            id: "x".repeat(65),
            op: Op::AuditHead,
        },
        "invalid_request",
    )
    .await;
    let first = request(issue(&other, Kind::Adaptability));
    let answer = execute(w.client(bureau), std::slice::from_ref(&first)).await;
    assert!(answer[0].outcome.is_ok());
    w.accepted.insert("issue");
    w.refused_request(
        bureau,
        Request {
            id: first.id.clone(),
            op: issue(&other, Kind::WorkForTraining),
        },
        "request_id_reused",
    )
    .await;

    // forbidden_role for every role: one operation each may not run.
    w.refused(
        gateway,
        issue(&holder, Kind::Adaptability),
        "forbidden_role",
    )
    .await;
    w.refused(
        gateway,
        Op::Stats {
            district: None,
            year: None,
        },
        "forbidden_role",
    )
    .await;
    w.refused(bureau, claim(v2, &holder), "forbidden_role")
        .await;
    w.refused(bureau, settle(v1, 1), "forbidden_role").await;
    w.refused(
        d101,
        register("5000004", "500101", &admin_a),
        "forbidden_role",
    )
    .await;
    w.refused(d101, Op::Expire { year }, "forbidden_role").await;
    w.refused(
        d101,
        Op::Stats {
            district: Some(district_code("500102")),
            year: None,
        },
        "forbidden_role",
    )
    .await;
    w.refused(
        auditor,
        issue(&holder, Kind::Adaptability),
        "forbidden_role",
    )
    .await;
    w.refused(auditor, redeem(v2, a, "op-a"), "forbidden_role")
        .await;

    // Reads: get_voucher (any role), stats, audit_head.
    for role in [gateway, bureau, auditor, d101] {
        let seen = match w.ok(role, Op::GetVoucher { voucher: v1 }).await {
            Reply::Voucher(view) => *view,
            other => panic!("{other:?}"),
        };
        assert_eq!(seen.state, VoucherState::Settled);
        assert_eq!(seen.kind, Kind::EmploymentSkills);
        assert_eq!(seen.face_value_fen, 80_000);
        assert_eq!(seen.year, year);
        assert_eq!(seen.institution, Some(a.parse().unwrap()));
        assert_eq!(seen.district, district_code("500101"));
        assert_eq!(seen.checkins, 1);
        assert_eq!(seen.score, Some(5));
        assert_eq!(seen.settled_fen, Some(60_000));
        assert!(seen.class.is_some(), "the class it was redeemed for");
        let steps = &seen.steps;
        for at in [
            &steps.issued_at,
            &steps.claimed_at,
            &steps.redeemed_at,
            &steps.completed_at,
            &steps.settled_at,
        ] {
            assert!(
                at.as_deref().is_some_and(|at| at.ends_with("+08:00")),
                "{steps:?}"
            );
        }
    }
    w.refused(
        auditor,
        Op::GetVoucher {
            voucher: VoucherId(9_999_999_999),
        },
        "unknown_voucher",
    )
    .await;
    // list_vouchers (gateway): the holder of v1 sees it, in voucher id order.
    let Reply::Vouchers { vouchers } = w
        .ok(
            gateway,
            Op::ListVouchers {
                id_number: holder.clone(),
                year: None,
            },
        )
        .await
    else {
        panic!("list_vouchers")
    };
    assert!(vouchers
        .iter()
        .any(|v| v.voucher == v1 && v.state == VoucherState::Settled));
    assert!(vouchers
        .windows(2)
        .all(|pair| pair[0].voucher < pair[1].voucher));
    w.refused(
        bureau,
        Op::ListVouchers {
            id_number: holder.clone(),
            year: None,
        },
        "forbidden_role",
    )
    .await;
    let stats = |district: Option<&str>| Op::Stats {
        district: district.map(district_code),
        year: None,
    };
    let Reply::Stats(city) = w.ok(bureau, stats(None)).await else {
        panic!("stats")
    };
    let row = |stats: &voucherd::domain::op::StatsView, code: &str| {
        stats
            .districts
            .iter()
            .find(|d| d.code == district_code(code))
            .cloned()
            .unwrap_or_else(|| panic!("no row for {code}"))
    };
    let d = row(&city, "500101");
    // Issued in 500101: v1, v2, v1_again, 4 for the busy person, 1 for `other`.
    // And the trainee of C: 3 issued and claimed, 2 enrolled.
    assert_eq!((d.issued, d.claimed, d.used), (11, 9, 6), "{d:?}");
    assert_eq!(city.coverage.institutions_registered, 3);
    assert_eq!(city.coverage.used_with_checkin, 2);
    let Reply::Stats(own) = w.ok(d101, stats(None)).await else {
        panic!("stats")
    };
    assert_eq!(own.districts.len(), 1);
    assert_eq!(row(&own, "500101"), d);
    let Reply::Stats(audited) = w.ok(auditor, stats(Some("500101"))).await else {
        panic!("stats")
    };
    assert_eq!(row(&audited, "500101"), d);
    w.refused(auditor, stats(Some("999999")), "unknown_district")
        .await;
    for role in [gateway, bureau, auditor, d102] {
        match w.ok(role, Op::AuditHead).await {
            Reply::AuditHead {
                seq,
                hash,
                state_digest,
            } => {
                assert!(seq > 0);
                assert_eq!(hash.len(), 64);
                assert_eq!(state_digest.len(), 64);
                assert_eq!(seq, daemon.head().0);
            }
            other => panic!("{other:?}"),
        }
    }
    // The data return: 500101's events as the auditor reads them (the
    // training system's flow has its own test); another district's agency
    // may not read them.
    let district_events = |code: &str| Op::Events {
        after: 0,
        limit: None,
        institution: None,
        district: Some(district_code(code)),
        wait_ms: None,
    };
    match w.ok(auditor, district_events("500101")).await {
        Reply::Events { events, next } => {
            assert!(!events.is_empty());
            assert_eq!(next, events.last().unwrap().seq);
        }
        other => panic!("{other:?}"),
    }
    w.refused(d102, district_events("500101"), "forbidden_role")
        .await;
    // The expire operation itself is accepted on a finished campaign; see
    // `a_past_campaign_refuses_issue_and_accepts_expire`.
    w.accepted.insert("expire");

    let missing: Vec<_> = walked_reasons()
        .into_iter()
        .filter(|r| !w.reasons.contains(r))
        .collect();
    assert!(missing.is_empty(), "reason codes never seen: {missing:?}");
    let missing: Vec<_> = walked_operations()
        .into_iter()
        .filter(|op| !w.accepted.contains(op))
        .collect();
    assert!(missing.is_empty(), "operations never accepted: {missing:?}");
    for role in [
        "gateway",
        "bureau",
        "district:500101",
        "auditor",
        "platform",
    ] {
        assert!(
            w.forbidden.contains(role),
            "no forbidden_role seen for {role}"
        );
    }
    for (_, client) in w.clients.drain() {
        client.close().await;
    }
}

/// Checks `open_class` and the online check-in in the JSON encoding (ALPN
/// `voucherd-json/1`): a gateway opens an online class and enrolls a
/// voucher; the platform's certificate sends `{"op": "checkin", "online":
/// true}` and gets the session; the same voucher's positioned check-in from
/// the gateway is `wrong_mode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_and_online_checkins_in_json() {
    use voucherd::net::client::Encoding;
    let daemon = Daemon::start(today()).await;
    let connect = |role| Client::connect_encoded(daemon.addr, &daemon.certs, role, Encoding::Json);
    let (bureau, gateway, platform) = (
        connect(Role::Bureau).await.unwrap(),
        connect(Role::Gateway).await.unwrap(),
        connect(Role::Platform).await.unwrap(),
    );
    let admin = id_number(1);
    ok(&bureau, register("5000001", "500101", &admin)).await;
    ok(&gateway, authorise("5000001", &admin, "op-1")).await;
    for op in kit_classes_of("5000001", "op-1", today().year) {
        ok(&gateway, op).await;
    }
    let class = open_class(
        "5000001",
        "op-1",
        "线上电工 2026",
        Kind::EmploymentSkills,
        (&local_date(0), &local_date(10)),
        ClassMode::Online,
    );
    let json = serde_json::to_value(&class).unwrap();
    assert_eq!(json["op"], "open_class");
    assert_eq!(json["mode"], "online");
    ok(&gateway, class).await;
    let person = id_number(2);
    let voucher = match ok(&bureau, issue(&person, Kind::EmploymentSkills)).await {
        Reply::Issued { voucher } => voucher,
        other => panic!("issue answered {other:?}"),
    };
    let claim = Op::Claim {
        voucher,
        id_number: person,
    };
    ok(&gateway, claim).await;
    let mut enroll = redeem(voucher, "5000001", "op-1");
    if let Op::Redeem { class, .. } = &mut enroll {
        *class = "线上电工 2026".into();
    }
    ok(&gateway, enroll).await;
    let online = Op::CheckinOnline {
        voucher,
        online: true,
    };
    let json = serde_json::to_value(&online).unwrap();
    assert_eq!(json["op"], "checkin");
    assert_eq!(json["online"], true);
    assert_eq!(
        ok(&platform, online).await,
        Reply::CheckedIn {
            session: local_date(0),
            checkins: 1
        }
    );
    let positioned = Op::Checkin {
        voucher,
        lat: SITE.0,
        lon: SITE.1,
    };
    assert_eq!(reason_of(&one(&gateway, positioned).await), "wrong_mode");
    for client in [bureau, gateway, platform] {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_campaign_refuses_issue_and_accepts_expire() {
    let campaign = Campaign::from_toml(CAMPAIGN_2021_TOML).unwrap();
    assert_eq!(campaign.year, 2021);
    let daemon = Daemon::start(campaign).await;
    let bureau = daemon.client(Role::Bureau).await;
    let before = daemon.head();
    let answer = one(&bureau, issue(&id_number(1), Kind::HrServices)).await;
    assert_eq!(reason_of(&answer), "expired");
    let mut explicit = issue(&id_number(1), Kind::HrServices);
    if let Op::Issue { year, .. } = &mut explicit {
        *year = Some(2021);
    }
    assert_eq!(reason_of(&one(&bureau, explicit).await), "expired");
    assert_eq!(daemon.head(), before, "refusals change nothing");
    assert_eq!(
        ok(&bureau, Op::Expire { year: 2021 }).await,
        Reply::Expired { expired: 0 }
    );
    assert_eq!(
        ok(&bureau, Op::Expire { year: 2021 }).await,
        Reply::Expired { expired: 0 },
        "a second run expires nothing"
    );
    let gateway = daemon.client(Role::Gateway).await;
    assert_eq!(
        reason_of(&one(&gateway, Op::Expire { year: 2021 }).await),
        "forbidden_role"
    );
    let Reply::Stats(stats) = ok(
        &bureau,
        Op::Stats {
            district: None,
            year: None,
        },
    )
    .await
    else {
        panic!("stats")
    };
    assert_eq!(stats.year, 2021);
    assert_eq!(stats.city.issued, 0);
    bureau.close().await;
    gateway.close().await;
}

// ---------------------------------------------------------------------------
// Batches and retries
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_answers_in_order() {
    let daemon = Daemon::start(today()).await;
    let bureau = daemon.client(Role::Bureau).await;
    let gateway = daemon.client(Role::Gateway).await;
    let admin = id_number(1);
    ok(&bureau, register("5000001", "500101", &admin)).await;
    ok(&gateway, authorise("5000001", &admin, "op-1")).await;
    for op in kit_classes_of("5000001", "op-1", today().year) {
        ok(&gateway, op).await;
    }

    let person = id_number(10);
    let seq_before = daemon.head().0;
    let requests = vec![
        request(issue(&person, Kind::HrServices)),
        request(issue("not-an-id-number", Kind::HrServices)),
        request(issue_in(&person, Kind::Adaptability, "999999")),
        request(issue(&person, Kind::Adaptability)),
        request(Op::GetVoucher {
            voucher: VoucherId(9_999_999_999),
        }),
        request(Op::AuditHead),
        request(Op::Claim {
            voucher: VoucherId(1),
            id_number: person.clone(),
        }),
    ];
    let answers = execute(&bureau, &requests).await;
    assert_eq!(answers.len(), requests.len());
    for (request, answer) in requests.iter().zip(&answers) {
        assert_eq!(answer.id, request.id, "answers come in request order");
    }
    let voucher = |answer: &Answer| match &answer.outcome {
        Ok(Reply::Issued { voucher }) => *voucher,
        other => panic!("{other:?}"),
    };
    let (first, second) = (voucher(&answers[0]), voucher(&answers[3]));
    assert_eq!(reason_of(&answers[1]), "invalid_id_number");
    assert_eq!(reason_of(&answers[2]), "unknown_district");
    assert_eq!(reason_of(&answers[4]), "unknown_voucher");
    match &answers[5].outcome {
        // The head seen inside the batch already counts the first issue.
        Ok(Reply::AuditHead { seq, .. }) => assert_eq!(*seq, seq_before + 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(reason_of(&answers[6]), "forbidden_role");
    assert_eq!(
        daemon.head().0,
        seq_before + 2,
        "only the two accepted issues changed the ledger"
    );

    // A gateway batch whose operations depend on the ones before them.
    let hr = kit_class(Kind::HrServices);
    let requests = vec![
        request(Op::Claim {
            voucher: first,
            id_number: person.clone(),
        }),
        request(redeem_in(first, "5000001", "op-1", &hr)),
        request(redeem_in(first, "5000001", "op-1", &hr)),
        request(Op::Checkin {
            voucher: first,
            lat: FAR.0,
            lon: FAR.1,
        }),
        request(Op::Checkin {
            voucher: first,
            lat: SITE.0,
            lon: SITE.1,
        }),
        request(redeem_in(
            second,
            "5000001",
            "op-1",
            &kit_class(Kind::Adaptability),
        )),
        request(Op::Issue {
            id_number: person.clone(),
            category: Category::RuralMigrant,
            kind: Kind::HrServices,
            face_value_fen: 1,
            channel: Channel::Yukuaiban,
            district: district_code("500101"),
            year: None,
        }),
    ];
    let answers = execute(&gateway, &requests).await;
    let ids: Vec<_> = answers.iter().map(|a| a.id.as_str()).collect();
    let sent: Vec<_> = requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, sent);
    assert_eq!(answers[0].outcome, Ok(Reply::Done {}));
    assert_eq!(
        answers[1].outcome,
        Ok(Reply::Redeemed { uses_this_year: 1 })
    );
    assert_eq!(reason_of(&answers[2]), "already_redeemed");
    assert_eq!(reason_of(&answers[3]), "outside_site");
    assert!(matches!(
        answers[4].outcome,
        Ok(Reply::CheckedIn { checkins: 1, .. })
    ));
    assert_eq!(reason_of(&answers[5]), "not_claimed");
    assert_eq!(reason_of(&answers[6]), "forbidden_role");
    let seen = view(&gateway, first).await;
    assert_eq!((seen.state, seen.checkins), (VoucherState::Redeemed, 1));
    assert_eq!(view(&gateway, second).await.state, VoucherState::Issued);
    bureau.close().await;
    gateway.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_ids_answer_the_same_and_apply_nothing() {
    let daemon = Daemon::start(today()).await;
    let bureau = daemon.client(Role::Bureau).await;
    let gateway = daemon.client(Role::Gateway).await;
    let person = id_number(10);

    let first = request(issue(&person, Kind::HrServices));
    let answer = execute(&bureau, std::slice::from_ref(&first)).await;
    let Ok(Reply::Issued { voucher }) = answer[0].outcome else {
        panic!("{answer:?}")
    };
    let head = audit_seq(&bureau).await;
    assert_eq!(head.0, daemon.head().0);

    // The same request again, on the same connection and on a new one.
    assert_eq!(execute(&bureau, std::slice::from_ref(&first)).await, answer);
    let again = daemon.client(Role::Bureau).await;
    assert_eq!(execute(&again, std::slice::from_ref(&first)).await, answer);
    // Twice in one batch.
    let twice = execute(&again, &[first.clone(), first.clone()]).await;
    assert_eq!(twice, vec![answer[0].clone(), answer[0].clone()]);
    assert_eq!(audit_seq(&bureau).await, head, "retries apply nothing");

    // A refused request is answered the same when retried, too.
    let wrong_holder = request(Op::Claim {
        voucher,
        id_number: id_number(11),
    });
    let refused = execute(&gateway, std::slice::from_ref(&wrong_holder)).await;
    assert_eq!(reason_of(&refused[0]), "not_holder");
    assert_eq!(
        execute(&gateway, std::slice::from_ref(&wrong_holder)).await,
        refused
    );

    // An accepted claim retried after the voucher moved on still answers ok.
    let claim = request(Op::Claim {
        voucher,
        id_number: person.clone(),
    });
    let claimed = execute(&gateway, std::slice::from_ref(&claim)).await;
    assert_eq!(claimed[0].outcome, Ok(Reply::Done {}));
    let head = audit_seq(&bureau).await;
    assert_eq!(
        execute(&gateway, std::slice::from_ref(&claim)).await,
        claimed
    );
    assert_eq!(audit_seq(&bureau).await, head);

    // Same id, other content: request_id_reused, and nothing moves.
    let reused = Request {
        id: first.id.clone(),
        op: issue(&person, Kind::Adaptability),
    };
    let answer = execute(&bureau, std::slice::from_ref(&reused)).await;
    assert_eq!(answer[0].id, first.id);
    assert_eq!(reason_of(&answer[0]), "request_id_reused");
    let reused_claim = Request {
        id: claim.id.clone(),
        op: Op::Claim {
            voucher: VoucherId(voucher.0 + 1_000),
            id_number: person.clone(),
        },
    };
    assert_eq!(
        reason_of(&execute(&gateway, std::slice::from_ref(&reused_claim)).await[0]),
        "request_id_reused"
    );
    assert_eq!(audit_seq(&bureau).await, head);
    assert_eq!(daemon.head().0, head.0);
    for client in [bureau, gateway, again] {
        client.close().await;
    }
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// Connects with `config` and tries `op`: the connection or the request must
/// fail, never answer.
async fn never_reaches_an_operation(
    daemon: &Daemon,
    config: rustls::ClientConfig,
    op: Op,
    who: &str,
) {
    let connected =
        tokio::time::timeout(REQUEST_TIMEOUT, Client::connect_with(daemon.addr, config))
            .await
            .expect("the handshake ends in time");
    let client = match connected {
        Err(error) => {
            eprintln!("{who}: connect refused: {error}");
            return;
        }
        Ok(client) => client,
    };
    let result = tokio::time::timeout(REQUEST_TIMEOUT, client.execute(&[request(op)]))
        .await
        .expect("the request ends in time");
    match result {
        Err(ClientError::Connection(error)) => eprintln!("{who}: first execute failed: {error}"),
        other => panic!("{who} reached an operation: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_never_reaches_an_operation() {
    let daemon = Daemon::start(today()).await;
    let bureau = daemon.client(Role::Bureau).await;
    ok(&bureau, issue(&id_number(1), Kind::HrServices)).await;
    let before = daemon.head();

    let other = tempfile::tempdir().unwrap();
    tls::generate(other.path(), &[district_code("500101")]).unwrap();
    let ours = CertPaths {
        dir: daemon.certs.clone(),
    };
    let theirs = CertPaths {
        dir: other.path().to_owned(),
    };
    // Trusts our CA, presents a certificate of their CA.
    for (role, op) in [
        (Role::Gateway, Op::AuditHead),
        (Role::Bureau, issue(&id_number(2), Kind::HrServices)),
    ] {
        let config = tls::client_config(
            &ours.ca_cert(),
            &theirs.client_cert(role),
            &theirs.client_key(role),
        )
        .unwrap();
        never_reaches_an_operation(&daemon, config, op, &format!("foreign {role}")).await;
    }
    // Trusts their CA only: our daemon's certificate is not accepted.
    let config = tls::client_config(
        &theirs.ca_cert(),
        &theirs.client_cert(Role::Bureau),
        &theirs.client_key(Role::Bureau),
    )
    .unwrap();
    never_reaches_an_operation(&daemon, config, Op::AuditHead, "client of their CA").await;
    // Our CA's chain, but a certificate that carries no role (the server's own).
    let config =
        tls::client_config(&ours.ca_cert(), &ours.server_cert(), &ours.server_key()).unwrap();
    never_reaches_an_operation(&daemon, config, Op::AuditHead, "no role").await;

    assert_eq!(daemon.head(), before, "nothing reached the ledger");
    // The daemon serves on.
    let again = daemon.client(Role::Bureau).await;
    ok(&again, issue(&id_number(3), Kind::HrServices)).await;
    assert_eq!(daemon.head().0, before.0 + 1);
    bureau.close().await;
    again.close().await;
}

// ---------------------------------------------------------------------------
// Bad frames
// ---------------------------------------------------------------------------

fn frame_of(version: u16, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 6);
    frame.extend_from_slice(&u32::try_from(body.len() + 2).unwrap().to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// Sends one bad frame on a fresh connection: the answer is a whole-frame
/// `invalid_request` refusal, or the connection is closed.
async fn send_bad_frame(daemon: &Daemon, frame: &[u8], what: &str) {
    let client = daemon.client(Role::Bureau).await;
    let result = tokio::time::timeout(REQUEST_TIMEOUT, client.execute_raw(frame))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer and no close within {REQUEST_TIMEOUT:?}"));
    match result {
        Ok(WireReply::Refused(refusal)) => {
            assert_eq!(
                refusal.reason,
                Reason::InvalidRequest,
                "{what}: {refusal:?}"
            );
            eprintln!("{what}: refused: {}", refusal.message);
        }
        Err(ClientError::Connection(error)) => eprintln!("{what}: connection closed: {error}"),
        other => panic!("{what}: {other:?}"),
    }
    // The daemon closes a connection that sent an unreadable frame.
    let closed = tokio::time::timeout(Duration::from_secs(10), client.connection().closed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection stays open"));
    if let quinn::ConnectionError::ApplicationClosed(close) = &closed {
        assert_eq!(
            close.error_code,
            quinn::VarInt::from_u32(CLOSE_PROTOCOL_ERROR),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_refused_and_the_daemon_serves_on() {
    let daemon = Daemon::start(today()).await;
    let bureau = daemon.client(Role::Bureau).await;
    ok(&bureau, issue(&id_number(1), Kind::HrServices)).await;
    let before = daemon.head();

    let good = vec![request(issue(&id_number(2), Kind::HrServices))];
    let good_frame = wire::encode_requests(&good).unwrap();
    let body = codec::encode_plain(&good);
    assert_eq!(frame_of(PROTOCOL_VERSION, &body), good_frame);

    let mut too_long = good_frame.clone();
    too_long[..4].copy_from_slice(&u32::try_from(FRAME_BYTES_MAX + 1).unwrap().to_be_bytes());
    let oversized: Vec<Request> = (0..=BATCH_OPS_MAX as u64)
        .map(|n| Request {
            id: format!("big-{n}"),
            op: issue(&id_number(n), Kind::HrServices),
        })
        .collect();
    let mut trailing = good_frame.clone();
    trailing.extend_from_slice(b"\0\0\0");
    let mut huge = frame_of(PROTOCOL_VERSION, &vec![0u8; FRAME_BYTES_MAX - 2]);
    huge.extend_from_slice(&[0u8; 64]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"garbage".to_vec()),
        (
            "unknown protocol version",
            frame_of(PROTOCOL_VERSION + 7, &body),
        ),
        ("length prefix over the limit", too_long),
        (
            "a batch of BATCH_OPS_MAX + 1",
            frame_of(PROTOCOL_VERSION, &codec::encode_plain(&oversized)),
        ),
        (
            "an empty batch",
            frame_of(
                PROTOCOL_VERSION,
                &codec::encode_plain(&Vec::<Request>::new()),
            ),
        ),
        (
            "a truncated frame",
            good_frame[..good_frame.len() - 3].to_vec(),
        ),
        ("trailing bytes", trailing),
        ("a header alone", good_frame[..5].to_vec()),
        ("an empty stream", Vec::new()),
        ("more bytes than FRAME_BYTES_MAX", huge),
    ];
    for (what, frame) in &cases {
        send_bad_frame(&daemon, frame, what).await;
        assert_eq!(daemon.head(), before, "{what} changed the ledger");
    }
    // A well-behaved client, old or new, is served on.
    let fresh = daemon.client(Role::Bureau).await;
    assert_eq!(execute(&fresh, &good).await.len(), 1);
    assert_eq!(daemon.head().0, before.0 + 1);
    ok(&bureau, issue(&id_number(3), Kind::HrServices)).await;
    assert_eq!(daemon.head().0, before.0 + 2);
    bureau.close().await;
    fresh.close().await;
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_concurrent_requests_than_streams_all_complete() {
    let daemon = Daemon::start(today()).await;
    let client = Arc::new(daemon.client(Role::Bureau).await);
    let requests = 3 * STREAMS_PER_CONNECTION_MAX as u64 + 7;
    let before = daemon.head().0;
    let start = Arc::new(Barrier::new(requests as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..requests {
        let (client, start) = (Arc::clone(&client), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            let request = request(issue(&id_number(n), Kind::ALL[n as usize % 11]));
            tokio::time::timeout(
                REQUEST_TIMEOUT,
                client.execute(std::slice::from_ref(&request)),
            )
            .await
            .expect("answered in time")
        });
    }
    let mut vouchers = BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        let answers = result
            .unwrap()
            .unwrap_or_else(|e| panic!("a request on a busy connection failed: {e}"));
        match &answers[0].outcome {
            Ok(Reply::Issued { voucher }) => assert!(vouchers.insert(*voucher)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(vouchers.len() as u64, requests);
    assert_eq!(daemon.head().0, before + requests);
    Arc::try_unwrap(client).ok().unwrap().close().await;
}

// ---------------------------------------------------------------------------
// Races between connections
// ---------------------------------------------------------------------------

/// Separate connections (each its own `Client`) racing each other.
const RACERS: usize = 16;
/// Times each race runs.
const ROUNDS: usize = 20;

fn seed() -> u64 {
    let seed = std::env::var("VOUCHERD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (set VOUCHERD_TEST_SEED={seed} to repeat)");
    seed
}

async fn racers(daemon: &Daemon) -> Vec<Arc<Client>> {
    let mut clients = Vec::with_capacity(RACERS);
    for _ in 0..RACERS {
        clients.push(Arc::new(daemon.client(Role::Gateway).await));
    }
    clients
}

/// Each racer sends its operation at the same moment; returns the answers by racer.
async fn race(clients: &[Arc<Client>], ops: Vec<Op>) -> Vec<Answer> {
    let start = Arc::new(Barrier::new(clients.len()));
    let mut tasks = Vec::new();
    for (client, op) in clients.iter().zip(ops) {
        let (client, start) = (Arc::clone(client), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            one(&client, op).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn close_all(clients: Vec<Arc<Client>>) {
    for client in clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_redemptions_of_one_voucher_accept_exactly_one() {
    let daemon = Daemon::start(today()).await;
    let bureau = daemon.client(Role::Bureau).await;
    let admin = id_number(1);
    ok(&bureau, register("5000001", "500101", &admin)).await;
    let clients = racers(&daemon).await;
    for n in 0..RACERS {
        ok(
            &clients[0],
            authorise("5000001", &admin, &format!("op-{n}")),
        )
        .await;
    }
    for op in kit_classes_of("5000001", "op-0", today().year) {
        ok(&clients[0], op).await;
    }
    for round in 0..ROUNDS {
        let person = id_number(1_000 + round as u64);
        let voucher = issued(&bureau, issue(&person, Kind::EmploymentSkills)).await;
        ok(
            &clients[round % RACERS],
            Op::Claim {
                voucher,
                id_number: person.clone(),
            },
        )
        .await;
        let ops = (0..RACERS)
            .map(|n| redeem(voucher, "5000001", &format!("op-{n}")))
            .collect();
        let answers = race(&clients, ops).await;
        let accepted = answers.iter().filter(|a| a.outcome.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {answers:?}");
        for answer in answers.iter().filter(|a| a.outcome.is_err()) {
            assert_eq!(reason_of(answer), "already_redeemed", "round {round}");
        }
        let seen = view(&bureau, voucher).await;
        assert_eq!(seen.state, VoucherState::Redeemed, "round {round}");
    }
    let Reply::Stats(stats) = ok(
        &bureau,
        Op::Stats {
            district: Some(district_code("500101")),
            year: None,
        },
    )
    .await
    else {
        panic!("stats")
    };
    assert_eq!(stats.districts[0].used, ROUNDS as u64);
    close_all(clients).await;
    bureau.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_redemptions_of_one_person_stop_at_the_use_limit() {
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let daemon = Daemon::start(today()).await;
    let uses_max = today().uses_per_person_max;
    assert_eq!(uses_max, 3);
    let bureau = daemon.client(Role::Bureau).await;
    let admin = id_number(1);
    ok(&bureau, register("5000001", "500101", &admin)).await;
    let clients = racers(&daemon).await;
    ok(&clients[0], authorise("5000001", &admin, "op-1")).await;
    for op in kit_classes_of("5000001", "op-1", today().year) {
        ok(&clients[0], op).await;
    }
    for round in 0..ROUNDS {
        // A person with one voucher of every kind claimed and one use made.
        let person = id_number(2_000 + round as u64);
        let issues: Vec<Request> = Kind::ALL
            .iter()
            .map(|&kind| request(issue(&person, kind)))
            .collect();
        let vouchers: Vec<VoucherId> = execute(&bureau, &issues)
            .await
            .iter()
            .map(|a| match a.outcome {
                Ok(Reply::Issued { voucher }) => voucher,
                ref other => panic!("{other:?}"),
            })
            .collect();
        let mut setup: Vec<Request> = vouchers
            .iter()
            .map(|&voucher| {
                request(Op::Claim {
                    voucher,
                    id_number: person.clone(),
                })
            })
            .collect();
        let class = kit_class(Kind::ALL[0]);
        setup.push(request(redeem_in(vouchers[0], "5000001", "op-1", &class)));
        for answer in execute(&clients[round % RACERS], &setup).await {
            assert!(answer.outcome.is_ok(), "{answer:?}");
        }
        // Two uses left; 16 connections race for the other ten vouchers.
        let candidates = &vouchers[1..];
        let picks: Vec<VoucherId> = (0..RACERS)
            .map(|n| {
                if n < candidates.len() {
                    candidates[n]
                } else {
                    candidates[rng.gen_range(0..candidates.len())]
                }
            })
            .collect();
        let ops = picks
            .iter()
            .map(|&voucher| {
                let kind = Kind::ALL[vouchers.iter().position(|&v| v == voucher).unwrap()];
                redeem_in(voucher, "5000001", "op-1", &kit_class(kind))
            })
            .collect();
        let answers = race(&clients, ops).await;
        let mut won = BTreeSet::new();
        for (answer, voucher) in answers.iter().zip(&picks) {
            match &answer.outcome {
                Ok(Reply::Redeemed { uses_this_year }) => {
                    assert!(
                        (2..=3).contains(uses_this_year),
                        "round {round}: {answer:?}"
                    );
                    assert!(
                        won.insert(*voucher),
                        "round {round}: {voucher} redeemed twice"
                    );
                }
                Ok(other) => panic!("{other:?}"),
                Err(refusal) => assert!(
                    matches!(
                        refusal.reason,
                        Reason::UseLimitReached | Reason::AlreadyRedeemed
                    ),
                    "round {round} (seed {seed}): {refusal:?}"
                ),
            }
        }
        assert_eq!(
            won.len(),
            usize::from(uses_max) - 1,
            "round {round} (seed {seed}): {answers:?}"
        );
        let mut redeemed = 0;
        for &voucher in &vouchers {
            if view(&bureau, voucher).await.state == VoucherState::Redeemed {
                redeemed += 1;
            }
        }
        assert_eq!(redeemed, uses_max, "round {round} (seed {seed})");
    }
    close_all(clients).await;
    bureau.close().await;
}

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

/// What a shutdown under load left: the vouchers whose issue was answered
/// accepted, and the number of vouchers the reopened ledger holds.
struct AfterShutdown {
    accepted: Vec<VoucherId>,
    in_ledger: usize,
}

/// Eight bureau connections issue vouchers in batches of three, without
/// pause, until their connection fails; the shutdown fires in the middle.
/// Every request gets an answer or a connection error (never a hang). Then
/// the data folder is reopened and every accepted voucher is looked up.
async fn shut_down_under_load() -> AfterShutdown {
    let mut daemon = Daemon::start(today()).await;
    let mut tasks = tokio::task::JoinSet::new();
    let clients = 8;
    let ready = Arc::new(Barrier::new(clients + 1));
    for c in 0..clients as u64 {
        let client = daemon.client(Role::Bureau).await;
        let ready = Arc::clone(&ready);
        tasks.spawn(async move {
            ready.wait().await;
            let mut accepted = Vec::new();
            let (mut shutting_down, mut batches) = (0, 0u64);
            let error = loop {
                let batch: Vec<Request> = (0..3)
                    .map(|i| {
                        let person = id_number(c * 10_000 + batches * 3 + i);
                        request(issue(&person, Kind::HrServices))
                    })
                    .collect();
                batches += 1;
                let result = tokio::time::timeout(REQUEST_TIMEOUT, client.execute(&batch))
                    .await
                    .expect("every request gets an answer or an error in time");
                match result {
                    Ok(answers) => {
                        for answer in answers {
                            match answer.outcome {
                                Ok(Reply::Issued { voucher }) => accepted.push(voucher),
                                Err(refusal) if refusal.reason == Reason::ShuttingDown => {
                                    shutting_down += 1
                                }
                                other => panic!("unexpected answer {other:?}"),
                            }
                        }
                    }
                    Err(ClientError::Connection(error)) => break error,
                    Err(ClientError::Refused(refusal)) => panic!("{refusal:?}"),
                }
            };
            (accepted, shutting_down, error)
        });
    }
    ready.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fired = Instant::now();
    daemon.shut_down().await;
    eprintln!("serve returned {:?} after the shutdown", fired.elapsed());
    let mut accepted = Vec::new();
    let mut shutting_down = 0;
    while let Some(result) = tasks.join_next().await {
        let (mine, refused, error) = result.unwrap();
        eprintln!(
            "client: {} accepted, {refused} shutting_down, then {error}",
            mine.len()
        );
        accepted.extend(mine);
        shutting_down += refused;
    }
    assert!(!accepted.is_empty(), "the load ran before the shutdown");

    let (dir, data) = daemon.close().await;
    let opened = tokio::task::spawn_blocking(move || reopen(&data))
        .await
        .unwrap();
    let (in_ledger, _, _) = opened.ledger.sizes();
    eprintln!(
        "{} answered accepted, {shutting_down} refused shutting_down, {in_ledger} vouchers in the reopened ledger",
        accepted.len()
    );
    for chunk in accepted.chunks(BATCH_OPS_MAX) {
        let requests: Vec<Request> = chunk
            .iter()
            .map(|&voucher| request(Op::GetVoucher { voucher }))
            .collect();
        let answers = opened.ledger.execute(Role::Auditor, &requests);
        for (answer, voucher) in answers.iter().zip(chunk) {
            match &answer.outcome {
                Ok(Reply::Voucher(view)) => {
                    assert_eq!(view.voucher, *voucher);
                    assert_eq!(view.state, VoucherState::Issued);
                }
                other => panic!("accepted {voucher} is lost after the restart: {other:?}"),
            }
        }
    }
    drop(opened);
    drop(dir);
    AfterShutdown {
        accepted,
        in_ledger,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_with_requests_in_flight_keeps_every_accepted_answer() {
    let after = shut_down_under_load().await;
    assert!(after.in_ledger >= after.accepted.len());
}

/// A request the daemon took in before the shutdown is finished, answer
/// included: no voucher exists whose issue was not answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]

async fn shutdown_delivers_the_answers_of_requests_in_flight() {
    let after = shut_down_under_load().await;
    assert_eq!(
        after.in_ledger,
        after.accepted.len(),
        "requests applied during the shutdown lost their answers"
    );
}

/// Request ids belong to the certificate: two gateway certificates (the
/// development `gateway.pem` and one added as `gateway-gw-2`) send a claim
/// under the same id, both are applied, each retry gets its own answer, and
/// the audit records name each certificate. How: the real server and client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_certificates_reuse_a_request_id_and_both_apply() {
    let daemon = Daemon::start(today()).await;
    let bureau = daemon.client(Role::Bureau).await;
    let (first_person, second_person) = (id_number(41), id_number(42));
    let first_voucher = issued(&bureau, issue(&first_person, Kind::HrServices)).await;
    let second_voucher = issued(&bureau, issue(&second_person, Kind::HrServices)).await;
    let paths = CertPaths {
        dir: daemon.certs.clone(),
    };
    tls::add_client(&daemon.certs, Role::Gateway, "gw-2").unwrap();
    let config = tls::client_config(
        &paths.ca_cert(),
        &paths.named_client_cert(Role::Gateway, "gw-2"),
        &paths.named_client_key(Role::Gateway, "gw-2"),
    )
    .unwrap();
    let second = Client::connect_with(daemon.addr, config).await.unwrap();
    let first = daemon.client(Role::Gateway).await;
    let claim = |voucher: VoucherId, person: &str| Request {
        id: "same-id".into(),
        op: Op::Claim {
            voucher,
            id_number: person.to_owned(),
        },
    };
    for _attempt in 0..2 {
        let a = execute(&first, &[claim(first_voucher, &first_person)]).await;
        let b = execute(&second, &[claim(second_voucher, &second_person)]).await;
        assert_eq!(a[0].outcome, Ok(Reply::Done {}), "{a:?}");
        assert_eq!(b[0].outcome, Ok(Reply::Done {}), "{b:?}");
    }
    // Four changes after the campaign's record: two issues, two claims.
    let (seq, _, _) = daemon.head();
    assert_eq!(seq, 1 + 4, "both claims applied once each");
    let fingerprints: Vec<String> = [
        paths.client_cert(Role::Gateway),
        paths.named_client_cert(Role::Gateway, "gw-2"),
    ]
    .iter()
    .map(|path| tls::fingerprint_of_file(path).unwrap())
    .collect();
    let opened = daemon.opened.as_ref().unwrap();
    for (seq, fingerprint) in [(4u64, &fingerprints[0]), (5, &fingerprints[1])] {
        let entry = voucherd::store::journal::Journal::get(
            opened.store.as_ref(),
            voucherd::store::journal::Table::Audit,
            &seq.to_be_bytes(),
        )
        .unwrap()
        .expect("record stored");
        let (record, _) = voucherd::audit::open(&entry).unwrap();
        assert_eq!(record.request_id, "same-id");
        assert_eq!(&hex::encode(record.caller.certificate), fingerprint);
    }
}

// ---------------------------------------------------------------------------
// The data return (数据回流)
// ---------------------------------------------------------------------------

/// One `events` request of the training system for institution `code`.
fn events_of(code: &str, after: u64, limit: Option<u32>, wait_ms: Option<u32>) -> Op {
    Op::Events {
        after,
        limit,
        institution: Some(code.parse().unwrap()),
        district: None,
        wait_ms,
    }
}

async fn events_page(client: &Client, op: Op) -> (Vec<Event>, u64) {
    match ok(client, op).await {
        Reply::Events { events, next } => (events, next),
        other => panic!("events answered {other:?}"),
    }
}

/// The training system's flow end to end, over the JSON encoding: two
/// institutions at work; the training system reads institution A's events
/// from cursor 0, again from a cursor in the middle (the same events after
/// it) and page by page; a long poll waits through a change at B and wakes
/// on a new redeem at A; a poll with nothing new ends at its `wait_ms` with
/// the cursor unchanged. No event carries an ID number or a keyed hash of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_training_system_reads_events_back_and_a_long_poll_wakes_on_a_redeem() {
    let daemon = Daemon::start(today()).await;
    let gateway = daemon.client(Role::Gateway).await;
    let bureau = daemon.client(Role::Bureau).await;
    let training =
        Client::connect_encoded(daemon.addr, &daemon.certs, Role::Training, Encoding::Json)
            .await
            .unwrap();
    let (a, b) = ("5000001", "5000002");
    let (admin_a, admin_b) = (id_number(11), id_number(12));
    ok(&bureau, register(a, "500101", &admin_a)).await;
    ok(&bureau, register(b, "500102", &admin_b)).await;
    ok(&gateway, authorise(a, &admin_a, "op-a")).await;
    ok(&gateway, authorise(b, &admin_b, "op-b")).await;
    for (code, op) in [(a, "op-a"), (b, "op-b")] {
        for open in kit_classes_of(code, op, today().year) {
            ok(&gateway, open).await;
        }
    }
    let persons: Vec<String> = (20..25).map(id_number).collect();
    let mut vouchers = Vec::new();
    for person in &persons {
        let voucher = issued(&bureau, issue(person, Kind::EmploymentSkills)).await;
        ok(
            &gateway,
            Op::Claim {
                voucher,
                id_number: person.clone(),
            },
        )
        .await;
        vouchers.push(voucher);
    }
    // Two trainees at each institution; A's check in and complete.
    for (index, &voucher) in vouchers[..4].iter().enumerate() {
        let (institution, operator) = if index % 2 == 0 {
            (a, "op-a")
        } else {
            (b, "op-b")
        };
        ok(&gateway, redeem(voucher, institution, operator)).await;
        if institution == a {
            let (lat, lon) = SITE;
            ok(&gateway, Op::Checkin { voucher, lat, lon }).await;
            let done = Op::Complete {
                voucher,
                institution: a.parse().unwrap(),
                operator: "op-a".parse().unwrap(),
            };
            ok(&gateway, done).await;
        }
    }

    let (all, next) = events_page(&training, events_of(a, 0, None, None)).await;
    let ops: Vec<&str> = all.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(
        ops,
        ["redeem", "checkin", "complete", "redeem", "checkin", "complete"]
    );
    let a_code: InstitutionCode = a.parse().unwrap();
    assert!(all.iter().all(|e| e.institution == Some(a_code)));
    assert!(all
        .iter()
        .all(|e| e.district == Some(district_code("500101"))));
    assert!(all
        .iter()
        .all(|e| e.class.as_deref() == Some(crate::common::KIT_CLASS)));
    assert_eq!(all[0].voucher, Some(vouchers[0]));
    assert_eq!(all[3].voucher, Some(vouchers[2]));
    assert_eq!(next, all.last().unwrap().seq);

    // From a cursor in the middle: the same events after it.
    let middle = all[2].seq;
    let (rest, again) = events_page(&training, events_of(a, middle, None, None)).await;
    assert_eq!(rest, all[3..]);
    assert_eq!(again, next);
    // Page by page: the same events.
    let mut paged = Vec::new();
    let mut cursor = 0;
    loop {
        let (page, next) = events_page(&training, events_of(a, cursor, Some(2), None)).await;
        if page.is_empty() {
            assert_eq!(next, cursor, "no event: the cursor stays");
            break;
        }
        assert!(page.len() <= 2);
        paged.extend(page);
        cursor = next;
    }
    assert_eq!(paged, all);

    // A poll with nothing new ends at its wait_ms, the cursor unchanged.
    let started = Instant::now();
    let (none, same) = events_page(&training, events_of(a, next, None, Some(300))).await;
    assert!(none.is_empty());
    assert_eq!(same, next);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A long poll waits through a change at B, and wakes on a redeem at A.
    let training = Arc::new(training);
    let poller = Arc::clone(&training);
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let answer = events_page(&poller, events_of(a, next, None, Some(20_000))).await;
        (answer, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "nothing new for A: the poll waits");
    ok(&gateway, redeem(vouchers[4], b, "op-b")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "a change at B does not wake A's poll");
    ok(&gateway, release(vouchers[4], b, "op-b")).await;
    ok(&gateway, redeem(vouchers[4], a, "op-a")).await;
    let ((woken, woken_next), waited) = tokio::time::timeout(REQUEST_TIMEOUT, poll)
        .await
        .expect("the poll answers")
        .unwrap();
    assert!(
        waited < Duration::from_secs(10),
        "woken, not timed out: {waited:?}"
    );
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0].op, "redeem");
    assert_eq!(woken[0].voucher, Some(vouchers[4]));
    assert_eq!(woken_next, woken[0].seq);

    // No event of the whole chain names an ID number, most of one, or a keyed hash of one.
    let (every, _) = events_page(
        &training,
        Op::Events {
            after: 0,
            limit: Some(1024),
            institution: None,
            district: None,
            wait_ms: None,
        },
    )
    .await;
    assert_eq!(every.iter().filter(|e| e.op == "issue").count(), 5);
    let text = serde_json::to_string(&every).unwrap();
    let secret: [u8; 32] = std::fs::read(daemon.data.join(data_dir::SECRET_FILE))
        .unwrap()
        .try_into()
        .unwrap();
    let secret = PersonSecret(secret);
    for person in persons.iter().chain([&admin_a, &admin_b]) {
        let key = hex::encode(IdNumber::parse(person).unwrap().key(&secret).0);
        assert!(
            !text.contains(person.as_str()),
            "an event holds an ID number"
        );
        assert!(
            !text.contains(&person[..14]),
            "an event holds most of an ID number"
        );
        assert!(!text.contains(&key), "an event holds a person key");
    }
    for client in [gateway, bureau] {
        client.close().await;
    }
    Arc::into_inner(training).unwrap().close().await;
    daemon.close().await;
}

fn release(voucher: VoucherId, institution: &str, operator: &str) -> Op {
    Op::Release {
        voucher,
        institution: institution.parse().unwrap(),
        operator: operator.parse().unwrap(),
    }
}

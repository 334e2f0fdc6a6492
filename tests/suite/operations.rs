//! What ops teams and auditors rely on: the Prometheus endpoint counts what
//! happened, logs carry no personal data, backups restore to the same state,
//! and the audit chain streams out over the network while the daemon serves.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::daemon::{
    class_days_now, free_port, sample, scrape, serve, voucherd_ok, Daemon, Voucherctl,
};
use crate::common::{authorise, id_number, register, Harness};
use serde_json::{json, Value};
use voucherd::domain::op::{Op, Reply, Request, Role};

const ADMIN_NAME: &str = "刘路";
const INSTITUTION: &str = "5001011";
const SITE: (f64, f64) = (29.5576, 106.5775);

fn register_line(admin: &str) -> Value {
    json!({"id": "reg-1", "op": "register_institution", "code": INSTITUTION,
        "name": "重庆市渝中区职业培训学校", "district": "500101", "address": "重庆市渝中区解放碑",
        "phone": "023-88126902", "type": "private_school", "admin_name": ADMIN_NAME,
        "admin_id_number": admin, "sites": [{"lat": SITE.0, "lon": SITE.1}]})
}

fn issue_line(id: &str, person: &str, district: &str) -> Value {
    json!({"id": id, "op": "issue", "id_number": person, "category": "rural_migrant",
        "kind": "employment_skills", "face_value_fen": 80000, "channel": "wechat",
        "district": district})
}

/// What `enrol` did, for the checks.
pub(crate) struct Enrolled {
    pub persons: Vec<String>,
    /// Audit records: the campaign's (sealed when the daemon starts), then
    /// one per accepted change.
    pub changes: u64,
}

/// Registers an institution, opens a class, issues two vouchers (and one to
/// an unknown district), claims and redeems one, and tries a claim by the
/// wrong person.
pub(crate) fn enrol(daemon: &Daemon, certs: &Path) -> Enrolled {
    let admin = id_number(1);
    let persons = vec![id_number(10), id_number(11)];
    let bureau = daemon.batch(
        certs,
        "bureau",
        &[
            register_line(&admin),
            issue_line("iss-1", &persons[0], "500101"),
            issue_line("iss-2", &persons[1], "500101"),
            issue_line("iss-3", &persons[1], "999999"),
        ],
    );
    assert_eq!(bureau[1]["ok"], true, "{bureau:?}");
    assert_eq!(bureau[3]["reason"], "unknown_district", "{bureau:?}");
    let voucher = bureau[1]["voucher"].as_str().unwrap().to_owned();
    let (first_day, last_day) = class_days_now();
    let gateway = daemon.batch(
        certs,
        "gateway",
        &[
            json!({"id": "auth-1", "op": "authorise_operator", "institution": INSTITUTION,
                "admin_id_number": admin, "operator": "op-1"}),
            json!({"id": "class-0", "op": "open_class", "institution": INSTITUTION,
                "operator": "op-1", "class": "电工初级", "kind": "employment_skills",
                "first_day": first_day, "last_day": last_day, "mode": "onsite"}),
            json!({"id": "claim-1", "op": "claim", "voucher": voucher, "id_number": persons[0]}),
            json!({"id": "claim-2", "op": "claim", "voucher": voucher, "id_number": persons[1]}),
            json!({"id": "redeem-1", "op": "redeem", "voucher": voucher,
                "institution": INSTITUTION, "operator": "op-1", "class": "电工初级"}),
        ],
    );
    let reasons: Vec<&Value> = gateway.iter().map(|a| &a["reason"]).collect();
    assert_eq!(gateway[1]["ok"], true, "{gateway:?}");
    assert_eq!(gateway[2]["ok"], true, "{gateway:?}");
    assert_eq!(gateway[3]["reason"], "not_holder", "{reasons:?}");
    assert_eq!(gateway[4]["ok"], true, "{gateway:?}");
    let mut all = persons.clone();
    all.push(admin);
    Enrolled {
        persons: all,
        changes: 1 + 7,
    }
}

/// Polls the metrics endpoint until `check` passes or 15 s went by.
pub(crate) fn scrape_until(port: u16, check: impl Fn(&str) -> Result<(), String>) -> String {
    let started = Instant::now();
    loop {
        let body = scrape(port);
        match check(&body) {
            Ok(()) => return body,
            Err(why) if started.elapsed() > Duration::from_secs(15) => {
                panic!("{why}; scrape:\n{body}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn district_labels() -> [(&'static str, &'static str); 2] {
    [("district", "500101"), ("name", "万州区")]
}

#[test]
fn a_scrape_after_known_operations_shows_their_counts_and_the_bureau_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("log"),
        &["--metrics", &listen],
        &[],
    );
    enrol(&daemon, &certs);
    let ops = "voucherd_operations_total";
    let body = scrape_until(port, |body| {
        let want = |labels: &[(&str, &str)], value: f64| match sample(body, ops, labels) {
            Some(found) if found == value => Ok(()),
            other => Err(format!("{ops}{labels:?} is {other:?}, not {value}")),
        };
        want(&[("op", "issue"), ("outcome", "ok")], 2.0)?;
        want(&[("op", "issue"), ("outcome", "unknown_district")], 1.0)?;
        want(&[("op", "claim"), ("outcome", "ok")], 1.0)?;
        want(&[("op", "claim"), ("outcome", "not_holder")], 1.0)?;
        want(&[("op", "redeem"), ("outcome", "ok")], 1.0)?;
        // The campaign's record and seven changes (a class among them).
        match sample(body, "voucherd_audit_sequence", &[]) {
            Some(8.0) => {}
            other => return Err(format!("audit sequence {other:?}")),
        }
        // The sampler sets the audit sequence before the bureau's figures:
        // wait for the pass that set both.
        match sample(
            body,
            "voucherd_district_issued_vouchers",
            &district_labels(),
        ) {
            Some(2.0) => Ok(()),
            other => Err(format!("district issued {other:?}")),
        }
    });
    let district = district_labels();
    assert_eq!(
        sample(&body, "voucherd_district_issued_vouchers", &district),
        Some(2.0)
    );
    assert_eq!(
        sample(&body, "voucherd_district_claimed_vouchers", &district),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "voucherd_district_used_vouchers", &district),
        Some(1.0)
    );
    assert!(sample(&body, "voucherd_district_target_vouchers", &district).unwrap() > 0.0);
    assert_eq!(
        sample(&body, "voucherd_coverage_institutions_used", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&body, "voucherd_commit_queue_depth", &[]), Some(0.0));
    // Two connections ended (one per voucherctl run); none is open now.
    assert_eq!(sample(&body, "voucherd_connections", &[]), Some(0.0));
    for histogram in [
        "voucherd_operation_duration_seconds_count",
        "voucherd_fsync_duration_seconds_count",
        "voucherd_commit_group_commits_count",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(histogram)),
            "{histogram} missing:\n{body}"
        );
    }
    // Every frame answered went through both stages, every synced group
    // that released answers has its commit wait (counted before the
    // answers), and the latency buckets resolve the milliseconds under a
    // 5 ms target.
    let apply = sample(
        &body,
        "voucherd_frame_stage_seconds_count",
        &[("stage", "apply")],
    );
    let durable = sample(
        &body,
        "voucherd_frame_stage_seconds_count",
        &[("stage", "durable")],
    );
    assert!(apply.unwrap_or(0.0) >= 2.0, "{body}");
    assert_eq!(apply, durable, "{body}");
    let groups = sample(&body, "voucherd_commit_wait_seconds_count", &[]).unwrap_or(0.0);
    assert!(groups >= 1.0, "{body}");
    assert_eq!(
        sample(&body, "voucherd_commit_group_commits_count", &[]),
        Some(groups),
        "{body}"
    );
    let within = |le: &str| sample(&body, "voucherd_commit_wait_seconds_bucket", &[("le", le)]);
    assert!(
        within("0.0015").is_some() && within("0.003").is_some(),
        "{body}"
    );
    assert!(
        body.contains("# TYPE voucherd_operations_total counter"),
        "{body}"
    );
    daemon.stop().expect("voucherd stops cleanly");
}

#[test]
fn logs_never_carry_id_numbers_or_names_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let log = dir.path().join("log");
    let daemon = serve(
        &data,
        &certs,
        &log,
        &["--log-json"],
        &[("RUST_LOG", "trace")],
    );
    let enrolled = enrol(&daemon, &certs);
    // A refused frame and a bad line are logged too; they must not leak either.
    let bad = daemon.batch(
        &certs,
        "bureau",
        &[issue_line("bad", &enrolled.persons[0], "x")],
    );
    assert_eq!(bad[0]["reason"], "unknown_district");
    daemon.stop().expect("voucherd stops cleanly");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 10,
        "trace logging wrote little:\n{text}"
    );
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(
        text.contains("\"connection\""),
        "no connection span in the log:\n{text}"
    );
    for person in &enrolled.persons {
        assert!(
            !text.contains(person.as_str()),
            "ID number {person} in the log"
        );
        assert!(
            !text.contains(&person[..14]),
            "part of ID number {person} in the log"
        );
    }
    assert!(!text.contains(ADMIN_NAME), "an admin's name in the log");
}

/// The state digest `voucherd replay` computes from a binary export file.
fn replayed_digest(export: &Path) -> String {
    let out = voucherd_ok(&["replay", "--log", export.to_str().unwrap()]);
    out.lines()
        .find_map(|l| l.strip_prefix("state_digest "))
        .unwrap_or_else(|| panic!("no digest: {out}"))
        .to_owned()
}

fn audit_head(daemon: &Daemon, certs: &Path) -> Value {
    let answers = daemon.batch(certs, "auditor", &[json!({"id": "h", "op": "audit_head"})]);
    answers[0].clone()
}

#[test]
fn the_audit_chain_streams_out_while_the_daemon_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    let enrolled = enrol(&daemon, &certs);
    let head = audit_head(&daemon, &certs);
    assert_eq!(head["seq"], enrolled.changes);

    let jsonl = dir.path().join("audit.jsonl");
    let output = daemon.ctl(
        &certs,
        &["audit", "export", "--out", jsonl.to_str().unwrap()],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        crate::common::daemon::describe("export", &output)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, enrolled.changes);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], n as u64 + 1);
        if n > 0 {
            assert_eq!(line["prev_hash"], lines[n - 1]["hash"], "chain link at {n}");
        }
    }
    assert_eq!(lines.last().unwrap()["hash"], head["hash"]);
    assert_eq!(lines[0]["command"]["op"], "record_campaign");
    assert!(lines[0]["command"]["text"]
        .as_str()
        .unwrap()
        .contains("uses_per_person_max"));
    assert_eq!(lines[2]["command"]["op"], "issue");
    assert_eq!(lines[2]["role"], "bureau");
    assert_eq!(lines[2]["version"], 3);
    let bureau = voucherd::net::tls::fingerprint_of_file(&certs.join("bureau.pem")).unwrap();
    assert_eq!(
        lines[2]["certificate"], bureau,
        "the record names the caller's certificate"
    );
    let text = std::fs::read_to_string(&jsonl).unwrap();
    for person in &enrolled.persons {
        assert!(
            !text.contains(person.as_str()),
            "an ID number in the export"
        );
    }

    let from = dir.path().join("from3.jsonl");
    let output = daemon.ctl(
        &certs,
        &[
            "audit",
            "export",
            "--from",
            "3",
            "--out",
            from.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success());
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&from)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["seq"], 3);

    let binary = dir.path().join("audit.bin");
    let output = daemon.ctl(
        &certs,
        &[
            "audit",
            "export",
            "--format",
            "binary",
            "--out",
            binary.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success());
    assert_eq!(
        replayed_digest(&binary),
        head["state_digest"].as_str().unwrap()
    );

    let output = daemon.ctl(
        &certs,
        &["--as", "gateway", "audit", "export", "--out", "/dev/null"],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(crate::common::daemon::text(&output.stderr).contains("forbidden_role"));
    daemon.stop().expect("voucherd stops cleanly");
}

#[test]
fn audit_read_pages_are_bounded_and_checked() {
    let h = Harness::new();
    h.ok(Role::Bureau, register("5001011", "500101", &id_number(1)));
    h.ok(Role::Gateway, authorise("5001011", &id_number(1), "op-1"));
    for n in 0..5 {
        h.issue(
            &id_number(100 + n),
            voucherd::domain::enums::Kind::EmploymentSkills,
        );
    }
    let page =
        |from: u64, limit: Option<u32>| match h.ok(Role::Auditor, Op::AuditRead { from, limit }) {
            Reply::AuditRecords(page) => page,
            other => panic!("{other:?}"),
        };
    let all = page(1, None);
    assert_eq!(all.head_seq, 7, "register, authorise, 5 issues");
    assert_eq!(all.entries.len(), 7);
    // A harness ledger records no campaign texts (data::open does); the export test covers them.
    assert_eq!(page(3, Some(2)).entries, all.entries[2..4].to_vec());
    assert_eq!(page(8, None).entries.len(), 0);
    assert_eq!(
        page(1, Some(u32::MAX)).entries.len(),
        7,
        "capped, not refused"
    );
    assert_eq!(
        h.reason(
            Role::Auditor,
            Op::AuditRead {
                from: 0,
                limit: None
            }
        ),
        "invalid_request"
    );
    assert_eq!(
        h.reason(
            Role::Auditor,
            Op::AuditRead {
                from: 1,
                limit: Some(0)
            }
        ),
        "invalid_request"
    );
    assert_eq!(
        h.reason(
            Role::Gateway,
            Op::AuditRead {
                from: 1,
                limit: None
            }
        ),
        "forbidden_role"
    );
    let read = |id: &str| Request {
        id: id.into(),
        op: Op::AuditRead {
            from: 1,
            limit: None,
        },
    };
    let answers = h.ledger.execute(Role::Bureau, &[read("a"), read("b")]);
    assert!(answers[0].outcome.is_ok());
    let refusal = answers[1].outcome.as_ref().unwrap_err();
    assert_eq!(refusal.reason.as_str(), "invalid_request", "{refusal:?}");

    // Past the cap: a page holds AUDIT_PAGE_RECORDS_MAX entries, however many are asked for.
    let cap = voucherd::limits::AUDIT_PAGE_RECORDS_MAX as u64;
    for n in 0..cap {
        h.issue(
            &id_number(1_000 + n),
            voucherd::domain::enums::Kind::EmploymentSkills,
        );
    }
    let capped = page(2, Some(u32::MAX));
    assert_eq!(capped.head_seq, 7 + cap);
    assert_eq!(capped.entries.len() as u64, cap);
    assert_eq!(capped.entries[0], all.entries[1]);
    assert_eq!(
        page(2, None).entries,
        capped.entries,
        "the default is the cap"
    );
}

#[test]
fn a_backup_taken_while_serving_restores_to_a_verified_prefix_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    enrol(&daemon, &certs);
    // A class and a voucher enrolled in it: rows of the tables `classes` and
    // `enrollments`, which the backup, the restore's start-up checks and the
    // replay below must all carry (the digests compared cover them).
    let today = {
        use voucherd::domain::time::{day_text, Clock, SystemClock, ANSWER_UTC_OFFSET_S};
        let day = SystemClock.now().local_day(ANSWER_UTC_OFFSET_S);
        (day_text(day), day_text(day + 10))
    };
    let trainee = id_number(20);
    let issued = daemon.batch(
        &certs,
        "bureau",
        &[issue_line("iss-class", &trainee, "500101")],
    );
    let voucher = issued[0]["voucher"].as_str().expect("issued").to_owned();
    let enrolled = daemon.batch(
        &certs,
        "gateway",
        &[
            json!({"id": "class-1", "op": "open_class", "institution": INSTITUTION,
                "operator": "op-1", "class": "线上电工", "kind": "employment_skills",
                "first_day": today.0, "last_day": today.1, "mode": "online"}),
            json!({"id": "claim-c", "op": "claim", "voucher": voucher, "id_number": trainee}),
            json!({"id": "redeem-c", "op": "redeem", "voucher": voucher,
                "institution": INSTITUTION, "operator": "op-1", "class": "线上电工"}),
        ],
    );
    assert!(enrolled.iter().all(|a| a["ok"] == true), "{enrolled:?}");
    // Issues keep arriving while the backup is taken.
    let backup = dir.path().join("backup");
    let (data_arg, backup_arg) = (data.to_str().unwrap(), backup.to_str().unwrap());
    let manifest = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            for round in 0..6 {
                let lines: Vec<Value> = (0..50)
                    .map(|n| {
                        let person = id_number(1000 + round * 50 + n);
                        issue_line(&format!("load-{round}-{n}"), &person, "500103")
                    })
                    .collect();
                let answers = daemon.batch(&certs, "bureau", &lines);
                assert!(answers.iter().all(|a| a["ok"] == true));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let out = voucherd_ok(&["backup", "--data", data_arg, "--out", backup_arg]);
        load.join().unwrap();
        out
    });
    let seq: u64 = manifest
        .split("audit record ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{manifest}"));
    assert!(seq >= 6, "{manifest}");

    // A backup never goes into a folder that holds something.
    let again = std::process::Command::new(crate::common::daemon::VOUCHERD)
        .args(["backup", "--data", data_arg, "--out", backup_arg])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(crate::common::daemon::text(&again.stderr).contains("not empty"));

    // The person key stays out of the backup; the restore takes the kept one.
    assert!(!backup.join("person.key").exists());
    let restored = dir.path().join("restored");
    let out = voucherd_ok(&[
        "restore",
        "--backup",
        backup_arg,
        "--data",
        restored.to_str().unwrap(),
        "--key",
        data.join("person.key").to_str().unwrap(),
    ]);
    let digest = out
        .rsplit("state_digest ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(out.contains(&format!("audit record {seq} ")), "{out}");

    // The restored chain verifies and replays to the restored digest...
    voucherd_ok(&["audit", "verify", "--data", restored.to_str().unwrap()]);
    let export = dir.path().join("restored.bin");
    voucherd_ok(&[
        "audit",
        "export",
        "--data",
        restored.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    assert_eq!(replayed_digest(&export), digest);
    // ...and is the live chain up to the backup's record.
    let live = dir.path().join("live.jsonl");
    let output = daemon.ctl(
        &certs,
        &["audit", "export", "--out", live.to_str().unwrap()],
        None,
    );
    assert!(output.status.success());
    let live_line: Value = serde_json::from_str(
        std::fs::read_to_string(&live)
            .unwrap()
            .lines()
            .nth(seq as usize - 1)
            .unwrap(),
    )
    .unwrap();
    assert!(
        out.contains(live_line["hash"].as_str().unwrap()),
        "{out}\n{live_line}"
    );
    daemon.stop().expect("voucherd stops cleanly");

    // The restored folder serves, with the same head.
    let restored_daemon = serve(&restored, &certs, &dir.path().join("log2"), &[], &[]);
    let head = audit_head(&restored_daemon, &certs);
    assert_eq!(head["seq"], seq);
    assert_eq!(head["state_digest"], digest.as_str());
    restored_daemon.stop().expect("voucherd stops cleanly");

    // With no daemon running, the backup is taken from the folder directly.
    let offline = dir.path().join("offline");
    voucherd_ok(&[
        "backup",
        "--data",
        data_arg,
        "--out",
        offline.to_str().unwrap(),
        "--include-key",
    ]);
    let checked = voucherd_ok(&[
        "restore",
        "--backup",
        offline.to_str().unwrap(),
        "--data",
        dir.path().join("r2").to_str().unwrap(),
    ]);
    // The campaign's record, sealed at the first start, then 311 changes
    // (`enrol`'s 7, the class's 4, 300 issues).
    assert!(checked.contains("audit record 312 "), "{checked}");
}

/// The dashboard and the alert rules only use metrics the daemon exports,
/// and the example config is a config the daemon accepts.
#[test]
fn ops_files_match_the_daemon() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops");
    for file in [
        "grafana/voucherd-dashboard.json",
        "prometheus/voucherd-alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut used = 0;
        for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if token.starts_with("process_") {
                assert!(
                    voucherd::metric_names::PROCESS.contains(&token),
                    "{file} uses {token}, which voucherd does not export"
                );
                continue;
            }
            if !token.starts_with("voucherd_") {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token);
            assert!(
                voucherd::metric_names::ALL.contains(&base),
                "{file} uses {token}, which voucherd does not export"
            );
            used += 1;
        }
        assert!(used > 5, "{file} uses few voucherd metrics");
    }
    serde_json::from_str::<Value>(
        &std::fs::read_to_string(root.join("grafana/voucherd-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let config =
        voucherd::admin::daemon::DaemonConfig::from_file(&root.join("voucherd.example.toml"))
            .unwrap();
    assert_eq!(config.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(config.data, Path::new("/var/lib/voucherd"));
    assert_eq!(config.request_retention_s().unwrap(), 24 * 3600);
    let never = voucherd::admin::daemon::DaemonConfig {
        request_retention_hours: 0,
        ..config
    };
    assert!(
        never.request_retention_s().is_err(),
        "a retention of 0 hours is refused"
    );
    // Seconds, for development and load runs, override the hours.
    let short = voucherd::admin::daemon::DaemonConfig {
        request_retention_seconds: Some(30),
        ..never.clone()
    };
    assert_eq!(short.request_retention_s().unwrap(), 30);
    let zero = voucherd::admin::daemon::DaemonConfig {
        request_retention_seconds: Some(0),
        ..short
    };
    assert!(
        zero.request_retention_s().is_err(),
        "a retention of 0 seconds is refused"
    );
    let text = "request_retention_seconds = 5\n";
    let parsed: voucherd::admin::daemon::DaemonConfig = toml::from_str(text).unwrap();
    assert_eq!(parsed.request_retention_s().unwrap(), 5);
}

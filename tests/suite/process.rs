//! The real binaries: `voucherd serve` as a child process, `voucherctl` as
//! the client. A SIGKILLed daemon keeps every acknowledged operation; a
//! SIGTERMed one exits 0; `voucherctl batch` answers line by line with the
//! documented exit codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{ctl as ctl_with, serve, text, VOUCHERD};
use crate::common::id_number;
use serde_json::{json, Value};

fn describe(args: &[&str], output: &Output) -> String {
    crate::common::daemon::describe(&format!("voucherctl {args:?}"), output)
}

/// Runs voucherctl and expects exit code 0; returns stdout.
fn ctl_ok(addr: &str, certs: &Path, args: &[&str]) -> String {
    let output = ctl_with(addr, certs, args, None);
    assert_eq!(output.status.code(), Some(0), "{}", describe(args, &output));
    text(&output.stdout)
}

/// Runs voucherctl with `--json` and expects one accepted answer.
fn ctl_json(addr: &str, certs: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let stdout = ctl_ok(addr, certs, &all);
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("voucherctl {all:?} printed no JSON ({e}): {stdout}");
    });
    assert_eq!(answer["ok"], true, "{answer}");
    answer
}

/// The JSON answers of `voucherctl batch`, one per line.
fn answers(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

const SITE: &str = "29.5576,106.5775";

fn register_args<'a>(code: &'a str, admin: &'a str) -> Vec<&'a str> {
    vec![
        "institution",
        "register",
        "--code",
        code,
        "--name",
        "重庆市渝中区职业培训学校",
        "--district",
        "500101",
        "--address",
        "重庆市渝中区解放碑",
        "--phone",
        "023-88126902",
        "--type",
        "private_school",
        "--admin-name",
        "刘路",
        "--admin-id-number",
        admin,
        "--site",
        SITE,
    ]
}

fn issue_args<'a>(person: &'a str, kind: &'a str) -> Vec<&'a str> {
    vec![
        "issue",
        "--id-number",
        person,
        "--category",
        "rural_migrant",
        "--kind",
        kind,
        "--face-value-fen",
        "80000",
        "--district",
        "500101",
    ]
}

/// `voucherctl class open`: an onsite class of 5000001 by op-1 over the
/// campaign the daemon runs now (every redeem names an opened class, D51).
fn open_class_ctl(addr: &str, certs: &Path, class: &str, kind: &str) {
    let (first, last) = crate::common::daemon::class_days_now();
    ctl_ok(
        addr,
        certs,
        &class_open_args(class, kind, (&first, &last), "onsite"),
    );
}

/// `voucherctl class open` of 5000001 by op-1.
fn class_open_args<'a>(
    class: &'a str,
    kind: &'a str,
    (first, last): (&'a str, &'a str),
    mode: &'a str,
) -> [&'a str; 16] {
    [
        "class",
        "open",
        "--institution",
        "5000001",
        "--operator",
        "op-1",
        "--class",
        class,
        "--kind",
        kind,
        "--first-day",
        first,
        "--last-day",
        last,
        "--mode",
        mode,
    ]
}

fn issue_voucher(addr: &str, certs: &Path, person: &str, kind: &str) -> String {
    let answer = ctl_json(addr, certs, &issue_args(person, kind));
    answer["voucher"].as_str().expect("a voucher id").to_owned()
}

#[test]
fn acknowledged_operations_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let mut daemon = serve(&data, &certs, &dir.path().join("first.log"), &[], &[]);
    assert!(
        certs.join("ca.pem").exists(),
        "serve created development certificates"
    );
    let addr = daemon.addr.to_string();
    let admin = id_number(1);
    let (holder, other) = (id_number(10), id_number(11));

    // Human subcommands.
    assert_eq!(
        ctl_ok(&addr, &certs, &register_args("5000001", &admin)).trim(),
        "ok"
    );
    ctl_ok(
        &addr,
        &certs,
        &[
            "operator",
            "authorise",
            "--institution",
            "5000001",
            "--admin-id-number",
            &admin,
            "--operator",
            "op-1",
        ],
    );
    open_class_ctl(&addr, &certs, "电工初级", "employment_skills");
    open_class_ctl(&addr, &certs, "育婴员", "entrepreneurship");
    let human = ctl_ok(&addr, &certs, &issue_args(&holder, "employment_skills"));
    let v1 = human
        .trim()
        .strip_prefix("issued voucher ")
        .unwrap_or_else(|| panic!("issue printed {human:?}"))
        .to_owned();
    let v2 = issue_voucher(&addr, &certs, &holder, "entrepreneurship");
    let v3 = issue_voucher(&addr, &certs, &holder, "hr_services");
    let v4 = issue_voucher(&addr, &certs, &other, "hr_services");
    ctl_ok(
        &addr,
        &certs,
        &["claim", "--voucher", &v1, "--id-number", &holder],
    );
    let redeemed = ctl_ok(
        &addr,
        &certs,
        &[
            "redeem",
            "--voucher",
            &v1,
            "--institution",
            "5000001",
            "--operator",
            "op-1",
            "--class",
            "电工初级",
        ],
    );
    assert!(redeemed.contains("uses this year: 1"), "{redeemed}");
    let checkin = ctl_json(
        &addr,
        &certs,
        &[
            "checkin",
            "--voucher",
            &v1,
            "--lat",
            "29.5576",
            "--lon",
            "106.5775",
        ],
    );
    assert_eq!(checkin["checkins"], 1);
    ctl_ok(
        &addr,
        &certs,
        &[
            "complete",
            "--voucher",
            &v1,
            "--institution",
            "5000001",
            "--operator",
            "op-1",
        ],
    );
    ctl_ok(
        &addr,
        &certs,
        &[
            "evaluate",
            "--voucher",
            &v1,
            "--id-number",
            &holder,
            "--score",
            "4",
            "--comment",
            "实用",
        ],
    );
    ctl_ok(
        &addr,
        &certs,
        &[
            "--as",
            "district:500101",
            "settle",
            "--voucher",
            &v1,
            "--amount-fen",
            "70000",
        ],
    );
    // A refused operation exits 3 and changes nothing.
    let refused = ctl_with(
        &addr,
        &certs,
        &["claim", "--voucher", &v4, "--id-number", &holder],
        None,
    );
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        describe(&[], &refused)
    );
    assert!(text(&refused.stdout).contains("not_holder"));

    // A batch (gateway by default).
    let batch = [
        json!({"id": "batch-1", "op": "claim", "voucher": v2, "id_number": holder}),
        json!({"id": "batch-2", "op": "redeem", "voucher": v2, "institution": "5000001", "operator": "op-1", "class": "育婴员"}),
        json!({"id": "batch-3", "op": "claim", "voucher": v3, "id_number": holder}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let output = ctl_with(&addr, &certs, &["batch"], Some(&batch));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        describe(&["batch"], &output)
    );
    let batch_answers = answers(&output);
    assert_eq!(batch_answers.len(), 3);
    assert!(
        batch_answers.iter().all(|a| a["ok"] == true),
        "{batch_answers:?}"
    );
    // An acknowledged request id, to retry after the restart.
    let retried_args = [
        "--json",
        "--request-id",
        "retry-me",
        "--as",
        "bureau",
        "issue",
        "--id-number",
        &other,
        "--category",
        "unemployed",
        "--kind",
        "adaptability",
        "--face-value-fen",
        "50000",
        "--district",
        "500101",
    ];
    let first_answer = ctl_ok(&addr, &certs, &retried_args);
    let v5 = serde_json::from_str::<Value>(&first_answer).unwrap()["voucher"]
        .as_str()
        .unwrap()
        .to_owned();
    let head_before = ctl_json(&addr, &certs, &["audit", "head"]);
    let stats_before = ctl_json(&addr, &certs, &["stats", "--district", "500101"]);

    daemon.kill().unwrap();

    let daemon = serve(&data, &certs, &dir.path().join("second.log"), &[], &[]);
    let addr = daemon.addr.to_string();
    let show = |voucher: &str| ctl_json(&addr, &certs, &["voucher", "show", voucher]);
    let settled = show(&v1);
    assert_eq!(settled["state"], "settled", "{settled}");
    assert_eq!(settled["kind"], "employment_skills");
    assert_eq!(settled["institution"], "5000001");
    assert_eq!(settled["checkins"], 1);
    assert_eq!(settled["score"], 4);
    assert_eq!(settled["settled_fen"], 70_000);
    assert_eq!(settled["face_value_fen"], 80_000);
    assert!(settled["class"].is_string(), "{settled}");
    for step in [
        "issued_at",
        "claimed_at",
        "redeemed_at",
        "completed_at",
        "settled_at",
    ] {
        let at = settled[step]
            .as_str()
            .unwrap_or_else(|| panic!("{step}: {settled}"));
        assert!(at.ends_with("+08:00"), "{step}: {at}");
    }
    assert!(
        show(&v4).get("claimed_at").is_none(),
        "an issued voucher has no claim time"
    );
    assert_eq!(show(&v2)["state"], "redeemed");
    assert_eq!(show(&v3)["state"], "claimed");
    assert_eq!(show(&v4)["state"], "issued");
    assert_eq!(show(&v5)["face_value_fen"], 50_000);
    let human = ctl_ok(&addr, &certs, &["voucher", "show", &v1]);
    assert!(human.contains("settled"), "{human}");
    assert!(
        human.contains("settled at") && human.contains("class"),
        "{human}"
    );
    // list_vouchers: the holder's three vouchers in id order (v4 is another's), after the restart.
    let listed = ctl_json(&addr, &certs, &["voucher", "list", "--id-number", &holder]);
    let ids: Vec<&str> = listed["vouchers"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|v| v["voucher"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&v1, &v2, &v3], "{listed}");
    assert_eq!(listed["vouchers"][0]["state"], "settled");
    assert_eq!(listed["vouchers"][0]["face_value_fen"], 80_000);
    let human = ctl_ok(&addr, &certs, &["voucher", "list", "--id-number", &holder]);
    assert!(human.contains(&v2) && human.contains("redeemed"), "{human}");

    let head_after = ctl_json(&addr, &certs, &["audit", "head"]);
    assert_eq!(head_after["seq"], head_before["seq"]);
    assert_eq!(head_after["hash"], head_before["hash"]);
    assert_eq!(head_after["state_digest"], head_before["state_digest"]);
    let stats_after = ctl_json(&addr, &certs, &["stats", "--district", "500101"]);
    assert_eq!(stats_after["districts"], stats_before["districts"]);
    assert_eq!(stats_after["coverage"], stats_before["coverage"]);
    let row = &stats_after["districts"][0];
    assert_eq!(row["code"], "500101");
    assert_eq!(
        (&row["issued"], &row["claimed"], &row["used"]),
        (&json!(5), &json!(3), &json!(2)),
        "{row}"
    );
    assert_eq!(row["settled_fen"], 70_000, "{row}");
    assert_eq!(stats_after["coverage"]["institutions_registered"], 1);
    assert_eq!(stats_after["coverage"]["used_with_checkin"], 1);

    // The retried request id answers as before and applies nothing.
    let again = ctl_ok(&addr, &certs, &retried_args);
    let first: Value = serde_json::from_str(&first_answer).unwrap();
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again, first);
    assert_eq!(
        ctl_json(&addr, &certs, &["audit", "head"])["seq"],
        head_before["seq"]
    );
    drop(daemon);
}

#[test]
fn voucherctl_batch_answers_every_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("daemon.log"), &[], &[]);
    let addr = daemon.addr.to_string();
    let person = id_number(20);
    let long_id = "x".repeat(65);
    let issue = |id: &str, person: &str| {
        json!({"id": id, "op": "issue", "id_number": person, "category": "college_graduate",
               "kind": "entrepreneurship", "face_value_fen": 120000, "channel": "yukuaiban",
               "district": "500101"})
        .to_string()
    };
    let lines = [
        issue("b-1", &person),
        issue("b-2", "500101199001011234"),
        "{not json".to_string(),
        json!({"id": long_id, "op": "audit_head"}).to_string(),
        json!({"id": "b-5", "op": "get_voucher", "voucher": "V9999999999"}).to_string(),
        json!({"id": "b-6", "op": "audit_head"}).to_string(),
        json!({"id": "b-7", "op": "claim", "voucher": "V0000000001", "id_number": person})
            .to_string(),
        json!({"id": "b-8", "op": "issue", "id_number": person}).to_string(),
    ];
    let input = lines.join("\n") + "\n";
    let seq_before = ctl_json(&addr, &certs, &["audit", "head"])["seq"]
        .as_u64()
        .unwrap();
    let args = ["--as", "bureau", "batch"];
    let output = ctl_with(&addr, &certs, &args, Some(&input));
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        describe(&args, &output)
    );
    let got = answers(&output);
    assert_eq!(got.len(), lines.len(), "{}", describe(&args, &output));
    let expected: [(&str, Option<&str>); 8] = [
        ("b-1", None),
        ("b-2", Some("invalid_id_number")),
        ("line:3", Some("invalid_request")),
        (&long_id, Some("invalid_request")),
        ("b-5", Some("unknown_voucher")),
        ("b-6", None),
        ("b-7", Some("forbidden_role")),
        ("b-8", Some("invalid_request")),
    ];
    for (n, (answer, (id, reason))) in got.iter().zip(expected).enumerate() {
        assert_eq!(answer["id"], id, "line {}: {answer}", n + 1);
        match reason {
            None => assert_eq!(answer["ok"], true, "line {}: {answer}", n + 1),
            Some(reason) => {
                assert_eq!(answer["ok"], false, "line {}: {answer}", n + 1);
                assert_eq!(answer["reason"], reason, "line {}: {answer}", n + 1);
                assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
        }
    }
    let voucher = got[0]["voucher"].as_str().unwrap().to_owned();
    assert_eq!(got[5]["seq"], seq_before + 1, "only b-1 changed the ledger");

    // Every line accepted: exit 0; from a file this time, as the gateway.
    let file = dir.path().join("claims.jsonl");
    std::fs::write(
        &file,
        [
            json!({"id": "c-1", "op": "claim", "voucher": voucher, "id_number": person}),
            json!({"id": "c-2", "op": "get_voucher", "voucher": voucher}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n"),
    )
    .unwrap();
    let args = ["batch", file.to_str().unwrap()];
    let output = ctl_with(&addr, &certs, &args, None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        describe(&args, &output)
    );
    let got = answers(&output);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], json!({"id": "c-1", "ok": true}));
    assert_eq!(got[1]["state"], "claimed");

    // A usage error voucherctl itself detects: settle needs a district role.
    let args = ["settle", "--voucher", &voucher, "--amount-fen", "1"];
    let output = ctl_with(&addr, &certs, &args, None);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe(&args, &output)
    );
    assert!(
        text(&output.stderr).contains("--as district:"),
        "{}",
        describe(&args, &output)
    );
    assert!(output.stdout.is_empty());
    drop(daemon);
}

/// API of voucherctl: "1 usage or connection error".
#[test]

fn voucherctl_usage_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--no-such-flag", "audit", "head"][..],
        &["--as", "emperor", "audit", "head"][..],
        &["issue", "--id-number", "1"][..],
        &["teleport"][..],
    ] {
        let output = ctl_with("127.0.0.1:9", dir.path(), args, None);
        assert_eq!(output.status.code(), Some(1), "{}", describe(args, &output));
        assert!(!output.stderr.is_empty(), "{}", describe(args, &output));
        assert!(output.stdout.is_empty(), "{}", describe(args, &output));
    }
}

#[test]
fn voucherctl_reports_an_unreachable_server_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let status = Command::new(VOUCHERD)
        .args(["certs", "--out"])
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // A port nobody answers on: a bound UDP socket that never replies.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let output = ctl_with(&addr, &certs, &["audit", "head"], None);
    let waited = started.elapsed();
    eprintln!("voucherctl gave up after {waited:?}");
    assert!(
        waited < Duration::from_millis(voucherd::limits::CLIENT_CONNECT_TIMEOUT_MS * 3),
        "voucherctl must give up within its connect timeout, not the 30 s idle timeout"
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&[], &output));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("voucherctl: "), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(output.stdout.is_empty());
    drop(silent);
    // Missing certificates are a clear error too, and fast.
    let output = ctl_with(&addr, &dir.path().join("nowhere"), &["audit", "head"], None);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&[], &output));
    assert!(text(&output.stderr).contains("ca.pem"));
}

/// The bytes of RocksDB's write-ahead log files (`*.log`) under `dir`.
fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            if path.is_dir() {
                wal_bytes(&path)
            } else if path.extension().is_some_and(|e| e == "log") {
                std::fs::metadata(&path).unwrap().len()
            } else {
                0
            }
        })
        .sum()
}

#[test]
fn sigterm_stops_the_daemon_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let mut daemon = serve(&data, &certs, &dir.path().join("daemon.log"), &[], &[]);
    let voucher = issue_voucher(
        &daemon.addr.to_string(),
        &certs,
        &id_number(30),
        "hr_services",
    );
    let status = Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}; log:\n{}", daemon.log());
    drop(daemon);
    // A clean stop flushed the memtables: no write-ahead log is left to replay.
    assert_eq!(
        wal_bytes(&data),
        0,
        "RocksDB *.log files after a clean stop"
    );
    // The data folder opens again with the voucher in it.
    let daemon = serve(&data, &certs, &dir.path().join("again.log"), &[], &[]);
    let shown = ctl_json(
        &daemon.addr.to_string(),
        &certs,
        &["voucher", "show", &voucher],
    );
    assert_eq!(shown["state"], "issued");
}

/// `voucherctl institution import` and `voucherctl report` against a real
/// daemon: the sample form registers whole (exit 0), a second run changes
/// nothing, a form with a bad row exits 3 and names its line, a missing file
/// exits 1; the report's three formats carry the registered institutions.
#[test]
fn voucherctl_imports_the_sample_form_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("daemon.log"), &[], &[]);
    let addr = daemon.addr.to_string();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/institutions-sample.csv");
    let args = ["institution", "import", sample];
    let first = ctl_ok(&addr, &certs, &args);
    assert_eq!(first.matches(": registered ").count(), 7, "{first}");
    assert!(
        first.contains("line 4: registered 5001031 重庆渝中技工学校"),
        "{first}"
    );
    assert!(first.ends_with("7 rows: 7 registered, 0 already present, 0 refused\n"));
    let head = ctl_json(&addr, &certs, &["audit", "head"]);
    let second = ctl_ok(&addr, &certs, &args);
    assert_eq!(second.matches(": already present ").count(), 7, "{second}");
    let again = ctl_json(&addr, &certs, &["audit", "head"]);
    assert_eq!(
        (&again["seq"], &again["state_digest"]),
        (&head["seq"], &head["state_digest"])
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "机构名称,行政区划编码,机构地址,机构电话,机构编码,机构类型,机构专员姓名,机构专员身份证号码,培训机构经纬度\n\
             重庆新培训学校,500101,重庆市万州区一路1号,023-1,5100001,技工院校,刘路,{},\"29.56,106.55\"\n\
             重庆坏培训学校,500101,重庆市万州区一路2号,023-1,5100002,技工院校,刘路,{},\"29.56,106.55\"\n",
            id_number(40),
            crate::common::bad_id_number()
        ),
    )
    .unwrap();
    let bad_args = ["--json", "institution", "import", bad.to_str().unwrap()];
    let output = ctl_with(&addr, &certs, &bad_args, None);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        describe(&bad_args, &output)
    );
    let rows = answers(&output);
    assert_eq!(rows[0]["status"], "registered");
    assert_eq!(
        (&rows[1]["line"], &rows[1]["reason"]),
        (&json!(3), &json!("invalid_id_number"))
    );
    let missing = ["institution", "import", "/nonexistent/form.csv"];
    let output = ctl_with(&addr, &certs, &missing, None);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe(&missing, &output)
    );

    let text_report = ctl_ok(&addr, &certs, &["report"]);
    assert!(text_report.contains("合计"), "{text_report}");
    assert!(text_report.contains("institutions using vouchers"));
    let csv_path = dir.path().join("report.csv");
    ctl_ok(
        &addr,
        &certs,
        &[
            "report",
            "--format",
            "csv",
            "--out",
            csv_path.to_str().unwrap(),
        ],
    );
    let csv_text = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(
        csv_text
            .lines()
            .filter(|l| l.starts_with("district,"))
            .count(),
        41
    );
    assert_eq!(
        csv_text
            .lines()
            .filter(|l| l.starts_with("institution,"))
            .count(),
        8
    );
    assert!(csv_text.contains("institutions_using_vouchers,,培训机构用券覆盖,,8,,,0,0.00,,"));
    let html_path = dir.path().join("report.html");
    ctl_ok(
        &addr,
        &certs,
        &[
            "report",
            "--format",
            "html",
            "--out",
            html_path.to_str().unwrap(),
        ],
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(html.matches("<tr class=\"institution\"").count(), 8);
    assert!(html.contains("两江新区创业孵化培训中心"));
}

/// Checks (issue 17, item 14): `voucherctl` reads an ID number from stdin
/// (`-`) or from a file (`@FILE`), so it need not sit in the shell history;
/// the answers are those of the number given inline. How: issue with
/// `--id-number -`, claim with `--id-number @FILE`, list inline.
#[test]
fn voucherctl_reads_id_numbers_from_stdin_or_a_file() {
    use crate::common::daemon::{ctl, serve};
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    let addr = daemon.addr.to_string();
    let person = "50010219920229456X";
    let issued = ctl(
        &addr,
        &certs,
        &[
            "--json",
            "issue",
            "--id-number",
            "-",
            "--category",
            "unemployed",
            "--kind",
            "hr_services",
            "--face-value-fen",
            "80000",
            "--district",
            "500101",
        ],
        Some(&format!("{person}\n")),
    );
    assert!(issued.status.success(), "{}", describe(&["issue"], &issued));
    let answer: Value = serde_json::from_slice(&issued.stdout).unwrap();
    let voucher = answer["voucher"].as_str().unwrap().to_owned();
    let file = dir.path().join("id.txt");
    std::fs::write(&file, format!("{person}\n")).unwrap();
    let at_file = format!("@{}", file.display());
    let claimed = ctl(
        &addr,
        &certs,
        &["claim", "--voucher", &voucher, "--id-number", &at_file],
        None,
    );
    assert!(
        claimed.status.success(),
        "{}",
        describe(&["claim"], &claimed)
    );
    let listed = ctl_json(&addr, &certs, &["voucher", "list", "--id-number", person]);
    assert_eq!(
        listed["vouchers"][0]["voucher"],
        voucher.as_str(),
        "{listed}"
    );
    assert_eq!(listed["vouchers"][0]["state"], "claimed", "{listed}");
}

/// Checks that `voucherctl class open` sends `open_class` (a second one
/// with the same code exits 3 with `class_exists`), that `redeem --class`
/// enrolls a voucher in it, and that `checkin --online` is sent with the
/// `platform` certificate `voucherd` made (its default role for it) and
/// answers the session, while a positioned check-in of the same voucher
/// exits 3 with `wrong_mode`.
#[test]
fn voucherctl_opens_a_class_and_sends_an_online_checkin() {
    use voucherd::domain::time::{day_text, Clock, SystemClock, ANSWER_UTC_OFFSET_S};
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    let addr = daemon.addr.to_string();
    let today = SystemClock.now().local_day(ANSWER_UTC_OFFSET_S);
    let (first, last) = (day_text(today), day_text(today + 10));
    let admin = id_number(900);
    ctl_ok(&addr, &certs, &register_args("5000001", &admin));
    let authorise = [
        "operator",
        "authorise",
        "--institution",
        "5000001",
        "--admin-id-number",
        &admin,
        "--operator",
        "op-1",
    ];
    ctl_ok(&addr, &certs, &authorise);
    let open = class_open_args("线上电工 2026", "hr_services", (&first, &last), "online");
    ctl_json(&addr, &certs, &open);
    let again = ctl_with(&addr, &certs, &open, None);
    assert_eq!(again.status.code(), Some(3), "{}", describe(&open, &again));
    assert!(text(&again.stdout).contains("class_exists"));
    let person = id_number(1);
    let voucher = issue_voucher(&addr, &certs, &person, "hr_services");
    ctl_ok(
        &addr,
        &certs,
        &["claim", "--voucher", &voucher, "--id-number", &person],
    );
    let redeem = [
        "redeem",
        "--voucher",
        &voucher,
        "--institution",
        "5000001",
        "--operator",
        "op-1",
        "--class",
        "线上电工 2026",
    ];
    ctl_json(&addr, &certs, &redeem);
    let online = ctl_json(
        &addr,
        &certs,
        &["checkin", "--voucher", &voucher, "--online"],
    );
    assert_eq!(online["session"], first.as_str(), "{online}");
    assert_eq!(online["checkins"], 1, "{online}");
    let positioned = [
        "--json",
        "checkin",
        "--voucher",
        &voucher,
        "--lat",
        "29.5576",
        "--lon",
        "106.5775",
    ];
    let refused = ctl_with(&addr, &certs, &positioned, None);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        describe(&positioned, &refused)
    );
    assert!(text(&refused.stdout).contains("wrong_mode"));
}

/// `voucherctl events`: prints events as JSON lines, saves its cursor after
/// each page, resumes from the cursor file (nothing printed twice), and with
/// `--follow` waits for new events and prints them as they come.
#[test]
fn voucherctl_events_follows_and_resumes_from_its_cursor_file() {
    use crate::common::daemon::VOUCHERCTL;
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    let addr = daemon.addr.to_string();
    let (admin, person) = (id_number(1), id_number(2));
    ctl_ok(&addr, &certs, &register_args("5000001", &admin));
    let authorise = [
        "operator",
        "authorise",
        "--institution",
        "5000001",
        "--admin-id-number",
        &admin,
        "--operator",
        "op-1",
    ];
    ctl_ok(&addr, &certs, &authorise);
    open_class_ctl(&addr, &certs, "电工初级", "hr_services");
    let voucher = issue_voucher(&addr, &certs, &person, "hr_services");
    ctl_ok(
        &addr,
        &certs,
        &["claim", "--voucher", &voucher, "--id-number", &person],
    );
    let redeem = [
        "redeem",
        "--voucher",
        &voucher,
        "--institution",
        "5000001",
        "--operator",
        "op-1",
        "--class",
        "电工初级",
    ];
    ctl_ok(&addr, &certs, &redeem);

    let cursor_file = dir.path().join("cursor");
    let cursor = cursor_file.to_str().unwrap();
    let read = [
        "events",
        "--institution",
        "5000001",
        "--cursor-file",
        cursor,
    ];
    let printed: Vec<Value> = ctl_ok(&addr, &certs, &read)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert_eq!(printed[0]["op"], "redeem");
    assert_eq!(printed[0]["class"], "电工初级");
    let saved = std::fs::read_to_string(&cursor_file).unwrap();
    assert_eq!(saved.trim(), printed[0]["seq"].to_string());
    assert_eq!(ctl_ok(&addr, &certs, &read), "", "resumed: nothing twice");

    let mut follow = Command::new(VOUCHERCTL)
        .args(["--server", &addr, "--certs"])
        .arg(&certs)
        .args(read)
        .args(["--follow", "--wait-ms", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("voucherctl starts");
    let stdout = follow.stdout.take().unwrap();
    let (line_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if line_sender.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let (lat, lon) = SITE.split_once(',').unwrap();
    let checkin = ["checkin", "--voucher", &voucher, "--lat", lat, "--lon", lon];
    ctl_ok(&addr, &certs, &checkin);
    let line = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the follower prints the new event");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["op"], "checkin");
    let deadline = Instant::now() + Duration::from_secs(10);
    let seq = event["seq"].to_string();
    while std::fs::read_to_string(&cursor_file).unwrap().trim() != seq {
        assert!(Instant::now() < deadline, "the cursor file follows");
        std::thread::sleep(Duration::from_millis(50));
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
}

//! Interop: the Python client (`clients/python/`, aioquic, the JSON encoding)
//! against the real daemon, as a gateway team would run it: a claim, a redeem
//! and a check-in in one frame, a refused request, a malformed item answered
//! in place, an id retried across a reconnect (the first answer, nothing
//! applied again), a frame that is not JSON refused with a word, then an
//! online class opened by the gateway and a check-in with `"online": true`
//! from the `platform` certificate.
//! The virtual environment with aioquic is made by `ops/install-deps.sh`
//! (`make test` runs it first); `VOUCHERD_PYTHON` names another interpreter.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::daemon::{describe, serve, Voucherctl};
use voucherd_load::kit::workload::SITE;

fn python() -> PathBuf {
    if let Ok(python) = std::env::var("VOUCHERD_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "{} is missing: run ./ops/install-deps.sh (make test does)",
        venv.display()
    );
    venv
}

#[test]
fn the_python_client_speaks_json_to_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    let admin = "500101198001011235";
    let person = "50010219920229456X";
    let setup = daemon.batch(
        &certs,
        "bureau",
        &[
            json!({"id": "s-1", "op": "register_institution", "code": "1000001",
                   "name": "重庆市培训学校", "district": "500101", "address": "解放碑",
                   "phone": "023-88126902", "type": "private_school", "admin_name": "刘路",
                   "admin_id_number": admin, "sites": [{"lat": SITE.0, "lon": SITE.1}]}),
            json!({"id": "s-2", "op": "issue", "id_number": person,
                   "category": "rural_migrant", "kind": "hr_services",
                   "face_value_fen": 80000, "channel": "wechat", "district": "500101"}),
            json!({"id": "s-2b", "op": "issue", "id_number": person,
                   "category": "rural_migrant", "kind": "adaptability",
                   "face_value_fen": 60000, "channel": "wechat", "district": "500101"}),
        ],
    );
    assert!(setup.iter().all(|a| a["ok"] == true), "{setup:?}");
    let voucher = setup[1]["voucher"].as_str().expect("voucher id").to_owned();
    let online_voucher = setup[2]["voucher"].as_str().expect("voucher id").to_owned();
    let authorised = daemon.batch(
        &certs,
        "gateway",
        &[
            json!({"id": "s-3", "op": "authorise_operator", "institution": "1000001",
                 "admin_id_number": admin, "operator": "op-1"}),
            json!({"id": "s-4", "op": "claim", "voucher": online_voucher, "id_number": person}),
        ],
    );
    assert!(authorised.iter().all(|a| a["ok"] == true), "{authorised:?}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/interop.py");
    let output = Command::new(python())
        .arg(&script)
        .args([
            "127.0.0.1",
            &daemon.addr.port().to_string(),
            certs.to_str().unwrap(),
            &voucher,
            person,
            "1000001",
            "op-1",
            "电工初级",
            &SITE.0.to_string(),
            &SITE.1.to_string(),
            &online_voucher,
        ])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        describe("interop.py", &output)
    );
    let steps: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per step"))
        .collect();
    assert_eq!(steps.last().unwrap()["step"], "done", "{steps:?}");
    // The daemon's own view: redeemed once, checked in once.
    let view = daemon.batch(
        &certs,
        "bureau",
        &[json!({"id": "v-1", "op": "get_voucher", "voucher": voucher})],
    );
    assert_eq!(view[0]["state"], "redeemed", "{view:?}");
    assert_eq!(view[0]["checkins"], 1, "{view:?}");
    // The online voucher: enrolled in the class, checked in once by the platform.
    let online = daemon.batch(
        &certs,
        "bureau",
        &[json!({"id": "v-2", "op": "get_voucher", "voucher": online_voucher})],
    );
    assert_eq!(online[0]["class"], "线上班 2026", "{online:?}");
    assert_eq!(online[0]["checkins"], 1, "{online:?}");
}

/// The Rust client in each encoding gets the same answers: JSON answers read
/// back for their operations equal the binary ones (ids aside).
#[test]
fn json_and_binary_answers_agree() {
    use crate::common::issue;
    use voucherd::domain::op::{Op, Request, Role};
    use voucherd::net::client::{Client, Encoding};
    use voucherd_load::kit::workload::{id_number, register};

    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    let daemon = serve(&data, &certs, &dir.path().join("log"), &[], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connect =
            |encoding| Client::connect_encoded(daemon.addr, &certs, Role::Bureau, encoding);
        let (binary, json) = (
            connect(Encoding::Binary).await.unwrap(),
            connect(Encoding::Json).await.unwrap(),
        );
        let admin = id_number(900);
        let setup = |prefix: &str| {
            vec![
                Request {
                    id: format!("{prefix}-1"),
                    op: register(&format!("100000{}", prefix.len()), "500101", &admin),
                },
                Request {
                    id: format!("{prefix}-2"),
                    op: issue(
                        &id_number(prefix.len() as u64),
                        voucherd::domain::enums::Kind::HrServices,
                    ),
                },
                Request {
                    id: format!("{prefix}-3"),
                    op: Op::Expire { year: 2000 },
                },
                Request {
                    id: format!("{prefix}-4"),
                    op: Op::Stats {
                        district: None,
                        year: None,
                    },
                },
            ]
        };
        let from_binary = binary.execute(&setup("b")).await.unwrap();
        let from_json = json.execute(&setup("jj")).await.unwrap();
        for (b, j) in from_binary.iter().zip(&from_json) {
            match (&b.outcome, &j.outcome) {
                (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
                other => panic!("the encodings disagree: {other:?}"),
            }
        }
        assert!(matches!(
            from_json[1].outcome,
            Ok(voucherd::domain::op::Reply::Issued { .. })
        ));
        assert_eq!(
            from_binary[2].outcome.as_ref().unwrap_err().reason,
            from_json[2].outcome.as_ref().unwrap_err().reason
        );
        let (voucher_b, voucher_j) = match (&from_binary[1].outcome, &from_json[1].outcome) {
            (
                Ok(voucherd::domain::op::Reply::Issued { voucher: b }),
                Ok(voucherd::domain::op::Reply::Issued { voucher: j }),
            ) => (*b, *j),
            other => panic!("issue answered {other:?}"),
        };
        let view = |voucher, id: &str| {
            vec![Request {
                id: id.into(),
                op: Op::GetVoucher { voucher },
            }]
        };
        let b = binary
            .execute(&view(voucher_b, "vb"))
            .await
            .unwrap()
            .remove(0)
            .outcome
            .unwrap();
        let j = json
            .execute(&view(voucher_j, "vj"))
            .await
            .unwrap()
            .remove(0)
            .outcome
            .unwrap();
        match (b, j) {
            (voucherd::domain::op::Reply::Voucher(b), voucherd::domain::op::Reply::Voucher(j)) => {
                assert_eq!(
                    (b.state, b.kind, b.face_value_fen),
                    (j.state, j.kind, j.face_value_fen)
                );
            }
            other => panic!("get_voucher answered {other:?}"),
        }
        binary.close().await;
        json.close().await;
    });
}

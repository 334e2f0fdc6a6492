//! Interop: the Python client (`clients/python/`, aioquic, the JSON encoding)
//! against the real daemon, as a gateway team would run it: a claim, a redeem
//! and a check-in in one frame, a refused request, a malformed item answered
//! in place, an id retried across a reconnect (the first answer, nothing
//! applied again), and a frame that is not JSON refused with a word.
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
        ],
    );
    assert!(setup.iter().all(|a| a["ok"] == true), "{setup:?}");
    let voucher = setup[1]["voucher"].as_str().expect("voucher id").to_owned();
    let authorised = daemon.batch(
        &certs,
        "gateway",
        &[
            json!({"id": "s-3", "op": "authorise_operator", "institution": "1000001",
                 "admin_id_number": admin, "operator": "op-1"}),
        ],
    );
    assert_eq!(authorised[0]["ok"], true, "{authorised:?}");
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
}

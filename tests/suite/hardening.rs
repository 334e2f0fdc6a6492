//! The holes of issue 17 that a careful operator or an attacker finds outside
//! the rules: a lost or foreign `person.key`, tools that create what they
//! should only read, backups that carry the key, certificate folders
//! overwritten or invented, certificates with two roles or revoked, and error
//! messages that do not say which file or address failed. Each test names the
//! hole it closes (docs/reliability.md, "Hardening").

use std::path::Path;
use std::process::{Command, Output};

use crate::common::daemon::{describe, text, voucherd_ok, VOUCHERD};
use crate::common::{id_number, issue, Disk, Drive};
use voucherd::domain::enums::Kind;
use voucherd::domain::op::Role;
use voucherd::error::Error;

/// Runs `voucherd ARGS` and expects a failure (exit 1); returns stderr.
fn voucherd_fails(args: &[&str]) -> String {
    let output: Output = Command::new(VOUCHERD).args(args).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe(&format!("voucherd {args:?}"), &output)
    );
    text(&output.stderr)
}

/// A data folder with one issued voucher (so its ledger is not empty).
fn ledger_with_a_voucher(data: &Path) {
    let disk = Disk::open(data, "key");
    disk.accept(Role::Bureau, issue(&id_number(7), Kind::EmploymentSkills));
}

fn refused_start(data: &Path) -> String {
    match Disk::open_at(
        data,
        "again",
        std::sync::Arc::new(voucherd::domain::time::ManualClock::new(crate::common::NOW)),
    ) {
        Err(Error::Corrupt(why)) => why,
        Err(other) => panic!("refused, but not as a key problem: {other}"),
        Ok(_) => panic!("the ledger opened without its person key"),
    }
}

/// Item 8: a data folder copied without `person.key`, or with another
/// ledger's, is refused at start with the file named; before the fix a new
/// key was made silently and every stored person became unknown.
#[test]
fn a_ledger_refuses_to_start_without_its_person_key_or_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ledger_with_a_voucher(&data);
    let key_file = data.join("person.key");
    let key = std::fs::read(&key_file).unwrap();

    std::fs::remove_file(&key_file).unwrap();
    let why = refused_start(&data);
    assert!(why.contains(&key_file.display().to_string()), "{why}");
    assert!(why.contains("missing"), "{why}");
    assert!(!key_file.exists(), "no new key was made");

    std::fs::write(&key_file, [9u8; 32]).unwrap();
    let why = refused_start(&data);
    assert!(why.contains(&key_file.display().to_string()), "{why}");
    assert!(why.contains("not the person key"), "{why}");

    std::fs::write(&key_file, &key).unwrap();
    Disk::open(&data, "back");

    // The stored check value is not the key.
    let store = voucherd::store::Store::open_read_only(&data.join("ledger")).unwrap();
    use voucherd::store::journal::{Journal, Table};
    let check = store
        .get(Table::Meta, voucherd::ledger::meta::PERSON_KEY_CHECK)
        .unwrap()
        .expect("a check value is stored");
    assert_ne!(check, key);
}

/// Item 8, backups: a backup of a folder that lost its key, or a restore of a
/// backup with a foreign key, is refused naming the file; before the fix the
/// backup made a new key in the live folder.
#[test]
fn backup_and_restore_check_the_person_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ledger_with_a_voucher(&data);
    let key_file = data.join("person.key");
    let key = std::fs::read(&key_file).unwrap();
    let (data_arg, out) = (data.to_str().unwrap(), dir.path().join("backup"));

    std::fs::remove_file(&key_file).unwrap();
    let why = voucherd_fails(&["backup", "--data", data_arg, "--out", out.to_str().unwrap()]);
    assert!(why.contains(&key_file.display().to_string()), "{why}");
    assert!(!key_file.exists(), "the backup made no new key");

    std::fs::write(&key_file, &key).unwrap();
    voucherd_ok(&[
        "backup",
        "--data",
        data_arg,
        "--out",
        out.to_str().unwrap(),
        "--include-key",
    ]);
    let backed_key = out.join("person.key");
    std::fs::write(&backed_key, [5u8; 32]).unwrap();
    let restored = dir.path().join("restored");
    let why = voucherd_fails(&[
        "restore",
        "--backup",
        out.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    assert!(why.contains(&backed_key.display().to_string()), "{why}");
    assert!(why.contains("not the person key"), "{why}");
    assert!(!restored.exists(), "a refused restore writes nothing");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every folder under `dir` is 0700 and every file 0600.
fn assert_private(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

/// Item 10: a backup leaves the hashing key out unless `--include-key`
/// (before: every backup carried it, so a stolen backup gave away every ID
/// number by dictionary); a restore then takes the kept key with `--key`;
/// data, backup and restored folders are 0700 with files 0600.
#[test]
fn backups_leave_the_person_key_out_unless_asked_and_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ledger_with_a_voucher(&data);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("person.key")), 0o600);
    let key = data.join("person.key");
    let (data_arg, key_arg) = (data.to_str().unwrap(), key.to_str().unwrap());

    let plain = dir.path().join("plain");
    let said = voucherd_ok(&[
        "backup",
        "--data",
        data_arg,
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(said.contains("person.key is not in the backup"), "{said}");
    assert!(!plain.join("person.key").exists(), "the key stays out");
    assert_private(&plain);

    let restored = dir.path().join("restored");
    let why = voucherd_fails(&[
        "restore",
        "--backup",
        plain.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    assert!(why.contains("--key"), "{why}");
    assert!(!restored.exists());
    voucherd_ok(&[
        "restore",
        "--backup",
        plain.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
        "--key",
        key_arg,
    ]);
    assert_private(&restored);
    assert_eq!(
        std::fs::read(restored.join("person.key")).unwrap(),
        std::fs::read(&key).unwrap()
    );
    Disk::open(&restored, "restored");

    let with_key = dir.path().join("with-key");
    voucherd_ok(&[
        "backup",
        "--data",
        data_arg,
        "--out",
        with_key.to_str().unwrap(),
        "--include-key",
    ]);
    assert_private(&with_key);
    assert_eq!(
        std::fs::read(with_key.join("person.key")).unwrap(),
        std::fs::read(&key).unwrap()
    );
}

/// Item 11: the offline tools open existing data folders only. A mistyped
/// folder is refused with its name and nothing is created (before:
/// `backup --data <typo>` made an empty ledger and said "audit record 0",
/// exit 0; `audit verify` left an empty folder).
#[test]
fn offline_tools_refuse_a_missing_data_folder_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("voucherd-dta");
    let typo_arg = typo.to_str().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty_arg = empty.to_str().unwrap();
    for folder in [typo_arg, empty_arg] {
        for args in [
            vec!["backup", "--data", folder, "--out", out_arg],
            vec!["audit", "verify", "--data", folder],
            vec!["audit", "export", "--data", folder, "--out", out_arg],
            vec!["restore", "--backup", folder, "--data", out_arg],
        ] {
            let why = voucherd_fails(&args);
            assert_eq!(why.matches(folder).count(), 1, "{args:?}: {why}");
            assert!(!typo.exists(), "{args:?} created {typo_arg}");
            assert!(!out.exists(), "{args:?} created {out_arg}");
            assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{args:?}");
        }
    }
}

/// Item 12: `voucherd certs --out DIR` refuses a folder that has a CA unless
/// `--force` (before: it replaced the CA and every key, cutting off every
/// client of the running daemon).
#[test]
fn certs_refuse_to_replace_a_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_arg = certs.to_str().unwrap();
    voucherd_ok(&["certs", "--out", certs_arg]);
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    let gateway = std::fs::read(certs.join("gateway.key")).unwrap();
    let why = voucherd_fails(&["certs", "--out", certs_arg]);
    assert_eq!(
        why.matches(certs_arg).count(),
        2,
        "folder and CA file: {why}"
    );
    assert!(why.contains("--force"), "{why}");
    assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), ca);
    assert_eq!(std::fs::read(certs.join("gateway.key")).unwrap(), gateway);
    voucherd_ok(&["certs", "--out", certs_arg, "--force"]);
    assert_ne!(std::fs::read(certs.join("ca.pem")).unwrap(), ca);
}

/// Item 12: `serve --certs DIR` with a folder that has no CA is an error
/// naming it, and nothing is created (before: a development CA was made in
/// any missing folder); only the embedded default `./certs` (`make run`) gets
/// development certificates, with a warning.
#[test]
fn serve_makes_development_certificates_only_in_the_default_folder() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs-typo");
    let data = dir.path().join("data");
    let output = Command::new(VOUCHERD)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--certs")
        .arg(&certs)
        .output()
        .unwrap();
    let why = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{why}");
    assert!(why.contains(certs.to_str().unwrap()), "{why}");
    assert!(!certs.exists(), "no certificates were invented");
    assert!(!data.exists(), "refused before the data folder is touched");

    // The default folder, as `make run` uses it (no --certs, no config).
    let mut child = Command::new(VOUCHERD)
        .args(["serve", "--listen", "127.0.0.1:0", "--data", "data"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(line.starts_with("voucherd: listening on"), "{line}\n{log}");
    assert!(dir.path().join("certs/ca.pem").exists(), "{log}");
    assert!(
        log.contains("WARN") && log.contains("development certificates"),
        "{log}"
    );
}

/// Item 13: a certificate on the config's deny-list (SHA-256 of its DER) is
/// refused after the handshake and the refusal is logged, while other
/// certificates of the same CA are served (before: a lost gateway
/// certificate could only be revoked with a new CA). And the client checks
/// the daemon's name from `--server`: `localhost:PORT` and `127.0.0.1:PORT`
/// both verify, a name the certificate does not carry does not (before:
/// `--server` took only an IP address and the name checked was always
/// "localhost").
#[test]
fn a_denied_certificate_is_refused_and_the_server_name_comes_from_server() {
    use crate::common::daemon::{make_certs, serve, Voucherctl};
    let dir = tempfile::tempdir().unwrap();
    let (data, certs) = (dir.path().join("data"), dir.path().join("certs"));
    make_certs(&certs, &[]);
    let lost = voucherd::net::tls::fingerprint_of_file(&certs.join("gateway.pem")).unwrap();
    let config = dir.path().join("voucherd.toml");
    std::fs::write(
        &config,
        format!("denied_certificates = [\"{}\"]\n", lost.to_uppercase()),
    )
    .unwrap();
    let daemon = serve(
        &data,
        &certs,
        &dir.path().join("log"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let port = daemon.addr.port().to_string();
    for server in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let output = crate::common::daemon::ctl(
            &server,
            &certs,
            &["--as", "auditor", "audit", "head"],
            None,
        );
        assert!(output.status.success(), "{}", describe(&server, &output));
    }
    let output = daemon.ctl(&certs, &["--as", "gateway", "audit", "head"], None);
    assert!(!output.status.success(), "{}", describe("denied", &output));
    let log = daemon.log();
    assert!(log.contains("deny-list") && log.contains(&lost), "{log}");

    // A name the daemon's certificate does not carry is refused by the client.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = voucherd::net::tls::client_config(
        &certs.join("ca.pem"),
        &certs.join("bureau.pem"),
        &certs.join("bureau.key"),
    )
    .unwrap();
    let addr: std::net::SocketAddr = daemon.addr;
    let wrong = runtime.block_on(voucherd::net::client::Client::connect_named(
        addr,
        "voucherd.example.org",
        config,
    ));
    assert!(
        wrong.is_err(),
        "a server name the certificate lacks is refused"
    );
    daemon.stop().expect("voucherd stops cleanly");
}

/// Checks (issue 17, item 15): a missing config, campaign or export file is
/// named once in the error; a cut export is called truncated, not a bare
/// "failed to fill whole buffer". How: the real binary on paths that do not
/// exist and on a cut file.
#[test]
fn file_errors_name_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    voucherd_ok(&["certs", "--out", certs.to_str().unwrap()]);
    let data = dir.path().join("data");
    let (data, certs) = (data.to_str().unwrap(), certs.to_str().unwrap());
    for (args, path) in [
        (
            vec![
                "serve",
                "--config",
                "nope.toml",
                "--data",
                data,
                "--certs",
                certs,
            ],
            "nope.toml",
        ),
        (
            vec![
                "serve",
                "--campaign",
                "missing.toml",
                "--data",
                data,
                "--certs",
                certs,
            ],
            "missing.toml",
        ),
        (vec!["replay", "--log", "nope.bin"], "nope.bin"),
    ] {
        let stderr = voucherd_fails(&args);
        assert_eq!(stderr.matches(path).count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("No such file"), "{args:?}: {stderr}");
    }
    assert!(
        !Path::new(data).exists(),
        "a refused start creates no data folder"
    );
    let cut = dir.path().join("cut.bin");
    std::fs::write(&cut, b"VOUCHERD-AUD").unwrap();
    let stderr = voucherd_fails(&["replay", "--log", cut.to_str().unwrap()]);
    assert!(stderr.contains("shorter than its magic"), "{stderr}");
    assert!(!stderr.contains("fill whole buffer"), "{stderr}");
}

/// Checks (issue 17, item 15): a UDP port clash fails at once (the port is
/// bound before recovery), names the address, and leaves no control socket
/// and no data folder behind. How: hold a UDP port, start the daemon on it.
#[test]
fn a_port_clash_fails_at_once_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    voucherd_ok(&["certs", "--out", certs.to_str().unwrap()]);
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = held.local_addr().unwrap().to_string();
    let data = dir.path().join("data");
    let started = std::time::Instant::now();
    let stderr = voucherd_fails(&[
        "serve",
        "--listen",
        &address,
        "--data",
        data.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
    ]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the clash is found before recovery"
    );
    assert!(
        stderr.contains(&address) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(
        !data.join("control.sock").exists(),
        "no stale control socket"
    );
    drop(held);
}

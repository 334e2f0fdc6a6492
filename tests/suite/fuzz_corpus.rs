//! The committed fuzz corpus (`fuzz/corpus/<target>/`), replayed on stable
//! through the same checks the `cargo fuzz` targets run
//! (`voucherd_load::properties`). Every finding of the fuzzers is kept there as a
//! seed, so this is also their regression test.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    replay_some(target, check, usize::MAX);
}

/// Replays at most `most` inputs of the target's corpus, spread evenly over
/// its files in name order (all of them when there are fewer).
fn replay_some(target: &str, check: fn(&[u8]), most: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(
        paths.len() >= 10,
        "{target}: only {} corpus inputs",
        paths.len()
    );
    paths.sort();
    let step = paths.len().div_ceil(most.max(1));
    let mut inputs = 0;
    for path in paths.iter().step_by(step) {
        let bytes = std::fs::read(path).unwrap();
        let checked = std::panic::catch_unwind(|| check(&bytes));
        assert!(checked.is_ok(), "{} fails its checks", path.display());
        inputs += 1;
    }
    eprintln!("{target}: {inputs} of {} inputs pass", paths.len());
}

#[test]
fn request_frame_corpus_passes() {
    replay(
        "wire_requests",
        voucherd_load::properties::check_request_frame,
    );
}

#[test]
fn reply_frame_corpus_passes() {
    replay("wire_reply", voucherd_load::properties::check_reply_frame);
}

#[test]
fn voucherctl_line_corpus_passes() {
    replay("ctl_line", voucherd_load::properties::check_ctl_line);
}

#[test]
fn frame_reading_corpus_passes() {
    replay(
        "frame_reading",
        voucherd_load::properties::check_frame_reading,
    );
}

/// Each input opens a ledger twice: a sample in the fast tier, every one
/// in the soak tier (`ledger_operations_whole_corpus_passes`).
#[test]
fn ledger_operations_corpus_passes() {
    replay_some(
        "ledger_operations",
        voucherd_load::properties::check_ledger_operations,
        30,
    );
}

#[test]
#[ignore = "soak: every ledger_operations corpus input (hundreds, each a ledger opened twice)"]
fn ledger_operations_whole_corpus_passes() {
    replay(
        "ledger_operations",
        voucherd_load::properties::check_ledger_operations,
    );
}

#[test]
fn certificate_role_corpus_passes() {
    replay(
        "certificate_role",
        voucherd_load::properties::check_certificate_role,
    );
}

#[test]
fn export_replay_corpus_passes() {
    replay(
        "export_replay",
        voucherd_load::properties::check_export_replay,
    );
}

// ---------------------------------------------------------------------------
// The targets of issue 17 (item 16) also run on seeded
// inputs: a bounded number in the fast tier, for `VOUCHERD_FUZZ_SECONDS`
// each (default 120) in the soak tier. Each input is printed on failure with
// the seed that makes it again.

use rand::rngs::StdRng;
use rand::Rng;

/// How long a seeded run goes on.
#[derive(Clone, Copy)]
enum Budget {
    Inputs(u64),
    Seconds(u64),
}

fn soak_budget() -> Budget {
    let seconds = std::env::var("VOUCHERD_FUZZ_SECONDS")
        .ok()
        .map(|text| {
            text.trim()
                .parse()
                .expect("VOUCHERD_FUZZ_SECONDS is seconds")
        })
        .unwrap_or(120);
    Budget::Seconds(seconds)
}

/// Runs `check` on inputs from `input` until the budget is spent; returns
/// how many ran.
fn run_seeded(
    target: &str,
    budget: Budget,
    mut input: impl FnMut(&mut StdRng) -> Vec<u8>,
    check: fn(&[u8]),
) -> u64 {
    let (seed, mut rng) = crate::common::seeded_rng();
    let started = std::time::Instant::now();
    let mut runs = 0u64;
    loop {
        let spent = match budget {
            Budget::Inputs(inputs) => runs >= inputs,
            Budget::Seconds(seconds) => started.elapsed().as_secs() >= seconds,
        };
        if spent {
            break;
        }
        let bytes = input(&mut rng);
        let checked = std::panic::catch_unwind(|| check(&bytes));
        assert!(
            checked.is_ok(),
            "{target}: input {runs} of seed {seed} fails its checks: {bytes:02x?}"
        );
        runs += 1;
    }
    eprintln!(
        "{target}: {runs} inputs in {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
    runs
}

/// Random bytes of up to `LEDGER_OPERATIONS_MAX` operations.
fn ledger_input(rng: &mut StdRng) -> Vec<u8> {
    let operations = rng.gen_range(0..=voucherd_load::properties::LEDGER_OPERATIONS_MAX);
    (0..operations * 6).map(|_| rng.gen()).collect()
}

/// `valid`, cut, with bytes flipped, or with random bytes put in.
fn mutated(valid: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match rng.gen_range(0..4) {
        0 => bytes.truncate(rng.gen_range(0..=valid.len())),
        1 => {
            for _ in 0..rng.gen_range(1..=4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        2 => {
            let at = rng.gen_range(0..=bytes.len());
            let noise: Vec<u8> = (0..rng.gen_range(1..=16)).map(|_| rng.gen()).collect();
            bytes.splice(at..at, noise);
        }
        _ => {
            bytes = (0..rng.gen_range(0..=valid.len()))
                .map(|_| rng.gen())
                .collect()
        }
    }
    bytes
}

/// A generated gateway certificate, DER.
fn certificate_der() -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    voucherd::net::tls::generate(dir.path(), &["500101".parse().unwrap()]).unwrap();
    let paths = voucherd::net::tls::CertPaths {
        dir: dir.path().to_owned(),
    };
    let path = paths.client_cert(voucherd::domain::op::Role::Gateway);
    rustls::pki_types::CertificateDer::from_pem_file(&path)
        .unwrap()
        .to_vec()
}

/// An audit export of a ledger the kit's workload ran 300 steps on.
fn export_bytes() -> Vec<u8> {
    use voucherd::store::journal::Journal;
    let h = crate::common::Harness::new();
    let mut workload = voucherd_load::kit::workload::Workload::new(7, 20, 2026);
    workload.setup(&h, 4);
    for _ in 0..300 {
        workload.step(&h);
    }
    let campaign = crate::common::campaigns().current().to_toml();
    let mut bytes = Vec::new();
    let journal: &dyn Journal = &*h.journal;
    let records =
        voucherd::admin::offline::export_journal(journal, &[campaign], &mut bytes).unwrap();
    assert_eq!(records, h.ledger.head().0);
    bytes
}

/// Checks (issue 17, item 16): the ledger on arbitrary (role, operation)
/// sequences keeps its invariants and reopens to the same head. How: 50
/// seeded inputs of up to 512 operations (`check_ledger_operations`; the
/// soak tier runs them for minutes).
#[test]
fn ledger_operations_on_seeded_inputs() {
    run_seeded(
        "ledger_operations",
        Budget::Inputs(50),
        ledger_input,
        voucherd_load::properties::check_ledger_operations,
    );
}

/// Checks (issue 17, item 16): the role parser never panics on certificate
/// bytes. How: 2,000 mutations of a generated gateway certificate and the
/// intact one, which must carry the gateway role.
#[test]
fn certificate_roles_on_seeded_inputs() {
    let der = certificate_der();
    let certificate = rustls::pki_types::CertificateDer::from(der.clone());
    assert_eq!(
        voucherd::net::tls::role_of(&certificate),
        Ok(voucherd::domain::op::Role::Gateway)
    );
    run_seeded(
        "certificate_role",
        Budget::Inputs(2_000),
        |rng| mutated(&der, rng),
        voucherd_load::properties::check_certificate_role,
    );
}

/// Checks (issue 17, item 16): reading and replaying an export never panics
/// on crafted exports. How: the intact export of a 300-step workload
/// replays to its head; then 300 mutations of it (cut, bits flipped, bytes
/// put in, noise).
#[test]
fn export_replay_on_seeded_inputs() {
    let export = export_bytes();
    voucherd_load::properties::check_export_replay(&export);
    let replayed = voucherd::admin::offline::replay(std::io::Cursor::new(&export))
        .unwrap()
        .unwrap();
    assert!(replayed.records > 0);
    run_seeded(
        "export_replay",
        Budget::Inputs(300),
        |rng| mutated(&export, rng),
        voucherd_load::properties::check_export_replay,
    );
}

/// A stream for the frame reader, as fuzz bytes (`Stream::to_fuzz`), so a
/// failing input printed by `run_seeded` goes into the corpus as it is.
fn frame_reading_input(rng: &mut StdRng) -> Vec<u8> {
    voucherd_load::frame_reading::seeded_stream(rng).to_fuzz()
}

/// Checks (issue 17, item 16): the frame reader, fed its bytes in
/// arbitrary pieces (empty, pending, 1 byte to 64 KiB) and ending finished,
/// reset or stalled, gives the result worked out from the bytes alone and
/// the one of a one-shot read, pays for every byte it keeps, keeps no room
/// past the declared frame, and a cut frame is refused `invalid_request`.
/// How: 150 seeded streams of request frames of up to 2,500 operations
/// (whole, cut, too long, over the limit) or noise.
#[test]
fn frame_reading_on_seeded_inputs() {
    run_seeded(
        "frame_reading",
        Budget::Inputs(150),
        frame_reading_input,
        voucherd_load::properties::check_frame_reading,
    );
}

/// The four seeded targets for `VOUCHERD_FUZZ_SECONDS` each (second tier).
#[test]
#[ignore = "soak: the seeded fuzz targets, VOUCHERD_FUZZ_SECONDS each (default 120)"]
fn seeded_fuzz_targets_soak() {
    let der = certificate_der();
    let export = export_bytes();
    run_seeded(
        "frame_reading",
        soak_budget(),
        frame_reading_input,
        voucherd_load::properties::check_frame_reading,
    );
    run_seeded(
        "ledger_operations",
        soak_budget(),
        ledger_input,
        voucherd_load::properties::check_ledger_operations,
    );
    run_seeded(
        "certificate_role",
        soak_budget(),
        |rng| mutated(&der, rng),
        voucherd_load::properties::check_certificate_role,
    );
    run_seeded(
        "export_replay",
        soak_budget(),
        |rng| mutated(&export, rng),
        voucherd_load::properties::check_export_replay,
    );
}

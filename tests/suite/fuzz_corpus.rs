//! The committed fuzz corpus (`fuzz/corpus/<target>/`), replayed on stable
//! through the same checks the `cargo fuzz` targets run
//! (`voucherd_load::properties`). Every finding of the fuzzers is kept there as a
//! seed, so this is also their regression test.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let checked = std::panic::catch_unwind(|| check(&bytes));
        assert!(checked.is_ok(), "{} fails its checks", path.display());
        inputs += 1;
    }
    assert!(inputs >= 10, "{target}: only {inputs} corpus inputs");
    eprintln!("{target}: {inputs} inputs pass");
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

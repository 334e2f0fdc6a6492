//! The integration tests, one binary so RocksDB, quinn and the test kit link
//! once. Each module is one former test file; `common` is the shared kit.
//! Tests marked `#[ignore = "soak: ..."]` are the second tier (`make soak`).

mod checkpoints;
mod common;
mod crash_trials;
mod disk;
mod durability;
mod events;
mod expiry;
mod fuzz_corpus;
mod golden;
mod hardening;
mod hostile;
mod import;
mod interop;
mod limits;
mod load;
mod logs;
mod metrics;
mod model;
mod operations;
mod process;
mod quic;
mod races;
mod replay;
mod replication;
mod report;
mod request_ids;
mod retry_after_crash;
mod rules_table;
mod smoke;
mod systemd;

//! voucherd: the redemption ledger of Chongqing's vocational training vouchers.
//!
//! Layout (see README.md for the whole picture):
//! - `domain/`: ids, enumerations, campaigns, records and the pure rules of
//!   DOMAIN.md (`rules.rs`, one function per operation; `command.rs` validates).
//! - `ledger/`: the rules over lock-sharded in-memory indexes, the audit chain
//!   head, idempotent request ids, recovery at start.
//! - `journal.rs`: the durability contract the ledger writes through;
//!   `store/`: its RocksDB implementation with a group-committing thread.
//! - `audit.rs`: audit records, chain verification, the binary export.
//! - `server.rs`, `wire.rs`, `client.rs`, `tls.rs`: the QUIC service and its
//!   frames; `telemetry.rs`: Prometheus metrics; `daemon.rs`: start-up.
//! - `codec.rs`, `digest.rs`, `limits.rs`, `error.rs`: encoding, state digest,
//!   every limit, and the error and reason-code types.
//! - `report.rs`: the bureau's progress report (text, CSV, HTML) from `stats`;
//!   `import.rs`: the attachment 2 form (CSV) into `register_institution` requests.

pub mod audit;
pub mod backup;
pub mod client;
pub mod codec;
pub mod ctl;
pub mod daemon;
pub mod data;
pub mod digest;
pub mod domain;
pub mod engine_limit;
pub mod error;
pub mod import;
pub mod journal;
pub mod ledger;
pub mod limits;
pub mod properties;
pub mod report;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod wire;

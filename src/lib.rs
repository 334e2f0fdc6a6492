//! voucherd: the redemption ledger of Chongqing's vocational training vouchers.
//!
//! Layout, from the pure core outwards (a module uses only those above it;
//! `docs/` has the depth):
//! - `error.rs`, `limits.rs`, `codec.rs`, `metric_names.rs`: leaves. Reason
//!   codes and the one error enum, every limit, versioned record encoding,
//!   the name of every exported metric.
//! - `domain/`: ids, enumerations, campaigns, records and the pure rules of
//!   DOMAIN.md (`rules.rs`, one function per operation; `command.rs` validates).
//! - `audit/`: audit records, the blake3 chain, the binary export.
//! - `store/`: the journal contract and its RocksDB implementation.
//! - `ledger/`: the rules over lock-sharded in-memory indexes, idempotent
//!   request ids, the state digest, recorded campaigns, recovery at start.
//! - `replica/`: replicated mode (the audit log on a JetStream stream, the
//!   leader's lease, standbys replaying the stream); off by default.
//! - `net/`: frames, JSON requests, the QUIC server and client, mutual TLS.
//! - `bureau/`: the progress report and the institution form import.
//! - `admin/`: start-up and configuration, the data folder, backups, the
//!   offline audit tools, the metrics exporter.
//! - `bin/voucherd.rs` (daemon and offline tools), `bin/voucherctl/` (the
//!   operators' command line).

pub mod admin;
pub mod audit;
pub mod bureau;
pub mod codec;
pub mod domain;
pub mod error;
pub mod ledger;
pub mod limits;
pub mod metric_names;
pub mod net;
pub mod replica;
pub mod store;

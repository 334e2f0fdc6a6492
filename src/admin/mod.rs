//! What operators and auditors run around the ledger: the daemon's start-up
//! and configuration, the data folder, backups, the offline audit tools and
//! the metrics exporter.

pub mod backup;
pub mod daemon;
pub mod data_dir;
pub mod http;
pub mod offline;
pub mod telemetry;

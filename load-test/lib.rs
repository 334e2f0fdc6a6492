//! What voucherd's tools and tests share beyond the daemon's library: the
//! test kit (the one daemon process wrapper and the one random workload), the
//! engine-limit measurement (RocksDB alone, no rules, no network) and the
//! properties the fuzz targets check (replayed from the committed corpus by
//! the stable test suite).

pub mod engine_limit;
pub mod frame_reading;
pub mod kit;
pub mod properties;

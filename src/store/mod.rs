//! Durable storage: `journal` is the contract the ledger writes through (and
//! an in-memory journal for tests and replay); `rocks` is its RocksDB
//! implementation with one group-committing thread.

pub mod journal;
pub mod rocks;

pub use rocks::Store;

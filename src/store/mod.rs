//! Durable storage: `journal` is the contract the ledger writes through (and
//! an in-memory journal for tests and replay); `rocks` is its RocksDB
//! implementation with one group-committing thread; `replica` is the hook
//! through which replicated mode sees each group before it is written.

pub mod journal;
pub mod replica;
pub mod rocks;

pub use rocks::Store;

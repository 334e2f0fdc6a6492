//! The audit log: records chained with blake3 (`record`) and the binary
//! export auditors replay offline (`export`).

pub mod export;
pub mod record;

pub use export::{ExportReader, ExportWriter, EXPORT_MAGIC};
pub use record::{
    entry_json, open, seal, AuditRecord, ChainVerifier, AUDIT_RECORD_VERSION,
    CLASSES_REQUIRED_SINCE_VERSION, GENESIS_HASH,
};

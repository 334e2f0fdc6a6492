//! The reason codes of API.md and the one error enum of the crate.
//!
//! `Reason` is the stable, wire-visible refusal code. `Error` sorts failures
//! by what the caller must do: fix input, retry later, or stop (corrupt data, I/O).

use serde::{Deserialize, Serialize};

/// A stable refusal code (API.md, "Reason codes"). Never rename a variant:
/// its snake_case name (strum's, held equal to serde's by a test) is the code.
///
/// Append only: the discriminant is the stored byte; see
/// docs/storage-and-audit.md, Format versions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    InvalidRequest = 0,
    InvalidIdNumber = 1,
    UnknownVoucher = 2,
    UnknownInstitution = 3,
    UnknownDistrict = 4,
    InstitutionExists = 5,
    NotHolder = 6,
    KindAlreadyClaimed = 7,
    NotClaimed = 8,
    AlreadyRedeemed = 9,
    UseLimitReached = 10,
    Expired = 11,
    NotAuthorised = 12,
    OutsideSite = 13,
    DuplicateCheckin = 14,
    NotRedeemed = 15,
    WrongInstitution = 16,
    AlreadyCompleted = 17,
    NotCompleted = 18,
    AlreadyEvaluated = 19,
    AlreadySettled = 20,
    AmountExceedsFaceValue = 21,
    CampaignOpen = 22,
    RequestIdReused = 23,
    ForbiddenRole = 24,
    Overloaded = 25,
    ShuttingDown = 26,
    /// Addition to API.md: the store cannot take writes (disk full, I/O error).
    StorageUnavailable = 27,
    /// Storage failed after the change was handed to it: it may or may not
    /// be on disk. The daemon stops; a retry of the same id once it is back
    /// gets the real outcome (API.md).
    OutcomeUnknown = 28,
    /// `redeem` or `checkin` names a class the institution has not opened.
    UnknownClass = 29,
    /// `open_class` with a code the institution already opened.
    ClassExists = 30,
    /// The class's last day has passed, or a check-in outside its days.
    ClassClosed = 31,
    /// The class is for another kind than the voucher's.
    WrongKind = 32,
    /// An online check-in for an onsite class, or a position for an online one.
    WrongMode = 33,
    /// Addition to API.md (replicated mode): this daemon is a standby; the
    /// message names the leader's address. Retry there with the same id.
    NotLeader = 34,
}

impl Reason {
    /// Every code, in API.md order (additions last): the declaration order.
    pub const ALL: &'static [Reason] = <Reason as strum::VariantArray>::VARIANTS;

    /// The code as it appears on the wire and in JSON.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Transient refusals are not remembered for the request id: a retry may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Reason::Overloaded
                | Reason::ShuttingDown
                | Reason::StorageUnavailable
                | Reason::OutcomeUnknown
                | Reason::NotLeader
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused operation: a stable code and a human message. Changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// Shorthand for building a refusal in rule code: `refuse(Reason::Expired, "...")`.
pub fn refuse<T>(reason: Reason, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(reason, message))
}

/// Failures below the rules, sorted by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from a file, flag or peer: fix it and try again.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Stored data failed a check after reading it back: stop and investigate.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The operating system or RocksDB failed: retry later or stop.
    #[error("storage: {0}")]
    Storage(String),
    /// A peer could not be reached or went away: retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rocksdb::Error> for Error {
    /// RocksDB's checksum and format errors are corruption (stop and
    /// investigate); everything else is a storage failure.
    fn from(error: rocksdb::Error) -> Error {
        match error.kind() {
            rocksdb::ErrorKind::Corruption => Error::Corrupt(error.to_string()),
            _ => Error::Storage(error.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_the_serde_names() {
        for &reason in Reason::ALL {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::Value::from(reason.as_str()),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn reasons_are_stored_as_their_discriminants() {
        crate::codec::assert_encoded_as_discriminants(Reason::ALL, |reason| reason as u32);
    }
}

//! The command line's error type: a message for the operator, from any error
//! (`?` converts), with `fail!`, `bail!` and `ensure!` to make one.

/// What a command-line step failed with; printed as the process exits 1.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A `Failure` from a format string.
macro_rules! fail {
    ($($arg:tt)*) => { $crate::failure::Failure::from(format!($($arg)*)) };
}

/// Returns a `Failure` from a format string.
macro_rules! bail {
    ($($arg:tt)*) => { return Err(fail!($($arg)*)) };
}

/// Returns a `Failure` from a format string unless the condition holds.
macro_rules! ensure {
    ($condition:expr, $($arg:tt)*) => {
        if !$condition {
            bail!($($arg)*);
        }
    };
}

pub(crate) use {bail, ensure, fail};

//! Time as the rules see it: an injected clock and whole-second timestamps.
//!
//! Rules never read the OS clock; the daemon passes `SystemClock`, tests a
//! `ManualClock` they move by hand.

use std::sync::atomic::{AtomicI64, Ordering};

use bincode::{Decode, Encode};
use chrono::{FixedOffset, TimeZone};

/// Seconds since the Unix epoch, UTC.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, serde::Serialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The local calendar day (days since 1970-01-01 at `utc_offset_s`).
    pub fn local_day(self, utc_offset_s: i32) -> i32 {
        i32::try_from((self.0 + i64::from(utc_offset_s)).div_euclid(86_400))
            .expect("days since 1970 fit in i32")
    }

    pub fn local_rfc3339(self, utc_offset_s: i32) -> String {
        let offset = FixedOffset::east_opt(utc_offset_s).expect("valid offset");
        match offset.timestamp_opt(self.0, 0).single() {
            Some(local) => local.to_rfc3339(),
            None => format!("@{}", self.0),
        }
    }
}

/// The offset of every time an answer shows (API.md: RFC 3339 with +08:00).
pub const ANSWER_UTC_OFFSET_S: i32 = 8 * 3600;

/// The local date (YYYY-MM-DD) of a day number from `Timestamp::local_day`.
pub fn day_text(day: i32) -> String {
    let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
        + chrono::Duration::days(i64::from(day));
    date.format("%Y-%m-%d").to_string()
}

/// The day number of a local date written YYYY-MM-DD (the inverse of
/// `day_text`); `None` for any other form or a date that does not exist.
pub fn parse_day(text: &str) -> Option<i32> {
    if text.len() != 10 {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    i32::try_from((date - epoch).num_days()).ok()
}

/// Where the ledger reads "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp())
    }
}

/// The operating system's clock moved by a fixed number of seconds: for
/// measurements that need a date to come (a deadline) on a real daemon
/// (`VOUCHERD_INJECT_CLOCK_OFFSET_S`, docs/decisions.md D42).
pub struct OffsetClock(pub i64);

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0 + self.0)
    }
}

/// A clock tests set and move by hand.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock(AtomicI64::new(at.0))
    }
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn advance_s(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_day_turns_at_local_midnight() {
        // 2026-11-29T15:59:59Z is 23:59:59 in Chongqing; one second later is the next day.
        let before = Timestamp(1_795_967_999);
        let after = Timestamp(1_795_968_000);
        assert_eq!(day_text(before.local_day(8 * 3600)), "2026-11-29");
        assert_eq!(day_text(after.local_day(8 * 3600)), "2026-11-30");
        assert_eq!(day_text(after.local_day(0)), "2026-11-29");
    }
}

//! Wall-clock time as the store keeps it (signed, since the Unix epoch).
//! A clock before 1970 reads as the epoch rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn unix_ms() -> i64 {
    unix_ms_at(SystemTime::now())
}

pub fn unix_ms_at(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

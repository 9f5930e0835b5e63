//! When a failed delivery is tried again.
//!
//! The default schedule is the one Svix and Standard Webhooks receivers are
//! used to: after the first attempt fails, again after 5 s, 5 min, 30 min,
//! 2 h, 5 h, 10 h and 10 h (eight attempts over about 27.5 hours), each
//! delay ±20 % so that a recovering receiver is not hit by every queued
//! event in the same second. A `Retry-After` answer (429 or 503) can only
//! push the next attempt later, up to a day.

use std::time::{Duration, SystemTime};

use rand::Rng;

pub const DEFAULT_SCHEDULE_SECS: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::from_secs(&DEFAULT_SCHEDULE_SECS)
    }
}

impl RetrySchedule {
    pub fn from_secs(delays: &[u64]) -> Self {
        Self {
            delays: delays.iter().map(|s| Duration::from_secs(*s)).collect(),
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> i64 {
        self.delays.len() as i64 + 1
    }

    /// The wait after `attempts` failed attempts, or `None` when that was the
    /// last one. `jitter` is a factor in [0.8, 1.2].
    pub fn delay_after(&self, attempts: i64, jitter: f64, retry_after: Option<Duration>) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let base = self.delays.get(index)?.mul_f64(jitter.clamp(0.8, 1.2));
        Some(match retry_after {
            Some(asked) => base.max(asked.min(MAX_RETRY_AFTER)),
            None => base,
        })
    }
}

pub fn jitter() -> f64 {
    rand::thread_rng().gen_range(0.8..=1.2)
}

/// `Retry-After` as seconds or as an HTTP date; nonsense is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 8);
        assert_eq!(schedule.delay_after(1, 1.0, None), Some(Duration::from_secs(5)));
        assert_eq!(schedule.delay_after(2, 1.0, None), Some(Duration::from_secs(300)));
        assert_eq!(schedule.delay_after(7, 1.0, None), Some(Duration::from_secs(36000)));
        assert_eq!(schedule.delay_after(8, 1.0, None), None);
        assert_eq!(schedule.delay_after(0, 1.0, None), None);
        assert_eq!(schedule.delay_after(1, 1.2, None), Some(Duration::from_secs(6)));
        assert_eq!(
            schedule.delay_after(1, 5.0, None),
            Some(Duration::from_secs(6)),
            "jitter is clamped"
        );
        let total: u64 = DEFAULT_SCHEDULE_SECS.iter().sum();
        assert!((27 * 3600..28 * 3600).contains(&total), "{total}");
    }

    #[test]
    fn retry_after_only_delays_and_is_capped() {
        let schedule = RetrySchedule::default();
        let later = Some(Duration::from_secs(60));
        assert_eq!(schedule.delay_after(1, 1.0, later), Some(Duration::from_secs(60)));
        assert_eq!(
            schedule.delay_after(2, 1.0, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            schedule.delay_after(1, 1.0, Some(Duration::from_secs(10 * 24 * 3600))),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn parses_retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after(" 90 ", now), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}

//! Log hygiene for network-fed values, shared by every stage. A leaf module:
//! it imports nothing of ours, so any stage may use it without an arrow
//! running back up.
//!
//! Two rules keep a hostile peer from turning our log into its amplifier:
//! a string it sent never reaches a span or a line whole ([`clip`]), and a
//! warning it can trigger at will is written at most once per interval per
//! kind ([`LogLimiter`]), with the number suppressed in between.

use std::borrow::Cow;
use std::time::{Duration, Instant};

/// The longest network-fed string that reaches a log line, in characters.
pub const MAX_LOGGED_CHARS: usize = 128;

/// `value`, cut to [`MAX_LOGGED_CHARS`] characters with an ellipsis and the
/// original length when it was longer.
pub fn clip(value: &str) -> Cow<'_, str> {
    clip_to(value, MAX_LOGGED_CHARS)
}

/// [`clip`] with an explicit limit.
pub fn clip_to(value: &str, max_chars: usize) -> Cow<'_, str> {
    match value.char_indices().nth(max_chars) {
        None => Cow::Borrowed(value),
        Some((cut, _)) => Cow::Owned(format!("{}…({} bytes)", &value[..cut], value.len())),
    }
}

/// Lets one line of a kind through per `interval`; counts the rest.
///
/// Keep one per connection (or per listener) and per kind of warning. The
/// caller owns it, so there is no global state and tests inject time through
/// [`LogLimiter::allow_at`].
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// suppressed since the last one; `None` when this one is suppressed.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    pub fn allow_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl Default for LogLimiter {
    /// One line per 10 seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

/// Test support: what the `tracing` subscriber writes on this thread while
/// the capture lives (async tests on a current-thread runtime poll here).
#[cfg(test)]
pub(crate) struct CapturedLog {
    sink: CaptureSink,
    _guard: tracing::subscriber::DefaultGuard,
}

#[cfg(test)]
#[derive(Clone, Default)]
struct CaptureSink(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for CaptureSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl CapturedLog {
    /// Captures lines at `level` and above until dropped.
    pub(crate) fn start(level: tracing::Level) -> Self {
        let sink = CaptureSink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        Self { sink, _guard }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.sink.0.lock()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_values_and_cuts_long_ones_on_char_boundaries() {
        assert!(matches!(clip("live"), Cow::Borrowed("live")));
        let long = "é".repeat(200);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(MAX_LOGGED_CHARS)));
        assert!(clipped.ends_with("…(400 bytes)"));
        assert_eq!(clip_to("abcdef", 3), "abc…(6 bytes)");
        assert_eq!(clip_to("abc", 3), "abc");
    }

    #[test]
    fn limiter_lets_one_through_per_interval_and_counts_the_rest() {
        let mut limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.allow_at(t0), Some(0));
        for s in 1..10 {
            assert_eq!(limiter.allow_at(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(10)), Some(9));
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(25)), Some(1));
    }
}

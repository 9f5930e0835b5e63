//! Part availability lag: from the arrival of the last source frame a part
//! covers to the moment the part is listed. It is the packager's share of the
//! glass-to-glass latency, so it is measured on every part.

use std::collections::VecDeque;
use std::time::Duration;

/// Enough samples for a stable p95 over the last minute of parts.
const KEPT: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct LagSamples {
    micros: VecDeque<u32>,
}

/// Percentiles of the recent part availability lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSummary {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

/// Part availability lag split at the encoder: the total, the video
/// encoder's own share (transcoded renditions only), and everything else,
/// which is what the server is answerable for.
#[derive(Debug, Default)]
pub(crate) struct PartLag {
    pub total: LagSamples,
    pub encoder: LagSamples,
    pub beyond_encoder: LagSamples,
}

impl PartLag {
    pub fn record(&mut self, total: Duration, encoder: Option<Duration>) {
        self.total.record(total);
        if let Some(encoder) = encoder {
            self.encoder.record(encoder);
        }
        self.beyond_encoder
            .record(total.saturating_sub(encoder.unwrap_or_default()));
    }

    pub fn clear(&mut self) {
        self.total.clear();
        self.encoder.clear();
        self.beyond_encoder.clear();
    }

    pub fn summary(&self) -> Option<LagSummary> {
        self.total.summary()
    }
}

impl LagSamples {
    pub fn record(&mut self, lag: Duration) {
        if self.micros.len() == KEPT {
            self.micros.pop_front();
        }
        self.micros
            .push_back(u32::try_from(lag.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn clear(&mut self) {
        self.micros.clear();
    }

    pub fn summary(&self) -> Option<LagSummary> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.micros.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| {
            let index = ((sorted.len() - 1) as f64 * q).round() as usize;
            Duration::from_micros(u64::from(sorted[index.min(sorted.len() - 1)]))
        };
        Some(LagSummary {
            samples: sorted.len(),
            p50: at(0.5),
            p95: at(0.95),
            max: at(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_share_is_split_off() {
        let mut lag = PartLag::default();
        lag.record(Duration::from_millis(90), Some(Duration::from_millis(60)));
        lag.record(Duration::from_millis(20), None);
        assert_eq!(lag.total.summary().map(|s| s.max), Some(Duration::from_millis(90)));
        assert_eq!(lag.encoder.summary().map(|s| s.samples), Some(1));
        let beyond = lag.beyond_encoder.summary().expect("samples");
        assert_eq!((beyond.samples, beyond.max), (2, Duration::from_millis(30)));
        lag.clear();
        assert_eq!(lag.summary(), None);
    }

    #[test]
    fn percentiles_of_recent_samples() {
        let mut lag = LagSamples::default();
        assert_eq!(lag.summary(), None);
        for ms in 1..=100u64 {
            lag.record(Duration::from_millis(ms));
        }
        let s = lag.summary().expect("samples");
        assert_eq!(s.samples, 100);
        assert_eq!(s.p50, Duration::from_millis(51));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.max, Duration::from_millis(100));
        for _ in 0..KEPT {
            lag.record(Duration::from_millis(7));
        }
        assert_eq!(
            lag.summary().map(|s| s.max),
            Some(Duration::from_millis(7)),
            "old samples age out"
        );
    }
}

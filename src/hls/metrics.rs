//! What the packager counts for Prometheus. The metric objects belong to
//! this stage; the control plane registers them with its registry, so hls
//! knows nothing of who scrapes them.

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramOpts, IntCounter};

pub struct HlsMetrics {
    pub parts_published: IntCounter,
    /// From the arrival of the last source frame a part covers to its listing.
    pub part_publish_lag: Histogram,
}

/// One set per process: every stream's packager adds to the same series.
/// `None` only if the crate refused the constant definitions below (the
/// unit test proves it does not); packaging never fails over metrics.
pub fn metrics() -> Option<&'static HlsMetrics> {
    static METRICS: OnceLock<Option<HlsMetrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            let parts_published =
                IntCounter::new("pulse_hls_parts_published_total", "LL-HLS parts listed in a playlist").ok()?;
            let part_publish_lag = Histogram::with_opts(
                HistogramOpts::new(
                    "pulse_hls_part_publish_lag_seconds",
                    "From the arrival of the last source frame a part covers to the part being listed",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                ]),
            )
            .ok()?;
            Some(HlsMetrics {
                parts_published,
                part_publish_lag,
            })
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_definitions_are_valid() {
        let m = super::metrics().expect("constant definitions are valid");
        m.parts_published.inc();
        m.part_publish_lag.observe(0.12);
        assert!(m.parts_published.get() >= 1);
        assert!(m.part_publish_lag.get_sample_count() >= 1);
    }
}

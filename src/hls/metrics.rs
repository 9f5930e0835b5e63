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
pub fn metrics() -> &'static HlsMetrics {
    static METRICS: OnceLock<HlsMetrics> = OnceLock::new();
    METRICS.get_or_init(|| HlsMetrics {
        parts_published: IntCounter::new("pulse_hls_parts_published_total", "LL-HLS parts listed in a playlist")
            .unwrap_or_else(|_| unreachable_metric()),
        part_publish_lag: Histogram::with_opts(
            HistogramOpts::new(
                "pulse_hls_part_publish_lag_seconds",
                "From the arrival of the last source frame a part covers to the part being listed",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
            ]),
        )
        .unwrap_or_else(|_| unreachable_metric()),
    })
}

/// The names and buckets above are constants that the crate accepts; a
/// failure here is a programming error caught by the unit test below.
fn unreachable_metric<T>() -> T {
    panic!("invalid constant metric definition in hls::metrics")
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_definitions_are_valid() {
        let m = super::metrics();
        m.parts_published.inc();
        m.part_publish_lag.observe(0.12);
        assert!(m.parts_published.get() >= 1);
        assert!(m.part_publish_lag.get_sample_count() >= 1);
    }
}

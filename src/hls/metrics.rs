//! What the packager counts for Prometheus. The metric objects belong to
//! this stage; the control plane registers them with its registry, so hls
//! knows nothing of who scrapes them.

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

pub struct HlsMetrics {
    pub parts_published: IntCounter,
    /// From the arrival of the last source frame a part covers to its listing.
    pub part_publish_lag: Histogram,
    /// From an object being queued for the store to its copy being durable.
    pub upload_lag: Histogram,
    /// Queued objects thrown away because the upload buffer was full, by kind.
    pub uploads_dropped: IntCounterVec,
    /// Objects the store refused for good.
    pub uploads_failed: IntCounter,
    /// Attempts that failed and were queued again.
    pub upload_retries: IntCounter,
    /// Bytes queued for the store and not yet durable.
    pub upload_buffer_bytes: IntGauge,
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
            let upload_lag = Histogram::with_opts(
                HistogramOpts::new(
                    "pulse_storage_upload_lag_seconds",
                    "From a media object being queued for the store to its copy being durable",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                ]),
            )
            .ok()?;
            let uploads_dropped = IntCounterVec::new(
                Opts::new(
                    "pulse_storage_uploads_dropped_total",
                    "Queued media objects dropped because the upload buffer was full",
                ),
                &["kind"],
            )
            .ok()?;
            for kind in ["part", "segment", "init"] {
                uploads_dropped.with_label_values(&[kind]);
            }
            let uploads_failed = IntCounter::new(
                "pulse_storage_uploads_failed_total",
                "Media objects the store refused for good",
            )
            .ok()?;
            let upload_retries = IntCounter::new(
                "pulse_storage_upload_retries_total",
                "Store operations that failed and were queued again",
            )
            .ok()?;
            let upload_buffer_bytes = IntGauge::new(
                "pulse_storage_upload_buffer_bytes",
                "Bytes queued for the store and not yet durable",
            )
            .ok()?;
            Some(HlsMetrics {
                parts_published,
                part_publish_lag,
                upload_lag,
                uploads_dropped,
                uploads_failed,
                upload_retries,
                upload_buffer_bytes,
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

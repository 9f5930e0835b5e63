//! Prometheus metrics: one registry for the process, rendered in the classic
//! text format at `/metrics`. Each stage owns the metric objects it updates
//! (hls counts parts itself); this module registers them and adds the
//! control plane's own: live streams, ingest bytes, HTTP requests by route,
//! publish auth failures by reason.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::sync::broadcast;

use super::events::LifecycleEvent;
use super::gate::DenyReason;

/// Protocols whose series exist from the start, at 0.
const PROTOCOLS: [&str; 1] = ["rtmp"];

pub struct Metrics {
    registry: Registry,
    pub streams_live: IntGauge,
    /// Streams whose ladder is behind real time and shedding encodes.
    pub streams_degraded: IntGauge,
    pub ingest_bytes: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    auth_failures: IntCounterVec,
    /// Concurrent viewers by app (sessions, see `viewers`).
    pub viewers: IntGaugeVec,
    pub viewer_seconds: CounterVec,
    /// Response body bytes of playlists, media and keys.
    pub delivered_bytes: IntCounter,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Arc<Self>, MetricsError> {
        let registry = Registry::new();
        let streams_live = IntGauge::new("pulse_streams_live", "Streams with a publisher right now")?;
        let streams_degraded = IntGauge::new(
            "pulse_streams_degraded",
            "Streams whose ladder is behind real time and sheds encodes (stream.degraded until stream.recovered)",
        )?;
        let ingest_bytes = IntCounterVec::new(
            Opts::new("pulse_ingest_bytes_total", "Bytes received from publishers"),
            &["protocol"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "pulse_http_requests_total",
                "HTTP requests by route template and status",
            ),
            &["route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "pulse_http_request_duration_seconds",
                "HTTP request handling time by route template",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0]),
            &["route"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new("pulse_auth_failures_total", "Refused publishes by reason"),
            &["reason"],
        )?;
        let viewers = IntGaugeVec::new(
            Opts::new("pulse_viewers", "Concurrent viewer sessions by app"),
            &["app_id"],
        )?;
        let viewer_seconds = CounterVec::new(
            Opts::new("pulse_viewer_seconds_total", "Viewer time credited, by app"),
            &["app_id"],
        )?;
        let delivered_bytes = IntCounter::new(
            "pulse_delivered_bytes_total",
            "Response body bytes the edge served (playlists, parts, segments, inits, keys)",
        )?;
        for protocol in PROTOCOLS {
            ingest_bytes.with_label_values(&[protocol]);
        }
        for reason in DenyReason::ALL {
            auth_failures.with_label_values(&[reason.as_str()]);
        }
        registry.register(Box::new(streams_live.clone()))?;
        registry.register(Box::new(streams_degraded.clone()))?;
        registry.register(Box::new(ingest_bytes.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(viewers.clone()))?;
        registry.register(Box::new(viewer_seconds.clone()))?;
        registry.register(Box::new(delivered_bytes.clone()))?;
        if let Some(hls) = crate::hls::metrics::metrics() {
            registry.register(Box::new(hls.parts_published.clone()))?;
            registry.register(Box::new(hls.part_publish_lag.clone()))?;
            registry.register(Box::new(hls.upload_lag.clone()))?;
            registry.register(Box::new(hls.uploads_dropped.clone()))?;
            registry.register(Box::new(hls.uploads_failed.clone()))?;
            registry.register(Box::new(hls.upload_retries.clone()))?;
            registry.register(Box::new(hls.upload_buffer_bytes.clone()))?;
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Arc::new(Self {
            registry,
            streams_live,
            streams_degraded,
            ingest_bytes,
            http_requests,
            http_duration,
            auth_failures,
            viewers,
            viewer_seconds,
            delivered_bytes,
        }))
    }

    pub fn render(&self) -> Result<String, MetricsError> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Counts refused publishes from the event bus; runs until the bus closes.
    pub async fn count_auth_failures(self: Arc<Self>, mut events: broadcast::Receiver<LifecycleEvent>) {
        loop {
            match events.recv().await {
                Ok(LifecycleEvent::Rejected { code, .. }) => self.auth_failures.with_label_values(&[code]).inc(),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "metrics missed lifecycle events; auth failure counts are low"
                    )
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// `GET /metrics`.
pub async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Middleware: requests by route template (never the raw path, whose ids
/// would make a series per stream and per viewer) and status.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_exist_at_zero_and_the_text_format_is_classic() {
        let m = Metrics::new().expect("metrics");
        let text = m.render().expect("render");
        assert!(text.contains("# TYPE pulse_streams_live gauge"), "{text}");
        assert!(text.contains("pulse_ingest_bytes_total{protocol=\"rtmp\"} 0"), "{text}");
        assert!(
            text.contains("pulse_auth_failures_total{reason=\"unknown_key\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE pulse_hls_part_publish_lag_seconds histogram"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "OpenMetrics instead of the classic format");
    }

    #[tokio::test]
    async fn http_requests_are_counted_by_route_template_not_by_path() {
        use axum::body::Body;
        use tower::ServiceExt;

        let m = Metrics::new().expect("metrics");
        let router = axum::Router::new()
            .route("/live/{stream}/master.m3u8", axum::routing::get(|| async { "ok" }))
            .route(
                "/api/v1/live/{stream_id}",
                axum::routing::get(|| async { StatusCode::NOT_FOUND }),
            )
            .layer(axum::middleware::from_fn_with_state(m.clone(), track_http));
        for path in [
            "/live/id7f3a/master.m3u8",
            "/live/id7f3b/master.m3u8",
            "/api/v1/live/id7f3c",
            "/live/id7f3d/nothing/here",
        ] {
            let request = Request::builder().uri(path).body(Body::empty()).expect("request");
            router.clone().oneshot(request).await.expect("response");
        }
        let text = m.render().expect("render");
        assert!(
            text.contains("pulse_http_requests_total{route=\"/live/{stream}/master.m3u8\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("pulse_http_requests_total{route=\"/api/v1/live/{stream_id}\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pulse_http_requests_total{route=\"unmatched\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pulse_http_request_duration_seconds_count{route=\"/live/{stream}/master.m3u8\"} 2"),
            "{text}"
        );
        assert!(!text.contains("id7f3"), "a raw path became a label value:\n{text}");
    }

    #[tokio::test]
    async fn auth_failures_are_counted_by_reason_from_the_bus() {
        let m = Metrics::new().expect("metrics");
        let bus = crate::control::EventBus::new(16);
        let task = tokio::spawn(m.clone().count_auth_failures(bus.subscribe()));
        for code in ["unknown_key", "unknown_key", "rate_limited"] {
            bus.publish(LifecycleEvent::Rejected {
                stream: None,
                stream_key_prefix: "live_x…".into(),
                protocol: "rtmp",
                client: "127.0.0.1:1".parse().expect("addr"),
                code,
                reason: "r".into(),
            });
        }
        drop(bus);
        task.await.expect("task");
        assert_eq!(m.auth_failures.with_label_values(&["unknown_key"]).get(), 2);
        assert_eq!(m.auth_failures.with_label_values(&["rate_limited"]).get(), 1);
    }
}

//! Usage metering: ingest minutes, transcoded rendition-minutes, bytes the
//! edge delivered and viewer-seconds, per app, stream and hour. Counted in
//! memory on the hot paths and added to the store's hourly rows every few
//! seconds, so a crash loses at most one flush interval.

pub mod model;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::clock::unix_secs;
use super::store::UsageStore;
use model::{hour_of, UsageDelta, UsageKey};

/// Rows kept for a retry while the store is failing; beyond it the oldest
/// are dropped with an error log (the store has been failing for hours).
const MAX_UNFLUSHED_ROWS: usize = 100_000;

struct Open {
    app_id: String,
    hour: i64,
    delta: UsageDelta,
}

#[derive(Default)]
struct Pending {
    /// The current hour of each stream, looked up by `&str` on every request.
    open: HashMap<String, Open>,
    closed: Vec<(UsageKey, UsageDelta)>,
}

pub struct UsageMeter {
    pending: Mutex<Pending>,
    store: Arc<dyn UsageStore>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl UsageMeter {
    pub fn new(store: Arc<dyn UsageStore>) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            store,
        })
    }

    /// Adds to the stream's current hour. `app_of` runs only when the
    /// stream has no open row yet.
    fn add(
        &self,
        stream_id: &str,
        app_of: impl FnOnce() -> Option<String>,
        at_secs: i64,
        f: impl FnOnce(&mut UsageDelta),
    ) {
        let hour = hour_of(at_secs);
        let mut pending = self.pending.lock();
        let pending = &mut *pending;
        if let Some(open) = pending.open.get_mut(stream_id) {
            if open.hour != hour {
                let finished = std::mem::take(&mut open.delta);
                if !finished.is_empty() {
                    pending.closed.push((
                        UsageKey {
                            app_id: open.app_id.clone(),
                            stream_id: stream_id.to_owned(),
                            hour: open.hour,
                        },
                        finished,
                    ));
                }
                open.hour = hour;
            }
            f(&mut open.delta);
            return;
        }
        let Some(app_id) = app_of() else {
            return;
        };
        let mut delta = UsageDelta::default();
        f(&mut delta);
        pending.open.insert(stream_id.to_owned(), Open { app_id, hour, delta });
    }

    /// `elapsed` of ingest, with `transcoded` renditions being encoded.
    pub fn ingest(&self, app_id: &str, stream_id: &str, elapsed: Duration, transcoded: u32) {
        let ms = millis(elapsed);
        self.add(
            stream_id,
            || Some(app_id.to_owned()),
            unix_secs(),
            |d| {
                d.ingest_ms += ms;
                d.rendition_ms += ms * u64::from(transcoded);
            },
        );
    }

    pub fn delivered(&self, stream_id: &str, app_of: impl FnOnce() -> Option<String>, bytes: u64) {
        self.add(stream_id, app_of, unix_secs(), |d| d.delivered_bytes += bytes);
    }

    pub fn viewers(&self, app_id: &str, stream_id: &str, viewer_ms: u64, concurrent: u64) {
        self.add(
            stream_id,
            || Some(app_id.to_owned()),
            unix_secs(),
            |d| {
                d.viewer_ms += viewer_ms;
                d.peak_viewers = d.peak_viewers.max(concurrent);
            },
        );
    }

    /// Everything counted so far, taken out of memory.
    fn take(&self) -> Vec<(UsageKey, UsageDelta)> {
        let mut pending = self.pending.lock();
        let mut rows = std::mem::take(&mut pending.closed);
        pending.open.retain(|stream_id, open| {
            if open.delta.is_empty() {
                // Nothing this interval: the stream has ended (or idles);
                // its row comes back on its next use.
                return false;
            }
            let delta = std::mem::take(&mut open.delta);
            // The peak carries over: it is the hour's maximum so far.
            open.delta.peak_viewers = delta.peak_viewers;
            rows.push((
                UsageKey {
                    app_id: open.app_id.clone(),
                    stream_id: stream_id.clone(),
                    hour: open.hour,
                },
                delta,
            ));
            true
        });
        rows
    }

    pub async fn flush(&self) {
        let rows = self.take();
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.store.add_usage(&rows).await {
            tracing::error!(error = %e, rows = rows.len(), "usage not written; kept for the next flush");
            let mut pending = self.pending.lock();
            pending.closed.extend(rows);
            let excess = pending.closed.len().saturating_sub(MAX_UNFLUSHED_ROWS);
            if excess > 0 {
                pending.closed.drain(..excess);
                tracing::error!(
                    dropped = excess,
                    "usage rows dropped: the store has been failing too long"
                );
            }
        }
    }

    /// Flushes every `every` until `shutdown`, then once more.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                _ = shutdown.cancelled() => {
                    self.flush().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::SqliteStore;
    use crate::control::usage::model::UsageFilter;

    #[tokio::test]
    async fn counts_reach_the_store_per_hour_and_peaks_survive_a_flush() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.expect("open"));
        let meter = UsageMeter::new(store.clone());
        meter.add("s", || Some("app_a".into()), 3599, |d| d.ingest_ms += 1000);
        meter.add(
            "s",
            || panic!("the open row knows its app"),
            3600,
            |d| d.ingest_ms += 2000,
        );
        meter.viewers("app_a", "s", 500, 4);
        meter.delivered("s", || None, 100);
        meter.delivered("unknown", || None, 100);
        meter.flush().await;
        meter.viewers("app_a", "s", 500, 2);
        meter.flush().await;
        let rows = store
            .usage(&UsageFilter {
                app_id: Some("app_a".into()),
                limit: 10,
                ..UsageFilter::default()
            })
            .await
            .expect("rows");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!((rows[0].hour, rows[0].ingest_minutes), (0, 1000.0 / 60_000.0));
        assert_eq!((rows[1].hour, rows[1].ingest_minutes), (3600, 2000.0 / 60_000.0));
        assert!(rows.iter().all(|r| r.stream_id.as_deref() == Some("s")));
        let now = rows.last().expect("row");
        assert_eq!(now.viewer_seconds, 1.0);
        assert_eq!(now.delivered_bytes, 100);
        assert_eq!(now.peak_viewers, 4);
    }
}

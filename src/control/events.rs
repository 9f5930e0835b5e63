//! The lifecycle event bus. Stages publish what happened to a stream; logging
//! (and, later, webhooks and metrics) subscribe. A slow subscriber loses old
//! events (broadcast lag) instead of slowing the media path.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::sync::broadcast;

use super::gate::DeniedStream;

#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleEvent {
    Connected {
        stream_id: String,
        app_id: String,
        protocol: &'static str,
        client: SocketAddr,
        session: u64,
    },
    Active {
        stream_id: String,
        app_id: String,
        session: u64,
    },
    Disconnected {
        stream_id: String,
        app_id: String,
        session: u64,
        /// `publisher_left`, `kicked`, `server_shutdown` or `server_restart`.
        reason: &'static str,
    },
    Takeover {
        stream_id: String,
        app_id: String,
        old_session: u64,
        new_session: u64,
        protocol: &'static str,
        client: SocketAddr,
    },
    Failed {
        stream_id: String,
        app_id: String,
        session: u64,
        reason: String,
    },
    Warning {
        stream_id: String,
        session: u64,
        message: String,
    },
    /// The ladder fell behind real time and sheds encodes (see `media::overload`).
    Degraded {
        stream_id: String,
        app_id: String,
        session: u64,
        /// Output media time per wall time over the judged window.
        speed: f64,
        /// Renditions encoded at a reduced frame rate, with the divisor.
        shed: Vec<(String, u32)>,
    },
    /// The ladder keeps up again with every rendition at its full rate.
    Recovered {
        stream_id: String,
        app_id: String,
        session: u64,
    },
    Rejected {
        /// Known when the key belongs to a stream (a disabled one, an app at
        /// its limit); a key we do not know names nobody.
        stream: Option<DeniedStream>,
        stream_key_prefix: String,
        protocol: &'static str,
        client: SocketAddr,
        /// Stable label (`unknown_key`, `rate_limited`, …), for metrics.
        code: &'static str,
        reason: String,
    },
    Idle {
        stream_id: String,
        app_id: String,
        /// `reconnect_window_expired` or `server_restart`.
        reason: &'static str,
    },
    ViewersUpdated {
        stream_id: String,
        app_id: String,
        viewers: u64,
        peak_viewers: u64,
        renditions: BTreeMap<String, u64>,
    },
}

#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<LifecycleEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
        }
    }

    pub fn publish(&self, event: LifecycleEvent) {
        // No subscribers is fine: nobody asked.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.tx.subscribe()
    }
}

/// Writes every event to the log; runs until the bus is dropped.
pub async fn log_events(mut rx: broadcast::Receiver<LifecycleEvent>) {
    loop {
        match rx.recv().await {
            Ok(LifecycleEvent::Failed {
                stream_id,
                session,
                reason,
                ..
            }) => {
                tracing::error!(stream_id, session, %reason, "stream failed")
            }
            Ok(LifecycleEvent::Warning {
                stream_id,
                session,
                message,
            }) => {
                tracing::warn!(stream_id, session, %message, "stream warning")
            }
            Ok(LifecycleEvent::Rejected {
                stream_key_prefix,
                protocol,
                client,
                code,
                reason,
                ..
            }) => {
                tracing::warn!(key = stream_key_prefix, protocol, %client, code, %reason, "publish rejected")
            }
            Ok(LifecycleEvent::ViewersUpdated { .. }) => {}
            Ok(LifecycleEvent::Degraded {
                stream_id,
                session,
                speed,
                shed,
                ..
            }) => {
                tracing::warn!(stream_id, session, speed, ?shed, "stream degraded: behind real time")
            }
            Ok(event) => tracing::info!(?event, "lifecycle"),
            Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "event log lagged"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

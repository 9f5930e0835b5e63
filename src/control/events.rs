//! The lifecycle event bus. Stages publish what happened to a stream; logging
//! (and, later, webhooks and metrics) subscribe. A slow subscriber loses old
//! events (broadcast lag) instead of slowing the media path.

use std::net::SocketAddr;

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleEvent {
    Connected {
        stream_id: String,
        protocol: &'static str,
        client: SocketAddr,
        session: u64,
    },
    Active {
        stream_id: String,
        session: u64,
    },
    Disconnected {
        stream_id: String,
        session: u64,
    },
    Takeover {
        stream_id: String,
        old_session: u64,
        new_session: u64,
    },
    Failed {
        stream_id: String,
        session: u64,
        reason: String,
    },
    Warning {
        stream_id: String,
        session: u64,
        message: String,
    },
    Rejected {
        stream_key_prefix: String,
        protocol: &'static str,
        client: SocketAddr,
        /// Stable label (`unknown_key`, `rate_limited`, …), for metrics.
        code: &'static str,
        reason: String,
    },
    Idle {
        stream_id: String,
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
            }) => {
                tracing::warn!(key = stream_key_prefix, protocol, %client, code, %reason, "publish rejected")
            }
            Ok(event) => tracing::info!(?event, "lifecycle"),
            Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "event log lagged"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

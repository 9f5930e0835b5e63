//! Records lifecycle events: onto the in-process bus (logs, metrics) at once,
//! and into the store's outbox, with the stream's new state, in one
//! transaction. Only what is committed reaches webhooks and the live feed,
//! so a receiver never hears of a change the store does not know.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::events::{EventBus, LifecycleEvent};
use super::store::{EventStore, StoreError};
use super::webhooks::model::{EventType, NewEvent, RecordedEvent, StreamState};

/// Committed events kept for slow feed subscribers (the SSE endpoint).
const FEED_CAPACITY: usize = 1024;

pub struct Lifecycle {
    store: Arc<dyn EventStore>,
    bus: EventBus,
    feed: broadcast::Sender<Arc<RecordedEvent>>,
    max_backlog: i64,
    reconnect_window: Duration,
}

impl Lifecycle {
    pub fn new(store: Arc<dyn EventStore>, bus: EventBus, max_backlog: i64, reconnect_window: Duration) -> Self {
        Self {
            store,
            bus,
            feed: broadcast::channel(FEED_CAPACITY).0,
            max_backlog,
            reconnect_window,
        }
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Events as they are committed.
    pub fn feed(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.feed.subscribe()
    }

    pub async fn record(&self, event: LifecycleEvent) {
        self.bus.publish(event.clone());
        if let Some(new) = outbox_event(&event, self.reconnect_window) {
            self.commit(new).await;
        }
    }

    /// Commits an event that has no in-process meaning (a test event).
    pub async fn commit(&self, new: NewEvent) -> Option<Arc<RecordedEvent>> {
        let event_type = new.event_type.as_str();
        let stream_id = new.stream_id.clone();
        match self.store.record_event(new, self.max_backlog).await {
            Ok(recorded) => {
                let recorded = Arc::new(recorded);
                let _ = self.feed.send(recorded.clone());
                Some(recorded)
            }
            Err(e) => {
                tracing::error!(error = %e, event_type, stream_id, "lifecycle event not recorded: webhooks will not carry it");
                None
            }
        }
    }

    /// Streams the previous process left open (it was killed, or stopped
    /// before their reconnect window ran out) are closed now, before any
    /// publisher can connect, so every `stream.connected` a receiver saw
    /// ends in a `stream.idle`.
    pub async fn close_orphans(&self) -> Result<usize, StoreError> {
        let open = self.store.open_streams().await?;
        for stream in &open {
            let session = stream.session.unwrap_or(0);
            if matches!(stream.state, StreamState::Connected | StreamState::Active) {
                self.record(LifecycleEvent::Disconnected {
                    stream_id: stream.stream_id.clone(),
                    app_id: stream.app_id.clone(),
                    session,
                    reason: "server_restart",
                })
                .await;
            }
            self.record(LifecycleEvent::Idle {
                stream_id: stream.stream_id.clone(),
                app_id: stream.app_id.clone(),
                reason: "server_restart",
            })
            .await;
        }
        if !open.is_empty() {
            tracing::info!(streams = open.len(), "closed streams the previous run left open");
        }
        Ok(open.len())
    }
}

fn stream_event(
    event_type: EventType,
    stream_id: &str,
    app_id: &str,
    state: Option<(StreamState, Option<u64>)>,
    data: Value,
) -> NewEvent {
    NewEvent {
        event_type,
        app_id: Some(app_id.to_owned()),
        stream_id: Some(stream_id.to_owned()),
        state,
        data,
        only_endpoint: None,
    }
}

/// What the outbox keeps of an event; `None` for in-process-only ones.
fn outbox_event(event: &LifecycleEvent, reconnect_window: Duration) -> Option<NewEvent> {
    use LifecycleEvent as L;
    Some(match event {
        L::Connected {
            stream_id,
            app_id,
            protocol,
            client,
            session,
        } => stream_event(
            EventType::StreamConnected,
            stream_id,
            app_id,
            Some((StreamState::Connected, Some(*session))),
            json!({ "session": session, "protocol": protocol, "client_ip": client.ip().to_string() }),
        ),
        L::Active {
            stream_id,
            app_id,
            session,
        } => stream_event(
            EventType::StreamActive,
            stream_id,
            app_id,
            Some((StreamState::Active, Some(*session))),
            json!({ "session": session }),
        ),
        L::Disconnected {
            stream_id,
            app_id,
            session,
            reason,
        } => {
            let window = if *reason == "server_restart" {
                0
            } else {
                reconnect_window.as_secs()
            };
            stream_event(
                EventType::StreamDisconnected,
                stream_id,
                app_id,
                Some((StreamState::Disconnected, Some(*session))),
                json!({ "session": session, "reason": reason, "reconnect_window_secs": window }),
            )
        }
        L::Takeover {
            stream_id,
            app_id,
            old_session,
            new_session,
            protocol,
            client,
        } => stream_event(
            EventType::StreamTakeover,
            stream_id,
            app_id,
            Some((StreamState::Connected, Some(*new_session))),
            json!({
                "old_session": old_session,
                "new_session": new_session,
                "protocol": protocol,
                "client_ip": client.ip().to_string(),
            }),
        ),
        L::Failed {
            stream_id,
            app_id,
            session,
            reason,
        } => stream_event(
            EventType::StreamFailed,
            stream_id,
            app_id,
            Some((StreamState::Failed, Some(*session))),
            json!({ "session": session, "reason": reason }),
        ),
        L::Warning { .. } => return None,
        L::Degraded {
            stream_id,
            app_id,
            session,
            speed,
            shed,
        } => stream_event(
            EventType::StreamDegraded,
            stream_id,
            app_id,
            None,
            json!({
                "session": session,
                "speed": (speed * 100.0).round() / 100.0,
                "shed": shed
                    .iter()
                    .map(|(rendition, divisor)| json!({ "rendition": rendition, "frame_rate_divisor": divisor }))
                    .collect::<Vec<_>>(),
            }),
        ),
        L::Recovered {
            stream_id,
            app_id,
            session,
        } => stream_event(
            EventType::StreamRecovered,
            stream_id,
            app_id,
            None,
            json!({ "session": session }),
        ),
        // A key we do not know names no app: no endpoint may hear of it, and
        // recording it would let anyone spraying keys grow the store.
        L::Rejected { stream: None, .. } => return None,
        L::Rejected {
            stream,
            stream_key_prefix,
            protocol,
            client,
            code,
            reason,
        } => NewEvent {
            event_type: EventType::StreamRejected,
            app_id: stream.as_ref().map(|s| s.app_id.clone()),
            stream_id: stream.as_ref().map(|s| s.stream_id.clone()),
            state: None,
            data: json!({
                "protocol": protocol,
                "client_ip": client.ip().to_string(),
                "code": code,
                "reason": reason,
                "stream_key_prefix": stream_key_prefix,
            }),
            only_endpoint: None,
        },
        L::Idle {
            stream_id,
            app_id,
            reason,
        } => stream_event(
            EventType::StreamIdle,
            stream_id,
            app_id,
            Some((StreamState::Idle, None)),
            json!({ "reason": reason }),
        ),
        L::ViewersUpdated {
            stream_id,
            app_id,
            viewers,
            peak_viewers,
            renditions,
        } => stream_event(
            EventType::ViewersUpdated,
            stream_id,
            app_id,
            None,
            json!({ "viewers": viewers, "peak_viewers": peak_viewers, "renditions": renditions }),
        ),
    })
}

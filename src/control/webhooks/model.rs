//! The records of the outbox and the webhook queues, as the store keeps them.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::control::keys::Secret;

/// Every event type we send. The names are part of our public contract
/// (docs/events.md): never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "stream.connected")]
    StreamConnected,
    #[serde(rename = "stream.active")]
    StreamActive,
    #[serde(rename = "stream.disconnected")]
    StreamDisconnected,
    #[serde(rename = "stream.idle")]
    StreamIdle,
    #[serde(rename = "stream.takeover")]
    StreamTakeover,
    #[serde(rename = "stream.failed")]
    StreamFailed,
    #[serde(rename = "stream.rejected")]
    StreamRejected,
    #[serde(rename = "stream.degraded")]
    StreamDegraded,
    #[serde(rename = "stream.recovered")]
    StreamRecovered,
    #[serde(rename = "viewers.updated")]
    ViewersUpdated,
    #[serde(rename = "recording.ready")]
    RecordingReady,
    /// Sent on request to one endpoint, to check it.
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 12] = [
        EventType::StreamConnected,
        EventType::StreamActive,
        EventType::StreamDisconnected,
        EventType::StreamIdle,
        EventType::StreamTakeover,
        EventType::StreamFailed,
        EventType::StreamRejected,
        EventType::StreamDegraded,
        EventType::StreamRecovered,
        EventType::ViewersUpdated,
        EventType::RecordingReady,
        EventType::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::StreamConnected => "stream.connected",
            EventType::StreamActive => "stream.active",
            EventType::StreamDisconnected => "stream.disconnected",
            EventType::StreamIdle => "stream.idle",
            EventType::StreamTakeover => "stream.takeover",
            EventType::StreamFailed => "stream.failed",
            EventType::StreamRejected => "stream.rejected",
            EventType::StreamDegraded => "stream.degraded",
            EventType::StreamRecovered => "stream.recovered",
            EventType::ViewersUpdated => "viewers.updated",
            EventType::RecordingReady => "recording.ready",
            EventType::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// The state a stream is left in by an event, written in the same
/// transaction as the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Connected,
    Active,
    Disconnected,
    Failed,
    Idle,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Connected => "connected",
            StreamState::Active => "active",
            StreamState::Disconnected => "disconnected",
            StreamState::Failed => "failed",
            StreamState::Idle => "idle",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            StreamState::Connected,
            StreamState::Active,
            StreamState::Disconnected,
            StreamState::Failed,
            StreamState::Idle,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An event to record. Events with a stream get the stream's next sequence
/// number; `state`, when given, is the stream's state from now on.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub app_id: Option<String>,
    pub stream_id: Option<String>,
    pub state: Option<(StreamState, Option<u64>)>,
    pub data: Value,
    /// Only this endpoint hears it (a test event); otherwise every enabled
    /// endpoint of the app whose filter takes the type.
    pub only_endpoint: Option<String>,
}

/// An event as committed: `payload` is the exact body we send and sign.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecordedEvent {
    #[serde(skip)]
    pub position: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub app_id: Option<String>,
    pub stream_id: Option<String>,
    pub sequence: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
    /// The exact JSON body sent to endpoints.
    #[serde(rename = "body", serialize_with = "as_json")]
    #[schema(value_type = Object)]
    pub payload: String,
}

/// The stored body as JSON (it always is; text if a row says otherwise).
fn as_json<S: serde::Serializer>(payload: &str, serializer: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(payload) {
        Ok(value) => value.serialize(serializer),
        Err(_) => serializer.serialize_str(payload),
    }
}

/// A stream whose last recorded state is not `idle`: at start-up these are
/// streams the previous process never closed.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenStream {
    pub stream_id: String,
    pub app_id: String,
    pub state: StreamState,
    pub session: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub app_id: String,
    pub url: String,
    pub description: String,
    /// Empty: every type.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why the server disabled it (a 410 answer), if it did.
    pub disabled_reason: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    /// Until then (seconds since the epoch) the previous secret signs too.
    pub previous_secret_expires_at: Option<i64>,
    #[serde(skip)]
    pub secret: Secret,
    #[serde(skip)]
    pub previous_secret: Option<Secret>,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: Secret,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Enabling clears `disabled_reason`.
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Given up on (every attempt failed, or the endpoint's queue was full):
    /// kept, and redeliverable.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One event in one endpoint's queue.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    pub event: RecordedEvent,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// Milliseconds since the epoch.
    pub next_attempt_at_ms: Option<i64>,
    pub last_attempt_at_ms: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// The outcome of one attempt, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
    },
    Retry {
        status: Option<u16>,
        error: String,
        next_attempt_at_ms: i64,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
    /// 410: the delivery stays pending for when the endpoint is enabled again.
    Gone {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct Backlog {
    pub pending: i64,
    pub dead: i64,
    /// Milliseconds since the epoch of the oldest pending event.
    pub oldest_pending_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub app_id: Option<String>,
    pub stream_id: Option<String>,
    pub limit: u32,
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn endpoint_debug_and_json_hold_no_signing_secret() {
        let endpoint = WebhookEndpoint {
            id: "wh_1".into(),
            app_id: "app_1".into(),
            url: "https://hooks.example/x".into(),
            description: String::new(),
            event_types: Vec::new(),
            enabled: true,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
            previous_secret_expires_at: Some(1),
            secret: "whsec_current-secret".into(),
            previous_secret: Some("whsec_previous-secret".into()),
        };
        let new = NewWebhook {
            url: endpoint.url.clone(),
            description: String::new(),
            event_types: Vec::new(),
            secret: "whsec_new-secret".into(),
        };
        let json = serde_json::to_string(&endpoint).expect("json");
        let printed = format!("{endpoint:?} {new:?} {json}");
        for secret in ["current-secret", "previous-secret", "new-secret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}

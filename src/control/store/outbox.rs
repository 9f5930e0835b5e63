//! The durable outbox and the webhook queues, as a store capability of its
//! own: the dispatcher and the lifecycle recorder need this and nothing else.

use async_trait::async_trait;

use super::StoreError;
use crate::control::webhooks::model::{
    AttemptOutcome, Backlog, Delivery, DeliveryFilter, EventFilter, NewEvent, NewWebhook, OpenStream, RecordedEvent,
    WebhookEndpoint, WebhookPatch,
};

#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// In one transaction: the stream's new state and sequence number, the
    /// event, and a delivery for every endpoint that takes it. An endpoint
    /// whose queue already holds `max_backlog` pending deliveries gets this
    /// one as dead (kept, visible and redeliverable) instead.
    async fn record_event(&self, event: NewEvent, max_backlog: i64) -> Result<RecordedEvent, StoreError>;
    /// Streams whose last recorded state is not `idle`.
    async fn open_streams(&self) -> Result<Vec<OpenStream>, StoreError>;
    /// Newest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError>;

    async fn create_webhook(&self, app_id: &str, new: NewWebhook) -> Result<WebhookEndpoint, StoreError>;
    async fn webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Every endpoint, or one app's.
    async fn webhooks(&self, app_id: Option<&str>) -> Result<Vec<WebhookEndpoint>, StoreError>;
    async fn update_webhook(&self, id: &str, patch: WebhookPatch) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// The current secret becomes the previous one until `previous_expires_at`.
    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &str,
        previous_expires_at: i64,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Deletes the endpoint and its queue.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    async fn disable_webhook(&self, id: &str, reason: &str) -> Result<(), StoreError>;

    /// The first pending delivery of each lane (stream), if it is due:
    /// everything that may be sent now without overtaking an earlier event.
    async fn due_deliveries(&self, endpoint_id: &str, now_ms: i64, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// When the earliest pending delivery is due.
    async fn next_attempt_at(&self, endpoint_id: &str) -> Result<Option<i64>, StoreError>;
    async fn finish_attempt(
        &self,
        endpoint_id: &str,
        event_position: i64,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError>;
    /// Newest first.
    async fn deliveries(&self, endpoint_id: &str, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    /// Puts one delivered or dead event back in the queue, due now.
    async fn redeliver(&self, endpoint_id: &str, event_id: &str) -> Result<bool, StoreError>;
    /// Every dead delivery of the endpoint back in the queue; how many.
    async fn redeliver_dead(&self, endpoint_id: &str) -> Result<u64, StoreError>;
    async fn backlog(&self, endpoint_id: &str) -> Result<Backlog, StoreError>;
    /// Deletes events committed before `before_ms` whose deliveries are all
    /// done (delivered or dead), with those deliveries; how many events.
    async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError>;
}

//! Lifecycle webhooks: a durable outbox (events are committed with the state
//! change that caused them), Standard Webhooks signatures, and per-endpoint
//! delivery with retries, ordering per stream and dead-lettering.

pub mod address;
pub mod dispatcher;
pub mod envelope;
pub mod model;
pub mod retry;
pub mod sender;
pub mod service;
pub mod signing;

pub use address::AddressPolicy;
pub use dispatcher::{DispatchSettings, Dispatcher};
pub use model::{EventType, RecordedEvent, WebhookEndpoint};
pub use service::{WebhookError, WebhookService};

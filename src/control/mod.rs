//! The control plane: the stream store, publish authorisation and session
//! wiring, playback tokens and the lifecycle event bus.

pub mod admin;
pub mod audience;
pub mod clock;
pub mod events;
pub mod gate;
pub mod keys;
pub mod lifecycle;
pub mod live;
pub mod metrics;
pub mod model;
pub mod publish;
pub mod recordings;
pub mod sessions;
pub mod sources;
pub mod store;
pub mod tokens;
pub mod usage;
pub mod viewers;
pub mod webhooks;

pub use events::{EventBus, LifecycleEvent};
pub use lifecycle::Lifecycle;
pub use model::Stream;
pub use publish::{PublishController, PublishReporting, PublishSettings};
pub use store::{ControlStore, EventStore, SqliteStore, StoreError, UsageStore};
pub use tokens::{PlaybackClaims, PlaybackTokens, TokenError, TokenRejection};

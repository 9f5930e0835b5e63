//! The control plane: the stream store, publish authorisation and session
//! wiring, playback tokens and the lifecycle event bus.

pub mod events;
pub mod keys;
pub mod publish;
pub mod store;
pub mod tokens;

pub use events::{EventBus, LifecycleEvent};
pub use publish::{PublishController, PublishSettings};
pub use store::{Store, StoreError, Stream};
pub use tokens::{PlaybackClaims, PlaybackTokens, TokenError, TokenRejection};

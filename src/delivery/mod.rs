//! HTTP delivery: playlists, parts, segments, init segments and keys, behind
//! signed playback tokens. Handlers are thin; [`PlaybackService`] holds the
//! rules and is tested without HTTP.

mod error;
mod routes;
mod service;
#[cfg(test)]
mod tests;
mod viewers;
mod vod;

pub use error::DeliveryError;
pub use routes::{router, LONG_LIVED_ROUTES};
pub use service::{PlaybackService, PlaylistQuery};
pub use viewers::{SessionsExhausted, ViewerReporter};
pub use vod::VodLibrary;

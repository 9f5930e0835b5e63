//! HTTP delivery: playlists, parts, segments, init segments and keys, behind
//! signed playback tokens. Handlers are thin; [`PlaybackService`] holds the
//! rules and is tested without HTTP.

mod error;
mod routes;
mod service;
mod viewers;
mod vod;

pub use error::DeliveryError;
pub use routes::router;
pub use service::{PlaybackService, PlaylistQuery};
pub use viewers::ViewerReporter;
pub use vod::VodLibrary;

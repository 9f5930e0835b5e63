//! WHIP ingest (RFC 9725): browsers and OBS publish over WebRTC.
//!
//! - `http.rs`: the endpoint and session resource (POST, PATCH, DELETE, OPTIONS, CORS)
//! - `service.rs`: admission through the `PublishGate`, capacity, supervision
//! - `peer.rs`: webrtcbin, depayloaders, and `MediaPacket`s out
//! - `sdp.rs`: offer checks, trickle fragments, public-address candidates
//! - `vp8.rs`: the VP8 keyframe header (size)

mod error;
#[doc(hidden)]
pub mod fuzz;
mod http;
mod peer;
mod sdp;
mod service;
mod vp8;

pub use error::WhipError;
pub use http::router;
pub use peer::PeerSettings;
pub use service::{Created, WhipService, WhipSettings};

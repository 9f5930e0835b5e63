//! Ingest: protocols that receive a publisher's media and hand it downstream
//! as protocol-neutral `MediaPacket`s through a `PublishGate`: RTMP
//! (`rtmp/`), WHIP (`whip/`) and RTSP pull (`rtsp/`).

pub mod rtmp;
pub mod rtsp;
mod types;
pub mod whip;

pub use types::*;

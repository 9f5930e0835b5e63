//! Ingest: protocols that receive a publisher's media and hand it downstream
//! as protocol-neutral `MediaPacket`s through a `PublishGate`: RTMP
//! (`rtmp/`) and WHIP (`whip/`).

pub mod rtmp;
mod types;
pub mod whip;

pub use types::*;

//! Ingest: protocols that receive a publisher's media and hand it downstream
//! as protocol-neutral `MediaPacket`s through a `PublishGate`.

pub mod rtmp;
mod types;

pub use types::*;

//! RTMP ingest. rml_rtmp is confined to `rml.rs` (handshake, outbound
//! chunks); chunk parsing, AMF0 decoding, FLV tags, timestamps and
//! acknowledgements are ours.

mod ack;
mod amf0;
mod chunk;
mod connection;
mod error;
mod flv;
#[doc(hidden)]
pub mod fuzz;
mod metadata;
mod mpeg_audio;
mod rml;
mod server;
mod settings;
mod timestamp;

#[cfg(test)]
mod tests;

pub use error::RtmpError;
pub use flv::FlvError;
pub use server::RtmpServer;
pub use settings::RtmpSettings;

//! LL-HLS packaging: turns the media ladder's CMAF chunks into parts,
//! segments and playlists (optionally AES-128 encrypted). Parts near the live
//! edge are served from memory; segments (and, for a bucket, parts and inits)
//! are written to an [`crate::storage::ObjectStore`] and dropped from memory
//! once the write has landed (older parts are then cut back out of their
//! stored segment), so a stream's memory stays a few MiB however long its
//! window. In CDN mode playlists point at the bucket and list only what is
//! durable there. Recording streams report their segments for VOD playlists.
//!
//! No m3u8 library writes LL-HLS tags, so playlists are written here.

mod blocking;
mod crypto;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod init;
mod lag;
pub mod metrics;
mod playlist;
mod recording;
mod registry;
mod rendition;
mod session;
mod settings;
mod stream;
mod writer;

#[cfg(test)]
mod tests;

pub use blocking::{PlaylistRequest, SkipRequest};
pub use error::HlsError;
pub use lag::LagSummary;
pub use recording::{
    master_with_query, render_vod_media, RecordedKey, RecordedSegment, RecordingSink, VodSegment, VodUris,
};
pub use registry::{Packagers, StreamOptions};
pub use rendition::RenditionStats;
pub use settings::HlsSettings;
pub use stream::{StreamPackager, StreamStats};
pub use writer::{Unflushed, WriterStats};

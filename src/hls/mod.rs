//! LL-HLS packaging: turns the media ladder's CMAF chunks into parts,
//! segments and playlists (optionally AES-128 encrypted), serves them from
//! memory and copies them to an [`crate::storage::ObjectStore`].
//!
//! No m3u8 library writes LL-HLS tags, so playlists are written here.

mod blocking;
mod crypto;
mod error;
mod init;
mod lag;
mod playlist;
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
pub use registry::Packagers;
pub use rendition::RenditionStats;
pub use settings::HlsSettings;
pub use stream::{StreamPackager, StreamStats};
pub use writer::WriterStats;

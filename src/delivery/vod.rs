//! Recordings (VOD) as delivery sees them: playlists rendered per viewer and
//! media read from the store, behind the same playback tokens as the live
//! stream they were recorded from. The control plane implements it.

use async_trait::async_trait;
use bytes::Bytes;

#[async_trait]
pub trait VodLibrary: Send + Sync + 'static {
    /// The stream a *ready* recording belongs to (tokens are per stream).
    async fn recording_stream(&self, recording: &str) -> Option<String>;
    /// The multivariant playlist, `child_query` on its media playlist URIs.
    async fn master(&self, recording: &str, child_query: &str) -> Option<String>;
    /// A media playlist (ENDLIST), `key_query` on its key URIs.
    async fn media_playlist(&self, recording: &str, rendition: &str, key_query: &str) -> Option<String>;
    async fn key(&self, recording: &str, key_id: u64) -> Option<[u8; 16]>;
    /// An init or segment and its content type; `Err` when the store failed.
    async fn media(
        &self,
        recording: &str,
        rendition: &str,
        file: &str,
    ) -> Result<Option<(Bytes, &'static str)>, String>;
}

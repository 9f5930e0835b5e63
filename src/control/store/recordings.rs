//! Recordings, as a store capability of their own.

use async_trait::async_trait;

use super::StoreError;
use crate::control::recordings::model::{NewRecording, Recording};
use crate::hls::{RecordedSegment, VodSegment};

#[async_trait]
pub trait RecordingStore: Send + Sync + std::fmt::Debug + 'static {
    async fn create_recording(&self, new: NewRecording) -> Result<Recording, StoreError>;
    async fn recording(&self, id: &str) -> Result<Option<Recording>, StoreError>;
    /// Newest first.
    async fn recordings_of(&self, app_id: &str, limit: u32) -> Result<Vec<Recording>, StoreError>;
    /// Still `recording` (a stream running, or a run the server did not see end).
    async fn unfinished_recordings(&self) -> Result<Vec<Recording>, StoreError>;
    async fn set_recording_master(&self, id: &str, master: &str) -> Result<(), StoreError>;
    /// Adds the segment (and its key) once; a repeat is ignored.
    async fn add_recording_segment(&self, id: &str, segment: &RecordedSegment) -> Result<(), StoreError>;
    async fn finish_recording(
        &self,
        id: &str,
        status: &str,
        ended_at: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Renditions with at least one segment, by name.
    async fn recording_renditions(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// In sequence order.
    async fn recording_segments(&self, id: &str, rendition: &str) -> Result<Vec<VodSegment>, StoreError>;
    /// (rendition, init id) pairs that other recordings of the same stream
    /// use too: a stream that came back within its packager's lifetime
    /// shares init segments between its recordings.
    async fn inits_shared_with_others(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError>;
    async fn recording_key(&self, id: &str, key_id: u64) -> Result<Option<[u8; 16]>, StoreError>;
    async fn delete_recording(&self, id: &str) -> Result<bool, StoreError>;
}

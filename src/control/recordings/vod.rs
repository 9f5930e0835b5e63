//! A recording's playlists: written to the store at finalisation (so the
//! bucket holds a complete copy), and rendered per viewer by the edge, which
//! puts the viewer's token on key URIs.

use async_trait::async_trait;
use bytes::Bytes;

use super::model::{Recording, STATUS_READY};
use super::{Recorder, RecordingError};
use crate::delivery::VodLibrary;
use crate::hls::{master_with_query, render_vod_media, VodUris};
use crate::storage::ObjectMeta;

const PLAYLIST_META: ObjectMeta = ObjectMeta {
    content_type: "application/vnd.apple.mpegurl",
    cache_control: "public, max-age=3600",
};

impl Recorder {
    /// Where the stored copy of the playlists goes, next to the live media.
    fn playlist_dir(recording: &Recording) -> String {
        format!("{}/recordings/{}", recording.stream_id, recording.id)
    }

    /// Media URIs of a rendition: the CDN when the app had one, else relative.
    fn media_base(recording: &Recording, rendition: &str, relative: &str) -> String {
        match &recording.cdn_base_url {
            Some(base) => format!("{}/{}/{rendition}/", base.trim_end_matches('/'), recording.stream_id),
            None => relative.to_string(),
        }
    }

    pub(super) async fn write_playlists(&self, recording: &Recording) -> Result<(), RecordingError> {
        let storage = |message: String| RecordingError::Storage {
            recording: recording.id.clone(),
            message,
        };
        let renditions = self.inner.recordings.recording_renditions(&recording.id).await?;
        if renditions.is_empty() {
            return Err(storage("no segment reached the store".into()));
        }
        let store = self.store_of(recording);
        let dir = Self::playlist_dir(recording);
        let key_base = format!("{}/vod/{}/key/", self.inner.settings.public_http_base, recording.id);
        for rendition in &renditions {
            let segments = self
                .inner
                .recordings
                .recording_segments(&recording.id, rendition)
                .await?;
            // From <dir>/<rendition>/index.m3u8 back up to <stream>/<rendition>/.
            let media_base = Self::media_base(recording, rendition, &format!("../../../{rendition}/"));
            let text = render_vod_media(
                &segments,
                VodUris {
                    media_base: &media_base,
                    key_base: &key_base,
                    key_query: "",
                },
            );
            store
                .put(
                    format!("{dir}/{rendition}/index.m3u8"),
                    Bytes::from(text),
                    PLAYLIST_META,
                )
                .await
                .map_err(|e| storage(e.to_string()))?;
        }
        let master = recording.master.clone().unwrap_or_default();
        store
            .put(format!("{dir}/master.m3u8"), Bytes::from(master), PLAYLIST_META)
            .await
            .map_err(|e| storage(e.to_string()))?;
        Ok(())
    }

    /// Every object of the recording: segments, the inits they use, playlists.
    pub(super) async fn object_keys(&self, recording: &Recording) -> Result<Vec<String>, RecordingError> {
        let mut keys = Vec::new();
        let dir = Self::playlist_dir(recording);
        let renditions = self.inner.recordings.recording_renditions(&recording.id).await?;
        // An init another recording of the stream uses too stays.
        let shared = self.inner.recordings.inits_shared_with_others(&recording.id).await?;
        for rendition in &renditions {
            let segments = self
                .inner
                .recordings
                .recording_segments(&recording.id, rendition)
                .await?;
            let mut inits: Vec<u64> = segments.iter().map(|s| s.init_id).collect();
            inits.sort_unstable();
            inits.dedup();
            inits.retain(|id| !shared.iter().any(|(r, other)| r == rendition && other == id));
            let prefix = format!("{}/{rendition}", recording.stream_id);
            keys.extend(segments.iter().map(|s| format!("{prefix}/{}.mp4", s.msn)));
            keys.extend(inits.iter().map(|id| format!("{prefix}/init{id}.mp4")));
            keys.push(format!("{dir}/{rendition}/index.m3u8"));
        }
        keys.push(format!("{dir}/master.m3u8"));
        Ok(keys)
    }

    async fn ready(&self, id: &str) -> Option<Recording> {
        match self.inner.recordings.recording(id).await {
            Ok(Some(recording)) if recording.status == STATUS_READY => Some(recording),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, recording = id, "recording lookup failed");
                None
            }
        }
    }
}

fn is_audio(master: &str, rendition: &str) -> bool {
    let uri = format!("URI=\"{rendition}/index.m3u8\"");
    master
        .lines()
        .any(|line| line.starts_with("#EXT-X-MEDIA:TYPE=AUDIO") && line.contains(&uri))
}

#[async_trait]
impl VodLibrary for Recorder {
    async fn recording_stream(&self, recording: &str) -> Option<String> {
        self.ready(recording).await.map(|r| r.stream_id)
    }

    async fn master(&self, recording: &str, child_query: &str) -> Option<String> {
        let recording = self.ready(recording).await?;
        Some(master_with_query(recording.master.as_deref()?, child_query))
    }

    async fn media_playlist(&self, recording: &str, rendition: &str, key_query: &str) -> Option<String> {
        let recording = self.ready(recording).await?;
        let segments = self
            .inner
            .recordings
            .recording_segments(&recording.id, rendition)
            .await
            .ok()?;
        if segments.is_empty() {
            return None;
        }
        let media_base = Self::media_base(&recording, rendition, "");
        Some(render_vod_media(
            &segments,
            VodUris {
                media_base: &media_base,
                key_base: "../key/",
                key_query,
            },
        ))
    }

    async fn key(&self, recording: &str, key_id: u64) -> Option<[u8; 16]> {
        let recording = self.ready(recording).await?;
        self.inner.recordings.recording_key(&recording.id, key_id).await.ok()?
    }

    async fn media(
        &self,
        recording: &str,
        rendition: &str,
        file: &str,
    ) -> Result<Option<(Bytes, &'static str)>, String> {
        let Some(recording) = self.ready(recording).await else {
            return Ok(None);
        };
        let store = self.store_of(&recording);
        let content_type = if is_audio(recording.master.as_deref().unwrap_or(""), rendition) {
            "audio/mp4"
        } else {
            "video/mp4"
        };
        store
            .get(format!("{}/{rendition}/{file}", recording.stream_id))
            .await
            .map(|found| found.map(|bytes| (bytes, content_type)))
            .map_err(|e| e.to_string())
    }
}

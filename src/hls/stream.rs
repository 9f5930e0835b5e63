//! One stream's packager: shared state plus the read side (playlists and
//! media objects for delivery). The write side is in `session.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;

use super::blocking::{self, PlaylistRequest, Target};
use super::crypto::KeyRing;
use super::error::HlsError;
use super::playlist::{render_master, render_media, MediaPlaylist, StreamTiming};
use super::rendition::{Rendition, RenditionStats};
use super::settings::HlsSettings;
use super::writer::{StoreWriter, WriterStats};

pub(crate) struct StreamState {
    /// In ladder order.
    pub renditions: Vec<Rendition>,
    pub keys: KeyRing,
    pub timing: StreamTiming,
    pub ended: bool,
    /// Removed from the registry: objects deleted, nothing more is packaged.
    pub removed: bool,
    pub session_active: bool,
    /// Sequence number of a rendition created when no other exists.
    pub first_msn: u64,
    pub next_init_id: u64,
    /// End of the latest chunk on the media timeline, so a following session
    /// can continue the timeline instead of restarting it.
    pub timeline_end_ns: u64,
    pub part_lag: super::lag::LagSamples,
}

impl StreamState {
    pub(crate) fn rendition(&self, name: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.name() == name)
    }

    pub(crate) fn rendition_mut(&mut self, name: &str) -> Option<&mut Rendition> {
        self.renditions.iter_mut().find(|r| r.name() == name)
    }
}

/// Snapshot for the lead's stats/admin surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    pub renditions: Vec<RenditionStats>,
    pub target_duration_secs: u64,
    pub part_target: Duration,
    pub ended: bool,
    pub active: bool,
    pub keys_retained: usize,
    pub store: WriterStats,
}

pub struct StreamPackager {
    pub(crate) stream_id: String,
    pub(crate) settings: Arc<HlsSettings>,
    pub(crate) writer: StoreWriter,
    pub(crate) state: Mutex<StreamState>,
    /// Serialises everything that changes media (a session's events,
    /// end_stream, removal) so that encryption can run outside `state`.
    pub(crate) mutation: Mutex<()>,
    /// One publisher session at a time.
    pub(crate) session_gate: Arc<tokio::sync::Mutex<()>>,
}

impl StreamPackager {
    pub(crate) fn new(stream_id: String, settings: Arc<HlsSettings>, writer: StoreWriter) -> Self {
        // Numbers start from the wall clock so that a stream removed and
        // created again never reuses a URL a CDN may still cache (media is
        // served as immutable).
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let segment_ms = u128::from(
            crate::hls::settings::round_ms(crate::hls::settings::duration_ns(settings.segment_target)).max(1),
        );
        let first_msn = u64::try_from(now.as_millis() / segment_ms).unwrap_or(0);
        let timing = StreamTiming {
            target_duration_secs: settings.min_target_duration_secs(),
            part_target_ns: crate::hls::settings::round_ms(settings.part_target_ns()).saturating_mul(1_000_000),
        };
        let state = StreamState {
            renditions: Vec::new(),
            keys: KeyRing::new(settings.key_rotation()),
            timing,
            ended: false,
            removed: false,
            session_active: false,
            first_msn,
            next_init_id: now.as_secs(),
            timeline_end_ns: 0,
            part_lag: Default::default(),
        };
        Self {
            stream_id,
            settings,
            writer,
            state: Mutex::new(state),
            mutation: Mutex::new(()),
            session_gate: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Where the media timeline of the latest session ended; the next
    /// session's ladder starts there.
    pub fn timeline_end(&self) -> Duration {
        Duration::from_nanos(self.state.lock().timeline_end_ns)
    }

    /// Part availability lag of the current (or last) session.
    pub fn part_lag(&self) -> Option<super::LagSummary> {
        self.state.lock().part_lag.summary()
    }

    /// `Content-Type` of a rendition's init, part and segment files (the same
    /// one the store was given), so delivery need not know rendition names.
    pub fn media_content_type(&self, rendition: &str) -> &'static str {
        let state = self.state.lock();
        let audio = state
            .rendition(rendition)
            .is_some_and(|r| super::session::is_audio(&r.spec));
        super::writer::media_meta(audio).content_type
    }

    /// True once every rendition of the current session published a part.
    pub fn is_active(&self) -> bool {
        let state = self.state.lock();
        state.session_active && !state.renditions.is_empty() && state.renditions.iter().all(|r| r.session_parts > 0)
    }

    /// The multivariant playlist; `child_query` (e.g. `token=…`) is appended
    /// to every media playlist URI. None until the ladder named its renditions.
    pub fn master_playlist(&self, child_query: &str) -> Option<String> {
        let state = self.state.lock();
        let specs: Vec<_> = state.renditions.iter().map(|r| &r.spec).collect();
        render_master(&specs, child_query)
    }

    fn blocking_timeout(&self, timing: StreamTiming) -> Duration {
        self.settings
            .blocking_timeout
            .unwrap_or_else(|| Duration::from_secs(timing.target_duration_secs.saturating_mul(3)))
    }

    /// A media playlist, held per `_HLS_msn`/`_HLS_part` until that part or
    /// segment exists; a delta update when `_HLS_skip` is set.
    pub async fn media_playlist(
        &self,
        rendition: &str,
        req: PlaylistRequest,
        key_query: &str,
    ) -> Result<String, HlsError> {
        let what = format!("playlist {}/{rendition}", self.stream_id);
        let (target, edge, timeout) = {
            let state = self.state.lock();
            let r = state
                .rendition(rendition)
                .ok_or_else(|| HlsError::NotFound(what.clone()))?;
            let current = *r.edge.borrow();
            let target = blocking::plan(&req, &current, r.next_msn, state.timing.part_target_ns)?;
            (target, r.edge.subscribe(), self.blocking_timeout(state.timing))
        };
        if let Some(target) = target {
            blocking::wait(edge, target, timeout, &what).await?;
        }
        let state = self.state.lock();
        let r = state
            .rendition(rendition)
            .ok_or_else(|| HlsError::NotFound(what.clone()))?;
        if r.segments.is_empty() {
            return Err(HlsError::NotFound(format!("{what}: nothing published")));
        }
        let playlist = MediaPlaylist {
            rendition: r,
            others: state.renditions.iter().filter(|o| o.name() != rendition).collect(),
            timing: state.timing,
            ended: state.ended,
            skip: req.skip,
            key_query,
        };
        Ok(render_media(&playlist))
    }

    fn part_now(&self, state: &StreamState, rendition: &str, msn: u64, part: u64) -> Result<Option<Bytes>, HlsError> {
        let r = state
            .rendition(rendition)
            .ok_or_else(|| self.not_found(rendition, "rendition"))?;
        let index = usize::try_from(part).ok();
        Ok(r.segment(msn)
            .and_then(|s| s.parts.get(index?))
            .and_then(|p| p.data.clone()))
    }

    fn not_found(&self, rendition: &str, what: &str) -> HlsError {
        HlsError::NotFound(format!("{}/{rendition}: {what}", self.stream_id))
    }

    /// A part's bytes. The preload-hinted part is held until it is complete;
    /// if its segment closes without it, NotFound.
    pub async fn part(&self, rendition: &str, msn: u64, part: u64) -> Result<Bytes, HlsError> {
        let what = format!("part {msn}.{part}");
        let (edge, timeout) = {
            let state = self.state.lock();
            if let Some(data) = self.part_now(&state, rendition, msn, part)? {
                return Ok(data);
            }
            let r = state
                .rendition(rendition)
                .ok_or_else(|| self.not_found(rendition, "rendition"))?;
            if state.ended || r.preload_hint() != (msn, part) {
                return Err(self.not_found(rendition, &what));
            }
            (r.edge.subscribe(), self.blocking_timeout(state.timing))
        };
        blocking::wait(
            edge,
            Target::Part(msn, part),
            timeout,
            &format!("{}/{rendition} {what}", self.stream_id),
        )
        .await?;
        let state = self.state.lock();
        self.part_now(&state, rendition, msn, part)?
            .ok_or_else(|| self.not_found(rendition, &what))
    }

    /// A complete (listed or recently listed) segment.
    pub fn segment(&self, rendition: &str, msn: u64) -> Result<Bytes, HlsError> {
        let state = self.state.lock();
        let r = state
            .rendition(rendition)
            .ok_or_else(|| self.not_found(rendition, "rendition"))?;
        r.segment(msn)
            .and_then(|s| s.data.clone())
            .ok_or_else(|| self.not_found(rendition, &format!("segment {msn}")))
    }

    pub fn init(&self, rendition: &str, init_id: u64) -> Result<Bytes, HlsError> {
        let state = self.state.lock();
        let r = state
            .rendition(rendition)
            .ok_or_else(|| self.not_found(rendition, "rendition"))?;
        r.init_data(init_id)
            .cloned()
            .ok_or_else(|| self.not_found(rendition, &format!("init {init_id}")))
    }

    /// A content key, while any retained segment uses it.
    pub fn key(&self, key_id: u64) -> Result<[u8; 16], HlsError> {
        self.state
            .lock()
            .keys
            .get(key_id)
            .ok_or_else(|| HlsError::NotFound(format!("{}: key {key_id}", self.stream_id)))
    }

    pub fn stats(&self) -> StreamStats {
        let active = self.is_active();
        let state = self.state.lock();
        StreamStats {
            renditions: state.renditions.iter().map(Rendition::stats).collect(),
            target_duration_secs: state.timing.target_duration_secs,
            part_target: Duration::from_nanos(state.timing.part_target_ns),
            ended: state.ended,
            active,
            keys_retained: state.keys.len(),
            store: self.writer.stats(),
        }
    }
}

//! One stream's packager: shared state plus the read side (playlists and
//! media objects for delivery). The write side is in `session.rs`.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;

use super::blocking::{self, PlaylistRequest, Target};
use super::crypto::KeyRing;
use super::error::HlsError;
use super::playlist::{render_master, PlaylistCache, StreamTiming};
use super::rendition::{derive_part, segment_file, Body, Rendition, RenditionStats, SegmentKey};
use super::settings::HlsSettings;
use super::writer::{PendingUploads, StoreWriter, WriterStats};

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
    pub part_lag: super::lag::PartLag,
    /// Rendered media playlists, shared by every request until they change.
    pub playlists: PlaylistCache,
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

/// Where a fetchable object's bytes come from, decided under the state lock
/// and read after it is released.
enum Fetch {
    Memory(Bytes),
    Store(String),
    /// A part cut out of its parent segment in the store.
    PartOf {
        segment: String,
        key: Option<SegmentKey>,
        clear: std::ops::Range<usize>,
    },
}

pub struct StreamPackager {
    /// Store-write callbacks hold this, so a removed stream is not kept alive.
    pub(crate) this: Weak<StreamPackager>,
    pub(crate) stream_id: String,
    pub(crate) settings: Arc<HlsSettings>,
    pub(crate) writer: StoreWriter,
    pub(crate) recorder: Option<Arc<dyn super::RecordingSink>>,
    /// This stream's objects the writer has not finished with.
    pub(crate) pending_uploads: PendingUploads,
    pub(crate) state: Mutex<StreamState>,
    /// Serialises everything that changes media (a session's events,
    /// end_stream, removal) so that encryption can run outside `state`.
    pub(crate) mutation: Mutex<()>,
    /// One publisher session at a time.
    pub(crate) session_gate: Arc<tokio::sync::Mutex<()>>,
    /// Viewers trigger store reads at will: while the store fails, one
    /// warning per interval, not one per request.
    pub(crate) read_warnings: Mutex<crate::logging::LogLimiter>,
}

impl StreamPackager {
    pub(crate) fn new(
        stream_id: String,
        settings: Arc<HlsSettings>,
        writer: StoreWriter,
        this: Weak<StreamPackager>,
        recorder: Option<Arc<dyn super::RecordingSink>>,
    ) -> Self {
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
            playlists: PlaylistCache::default(),
        };
        Self {
            this,
            stream_id,
            settings,
            writer,
            recorder,
            pending_uploads: PendingUploads::default(),
            state: Mutex::new(state),
            mutation: Mutex::new(()),
            session_gate: Arc::new(tokio::sync::Mutex::new(())),
            read_warnings: Mutex::new(crate::logging::LogLimiter::default()),
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
    /// Whether the master playlist can be served yet: the ladder has told
    /// us its renditions.
    pub fn has_renditions(&self) -> bool {
        !self.state.lock().renditions.is_empty()
    }

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
        // Built only when needed: this is the hot path of every player.
        let what = || format!("playlist {}/{rendition}", self.stream_id);
        let wait = {
            let state = self.state.lock();
            let r = state.rendition(rendition).ok_or_else(|| HlsError::NotFound(what()))?;
            let current = *r.edge.borrow();
            blocking::plan(&req, &current, r.next_msn, state.timing.part_target_ns)?
                .map(|target| (target, r.edge.subscribe(), self.blocking_timeout(state.timing)))
        };
        if let Some((target, edge, timeout)) = wait {
            blocking::wait(edge, target, timeout, &what()).await?;
        }
        // The shared template is copied for this viewer outside the lock.
        let template = {
            let mut state = self.state.lock();
            let StreamState {
                renditions,
                playlists,
                timing,
                ended,
                ..
            } = &mut *state;
            let r = renditions
                .iter()
                .find(|r| r.name() == rendition)
                .ok_or_else(|| HlsError::NotFound(what()))?;
            if r.segments.is_empty() {
                return Err(HlsError::NotFound(format!("{}: nothing published", what())));
            }
            playlists
                .media(renditions, rendition, *timing, *ended, req.skip)
                .ok_or_else(|| HlsError::NotFound(what()))?
        };
        Ok(template.assemble(key_query))
    }

    fn part_now(&self, state: &StreamState, rendition: &str, msn: u64, part: u64) -> Result<Option<Fetch>, HlsError> {
        let r = state
            .rendition(rendition)
            .ok_or_else(|| self.not_found(rendition, "rendition"))?;
        let Some(index) = usize::try_from(part).ok() else {
            return Ok(None);
        };
        let Some(segment) = r.segment(msn) else {
            return Ok(None);
        };
        let Some(body) = segment.parts.get(index).and_then(|p| p.data.as_ref()) else {
            return Ok(None);
        };
        Ok(Some(match body.bytes() {
            Some(bytes) => Fetch::Memory(bytes.clone()),
            None => {
                let start: usize = segment.parts.iter().take(index).map(|p| p.clear_len).sum();
                let len = segment.parts.get(index).map_or(0, |p| p.clear_len);
                Fetch::PartOf {
                    segment: self.media_key(rendition, &segment_file(msn)),
                    key: segment.key,
                    clear: start..start + len,
                }
            }
        }))
    }

    fn media_key(&self, rendition: &str, file: &str) -> String {
        format!("{}/{rendition}/{file}", self.stream_id)
    }

    fn fetch(&self, rendition: &str, file: &str, body: &Body) -> Fetch {
        match body.bytes() {
            Some(bytes) => Fetch::Memory(bytes.clone()),
            None => Fetch::Store(self.media_key(rendition, file)),
        }
    }

    /// The bytes of a fetchable object, reading the store when memory was
    /// released. Gone from the store means it just left retention: NotFound.
    async fn resolve(&self, fetch: Fetch) -> Result<Bytes, HlsError> {
        let (key, part) = match fetch {
            Fetch::Memory(bytes) => return Ok(bytes),
            Fetch::Store(key) => (key, None),
            Fetch::PartOf { segment, key, clear } => (segment, Some((key, clear))),
        };
        match self.writer.get(key.clone()).await {
            Ok(Some(bytes)) => match part {
                None => Ok(bytes),
                Some((segment_key, clear)) => {
                    derive_part(&bytes, segment_key.as_ref(), clear.clone()).ok_or_else(|| {
                        if let Some(suppressed) = self.read_warnings.lock().allow() {
                            tracing::warn!(key, ?clear, suppressed, "stored segment does not hold the part");
                        }
                        HlsError::Unavailable(format!("{key}: part {clear:?} not in the stored segment"))
                    })
                }
            },
            Ok(None) => Err(HlsError::NotFound(key)),
            Err(error) => {
                if let Some(suppressed) = self.read_warnings.lock().allow() {
                    tracing::warn!(key, %error, suppressed, "reading media back from the store failed");
                }
                Err(HlsError::Unavailable(format!("{key}: {error}")))
            }
        }
    }

    /// The store copy of segment `msn` is durable: its memory may go, and
    /// in CDN mode it may be listed.
    pub(crate) fn mark_stored(&self, rendition: &str, msn: u64) {
        self.on_stored(rendition, |r, td_ns| r.mark_stored(msn, td_ns));
    }

    /// A part's object is durable (stores that keep parts).
    pub(crate) fn mark_part_stored(&self, rendition: &str, msn: u64, index: usize) {
        self.on_stored(rendition, |r, _| r.mark_part_stored(msn, index));
    }

    pub(crate) fn mark_init_stored(&self, rendition: &str, init_id: u64) {
        self.on_stored(rendition, |r, _| r.mark_init_stored(init_id));
    }

    /// Applies a store copy's landing to the rendition; in CDN mode that may
    /// list something new, so the edge is published (blocked requests wake).
    fn on_stored(&self, rendition: &str, apply: impl FnOnce(&mut Rendition, u64)) {
        let mut state = self.state.lock();
        let td_ns = state.timing.target_duration_secs.saturating_mul(1_000_000_000);
        let ended = state.ended;
        if let Some(r) = state.rendition_mut(rendition) {
            apply(r, td_ns);
            if r.layout.gated {
                r.publish_edge(ended);
            }
        }
    }

    /// Every object this stream handed to the store writer is finished
    /// with (stored, or given up on): its recording is as complete as it gets.
    pub fn uploads_settled(&self) -> bool {
        self.pending_uploads.is_zero()
    }

    fn not_found(&self, rendition: &str, what: &str) -> HlsError {
        HlsError::NotFound(format!("{}/{rendition}: {what}", self.stream_id))
    }

    /// A part's bytes. The preload-hinted part is held until it is complete;
    /// if its segment closes without it, NotFound.
    pub async fn part(&self, rendition: &str, msn: u64, part: u64) -> Result<Bytes, HlsError> {
        let what = format!("part {msn}.{part}");
        let ready = {
            let state = self.state.lock();
            match self.part_now(&state, rendition, msn, part)? {
                Some(fetch) => Ok(fetch),
                None => {
                    let r = state
                        .rendition(rendition)
                        .ok_or_else(|| self.not_found(rendition, "rendition"))?;
                    if state.ended || r.preload_hint() != (msn, part) {
                        return Err(self.not_found(rendition, &what));
                    }
                    Err((r.edge.subscribe(), self.blocking_timeout(state.timing)))
                }
            }
        };
        let (edge, timeout) = match ready {
            Ok(fetch) => return self.resolve(fetch).await,
            Err(wait) => wait,
        };
        blocking::wait(
            edge,
            Target::Part(msn, part),
            timeout,
            &format!("{}/{rendition} {what}", self.stream_id),
        )
        .await?;
        let fetch = {
            let state = self.state.lock();
            self.part_now(&state, rendition, msn, part)?
                .ok_or_else(|| self.not_found(rendition, &what))?
        };
        self.resolve(fetch).await
    }

    /// A complete (listed or recently listed) segment: from memory until its
    /// store copy is durable, from the store after that.
    pub async fn segment(&self, rendition: &str, msn: u64) -> Result<Bytes, HlsError> {
        let fetch = {
            let state = self.state.lock();
            let r = state
                .rendition(rendition)
                .ok_or_else(|| self.not_found(rendition, "rendition"))?;
            r.segment(msn)
                .and_then(|s| s.data.as_ref())
                .map(|body| self.fetch(rendition, &segment_file(msn), body))
                .ok_or_else(|| self.not_found(rendition, &format!("segment {msn}")))?
        };
        self.resolve(fetch).await
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

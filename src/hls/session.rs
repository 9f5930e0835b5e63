//! The write side of a stream: one publisher session's ladder events become
//! parts, segments, inits and keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::crypto::{encrypt_concat, random_block};
use super::error::HlsError;
use super::recording::{RecordedKey, RecordedSegment};
use super::rendition::{init_file, part_file, segment_file, NewSegment, Rendition, SegmentKey, StoreLayout};
use super::settings::{nearest_secs, round_ms};
use super::stream::{StreamPackager, StreamState};
use super::writer::{media_meta, ObjectKind};
use crate::media::{CmafChunk, LadderEvent, RenditionKind, RenditionSpec};

/// Closes the session's open segments however the session ends, including
/// when the caller drops the `run_session` future (takeover, kick).
struct SessionGuard(Arc<StreamPackager>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.finish_session();
    }
}

impl StreamPackager {
    /// Consumes one publisher session's ladder events until `Ended` or the
    /// channel closes. Numbering continues from earlier sessions; each
    /// rendition's first segment of the session carries a discontinuity.
    /// `wallclock_origin` is the wall-clock time of pts 0 (PROGRAM-DATE-TIME).
    pub async fn run_session(
        self: Arc<Self>,
        mut events: mpsc::Receiver<LadderEvent>,
        wallclock_origin: SystemTime,
    ) -> Result<(), HlsError> {
        let span = tracing::info_span!("hls_session", stream = %self.stream_id);
        async move {
            let _gate = self.session_gate.clone().lock_owned().await;
            if !self.begin_session() {
                return Ok(());
            }
            let _guard = SessionGuard(self.clone());
            let mut ladder: Vec<String> = Vec::new();
            while let Some(event) = events.recv().await {
                match event {
                    LadderEvent::Renditions(specs) => ladder = self.set_renditions(specs)?,
                    LadderEvent::Init { rendition, data } => {
                        let name = self.ladder_name(&ladder, rendition)?;
                        self.add_init(name, data)?;
                    }
                    LadderEvent::Chunk { rendition, chunk } => {
                        let name = self.ladder_name(&ladder, rendition)?;
                        self.add_chunk(name, chunk, wallclock_origin)?;
                    }
                    LadderEvent::Warning(message) => tracing::warn!(%message, "ladder warning"),
                    LadderEvent::Ended(result) => {
                        match result {
                            Ok(()) => tracing::info!("ladder ended"),
                            Err(reason) => tracing::warn!(%reason, "ladder failed"),
                        }
                        break;
                    }
                }
                if self.state.lock().removed {
                    tracing::info!("stream removed; packaging stops");
                    break;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Publisher gone for good: closes the open segments, writes ENDLIST and
    /// wakes every held request. A later `run_session` clears ENDLIST.
    pub fn end_stream(&self) {
        let _mutation = self.mutation.lock();
        self.close_open_segments();
        let mut state = self.state.lock();
        state.ended = true;
        state.session_active = false;
        for rendition in &state.renditions {
            rendition.publish_edge(true);
        }
        tracing::info!(stream = %self.stream_id, "hls stream ended");
    }

    /// Forgets everything and deletes the stream's objects from the store;
    /// held requests resolve to NotFound.
    pub(crate) fn shutdown(&self) {
        let _mutation = self.mutation.lock();
        let mut state = self.state.lock();
        state.removed = true;
        state.ended = true;
        state.session_active = false;
        let files: Vec<String> = state
            .renditions
            .iter()
            .flat_map(|r| r.all_files().into_iter().map(|f| self.object_key(r.name(), &f)))
            .collect();
        self.writer.delete(files);
        // Dropping the renditions drops their edge senders, which wakes waiters.
        state.renditions.clear();
        state.keys.clear();
    }

    fn object_key(&self, rendition: &str, file: &str) -> String {
        format!("{}/{rendition}/{file}", self.stream_id)
    }

    fn protocol(&self, reason: impl Into<String>) -> HlsError {
        HlsError::Protocol {
            stream: self.stream_id.clone(),
            reason: reason.into(),
        }
    }

    fn ladder_name<'a>(&self, ladder: &'a [String], index: usize) -> Result<&'a str, HlsError> {
        ladder.get(index).map(String::as_str).ok_or_else(|| {
            self.protocol(format!(
                "event for rendition index {index}, ladder has {}",
                ladder.len()
            ))
        })
    }

    /// False when the stream was removed.
    pub(super) fn begin_session(&self) -> bool {
        let _mutation = self.mutation.lock();
        // A cancelled session may have left segments open.
        self.close_open_segments();
        let mut state = self.state.lock();
        if state.removed {
            return false;
        }
        state.ended = false;
        state.session_active = true;
        state.part_lag.clear();
        for rendition in &mut state.renditions {
            rendition.session_parts = 0;
            rendition.session_init = false;
            rendition.force_new_segment = false;
            rendition.pending_discontinuity = !rendition.segments.is_empty();
            rendition.publish_edge(false);
        }
        tracing::info!("hls session started");
        true
    }

    pub(super) fn finish_session(&self) {
        let _mutation = self.mutation.lock();
        self.close_open_segments();
        let mut state = self.state.lock();
        state.session_active = false;
        if let Some(lag) = state.part_lag.summary() {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let beyond = state.part_lag.beyond_encoder.summary();
            let encoder = state.part_lag.encoder.summary();
            tracing::info!(
                samples = lag.samples,
                p50_ms = ms(lag.p50),
                p95_ms = ms(lag.p95),
                max_ms = ms(lag.max),
                beyond_encoder_p50_ms = beyond.map(|s| ms(s.p50)),
                beyond_encoder_p95_ms = beyond.map(|s| ms(s.p95)),
                encoder_p50_ms = encoder.map(|s| ms(s.p50)),
                encoder_p95_ms = encoder.map(|s| ms(s.p95)),
                "part availability lag"
            );
        }
    }

    /// Maps the ladder onto renditions: same names continue, new names start
    /// at the stream's highest sequence number, missing names are dropped.
    pub(super) fn set_renditions(&self, specs: Vec<RenditionSpec>) -> Result<Vec<String>, HlsError> {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        if names.iter().enumerate().any(|(i, n)| names[..i].contains(n)) {
            return Err(self.protocol(format!("duplicate rendition names in {names:?}")));
        }
        // cmafmux closes a chunk on the first frame boundary at or past the
        // chunk duration, so a part can run one frame over the configured
        // target. Advertise that slack from the start: a PART-TARGET that
        // changes under a player's feet is worse than a slightly larger one.
        let slack = specs.iter().map(frame_duration_ns).max().unwrap_or(0);
        let advertised = round_up_ms(self.settings.part_target_ns().saturating_add(slack));
        let _mutation = self.mutation.lock();
        let mut state = self.state.lock();
        if advertised > state.timing.part_target_ns {
            state.timing.part_target_ns = advertised;
        }
        let first_msn = state
            .renditions
            .iter()
            .map(|r| r.next_msn)
            .max()
            .unwrap_or(state.first_msn);
        let mut old = std::mem::take(&mut state.renditions);
        let mut renditions = Vec::with_capacity(specs.len());
        for spec in specs {
            match old.iter().position(|r| r.spec.name == spec.name) {
                Some(position) => {
                    let mut existing = old.swap_remove(position);
                    existing.spec = spec;
                    renditions.push(existing);
                }
                None => {
                    let mut rendition = Rendition::new(spec, first_msn);
                    rendition.layout = self.store_layout();
                    rendition.media_base = self.settings.cdn_base_url.as_ref().map(|base| {
                        format!(
                            "{}/{}/{}/",
                            base.trim_end_matches('/'),
                            self.stream_id,
                            rendition.name()
                        )
                    });
                    renditions.push(rendition);
                }
            }
        }
        for gone in &old {
            tracing::info!(rendition = gone.name(), "rendition left the ladder; deleting its media");
            let files = gone
                .all_files()
                .into_iter()
                .map(|f| self.object_key(gone.name(), &f))
                .collect();
            self.writer.delete(files);
        }
        state.renditions = renditions;
        retain_keys(&mut state);
        let master = match &self.recorder {
            Some(_) => {
                let specs: Vec<_> = state.renditions.iter().map(|r| &r.spec).collect();
                super::playlist::render_master(&specs, "")
            }
            None => None,
        };
        drop(state);
        if let (Some(recorder), Some(master)) = (&self.recorder, master) {
            recorder.ladder(&self.stream_id, master);
        }
        tracing::info!(renditions = ?names, "ladder renditions");
        Ok(names)
    }

    pub(super) fn add_init(&self, name: &str, data: Bytes) -> Result<(), HlsError> {
        let data = super::init::without_timestamps(&data);
        let _mutation = self.mutation.lock();
        let mut state = self.state.lock();
        let id = state.next_init_id;
        let r = state
            .rendition_mut(name)
            .ok_or_else(|| self.protocol(format!("init for unknown rendition {name}")))?;
        r.session_init = true;
        if r.current_init_data() == Some(&data) {
            return Ok(());
        }
        r.add_init(id, data.clone());
        r.pending_discontinuity |= !r.segments.is_empty();
        if r.open_segment().is_some() {
            r.force_new_segment = true;
        }
        let audio = is_audio(&r.spec);
        state.next_init_id = id.saturating_add(1);
        drop(state);
        let this = self.this.clone();
        let rendition = name.to_string();
        self.writer.put_then(
            self.object_key(name, &init_file(id)),
            data,
            media_meta(audio),
            ObjectKind::Init,
            &self.pending_uploads,
            Box::new(move || {
                if let Some(packager) = this.upgrade() {
                    packager.mark_init_stored(&rendition, id);
                }
            }),
        );
        tracing::debug!(rendition = name, init_id = id, "new init segment");
        Ok(())
    }

    pub(super) fn add_chunk(&self, name: &str, chunk: CmafChunk, wallclock_origin: SystemTime) -> Result<(), HlsError> {
        let _mutation = self.mutation.lock();
        let unknown = || self.protocol(format!("chunk for unknown rendition {name}"));
        let needs_close = {
            let state = self.state.lock();
            let r = state.rendition(name).ok_or_else(unknown)?;
            if !r.session_init || r.current_init.is_none() {
                return Err(self.protocol(format!("chunk for {name} before its init segment")));
            }
            r.open_segment().is_some() && (chunk.starts_segment || r.force_new_segment)
        };
        if needs_close {
            self.close_open_segment(name);
        }

        let (opening, key) = {
            let mut state = self.state.lock();
            let StreamState { renditions, keys, .. } = &mut *state;
            let r = renditions.iter_mut().find(|r| r.name() == name).ok_or_else(unknown)?;
            match r.open_segment() {
                Some(open) => (None, open.key),
                None => {
                    let key = self.settings.encrypt.then(|| {
                        let (key_id, key) = keys.key_for_msn(r.next_msn);
                        SegmentKey {
                            key_id,
                            key,
                            iv: random_block(),
                        }
                    });
                    let program_date_time = wallclock_origin
                        .checked_add(Duration::from_nanos(chunk.pts_ns))
                        .unwrap_or(wallclock_origin);
                    (Some(NewSegment { program_date_time, key }), key)
                }
            }
        };

        let served = match key {
            Some(k) => encrypt_concat(&k.key, &k.iv, std::slice::from_ref(&chunk.data)),
            None => chunk.data.clone(),
        };

        let mut state = self.state.lock();
        state.timeline_end_ns = state
            .timeline_end_ns
            .max(chunk.pts_ns.saturating_add(chunk.duration_ns));
        let ended = state.ended;
        let window = self.settings.window();
        let td_ns = state.timing.target_duration_secs.saturating_mul(1_000_000_000);
        let r = state.rendition_mut(name).ok_or_else(unknown)?;
        if let Some(new) = opening {
            if !chunk.independent {
                tracing::warn!(rendition = name, "segment starts with a chunk that is not independent");
            }
            let Some(init_id) = r.current_init else {
                return Err(self.protocol(format!("chunk for {name} before its init segment")));
            };
            r.begin_segment(init_id, new);
        }
        let part_len = served.len();
        let part_copy = r.layout.parts.then(|| (served.clone(), is_audio(&r.spec)));
        let index = r
            .append_part(served, chunk.data, chunk.duration_ns, chunk.independent)
            .ok_or_else(|| self.protocol("no open segment after opening one"))?;
        let open_msn = r.open_segment().map_or(0, |s| s.msn);
        let open_duration = r.open_segment().map_or(0, |s| s.duration_ns);
        let removed = r.enforce_retention(window, td_ns);
        r.publish_edge(ended);
        let part_ms = round_ms(chunk.duration_ns);
        if part_ms.saturating_mul(1_000_000) > state.timing.part_target_ns {
            tracing::warn!(
                rendition = name,
                part_ms,
                "part longer than PART-TARGET; raising PART-TARGET"
            );
            state.timing.part_target_ns = part_ms.saturating_mul(1_000_000);
        }
        raise_target_duration(&mut state, open_duration);
        retain_keys(&mut state);
        let lag = chunk.source_arrival.map(|arrival| arrival.elapsed());
        if let Some(lag) = lag {
            state.part_lag.record(lag, chunk.encoder_delay);
        }
        drop(state);
        if let Some(metrics) = super::metrics::metrics() {
            metrics.parts_published.inc();
            if let Some(lag) = lag {
                metrics.part_publish_lag.observe(lag.as_secs_f64());
            }
        }

        tracing::trace!(
            rendition = name,
            msn = open_msn,
            part = index,
            bytes = part_len,
            "part published"
        );
        // Parts go to the store only when it keeps them (see `rendition::Body`).
        if let Some((data, audio)) = part_copy {
            self.put_part(name, open_msn, index, data, audio);
        }
        self.delete_files(name, removed);
        Ok(())
    }

    fn close_open_segments(&self) {
        let names: Vec<String> = self
            .state
            .lock()
            .renditions
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        for name in names {
            self.close_open_segment(&name);
        }
    }

    /// Completes the open segment: the parent segment is the concatenation
    /// of its clear parts, encrypted as one resource with the segment's key
    /// and IV. Encryption runs outside the state lock; `mutation` (held by
    /// the caller) keeps other writers out meanwhile.
    fn close_open_segment(&self, name: &str) {
        let work = {
            let state = self.state.lock();
            state
                .rendition(name)
                .and_then(Rendition::open_segment)
                .map(|open| (open.key, open.clear_parts.clone()))
        };
        let Some((key, clear_parts)) = work else {
            return;
        };
        let data = match key {
            Some(k) => encrypt_concat(&k.key, &k.iv, &clear_parts),
            None => {
                let mut whole = BytesMut::with_capacity(clear_parts.iter().map(Bytes::len).sum());
                for part in &clear_parts {
                    whole.extend_from_slice(part);
                }
                whole.freeze()
            }
        };
        let mut state = self.state.lock();
        let ended = state.ended;
        let window = self.settings.window();
        let Some(r) = state.rendition_mut(name) else {
            return;
        };
        let duration = r.open_segment().map_or(0, |s| s.duration_ns);
        let Some(msn) = r.complete_open(data.clone()) else {
            return;
        };
        let audio = is_audio(&r.spec);
        let record = self.recorder.as_ref().and_then(|_| {
            let segment = r.segment(msn)?;
            Some(RecordedSegment {
                stream_id: self.stream_id.clone(),
                rendition: name.to_string(),
                msn,
                duration_ns: segment.duration_ns,
                discontinuity: segment.discontinuity,
                init_id: segment.init_id,
                key: segment.key.map(|k| RecordedKey {
                    key_id: k.key_id,
                    key: k.key,
                    iv: k.iv,
                }),
                program_date_time: segment.program_date_time,
            })
        });
        raise_target_duration(&mut state, duration);
        let td_ns = state.timing.target_duration_secs.saturating_mul(1_000_000_000);
        let Some(r) = state.rendition_mut(name) else {
            return;
        };
        let removed = r.enforce_retention(window, td_ns);
        r.publish_edge(ended);
        retain_keys(&mut state);
        drop(state);
        tracing::debug!(
            rendition = name,
            msn,
            duration_ms = round_ms(duration),
            "segment complete"
        );
        self.put_segment(name, msn, data, audio, record);
        self.delete_files(name, removed);
    }

    fn store_layout(&self) -> StoreLayout {
        let cdn = self.settings.cdn_base_url.is_some();
        StoreLayout {
            parts: cdn || self.writer.stores_parts(),
            gated: cdn,
            keep_media: self.settings.record,
        }
    }

    fn put_part(&self, rendition: &str, msn: u64, index: u64, data: Bytes, audio: bool) {
        let this = self.this.clone();
        let name = rendition.to_string();
        self.writer.put_then(
            self.object_key(rendition, &part_file(msn, index)),
            data,
            media_meta(audio),
            ObjectKind::Part,
            &self.pending_uploads,
            Box::new(move || {
                if let (Some(packager), Ok(index)) = (this.upgrade(), usize::try_from(index)) {
                    packager.mark_part_stored(&name, msn, index);
                }
            }),
        );
    }

    /// Copies a complete segment to the store; once the copy is durable the
    /// packager serves it (and its older parts) from there and drops it from memory.
    /// A recording's segment is reported once durable.
    fn put_segment(&self, rendition: &str, msn: u64, data: Bytes, audio: bool, record: Option<RecordedSegment>) {
        let this = self.this.clone();
        let name = rendition.to_string();
        let recorder = self.recorder.clone();
        self.writer.put_then(
            self.object_key(rendition, &segment_file(msn)),
            data,
            media_meta(audio),
            ObjectKind::Segment,
            &self.pending_uploads,
            Box::new(move || {
                if let (Some(recorder), Some(record)) = (recorder, record) {
                    recorder.segment(record);
                }
                if let Some(packager) = this.upgrade() {
                    packager.mark_stored(&name, msn);
                }
            }),
        );
    }

    fn delete_files(&self, rendition: &str, files: Vec<String>) {
        if !files.is_empty() {
            self.writer
                .delete(files.into_iter().map(|f| self.object_key(rendition, &f)).collect());
        }
    }
}

/// TARGETDURATION covers the longest segment ever listed (the open one
/// included, as its parts are listed) and never decreases. RFC 8216 compares
/// it with the EXTINF *rounded to the nearest integer*: AAC fragments that run
/// a few milliseconds over 2 s must not push every hold-back to 3 × 3 s.
fn raise_target_duration(state: &mut StreamState, segment_ns: u64) {
    let secs = nearest_secs(segment_ns);
    if secs > state.timing.target_duration_secs {
        tracing::info!(target_duration = secs, "TARGETDURATION raised");
        state.timing.target_duration_secs = secs;
    }
}

/// A key lives while any retained segment (of any rendition) may use it.
fn retain_keys(state: &mut StreamState) {
    let oldest = state
        .renditions
        .iter()
        .filter_map(|r| r.segments.front().map(|s| s.msn))
        .min();
    if let Some(oldest) = oldest {
        state.keys.retain_from_msn(oldest);
    }
}

/// Duration of one coded frame: a video frame, or an AAC frame of 1024 samples.
fn frame_duration_ns(spec: &RenditionSpec) -> u64 {
    match spec.kind {
        RenditionKind::Video { framerate, .. } if framerate >= 1.0 => (1e9 / framerate).ceil() as u64,
        RenditionKind::Audio { sample_rate, .. } if sample_rate > 0 => 1024u64 * 1_000_000_000 / u64::from(sample_rate),
        _ => 0,
    }
}

fn round_up_ms(ns: u64) -> u64 {
    ns.div_ceil(1_000_000).saturating_mul(1_000_000)
}

pub(super) fn is_audio(spec: &RenditionSpec) -> bool {
    matches!(spec.kind, RenditionKind::Audio { .. })
}

//! One WHIP publisher's WebRTC peer: a webrtcbin that answers the offer,
//! then depayloads what arrives into protocol-neutral `MediaPacket`s.
//!
//! ```text
//! webrtcbin ─ rtph264depay ─ h264parse ─ avc/au ─ appsink ─┐
//!           ─ rtpvp8depay ─────────────────────── appsink ─┼─► MediaPacket channel
//!           ─ rtpopusdepay ────────────────────── appsink ─┘
//! ```
//!
//! webrtcbin does ICE, DTLS-SRTP, the jitter buffer and RTCP feedback:
//! NACK (retransmission requests) is enabled on every transceiver, and the
//! depayloaders ask for a keyframe (PLI) when they see loss.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use tokio::sync::mpsc;

use super::vp8;
use crate::ingest::{AudioConfig, AudioFrame, IngestCounters, MediaPacket, VideoConfig, VideoFrame};

/// How webrtcbin is set up for every session.
#[derive(Debug, Clone, Default)]
pub struct PeerSettings {
    /// `stun://host:port`, for a server-reflexive candidate.
    pub stun_server: Option<String>,
    /// `turn(s)://user:password@host:port`, for a relayed candidate.
    pub turn_server: Option<crate::control::keys::Secret>,
    /// Local UDP ports ICE may bind; `None` lets the OS choose.
    pub port_range: Option<(u16, u16)>,
    /// Jitter buffer: how long we wait for a retransmission before giving up.
    pub jitter_latency_ms: u32,
    /// How long ICE candidate gathering may take before we answer with what we have.
    pub gather_timeout: Duration,
}

/// What the peer reports to the session that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Connected,
    /// ICE or DTLS failed, or the peer closed.
    Failed(String),
}

/// A negotiated peer. Dropping it does not stop it: call [`Peer::close`].
pub struct Peer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    pub sink: Arc<PacketSink>,
}

/// Turns appsink samples into `MediaPacket`s on GStreamer's streaming threads.
pub struct PacketSink {
    /// Taken at close, which closes the channel whatever GStreamer still holds.
    media: Mutex<Option<mpsc::Sender<MediaPacket>>>,
    counters: Arc<IngestCounters>,
    started: Instant,
    /// Milliseconds after `started` of the last media buffer.
    last_media_ms: AtomicU64,
    keyframe_seen: AtomicBool,
    video: Mutex<Option<VideoConfig>>,
    /// The H.264 caps last read (`codec_data` is the avcC).
    h264_caps: Mutex<Option<gst::Caps>>,
    audio_announced: AtomicBool,
    /// Depayloader sink pads of the video track: a force-key-unit event
    /// pushed upstream from there becomes an RTCP PLI.
    video_pads: Mutex<Vec<gst::Pad>>,
}

impl PacketSink {
    pub fn new(media: mpsc::Sender<MediaPacket>, counters: Arc<IngestCounters>) -> Arc<Self> {
        Arc::new(Self {
            media: Mutex::new(Some(media)),
            counters,
            started: Instant::now(),
            last_media_ms: AtomicU64::new(0),
            keyframe_seen: AtomicBool::new(false),
            video: Mutex::new(None),
            h264_caps: Mutex::new(None),
            audio_announced: AtomicBool::new(false),
            video_pads: Mutex::new(Vec::new()),
        })
    }

    /// Time since the last media buffer (or since the peer started).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_media_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub fn has_video_track(&self) -> bool {
        self.video_pads.lock().map(|p| !p.is_empty()).unwrap_or(false)
    }

    pub fn keyframe_seen(&self) -> bool {
        self.keyframe_seen.load(Ordering::Relaxed)
    }

    /// Asks the publisher for a keyframe (RTCP PLI).
    pub fn request_keyframe(&self) {
        let pads = self.video_pads.lock().map(|p| p.clone()).unwrap_or_default();
        for pad in pads {
            let event = gstreamer_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            pad.push_event(event);
        }
    }

    fn close(&self) {
        if let Ok(mut media) = self.media.lock() {
            media.take();
        }
        if let Ok(mut pads) = self.video_pads.lock() {
            pads.clear();
        }
    }

    fn send(&self, packet: MediaPacket) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(tx) = self.media.lock().ok().and_then(|m| m.clone()) else {
            return Err(gst::FlowError::Flushing);
        };
        self.counters.on_packet(&packet);
        // A streaming thread, not a Tokio worker: blocking here is the
        // back-pressure, as awaiting the send is for RTMP.
        tx.blocking_send(packet).map_err(|_| gst::FlowError::Flushing)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn touch(&self, bytes: usize) {
        self.counters.add_bytes(bytes);
        let now = self.started.elapsed().as_millis() as u64;
        self.last_media_ms.store(now, Ordering::Relaxed);
    }

    fn on_sample(&self, track: Track, sample: &gst::Sample) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(buffer) = sample.buffer() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        self.touch(buffer.size());
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        let running_ms = |ts: Option<gst::ClockTime>| -> Option<i64> {
            let ts = ts?;
            let running = match &segment {
                Some(segment) => segment.to_running_time(ts)?,
                None => ts,
            };
            i64::try_from(running.mseconds()).ok()
        };
        let Some(pts_ms) = running_ms(buffer.pts()) else {
            self.counters.discarded();
            return Ok(gst::FlowSuccess::Ok);
        };
        let data = match buffer.map_readable() {
            Ok(map) => Bytes::copy_from_slice(map.as_slice()),
            Err(_) => {
                self.counters.discarded();
                return Ok(gst::FlowSuccess::Ok);
            }
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        match track {
            Track::H264 => {
                // The decoder configuration is read only when h264parse sends new caps.
                if let Some(avcc) = self.new_h264_caps(sample).and_then(|caps| avcc_of(&caps)) {
                    self.announce_video(VideoConfig::H264 { avcc })?;
                }
                if !self.video_announced() {
                    self.counters.discarded();
                    return Ok(gst::FlowSuccess::Ok);
                }
                let dts_ms = running_ms(buffer.dts()).unwrap_or(pts_ms).min(pts_ms);
                self.video_frame(dts_ms, pts_ms, keyframe, data)
            }
            Track::Vp8 => {
                let size = vp8::keyframe_size(&data);
                if let Some((width, height)) = size {
                    self.announce_video(VideoConfig::Vp8 { width, height })?;
                }
                if !self.video_announced() {
                    self.counters.discarded();
                    return Ok(gst::FlowSuccess::Ok);
                }
                self.video_frame(pts_ms, pts_ms, size.is_some(), data)
            }
            Track::Opus { channels } => {
                if !self.audio_announced.swap(true, Ordering::Relaxed) {
                    self.send(MediaPacket::AudioConfig(AudioConfig::Opus { channels }))?;
                }
                self.send(MediaPacket::Audio(AudioFrame { pts_ms, data }))
            }
        }
    }

    fn video_announced(&self) -> bool {
        self.video.lock().map(|v| v.is_some()).unwrap_or(false)
    }

    /// The sample's caps if they are not the ones seen last (same object = same caps).
    fn new_h264_caps(&self, sample: &gst::Sample) -> Option<gst::Caps> {
        let caps = sample.caps()?;
        let mut last = self.h264_caps.lock().ok()?;
        if last.as_ref().is_some_and(|l| l.as_ptr() == caps.as_ptr()) {
            return None;
        }
        *last = Some(caps.to_owned());
        last.clone()
    }

    fn announce_video(&self, config: VideoConfig) -> Result<(), gst::FlowError> {
        let changed = match self.video.lock() {
            Ok(mut current) if current.as_ref() != Some(&config) => {
                *current = Some(config.clone());
                true
            }
            _ => false,
        };
        if changed {
            self.send(MediaPacket::VideoConfig(config))?;
        }
        Ok(())
    }

    fn video_frame(
        &self,
        dts_ms: i64,
        pts_ms: i64,
        keyframe: bool,
        data: Bytes,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if keyframe {
            self.keyframe_seen.store(true, Ordering::Relaxed);
        }
        self.send(MediaPacket::Video(VideoFrame {
            dts_ms,
            pts_ms,
            keyframe,
            data,
        }))
    }
}

fn avcc_of(caps: &gst::Caps) -> Option<Bytes> {
    let codec_data = caps.structure(0)?.get::<gst::Buffer>("codec_data").ok()?;
    let map = codec_data.map_readable().ok()?;
    Some(Bytes::copy_from_slice(map.as_slice()))
}

#[derive(Debug, Clone, Copy)]
enum Track {
    H264,
    Vp8,
    Opus { channels: u32 },
}

/// Only these reach the answer: what the ladder can decode.
fn codec_preferences() -> gst::Caps {
    // Only packetization-mode 1 (what browsers and OBS send) is depayloaded as whole access units.
    let codecs = [
        ("video", "H264", 90_000i32, Some("1")),
        ("video", "VP8", 90_000, None),
        ("audio", "OPUS", 48_000, None),
    ];
    let mut caps = gst::Caps::new_empty();
    if let Some(caps) = caps.get_mut() {
        for (media, encoding, clock_rate, packetization_mode) in codecs {
            let mut codec = gst::Structure::builder("application/x-rtp")
                .field("media", media)
                .field("encoding-name", encoding)
                .field("clock-rate", clock_rate);
            if let Some(mode) = packetization_mode {
                codec = codec.field("packetization-mode", mode);
            }
            caps.append_structure(codec.build());
        }
    }
    caps
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        format!("GStreamer element {factory} is missing (install gstreamer1.0-plugins-good/-bad and gstreamer1.0-nice)")
    })
}

/// A webrtcbin set up for one session.
fn new_webrtcbin(settings: &PeerSettings) -> Result<gst::Element, String> {
    let webrtc = make("webrtcbin")?;
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    webrtc.set_property("latency", settings.jitter_latency_ms);
    if let Some(stun) = &settings.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    if let Some(turn) = &settings.turn_server {
        webrtc.set_property("turn-server", turn.expose());
    }
    let ice = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
    if let Some((min, max)) = settings.port_range {
        ice.set_property("min-rtp-port", u32::from(min));
        ice.set_property("max-rtp-port", u32::from(max));
    }
    disable_upnp(&ice)?;
    Ok(webrtc)
}

/// libnice asks the LAN's gateway for port mappings (UPnP: SSDP M-SEARCH,
/// then AddPortMapping) for every candidate it gathers, so each WHIP POST
/// would make the server probe the operator's network and open ports on its
/// router. A server has its addresses configured (`whip.public_host`, STUN,
/// TURN); it never wants that.
fn disable_upnp(ice: &gst_webrtc::WebRTCICE) -> Result<(), String> {
    // GstWebRTCNice (the only ICE implementation webrtcbin has in 1.22)
    // exposes its NiceAgent as `agent`.
    if ice.find_property("agent").is_none() {
        return Err(format!(
            "the ICE agent ({}) has no `agent` property: cannot turn UPnP off",
            ice.type_().name()
        ));
    }
    let agent = ice.property::<glib::Object>("agent");
    if agent.find_property("upnp").is_none() {
        return Err(format!("{} has no `upnp` property", agent.type_().name()));
    }
    agent.set_property("upnp", false);
    Ok(())
}

/// Blocks until a promise is answered; `Err` carries webrtcbin's error.
fn wait(promise: &gst::Promise, what: &str) -> Result<Option<gst::Structure>, String> {
    match promise.wait() {
        gst::PromiseResult::Replied => {}
        other => return Err(format!("{what}: promise {other:?}")),
    }
    let reply = promise.get_reply().map(|r| r.to_owned());
    if let Some(error) = reply.as_ref().and_then(|r| r.get::<glib::Error>("error").ok()) {
        return Err(format!("{what}: {error}"));
    }
    Ok(reply)
}

impl Peer {
    /// Builds the peer, applies the offer and returns our answer with every
    /// candidate in it (we do not trickle). Blocking: run off the async runtime.
    pub fn answer(
        name: &str,
        offer: gst_sdp::SDPMessage,
        settings: &PeerSettings,
        sink: Arc<PacketSink>,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(Peer, String), String> {
        let pipeline = gst::Pipeline::with_name(name);
        let webrtc = new_webrtcbin(settings)?;
        pipeline.add(&webrtc).map_err(|e| e.to_string())?;
        let peer = Peer {
            pipeline: pipeline.clone(),
            webrtc: webrtc.clone(),
            sink: sink.clone(),
        };

        webrtc.connect("on-new-transceiver", false, |values| {
            if let Some(transceiver) = values
                .get(1)
                .and_then(|v| v.get::<gst_webrtc::WebRTCRTPTransceiver>().ok())
            {
                transceiver.set_property("do-nack", true);
                transceiver.set_property("codec-preferences", codec_preferences());
            }
            None
        });
        let weak_pipeline = pipeline.downgrade();
        let branch_sink = sink.clone();
        webrtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = weak_pipeline.upgrade() else {
                return;
            };
            if let Err(e) = add_branch(&pipeline, pad, &branch_sink) {
                tracing::warn!(error = %e, "cannot receive this track; it is ignored");
            }
        });
        let state_events = events.clone();
        webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
            let state = webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            let event = match state {
                gst_webrtc::WebRTCPeerConnectionState::Connected => PeerEvent::Connected,
                gst_webrtc::WebRTCPeerConnectionState::Failed => PeerEvent::Failed("ICE/DTLS failed".into()),
                gst_webrtc::WebRTCPeerConnectionState::Closed => PeerEvent::Failed("connection closed".into()),
                _ => return,
            };
            let _ = state_events.send(event);
        });
        let candidates = Arc::new(Mutex::new(Vec::<(u32, String)>::new()));
        let gathered = candidates.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
            if let (Some(mline), Some(candidate), Ok(mut all)) = (mline, candidate, gathered.lock()) {
                all.push((mline, candidate));
            }
            None
        });
        if let Some(bus) = pipeline.bus() {
            let bus_events = events;
            bus.set_sync_handler(move |_, message| {
                if let gst::MessageView::Error(err) = message.view() {
                    let element = message.src().map(|s| s.name().to_string()).unwrap_or_default();
                    let _ = bus_events.send(PeerEvent::Failed(format!("{element}: {}", err.error())));
                }
                gst::BusSyncReply::Drop
            });
        }

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("starting webrtcbin: {e}"))?;
        let result = peer.negotiate(offer, settings.gather_timeout, &candidates);
        match result {
            Ok(answer) => Ok((peer, answer)),
            Err(e) => {
                peer.close();
                Err(e)
            }
        }
    }

    fn negotiate(
        &self,
        offer: gst_sdp::SDPMessage,
        gather_timeout: Duration,
        candidates: &Mutex<Vec<(u32, String)>>,
    ) -> Result<String, String> {
        let offer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
        let promise = gst::Promise::new();
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
        wait(&promise, "applying the offer")?;

        let promise = gst::Promise::new();
        self.webrtc
            .emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        let reply = wait(&promise, "creating the answer")?.ok_or("creating the answer: no reply")?;
        let answer = reply
            .get::<gst_webrtc::WebRTCSessionDescription>("answer")
            .map_err(|e| format!("creating the answer: {e}"))?;

        let promise = gst::Promise::new();
        self.webrtc
            .emit_by_name::<()>("set-local-description", &[&answer, &promise]);
        wait(&promise, "applying the answer")?;

        let deadline = Instant::now() + gather_timeout;
        while self
            .webrtc
            .property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            if Instant::now() >= deadline {
                tracing::warn!(timeout = ?gather_timeout, "ICE gathering not complete; answering with the candidates so far");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let local = self
            .webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .ok_or("no local description after negotiation")?;
        let text = local.sdp().as_text().map_err(|e| format!("writing the answer: {e}"))?;
        let gathered = candidates.lock().map(|c| c.clone()).unwrap_or_default();
        if gathered.is_empty() && !text.contains("a=candidate:") {
            return Err("ICE found no local address to offer (no usable network interface?)".into());
        }
        Ok(with_candidates(&text, &gathered))
    }

    /// A trickled remote candidate.
    pub fn add_remote_candidate(&self, mline: u32, candidate: &str) {
        self.webrtc
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }

    /// Tears the pipeline down and closes the media channel. Blocking.
    pub fn close(&self) {
        self.sink.close();
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
    }
}

/// Puts candidates webrtcbin reported but did not write into each m-section
/// of the answer (webrtcbin 1.22 writes them into the local description as
/// they arrive; this keeps the answer complete if it did not).
fn with_candidates(sdp: &str, candidates: &[(u32, String)]) -> String {
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 100);
    let mut section: Option<u32> = None;
    let flush = |out: &mut String, section: Option<u32>| {
        let Some(index) = section else { return };
        for (_, candidate) in candidates.iter().filter(|(m, _)| *m == index) {
            let line = format!("a={}", candidate.trim_start_matches("a="));
            if !sdp.contains(&line) {
                out.push_str(&line);
                out.push_str("\r\n");
            }
        }
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut out, section);
            section = Some(section.map_or(0, |s| s + 1));
        }
        out.push_str(line);
    }
    flush(&mut out, section);
    out
}

/// Links a new webrtcbin src pad to the depayload branch of its codec.
fn add_branch(pipeline: &gst::Pipeline, pad: &gst::Pad, sink: &Arc<PacketSink>) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let structure = caps.structure(0).ok_or("track without caps")?;
    let encoding = structure
        .get::<&str>("encoding-name")
        .map_err(|_| "track caps without encoding-name")?
        .to_ascii_uppercase();
    let (track, factories): (Track, &[&str]) = match encoding.as_str() {
        "H264" => (Track::H264, &["rtph264depay", "h264parse"]),
        "VP8" => (Track::Vp8, &["rtpvp8depay"]),
        "OPUS" => {
            let channels = structure
                .get::<&str>("encoding-params")
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(2)
                .clamp(1, 2);
            (Track::Opus { channels }, &["rtpopusdepay"])
        }
        other => return Err(format!("codec {other} is not one we take")),
    };
    let mut elements = Vec::new();
    for factory in factories {
        let element = make(factory)?;
        for property in ["request-keyframe", "wait-for-keyframe"] {
            if element.find_property(property).is_some() {
                element.set_property(property, true);
            }
        }
        elements.push(element);
    }
    if matches!(track, Track::H264) {
        let avc = make("capsfilter")?;
        avc.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        );
        elements.push(avc);
    }
    let appsink = gst_app::AppSink::builder().sync(false).build();
    appsink.set_property("async", false);
    let callback_sink = sink.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |appsink| {
                let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                callback_sink.on_sample(track, &sample)
            })
            .build(),
    );
    elements.push(appsink.upcast());
    pipeline.add_many(&elements).map_err(|e| e.to_string())?;
    gst::Element::link_many(&elements).map_err(|e| e.to_string())?;
    for element in &elements {
        element.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    let first = elements
        .first()
        .and_then(|e| e.static_pad("sink"))
        .ok_or("depayloader without sink pad")?;
    pad.link(&first).map_err(|e| format!("linking {encoding}: {e}"))?;
    if !matches!(track, Track::Opus { .. }) {
        if let Ok(mut pads) = sink.video_pads.lock() {
            pads.push(first);
        }
        // The publisher's first frames may be long gone: ask for a keyframe now.
        sink.request_keyframe();
    }
    tracing::info!(codec = %encoding, "receiving track");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_s_ice_agent_has_upnp_off() {
        crate::media::init().expect("gstreamer");
        let webrtc = new_webrtcbin(&PeerSettings {
            port_range: Some((50_000, 50_010)),
            ..PeerSettings::default()
        })
        .expect("webrtcbin");
        let ice = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
        let agent = ice.property::<glib::Object>("agent");
        assert!(!agent.property::<bool>("upnp"), "libnice would probe the LAN with UPnP");
        assert_eq!(ice.property::<u32>("min-rtp-port"), 50_000);
    }

    #[test]
    fn candidates_missing_from_the_answer_are_written_into_their_section() {
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=candidate:1 1 UDP 5 10.0.0.1 5000 typ host\r\nm=video 9 X 96\r\na=mid:1\r\n";
        let out = with_candidates(
            sdp,
            &[
                (0, "candidate:1 1 UDP 5 10.0.0.1 5000 typ host".into()),
                (1, "candidate:2 1 UDP 5 10.0.0.1 5002 typ host".into()),
            ],
        );
        assert_eq!(
            out,
            "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=candidate:1 1 UDP 5 10.0.0.1 5000 typ host\r\n\
             m=video 9 X 96\r\na=mid:1\r\na=candidate:2 1 UDP 5 10.0.0.1 5002 typ host\r\n"
        );
    }
}

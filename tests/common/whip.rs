//! Real WHIP publishers for the tests: headless Chromium on fake capture
//! devices (tests/player/whip.mjs), and a GStreamer webrtcbin client in this
//! process (what simple-whip-client is; Debian 12's build of it aborts at
//! start, see README).

use std::process::Command;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use serde_json::Value;

use super::{manifest_dir, Proc};

/// Options of `tests/player/whip.mjs`.
pub struct ChromiumWhip<'a> {
    pub endpoint: String,
    pub key: &'a str,
    pub seconds: u32,
    pub codec: &'a str,
    pub auth: &'a str,
    pub trickle: bool,
}

impl ChromiumWhip<'_> {
    /// Starts the publisher; its JSON report comes from [`chromium_report`].
    pub fn spawn(&self) -> Proc {
        let script = manifest_dir().join("tests/player/whip.mjs");
        let args: Vec<String> = vec![
            script.display().to_string(),
            self.endpoint.clone(),
            "--key".into(),
            self.key.into(),
            "--seconds".into(),
            self.seconds.to_string(),
            "--codec".into(),
            self.codec.into(),
            "--auth".into(),
            self.auth.into(),
            "--trickle".into(),
            self.trickle.to_string(),
        ];
        Proc::spawn("node", &args)
    }
}

/// Waits for a `whip.mjs` publisher and parses its report (stdout is the
/// JSON line; the log also holds stderr).
pub fn chromium_report(mut proc: Proc, timeout: Duration) -> Value {
    let status = proc.wait_timeout(timeout);
    let log = proc.log();
    assert!(
        status.is_some(),
        "WHIP publisher did not finish within {timeout:?}\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no report from the WHIP publisher\n{log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

pub fn chromium_available() -> bool {
    Command::new("node").arg("--version").output().is_ok() && std::path::Path::new("/usr/bin/chromium").exists()
}

/// A GStreamer publisher: test pattern + sine over webrtcbin, H.264
/// (x264enc) or VP8, Opus; the offer POSTed to a WHIP endpoint.
pub struct GstWhip {
    pipeline: gst::Pipeline,
    pub resource: String,
    pub etag: String,
    /// The `Link` headers (ICE servers), joined with ", ".
    pub link: String,
    pub answer: String,
}

#[derive(Debug)]
pub struct WhipRefused {
    pub status: u16,
    pub retry_after: String,
    pub body: String,
}

impl GstWhip {
    pub async fn publish(endpoint: &str, key: &str, codec: &str) -> Result<GstWhip, WhipRefused> {
        gst::init().expect("gstreamer");
        let video = match codec {
            "h264" => {
                "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=300 \
                       ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 \
                       ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000"
            }
            _ => {
                "vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=300000 ! rtpvp8pay pt=96 \
                  ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
            }
        };
        let description = format!(
            "webrtcbin name=webrtc bundle-policy=max-bundle \
             videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=180,framerate=30/1 \
             ! videoconvert ! {video} ! webrtc. \
             audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 \
             ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! webrtc."
        );
        let pipeline = gst::parse::launch(&description)
            .expect("publisher pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let webrtc = pipeline.by_name("webrtc").expect("webrtcbin");
        pipeline.set_state(gst::State::Playing).expect("playing");
        let offer_webrtc = webrtc.clone();
        let offer = tokio::task::spawn_blocking(move || make_offer(&offer_webrtc))
            .await
            .expect("offer task");

        let mut request = super::http()
            .post(endpoint)
            .header("content-type", "application/sdp")
            .body(offer);
        if !endpoint.ends_with(key) {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("POST offer");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (location, etag, retry_after) = (header("location"), header("etag"), header("retry-after"));
        let link = response
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let body = response.text().await.unwrap_or_default();
        if status != 201 {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(WhipRefused {
                status,
                retry_after,
                body,
            });
        }
        let answer = gst_sdp::SDPMessage::parse_buffer(body.as_bytes()).expect("answer SDP");
        let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, answer);
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        let base = endpoint.split("/whip").next().unwrap_or_default();
        Ok(GstWhip {
            pipeline,
            resource: format!("{base}{location}"),
            etag,
            link,
            answer: body,
        })
    }

    /// Stops sending without telling the server (a crashed encoder).
    pub fn vanish(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }

    /// DELETEs the session, then stops; the DELETE's status.
    pub async fn stop(self) -> u16 {
        let status = super::http()
            .delete(&self.resource)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        self.vanish();
        status
    }
}

impl Drop for GstWhip {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Send-only transceivers, the offer, and every candidate in it (no trickle).
fn make_offer(webrtc: &gst::Element) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    // One transceiver per linked sink pad (video, audio).
    for index in 0..2i32 {
        let transceiver = webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&index]);
        if let Some(transceiver) = transceiver {
            transceiver.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
        }
    }
    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    promise.wait();
    let offer = promise
        .get_reply()
        .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("offer").ok())
        .expect("offer");
    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("set-local-description", &[&offer, &promise]);
    promise.wait();
    while webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
        != gst_webrtc::WebRTCICEGatheringState::Complete
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    webrtc
        .property::<gst_webrtc::WebRTCSessionDescription>("local-description")
        .sdp()
        .as_text()
        .expect("offer text")
}

//! One RTSP session with retina: DESCRIBE, SETUP of the video (H.264 or
//! H.265) and audio (AAC) streams, PLAY, then frames as `MediaPacket`s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};

use super::puller::PullTransport;
use crate::ingest::{AudioConfig, AudioFrame, MediaPacket, VideoConfig, VideoFrame};

/// Why a session could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the camera refused our credentials (RTSP {0})")]
    Unauthorized(u16),
    #[error("RTSP: {0}")]
    Rtsp(String),
    #[error("the camera offers no H.264/H.265 video and no AAC audio (it offers {0})")]
    NoUsableStream(String),
    #[error("no media for {0:?}")]
    Silent(Duration),
    #[error("the camera ended the stream")]
    Ended,
}

impl SessionError {
    fn from_retina(error: retina::Error) -> Self {
        match error.status_code() {
            Some(code @ (401 | 403)) => SessionError::Unauthorized(code),
            _ => SessionError::Rtsp(error.to_string()),
        }
    }
}

/// A session that is playing.
pub struct Playing {
    demuxed: Demuxed,
    video: Option<usize>,
    audio: Option<usize>,
    video_announced: Option<VideoConfig>,
    audio_announced: bool,
}

/// Connects and starts playing. `Ok` means the camera is sending.
pub async fn connect(
    url: &url::Url,
    credentials: Option<(String, String)>,
    transport: PullTransport,
    group: Arc<SessionGroup>,
) -> Result<Playing, SessionError> {
    let options = SessionOptions::default()
        .creds(credentials.map(|(username, password)| Credentials { username, password }))
        .user_agent(format!("pulse-edge/{}", env!("CARGO_PKG_VERSION")))
        .session_group(group);
    let mut session = Session::describe(url.clone(), options)
        .await
        .map_err(SessionError::from_retina)?;
    let streams = session.streams();
    let offered: Vec<String> = streams
        .iter()
        .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
        .collect();
    let video = streams
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"));
    let audio = streams
        .iter()
        .position(|s| s.media() == "audio" && s.encoding_name() == "mpeg4-generic");
    if video.is_none() && audio.is_none() {
        return Err(SessionError::NoUsableStream(offered.join(", ")));
    }
    for index in [video, audio].into_iter().flatten() {
        let transport = match transport {
            PullTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            PullTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        session
            .setup(
                index,
                SetupOptions::default()
                    .transport(transport)
                    .frame_format(FrameFormat::MP4),
            )
            .await
            .map_err(SessionError::from_retina)?;
    }
    let demuxed = session
        .play(PlayOptions::default())
        .await
        .map_err(SessionError::from_retina)?
        .demuxed()
        .map_err(SessionError::from_retina)?;
    Ok(Playing {
        demuxed,
        video,
        audio,
        video_announced: None,
        audio_announced: false,
    })
}

impl Playing {
    /// The next packets to send downstream (a frame, preceded by its
    /// configuration when it is new). `silence` bounds the wait.
    pub async fn next(&mut self, silence: Duration) -> Result<Vec<MediaPacket>, SessionError> {
        loop {
            let item = match tokio::time::timeout(silence, self.demuxed.next()).await {
                Err(_) => return Err(SessionError::Silent(silence)),
                Ok(None) => return Err(SessionError::Ended),
                Ok(Some(Err(e))) => return Err(SessionError::from_retina(e)),
                Ok(Some(Ok(item))) => item,
            };
            match item {
                CodecItem::VideoFrame(frame) if Some(frame.stream_id()) == self.video => {
                    let mut out = Vec::with_capacity(2);
                    // Parameters are read at the first frame and when retina says they changed.
                    if self.video_announced.is_none() || frame.has_new_parameters() {
                        if let Some(config) = self.video_config() {
                            if self.video_announced.as_ref() != Some(&config) {
                                self.video_announced = Some(config.clone());
                                out.push(MediaPacket::VideoConfig(config));
                            }
                        }
                    }
                    if self.video_announced.is_none() {
                        continue;
                    }
                    let ts = frame.timestamp();
                    let pts_ms = ticks_to_ms(ts.elapsed(), ts.clock_rate().get());
                    out.push(MediaPacket::Video(VideoFrame {
                        dts_ms: pts_ms,
                        pts_ms,
                        keyframe: frame.is_random_access_point(),
                        data: Bytes::from(frame.into_data()),
                    }));
                    return Ok(out);
                }
                CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == self.audio => {
                    let mut out = Vec::with_capacity(2);
                    if !self.audio_announced {
                        let Some(asc) = self.audio_config() else { continue };
                        self.audio_announced = true;
                        out.push(MediaPacket::AudioConfig(AudioConfig::Aac { asc }));
                    }
                    let ts = frame.timestamp();
                    out.push(MediaPacket::Audio(AudioFrame {
                        pts_ms: ticks_to_ms(ts.elapsed(), ts.clock_rate().get()),
                        data: Bytes::copy_from_slice(frame.data()),
                    }));
                    return Ok(out);
                }
                _ => continue,
            }
        }
    }

    fn video_config(&self) -> Option<VideoConfig> {
        let stream = self.demuxed.streams().get(self.video?)?;
        let ParametersRef::Video(params) = stream.parameters()? else {
            return None;
        };
        let extra = Bytes::copy_from_slice(params.extra_data());
        let (width, height) = params.pixel_dimensions();
        Some(match stream.encoding_name() {
            "h265" => VideoConfig::H265 {
                hvcc: extra,
                width,
                height,
            },
            _ => VideoConfig::H264 { avcc: extra },
        })
    }

    fn audio_config(&self) -> Option<Bytes> {
        let stream = self.demuxed.streams().get(self.audio?)?;
        match stream.parameters()? {
            ParametersRef::Audio(params) => Some(Bytes::copy_from_slice(params.extra_data())),
            _ => None,
        }
    }
}

fn ticks_to_ms(ticks: i64, clock_rate: u32) -> i64 {
    (i128::from(ticks) * 1000 / i128::from(clock_rate.max(1))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_ticks_become_milliseconds() {
        assert_eq!(ticks_to_ms(90_000, 90_000), 1000);
        assert_eq!(ticks_to_ms(3003, 90_000), 33);
        assert_eq!(ticks_to_ms(48_000 * 3600 * 30, 48_000), 3600 * 30 * 1000);
        assert_eq!(ticks_to_ms(1, 0), 1000);
    }
}

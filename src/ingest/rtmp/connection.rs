//! One RTMP connection: handshake, command flow, publish via the gate and
//! media forwarding. Runs as its own task; every way out is logged once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Span};

use super::ack::AckCounter;
use super::amf0::{self, Amf};
use super::chunk::{ChunkReader, RawMessage, MAX_PUSH};
use super::error::{ConnectionError, EndReason};
use super::flv::{self, AudioTag, FlvError, VideoTag};
use super::metadata;
use super::rml::{HandshakeProgress, Outbound, ServerHandshake};
use super::settings::RtmpSettings;
use super::timestamp::{TimelineExhausted, TrackClock};
use crate::ingest::{
    AudioConfig, AudioFrame, MediaPacket, PublishGate, PublishRequest, PublishSession, RejectCode, VideoConfig,
    VideoFrame,
};
use crate::logging::{clip, LogLimiter};

const READ_BUFFER: usize = MAX_PUSH;
/// After sending a final error status, how long we wait for the client to
/// read it and hang up before we drop the socket.
const LINGER: Duration = Duration::from_secs(2);

enum Flow {
    Continue,
    Close(EndReason),
}

/// What the connections of one listener share.
pub(crate) struct Shared {
    pub(crate) settings: RtmpSettings,
    pub(crate) gate: Arc<dyn PublishGate>,
    /// Paces the end-of-connection line of connections that never
    /// published: anyone can open those at will.
    pub(crate) unpublished_end_log: Mutex<LogLimiter>,
}

impl Shared {
    pub(crate) fn new(settings: RtmpSettings, gate: Arc<dyn PublishGate>) -> Self {
        Self {
            settings,
            gate,
            unpublished_end_log: Mutex::new(LogLimiter::default()),
        }
    }
}

pub(crate) struct Connection {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    socket: TcpStream,
    shutdown: CancellationToken,
    span: Span,
    reader: ChunkReader,
    out: Outbound,
    pending: Vec<u8>,
    ack: AckCounter,
    app: Option<String>,
    next_stream_id: u32,
    publish: Option<Publishing>,
    /// Until a publish reaches the gate, the connection must get there by
    /// this instant.
    publish_deadline: Option<Instant>,
    /// A publish was accepted at some point (the session may have ended).
    published: bool,
}

struct Publishing {
    message_stream_id: u32,
    session: PublishSession,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    avcc: Option<Bytes>,
    nal_length_size: usize,
    /// The audio configuration last sent downstream.
    audio_config: Option<AudioConfig>,
    dropped_before_config: u64,
    malformed_tags: u64,
}

impl Connection {
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        socket: TcpStream,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
        span: Span,
    ) -> Self {
        let settings = &shared.settings;
        Self {
            id,
            peer,
            reader: ChunkReader::new(settings.max_message_size_before_publish)
                .with_max_chunk_streams(settings.max_chunk_streams),
            ack: AckCounter::new(settings.window_ack_size),
            publish_deadline: Some(Instant::now() + settings.publish_timeout),
            published: false,
            shared,
            socket,
            shutdown,
            span,
            out: Outbound::new(),
            pending: Vec::new(),
            app: None,
            next_stream_id: 1,
            publish: None,
        }
    }

    /// Drives the connection to its end and logs why it ended.
    pub(crate) async fn run(mut self) {
        let outcome = self.drive().await;
        self.log_end(&outcome);
        if let Ok(EndReason::MediaClosed)
        | Err(ConnectionError::Rejected(_) | ConnectionError::Refused(_) | ConnectionError::Unsupported(_)) = outcome
        {
            self.linger_close().await;
        }
    }

    /// One line per connection. Connections that never published share a
    /// listener-wide pace (the rest go to debug), so a flood of bad
    /// connections cannot flood the log.
    fn log_end(&self, outcome: &Result<EndReason, ConnectionError>) {
        let bytes_in = self.ack.total_received();
        let paced = if self.published {
            Some(None)
        } else {
            self.shared.unpublished_end_log.lock().allow().map(Some)
        };
        let Some(suppressed) = paced else {
            match outcome {
                Ok(closed) => debug!(reason = ?closed, bytes_in, "connection closed"),
                Err(err) => debug!(error = %clip(&err.to_string()), bytes_in, "connection dropped"),
            }
            return;
        };
        match outcome {
            Ok(closed) => info!(reason = ?closed, bytes_in, suppressed, "connection closed"),
            Err(
                err @ (ConnectionError::Rejected(_) | ConnectionError::Refused(_) | ConnectionError::Unsupported(_)),
            ) => warn!(error = %clip(&err.to_string()), suppressed, "connection closed"),
            Err(err) => warn!(error = %clip(&err.to_string()), bytes_in, suppressed, "connection dropped"),
        }
    }

    async fn drive(&mut self) -> Result<EndReason, ConnectionError> {
        let handshake_timeout = self.shared.settings.handshake_timeout;
        let shutdown = self.shutdown.clone();
        let deadline = self.publish_deadline;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(EndReason::Shutdown),
            _ = until(deadline) => return Err(ConnectionError::PublishTimeout(self.shared.settings.publish_timeout)),
            result = tokio::time::timeout(handshake_timeout, self.handshake()) => match result {
                Err(_) => return Err(ConnectionError::HandshakeTimeout(handshake_timeout)),
                Ok(result) => result?,
            },
        }
        debug!("handshake done");
        let outcome = self.serve_messages().await;
        if let Ok(EndReason::MediaClosed) = outcome {
            // The ladder behind this publish failed: say so, so that the
            // encoder shows an error instead of a dropped connection.
            let stream_id = self.publish.as_ref().map_or(1, |p| p.message_stream_id);
            self.send_status(
                stream_id,
                "error",
                "NetStream.Publish.Failed",
                "stream failed on the server",
            )?;
        }
        // Whatever ended the session, tell the peer what we queued (error
        // statuses in particular) before the socket goes away.
        if !self.pending.is_empty() {
            let _ = tokio::time::timeout(LINGER, self.flush()).await;
        }
        outcome
    }

    async fn handshake(&mut self) -> Result<(), ConnectionError> {
        let mut handshake = ServerHandshake::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = self.socket.read(&mut buf).await?;
            if n == 0 {
                return Err(ConnectionError::PeerClosed);
            }
            self.count_received(n)?;
            let data = buf.get(..n).unwrap_or_default();
            match handshake.feed(data)? {
                HandshakeProgress::InProgress { reply } => self.socket.write_all(&reply).await?,
                HandshakeProgress::Done { reply, leftover } => {
                    self.socket.write_all(&reply).await?;
                    self.reader.push(&leftover);
                    return Ok(());
                }
            }
        }
    }

    async fn serve_messages(&mut self) -> Result<EndReason, ConnectionError> {
        let mut buf = vec![0u8; READ_BUFFER];
        let idle = self.shared.settings.idle_timeout;
        // Messages that arrived right behind C2.
        if let Flow::Close(closed) = self.process_buffered().await? {
            return Ok(closed);
        }
        loop {
            self.flush().await?;
            let watched = self
                .publish
                .as_ref()
                .map(|p| (p.session.kicked.clone(), p.session.media.clone()));
            let deadline = self.publish_deadline;
            let read = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(EndReason::Shutdown),
                _ = kicked(&watched) => return Ok(EndReason::Kicked),
                _ = media_closed(&watched) => return Ok(EndReason::MediaClosed),
                _ = until(deadline) => return Err(ConnectionError::PublishTimeout(self.shared.settings.publish_timeout)),
                read = tokio::time::timeout(idle, self.socket.read(&mut buf)) => read,
            };
            let n = match read {
                Err(_) => return Err(ConnectionError::Idle(idle)),
                Ok(Err(err)) => return Err(err.into()),
                Ok(Ok(0)) => return Ok(EndReason::PeerClosed),
                Ok(Ok(n)) => n,
            };
            self.count_received(n)?;
            self.reader.push(buf.get(..n).unwrap_or_default());
            if let Flow::Close(closed) = self.process_buffered().await? {
                return Ok(closed);
            }
        }
    }

    fn count_received(&mut self, n: usize) -> Result<(), ConnectionError> {
        if let Some(publishing) = &self.publish {
            publishing.session.counters.add_bytes(n);
        }
        if let Some(sequence) = self.ack.on_received(n) {
            debug!(sequence, "acknowledging");
            let bytes = self.out.acknowledgement(sequence)?;
            self.pending.extend(bytes);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let idle = self.shared.settings.idle_timeout;
        let idle_at = Instant::now() + idle;
        let publish_due = self.publish_deadline.filter(|due| *due < idle_at);
        match tokio::time::timeout_at(publish_due.unwrap_or(idle_at), self.socket.write_all(&self.pending)).await {
            Err(_) if publish_due.is_some() => {
                return Err(ConnectionError::PublishTimeout(self.shared.settings.publish_timeout))
            }
            Err(_) => return Err(ConnectionError::Idle(idle)),
            Ok(result) => result?,
        }
        self.pending.clear();
        Ok(())
    }

    /// Half-closes and waits briefly for the peer to hang up, so that the
    /// final status is read rather than lost to a reset.
    async fn linger_close(&mut self) {
        let _ = self.socket.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while matches!(self.socket.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    async fn process_buffered(&mut self) -> Result<Flow, ConnectionError> {
        while let Some(message) = self.reader.next_message()? {
            if let Flow::Close(closed) = self.on_message(message).await? {
                return Ok(Flow::Close(closed));
            }
        }
        Ok(Flow::Continue)
    }

    async fn on_message(&mut self, message: RawMessage) -> Result<Flow, ConnectionError> {
        match message.type_id {
            1 => {
                let size = be_u32(&message.payload, "Set Chunk Size")? & 0x7fff_ffff;
                debug!(size, "peer set chunk size");
                self.reader.set_chunk_size(size)?;
            }
            2 => self.reader.abort(be_u32(&message.payload, "Abort")?),
            5 => {
                let window = be_u32(&message.payload, "Window Acknowledgement Size")?;
                debug!(window, "peer set its acknowledgement window");
                self.ack.set_window(window);
            }
            8 => return self.on_audio(message).await,
            9 => return self.on_video(message).await,
            15 | 18 => return self.on_data(&message).await,
            17 | 20 => return self.on_command(message).await,
            // Acknowledgement, User Control, Set Peer Bandwidth: nothing to do
            // for a publisher-facing server.
            3 | 4 | 6 => {}
            other => debug!(type_id = other, "ignoring RTMP message type"),
        }
        Ok(Flow::Continue)
    }

    async fn on_data(&mut self, message: &RawMessage) -> Result<Flow, ConnectionError> {
        let values = amf0::decode_all(amf_body(message)).map_err(|source| ConnectionError::Amf {
            what: "data message",
            source,
        })?;
        match metadata::from_data_message(&values) {
            Some(meta) => {
                debug!(meta = %clip(&format!("{meta:?}")), "metadata");
                self.forward(MediaPacket::Metadata(meta)).await
            }
            None => {
                debug!(first = %clip(&format!("{:?}", values.first())), "ignoring data message");
                Ok(Flow::Continue)
            }
        }
    }

    async fn on_command(&mut self, message: RawMessage) -> Result<Flow, ConnectionError> {
        let values = amf0::decode_all(amf_body(&message)).map_err(|source| ConnectionError::Amf {
            what: "command",
            source,
        })?;
        let Some(name) = values.first().and_then(Amf::as_str) else {
            return Err(ConnectionError::BadMessage {
                what: "command",
                reason: "no command name".into(),
            });
        };
        let transaction_id = values.get(1).and_then(Amf::as_number).unwrap_or(0.0);
        let command_object = values.get(2).cloned().unwrap_or(Amf::Null);
        let args = values.get(3..).unwrap_or_default();
        let first_arg_str = args.first().and_then(Amf::as_str).unwrap_or_default();
        debug!(command = %clip(name), transaction_id, "command");
        match name {
            "connect" => self.on_connect(transaction_id, &command_object)?,
            "releaseStream" => self.result(transaction_id, vec![])?,
            "FCPublish" => {
                self.result(transaction_id, vec![])?;
                let bytes = self.out.command(
                    0,
                    "onFCPublish",
                    0.0,
                    Amf::Null,
                    vec![status_object(
                        "status",
                        "NetStream.Publish.Start",
                        &format!("FCPublish to stream {}", key_prefix(strip_query(first_arg_str))),
                    )],
                )?;
                self.pending.extend(bytes);
            }
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.result(transaction_id, vec![Amf::Number(f64::from(id))])?;
            }
            "publish" => return self.on_publish(message.stream_id, first_arg_str.to_owned()).await,
            "FCUnpublish" => {
                self.result(transaction_id, vec![])?;
                self.end_publish("FCUnpublish");
            }
            "deleteStream" | "closeStream" => self.end_publish(name),
            "play" | "play2" => {
                self.send_status(
                    message.stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    "this server only accepts publishing",
                )?;
                return Err(ConnectionError::Refused("client tried to play".into()));
            }
            other => debug!(command = %clip(other), "ignoring command"),
        }
        Ok(Flow::Continue)
    }

    fn on_connect(&mut self, transaction_id: f64, command_object: &Amf) -> Result<(), ConnectionError> {
        let app = command_object
            .property("app")
            .and_then(Amf::as_str)
            .map(|app| strip_query(app).trim_end_matches('/').to_owned())
            .unwrap_or_default();
        self.span.record("app", clip(&app).as_ref());
        debug!(app = %clip(&app), "connect");
        self.app = Some(app);

        // The order ffmpeg's own listen mode uses, which every client accepts.
        let mut bytes = self.out.window_ack_size(self.shared.settings.window_ack_size)?;
        bytes.extend(self.out.set_peer_bandwidth(self.shared.settings.peer_bandwidth)?);
        bytes.extend(self.out.stream_begin(0)?);
        bytes.extend(self.out.set_chunk_size(self.shared.settings.chunk_size)?);
        bytes.extend(self.out.command(
            0,
            "_result",
            transaction_id,
            Amf::Object(vec![
                ("fmsVer".into(), Amf::String("FMS/3,0,1,123".into())),
                ("capabilities".into(), Amf::Number(31.0)),
            ]),
            vec![Amf::Object(vec![
                ("level".into(), Amf::String("status".into())),
                ("code".into(), Amf::String("NetConnection.Connect.Success".into())),
                ("description".into(), Amf::String("Connection succeeded.".into())),
                ("objectEncoding".into(), Amf::Number(0.0)),
            ])],
        )?);
        bytes.extend(
            self.out
                .command(0, "onBWDone", 0.0, Amf::Null, vec![Amf::Number(8192.0)])?,
        );
        self.pending.extend(bytes);
        Ok(())
    }

    async fn on_publish(&mut self, message_stream_id: u32, name: String) -> Result<Flow, ConnectionError> {
        let stream_key = strip_query(&name).to_owned();
        self.span.record("key", key_prefix(&stream_key).as_str());
        let Some(app) = self.app.clone() else {
            self.send_status(
                message_stream_id,
                "error",
                "NetStream.Publish.BadName",
                "publish before connect",
            )?;
            return Err(ConnectionError::Refused("publish before connect".into()));
        };
        if self.publish.is_some() {
            self.send_status(
                message_stream_id,
                "error",
                "NetStream.Publish.BadName",
                "already publishing on this connection",
            )?;
            return Err(ConnectionError::Refused("second publish on one connection".into()));
        }
        if stream_key.is_empty() {
            self.send_status(
                message_stream_id,
                "error",
                "NetStream.Publish.BadName",
                "empty stream key",
            )?;
            return Err(ConnectionError::Rejected("empty stream key".into()));
        }
        let request = PublishRequest {
            protocol: "rtmp",
            app,
            stream_key,
            client_addr: self.peer,
            connection_id: self.id,
        };
        // From here the gate's own timeout bounds the wait.
        self.publish_deadline = None;
        let decision = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(Flow::Close(EndReason::Shutdown)),
            decision = self.shared.gate.begin(request) => decision,
        };
        match decision {
            Ok(session) => {
                info!(stream_id = %session.stream_id, "publish accepted");
                self.published = true;
                self.reader.set_max_message_size(self.shared.settings.max_message_size);
                let bytes = self.out.stream_begin(message_stream_id)?;
                self.pending.extend(bytes);
                self.send_status(
                    message_stream_id,
                    "status",
                    "NetStream.Publish.Start",
                    "Publishing started.",
                )?;
                self.publish = Some(Publishing {
                    message_stream_id,
                    session,
                    video_clock: TrackClock::new("video", self.shared.settings.max_timestamp_jump_ms),
                    audio_clock: TrackClock::new("audio", self.shared.settings.max_timestamp_jump_ms),
                    avcc: None,
                    nal_length_size: 4,
                    audio_config: None,
                    dropped_before_config: 0,
                    malformed_tags: 0,
                });
                Ok(Flow::Continue)
            }
            Err(rejection) => {
                // The end-of-connection line says why; the gate logs each rejection.
                debug!(code = ?rejection.code, description = %clip(&rejection.description), "publish rejected");
                let code = match rejection.code {
                    RejectCode::BadName => "NetStream.Publish.BadName",
                    RejectCode::Rejected | RejectCode::Overloaded => "NetStream.Publish.Rejected",
                };
                self.send_status(message_stream_id, "error", code, &rejection.description)?;
                Err(ConnectionError::Rejected(clip(&rejection.to_string()).into_owned()))
            }
        }
    }

    fn end_publish(&mut self, reason: &str) {
        if let Some(publishing) = self.publish.take() {
            info!(reason, stream_id = %publishing.session.stream_id, "publish ended by client");
        }
    }

    async fn on_video(&mut self, message: RawMessage) -> Result<Flow, ConnectionError> {
        let Some(publishing) = self.publish.as_mut() else {
            return Ok(Flow::Continue);
        };
        let packet = match flv::parse_video(&message.payload) {
            Err(err) => return self.media_error(err),
            Ok(VideoTag::Ignored) => return Ok(Flow::Continue),
            Ok(VideoTag::AvcSequenceHeader(avcc)) => {
                let length_size = match flv::avcc_nal_length_size(&avcc) {
                    Ok(size) => size,
                    Err(err) => return self.media_error(err),
                };
                if publishing.avcc.as_ref() == Some(&avcc) {
                    return Ok(Flow::Continue);
                }
                publishing.nal_length_size = length_size;
                publishing.avcc = Some(avcc.clone());
                MediaPacket::VideoConfig(VideoConfig::H264 { avcc })
            }
            Ok(VideoTag::AvcNalus {
                keyframe,
                composition_time_ms,
                data,
            }) => {
                if publishing.avcc.is_none() {
                    publishing.dropped_before_config += 1;
                    publishing.session.counters.discarded();
                    debug!("video frame before AVC sequence header dropped");
                    return Ok(Flow::Continue);
                }
                let data = match flv::to_four_byte_lengths(data, publishing.nal_length_size) {
                    Ok(data) => data,
                    Err(err) => return self.media_error(err),
                };
                if data.is_empty() {
                    return Ok(Flow::Continue);
                }
                let dts_ms = match publishing.video_clock.dts(message.timestamp) {
                    Ok(dts) => dts,
                    Err(err) => return self.timeline_error(err),
                };
                MediaPacket::Video(VideoFrame {
                    dts_ms,
                    pts_ms: publishing.video_clock.pts(dts_ms, composition_time_ms),
                    keyframe,
                    data,
                })
            }
        };
        self.forward(packet).await
    }

    async fn on_audio(&mut self, message: RawMessage) -> Result<Flow, ConnectionError> {
        let Some(publishing) = self.publish.as_mut() else {
            return Ok(Flow::Continue);
        };
        let packet = match flv::parse_audio(&message.payload) {
            Err(err) => return self.media_error(err),
            Ok(AudioTag::Ignored) => return Ok(Flow::Continue),
            Ok(AudioTag::AacSequenceHeader(asc)) => {
                let config = AudioConfig::Aac { asc };
                if publishing.audio_config.as_ref() == Some(&config) {
                    return Ok(Flow::Continue);
                }
                publishing.audio_config = Some(config.clone());
                MediaPacket::AudioConfig(config)
            }
            Ok(AudioTag::AacRaw(data)) => {
                if !matches!(publishing.audio_config, Some(AudioConfig::Aac { .. })) {
                    publishing.dropped_before_config += 1;
                    publishing.session.counters.discarded();
                    debug!("audio frame before AAC sequence header dropped");
                    return Ok(Flow::Continue);
                }
                let pts_ms = match publishing.audio_clock.dts(message.timestamp) {
                    Ok(pts) => pts,
                    Err(err) => return self.timeline_error(err),
                };
                MediaPacket::Audio(AudioFrame { pts_ms, data })
            }
            Ok(AudioTag::Mp3 {
                format,
                from_frame_header,
                data,
            }) => {
                let pts_ms = match publishing.audio_clock.dts(message.timestamp) {
                    Ok(pts) => pts,
                    Err(err) => return self.timeline_error(err),
                };
                let is_mp3 = matches!(publishing.audio_config, Some(AudioConfig::Mp3 { .. }));
                // A guess from the FLV bits never overrides what a frame header said.
                if from_frame_header || !is_mp3 {
                    let config = AudioConfig::Mp3 {
                        sample_rate: format.sample_rate,
                        channels: format.channels,
                    };
                    if publishing.audio_config.as_ref() != Some(&config) {
                        info!(
                            sample_rate = format.sample_rate,
                            channels = format.channels,
                            "MP3 audio"
                        );
                        publishing.audio_config = Some(config.clone());
                        if let flow @ Flow::Close(_) = self.forward(MediaPacket::AudioConfig(config)).await? {
                            return Ok(flow);
                        }
                    }
                }
                MediaPacket::Audio(AudioFrame { pts_ms, data })
            }
        };
        self.forward(packet).await
    }

    /// Unsupported codecs end the publish with a status the encoder shows;
    /// malformed tags are dropped (a single bad tag should not kill a stream).
    fn media_error(&mut self, err: FlvError) -> Result<Flow, ConnectionError> {
        match err {
            FlvError::UnsupportedVideo(_) | FlvError::UnsupportedAudio(_) => {
                error!(error = %err, "refusing publish");
                let stream_id = self.publish.as_ref().map_or(1, |p| p.message_stream_id);
                self.send_status(stream_id, "error", "NetStream.Publish.Failed", &err.to_string())?;
                Err(ConnectionError::Unsupported(err))
            }
            FlvError::Truncated { .. } | FlvError::MalformedAvc(_) => {
                if let Some(publishing) = self.publish.as_mut() {
                    publishing.malformed_tags += 1;
                    publishing.session.counters.discarded();
                    // Log the first and then every 100th so a broken encoder cannot flood the log.
                    if publishing.malformed_tags % 100 == 1 {
                        warn!(error = %err, count = publishing.malformed_tags, "malformed media tag dropped");
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    /// A timeline that ran out of range ends the publish with a status the
    /// encoder shows.
    fn timeline_error(&mut self, err: TimelineExhausted) -> Result<Flow, ConnectionError> {
        let stream_id = self.publish.as_ref().map_or(1, |p| p.message_stream_id);
        self.send_status(stream_id, "error", "NetStream.Publish.Failed", &err.to_string())?;
        Err(ConnectionError::Refused(err.to_string()))
    }

    async fn forward(&mut self, packet: MediaPacket) -> Result<Flow, ConnectionError> {
        let Some(publishing) = self.publish.as_ref() else {
            return Ok(Flow::Continue);
        };
        publishing.session.counters.on_packet(&packet);
        // Awaiting the send is the backpressure: we stop reading the socket
        // while downstream is full, and TCP slows the encoder.
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Ok(Flow::Close(EndReason::Shutdown)),
            _ = publishing.session.kicked.cancelled() => Ok(Flow::Close(EndReason::Kicked)),
            sent = publishing.session.media.send(packet) => match sent {
                Ok(()) => Ok(Flow::Continue),
                Err(_) => Ok(Flow::Close(EndReason::MediaClosed)),
            },
        }
    }

    fn result(&mut self, transaction_id: f64, args: Vec<Amf>) -> Result<(), ConnectionError> {
        let bytes = self.out.command(0, "_result", transaction_id, Amf::Null, args)?;
        self.pending.extend(bytes);
        Ok(())
    }

    fn send_status(
        &mut self,
        message_stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), ConnectionError> {
        let bytes = self.out.command(
            message_stream_id,
            "onStatus",
            0.0,
            Amf::Null,
            vec![status_object(level, code, description)],
        )?;
        self.pending.extend(bytes);
        Ok(())
    }
}

/// Resolves at `deadline`, or never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn kicked(watched: &Option<(CancellationToken, tokio::sync::mpsc::Sender<MediaPacket>)>) {
    match watched {
        Some((token, _)) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn media_closed(watched: &Option<(CancellationToken, tokio::sync::mpsc::Sender<MediaPacket>)>) {
    match watched {
        Some((_, media)) => media.closed().await,
        None => std::future::pending().await,
    }
}

fn status_object(level: &str, code: &str, description: &str) -> Amf {
    Amf::Object(vec![
        ("level".into(), Amf::String(level.into())),
        ("code".into(), Amf::String(code.into())),
        ("description".into(), Amf::String(description.into())),
    ])
}

/// AMF3-typed messages (15, 17) carry AMF0 after a leading format byte.
fn amf_body(message: &RawMessage) -> &[u8] {
    match (message.type_id, message.payload.first()) {
        (15 | 17, Some(0)) => message.payload.get(1..).unwrap_or_default(),
        _ => &message.payload,
    }
}

fn be_u32(payload: &[u8], what: &'static str) -> Result<u32, ConnectionError> {
    payload
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(ConnectionError::BadMessage {
            what,
            reason: format!("{} bytes, need 4", payload.len()),
        })
}

pub(crate) fn strip_query(name: &str) -> &str {
    name.split('?').next().unwrap_or_default()
}

/// Enough of a stream key to tell streams apart in logs without leaking it.
pub(crate) fn key_prefix(key: &str) -> String {
    let prefix: String = key.chars().take(4).collect();
    if prefix.len() < key.len() {
        format!("{prefix}…")
    } else {
        prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_stripped_and_keys_are_shortened() {
        assert_eq!(strip_query("KEY?foo=bar"), "KEY");
        assert_eq!(strip_query("KEY"), "KEY");
        assert_eq!(strip_query("?x"), "");
        assert_eq!(key_prefix("abcdefgh"), "abcd…");
        assert_eq!(key_prefix("ab"), "ab");
        assert_eq!(key_prefix("ééééé"), "éééé…");
    }
}

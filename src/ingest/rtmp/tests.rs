//! End-to-end tests against real publishers (ffmpeg, GStreamer rtmp2sink).

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{RtmpServer, RtmpSettings};
use crate::ingest::{
    AudioConfig, MediaPacket, PublishGate, PublishRejection, PublishRequest, PublishSession, RejectCode, VideoConfig,
};

/// Two cores: never more than two encoders at once across parallel tests.
static ENCODERS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

const BAD_KEY_DESCRIPTION: &str = "stream key not recognised by the test gate";

struct Accepted {
    request: PublishRequest,
    media: mpsc::Receiver<MediaPacket>,
    kicked: CancellationToken,
}

/// Accepts keys starting with "KEY" and hands every session to the test.
struct TestGate {
    accepted: mpsc::UnboundedSender<Accepted>,
}

impl PublishGate for TestGate {
    fn begin(&self, request: PublishRequest) -> BoxFuture<'static, Result<PublishSession, PublishRejection>> {
        let accepted = self.accepted.clone();
        async move {
            if !request.stream_key.starts_with("KEY") {
                return Err(PublishRejection {
                    code: RejectCode::BadName,
                    description: BAD_KEY_DESCRIPTION.to_owned(),
                });
            }
            let (tx, rx) = mpsc::channel(64);
            let kicked = CancellationToken::new();
            let _ = accepted.send(Accepted {
                request: request.clone(),
                media: rx,
                kicked: kicked.clone(),
            });
            Ok(PublishSession {
                counters: Default::default(),
                stream_id: format!("test-{}", request.stream_key),
                media: tx,
                kicked,
                keyframe_wanted: Default::default(),
            })
        }
        .boxed()
    }
}

struct Harness {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Harness {
    start_with(RtmpSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        handshake_timeout: Duration::from_secs(1),
        ..RtmpSettings::default()
    })
    .await
}

async fn start_with(settings: RtmpSettings) -> Harness {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
    let (tx, rx) = mpsc::unbounded_channel();
    let server = RtmpServer::bind(settings, Arc::new(TestGate { accepted: tx }))
        .await
        .expect("bind");
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve(shutdown.clone()));
    Harness {
        addr,
        accepted: rx,
        shutdown,
    }
}

struct Finished {
    status: ExitStatus,
    stderr: String,
    elapsed: Duration,
}

fn ffmpeg_publish(url: &str, seconds: u32, extra: &[&str]) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"]);
    cmd.args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]);
    cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "30",
    ]);
    cmd.args(["-c:a", "aac"]);
    cmd.args(extra);
    cmd.args(["-t", &seconds.to_string(), "-f", "flv", url]);
    cmd
}

async fn run(mut cmd: Command, limit: Duration) -> Finished {
    let _permit = ENCODERS.acquire().await.expect("semaphore");
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn publisher");
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("publisher did not exit in time")
        .expect("publisher output");
    Finished {
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

async fn next_session(harness: &mut Harness) -> Accepted {
    tokio::time::timeout(Duration::from_secs(10), harness.accepted.recv())
        .await
        .expect("a publish reached the gate")
        .expect("gate alive")
}

/// Reads every packet until the session ends (the sender is dropped).
async fn drain(mut media: mpsc::Receiver<MediaPacket>) -> Vec<MediaPacket> {
    let mut packets = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), media.recv()).await {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return packets,
            Err(_) => panic!("session did not end; got {} packets", packets.len()),
        }
    }
}

#[derive(Debug, Default)]
struct Summary {
    metadata: Vec<crate::ingest::StreamMetadata>,
    avcc: Option<bytes::Bytes>,
    asc: Option<bytes::Bytes>,
    /// Every MP3 configuration, in order.
    mp3_configs: Vec<(u32, u32)>,
    audio_frames: Vec<bytes::Bytes>,
    audio_before_config: bool,
    video_dts: Vec<i64>,
    keyframes: usize,
    audio_pts: Vec<i64>,
    video_before_config: bool,
}

fn summarise(packets: &[MediaPacket]) -> Summary {
    let mut s = Summary::default();
    for packet in packets {
        match packet {
            MediaPacket::Metadata(m) => s.metadata.push(m.clone()),
            MediaPacket::VideoConfig(VideoConfig::H264 { avcc }) => s.avcc = Some(avcc.clone()),
            MediaPacket::AudioConfig(AudioConfig::Aac { asc }) => s.asc = Some(asc.clone()),
            MediaPacket::AudioConfig(AudioConfig::Mp3 { sample_rate, channels }) => {
                s.mp3_configs.push((*sample_rate, *channels))
            }
            MediaPacket::VideoConfig(VideoConfig::Vp8 { .. } | VideoConfig::H265 { .. })
            | MediaPacket::AudioConfig(AudioConfig::Opus { .. }) => {
                panic!("RTMP carries neither VP8, H.265 nor Opus")
            }
            MediaPacket::Video(frame) => {
                if s.avcc.is_none() {
                    s.video_before_config = true;
                }
                assert!(frame.pts_ms >= frame.dts_ms, "pts before dts");
                // Length-prefixed NAL units, the first one fitting in the frame.
                let first_len = u32::from_be_bytes(frame.data[..4].try_into().expect("4 bytes"));
                assert!(first_len as usize + 4 <= frame.data.len());
                s.video_dts.push(frame.dts_ms);
                s.keyframes += usize::from(frame.keyframe);
            }
            MediaPacket::Audio(frame) => {
                if s.asc.is_none() && s.mp3_configs.is_empty() {
                    s.audio_before_config = true;
                }
                s.audio_pts.push(frame.pts_ms);
                s.audio_frames.push(frame.data.clone());
            }
        }
    }
    s
}

fn assert_monotonic(times: &[i64]) {
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not monotonic: {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_with_query_reaches_gate_with_everything() {
    let mut harness = start().await;
    let url = format!("rtmp://{}/live/KEY?foo=bar", harness.addr);
    let publisher = tokio::spawn(run(ffmpeg_publish(&url, 3, &[]), Duration::from_secs(30)));
    let session = next_session(&mut harness).await;
    assert_eq!(session.request.protocol, "rtmp");
    assert_eq!(session.request.app, "live");
    assert_eq!(session.request.stream_key, "KEY");
    let packets = drain(session.media).await;
    let finished = publisher.await.expect("join");
    assert!(finished.status.success(), "ffmpeg failed: {}", finished.stderr);

    let s = summarise(&packets);
    let meta = s.metadata.first().expect("metadata");
    assert_eq!((meta.width, meta.height), (Some(320), Some(240)));
    assert_eq!(meta.framerate, Some(30.0));
    assert_eq!((meta.has_video, meta.has_audio), (Some(true), Some(true)));
    assert!(meta.encoder.as_deref().is_some_and(|e| e.starts_with("Lavf")));
    let avcc = s.avcc.expect("avcC");
    assert_eq!(avcc[0], 1, "avcC version");
    let asc = s.asc.expect("AudioSpecificConfig");
    assert_eq!(asc[0] >> 3, 2, "AAC-LC object type");
    assert!(!s.video_before_config);
    assert!(
        (85..=95).contains(&s.video_dts.len()),
        "{} video frames",
        s.video_dts.len()
    );
    assert!(s.keyframes >= 3, "{} keyframes", s.keyframes);
    assert_monotonic(&s.video_dts);
    assert_monotonic(&s.audio_pts);
    // 3 s of 48 kHz AAC is ~141 frames of 1024 samples.
    assert!(
        (130..=150).contains(&s.audio_pts.len()),
        "{} audio frames",
        s.audio_pts.len()
    );
    let span = s.video_dts.last().expect("frames") - s.video_dts[0];
    assert!((2800..=3100).contains(&span), "video spans {span} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmp2sink_publishes() {
    let mut harness = start().await;
    let url = format!("rtmp://{}/live/KEY2", harness.addr);
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q");
    cmd.args(
        format!(
            "videotestsrc num-buffers=60 ! video/x-raw,width=160,height=120,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 \
             ! flvmux streamable=true ! rtmp2sink chunk-size=4096 location={url}"
        )
        .split_whitespace(),
    );
    let publisher = tokio::spawn(run(cmd, Duration::from_secs(30)));
    let session = next_session(&mut harness).await;
    assert_eq!(session.request.app, "live");
    assert_eq!(session.request.stream_key, "KEY2");
    let packets = drain(session.media).await;
    let finished = publisher.await.expect("join");
    assert!(finished.status.success(), "gst-launch failed: {}", finished.stderr);
    let s = summarise(&packets);
    assert!(s.avcc.is_some());
    assert!(
        (55..=60).contains(&s.video_dts.len()),
        "{} video frames",
        s.video_dts.len()
    );
    assert!(s.keyframes >= 2);
    assert_monotonic(&s.video_dts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_makes_ffmpeg_fail_fast_with_the_description() {
    let harness = start().await;
    let url = format!("rtmp://{}/live/nope", harness.addr);
    let finished = run(ffmpeg_publish(&url, 3, &[]), Duration::from_secs(15)).await;
    assert!(!finished.status.success());
    assert!(finished.elapsed < Duration::from_secs(5), "took {:?}", finished.elapsed);
    assert!(
        finished.stderr.contains(BAD_KEY_DESCRIPTION),
        "stderr: {}",
        finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_codec_is_refused_with_a_named_error() {
    let harness = start().await;
    let url = format!("rtmp://{}/live/KEY3", harness.addr);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"]);
    cmd.args(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30"]);
    cmd.args(["-c:v", "flv1", "-an", "-t", "3", "-f", "flv", &url]);
    let finished = run(cmd, Duration::from_secs(15)).await;
    assert!(!finished.status.success());
    assert!(finished.elapsed < Duration::from_secs(5), "took {:?}", finished.elapsed);
    assert!(
        finished.stderr.contains("unsupported video codec Sorenson H.263"),
        "stderr: {}",
        finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_mp3_audio_reaches_gate_as_mp3_frames() {
    let mut harness = start().await;
    let url = format!("rtmp://{}/live/KEYmp3", harness.addr);
    let extra = ["-c:a", "libmp3lame", "-ar", "44100", "-b:a", "64k"];
    let publisher = tokio::spawn(run(ffmpeg_publish(&url, 3, &extra), Duration::from_secs(30)));
    let session = next_session(&mut harness).await;
    let packets = drain(session.media).await;
    let finished = publisher.await.expect("join");
    assert!(finished.status.success(), "ffmpeg failed: {}", finished.stderr);

    let s = summarise(&packets);
    assert!(s.asc.is_none());
    // The lavfi sine source is mono; sent once because it never changes.
    assert_eq!(s.mp3_configs, [(44100, 1)]);
    assert!(!s.audio_before_config);
    assert!(s.avcc.is_some() && s.video_dts.len() >= 85);
    // 3 s of 44.1 kHz MP3 is ~115 frames of 1152 samples, one per FLV tag.
    assert!(
        (105..=125).contains(&s.audio_frames.len()),
        "{} audio frames",
        s.audio_frames.len()
    );
    for frame in &s.audio_frames {
        // MPEG-1 layer III sync word: raw frames, FLV byte stripped.
        assert_eq!(frame.get(..2), Some(&[0xff, 0xfb][..]), "{:02x?}", frame.get(..4));
    }
    assert_monotonic(&s.audio_pts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_audio_codecs_are_still_refused_by_name() {
    let harness = start().await;
    for (codec, rate, name) in [
        ("pcm_alaw", "8000", "G.711 A-law (FLV sound format 7)"),
        ("nellymoser", "44100", "Nellymoser (FLV sound format 6)"),
    ] {
        let url = format!("rtmp://{}/live/KEY-{codec}", harness.addr);
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"]);
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
        cmd.args(["-c:a", codec, "-ar", rate, "-ac", "1", "-t", "3", "-f", "flv", &url]);
        let finished = run(cmd, Duration::from_secs(15)).await;
        assert!(!finished.status.success(), "{codec} was accepted");
        assert!(finished.elapsed < Duration::from_secs(5), "took {:?}", finished.elapsed);
        let expected = format!("unsupported audio codec {name}; send AAC or MP3");
        assert!(
            finished.stderr.contains(&expected),
            "{codec} stderr: {}",
            finished.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_handshakes_do_not_hurt_the_server() {
    let mut harness = start().await;

    let mut http = TcpStream::connect(harness.addr).await.expect("connect");
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_closed_by_server(&mut http, Duration::from_secs(2)).await;

    // C0 and half a C1, then silence: the handshake timeout (1 s) ends it.
    let mut stalled = TcpStream::connect(harness.addr).await.expect("connect");
    let mut partial = vec![3u8];
    partial.extend(std::iter::repeat_n(7u8, 700));
    stalled.write_all(&partial).await.expect("write");
    let started = Instant::now();
    assert_closed_by_server(&mut stalled, Duration::from_secs(3)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Full handshake, then a chunk announcing a message beyond the limit.
    let mut oversized = TcpStream::connect(harness.addr).await.expect("connect");
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    oversized.write_all(&c0c1).await.expect("write");
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    oversized.read_exact(&mut s0s1s2).await.expect("S0S1S2");
    let mut c2 = s0s1s2[1..1537].to_vec();
    c2.extend_from_slice(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0]);
    oversized.write_all(&c2).await.expect("write");
    assert_closed_by_server(&mut oversized, Duration::from_secs(2)).await;

    // Abrupt close mid-handshake.
    let mut abrupt = TcpStream::connect(harness.addr).await.expect("connect");
    abrupt.write_all(&[3, 1, 2, 3]).await.expect("write");
    drop(abrupt);

    let url = format!("rtmp://{}/live/KEY4", harness.addr);
    let publisher = tokio::spawn(run(ffmpeg_publish(&url, 1, &[]), Duration::from_secs(20)));
    let session = next_session(&mut harness).await;
    let packets = drain(session.media).await;
    let finished = publisher.await.expect("join");
    assert!(finished.status.success(), "ffmpeg failed: {}", finished.stderr);
    assert!(summarise(&packets).video_dts.len() >= 25);
}

async fn assert_closed_by_server(stream: &mut TcpStream, within: Duration) {
    let mut buf = vec![0u8; 8192];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "server kept the connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicked_session_closes_the_connection_and_ffmpeg_exits() {
    let mut harness = start().await;
    let url = format!("rtmp://{}/live/KEY5", harness.addr);
    let publisher = tokio::spawn(run(ffmpeg_publish(&url, 20, &[]), Duration::from_secs(30)));
    let mut session = next_session(&mut harness).await;
    let mut frames = 0;
    while frames < 10 {
        match tokio::time::timeout(Duration::from_secs(10), session.media.recv()).await {
            Ok(Some(MediaPacket::Video(_))) => frames += 1,
            Ok(Some(_)) => {}
            other => panic!("media ended early: {other:?}"),
        }
    }
    let kicked_at = Instant::now();
    session.kicked.cancel();
    drain(session.media).await;
    let finished = publisher.await.expect("join");
    let after_kick = kicked_at.elapsed();
    assert!(
        after_kick < Duration::from_secs(5),
        "ffmpeg ran {after_kick:?} after the kick"
    );
    assert!(!finished.status.success(), "ffmpeg should notice the lost server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_only_and_audio_only_publishes() {
    let mut harness = start().await;

    let url = format!("rtmp://{}/live/KEY6v", harness.addr);
    let publisher = tokio::spawn(run(ffmpeg_publish(&url, 2, &["-an"]), Duration::from_secs(20)));
    let session = next_session(&mut harness).await;
    let video_only = summarise(&drain(session.media).await);
    let finished = publisher.await.expect("join");
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(video_only.audio_pts.is_empty() && video_only.asc.is_none());
    assert!(video_only.video_dts.len() >= 55);
    let meta = video_only.metadata.first().expect("metadata");
    assert_eq!((meta.has_video, meta.has_audio), (Some(true), None));

    let url = format!("rtmp://{}/live/KEY6a", harness.addr);
    let publisher = tokio::spawn(run(ffmpeg_publish(&url, 2, &["-vn"]), Duration::from_secs(20)));
    let session = next_session(&mut harness).await;
    let audio_only = summarise(&drain(session.media).await);
    let finished = publisher.await.expect("join");
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(audio_only.video_dts.is_empty() && audio_only.avcc.is_none());
    assert!(audio_only.asc.is_some());
    assert!(
        (85..=100).contains(&audio_only.audio_pts.len()),
        "{}",
        audio_only.audio_pts.len()
    );
    assert_monotonic(&audio_only.audio_pts);
    let meta = audio_only.metadata.first().expect("metadata");
    assert_eq!((meta.has_video, meta.has_audio), (None, Some(true)));
}

/// Reads server messages until `want` returns true for one of them.
async fn read_until(
    stream: &mut TcpStream,
    reader: &mut super::chunk::ChunkReader,
    seen: &mut Vec<super::chunk::RawMessage>,
    want: impl Fn(&super::chunk::RawMessage) -> bool,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(message) = reader.next_message().expect("server chunks parse") {
            if message.type_id == 1 {
                let size = u32::from_be_bytes(message.payload[..4].try_into().expect("4"));
                reader.set_chunk_size(size).expect("valid size");
            }
            let done = want(&message);
            seen.push(message);
            if done {
                return;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("server answered")
            .expect("read");
        assert!(n > 0, "server closed early");
        reader.push(&buf[..n]);
    }
}

fn command_name(message: &super::chunk::RawMessage) -> Option<String> {
    if message.type_id != 20 {
        return None;
    }
    super::amf0::decode_all(&message.payload)
        .ok()?
        .first()?
        .as_str()
        .map(str::to_owned)
}

fn status_code(message: &super::chunk::RawMessage) -> Option<String> {
    let values = super::amf0::decode_all(&message.payload).ok()?;
    values.get(3)?.property("code")?.as_str().map(str::to_owned)
}

/// OBS's order: Set Chunk Size 4096 before a connect longer than 128 bytes,
/// releaseStream/FCPublish/createStream/publish back to back, then media.
/// Also checks our acknowledgements carry the running byte count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_style_session_with_early_chunk_size_and_acks() {
    use super::amf0::Amf;
    use super::chunk::ChunkReader;
    use super::rml::Outbound;

    let mut harness = start().await;
    let mut stream = TcpStream::connect(harness.addr).await.expect("connect");
    // Without this, Nagle merges our frames into one server read (one ack).
    stream.set_nodelay(true).expect("nodelay");
    let mut sent: u64 = 0;
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    stream.write_all(&c0c1).await.expect("C0C1");
    sent += c0c1.len() as u64;
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    stream.read_exact(&mut s0s1s2).await.expect("S0S1S2");
    let c2 = s0s1s2[1..1537].to_vec();

    let mut client = Outbound::new();
    let mut wire = c2;
    wire.extend(client.set_chunk_size(4096).expect("chunk size"));
    wire.extend(client.window_ack_size(5000).expect("window"));
    let long_url = format!("rtmp://{}/live?{}", harness.addr, "p".repeat(300));
    wire.extend(
        client
            .command(
                0,
                "connect",
                1.0,
                Amf::Object(vec![
                    ("app".into(), Amf::String("live".into())),
                    ("type".into(), Amf::String("nonprivate".into())),
                    ("flashVer".into(), Amf::String("FMLE/3.0 (compatible; FMSc/1.0)".into())),
                    ("tcUrl".into(), Amf::String(long_url)),
                ]),
                vec![],
            )
            .expect("connect"),
    );
    for (name, tid) in [("releaseStream", 2.0), ("FCPublish", 3.0)] {
        wire.extend(
            client
                .command(0, name, tid, Amf::Null, vec![Amf::String("KEYobs".into())])
                .expect("command"),
        );
    }
    wire.extend(
        client
            .command(0, "createStream", 4.0, Amf::Null, vec![])
            .expect("createStream"),
    );
    wire.extend(
        client
            .command(
                1,
                "publish",
                5.0,
                Amf::Null,
                vec![Amf::String("KEYobs".into()), Amf::String("live".into())],
            )
            .expect("publish"),
    );
    stream.write_all(&wire).await.expect("write");
    sent += wire.len() as u64;

    let mut reader = ChunkReader::new(1 << 20);
    let mut seen = Vec::new();
    read_until(&mut stream, &mut reader, &mut seen, |m| {
        command_name(m).as_deref() == Some("onStatus")
    })
    .await;
    let names: Vec<String> = seen.iter().filter_map(command_name).collect();
    assert_eq!(
        names,
        [
            "_result",
            "onBWDone",
            "_result",
            "_result",
            "onFCPublish",
            "_result",
            "onStatus"
        ]
    );
    let connect_result = seen.iter().find(|m| command_name(m).as_deref() == Some("_result"));
    assert_eq!(
        connect_result.and_then(status_code).as_deref(),
        Some("NetConnection.Connect.Success")
    );
    assert!(seen.iter().any(|m| m.type_id == 5), "Window Ack Size sent");
    assert!(seen.iter().any(|m| m.type_id == 1), "Set Chunk Size sent");
    assert_eq!(
        seen.last().and_then(status_code).as_deref(),
        Some("NetStream.Publish.Start")
    );
    let session = next_session(&mut harness).await;
    assert_eq!(session.request.stream_key, "KEYobs");

    // We asked for acks every 5000 bytes; send ~12 kB of AVC frames in 4 kB chunks.
    let mut avcc = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0];
    avcc.push(0);
    let header = client.video_data(1, 0, avcc).expect("avcC");
    stream.write_all(&header).await.expect("media");
    sent += header.len() as u64;
    for i in 0..3u32 {
        let mut frame = vec![0x27, 1, 0, 0, 0];
        frame.extend_from_slice(&3996u32.to_be_bytes());
        frame.extend(std::iter::repeat_n(0x41u8, 3996));
        let bytes = client.video_data(1, 33 * i, frame).expect("frame");
        // Separate reads on the server, so each window crossing is seen.
        stream.write_all(&bytes).await.expect("media");
        sent += bytes.len() as u64;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut acks = Vec::new();
    read_until(&mut stream, &mut reader, &mut seen, |m| {
        m.type_id == 3 && {
            let seq = u32::from_be_bytes(m.payload[..4].try_into().expect("4"));
            u64::from(seq) + 5000 > sent
        }
    })
    .await;
    for message in seen.iter().filter(|m| m.type_id == 3) {
        acks.push(u32::from_be_bytes(message.payload[..4].try_into().expect("4")));
    }
    assert!(acks.len() >= 2, "acks: {acks:?}");
    assert!(acks.windows(2).all(|w| w[1] - w[0] >= 5000), "acks: {acks:?}");
    assert!(acks.iter().all(|a| u64::from(*a) <= sent));

    let mut media_rx = session.media;
    match media_rx.recv().await {
        Some(MediaPacket::VideoConfig(VideoConfig::H264 { avcc })) => assert_eq!(avcc[0], 1),
        other => panic!("expected avcC, got {other:?}"),
    }
    for _ in 0..3 {
        match media_rx.recv().await {
            Some(MediaPacket::Video(frame)) => assert_eq!(frame.data.len(), 4000),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

fn test_settings() -> RtmpSettings {
    RtmpSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        handshake_timeout: Duration::from_secs(1),
        ..RtmpSettings::default()
    }
}

/// C0C1, S0S1S2, C2: a connection ready for chunks.
async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    stream.write_all(&c0c1).await.expect("C0C1");
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    stream.read_exact(&mut s0s1s2).await.expect("S0S1S2");
    stream.write_all(&s0s1s2[1..1537]).await.expect("C2");
    stream
}

fn connect_command(client: &mut super::rml::Outbound) -> Vec<u8> {
    use super::amf0::Amf;
    client
        .command(
            0,
            "connect",
            1.0,
            Amf::Object(vec![("app".into(), Amf::String("live".into()))]),
            vec![],
        )
        .expect("connect")
}

/// A client that published `key` and saw NetStream.Publish.Start.
struct Publisher {
    stream: TcpStream,
    client: super::rml::Outbound,
    reader: super::chunk::ChunkReader,
    seen: Vec<super::chunk::RawMessage>,
    session: Accepted,
}

async fn publish(harness: &mut Harness, key: &str) -> Publisher {
    use super::amf0::Amf;
    let mut stream = handshaken(harness.addr).await;
    let mut client = super::rml::Outbound::new();
    let mut wire = client.set_chunk_size(4096).expect("chunk size");
    wire.extend(connect_command(&mut client));
    wire.extend(
        client
            .command(0, "createStream", 2.0, Amf::Null, vec![])
            .expect("createStream"),
    );
    wire.extend(
        client
            .command(1, "publish", 3.0, Amf::Null, vec![Amf::String(key.into())])
            .expect("publish"),
    );
    stream.write_all(&wire).await.expect("write");
    let mut reader = super::chunk::ChunkReader::new(1 << 20);
    let mut seen = Vec::new();
    read_until(&mut stream, &mut reader, &mut seen, |m| {
        status_code(m).as_deref() == Some("NetStream.Publish.Start")
    })
    .await;
    let session = next_session(harness).await;
    Publisher {
        stream,
        client,
        reader,
        seen,
        session,
    }
}

/// Bytes the server sent before it closed the connection (`None`: still
/// open after `within`).
async fn bytes_until_closed(stream: &mut TcpStream, within: Duration) -> Option<usize> {
    let mut buf = vec![0u8; 8192];
    let mut total = 0;
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_closed_before_the_handshake() {
    let harness = start_with(RtmpSettings {
        max_connections_per_ip: 2,
        ..test_settings()
    })
    .await;
    let first = handshaken(harness.addr).await;
    let _second = handshaken(harness.addr).await;
    let mut third = TcpStream::connect(harness.addr).await.expect("connect");
    let _ = third.write_all(&[3u8; 1537]).await;
    assert_eq!(bytes_until_closed(&mut third, Duration::from_secs(2)).await, Some(0));

    // The slot comes back when a connection ends.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut retry = TcpStream::connect(harness.addr).await.expect("connect");
        retry.write_all(&[3u8; 1537]).await.expect("C0C1");
        let mut s0 = [0u8; 1];
        if let Ok(Ok(1)) = tokio::time::timeout(Duration::from_secs(1), retry.read(&mut s0)).await {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
    }

    let harness = start_with(RtmpSettings {
        max_connections: 1,
        ..test_settings()
    })
    .await;
    let _only = handshaken(harness.addr).await;
    let mut over = TcpStream::connect(harness.addr).await.expect("connect");
    let _ = over.write_all(&[3u8; 1537]).await;
    assert_eq!(bytes_until_closed(&mut over, Duration::from_secs(2)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_connection_is_closed_at_the_publish_deadline() {
    let harness = start_with(RtmpSettings {
        publish_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_secs(30),
        ..test_settings()
    })
    .await;
    let started = Instant::now();
    let mut stream = handshaken(harness.addr).await;
    let mut client = super::rml::Outbound::new();
    stream.write_all(&connect_command(&mut client)).await.expect("connect");
    // Then a 1000-byte message, one byte per tick: never idle, never done.
    stream
        .write_all(&[0x03, 0, 0, 0, 0, 0x03, 0xe8, 18, 0, 0, 0, 0])
        .await
        .expect("header");
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut buf = vec![0u8; 8192];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = ticks.tick() => {
                    let _ = stream.write_all(&[0x41]).await;
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a trickling connection outlived the publish deadline");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_wait_for_an_accepted_publish() {
    let mut harness = start().await;
    // 100 KiB announced before any publish: refused at the header.
    let mut early = handshaken(harness.addr).await;
    let mut client = super::rml::Outbound::new();
    let mut wire = connect_command(&mut client);
    wire.extend_from_slice(&[0x03, 0, 0, 0, 0x01, 0x90, 0x00, 18, 0, 0, 0, 0]);
    early.write_all(&wire).await.expect("write");
    assert!(bytes_until_closed(&mut early, Duration::from_secs(2)).await.is_some());

    // After the publish, a 200 KiB keyframe goes through.
    let mut publisher = publish(&mut harness, "KEYbig").await;
    let avcc = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0, 0];
    let mut wire = publisher.client.video_data(1, 0, avcc).expect("avcC");
    let nal_len = 200 * 1024u32;
    let mut frame = vec![0x17, 1, 0, 0, 0];
    frame.extend_from_slice(&nal_len.to_be_bytes());
    frame.extend(std::iter::repeat_n(0x65u8, nal_len as usize));
    wire.extend(publisher.client.video_data(1, 40, frame).expect("frame"));
    publisher.stream.write_all(&wire).await.expect("media");
    let media = &mut publisher.session.media;
    let mut got = None;
    while got.is_none() {
        match tokio::time::timeout(Duration::from_secs(5), media.recv()).await {
            Ok(Some(MediaPacket::Video(frame))) => got = Some(frame.data.len()),
            Ok(Some(_)) => {}
            other => panic!("no keyframe: {other:?}"),
        }
    }
    assert_eq!(got, Some(nal_len as usize + 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ladder_tells_the_publisher_before_closing() {
    let mut harness = start().await;
    let Publisher {
        mut stream,
        mut reader,
        mut seen,
        session,
        ..
    } = publish(&mut harness, "KEYfail").await;
    // The media side going away is what a failed ladder looks like here.
    drop(session.media);
    read_until(&mut stream, &mut reader, &mut seen, |m| {
        status_code(m).as_deref() == Some("NetStream.Publish.Failed")
    })
    .await;
    let failed = seen.last().expect("status");
    let values = super::amf0::decode_all(&failed.payload).expect("AMF");
    let info = values.get(3).expect("info object");
    assert_eq!(info.property("level").and_then(super::amf0::Amf::as_str), Some("error"));
    assert_eq!(
        info.property("description").and_then(super::amf0::Amf::as_str),
        Some("stream failed on the server")
    );
    assert_closed_by_server(&mut stream, Duration::from_secs(3)).await;
}
